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

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The lab's Python when PyMongo is installed and live capture on `lo` is permitted;
/// otherwise why the test cannot run.
fn lab_python() -> Result<PathBuf, String> {
    let python: PathBuf = root().join("scripts/lab/.venv/bin/python");
    if !python.exists() {
        return Err("scripts/lab/.venv (PyMongo) is missing; scripts/test.sh creates it".into());
    }
    // Capture permission: a very short capture on lo must open.
    let probe = Command::new(env!("CARGO_BIN_EXE_conn-attrib"))
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
        return Err(format!(
            "no capture permission: {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
    }
    Ok(python)
}

/// The lab's test server on `hosts`, once it listens.
fn test_server(python: &Path, hosts: &str) -> Killed {
    let mut server = Killed(
        Command::new(python)
            .arg(root().join("scripts/lab/mongo_test_server.py"))
            .args(["--hosts", hosts, "--max-seconds", "40"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(server.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening"), "test server: {line}");
    server
}

/// A real PyMongo client with `uri` for `seconds`, its events written into `dir`.
fn pymongo(python: &Path, uri: &str, seconds: &str, dir: &Path) -> Killed {
    Killed(
        Command::new(python)
            .arg(root().join("scripts/lab/clients/pymongo_client.py"))
            .args(["--uri", uri, "--seconds", seconds, "--events"])
            .arg(dir.join("events.json"))
            .spawn()
            .unwrap(),
    )
}

#[test]
fn live_capture_names_roles_totals_and_the_owning_process() {
    let python = match lab_python() {
        Ok(p) => p,
        Err(why) => return skip(&why),
    };
    let bin = env!("CARGO_BIN_EXE_conn-attrib");
    let dir = std::env::temp_dir().join(format!("conn-attrib-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hosts = "127.0.0.31:27017,127.0.0.32:27017,127.0.0.33:27017";
    let server = test_server(&python, hosts);
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
    let client = pymongo(&python, &uri, "8", &dir);
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
    // A bad metrics address is refused before capture starts: the interface is not even
    // opened (its own error would come first otherwise).
    let out = run(&[
        "live",
        "-i",
        "no-such-if0",
        "--prometheus",
        "localhost:notaport",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--prometheus localhost:notaport: not an address to listen on"),
        "{err}"
    );
    assert!(!err.contains("cannot capture"), "{err}");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap().to_string();
    let out = run(&["live", "-i", "no-such-if0", "--prometheus", &taken]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {taken}")), "{err}");
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

/// One sample of a scrape: metric name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `{k="v",…}` with the format's escapes (`\\`, `\"`, `\n`); returns the labels and the rest.
fn parse_labels(text: &str) -> (Vec<(String, String)>, &str) {
    let Some(mut rest) = text.strip_prefix('{') else {
        return (Vec::new(), text);
    };
    let mut labels = Vec::new();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        let eq = rest.find("=\"").expect("label=\"value\"");
        let key = &rest[..eq];
        assert!(valid_name(key), "label name {key:?}");
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (i, '"') => break eq + 2 + i + 1,
                (_, '\\') => match chars.next().expect("escape").1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => panic!("bad escape \\{c}"),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        rest = &rest[end..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Parse a scrape line by line as the Prometheus text format 0.0.4 and check it: HELP and
/// TYPE once per family and before its samples, valid names, every sample in the family
/// typed last (histograms as `_bucket`/`_sum`/`_count`), numeric values, and cumulative
/// histogram buckets ending at `+Inf` equal to `_count`.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut types: std::collections::HashMap<String, String> = Default::default();
    let mut current: Option<(String, String)> = None;
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(valid_name(name), "{line}");
            if kind == "TYPE" {
                let t = parts.next().unwrap().to_string();
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t.as_str()),
                    "{line}"
                );
                assert!(
                    types.insert(name.to_string(), t.clone()).is_none(),
                    "{line}"
                );
                current = Some((name.to_string(), t));
            }
            continue;
        }
        let split = line.find(['{', ' ']).expect("a sample");
        let name = &line[..split];
        assert!(valid_name(name), "{line}");
        let (labels, rest) = parse_labels(&line[split..]);
        let value = rest.trim().split(' ').next().unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value in {line}")),
        };
        let (family, kind) = current.as_ref().expect("TYPE before samples");
        let ok = match kind.as_str() {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| name == format!("{family}{s}")),
            _ => name == family,
        };
        assert!(ok, "{line} is not in family {family}");
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let bucket = format!("{family}_bucket");
        let mut series: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
        for s in samples.iter().filter(|s| s.name == bucket) {
            let le: f64 = match s.label("le") {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap(),
            };
            let rest: Vec<_> = s.labels.iter().filter(|(k, _)| k != "le").collect();
            series
                .entry(format!("{rest:?}"))
                .or_default()
                .push((le, s.value));
        }
        for (labels, buckets) in series {
            assert!(
                buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "{family}{labels}: {buckets:?}"
            );
            let last = buckets.last().unwrap();
            assert_eq!(last.0, f64::INFINITY, "{family}{labels}");
            let count = samples
                .iter()
                .find(|s| {
                    s.name == format!("{family}_count")
                        && format!("{:?}", s.labels.iter().collect::<Vec<_>>()) == labels
                })
                .unwrap_or_else(|| panic!("{family}_count{labels}"));
            assert_eq!(count.value, last.1, "{family}{labels}");
        }
    }
    samples
}

/// GET `path` from `addr` with a plain HTTP/1.0 request: (status line, headers, body).
fn http_get(addr: &str, path: &str) -> (String, String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_string(), body.to_string())
}

#[test]
fn live_prometheus_metrics_are_scraped_during_the_capture() {
    let python = match lab_python() {
        Ok(p) => p,
        Err(why) => return skip(&why),
    };
    let dir = std::env::temp_dir().join(format!("conn-attrib-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Addresses of its own: the other live test may run at the same time.
    let hosts = "127.0.0.41:27017,127.0.0.42:27017,127.0.0.43:27017";
    let server = test_server(&python, hosts);
    let mut live = Command::new(env!("CARGO_BIN_EXE_conn-attrib"))
        .args(["live", "-i", "lo", "--duration", "14", "--refresh", "1"])
        // Port 0: the system picks a free port, which conn-attrib prints.
        .args([
            "--prometheus",
            "127.0.0.1:0",
            "-q",
            "--format",
            "json",
            "-o",
        ])
        .arg(dir.join("live.json"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = live.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(url) = line.strip_prefix("conn-attrib: serving Prometheus metrics on ") {
                let _ = tx.send(url.to_string());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let url = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("conn-attrib prints where it serves metrics");
    let addr = url
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix("/metrics"))
        .unwrap()
        .to_string();
    let (status, _, body) = http_get(&addr, "/nothing-here");
    assert!(status.contains(" 404 "), "{status} {body}");

    std::thread::sleep(Duration::from_millis(1200));
    let uri = format!("mongodb://{hosts}/?replicaSet=rs0&appName=prom-test&heartbeatFrequencyMS=1000&minPoolSize=1");
    let client = pymongo(&python, &uri, "9", &dir);
    // Scrape while the client runs, until the monitors of all three nodes are classified.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut last = None;
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(700));
        let (status, headers, body) = http_get(&addr, "/metrics");
        assert!(status.contains(" 200 "), "{status}");
        assert!(
            headers.contains("Content-Type: text/plain; version=0.0.4"),
            "{headers}"
        );
        let samples = parse_exposition(&body);
        let open = |class: &str| -> f64 {
            samples
                .iter()
                .filter(|s| s.name == "conn_attrib_connections")
                .filter(|s| s.label("app") == "prom-test" && s.label("class") == class)
                .map(|s| s.value)
                .sum()
        };
        let heartbeats = samples
            .iter()
            .filter(|s| s.name == "conn_attrib_heartbeat_interval_seconds_count" && s.value > 0.0)
            .count();
        let done =
            open("streaming-monitor") == 3.0 && open("rtt-monitor") == 3.0 && heartbeats >= 3;
        last = Some((samples, body));
        if done {
            break;
        }
    }
    let (samples, body) = last.expect("at least one scrape");
    let ours = |name: &str| -> Vec<&Sample> {
        samples
            .iter()
            .filter(|s| s.name == name && s.label("app") == "prom-test")
            .collect()
    };
    let sum = |v: &[&Sample]| v.iter().map(|s| s.value).sum::<f64>();
    // One streaming monitor per node, each labelled with its node, the client's host and
    // its driver.
    let streaming: Vec<_> = ours("conn_attrib_connections")
        .into_iter()
        .filter(|s| s.label("class") == "streaming-monitor")
        .collect();
    assert_eq!(sum(&streaming), 3.0, "{body}");
    let mut nodes: Vec<&str> = streaming.iter().map(|s| s.label("node")).collect();
    nodes.sort();
    assert_eq!(nodes.join(","), hosts, "{body}");
    for s in &streaming {
        assert_eq!(s.label("client"), "127.0.0.1");
        assert!(s.label("driver").starts_with("PyMongo"), "{s:?}");
    }
    let rtt = ours("conn_attrib_connections")
        .into_iter()
        .filter(|s| s.label("class") == "rtt-monitor")
        .collect::<Vec<_>>();
    assert_eq!(sum(&rtt), 3.0, "{body}");
    // Every connection of the client was opened during the capture: opens cover them.
    let open = sum(&ours("conn_attrib_connections"));
    let opened = sum(&ours("conn_attrib_connections_opened_total"));
    assert!(open >= 6.0, "{body}");
    assert!(opened >= open, "opened {opened} < open {open}: {body}");
    assert_eq!(sum(&ours("conn_attrib_mongo_clients")), 1.0, "{body}");
    // libpcap's counters are there, and the heartbeat histogram of each node has data.
    let value = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name && s.label("interface") == "lo")
            .unwrap_or_else(|| panic!("{name}: {body}"))
            .value
    };
    assert!(value("conn_attrib_pcap_received_packets_total") > 0.0);
    assert!(value("conn_attrib_pcap_dropped_packets_total") >= 0.0);
    assert!(value("conn_attrib_pcap_interface_dropped_packets_total") >= 0.0);
    assert!(value("conn_attrib_captured_packets_total") > 0.0);
    for node in hosts.split(',') {
        let count = samples
            .iter()
            .find(|s| {
                s.name == "conn_attrib_heartbeat_interval_seconds_count" && s.label("node") == node
            })
            .unwrap_or_else(|| panic!("heartbeat histogram of {node}: {body}"));
        assert!(count.value >= 1.0, "{body}");
    }

    let out = wait_at_most_with(live, reader, 40);
    assert!(out.0.is_some_and(|c| c <= 1), "{}", out.1);
    drop(client);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Wait for `child` whose stderr `reader` collects; (exit code, stderr).
fn wait_at_most_with(
    mut child: Child,
    reader: std::thread::JoinHandle<String>,
    secs: u64,
) -> (Option<i32>, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), reader.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("timed out after {secs} s: {}", reader.join().unwrap());
}
