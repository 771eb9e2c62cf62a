//! Keyless TLS: every TLS case of the capture lab read WITHOUT its key log, each
//! connection's inferred role compared with the truth the lab derived from the drivers
//! (thread names, call stacks, the server's log). The classifier must never be wrong at
//! `high` confidence, must reach a measured accuracy, and every connection must say it
//! was inferred from record shapes. The per-class table printed here is the one in the
//! README (`cargo test --test keyless -- --nocapture`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use conn_attrib::attribute::Options;
use conn_attrib::report::Meta;
use conn_attrib::{analyze_path, conclude, AnalyzerConfig};
use serde_json::Value;

mod common;

/// Overall share of connections whose role is inferred right, measured on the lab's TLS
/// cases (121 of 121 right on 11 cases when this was written; the floor leaves a little
/// room for new cases whose shapes are ambiguous, which must then say so with a lower
/// confidence).
const MIN_ACCURACY: f64 = 0.95;

/// Every lab case whose connections are TLS (the truth records each one's TLS version).
fn tls_cases() -> Vec<(PathBuf, Value)> {
    let cases: Vec<(PathBuf, Value)> = common::lab_cases()
        .into_iter()
        .filter(|(_, t)| {
            t["connections"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["tls"].is_object()))
        })
        .collect();
    assert!(cases.len() >= 4, "the lab's TLS cases are missing");
    cases
}

/// The JSON report of a case with no key log.
fn keyless_report(dir: &Path, t: &Value) -> Value {
    let capture = dir.join(t["capture"].as_str().unwrap());
    let analysis =
        analyze_path(capture.to_str().unwrap(), AnalyzerConfig::default()).expect("readable");
    let r = conclude(analysis, Options::default(), Meta::default());
    serde_json::from_str(&conn_attrib::report::to_json(&r)).unwrap()
}

#[derive(Default)]
struct Tally {
    total: u32,
    right: u32,
    unknown: u32,
    by_confidence: BTreeMap<String, (u32, u32)>,
}

#[test]
fn keyless_roles_are_never_confidently_wrong_and_mostly_right() {
    let mut per_class: BTreeMap<String, Tally> = BTreeMap::new();
    let mut confidently_wrong = Vec::new();
    let mut not_said = Vec::new();
    let mut cases = Vec::new();
    for (dir, t) in tls_cases() {
        let case = t["case"].as_str().unwrap().to_string();
        let r = keyless_report(&dir, &t);
        let by_client = common::connections_by_client(&r);
        for tc in t["connections"].as_array().unwrap() {
            let client = tc["client"].as_str().unwrap();
            let role = tc["role"].as_str().unwrap().to_string();
            let c = by_client
                .get(client)
                .unwrap_or_else(|| panic!("{case}: {client} not found"));
            let class = c["class"].as_str().unwrap();
            let confidence = c["confidence"].as_str().unwrap().to_string();
            let evidence = c["evidence"].as_str().unwrap();
            // In a cut capture, a connection idle through the window showed no TLS record:
            // it is read by its silence, as a plaintext one is.
            let idle_in_window = tc["opened_before_capture"] == true && c["tls"].is_null();
            if !idle_in_window {
                assert_eq!(c["tls"]["decrypted"], false, "{case}: {client}");
                if !evidence.starts_with("inferred from TLS record shapes") {
                    not_said.push(format!("{case}: {client}: {evidence}"));
                }
            }
            // TLS 1.3 NewSessionTickets and the client's Finished are not replies: a
            // connection that only answers requests never shows a pushed server flight.
            if role != "streaming-monitor" && !idle_in_window {
                let pushed = &c["observations"]["shape"]["server"]["pushed"];
                assert_eq!(
                    pushed, 0,
                    "{case}: {client} ({role}): {}",
                    c["observations"]["shape"]
                );
            }
            let right = class == role;
            if !right && confidence == "high" {
                confidently_wrong.push(format!(
                    "{case}: {client} is {role} ({}), inferred {class} at high confidence: {evidence}",
                    tc["derived_from"]
                ));
            }
            if !right {
                eprintln!(
                    "{case}: {client}: {role} inferred as {class} ({confidence}): {evidence}"
                );
            }
            let tally = per_class.entry(role).or_default();
            tally.total += 1;
            tally.right += u32::from(right);
            tally.unknown += u32::from(class == "unknown");
            let by = tally.by_confidence.entry(confidence).or_default();
            by.0 += 1;
            by.1 += u32::from(right);
        }
        cases.push(case);
    }

    eprintln!(
        "keyless accuracy on {} TLS lab cases: {}",
        cases.len(),
        cases.join(", ")
    );
    eprintln!("| class (truth) | connections | inferred right | unknown | high | medium | low |");
    eprintln!("|---|---|---|---|---|---|---|");
    let (mut total, mut right) = (0, 0);
    for (class, t) in &per_class {
        let conf = |c: &str| {
            t.by_confidence
                .get(c)
                .map_or("-".to_string(), |(n, ok)| format!("{ok}/{n} right"))
        };
        eprintln!(
            "| `{class}` | {} | {} ({:.0}%) | {} | {} | {} | {} |",
            t.total,
            t.right,
            100.0 * t.right as f64 / t.total as f64,
            t.unknown,
            conf("high"),
            conf("medium"),
            conf("low")
        );
        total += t.total;
        right += t.right;
    }
    let accuracy = right as f64 / total as f64;
    eprintln!(
        "| all | {total} | {right} ({:.1}%) | | | | |",
        100.0 * accuracy
    );

    assert!(not_said.is_empty(), "{}", not_said.join("\n"));
    assert!(
        confidently_wrong.is_empty(),
        "wrong at high confidence:\n{}",
        confidently_wrong.join("\n")
    );
    assert!(total >= 121, "only {total} TLS connections checked");
    assert!(
        accuracy >= MIN_ACCURACY,
        "{right} of {total} right ({:.1}%), below {:.0}%",
        100.0 * accuracy,
        100.0 * MIN_ACCURACY
    );
    // Every class the TLS lab has is inferred right at least once.
    for (class, t) in &per_class {
        assert!(t.right > 0, "{class}: never inferred right");
    }
}

#[test]
fn keyless_clients_are_grouped_by_host_and_tls_fingerprint() {
    for (dir, t) in tls_cases() {
        let case = t["case"].as_str().unwrap();
        let r = keyless_report(&dir, &t);
        for tclient in t["clients"].as_array().unwrap() {
            let members = common::truth_members(&t, &tclient["key"]);
            // All of one driver instance's connections land in one keyless client...
            let ids: std::collections::BTreeSet<&str> = r["connections"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| members.contains(&c["client"].as_str().unwrap()))
                .map(|c| c["client_id"].as_str().unwrap())
                .collect();
            assert_eq!(
                ids.len(),
                1,
                "{case}: {} split into {ids:?}",
                tclient["key"]
            );
            let id = ids.into_iter().next().unwrap();
            let client = common::client_by_id(&r, id);
            let cut = t["connections"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["opened_before_capture"] == true);
            if cut {
                // No ClientHello in a cut capture: no fingerprint, the host alone.
                assert!(client["tls_fingerprint"].is_null(), "{case}: {id}");
                assert_eq!(id, format!("{}||", client["host"].as_str().unwrap()));
            } else {
                // ...named by the host and the ClientHello's JA4, which is also in `tls`.
                let ja4 = client["tls_fingerprint"].as_str().unwrap();
                assert!(ja4.starts_with('t') && ja4.len() == 36, "{case}: {ja4}");
                assert_eq!(
                    id,
                    format!("{}||tls:{ja4}", client["host"].as_str().unwrap())
                );
            }
            assert!(client["app_name"].is_null() && client["driver"].is_null());
            // The formula check runs on it as on a plaintext client. The one mode shapes
            // cannot show is load-balanced: `loadBalanced: true` is only said in the
            // encrypted handshake, and a client without monitors looks like one whose
            // monitors are not in the capture; the client must then say it cannot tell.
            if tclient["mode"] == "load-balanced" {
                assert_eq!(client["mode"], "unknown", "{case}: {id}");
                continue;
            }
            assert_eq!(client["mode"], tclient["mode"], "{case}: {id}");
            assert_eq!(
                client["mongo_clients"], tclient["mongo_clients"],
                "{case}: {id}"
            );
        }
    }
}
