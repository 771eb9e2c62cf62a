//! `conn-attrib merge` over JSON reports the real binary wrote from lab captures: the
//! fleet totals are the sums of the inputs, a client seen twice is counted once, and
//! reports of another contract version are refused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Different apps and drivers, one of them (orders-api) on two hosts, a mongos.
const CASES: [&str; 5] = [
    "two-apps",
    "three-drivers",
    "pool-growth",
    "streaming-default",
    "mongos",
];

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_conn-attrib"))
}

fn dir(name: &str) -> PathBuf {
    // Under target/: nothing left behind in the system's temporary directory.
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("merge-{name}"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One JSON report per lab case, written by the binary.
fn reports(dir: &Path) -> Vec<PathBuf> {
    CASES
        .iter()
        .map(|case| {
            let out = dir.join(format!("{case}.json"));
            let capture = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("testdata/lab/{case}/capture.pcap"));
            let status = bin()
                .arg(capture)
                .args(["--format", "json", "--quiet", "-o"])
                .arg(&out)
                .status()
                .unwrap();
            assert!(matches!(status.code(), Some(0 | 1)), "{case}");
            out
        })
        .collect()
}

fn merge(args: &[&str], files: &[PathBuf]) -> Output {
    bin().arg("merge").args(files).args(args).output().unwrap()
}

fn json(out: &Output) -> Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn read(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn fleet_totals_are_the_sums_of_the_reports() {
    let files = reports(&dir("sums"));
    let inputs: Vec<Value> = files.iter().map(|f| read(f)).collect();
    // Precondition of a plain sum: no client is in two reports.
    let mut ids = BTreeSet::new();
    for r in &inputs {
        for c in r["clients"].as_array().unwrap() {
            assert!(ids.insert(c["id"].as_str().unwrap().to_string()));
        }
    }
    // Expected, from the inputs: per node and class; per app; per (app, client, node).
    let mut per_node: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut per_client_node: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut app_of: BTreeMap<String, String> = BTreeMap::new();
    let mut all = 0u64;
    for r in &inputs {
        for c in r["clients"].as_array().unwrap() {
            let app = c["app_name"].as_str().unwrap_or("(no appName)").to_string();
            app_of.insert(c["id"].as_str().unwrap().to_string(), app);
        }
        for conn in r["connections"].as_array().unwrap() {
            let node = conn["server"].as_str().unwrap().to_string();
            let class = conn["class"].as_str().unwrap().to_string();
            *per_node
                .entry(node.clone())
                .or_default()
                .entry(class)
                .or_default() += 1;
            *per_client_node
                .entry((conn["client_id"].as_str().unwrap().to_string(), node))
                .or_default() += 1;
            all += 1;
        }
    }
    let (instances, limit) = (10u64, 30u64);
    let fleet = json(&merge(
        &[
            "--format",
            "json",
            "--instances",
            "10",
            "--max-connections",
            "30",
        ],
        &files,
    ));
    assert_eq!(fleet["schema"], "conn-attrib-fleet/1");
    assert_eq!(fleet["counts"]["total"], all);
    assert_eq!(fleet["inputs"].as_array().unwrap().len(), CASES.len());
    let nodes = fleet["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), per_node.len());
    for n in nodes {
        let name = n["node"].as_str().unwrap();
        let want = &per_node[name];
        for (class, k) in want {
            assert_eq!(n["counts"][class.as_str()], *k, "{name} {class}");
        }
        let total: u64 = want.values().sum();
        assert_eq!(n["counts"]["total"], total, "{name}");
        assert_eq!(n["over_limit"], total > limit, "{name}");
        // Every application at 10 instances of its largest instance on this node.
        let mut largest: BTreeMap<&str, u64> = BTreeMap::new();
        for ((id, node), k) in &per_client_node {
            if node == name {
                let e = largest.entry(app_of[id].as_str()).or_default();
                *e = (*e).max(*k);
            }
        }
        let projected: u64 = largest.values().map(|k| k * instances).sum();
        assert_eq!(n["projected"], projected, "{name}");
        assert_eq!(n["projected_over_limit"], projected > limit, "{name}");
    }
    // orders-api runs on two hosts (two-apps and streaming-default): one application.
    let apps = fleet["applications"].as_array().unwrap();
    let orders = apps.iter().find(|a| a["app_name"] == "orders-api").unwrap();
    assert_eq!(orders["instances"], 2);
    assert_eq!(orders["hosts"].as_array().unwrap().len(), 2);
    let orders_total: u64 = inputs
        .iter()
        .flat_map(|r| r["clients"].as_array().unwrap())
        .filter(|c| c["app_name"] == "orders-api")
        .map(|c| c["counts"]["total"].as_u64().unwrap())
        .sum();
    assert_eq!(orders["counts"]["total"], orders_total);
    let app_sum: u64 = apps
        .iter()
        .map(|a| a["counts"]["total"].as_u64().unwrap())
        .sum();
    assert_eq!(app_sum, all);

    // Text and Markdown carry the same node totals.
    let md = merge(&["--format", "markdown"], &files);
    let text = merge(&[], &files);
    assert_eq!(md.status.code(), Some(0));
    let md = String::from_utf8(md.stdout).unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    for (name, want) in &per_node {
        let total: u64 = want.values().sum();
        let row = md
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("{name} row\n{md}"));
        let cells: Vec<&str> = row.split(" | ").collect();
        // node, clients, apps, 7 classes, total.
        assert_eq!(cells[10], total.to_string(), "{row}");
        let line = text.lines().find(|l| l.starts_with(name.as_str())).unwrap();
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[10], total.to_string(), "{line}");
    }
}

#[test]
fn a_client_in_two_windows_is_counted_once() {
    let files = reports(&dir("twice"));
    let one = read(&files[0]);
    let fleet = json(&merge(
        &["--format", "json"],
        &[files[0].clone(), files[0].clone()],
    ));
    let total = one["connections"].as_array().unwrap().len() as u64;
    assert!(total > 0);
    assert_eq!(fleet["counts"]["total"], total);
    assert_eq!(
        fleet["clients"].as_array().unwrap().len(),
        one["clients"].as_array().unwrap().len()
    );
    assert!(fleet["clients"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["seen_in"] == 2));
    assert!(!fleet["notes"].as_array().unwrap().is_empty());
}

#[test]
fn another_contract_version_is_refused() {
    let d = dir("schema");
    let files = reports(&d);
    let mut v2 = read(&files[0]);
    v2["schema"] = "conn-attrib/2".into();
    let v2_path = d.join("v2.json");
    std::fs::write(&v2_path, v2.to_string()).unwrap();
    let out = merge(&[], &[files[1].clone(), v2_path]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("conn-attrib/2") && err.contains("v2.json"),
        "{err}"
    );

    // A redacted report's pseudonyms cannot be matched with other reports'.
    let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/lab/two-apps/capture.pcap");
    let redacted = d.join("redacted.json");
    bin()
        .arg(capture)
        .args(["--format", "json", "--redact", "-q", "-o"])
        .arg(&redacted)
        .status()
        .unwrap();
    let out = merge(&[], &[redacted]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("redacted"));

    let not_json = d.join("x.json");
    std::fs::write(&not_json, "pcap bytes").unwrap();
    assert_eq!(merge(&[], &[not_json]).status.code(), Some(2));
}
