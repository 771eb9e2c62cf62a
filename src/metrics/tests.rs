use super::*;
use crate::attribute::Options;
use crate::report::Meta;
use crate::{analyze_path, conclude, AnalyzerConfig};

fn key(client: &str, app: &str, node: &str) -> ConnKey {
    ConnKey {
        client: client.into(),
        app: app.into(),
        driver: "PyMongo 4.20.1".into(),
        node: node.into(),
    }
}

#[test]
fn a_synthetic_snapshot_encodes_as_prometheus_text() {
    let conn = key("10.0.0.5", "say \"hi\"\\now", "10.0.0.9:27017");
    let mut snap = Snapshot::default();
    snap.open.insert(
        ClassKey {
            conn: conn.clone(),
            class: "streaming-monitor",
        },
        3,
    );
    snap.opened.insert(conn.clone(), 7);
    snap.nodes.insert(
        "10.0.0.9:27017".into(),
        NodeTimings {
            heartbeat: Histogram {
                buckets: vec![(1.0, 2), (10.0, 5)],
                count: 8,
                sum: 51.5,
            },
            ..NodeTimings::default()
        },
    );
    snap.capture = CaptureCounters {
        interface: "eth0".into(),
        packets: 10,
        bytes: 2000,
        pcap: Some(PcapCounters {
            received: 12,
            dropped: 1,
            if_dropped: 0,
        }),
    };
    let text = encode(Arc::new(snap));
    let labels = r#"client="10.0.0.5",app="say \"hi\"\\now",driver="PyMongo 4.20.1""#;
    for line in [
        "# TYPE conn_attrib_connections gauge".to_string(),
        format!(
            "conn_attrib_connections{{{labels},class=\"streaming-monitor\",node=\"10.0.0.9:27017\"}} 3"
        ),
        "# TYPE conn_attrib_connections_opened_total counter".into(),
        format!("conn_attrib_connections_opened_total{{{labels},node=\"10.0.0.9:27017\"}} 7"),
        "# TYPE conn_attrib_heartbeat_interval_seconds histogram".into(),
        // Per-bucket counts become cumulative; the overflow bucket is the total.
        "conn_attrib_heartbeat_interval_seconds_bucket{node=\"10.0.0.9:27017\",le=\"1\"} 2"
            .into(),
        "conn_attrib_heartbeat_interval_seconds_bucket{node=\"10.0.0.9:27017\",le=\"10\"} 7"
            .into(),
        "conn_attrib_heartbeat_interval_seconds_bucket{node=\"10.0.0.9:27017\",le=\"+Inf\"} 8"
            .into(),
        "conn_attrib_heartbeat_interval_seconds_sum{node=\"10.0.0.9:27017\"} 51.5".into(),
        "conn_attrib_heartbeat_interval_seconds_count{node=\"10.0.0.9:27017\"} 8".into(),
        "conn_attrib_pcap_received_packets_total{interface=\"eth0\"} 12".into(),
        "conn_attrib_pcap_dropped_packets_total{interface=\"eth0\"} 1".into(),
        "conn_attrib_captured_bytes_total{interface=\"eth0\"} 2000".into(),
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
    }
    assert!(text.contains("conn_attrib_pcap_interface_dropped_packets_total{interface=\"eth0\"} 0"));
    // libpcap could not say: the series are absent rather than made-up zeros.
    let text = encode(Arc::new(Snapshot::default()));
    assert!(
        !text.contains("conn_attrib_pcap_dropped_packets_total{"),
        "{text}"
    );
    assert!(text.contains("conn_attrib_captured_packets_total{interface=\"\"} 0"));
}

#[test]
fn hdr_histograms_become_prometheus_buckets() {
    let mut h = hdrhistogram::Histogram::<u64>::new(2).unwrap();
    // Heartbeats in ms: 2 s four times, 10 s twice, one of 45 s.
    for ms in [2000, 2000, 2000, 2000, 10_000, 10_000, 45_000] {
        h.record(ms).unwrap();
    }
    let b = buckets(&h, 1e3, &HEARTBEAT_BOUNDS);
    assert_eq!(b.count, 7);
    assert!((b.sum - 73.0).abs() < 0.5, "{}", b.sum);
    let per: Vec<(f64, u64)> = b.buckets.iter().copied().filter(|(_, n)| *n > 0).collect();
    assert_eq!(per, vec![(2.0, 4), (10.0, 2), (60.0, 1)]);
    assert_eq!(b.buckets.iter().map(|(_, n)| n).sum::<u64>(), 7);
    let empty = buckets(
        &hdrhistogram::Histogram::new(2).unwrap(),
        1e6,
        &LATENCY_BOUNDS,
    );
    assert_eq!((empty.count, empty.sum), (0, 0.0));
}

/// A lab capture through the whole pipeline, with its node timings under `label`.
fn lab_report(case: &str) -> (Report, Vec<(SocketAddr, NodeTimings)>) {
    let path = format!(
        "{}/testdata/lab/{case}/capture.pcap",
        env!("CARGO_MANIFEST_DIR")
    );
    let analysis = analyze_path(&path, AnalyzerConfig::default()).unwrap();
    let timings = node_timings(&analysis.nodes);
    (
        conclude(analysis, Options::default(), Meta::default()),
        timings,
    )
}

#[test]
fn tally_counts_each_open_and_close_once_from_a_real_capture() {
    // poll-mode: PyMongo with serverMonitoringMode=poll, 3 nodes, minPoolSize 1; every
    // connection's SYN and FIN are in the capture (truth.json).
    let (report, timings) = lab_report("poll-mode");
    let nodes: Vec<_> = timings
        .into_iter()
        .map(|(a, t)| (a.to_string(), t))
        .collect();
    let mut tally = Tally::default();
    let first = tally.snapshot(&report, nodes.clone(), CaptureCounters::default());
    let again = tally.snapshot(&report, nodes, CaptureCounters::default());
    assert_eq!(
        first.opened, again.opened,
        "a second refresh counts nothing twice"
    );
    assert_eq!(first.closed, again.closed);
    let conns = &report.attribution.connections;
    let with_syn = conns.iter().filter(|c| c.obs.opened.is_some()).count() as u64;
    let with_fin = conns.iter().filter(|c| c.obs.closed.is_some()).count() as u64;
    assert_eq!(first.opened.values().sum::<u64>(), with_syn);
    assert_eq!(first.closed.values().sum::<u64>(), with_fin);
    assert_eq!(
        first.open.values().sum::<u64>(),
        conns.len() as u64 - with_fin
    );
    let polling: u64 = first
        .closed
        .iter()
        .filter(|(k, _)| k.class == "polling-monitor" && k.conn.app == "reports")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        polling, 3,
        "one polling monitor per node: {:?}",
        first.closed
    );
    assert_eq!(
        first
            .mongo_clients
            .iter()
            .find(|(k, _)| k.app == "reports")
            .map(|(_, n)| *n),
        Some(1)
    );
    // Each node's heartbeat histogram has the polling cadence (2 s) in the 2 s bucket.
    for t in first.nodes.values() {
        let two = t
            .heartbeat
            .buckets
            .iter()
            .find(|(b, _)| *b == 2.0)
            .unwrap()
            .1;
        assert!(two * 2 >= t.heartbeat.count, "{:?}", t.heartbeat);
    }
    // Released connections are forgotten; the counters keep what they counted.
    let ids: HashSet<u64> = conns.iter().map(|c| c.obs.id).collect();
    tally.forget(&ids);
    assert!(tally.counted_open.is_empty() && tally.counted_close.is_empty());
    assert_eq!(tally.opened.values().sum::<u64>(), with_syn);
}

#[test]
fn redacted_labels_name_no_host_and_no_app() {
    let (report, timings) = lab_report("two-apps");
    let mut redactor = Redactor::default();
    let shown = report.clone().redacted_with(&mut redactor);
    let nodes = timings
        .into_iter()
        .map(|(a, t)| (redactor.address(&a.to_string()), t))
        .collect();
    let snap = Tally::default().snapshot(&shown, nodes, CaptureCounters::default());
    let text = encode(Arc::new(snap));
    for secret in ["127.0.0.", "orders-api", "billing"] {
        assert!(!text.contains(secret), "{secret} in\n{text}");
    }
    // The labels use the report's pseudonyms: every node label is a node of the report.
    let report_nodes: Vec<&str> = shown.nodes.iter().map(|n| n.node.as_str()).collect();
    for line in text.lines().filter(|l| l.contains("node=\"")) {
        let node = line
            .split("node=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(node.starts_with("host-"), "{line}");
        assert!(
            report_nodes.contains(&node),
            "{node} not in {report_nodes:?}"
        );
    }
    assert!(text.contains("app=\"app-1\"") && text.contains("app=\"app-2\""));
    // The same redactor on a later report keeps every pseudonym.
    let later = report.redacted_with(&mut redactor);
    assert_eq!(
        later.nodes.iter().map(|n| &n.node).collect::<Vec<_>>(),
        shown.nodes.iter().map(|n| &n.node).collect::<Vec<_>>()
    );
}
