//! The analyzer over every real-driver capture in testdata/lab, asserted against the truth
//! files the lab derived from the drivers themselves and the test server's log
//! (scripts/lab/lab.py): every truth connection found with its 4-tuple, its handshake
//! metadata decoded, its class right; per client the mode, MongoClient instances, counts
//! per class, and the formula's expected total. TLS cases are read with the key log their
//! drivers wrote, and must then give exactly what a plaintext capture gives; without it,
//! their roles are inferred from record shapes and must never be wrong at high confidence
//! (tests/keyless.rs measures that inference's accuracy).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use conn_attrib::attribute::Options;
use conn_attrib::observe::KeyLogConfig;
use conn_attrib::report::Meta;
use conn_attrib::{analyze_path, conclude, AnalyzerConfig};
use serde_json::Value;

mod common;

/// Every case this file can read as the drivers did: a TLS case recorded without a key
/// log (its driver cannot write one) is read keyless only, by tests/keyless.rs.
fn cases() -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = common::lab_cases()
        .into_iter()
        .filter(|(_, t)| !common::is_keyless_only(t))
        .map(|(d, _)| d)
        .collect();
    assert!(dirs.len() >= 15, "the lab's cases are missing: {dirs:?}");
    dirs
}

fn truth(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("truth.json")).unwrap()).unwrap()
}

/// Run the whole pipeline on a case; minPoolSize as the case gave it to the driver, and
/// the key log the drivers wrote when the case is TLS.
fn report(dir: &Path, t: &Value, min_pool_size: Option<u32>) -> Value {
    let keylog = t["keylog"].as_str().map(|k| dir.join(k));
    report_with(dir, t, min_pool_size, keylog)
}

/// A lab case's truth and report, by the case's name.
fn case_report(name: &str) -> (Value, Value) {
    let dir = cases()
        .into_iter()
        .find(|d| d.ends_with(name))
        .unwrap_or_else(|| panic!("the lab's {name} case"));
    let t = truth(&dir);
    let r = report(&dir, &t, None);
    (t, r)
}

fn report_with(
    dir: &Path,
    t: &Value,
    min_pool_size: Option<u32>,
    keylog: Option<PathBuf>,
) -> Value {
    let capture = dir.join(t["capture"].as_str().unwrap());
    let mut config = AnalyzerConfig::default();
    config.observer.keylog = keylog.map(|path| KeyLogConfig {
        path,
        follow: false,
    });
    let analysis = analyze_path(capture.to_str().unwrap(), config).expect("readable");
    let opts = Options {
        min_pool_size,
        ..Options::default()
    };
    let r = conclude(analysis, opts, Meta::default());
    serde_json::from_str(&conn_attrib::report::to_json(&r)).unwrap()
}

#[test]
fn every_connection_is_found_and_classified_as_the_driver_used_it() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for dir in cases() {
        let t = truth(&dir);
        let case = t["case"].as_str().unwrap().to_string();
        let r = report(&dir, &t, None);
        let found = common::connections_by_client(&r);
        for tc in t["connections"].as_array().unwrap() {
            checked += 1;
            let client = tc["client"].as_str().unwrap();
            let Some(c) = found.get(client) else {
                failures.push(format!("{case}: {client} -> {} not found", tc["server"]));
                continue;
            };
            if c["server"] != tc["server"] {
                failures.push(format!(
                    "{case}: {client}: server {} != {}",
                    c["server"], tc["server"]
                ));
            }
            if c["class"] != tc["role"] {
                failures.push(format!(
                    "{case}: {client} -> {}: class {} but the driver used it as {} ({}); evidence: {}",
                    tc["server"], c["class"], tc["role"], tc["derived_from"], c["evidence"]
                ));
            }
            if !tc["opened_before_capture"].as_bool().unwrap() && c["client_id"] != tc["client_key"]
            {
                failures.push(format!(
                    "{case}: {client}: client_id {} != {}",
                    c["client_id"], tc["client_key"]
                ));
            }
        }
        let extra = found.len() as i64 - t["connections"].as_array().unwrap().len() as i64;
        if extra != 0 {
            failures.push(format!(
                "{case}: {extra} connections more than the truth lists"
            ));
        }
    }
    assert!(checked > 150, "only {checked} connections checked");
    assert!(
        failures.is_empty(),
        "{} of {checked} connections wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_client_matches_its_truth() {
    let mut failures = Vec::new();
    for dir in cases() {
        let t = truth(&dir);
        let case = t["case"].as_str().unwrap().to_string();
        for tclient in t["clients"].as_array().unwrap() {
            let min_pool = tclient["min_pool_size"].as_u64().map(|m| m as u32);
            let r = report(&dir, &t, min_pool);
            // The report's client holding most of this truth client's connections.
            let members = common::truth_members(&t, &tclient["key"]);
            let mut votes: BTreeMap<String, usize> = BTreeMap::new();
            for c in r["connections"].as_array().unwrap() {
                if members.contains(&c["client"].as_str().unwrap()) {
                    *votes
                        .entry(c["client_id"].as_str().unwrap().to_string())
                        .or_default() += 1;
                }
            }
            let Some((id, _)) = votes.iter().max_by_key(|(_, n)| **n) else {
                failures.push(format!("{case}: no connection of {} found", tclient["key"]));
                continue;
            };
            let client = common::client_by_id(&r, id);
            let key = tclient["key"].as_str().unwrap();
            if client["mode"] != tclient["mode"] {
                failures.push(format!(
                    "{case} {key}: mode {} != {}",
                    client["mode"], tclient["mode"]
                ));
            }
            if client["mongo_clients"] != tclient["mongo_clients"] {
                failures.push(format!(
                    "{case} {key}: mongo_clients {} != {}",
                    client["mongo_clients"], tclient["mongo_clients"]
                ));
            }
            for (class, n) in tclient["counts"].as_object().unwrap() {
                if client["counts"][class] != *n {
                    failures.push(format!(
                        "{case} {key}: {class} {} != {n}",
                        client["counts"][class]
                    ));
                }
            }
            if tclient["mode"] != "unknown"
                && client["expected"]["total"] != tclient["expected"]["total"]
            {
                failures.push(format!(
                    "{case} {key}: expected total {} != {} ({})",
                    client["expected"]["total"], tclient["expected"]["total"], client["verdict"]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn tls_cases() -> Vec<(PathBuf, Value)> {
    let cases: Vec<(PathBuf, Value)> = cases()
        .into_iter()
        .map(|d| {
            let t = truth(&d);
            (d, t)
        })
        .filter(|(_, t)| t["keylog"].is_string())
        .collect();
    assert!(cases.len() >= 4, "the lab's TLS cases are missing");
    cases
}

/// The lab's TLS 1.2 suites are named by OpenSSL in the PyMongo truth (the client's
/// `ssl` module reports OpenSSL names) and by IANA in the Node.js truth and the report.
fn iana(cipher: &str) -> String {
    match cipher {
        "ECDHE-RSA-AES128-GCM-SHA256" => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
        "ECDHE-RSA-CHACHA20-POLY1305" => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256".into(),
        other => other.into(),
    }
}

#[test]
fn tls_connections_are_decrypted_with_the_drivers_key_logs() {
    let mut failures = Vec::new();
    let mut versions = std::collections::BTreeSet::new();
    let mut found_mid_session = 0;
    for (dir, t) in tls_cases() {
        let case = t["case"].as_str().unwrap();
        let r = report(&dir, &t, None);
        let by_client = common::connections_by_client(&r);
        let mut cut = 0;
        let mut mid_session = 0;
        for tc in t["connections"].as_array().unwrap() {
            let client = tc["client"].as_str().unwrap();
            let Some(c) = by_client.get(client) else {
                failures.push(format!("{case}: {client} not found"));
                continue;
            };
            let tls = &c["tls"];
            let want_version = tc["tls"]["version"]
                .as_str()
                .unwrap()
                .replace("TLSv", "TLS ");
            let want_cipher = iana(tc["tls"]["cipher"].as_str().unwrap());
            if tc["opened_before_capture"] == true {
                cut += 1;
                // A cut capture: no ClientHello, so no client random to find the keys by.
                // A TLS 1.3 session is found by trying the key log's traffic secrets on its
                // records (no record at all from a connection idle through the window).
                let found = tls["decrypted"] == true
                    && tls["keys"] == "found-mid-session"
                    && tls["version"] == want_version.as_str()
                    && tls["cipher"] == want_cipher.as_str()
                    && tls["records_failed"] == 0;
                let searchable = want_version == "TLS 1.3";
                if !(tls.is_null() || (searchable && found) || (!searchable && !found)) {
                    failures.push(format!(
                        "{case}: {client}: began before the capture, yet tls {tls}"
                    ));
                }
                mid_session += usize::from(found);
                continue;
            }
            if tls["decrypted"] != true
                || tls["version"] != want_version.as_str()
                || tls["cipher"] != want_cipher.as_str()
                || tls["records_failed"] != 0
            {
                failures.push(format!(
                    "{case}: {client}: tls {tls} but the driver negotiated {want_version} {want_cipher}"
                ));
            }
            versions.insert(want_version);
        }
        // Every connection decrypted: the analysis has nothing to warn about, but those
        // that began before the capture, and it says why they were not decrypted.
        let warnings = r["warnings"].as_array().unwrap();
        let without_handshake = r["connections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["tls"]["keys"] == "no-handshake")
            .count();
        let clients: Vec<String> = t["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| format!("{} -> ", c["client"].as_str().unwrap()))
            .collect();
        let explained = warnings.iter().all(|w| {
            // Named client first, though a cut connection's server may speak first.
            (w["kind"] == "tls-no-key"
                && clients
                    .iter()
                    .any(|c| w["message"].as_str().unwrap().starts_with(c.as_str())))
                || (w["kind"] == "tls"
                    && w["message"].as_str().unwrap().contains(&format!(
                        "{without_handshake} of them began before the capture, so the ClientHello"
                    )))
        });
        if (cut == mid_session && !warnings.is_empty()) || (cut > 0 && !explained) {
            failures.push(format!("{case}: warnings {}", r["warnings"]));
        }
        found_mid_session += mid_session;
    }
    assert!(
        found_mid_session >= 7,
        "the cut TLS 1.3 cases' sessions are found: {found_mid_session}"
    );
    assert_eq!(
        versions.len(),
        2,
        "TLS 1.2 and 1.3 are both covered: {versions:?}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The lab's key-logged TLS 1.3 captures with their first 40% cut away, as a capture
/// started while the application runs: most connections' handshakes are then outside it.
/// Their sessions are found by trying the key log's traffic secrets on their records, so
/// they are decrypted and classified from their messages, across drivers, TLS stacks
/// (OpenSSL in C, PHP, Perl and Python; Go's crypto/tls; Node.js) and the three suites.
#[test]
fn tls13_sessions_begun_before_the_capture_are_found_in_the_key_log() {
    use conn_attrib::capture::{FileSource, PacketSource};
    let mut found = 0;
    let mut suites = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for (dir, t) in tls_cases() {
        let case = t["case"].as_str().unwrap();
        let tls13 = t["connections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["tls"]["version"] == "TLSv1.3");
        if !tls13 || case == "tls-cut-capture" {
            continue;
        }
        let capture = dir.join(t["capture"].as_str().unwrap());
        let times: Vec<f64> = {
            let mut source = FileSource::open(capture.to_str().unwrap()).unwrap();
            std::iter::from_fn(|| source.next_packet().unwrap().map(|p| p.ts.as_secs_f64()))
                .collect()
        };
        let cut = times[0] + (times[times.len() - 1] - times[0]) * 0.4;
        for keylog in [Some(dir.join("keylog.txt")), None] {
            let mut config = AnalyzerConfig::default();
            let with_keys = keylog.is_some();
            config.observer.keylog = keylog.map(|path| KeyLogConfig {
                path,
                follow: false,
            });
            let mut analyzer = conn_attrib::Analyzer::new(config);
            let mut source = FileSource::open(capture.to_str().unwrap()).unwrap();
            while let Some(p) = source.next_packet().unwrap() {
                if p.ts.as_secs_f64() >= cut {
                    analyzer.packet(&p);
                }
            }
            let report = conclude(analyzer.finish(), Options::default(), Meta::default());
            let r: Value = serde_json::from_str(&conn_attrib::report::to_json(&report)).unwrap();
            let truth = common::connections_by_client(&t);
            for c in r["connections"].as_array().unwrap() {
                if c["tls"]["keys"] != "found-mid-session" {
                    continue;
                }
                if !with_keys {
                    failures.push(format!("{case}: found without a key log: {c}"));
                    continue;
                }
                found += 1;
                suites.insert(c["tls"]["cipher"].as_str().unwrap().to_string());
                let role = &truth[c["client"].as_str().unwrap()]["role"];
                // A single-threaded client's hello comes every 60 s: a window without one
                // shows a connection doing operations only, as a pool connection does.
                let window_hides_it = role == "single-threaded" && c["class"] == "pool";
                if c["tls"]["records_failed"] != 0 || (c["class"] != *role && !window_hides_it) {
                    failures.push(format!(
                        "{case}: {} read as {} (truth {role}): {}",
                        c["client"], c["class"], c["tls"]
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(found >= 60, "sessions found mid-capture: {found}");
    // Every TLS 1.3 suite: AES-256-GCM (the lab server's choice), AES-128-GCM (Go's, when
    // the server follows the client) and ChaCha20-Poly1305 (Node.js offering only it).
    assert_eq!(suites.len(), 3, "{suites:?}");
}

/// Classes whose number per client is fixed by the driver's design and settings (one set of
/// monitors per node and MongoClient, one connection per node single-threaded), unlike pool
/// connections, whose number follows the workload's timing in each run.
const DESIGN_FIXED: [&str; 4] = [
    "streaming-monitor",
    "rtt-monitor",
    "polling-monitor",
    "single-threaded",
];

#[test]
fn decrypted_tls_cases_read_like_their_plaintext_twins() {
    // Each TLS case that repeats a plaintext case (same driver, mode and settings) must be
    // reported as that case is: decryption feeds the same pipeline, so the mode, MongoClient
    // instances, formula and monitor counts are the same, whatever TLS did to segmenting.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/lab");
    let mut failures = Vec::new();
    let mut twins = 0;
    for (dir, t) in tls_cases() {
        let Some(twin) = t["plaintext_twin"].as_str() else {
            continue;
        };
        twins += 1;
        let case = t["case"].as_str().unwrap();
        let twin_dir = root.join(twin);
        let twin_truth = truth(&twin_dir);
        assert!(
            twin_truth["keylog"].is_null(),
            "{case}: twin {twin} is not plaintext"
        );
        let tls = report(&dir, &t, None);
        let plain = report(&twin_dir, &twin_truth, None);
        let clients = |r: &Value| r["clients"].as_array().unwrap().clone();
        let (tls_clients, plain_clients) = (clients(&tls), clients(&plain));
        if tls_clients.len() != plain_clients.len() {
            failures.push(format!(
                "{case}: {} clients, {twin}: {}",
                tls_clients.len(),
                plain_clients.len()
            ));
            continue;
        }
        for (a, b) in tls_clients.iter().zip(&plain_clients) {
            for field in ["mode", "mongo_clients"] {
                if a[field] != b[field] {
                    failures.push(format!(
                        "{case} vs {twin}: {field} {} != {}",
                        a[field], b[field]
                    ));
                }
            }
            if a["expected"]["formula"] != b["expected"]["formula"] {
                failures.push(format!(
                    "{case} vs {twin}: formula {} != {}",
                    a["expected"]["formula"], b["expected"]["formula"]
                ));
            }
            for class in DESIGN_FIXED {
                if a["counts"][class] != b["counts"][class] {
                    failures.push(format!(
                        "{case} vs {twin}: {class} {} != {}",
                        a["counts"][class], b["counts"][class]
                    ));
                }
            }
            if (a["counts"]["pool"] == 0) != (b["counts"]["pool"] == 0) {
                failures.push(format!(
                    "{case} vs {twin}: pool {} vs {}",
                    a["counts"]["pool"], b["counts"]["pool"]
                ));
            }
            if a["counts"]["unknown"] != 0 {
                failures.push(format!("{case}: {} unknown", a["counts"]["unknown"]));
            }
        }
    }
    assert!(twins >= 7, "only {twins} TLS cases name a plaintext twin");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn without_the_key_log_roles_are_inferred_from_shapes_and_never_confidently_wrong() {
    for (dir, t) in tls_cases() {
        let case = t["case"].as_str().unwrap();
        let r = report_with(&dir, &t, None, None);
        let conns = r["connections"].as_array().unwrap();
        assert_eq!(
            conns.len(),
            t["connections"].as_array().unwrap().len(),
            "{case}"
        );
        let by_client = common::connections_by_client(&r);
        for tc in t["connections"].as_array().unwrap() {
            let c = by_client[tc["client"].as_str().unwrap()];
            let evidence = c["evidence"].as_str().unwrap();
            // A connection of a cut capture idle through the window showed no TLS record.
            if !(tc["opened_before_capture"] == true && c["tls"].is_null()) {
                assert_eq!(c["tls"]["decrypted"], false, "{case}");
                assert_eq!(c["tls"]["keys"], "no-key-log", "{case}");
                assert!(
                    evidence
                        .starts_with("inferred from TLS record shapes (not decrypted: no key log)"),
                    "{case}: {evidence}"
                );
            }
            // The handshake is plaintext: version, cipher and the client's TLS
            // fingerprint are known without keys, when it was captured.
            if tc["opened_before_capture"] == false {
                assert!(c["tls"]["version"].is_string(), "{case}: {}", c["tls"]);
                assert!(c["tls"]["ja4"].is_string(), "{case}: {}", c["tls"]);
            }
            assert!(
                c["class"] == tc["role"] || c["confidence"] != "high",
                "{case}: {} is {}, inferred {} at high confidence: {evidence}",
                tc["client"],
                tc["role"],
                c["class"]
            );
        }
        let tls_warning = r["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["kind"] == "tls")
            .unwrap_or_else(|| panic!("{case}: no tls warning"));
        let message = tls_warning["message"].as_str().unwrap();
        assert!(message.contains("no key log was given"), "{message}");
        assert!(
            message.contains("inferred from TLS record shapes"),
            "{message}"
        );
    }
}

#[test]
fn text_and_markdown_say_how_many_tls_connections_were_decrypted() {
    use conn_attrib::report::Format;
    let cases = tls_cases();
    let (dir, t) = cases.iter().find(|(_, t)| t["case"] == "tls-node").unwrap();
    let capture = dir.join(t["capture"].as_str().unwrap());
    for (keylog, want) in [
        (
            Some(dir.join("keylog.txt")),
            "TLS: 10 encrypted connections, all decrypted",
        ),
        (
            None,
            // 3 exhaust streams seen on a steady cadence are high; RTT checks and pool
            // connections are medium (tests/keyless.rs checks the classes).
            "TLS: 10 encrypted connections: 0 decrypted, 10 not decrypted; of those, 10 roles inferred from TLS record shapes (confidence: 3 high, 7 medium, 0 low) and 0 left unknown",
        ),
    ] {
        let mut config = AnalyzerConfig::default();
        config.observer.keylog = keylog.map(|path| KeyLogConfig {
            path,
            follow: false,
        });
        let analysis = analyze_path(capture.to_str().unwrap(), config).unwrap();
        let r = conclude(analysis, Options::default(), Meta::default());
        for format in [Format::Text, Format::Markdown, Format::Html] {
            let out = r.render(format);
            assert!(out.contains(want), "{format:?}:\n{out}");
        }
        // Without keys the client is named by its TLS stack (JA4) in the driver's place.
        let named_by_tls = r.render(Format::Text).contains("TLS t13i590900_");
        assert_eq!(named_by_tls, want.contains("not decrypted"));
    }
}

#[test]
fn another_sessions_key_log_decrypts_nothing_and_says_so() {
    // The TLS 1.3 PyMongo capture read with the Node.js case's key log: no session's client
    // random is in it.
    let cases = tls_cases();
    let (py_dir, py) = cases
        .iter()
        .find(|(_, t)| t["case"] == "tls-pymongo")
        .unwrap();
    let (node_dir, _) = cases.iter().find(|(_, t)| t["case"] == "tls-node").unwrap();
    let r = report_with(py_dir, py, None, Some(node_dir.join("keylog.txt")));
    for c in r["connections"].as_array().unwrap() {
        assert_eq!(c["tls"]["keys"], "not-in-key-log");
        let evidence = c["evidence"].as_str().unwrap();
        assert!(
            evidence.starts_with("inferred from TLS record shapes")
                && evidence.contains("no secrets for its session"),
            "{evidence}"
        );
    }
    assert!(r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w["kind"] == "tls-no-key"));
}

#[test]
fn wrong_keys_and_damaged_records_are_warnings_not_panics() {
    use conn_attrib::capture::{FileSource, Packet, PacketSource};
    let cases = tls_cases();
    let (dir, t) = cases
        .iter()
        .find(|(_, t)| t["case"] == "tls12-gcm")
        .unwrap();

    // Every secret of the key log with its last hex digit changed: found, but wrong.
    let text = std::fs::read_to_string(dir.join("keylog.txt")).unwrap();
    let wrong: String = text
        .lines()
        .map(|l| match l.strip_suffix(|c: char| c.is_ascii_hexdigit()) {
            Some(head) if !l.starts_with('#') => {
                let last = l.chars().last().unwrap();
                format!("{head}{}\n", if last == '0' { '1' } else { '0' })
            }
            _ => format!("{l}\n"),
        })
        .collect();
    let tmp = std::env::temp_dir().join(format!("conn-attrib-wrong-{}.log", std::process::id()));
    std::fs::write(&tmp, wrong).unwrap();
    let r = report_with(dir, t, None, Some(tmp.clone()));
    std::fs::remove_file(&tmp).unwrap();
    for c in r["connections"].as_array().unwrap() {
        assert_eq!(c["tls"]["keys"], "wrong-keys", "{}", c["tls"]);
        assert!(c["evidence"].as_str().unwrap().contains("do not decrypt"));
    }
    let warnings = r["warnings"].to_string();
    assert!(warnings.contains("tls-decrypt"), "{warnings}");
    // No secret from the key log reaches the report.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let secret = line.split_whitespace().nth(2).unwrap();
        assert!(!warnings.contains(secret) && !r.to_string().contains(secret));
    }

    // One byte of one large packet flipped: that record fails to authenticate, its
    // direction stops, every other connection is still decrypted and classified.
    let capture = dir.join(t["capture"].as_str().unwrap());
    let mut source = FileSource::open(capture.to_str().unwrap()).unwrap();
    let mut config = AnalyzerConfig::default();
    config.observer.keylog = Some(KeyLogConfig {
        path: dir.join("keylog.txt"),
        follow: false,
    });
    let mut analyzer = conn_attrib::Analyzer::new(config);
    let mut big = 0;
    while let Some(p) = source.next_packet().unwrap() {
        let mut data = p.data.to_vec();
        // Ethernet (the lab records on lo), IPv4, TCP: where the payload starts.
        let tcp = 14 + (data[14] as usize & 0xf) * 4;
        let payload = tcp + (data[tcp + 12] as usize >> 4) * 4;
        if data.len() > payload + 100 && data[payload..payload + 3] == [23, 3, 3] {
            big += 1;
            if big == 20 {
                let last = data.len() - 1;
                data[last] ^= 0x40;
            }
        }
        analyzer.packet(&Packet {
            ts: p.ts,
            link: p.link,
            data: &data,
            orig_len: p.orig_len,
        });
    }
    assert!(big > 20);
    let analysis = analyzer.finish();
    let failed: Vec<_> = analysis
        .connections
        .iter()
        .filter(|o| o.tls_session.as_ref().unwrap().records_failed > 0)
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(analysis
        .warnings
        .iter()
        .any(|w| w.kind == "tls-decrypt" && w.message.contains("did not decrypt")));
    // Records before the damaged one were decrypted: the connection still counts.
    assert!(analysis.connections.iter().all(|o| o.tls_decrypted()));
}

/// A driver that connects and closes without a byte (the Ruby driver 2.5's address
/// resolver probes each node this way before its monitor connects): the truth has such
/// sockets from the driver's own call stacks, as `unknown` with no command in the server's
/// log. The report must name them as probes, per connection and in the client's verdict,
/// and not as connections it "could not classify".
#[test]
fn connect_only_probes_are_named_in_the_evidence_and_the_verdict() {
    let mut probes_seen = 0;
    for dir in cases() {
        let t = truth(&dir);
        let case = t["case"].as_str().unwrap();
        let probes: Vec<&Value> = t["connections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["role"] == "unknown")
            .collect();
        if probes.is_empty() {
            continue;
        }
        let r = report(&dir, &t, None);
        let found = common::connections_by_client(&r);
        let mut per_client: BTreeMap<&str, u64> = BTreeMap::new();
        for p in &probes {
            probes_seen += 1;
            let c = found[p["client"].as_str().unwrap()];
            assert!(
                c["evidence"]
                    .as_str()
                    .unwrap()
                    .contains("opened and closed without a byte sent"),
                "{case}: {}: {}",
                p["client"],
                c["evidence"]
            );
            *per_client
                .entry(c["client_id"].as_str().unwrap())
                .or_default() += 1;
        }
        for (id, n) in per_client {
            let client = common::client_by_id(&r, id);
            let verdict = client["verdict"].as_str().unwrap();
            assert!(
                verdict.contains(&format!(
                    "{n} connections opened and closed without a byte sent"
                )) && !verdict.contains("could not be classified"),
                "{case} {id}: {verdict}"
            );
        }
    }
    assert!(
        probes_seen >= 3,
        "the lab's Ruby case has its resolver probes"
    );
}

/// A node whose pool never reached minPoolSize is named in the client's verdict, and only
/// such a node: the truth's pool connections per monitored node, against the minPoolSize
/// the case gave the driver (the Ruby driver 2.5 opens pool connections only when used).
/// libmongoc-based clients have their own explanation (their minPoolSize opens nothing).
/// mongosh, the MongoDB Shell, runs the Node.js driver: its handshake names both, and it
/// sends its startup commands (buildInfo, atlasVersion, getParameter, …) at once to an
/// empty pool, which opens a connection for each while the wire never shows more than
/// one operation in flight. The report says why, instead of a bare contradiction.
#[test]
fn mongosh_is_read_as_the_driver_it_runs_and_its_startup_burst_explained() {
    let (t, r) = case_report("mongosh");
    let client = &r["clients"][0];
    assert_eq!(client["driver"]["name"], "nodejs|mongosh");
    assert_eq!(client["mode"], "streaming");
    for (role, n) in t["clients"][0]["counts"].as_object().unwrap() {
        assert_eq!(&client["counts"][role], n, "{role}");
    }
    let deviations = client["deviations"].to_string();
    assert!(
        deviations.contains("with up to 1 operation in flight at once (requests that waited while connections were being established each had another opened)"),
        "{deviations}"
    );
}

/// PHP-FPM runs workers side by side, each with its own single-threaded client: one
/// host and one key with one connection per node per worker, and no monitors. That is
/// four single-threaded clients, not a pool: 1 x 3 nodes x 4 = 12, said so.
#[test]
fn php_workers_side_by_side_are_as_many_single_threaded_clients() {
    let (_, r) = case_report("php-workers");
    let client = &r["clients"][0];
    assert_eq!(client["mode"], "single-threaded");
    assert_eq!(client["mongo_clients"], 4);
    assert_eq!(client["counts"]["single-threaded"], 12);
    assert_eq!(client["expected"]["total"], 12);
    let verdict = client["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with(
            "matches: 1 x 3 nodes x 4 MongoClients = 12; 4 single-threaded MongoClients"
        ) && verdict.contains("PHP-FPM"),
        "{verdict}"
    );
}

#[test]
fn nodes_whose_pool_stays_below_min_pool_size_are_named() {
    let mut named = 0;
    for dir in cases() {
        let t = truth(&dir);
        let case = t["case"].as_str().unwrap();
        for tclient in t["clients"].as_array().unwrap() {
            let min_pool = tclient["min_pool_size"].as_u64().unwrap();
            let driver = tclient["driver"]["name"].as_str().unwrap();
            if !["streaming", "polling"].contains(&tclient["mode"].as_str().unwrap())
                || min_pool == 0
                || driver.contains("mongoc")
                || driver.contains("PHP")
            {
                continue;
            }
            let members: Vec<&Value> = t["connections"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["client_key"] == tclient["key"])
                .collect();
            let per_node = |role: &str| -> BTreeMap<&str, u64> {
                let mut counts = BTreeMap::new();
                for c in members.iter().filter(|c| c["role"] == role) {
                    *counts.entry(c["server"].as_str().unwrap()).or_default() += 1;
                }
                counts
            };
            let pools = per_node("pool");
            let monitored: Vec<&str> = per_node("streaming-monitor")
                .into_keys()
                .chain(per_node("polling-monitor").into_keys())
                .collect();
            let wanted = min_pool * tclient["mongo_clients"].as_u64().unwrap();
            let short: Vec<&str> = monitored
                .into_iter()
                .filter(|n| pools.get(n).copied().unwrap_or(0) < wanted)
                .collect();
            let r = report(&dir, &t, Some(min_pool as u32));
            let key = tclient["key"].as_str().unwrap();
            // The report's client holding this truth client's connections (without a
            // handshake, in a cut capture, it is keyed by host only).
            let found = common::connections_by_client(&r);
            let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
            for c in &members {
                if let Some(rc) = found.get(c["client"].as_str().unwrap()) {
                    *votes.entry(rc["client_id"].as_str().unwrap()).or_default() += 1;
                }
            }
            let (id, _) = votes.into_iter().max_by_key(|(_, n)| *n).unwrap();
            let verdict = common::client_by_id(&r, id)["verdict"].as_str().unwrap();
            let says = verdict.contains("fewer pool connections than minPoolSize");
            assert_eq!(
                says,
                !short.is_empty(),
                "{case} {key}: {short:?}: {verdict}"
            );
            for node in short {
                named += 1;
                assert!(
                    verdict.contains(&format!("{node} (")),
                    "{case} {key}: {node}: {verdict}"
                );
            }
        }
    }
    assert!(
        named >= 2,
        "the Ruby case's secondaries are below minPoolSize"
    );
}

/// A member restarted during the capture (`--restart-member`): the report names the
/// restart on that node (a new topologyVersion.processId), counts the attempts it refused
/// while down as the capture shows them (SYN answered by RST; tshark), lists none of them
/// as a connection (every-connection test above), and each client that was connected to
/// it before and after says so in its verdict, without taking the replacements for pool
/// growth. No other node of any case restarts.
#[test]
fn a_restarted_member_is_named_and_its_refused_attempts_are_counted_not_listed() {
    let mut restarts_seen = 0;
    for dir in cases() {
        let t = truth(&dir);
        let case = t["case"].as_str().unwrap();
        let r = report(&dir, &t, None);
        let restarts = t["server"]["restarts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for node in r["nodes"].as_array().unwrap() {
            let name = node["node"].as_str().unwrap();
            let truth_restart = restarts.iter().find(|x| x["member"] == name);
            let seen = node["restarts"].as_array().cloned().unwrap_or_default();
            match truth_restart {
                None => assert!(seen.is_empty(), "{case}: {name} restarted? {seen:?}"),
                Some(x) => {
                    restarts_seen += 1;
                    let (down, up) = (x["down"].as_f64().unwrap(), x["up"].as_f64().unwrap());
                    // The new process is seen once a client reconnects: within a heartbeat
                    // (2 s in the lab) and a connection's handshake of its start.
                    assert!(
                        seen.len() == 1 && (up..up + 3.0).contains(&seen[0].as_f64().unwrap()),
                        "{case}: {name}: restarts {seen:?}, the member was down {down}..{up}"
                    );
                }
            }
            let refused = t["server"]["refused_attempts"][name].as_u64().unwrap_or(0);
            assert_eq!(
                node["refused_attempts"].as_u64().unwrap_or(0),
                refused,
                "{case}: {name}: refused attempts"
            );
        }
        for x in &restarts {
            let (member, down, up) = (
                x["member"].as_str().unwrap(),
                x["down"].as_f64().unwrap(),
                x["up"].as_f64().unwrap(),
            );
            let mut spans: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
            for c in r["connections"].as_array().unwrap() {
                if c["server"] != member {
                    continue;
                }
                let opened = c["opened"].as_f64().unwrap();
                let span = spans.entry(c["client_id"].as_str().unwrap()).or_default();
                span.0 |= opened < down;
                span.1 |= opened > up;
            }
            for (id, _) in spans
                .into_iter()
                .filter(|(_, (before, after))| *before && *after)
            {
                let verdict = common::client_by_id(&r, id)["verdict"].as_str().unwrap();
                assert!(
                    verdict.contains(&format!("{member} restarted during the capture")),
                    "{case} {id}: {verdict}"
                );
                // The old connections were given up when the member closed them, however
                // late the driver closed its side: their replacements are no overlap.
                assert!(
                    !verdict.contains(&format!("open at once to {member}")),
                    "{case} {id}: {verdict}"
                );
            }
        }
    }
    assert!(restarts_seen >= 1, "the lab's member-restart case");
}

#[test]
fn processes_side_by_side_behind_one_address_are_counted_not_called_restarts() {
    // lb-backends and mongos-backends: the test server answers at one address with 3 and
    // 2 processes in turn, as a TCP load balancer in front of several mongos does; each
    // names its own topologyVersion.processId. Read as restarts, they were "restarted at
    // 0.0 s, 0.1 s".
    let mut seen = 0;
    for dir in cases() {
        let t = truth(&dir);
        let Some(backends) = t["server"]["backends"].as_object() else {
            continue;
        };
        let case = t["case"].as_str().unwrap();
        let r = report(&dir, &t, None);
        for (address, n) in backends {
            seen += 1;
            let node = r["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["node"] == address.as_str())
                .unwrap_or_else(|| panic!("{case}: {address} listed"));
            assert_eq!(node["concurrent_processes"], *n, "{case}: {node}");
            assert!(node["restarts"].is_null(), "{case}: {node}");
            // proxy-members: one address in front of a whole replica set. Each process
            // keeps its own role; answering in turn as primary and secondary is not a
            // role change (nor a failover), it is named as the proxy it is.
            if t["server"]["topology"] == "replset" {
                let role = node["role"].as_str().unwrap();
                assert!(
                    role.contains("primary of rs0") && role.contains("secondary of rs0"),
                    "{case}: {node}"
                );
                assert!(node["role_changes"].is_null(), "{case}: {node}");
                assert!(
                    warnings_of(&r, "several-processes")
                        .any(|w| w.contains(address.as_str()) && w.contains("different roles")),
                    "{case}: {:?}",
                    r["warnings"]
                );
            }
        }
        let warnings = r["warnings"].as_array().unwrap();
        assert!(
            warnings.iter().any(|w| w["kind"] == "several-processes"),
            "{case}: {warnings:?}"
        );
        assert!(
            !warnings.iter().any(|w| w["kind"] == "node-restart"),
            "{case}: {warnings:?}"
        );
        for c in r["clients"].as_array().unwrap() {
            assert!(
                !c["verdict"].as_str().unwrap().contains("restarted")
                    && !c["deviations"].to_string().contains("restarted"),
                "{case}: {c}"
            );
        }
    }
    assert!(seen >= 2, "the lab's backends cases");
}

#[test]
fn a_failover_shows_on_both_nodes_from_when_it_was_heard() {
    // stepdown: the primary 127.0.0.11 steps down and 127.0.0.12 is elected; no connection
    // closes (4.2+). The nodes kept the role their first connections heard, "primary" for
    // the old primary, to the end. A member removed from the set (cluster-stale) changes
    // too: it answers without the set's fields.
    let mut failovers = 0;
    for dir in cases() {
        let t = truth(&dir);
        let case = t["case"].as_str().unwrap();
        let r = report(&dir, &t, None);
        let mut expected: BTreeMap<String, (String, String, f64)> = BTreeMap::new();
        for s in t["server"]["stepdowns"].as_array().into_iter().flatten() {
            let at = s["at"].as_f64().unwrap();
            let (primary, secondary) = ("primary of rs0", "secondary of rs0");
            let (old, new) = (s["old"].as_str().unwrap(), s["new"].as_str().unwrap());
            expected.insert(old.into(), (primary.into(), secondary.into(), at));
            expected.insert(new.into(), (secondary.into(), primary.into(), at));
        }
        let removed: Vec<&str> = t["cluster"]["reconfigs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["removed"].as_str())
            .collect();
        for node in r["nodes"].as_array().unwrap() {
            let name = node["node"].as_str().unwrap();
            let changes = node["role_changes"].as_array().cloned().unwrap_or_default();
            match expected.get(name) {
                Some((from, to, at)) => {
                    failovers += 1;
                    assert_eq!(changes.len(), 1, "{case}: {name}: {changes:?}");
                    let heard = changes[0]["at"].as_f64().unwrap();
                    // Heard on the monitors' next heartbeat (2 s in the lab).
                    assert!(
                        (*at..at + 3.0).contains(&heard),
                        "{case}: {name}: heard at {heard}, stepped down at {at}"
                    );
                    assert_eq!(changes[0]["from"], from.as_str(), "{case}: {name}");
                    assert_eq!(changes[0]["to"], to.as_str(), "{case}: {name}");
                    assert_eq!(node["role"], to.as_str(), "{case}: {name}");
                }
                None if removed.contains(&name) => {
                    assert_eq!(changes.len(), 1, "{case}: {name}: {changes:?}");
                }
                None => assert!(changes.is_empty(), "{case}: {name}: {changes:?}"),
            }
        }
        let warned = r["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["kind"] == "role-change")
            .count();
        assert_eq!(warned, expected.len() + removed.len(), "{case}");
        // Each pooled driver moved its writes: pool connections to both primaries,
        // explained. A single-threaded client holds one connection per node either way.
        for c in r["clients"].as_array().unwrap() {
            let explained = c["deviations"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|d| d.as_str())
                .any(|d| d.starts_with("a failover during the capture"));
            let pooled = c["mode"] == "streaming" || c["mode"] == "polling";
            assert_eq!(explained, pooled && !expected.is_empty(), "{case}: {c}");
        }
    }
    assert!(failovers >= 6, "the lab's stepdown cases");
}

/// The messages of a report's warnings of one kind.
fn warnings_of<'a>(report: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a str> {
    report["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |w| w["kind"] == kind)
        .filter_map(|w| w["message"].as_str())
}

/// Replies to operations are timed from their OP_COMPRESSED header alone, never inflated
/// (src/observe: `leaves_compressed`); every one must still be matched to its request.
#[test]
fn compressed_operation_replies_are_all_matched_and_timed() {
    let mut compressed = 0;
    for dir in cases().into_iter().filter(|d| {
        d.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("compression-"))
    }) {
        let r = report(&dir, &truth(&dir), None);
        for c in r["connections"].as_array().unwrap() {
            let o = &c["observations"];
            if o["compression"].is_null() {
                continue;
            }
            compressed += 1;
            let ops: u64 = o["commands"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["count"].as_u64().unwrap())
                .sum();
            let at = format!("{}: {}", dir.display(), c["client"]);
            assert!(ops > 0, "{at}");
            assert_eq!(o["op_latency_ms"]["count"].as_u64(), Some(ops), "{at}");
            let malformed = o["client_traffic"]["malformed"].as_u64().unwrap()
                + o["server_traffic"]["malformed"].as_u64().unwrap();
            assert_eq!(malformed, 0, "{at}");
        }
    }
    assert!(compressed >= 2, "the lab's compressed pool connections");
}

/// A fold classifies without evidence (`classes_after`): on every lab case it must give
/// the classes and roles the full classification gives, with empty evidence, and leave
/// the next full classification's evidence written.
#[test]
fn classes_without_evidence_are_the_classes_with_it() {
    use conn_attrib::classify::{classes_after, classify_after, Prior};
    for dir in cases() {
        let t = truth(&dir);
        let capture = dir.join(t["capture"].as_str().unwrap());
        let mut config = AnalyzerConfig::default();
        config.observer.keylog = t["keylog"].as_str().map(|k| KeyLogConfig {
            path: dir.join(k),
            follow: false,
        });
        let a = analyze_path(capture.to_str().unwrap(), config).expect("readable");
        let window = a.input.window();
        let prior = Prior::default();
        let quick = classes_after(&a.connections, window, &prior);
        let full = classify_after(&a.connections, window, &prior);
        assert_eq!(quick.len(), full.len());
        for (q, f) in quick.iter().zip(&full) {
            assert_eq!(
                (q.class, q.confidence, q.role),
                (f.class, f.confidence, f.role)
            );
            assert!(!f.evidence.is_empty(), "{}", dir.display());
        }
        // Fixed words may be left of the evidence, not its formatted sentences.
        let written = |v: &[conn_attrib::classify::Verdict]| -> usize {
            v.iter().map(|v| v.evidence.len()).sum()
        };
        assert!(
            written(&quick) < written(&full),
            "{}: {} of {} evidence bytes still written",
            dir.display(),
            written(&quick),
            written(&full)
        );
    }
}
