//! The memory bound of live mode and of long offline captures (`--keep-closed`): closed
//! connections beyond the newest few are folded into their clients' counts and released. Driven here through the same `Analyzer` and
//! `live::release_closed` as live mode, with packets from real-driver lab captures
//! instead of libpcap, and a "refresh" every few hundred packets. Releasing must not
//! change what the report says about clients, only how many connections it lists.

use std::collections::HashSet;
use std::path::Path;

use conn_attrib::attribute::{Options, Released};
use conn_attrib::capture::{FileSource, PacketSource};
use conn_attrib::observe::KeyLogConfig;
use conn_attrib::report::{Meta, Report};
use conn_attrib::{
    analyze_path, analyze_path_bounded, conclude, conclude_with_released, live, Analyzer,
};
use conn_attrib::{Analysis, AnalyzerConfig};

mod common;

fn capture(case: &str, file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/lab")
        .join(case)
        .join(file)
        .to_string_lossy()
        .into_owned()
}

/// The analysis with a release every `every` packets keeping `keep` closed connections;
/// also the most connection records the analyzer held at once.
fn with_releases(path: &str, every: u64, keep: usize) -> (Report, usize) {
    let mut source = FileSource::open(path).expect("readable");
    let mut analyzer = Analyzer::new(AnalyzerConfig::default());
    let mut released = Released::default();
    let mut packets = 0u64;
    let mut most_held = 0;
    while let Some(packet) = source.next_packet().expect("clean capture") {
        analyzer.packet(&packet);
        packets += 1;
        if packets % every == 0 {
            let snapshot: Analysis = analyzer.snapshot_analysis();
            most_held = most_held.max(snapshot.connections.len());
            let report =
                conclude_with_released(snapshot, &released, Options::default(), Meta::default());
            live::release_closed(&mut analyzer, &mut released, &report, keep);
        }
    }
    let analysis = analyzer.finish();
    let report = conclude_with_released(analysis, &released, Options::default(), Meta::default());
    (report, most_held)
}

/// The report with every connection held to the end.
fn unbounded(path: &str) -> Report {
    conclude(
        analyze_path(path, AnalyzerConfig::default()).unwrap(),
        Options::default(),
        Meta::default(),
    )
}

fn client_summary(r: &Report) -> Vec<(String, String, u64, String)> {
    r.attribution
        .clients
        .iter()
        .map(|c| {
            (
                c.id.clone(),
                c.mode.name().to_string(),
                c.counts.total,
                format!("{:?}", c.counts),
            )
        })
        .collect()
}

#[test]
fn released_connections_still_count_in_their_clients() {
    // pool-churn: PyMongo with maxIdleTimeMS=1000, pool connections closed and reopened.
    let path = capture("pool-churn", "capture.pcap");
    let full = unbounded(&path);
    let closed = full
        .attribution
        .connections
        .iter()
        .filter(|c| c.obs.closed.is_some())
        .count();
    assert!(closed >= 10, "the case must churn: {closed} closed");

    let (bounded, most_held) = with_releases(&path, 200, 2);
    assert!(
        bounded.input.released_connections >= (closed - 2) as u64 / 2,
        "{} released of {closed} closed",
        bounded.input.released_connections
    );
    assert_eq!(
        bounded.attribution.connections.len() as u64 + bounded.input.released_connections,
        full.attribution.connections.len() as u64
    );
    assert!(most_held < full.attribution.connections.len());
    assert_eq!(client_summary(&bounded), client_summary(&full));
    let text = bounded.render(conn_attrib::report::Format::Text);
    assert!(
        text.contains("released from memory"),
        "the report says connections were released:\n{text}"
    );
}

/// What releasing must leave as it was: every client whole (mode, MongoClients, formula,
/// verdict and each deviation, pool peaks), every node's row, the cluster's membership,
/// its count of internal connections and each dropConnections seen.
fn what_releasing_keeps(r: &Report) -> String {
    let drops: Vec<_> = r
        .cluster
        .drop_connections_seen
        .iter()
        .map(|d| (&d.sender, &d.member, &d.targets, d.ok))
        .collect();
    format!(
        "{:#?}\n{:#?}\n{:#?}\ninternal connections: {}\n{drops:?}",
        r.attribution.clients, r.nodes, r.cluster.membership, r.cluster.internal_connections
    )
}

#[test]
fn every_lab_case_reads_the_same_with_its_closed_connections_released() {
    // Releasing as early as possible: a fold once two closed connections are held, and a
    // live refresh every 50 packets keeping one. Folded connections must still give
    // their clients' MongoClient count, monitored nodes and pool peaks: these were lost,
    // and a client whose first connections were released read "exceeds: (0 + 2) x 1 node".
    let mut released_somewhere = 0;
    for (dir, truth) in common::lab_cases() {
        let path = dir.join(truth["capture"].as_str().unwrap());
        let path = path.to_str().unwrap();
        let mut config = AnalyzerConfig::default();
        config.observer.keylog = truth["keylog"].as_str().map(|k| KeyLogConfig {
            path: dir.join(k),
            follow: false,
        });
        let full = conclude(
            analyze_path(path, config.clone()).unwrap(),
            Options::default(),
            Meta::default(),
        );
        let expected = what_releasing_keeps(&full);
        // Each bound folds at other moments: which connections of a client go first.
        for (pipelined, keep) in [(false, 1), (true, 1), (false, 2), (false, 3)] {
            let config = AnalyzerConfig {
                pipelined,
                ..config.clone()
            };
            let (analysis, released) =
                analyze_path_bounded(path, config, keep, &mut |_| {}).unwrap();
            let bounded =
                conclude_with_released(analysis, &released, Options::default(), Meta::default());
            released_somewhere += bounded.input.released_connections;
            assert_eq!(
                what_releasing_keeps(&bounded),
                expected,
                "{path}: --keep-closed {keep} (pipelined {pipelined}, {} released) changed the report",
                bounded.input.released_connections
            );
        }
        if truth["keylog"].is_null() {
            let (live, _) = with_releases(path, 50, 1);
            assert_eq!(
                what_releasing_keeps(&live),
                expected,
                "{path}: live releases ({} released) changed the report",
                live.input.released_connections
            );
        }
    }
    assert!(released_somewhere >= 300, "{released_somewhere} released");
}

#[test]
fn releasing_nothing_changes_nothing() {
    // Monitors never close in this case: nothing to release, the reports are identical.
    let path = capture("streaming-minpool", "capture.pcapng");
    let full = unbounded(&path);
    let (bounded, _) = with_releases(&path, 100, usize::MAX);
    assert_eq!(bounded.input.released_connections, 0);
    assert_eq!(client_summary(&bounded), client_summary(&full));
    let ids = |r: &Report| -> HashSet<u64> {
        r.attribution.connections.iter().map(|c| c.obs.id).collect()
    };
    assert_eq!(ids(&bounded), ids(&full));
}

#[test]
fn offline_keep_closed_bounds_what_is_held_and_keeps_client_totals() {
    // pool-churn repeats its bursts: pool connections open and close all through it.
    let path = capture("pool-churn", "capture.pcap");
    let full = unbounded(&path);
    let (analysis, released) =
        analyze_path_bounded(&path, AnalyzerConfig::default(), 2, &mut |_| {}).unwrap();
    let bounded = conclude_with_released(analysis, &released, Options::default(), Meta::default());
    assert!(
        bounded.input.released_connections > 0,
        "something was released"
    );
    assert_eq!(
        bounded.attribution.connections.len() as u64 + bounded.input.released_connections,
        full.attribution.connections.len() as u64
    );
    let closed_held = bounded
        .attribution
        .connections
        .iter()
        .filter(|c| c.obs.closed.is_some())
        .count();
    // Folds run every few thousand packets once twice the bound is held.
    assert!(
        closed_held < full.attribution.connections.len() / 2,
        "{closed_held} closed held"
    );
    assert_eq!(client_summary(&bounded), client_summary(&full));

    // A bound larger than the capture changes nothing.
    let (analysis, released) =
        analyze_path_bounded(&path, AnalyzerConfig::default(), 100_000, &mut |_| {}).unwrap();
    let same = conclude_with_released(analysis, &released, Options::default(), Meta::default());
    assert_eq!(same.input.released_connections, 0);
    assert_eq!(
        same.attribution.connections.len(),
        full.attribution.connections.len()
    );
}

#[test]
fn a_live_snapshot_counts_the_input_as_the_end_does() {
    // A client port reused: a new SYN with a new ISN on a flow whose end was not
    // captured. Live snapshots counted the reuse as 0.
    let mut pcap = common::Pcap::new(1);
    let mut first =
        common::Conversation::new(([10, 0, 0, 5], 50_000), ([10, 0, 0, 9], 27017), 1_000_000);
    first.open(&mut pcap);
    let mut second =
        common::Conversation::new(([10, 0, 0, 5], 50_000), ([10, 0, 0, 9], 27017), 3_000_000);
    second.client_seq = 7_000_000;
    second.server_seq = 9_000_000;
    second.open(&mut pcap);
    let mut source =
        FileSource::from_reader("reuse.pcap", Box::new(std::io::Cursor::new(pcap.bytes)))
            .expect("a capture");
    let mut analyzer = Analyzer::new(AnalyzerConfig::default());
    while let Some(packet) = source.next_packet().expect("clean capture") {
        analyzer.packet(&packet);
    }
    let snapshot = analyzer.snapshot_analysis().input;
    let end = analyzer.finish().input;
    assert_eq!(end.reused_ports, 1);
    assert_eq!(snapshot.reused_ports, end.reused_ports);
    assert_eq!(snapshot.tcp_connections, end.tcp_connections);
}
