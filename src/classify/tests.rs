//! One test per rule, on crafted observations that model what drivers do.

use super::*;
use crate::observe::fixture::{boxed, conn};

const N1: &str = "10.0.0.9:27017";
const N2: &str = "10.0.0.10:27017";

fn one(o: Observations) -> Verdict {
    classify(&[Box::new(o)], None).remove(0)
}

#[test]
fn awaitable_hello_is_a_streaming_monitor() {
    let v = one(conn(1, "10.0.0.5:5000", N1)
        .with_handshake("app", "PyMongo", "4.10.1")
        .with_awaitable(3, true, 2));
    assert_eq!(v.class, Class::StreamingMonitor);
    assert_eq!(v.confidence, Confidence::High);
    assert!(
        v.evidence.contains("awaitable") && v.evidence.contains("exhaustAllowed"),
        "{}",
        v.evidence
    );
}

#[test]
fn streamed_replies_alone_prove_a_streaming_monitor_mid_stream() {
    let mut o = conn(1, "10.0.0.5:5000", N1).without_syn();
    o.hello.streamed_replies = 4;
    o.server_traffic.messages = 4;
    let v = one(o);
    assert_eq!(v.class, Class::StreamingMonitor);
    assert!(
        v.evidence.contains("predates the capture"),
        "{}",
        v.evidence
    );
}

#[test]
fn plain_hello_beside_streaming_monitor_is_rtt() {
    let conns = vec![
        conn(1, "10.0.0.5:5000", N1)
            .with_handshake("app", "nodejs", "6.10.0")
            .with_awaitable(2, false, 0),
        conn(2, "10.0.0.5:5001", N1)
            .with_handshake("app", "nodejs", "6.10.0")
            .with_plain_hellos(3, 10.0),
    ];
    let v = classify(&boxed(&conns), None);
    assert_eq!(v[1].class, Class::RttMonitor);
    assert!(v[1].evidence.contains("every 10.0 s"), "{}", v[1].evidence);
}

#[test]
fn plain_hello_opened_before_the_capture_beside_a_streaming_monitor_is_rtt() {
    // The RTT monitor's handshake predates the capture, the streaming monitor's does not
    // (it reconnected during it): the host's streaming monitor to the node still counts.
    let conns = vec![
        conn(1, "10.0.0.5:5000", N1)
            .with_handshake("app", "PyMongo", "4.10.1")
            .with_awaitable(2, true, 1),
        conn(2, "10.0.0.5:5001", N1)
            .without_syn()
            .with_plain_hellos(3, 10.0),
    ];
    let v = classify(&boxed(&conns), None);
    assert_eq!(v[1].class, Class::RttMonitor, "{}", v[1].evidence);
    assert!(
        v[1].evidence.contains("predates") || v[1].evidence.contains("before the capture"),
        "{}",
        v[1].evidence
    );
}

#[test]
fn plain_hello_without_streaming_peer_is_polling() {
    let conns = vec![conn(2, "10.0.0.5:5001", N1)
        .with_handshake("app", "PyMongo", "4.10.1")
        .with_plain_hellos(3, 10.0)];
    let v = &classify(&boxed(&conns), None)[0];
    assert_eq!(
        (v.class, v.confidence),
        (Class::PollingMonitor, Confidence::High)
    );
}

#[test]
fn a_client_streaming_to_other_nodes_has_an_unseen_streaming_monitor_here() {
    // One MongoClient streams to every node that supports it: a plain-hello connection to a
    // streaming-capable node, its client streaming to another, is the RTT monitor beside a
    // streaming monitor the capture did not show (no reply in the window, or lost). Said
    // at medium confidence: two MongoClients under one name could also do this.
    let conns = vec![
        conn(1, "10.0.0.5:5000", N2)
            .with_handshake("app", "PyMongo", "4.10.1")
            .with_awaitable(2, true, 1),
        conn(2, "10.0.0.5:5001", N1)
            .with_handshake("app", "PyMongo", "4.10.1")
            .with_plain_hellos(3, 10.0),
    ];
    let v = &classify(&boxed(&conns), None)[1];
    assert_eq!(
        (v.class, v.confidence),
        (Class::RttMonitor, Confidence::Medium)
    );
    assert!(v.evidence.contains("went unseen"), "{}", v.evidence);
}

#[test]
fn polling_reason_mentions_legacy_server() {
    let mut o = conn(1, "10.0.0.5:5000", N1)
        .with_handshake("app", "PyMongo", "4.0")
        .with_plain_hellos(2, 10.0);
    std::sync::Arc::make_mut(o.server_info.as_mut().unwrap()).max_wire_version = Some(8);
    std::sync::Arc::make_mut(o.server_info.as_mut().unwrap()).topology_version = false;
    let v = one(o);
    assert_eq!(v.class, Class::PollingMonitor);
    assert!(v.evidence.contains("below 4.4"), "{}", v.evidence);
}

#[test]
fn operations_make_a_pool_connection() {
    let v = one(conn(1, "10.0.0.5:5000", N1)
        .with_handshake("app", "PyMongo", "4.10.1")
        .with_auth()
        .with_ops("find", 7));
    assert_eq!(v.class, Class::Pool);
    assert!(v.evidence.contains("find 7"), "{}", v.evidence);
}

#[test]
fn hello_checks_and_operations_on_one_connection_are_single_threaded() {
    let v = one(conn(1, "10.0.0.5:5000", N1)
        .with_handshake("app", "mongoc", "1.23.1")
        .with_plain_hellos(2, 60.0)
        .with_ops("insert", 3));
    assert_eq!(v.class, Class::SingleThreaded);
}

#[test]
fn lone_connection_per_node_without_monitors_is_single_threaded_for_libmongoc() {
    let conns = vec![
        conn(1, "10.0.0.5:5000", N1)
            .with_handshake("php", "mongoc / ext-mongodb:PHP", "1.23.1")
            .with_ops("find", 2),
        conn(2, "10.0.0.5:5001", N2)
            .with_handshake("php", "mongoc / ext-mongodb:PHP", "1.23.1")
            .with_ops("find", 1),
    ];
    let v = classify(&boxed(&conns), None);
    assert_eq!(v[0].class, Class::SingleThreaded, "{}", v[0].evidence);
    assert_eq!(v[1].class, Class::SingleThreaded);
}

#[test]
fn the_perl_driver_without_monitors_is_single_threaded_and_a_pooled_driver_is_not() {
    // Two workers' links to two nodes each, operations only: no check seen yet.
    let links = |driver: &str| -> Vec<Observations> {
        let mut conns = Vec::new();
        for (id, (port, node)) in [(5000, N1), (5001, N2), (5002, N1), (5003, N2)]
            .into_iter()
            .enumerate()
        {
            conns.push(
                conn(id as u64 + 1, &format!("10.0.0.5:{port}"), node)
                    .with_handshake("app", driver, "2.2.2")
                    .with_ops("find", 2),
            );
        }
        conns
    };
    let perl = classify(&boxed(&links("MongoDB Perl Driver")), None);
    assert!(
        perl.iter().all(|v| v.class == Class::SingleThreaded),
        "{:?}",
        perl.iter().map(|v| &v.evidence).collect::<Vec<_>>()
    );
    // The same shape from a driver with monitoring threads: its monitors are merely not
    // in the capture, so these are pool connections.
    let ruby = classify(&boxed(&links("mongo-ruby-driver")), None);
    assert!(ruby.iter().all(|v| v.class == Class::Pool));
}

#[test]
fn authenticated_idle_connection_is_pool() {
    let v = one(conn(1, "10.0.0.5:5000", N1)
        .with_handshake("app", "PyMongo", "4.10.1")
        .with_auth());
    assert_eq!(v.class, Class::Pool);
    assert!(v.evidence.contains("never authenticate"), "{}", v.evidence);
}

#[test]
fn unauthenticated_handshake_only_beside_authenticated_pool_is_a_monitor() {
    let conns = vec![
        conn(1, "10.0.0.5:5000", N1)
            .with_handshake("app", "Java", "5.1")
            .with_awaitable(1, false, 0),
        conn(2, "10.0.0.5:5001", N1)
            .with_handshake("app", "Java", "5.1")
            .with_auth()
            .with_ops("find", 1),
        conn(3, "10.0.0.5:5002", N1)
            .with_handshake("app", "Java", "5.1")
            .lived(1000.0, Some(1002.0)),
    ];
    let v = classify(&boxed(&conns), None);
    assert_eq!(v[2].class, Class::RttMonitor, "{}", v[2].evidence);
}

#[test]
fn long_idle_handshake_only_is_pool_short_one_is_unknown() {
    let idle = conn(1, "10.0.0.5:5000", N1)
        .with_handshake("app", "PyMongo", "4.10.1")
        .lived(1000.0, Some(1040.0));
    assert_eq!(one(idle).class, Class::Pool);
    let short = conn(1, "10.0.0.5:5000", N1)
        .with_handshake("app", "PyMongo", "4.10.1")
        .lived(1000.0, Some(1002.0));
    let v = one(short);
    assert_eq!(v.class, Class::Unknown);
    assert!(v.evidence.contains("look alike"), "{}", v.evidence);
}

#[test]
fn internal_client_and_internal_commands() {
    let mut o = conn(1, "10.0.0.9:40000", N2).with_handshake("", "NetworkInterfaceTL", "7.0");
    std::sync::Arc::make_mut(o.handshake.as_mut().unwrap()).internal_client = true;
    assert_eq!(one(o).class, Class::Internal);
    let o = conn(1, "10.0.0.9:40000", N2)
        .without_syn()
        .with_ops("replSetHeartbeat", 5);
    assert_eq!(one(o).class, Class::Internal);
}

fn internal(driver: &str) -> Observations {
    let mut o = conn(1, "10.0.0.9:40000", N2).with_handshake("", driver, "7.0.14");
    let hs = std::sync::Arc::make_mut(o.handshake.as_mut().unwrap());
    hs.internal_client = true;
    hs.app_name = None;
    o
}

#[test]
fn internal_sub_roles_follow_what_servers_send() {
    let v = one(internal("NetworkInterfaceTL-ReplNetwork").with_ops("replSetHeartbeat", 6));
    assert_eq!(
        (v.class, v.role),
        (Class::Internal, Some(Role::ReplicationHeartbeat))
    );
    assert!(
        v.evidence.contains("replication-heartbeat"),
        "{}",
        v.evidence
    );

    let mut o = internal("MongoDB Internal Client")
        .with_ops("find", 1)
        .with_ops("getMore", 9);
    o.cluster.tails_oplog = true;
    o.cluster.oplog_term = true;
    let v = one(o);
    assert_eq!(v.role, Some(Role::OplogFetcher));
    assert!(v.evidence.contains("local.oplog.rs"), "{}", v.evidence);

    let v =
        one(internal("NetworkInterfaceTL-ReplCoordExternNetwork")
            .with_ops("replSetUpdatePosition", 4));
    assert_eq!(v.role, Some(Role::ReplicationReporter));

    let v = one(internal("NetworkInterfaceTL-TaskExecutorPool-0").with_ops("find", 3));
    assert_eq!(v.role, Some(Role::ShardingPool));
    let v = one(internal("NetworkInterfaceTL-Other").with_ops("_shardsvrMoveRange", 1));
    assert_eq!(v.role, Some(Role::ShardingPool));
    let v = one(internal("NetworkInterfaceTL-Other").with_ops("ping", 1));
    assert_eq!(v.role, Some(Role::Other));

    // Other classes carry no role.
    let v = one(conn(2, "10.0.0.5:5000", N1)
        .with_handshake("app", "PyMongo", "4.20.1")
        .with_ops("find", 2));
    assert_eq!((v.class, v.role), (Class::Pool, None));
}

#[test]
fn oplog_tailing_without_a_handshake() {
    // A member's fetcher: the replication term gives it away.
    let mut o = conn(1, "10.0.0.9:40000", N2)
        .without_syn()
        .with_ops("getMore", 5);
    o.cluster.tails_oplog = true;
    o.cluster.oplog_term = true;
    let v = one(o);
    assert_eq!(
        (v.class, v.role, v.confidence),
        (Class::Internal, Some(Role::OplogFetcher), Confidence::High)
    );
    // Without the term an application tailing the oplog looks alike: lower confidence.
    let mut o = conn(1, "10.0.0.9:40000", N2)
        .without_syn()
        .with_ops("getMore", 5);
    o.cluster.tails_oplog = true;
    let v = one(o);
    assert_eq!(
        (v.class, v.confidence),
        (Class::Internal, Confidence::Medium)
    );
    // With an application's handshake (no internalClient), oplog tailing is its work.
    let mut o = conn(1, "10.0.0.5:5000", N2)
        .with_handshake("meteor", "nodejs", "6.10.0")
        .with_ops("getMore", 5);
    o.cluster.tails_oplog = true;
    assert_eq!(one(o).class, Class::Pool);
}

#[test]
fn load_balanced_handshake_is_pool_even_with_hellos() {
    let mut o = conn(1, "10.0.0.5:5000", N1)
        .with_handshake("app", "nodejs", "6.10.0")
        .with_plain_hellos(2, 10.0);
    std::sync::Arc::make_mut(o.handshake.as_mut().unwrap()).load_balanced = true;
    let v = one(o);
    assert_eq!(v.class, Class::Pool);
    assert!(v.evidence.contains("loadBalanced"));
}

#[test]
fn nothing_decoded_is_unknown_and_says_why() {
    let mut o = conn(1, "10.0.0.5:5000", N1);
    o.client_traffic.bytes = 500;
    let v = one(o);
    assert_eq!(v.class, Class::Unknown);
    assert!(v.evidence.contains("no MongoDB message could be decoded"));
    let v = one(conn(1, "10.0.0.5:5000", N1).without_syn());
    assert!(v.evidence.contains("capture window"), "{}", v.evidence);
}

#[test]
fn mid_stream_ops_without_handshake_are_pool_and_say_so() {
    let conns = vec![
        conn(1, "10.0.0.5:5000", N1)
            .without_syn()
            .with_awaitable(1, true, 1),
        conn(2, "10.0.0.5:5001", N1)
            .without_syn()
            .with_ops("find", 4),
    ];
    let v = classify(&boxed(&conns), None);
    assert_eq!(v[1].class, Class::Pool);
    assert!(
        v[1].evidence.contains("before the capture"),
        "{}",
        v[1].evidence
    );
}

#[test]
fn client_id_follows_the_contract() {
    let o = conn(1, "10.0.0.5:5000", N1).with_handshake("orders-api", "PyMongo", "4.20.0");
    assert_eq!(ClientKey::of(&o).id(), "10.0.0.5|orders-api|PyMongo 4.20.0");
    let o = conn(1, "[::1]:5000", N1);
    assert_eq!(ClientKey::of(&o).id(), "::1||");
}

#[test]
fn idle_until_the_end_of_a_long_capture_is_pool() {
    // Only its handshake, long ago: silence up to the capture's end is what counts.
    let o = conn(1, "10.0.0.5:5000", N1)
        .with_handshake("app", "nodejs", "7.9.0")
        .lived(1000.0, None);
    let mut o = o;
    o.last_seen = 1000.0;
    assert_eq!(
        classify(
            &[Box::new(o.clone())],
            Some(Window {
                start: 999.0,
                end: 1002.0
            })
        )[0]
        .class,
        Class::Unknown
    );
    let v = classify(
        &[Box::new(o)],
        Some(Window {
            start: 999.0,
            end: 1060.0,
        }),
    )
    .remove(0);
    assert_eq!(v.class, Class::Pool, "{}", v.evidence);
    assert!(v.evidence.contains("idle for 60.0 s"), "{}", v.evidence);
}

#[test]
fn silent_through_a_long_window_is_an_idle_pool_connection() {
    let mut o = conn(1, "10.0.0.5:5000", N1).without_syn();
    o.closed = Some(1029.0);
    let w = Some(Window {
        start: 1000.0,
        end: 1030.0,
    });
    let v = classify(&[Box::new(o.clone())], w).remove(0);
    assert_eq!(v.class, Class::Pool);
    assert_eq!(v.confidence, Confidence::Low);
    assert!(
        v.evidence.contains("inferred") && v.evidence.contains("until it closed"),
        "{}",
        v.evidence
    );
    // Watched for less than 1.2 heartbeats: it could still be a monitor.
    let short = Some(Window {
        start: 1020.0,
        end: 1030.0,
    });
    assert_eq!(classify(&[Box::new(o)], short)[0].class, Class::Unknown);
}

#[test]
fn a_single_threaded_clients_handshake_only_connections_are_single_threaded() {
    let driver = "mongoc";
    let conns = vec![
        conn(1, "10.0.0.5:5000", N1)
            .with_handshake("c", driver, "1.23.1")
            .with_ops("insert", 4),
        conn(2, "10.0.0.5:5001", N2).with_handshake("c", driver, "1.23.1"),
    ];
    let v = classify(&boxed(&conns), None);
    assert_eq!(v[0].class, Class::SingleThreaded, "{}", v[0].evidence);
    assert_eq!(v[1].class, Class::SingleThreaded, "{}", v[1].evidence);
    // The same shape from a driver with monitors is not single-threaded.
    let mut with_monitor = conns.clone();
    with_monitor.push(
        conn(3, "10.0.0.5:5002", N1)
            .with_handshake("c", driver, "1.23.1")
            .with_awaitable(1, true, 1),
    );
    assert_eq!(classify(&boxed(&with_monitor), None)[0].class, Class::Pool);
}

#[test]
fn sasl_mechanism_negotiation_marks_a_pool_connection() {
    let mut o = conn(1, "10.0.0.5:5000", N1).with_handshake("app", "Java", "5.1");
    std::sync::Arc::make_mut(o.handshake.as_mut().unwrap()).sasl_supported_mechs =
        Some("admin.app".into());
    let v = one(o);
    assert_eq!(v.class, Class::Pool);
    assert!(v.evidence.contains("saslSupportedMechs"), "{}", v.evidence);
}

#[test]
fn application_issued_hello_on_a_pooled_clients_connection_is_pool() {
    // A health check running isMaster on pool connections of a client that monitors.
    let conns = vec![
        conn(1, "10.0.0.5:5000", N1)
            .with_handshake("app", "PyMongo", "4.20.1")
            .with_awaitable(2, true, 2),
        conn(2, "10.0.0.5:5001", N1)
            .with_handshake("app", "PyMongo", "4.20.1")
            .with_plain_hellos(3, 5.0)
            .with_ops("find", 10),
    ];
    let v = classify(&boxed(&conns), None);
    assert_eq!(v[1].class, Class::Pool, "{}", v[1].evidence);
    assert!(
        v[1].evidence.contains("came from the application"),
        "{}",
        v[1].evidence
    );
}

#[test]
fn go_drivers_from_1_4_to_1_12_poll_with_an_rtt_monitor() {
    for (version, paired) in [
        ("v1.3.5", false),
        ("v1.4.0", true),
        ("v1.8.4", true),
        ("v1.12.1", true),
        ("v1.13.0", false),
        ("v1.17.3", false),
        ("v2.2.0", false),
        ("1.8.4", true),
        ("v1.11.0-prerelease", true),
        ("garbage", false),
    ] {
        assert_eq!(
            polls_with_rtt_monitor("mongo-go-driver", version),
            paired,
            "{version}"
        );
    }
    assert!(!polls_with_rtt_monitor("PyMongo|c", "v1.8.4"));
    // A wrapping library appends its own name and version (the handshake spec).
    assert!(polls_with_rtt_monitor(
        "mongo-go-driver|mgm",
        "v1.8.4|3.5.0"
    ));
}

#[test]
fn wrapped_drivers_are_judged_by_the_driver_underneath() {
    // Mongoose 5 on the Node.js driver 3.x (legacy topology by default), Mongoose 8 on 6.x.
    assert!(may_use_legacy_node_topology(
        "nodejs|Mongoose",
        "3.7.4|5.13.22"
    ));
    assert!(!may_use_legacy_node_topology(
        "nodejs|Mongoose",
        "6.9.0|8.2.1"
    ));
    assert!(may_use_legacy_node_topology("nodejs", "3.6.12"));
    assert!(!may_use_legacy_node_topology("Mongoose", "3.7.4"));
}

/// PyMongo's AsyncMongoClient: pool connections say "PyMongo|c|async", its monitors
/// "PyMongo|c" (lab case pymongo-async). One key for both; other drivers untouched.
#[test]
fn pymongo_async_marker_is_not_part_of_the_client_key() {
    let key = |name: &'static str, version: &'static str| {
        let (n, v) = without_async_marker(Some(name), Some(version));
        (n.unwrap().into_owned(), v.unwrap().into_owned())
    };
    let same = ("PyMongo|c".to_string(), "4.20.1|".to_string());
    assert_eq!(key("PyMongo|c|async", "4.20.1||"), same);
    assert_eq!(key("PyMongo|c", "4.20.1|"), same);
    assert_eq!(
        key("PyMongo|async", "4.9.0|"),
        ("PyMongo".into(), "4.9.0".into())
    );
    // A wrapper's DriverInfo appended after the marker.
    assert_eq!(
        key("PyMongo|c|async|Beanie", "4.20.1|||1.26"),
        ("PyMongo|c|Beanie".into(), "4.20.1||1.26".into())
    );
    // A version without the matching empty part keeps its own.
    assert_eq!(
        key("PyMongo|async", "4.9.0"),
        ("PyMongo".into(), "4.9.0".into())
    );
    assert_eq!(
        key("nodejs|async", "6.0.0|"),
        ("nodejs|async".into(), "6.0.0|".into())
    );
}

const N3: &str = "10.0.0.11:27017";

/// A client without monitors: one connection mixing checks and operations to N1, links
/// that only check to N2 and N3 (libmongoc with a short heartbeat). Its driver is one
/// that has both modes, so the traffic decides.
fn checks_and_one_busy_link(busy_links: u64) -> Vec<Observations> {
    let mut conns: Vec<Observations> = (0..busy_links)
        .map(|k| {
            conn(k + 1, &format!("10.0.0.5:{}", 5000 + k), N1)
                .with_handshake("app", "mongoc", "1.23.1")
                .with_plain_hellos(5, 2.0)
                .with_ops("insert", 20)
        })
        .collect();
    for (k, node) in [N2, N3].into_iter().enumerate() {
        conns.push(
            conn(10 + k as u64, &format!("10.0.0.5:{}", 6000 + k), node)
                .with_handshake("app", "mongoc", "1.23.1")
                .with_plain_hellos(5, 2.0),
        );
    }
    conns
}

#[test]
fn check_only_links_beside_an_unmonitored_busy_one_are_a_single_threaded_client() {
    let v = classify(&boxed(&checks_and_one_busy_link(1)), None);
    for verdict in &v {
        assert_eq!(verdict.class, Class::SingleThreaded, "{}", verdict.evidence);
    }
    assert!(v[1]
        .evidence
        .contains("10.0.0.9:27017 mixes hello checks with operations"));
}

#[test]
fn uneven_links_without_monitors_are_a_pool_that_checks_over_itself() {
    // Two busy connections at once to N1, one link to each other node: mgo, the Node.js
    // driver 3.x legacy topology. Not two single-threaded clients.
    let v = classify(&boxed(&checks_and_one_busy_link(2)), None);
    for verdict in &v {
        assert_eq!(verdict.class, Class::Pool, "{}", verdict.evidence);
    }
    assert!(v[0].evidence.contains("held 2 connections at once"));
}

#[test]
fn a_polling_monitor_beside_the_busy_link_keeps_the_client_pooled() {
    let mut conns = checks_and_one_busy_link(1);
    conns.push(
        conn(20, "10.0.0.5:7000", N1)
            .with_handshake("app", "mongoc", "1.23.1")
            .with_plain_hellos(5, 2.0),
    );
    let v = classify(&boxed(&conns), None);
    assert_eq!(v[0].class, Class::Pool, "{}", v[0].evidence);
    assert_eq!(v[3].class, Class::PollingMonitor, "{}", v[3].evidence);
}

#[test]
fn drivers_without_a_pooled_mode_have_no_monitors_whatever_the_capture_lost() {
    // PHP's busy link lost its handshake to the capture (keyed apart); its links that only
    // check are still a single-threaded client's, not polling monitors.
    for driver in ["mongoc / ext-mongodb:PHP ", "MongoDB Perl Driver"] {
        let conns = [N2, N3].map(|node| {
            conn(1, "10.0.0.5:6000", node)
                .with_handshake("app", driver, "1.15.0")
                .with_plain_hellos(5, 2.0)
        });
        let v = classify(&boxed(&conns), None);
        for verdict in &v {
            assert_eq!(
                verdict.class,
                Class::SingleThreaded,
                "{driver}: {}",
                verdict.evidence
            );
            assert!(
                verdict.evidence.contains("no pooled mode"),
                "{}",
                verdict.evidence
            );
        }
    }
}

#[test]
fn pool_only_housekeeping_after_the_handshake_is_a_pool_connection() {
    let v = one(conn(1, "10.0.0.5:5000", N1)
        .with_handshake("app", "mongo-ruby-driver", "2.5.1")
        .with_ops("endSessions", 1)
        .lived(0.0, Some(0.5)));
    assert_eq!(v.class, Class::Pool, "{}", v.evidence);
    assert!(v.evidence.contains("endSessions 1"), "{}", v.evidence);
    // Java 3.x's monitors follow their handshake with these: they say nothing, and half
    // a second is too short to call the connection idle.
    let v = one(conn(1, "10.0.0.5:5000", N1)
        .with_handshake("app", "mongo-java-driver", "3.6.4")
        .with_ops("getlasterror", 1)
        .lived(0.0, Some(0.5)));
    assert_eq!(v.class, Class::Unknown, "{}", v.evidence);
}
