//! `--redact` on real driver captures: no address or name of the lab survives in any
//! format, and the analysis (classes, counts, formulas) is the same as without it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// Cases with replica sets, a mongos, a load balancer, authentication (a user name in
/// `saslSupportedMechs`), several apps and several drivers, and a cluster-side capture.
const CASES: [&str; 7] = [
    "two-apps",
    "auth",
    "mongos",
    "three-drivers",
    "load-balanced",
    "standalone",
    "cluster-stale",
];

fn lab(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("testdata/lab/{case}"))
}

fn run(case: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_conn-attrib"))
        .arg(lab(case).join("capture.pcap"))
        .args(args)
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{case} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The host part of "host:port", "[v6]:port" or a bare host.
fn host_of(addr: &str) -> String {
    if let Ok(sa) = addr.parse::<std::net::SocketAddr>() {
        return sa.ip().to_string();
    }
    match addr.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h.to_string(),
        _ => addr.to_string(),
    }
}

/// What must not survive: every address and name in the plain report and in the truth
/// recorded when the capture was made (an independent source of the same facts).
#[derive(Default, Debug)]
struct Originals {
    hosts: BTreeSet<String>,
    names: BTreeSet<String>,
}

fn originals(case: &str, plain: &Value) -> Originals {
    let mut o = Originals::default();
    let s = |v: &Value| v.as_str().map(str::to_string);
    for c in plain["connections"].as_array().unwrap() {
        o.hosts.insert(host_of(c["client"].as_str().unwrap()));
        o.hosts.insert(host_of(c["server"].as_str().unwrap()));
        o.names.extend(s(&c["app_name"]));
        let obs = &c["observations"];
        if let Some(info) = obs["server_info"].as_object() {
            o.names.extend(s(&info["set_name"]));
            for key in ["hosts", "passives", "arbiters"] {
                for h in info[key].as_array().into_iter().flatten() {
                    o.hosts.insert(host_of(h.as_str().unwrap()));
                }
            }
            if let Some(me) = s(&info["me"]) {
                o.hosts.insert(host_of(&me));
            }
        }
        // saslSupportedMechs is "db.user".
        if let Some(mechs) = s(&obs["handshake"]["sasl_supported_mechs"]) {
            let (db, user) = mechs.split_once('.').unwrap();
            o.names.insert(db.to_string());
            o.names.insert(user.to_string());
        }
    }
    for c in plain["clients"].as_array().unwrap() {
        o.hosts.insert(c["host"].as_str().unwrap().to_string());
        o.names.extend(s(&c["app_name"]));
    }
    let truth: Value =
        serde_json::from_slice(&std::fs::read(lab(case).join("truth.json")).unwrap()).unwrap();
    for c in truth["connections"].as_array().unwrap() {
        o.hosts.insert(host_of(c["client"].as_str().unwrap()));
        o.hosts.insert(host_of(c["server"].as_str().unwrap()));
    }
    for d in truth["drivers"].as_array().unwrap() {
        let uri = d["uri"].as_str().unwrap();
        if let Some(app) = uri.split("appName=").nth(1) {
            o.names.insert(app.split('&').next().unwrap().to_string());
        }
        let rest = uri.split("://").nth(1).unwrap();
        if let Some((user, _)) = rest.split_once('@') {
            o.names.insert(user.split(':').next().unwrap().to_string());
        }
    }
    o
}

/// `word` occurs in `text` as a whole word (not inside a longer name).
fn has_word(text: &str, word: &str) -> bool {
    let inner = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(inner) && !after.is_some_and(inner)
    })
}

#[test]
fn no_address_or_name_survives_in_any_format() {
    for case in CASES {
        let plain: Value = serde_json::from_str(&run(case, &["--format", "json"])).unwrap();
        let o = originals(case, &plain);
        assert!(o.hosts.len() >= 2, "{case}: {o:?}");
        // The check below means something: the plain reports do name them.
        let plain_text = run(case, &["--format", "text"]);
        for h in &o.hosts {
            assert!(
                plain_text.contains(h.as_str()) || plain.to_string().contains(h.as_str()),
                "{case}: {h} not in the plain report"
            );
        }
        for format in ["text", "json", "markdown", "html"] {
            let out = run(case, &["--format", format, "--redact"]);
            for h in &o.hosts {
                // Addresses as substrings: "127.0.0.1" must not hide in "127.0.0.11".
                assert!(
                    !out.contains(h.as_str()),
                    "{case} {format}: {h} survives\n{out}"
                );
            }
            for n in &o.names {
                assert!(!has_word(&out, n), "{case} {format}: {n} survives\n{out}");
            }
            assert!(
                out.contains("host-1"),
                "{case} {format}: no pseudonyms\n{out}"
            );
            assert!(
                !out.contains("capture.pcap"),
                "{case} {format}: path survives"
            );
        }
    }
}

#[test]
fn redaction_leaves_the_analysis_unchanged() {
    for case in CASES {
        let plain: Value = serde_json::from_str(&run(case, &["--format", "json"])).unwrap();
        let red: Value =
            serde_json::from_str(&run(case, &["--format", "json", "--redact"])).unwrap();
        assert_eq!(red["schema"], "conn-attrib/1");
        assert_eq!(red["redacted"], true);
        assert_eq!(plain["redacted"], false);
        let (pc, rc) = (
            plain["connections"].as_array().unwrap(),
            red["connections"].as_array().unwrap(),
        );
        assert_eq!(pc.len(), rc.len(), "{case}");
        assert!(!pc.is_empty(), "{case}");
        let ids: BTreeSet<&str> = red["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        for (p, r) in pc.iter().zip(rc) {
            assert_eq!(p["class"], r["class"], "{case}");
            assert_eq!(p["opened"], r["opened"], "{case}");
            // Ports stay; the connection still keys into its client.
            let port = |v: &Value| v.as_str().unwrap().rsplit(':').next().unwrap().to_string();
            assert_eq!(port(&p["server"]), port(&r["server"]), "{case}");
            assert!(r["server"].as_str().unwrap().starts_with("host-"), "{case}");
            assert!(ids.contains(r["client_id"].as_str().unwrap()), "{case}");
            assert_eq!(r["client"], r["observations"]["client"], "{case}");
        }
        let (pcl, rcl) = (
            plain["clients"].as_array().unwrap(),
            red["clients"].as_array().unwrap(),
        );
        assert_eq!(pcl.len(), rcl.len(), "{case}");
        for (p, r) in pcl.iter().zip(rcl) {
            for key in ["counts", "mode", "mongo_clients", "expected", "driver"] {
                assert_eq!(p[key], r[key], "{case} {key}");
            }
            assert_eq!(
                p["nodes"].as_array().unwrap().len(),
                r["nodes"].as_array().unwrap().len()
            );
            let head = |v: &Value| {
                v["verdict"]
                    .as_str()
                    .unwrap()
                    .split(':')
                    .next()
                    .unwrap()
                    .to_string()
            };
            assert_eq!(head(p), head(r), "{case}");
        }
        let counts = |v: &Value| -> Vec<Value> {
            v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["counts"].clone())
                .collect()
        };
        assert_eq!(counts(&plain), counts(&red), "{case}");
    }
}
