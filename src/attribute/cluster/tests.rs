//! Membership, stale connections, the drop plan and captured dropConnections, on crafted
//! connections that model a three-member set after one member was removed.

use std::sync::Arc;

use super::*;
use crate::classify::{Confidence, Verdict};
use crate::observe::fixture::conn;
use crate::observe::{DropConnectionsSeen, Observations, ServerInfo};

const A: &str = "10.0.0.1:27017";
const B: &str = "10.0.0.2:27017";
const C: &str = "10.0.0.3:27017";

fn info(me: &str, version: i64, hosts: &[&str]) -> Option<Arc<ServerInfo>> {
    Some(Arc::new(ServerInfo {
        set_name: Some("rs0".into()),
        me: Some(me.into()),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        set_version: Some(version),
        ..ServerInfo::default()
    }))
}

fn with(obs: Observations, class: Class, role: Option<Role>, client_id: &str) -> Attributed {
    Attributed {
        obs: Box::new(obs),
        verdict: Verdict {
            class,
            confidence: Confidence::High,
            evidence: String::new(),
            role,
        },
        client_id: client_id.into(),
    }
}

fn open(id: u64, client: &str, server: &str) -> Observations {
    conn(id, client, server)
}

fn closed(id: u64, client: &str, server: &str, at: f64) -> Observations {
    let mut o = conn(id, client, server);
    o.closed = Some(at);
    o
}

/// An application's monitors (which carry the hello replies), and the members' own
/// outgoing connections.
fn capture() -> Vec<Attributed> {
    let app = "10.0.0.50|app|PyMongo 4.20.1";
    let repl = "10.0.0.1||NetworkInterfaceTL-ReplNetwork 7.0.14";
    let mut v = Vec::new();
    // Monitors: A and B announce setVersion 2 without C; C answered setVersion 1 earlier.
    let mut m = open(1, "10.0.0.50:5001", A);
    m.server_info = info(A, 2, &[A, B]);
    v.push(with(m, Class::StreamingMonitor, None, app));
    let mut m = open(2, "10.0.0.50:5002", B);
    m.server_info = info(B, 2, &[A, B]);
    v.push(with(m, Class::StreamingMonitor, None, app));
    let mut m = open(3, "10.0.0.50:5003", C);
    m.server_info = info(C, 1, &[A, B, C]);
    v.push(with(m, Class::StreamingMonitor, None, app));
    // A's heartbeats to B (a member) and to C (removed, still open).
    v.push(with(
        open(4, "10.0.0.1:40001", B),
        Class::Internal,
        Some(Role::ReplicationHeartbeat),
        repl,
    ));
    v.push(with(
        open(5, "10.0.0.1:40002", C),
        Class::Internal,
        Some(Role::ReplicationHeartbeat),
        repl,
    ));
    // B's heartbeat to C, closed by the dropConnections sent to B.
    v.push(with(
        closed(6, "10.0.0.2:40003", C, 1010.25),
        Class::Internal,
        Some(Role::ReplicationHeartbeat),
        repl,
    ));
    // B's oplog fetcher to C, still open.
    v.push(with(
        open(7, "10.0.0.2:40004", C),
        Class::Internal,
        Some(Role::OplogFetcher),
        repl,
    ));
    // A's sharding pool to a config server: outside the set, rightly.
    v.push(with(
        open(8, "10.0.0.1:40005", "10.0.0.9:27019"),
        Class::Internal,
        Some(Role::ShardingPool),
        repl,
    ));
    v
}

#[test]
fn membership_from_the_highest_set_version() {
    let cluster = analyse(&capture(), None);
    assert_eq!(cluster.membership.len(), 1);
    let m = &cluster.membership[0];
    assert_eq!(m.set_version, Some(2));
    assert_eq!(m.source, "hello");
    assert_eq!(m.members, vec![A.to_string(), B.to_string()]);
    assert_eq!(m.removed, vec![C.to_string()]);
}

#[test]
fn stale_internal_connections_and_monitors_and_the_plan() {
    let cluster = analyse(&capture(), None);
    let stale: Vec<(&str, &str, Option<&str>)> = cluster
        .stale
        .iter()
        .map(|s| (s.client.as_str(), s.kind, s.member.as_deref()))
        .collect();
    assert_eq!(
        stale,
        vec![
            ("10.0.0.50:5003", "client-monitor", None),
            ("10.0.0.1:40002", "internal", Some(A)),
            ("10.0.0.2:40004", "internal", Some(B)),
        ]
    );
    let plans: Vec<(&str, String)> = cluster
        .drop_connections
        .iter()
        .map(|p| (p.member.as_str(), p.command.clone()))
        .collect();
    let cmd = format!("db.adminCommand({{dropConnections: 1, hostAndPort: [\"{C}\"]}})");
    assert_eq!(plans, vec![(A, cmd.clone()), (B, cmd)]);
    assert!(cluster.drop_connections[0].privilege.contains("cluster"));
    assert!(cluster.drop_connections[0].check.contains("connPoolStats"));
    // The member that opened each internal connection.
    assert_eq!(cluster.origins[4].as_deref(), Some(A));
    assert_eq!(cluster.origins[0], None);
}

#[test]
fn given_membership_overrides_the_capture() {
    let given = MembershipInput::from_list(&format!("{A},{B},{C}")).unwrap();
    let cluster = analyse(&capture(), Some(&given));
    assert_eq!(cluster.membership[0].source, "members");
    assert!(cluster.stale.is_empty(), "{:?}", cluster.stale);
    assert!(MembershipInput::from_list("db1,db2:27017").is_err());

    let conf = r#"{"_id": "rs0", "version": {"$numberInt": "5"}, "members": [{"_id": 0, "host": "10.0.0.1:27017"}]}"#;
    let m = MembershipInput::from_json(conf).unwrap();
    assert_eq!(
        (m.set_name.as_deref(), m.set_version),
        (Some("rs0"), Some(5))
    );
    let status = r#"{"set": "rs0", "members": [{"name": "10.0.0.1:27017", "stateStr": "PRIMARY"}, {"name": "10.0.0.2:27017"}]}"#;
    assert_eq!(MembershipInput::from_json(status).unwrap().hosts.len(), 2);
    assert!(MembershipInput::from_json("{\"ok\": 1}").is_err());
}

#[test]
fn captured_drop_connections_are_linted_and_checked() {
    let mut conns = capture();
    let drop = |ts: f64, targets: &[Option<&str>]| DropConnectionsSeen {
        ts,
        targets: targets.iter().map(|t| t.map(str::to_string)).collect(),
        replied: Some(ts + 0.002),
        ok: Some(true),
        ..DropConnectionsSeen::default()
    };
    let admin = "10.0.0.50|ops|PyMongo 4.20.1";
    // To B, correct: B's heartbeat to C closes 0.25 s later; its fetcher stays open.
    let mut o = closed(9, "10.0.0.50:6001", B, 1011.0);
    o.cluster.drop_connections.push(drop(1010.0, &[Some(C)]));
    conns.push(with(o, Class::Pool, None, admin));
    // To A, with the port missing: ignored, so A's heartbeat to C stays open.
    let mut o = closed(10, "10.0.0.50:6002", A, 1012.0);
    o.cluster
        .drop_connections
        .push(drop(1011.0, &[Some("10.0.0.3"), None]));
    conns.push(with(o, Class::Pool, None, admin));

    let seen = analyse(&conns, None).drop_connections_seen;
    assert_eq!(seen.len(), 2);
    let to_b = &seen[0];
    assert_eq!((to_b.member.as_str(), to_b.ok), (B, Some(true)));
    assert!(to_b.ignored.is_empty() && to_b.corrected.is_none());
    let closed: Vec<_> = to_b
        .targeted
        .iter()
        .filter_map(|t| t.closed_after_s)
        .collect();
    assert_eq!(closed.len(), 1);
    assert!((closed[0] - 0.25).abs() < 1e-9);
    assert_eq!(to_b.targeted.iter().filter(|t| t.still_open).count(), 1);
    assert!(
        to_b.summary
            .contains("1 of 2 targeted connections closed within 0.250 s"),
        "{}",
        to_b.summary
    );

    let to_a = &seen[1];
    assert_eq!(to_a.ignored.len(), 2, "{:?}", to_a.ignored);
    assert_eq!(to_a.corrected, Some(vec![C.to_string()]));
    assert_eq!(
        to_a.corrected_command.as_deref(),
        Some(format!("db.adminCommand({{dropConnections: 1, hostAndPort: [\"{C}\"]}})").as_str())
    );
    assert!(to_a.targeted.is_empty());
    assert_eq!(to_a.missed.len(), 1);
    assert!(to_a.missed[0].still_open);
    assert!(to_a.summary.contains("stayed open"), "{}", to_a.summary);
}

#[test]
fn a_closed_monitor_counts_when_it_kept_monitoring_after_the_reconfig() {
    let app = "10.0.0.60|agent|PyMongo 4.20.1";
    let mut conns = capture();
    // The application's monitor of A learnt setVersion 2 at 1005.
    conns[0].obs.hello.newer_config_ts = Some(1005.0);
    let monitor = |id: u64, port: u16, closed_at: f64| {
        let mut m = closed(id, &format!("10.0.0.60:{port}"), C, closed_at);
        m.last_seen = closed_at;
        m.server_info = info(C, 1, &[A, B, C]);
        m.hello.reply_intervals.add(2.0);
        m.hello.reply_intervals.add(2.0);
        m
    };
    // Closed at its next check after the reconfig: the driver followed the new config.
    conns.push(with(
        monitor(20, 7001, 1006.5),
        Class::StreamingMonitor,
        None,
        app,
    ));
    // Kept checking the removed host for 10 s more: a client still monitoring it.
    conns.push(with(
        monitor(21, 7002, 1015.0),
        Class::StreamingMonitor,
        None,
        app,
    ));
    let stale = analyse(&conns, None).stale;
    let ours: Vec<(&str, bool)> = stale
        .iter()
        .filter(|s| s.client_id == app)
        .map(|s| (s.client.as_str(), s.open_at_end))
        .collect();
    assert_eq!(ours, vec![("10.0.0.60:7002", false)]);
}
