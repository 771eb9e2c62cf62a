//! `conn-attrib live` end to end: the lab's test server on loopback, a real PyMongo client,
//! a bounded live capture on `lo`. Asserts the classes, the per-client totals and that
//! every connection is attributed to the client's PID. Without capture permission, or
//! without the lab's PyMongo (scripts/test.sh installs it), it says it is skipped and why.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait for a child at most `secs`, killing it after that: a hang must fail, not stall CI.
fn wait_at_most(mut child: Child, secs: u64) -> std::process::Output {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    panic!(
        "timed out after {secs} s: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn skip(why: &str) {
    eprintln!("skipped: live capture test: {why}");
}

#[test]
fn live_capture_names_roles_totals_and_the_owning_process() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python: PathBuf = root.join("scripts/lab/.venv/bin/python");
    if !python.exists() {
        return skip("scripts/lab/.venv (PyMongo) is missing; scripts/test.sh creates it");
    }
    let bin = env!("CARGO_BIN_EXE_conn-attrib");
    // Capture permission: a very short capture on lo must open.
    let probe = Command::new(bin)
        .args([
            "live",
            "-i",
            "lo",
            "--duration",
            "0.3",
            "-q",
            "-o",
            "/dev/null",
        ])
        .output()
        .unwrap();
    if probe.status.code() == Some(2) {
        return skip(&format!(
            "no capture permission: {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
    }
    let dir = std::env::temp_dir().join(format!("conn-attrib-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hosts = "127.0.0.31:27017,127.0.0.32:27017,127.0.0.33:27017";
    let mut server = Killed(
        Command::new(&python)
            .arg(root.join("scripts/lab/mongo_test_server.py"))
            .args(["--hosts", hosts, "--max-seconds", "40"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(server.0.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("listening"), "test server: {line}");
    }
    // A connection opened before the capture and idle throughout: only /proc knows it.
    let idle = std::net::TcpStream::connect("127.0.0.33:27017").unwrap();
    let idle_local = idle.local_addr().unwrap().to_string();
    let report = dir.join("live.json");
    let saved = dir.join("saved.pcap");
    let live = Command::new(bin)
        .args([
            "live",
            "-i",
            "lo",
            "--duration",
            "11",
            "--refresh",
            "2",
            "--format",
            "json",
        ])
        // The app's minPoolSize, as a user would pass it: the check then does not depend
        // on every node's pool being filled within the short window.
        .args(["-q", "--min-pool-size", "1", "--write-pcap"])
        .arg(&saved)
        .arg("-o")
        .arg(&report)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let uri = format!("mongodb://{hosts}/?replicaSet=rs0&appName=live-test&heartbeatFrequencyMS=1000&minPoolSize=1");
    let client = Killed(
        Command::new(&python)
            .arg(root.join("scripts/lab/clients/pymongo_client.py"))
            .args(["--uri", &uri, "--seconds", "8", "--events"])
            .arg(dir.join("events.json"))
            .spawn()
            .unwrap(),
    );
    let client_pid = client.0.id();
    let out = wait_at_most(live, 40);
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(client);
    drop(server);

    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(v["input"]["path"], "live:lo");
    assert!(v["input"]["received"].as_u64().unwrap() > 0);
    let conns: Vec<&serde_json::Value> = v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["app_name"] == "live-test")
        .collect();
    let count = |class: &str| conns.iter().filter(|c| c["class"] == class).count();
    assert_eq!(count("streaming-monitor"), 3, "{conns:#?}");
    assert_eq!(count("rtt-monitor"), 3);
    assert!(count("pool") >= 3, "minPoolSize 1 on each of 3 nodes");
    for c in &conns {
        assert_eq!(c["process"]["pid"], client_pid, "{c:#?}");
    }
    let client = v["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["app_name"] == "live-test")
        .expect("the client");
    assert_eq!(client["mode"], "streaming");
    assert_eq!(client["mongo_clients"], 1);
    assert_eq!(client["expected"]["total"], 9);
    assert_eq!(client["process"]["pid"], client_pid);
    assert!(client["process"]["cmdline"]
        .as_str()
        .unwrap()
        .contains("pymongo_client.py"));

    let pre = v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client"] == idle_local.as_str())
        .expect("the idle pre-existing connection is reported");
    assert_eq!(pre["server"], "127.0.0.33:27017");
    assert_eq!(pre["process"]["pid"], std::process::id());
    assert_eq!(pre["opened"], serde_json::Value::Null);
    assert_eq!(pre["class"], "pool", "{pre:#?}");
    drop(idle);

    // --write-pcap saved what was captured: offline analysis of it finds the same client.
    let offline = Command::new(bin)
        .arg(&saved)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(offline.status.code().is_some_and(|c| c <= 1));
    let o: serde_json::Value = serde_json::from_slice(&offline.stdout).unwrap();
    let offline_client = o["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["app_name"] == "live-test")
        .expect("the client, offline");
    assert_eq!(offline_client["counts"]["streaming-monitor"], 3);
    assert_eq!(offline_client["counts"]["rtt-monitor"], 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn live_errors_are_one_clear_line_and_exit_two() {
    let bin = env!("CARGO_BIN_EXE_conn-attrib");
    let run = |args: &[&str]| {
        let child = Command::new(bin)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_at_most(child, 20)
    };
    let out = run(&["live", "-i", "no-such-if0", "--duration", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot capture on no-such-if0"), "{err}");
    let out = run(&["live", "-i", "lo", "-f", "tcp port", "--duration", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("Operation not permitted") || err.contains("permission") {
        assert!(
            err.contains("setcap cap_net_raw,cap_net_admin+eip"),
            "{err}"
        );
        return skip("no capture permission to test the filter error");
    }
    assert!(err.contains("invalid capture filter `tcp port`"), "{err}");
}
