//! The cluster side on a real recording (testdata/lab/cluster-stale): a replica set's own
//! connections as mongod opens them, a member removed during the capture, and two
//! dropConnections sent by PyMongo (one correct, one with an element missing its port).
//! Asserted against the truth the lab wrote from the test server's own records of what
//! it opened, removed and dropped (scripts/lab/lab.py), never from conn-attrib.

use std::collections::{BTreeMap, BTreeSet};

use conn_attrib::attribute::Options;
use conn_attrib::report::{to_json, Meta};
use conn_attrib::{analyze_path, conclude, AnalyzerConfig};
use serde_json::Value;

const CASE: &str = "testdata/lab/cluster-stale";

fn truth() -> Value {
    serde_json::from_slice(&std::fs::read(format!("{CASE}/truth.json")).unwrap()).unwrap()
}

fn report() -> Value {
    let analysis =
        analyze_path(&format!("{CASE}/capture.pcap"), AnalyzerConfig::default()).expect("readable");
    let r = conclude(analysis, Options::default(), Meta::default());
    serde_json::from_str(&to_json(&r)).unwrap()
}

#[test]
fn internal_connections_have_their_role_and_member() {
    let (t, r) = (truth(), report());
    let found: BTreeMap<&str, &Value> = r["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["client"].as_str().unwrap(), c))
        .collect();
    let mut internal = 0;
    for tc in t["connections"].as_array().unwrap() {
        let c = found[tc["client"].as_str().unwrap()];
        if tc["role"] == "internal" {
            internal += 1;
            assert_eq!(c["class"], "internal", "{}", c["evidence"]);
            assert_eq!(
                c["role"], tc["sub_role"],
                "{}: {}",
                tc["client"], c["evidence"]
            );
            assert_eq!(c["member"], tc["member"], "{}", tc["client"]);
        } else {
            assert!(
                c.get("role").is_none(),
                "{}: role on a {}",
                tc["client"],
                c["class"]
            );
        }
    }
    assert_eq!(
        internal, 10,
        "3 members' heartbeats, 2 fetchers, 2 reporters"
    );
}

#[test]
fn membership_stale_hosts_and_the_drop_plan() {
    let (t, r) = (truth(), report());
    let cluster = &r["cluster"];
    let reconfig = &t["cluster"]["reconfigs"][0];
    let m = &cluster["membership"][0];
    assert_eq!(m["set_version"], reconfig["set_version"]);
    assert_eq!(m["members"], reconfig["hosts"]);
    assert_eq!(m["removed"][0], reconfig["removed"]);

    let expected: BTreeSet<&str> = t["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["stale"] == true)
        .map(|c| c["client"].as_str().unwrap())
        .collect();
    let stale: BTreeSet<&str> = cluster["stale"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["client"].as_str().unwrap())
        .collect();
    assert_eq!(stale, expected);
    assert!(
        expected.len() >= 2,
        "the case must show a stale member and a stale monitor"
    );

    // One plan per member still holding a stale connection: the one whose
    // dropConnections lacked the port.
    let holders: BTreeSet<&str> = t["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["stale"] == true && c["role"] == "internal")
        .map(|c| c["member"].as_str().unwrap())
        .collect();
    let plans = cluster["drop_connections"].as_array().unwrap();
    let members: BTreeSet<&str> = plans
        .iter()
        .map(|p| p["member"].as_str().unwrap())
        .collect();
    assert_eq!(members, holders);
    let removed = reconfig["removed"].as_str().unwrap();
    for p in plans {
        assert_eq!(
            p["command"],
            format!("db.adminCommand({{dropConnections: 1, hostAndPort: [\"{removed}\"]}})")
        );
        assert!(p["privilege"].as_str().unwrap().contains("dropConnections"));
        assert!(p["check"].as_str().unwrap().contains("connPoolStats"));
    }
}

#[test]
fn captured_drop_connections_are_linted_and_verified() {
    let (t, r) = (truth(), report());
    let seen = r["cluster"]["drop_connections_seen"].as_array().unwrap();
    let sent = t["cluster"]["drop_connections"].as_array().unwrap();
    assert_eq!(seen.len(), sent.len());
    for (s, truth) in seen.iter().zip(sent) {
        assert_eq!(s["member"], truth["member"]);
        assert_eq!(s["ok"], true);
        let targets: Vec<&str> = truth["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let dropped: BTreeSet<&str> = truth["dropped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let closed: BTreeSet<&str> = s["targeted"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| {
                c["closed_after_s"]
                    .as_f64()
                    .is_some_and(|d| (0.0..1.0).contains(&d))
            })
            .map(|c| c["client"].as_str().unwrap())
            .collect();
        // What the server dropped is what conn-attrib saw close right after.
        assert_eq!(closed, dropped, "{}", s["summary"]);
        if targets.iter().all(|t| t.contains(':')) {
            assert!(s["ignored"].as_array().unwrap().is_empty());
            assert!(s["corrected"].is_null());
        } else {
            // No port: silently ignored by the server; the connections stayed open.
            assert_eq!(s["ignored"].as_array().unwrap().len(), 1);
            let removed = t["cluster"]["reconfigs"][0]["removed"].as_str().unwrap();
            assert_eq!(s["corrected"], serde_json::json!([removed]));
            let missed = s["missed"].as_array().unwrap();
            assert!(!missed.is_empty() && missed.iter().all(|m| m["still_open"] == true));
        }
    }
}
