//! `--threads 2`: reading and reassembly on one thread, the observer on another. The
//! claim is that the report does not change, byte for byte; checked here on every lab
//! capture of real drivers (with its key log where it has one, so decrypted TLS goes
//! through the second thread too), with folds forced by a tiny `--keep-closed` and
//! without, and on a capture cut short mid-record; and what the fold's hook sees of the
//! held and open connections at each of its calls.

use std::path::{Path, PathBuf};

use conn_attrib::attribute::Options;
use conn_attrib::capture::FileSource;
use conn_attrib::observe::KeyLogConfig;
use conn_attrib::report::{to_json, to_text, Meta};
use conn_attrib::{
    analyze_path_bounded, analyze_pipelined, analyze_with_hook, conclude_with_released,
    AnalyzerConfig, Held,
};

fn lab_cases() -> Vec<PathBuf> {
    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/lab");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&lab)
        .expect("the lab's captures")
        .map(|e| e.expect("readable directory").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    cases
}

fn capture_of(case: &Path) -> PathBuf {
    ["capture.pcap", "capture.pcapng"]
        .iter()
        .map(|name| case.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no capture in {}", case.display()))
}

/// A case's key log, where it has one.
fn keylog_of(case: &Path) -> Option<PathBuf> {
    Some(case.join("keylog.txt")).filter(|path| path.exists())
}

fn config_with(keylog: Option<&Path>) -> AnalyzerConfig {
    let mut config = AnalyzerConfig::default();
    config.observer.keylog = keylog.map(|path| KeyLogConfig {
        path: path.to_path_buf(),
        follow: false,
    });
    config
}

/// The JSON and text reports of one analysis.
fn reports(capture: &Path, keylog: Option<&Path>, keep_closed: usize, pipelined: bool) -> String {
    let config = AnalyzerConfig {
        pipelined,
        ..config_with(keylog)
    };
    let (analysis, released) =
        analyze_path_bounded(capture.to_str().unwrap(), config, keep_closed, &mut |_| {})
            .expect("readable");
    let report = conclude_with_released(analysis, &released, Options::default(), Meta::default());
    format!("{}\n{}", to_json(&report), to_text(&report))
}

fn assert_same(capture: &Path, keylog: Option<&Path>, keep_closed: usize) {
    let one = reports(capture, keylog, keep_closed, false);
    let two = reports(capture, keylog, keep_closed, true);
    assert!(
        one == two,
        "{} (keep_closed {keep_closed}): the two-thread report differs",
        capture.display()
    );
}

#[test]
fn two_threads_report_what_one_does_on_every_lab_capture() {
    let cases = lab_cases();
    assert!(cases.len() >= 30, "the lab's cases are all here");
    for case in cases {
        let capture = capture_of(&case);
        let keylog = keylog_of(&case);
        let keylog = keylog.as_deref();
        assert_same(&capture, keylog, 10_000);
        // Folds every few dozen packets once four closed connections are held: the
        // hook runs on the observer's thread and must see what it sees on one thread.
        assert_same(&capture, keylog, 2);
    }
}

#[test]
fn two_threads_report_what_one_does_when_folds_release_connections() {
    // pool-churn opens and closes pool connections all through: folds release many.
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/lab/pool-churn");
    let capture = capture_of(&case);
    let report = reports(&capture, None, 2, true);
    // Written only when some were released.
    assert!(
        report.contains("\"released_connections\":"),
        "the fold released connections"
    );
    assert_same(&capture, None, 2);
}

#[test]
fn two_threads_report_what_one_does_on_a_capture_cut_mid_record() {
    let capture =
        capture_of(&Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/lab/pool-churn"));
    let bytes = std::fs::read(&capture).unwrap();
    let cut = std::env::temp_dir().join(format!("conn-attrib-cut-{}.pcap", std::process::id()));
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3 + 7]).unwrap();
    let report = reports(&cut, None, 10_000, true);
    assert_same(&cut, None, 10_000);
    std::fs::remove_file(&cut).unwrap();
    assert!(report.contains("truncated-file"), "the cut is reported");
}

/// What a hook sees at each of its calls: the closed records held, the open connections
/// peeked, and the window, in Debug form.
fn hook_views(capture: &Path, keylog: Option<&Path>, pipelined: bool) -> Vec<String> {
    let config = config_with(keylog);
    let mut source = FileSource::open(capture.to_str().unwrap()).expect("readable");
    let mut views = Vec::new();
    let mut look = |held: &mut dyn Held| {
        let closed = held.take_closed();
        // Open connections come in no particular order.
        let mut open = held.peek_open(&|_| true);
        open.sort_by_key(|o| o.id);
        views.push(format!("{closed:?}\n{open:?}\n{:?}", held.window()));
        held.restore_closed(closed);
    };
    if pipelined {
        analyze_pipelined(&mut source, config, &mut |_| {}, &mut look);
    } else {
        analyze_with_hook(&mut source, config, &mut |_| {}, &mut look);
    }
    views
}

#[test]
fn the_hook_sees_the_same_connections_on_two_threads_as_on_one() {
    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/lab");
    // The hook runs every 64 packets: a few times on the small cases, ~600 on pool-growth.
    for case in ["pool-churn", "tls-pymongo", "cut-capture", "pool-growth"] {
        let case = lab.join(case);
        let capture = capture_of(&case);
        let keylog = keylog_of(&case);
        let keylog = keylog.as_deref();
        let one = hook_views(&capture, keylog, false);
        let two = hook_views(&capture, keylog, true);
        assert!(one.len() >= 3, "{}: the hook ran", case.display());
        assert_eq!(one.len(), two.len());
        for (at, (one, two)) in one.iter().zip(&two).enumerate() {
            assert!(one == two, "{}: hook call {at} differs", case.display());
        }
    }
}
