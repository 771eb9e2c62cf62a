//! The Markdown report of one lab case, compared with a reviewed golden file.
//! After an intended change to the report, regenerate it with
//! `UPDATE_GOLDEN=1 cargo test --test golden` and review the diff.

use conn_attrib::attribute::Options;
use conn_attrib::report::{to_markdown, Meta};
use conn_attrib::{analyze_path, conclude, AnalyzerConfig};

#[test]
fn markdown_report_of_the_minpool_case() {
    // Relative paths: cargo runs integration tests from the package root.
    golden_markdown(
        "testdata/lab/streaming-minpool/capture.pcapng",
        "testdata/golden/streaming-minpool.md",
    );
}

/// A replica set's own connections with a removed member still held by one of them, and
/// the dropConnections sent (testdata/lab/cluster-stale).
#[test]
fn markdown_report_of_the_stale_host_case() {
    golden_markdown(
        "testdata/lab/cluster-stale/capture.pcap",
        "testdata/golden/cluster-stale.md",
    );
}

fn golden_markdown(capture: &str, golden: &str) {
    let analysis = analyze_path(capture, AnalyzerConfig::default()).expect("readable");
    let meta = Meta {
        tool: "conn-attrib".into(),
        version: "golden".into(),
        command_line: format!("conn-attrib {capture} --format markdown"),
    };
    let report = conclude(analysis, Options::default(), meta);
    let rendered = to_markdown(&report);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(golden, &rendered).unwrap();
    }
    let expected =
        std::fs::read_to_string(golden).expect("golden file (UPDATE_GOLDEN=1 creates it)");
    assert_eq!(
        rendered, expected,
        "the Markdown report changed; review and UPDATE_GOLDEN=1 if intended"
    );
}
