//! Every lab case read as if tcpdump had been started while the drivers ran: its first
//! 5%, 20% or 50% dropped, so connections opened before the cut show no handshake while
//! those opened after do (a driver's RTT connection or pool opened a moment after its
//! streaming monitors falls on the other side of the cut); and as if it had been stopped
//! early, its last 50% dropped (a pool's first operations, or a monitor's first
//! heartbeats, not reached yet); and started late on a busy host that also dropped one
//! packet in ten. Plaintext cases as they are;
//! TLS cases with the key log their drivers wrote when there is one, keyless otherwise.
//! Each connection's class is compared with the truth the lab derived from the drivers:
//! a window can leave a role uncertain (then the verdict says so with a lower
//! confidence), but a high-confidence verdict must be right.

use std::path::Path;

use conn_attrib::attribute::Options;
use conn_attrib::capture::{FileSource, PacketSource};
use conn_attrib::observe::KeyLogConfig;
use conn_attrib::report::Meta;
use conn_attrib::{conclude, Analyzer, AnalyzerConfig};
use serde_json::Value;

mod common;

/// A capture window: from and until, as fractions of the capture's duration, and one packet
/// in how many the capture lost (none: every packet kept).
type Window = (f64, f64, Option<u64>);

/// The JSON report of the part of the capture in `window`.
fn report_of_window(dir: &Path, truth: &Value, (from, until, drop): Window) -> Value {
    let capture = dir.join(truth["capture"].as_str().unwrap());
    let path = capture.to_str().unwrap();
    let times: Vec<f64> = {
        let mut source = FileSource::open(path).unwrap();
        std::iter::from_fn(|| source.next_packet().unwrap().map(|p| p.ts.as_secs_f64())).collect()
    };
    let at = |fraction: f64| times[0] + (times[times.len() - 1] - times[0]) * fraction;
    let window = at(from)..=at(until);
    let mut config = AnalyzerConfig::default();
    config.observer.keylog = truth["keylog"].as_str().map(|k| KeyLogConfig {
        path: dir.join(k),
        follow: false,
    });
    let mut analyzer = Analyzer::new(config);
    let mut source = FileSource::open(path).unwrap();
    let mut n = 0;
    while let Some(p) = source.next_packet().unwrap() {
        n += 1;
        if window.contains(&p.ts.as_secs_f64()) && !drop.is_some_and(|every| common::lost(n, every))
        {
            analyzer.packet(&p);
        }
    }
    let report = conclude(analyzer.finish(), Options::default(), Meta::default());
    serde_json::from_str(&conn_attrib::report::to_json(&report)).unwrap()
}

/// The windows every lab case is read in: started 5%, 20% or 50% in, stopped a fifth of
/// the way or halfway, started late on a host that lost one packet in ten.
const WINDOWS: [Window; 7] = [
    (0.05, 1.0, None),
    (0.2, 1.0, None),
    (0.5, 1.0, None),
    (0.0, 0.2, None),
    (0.0, 0.5, None),
    (0.1, 1.0, Some(10)),
    (0.5, 1.0, Some(10)),
];

/// One connection's verdict in one window of a lab case, beside the role the lab
/// derived for it.
struct Reading {
    case: String,
    window: Window,
    verdict: Value,
    truth: String,
}

impl Reading {
    fn describe(&self) -> String {
        format!(
            "{} in {:?}: {} read as {} ({}; truth {}): {}",
            self.case,
            self.window,
            self.verdict["client"],
            self.verdict["class"],
            self.verdict["confidence"],
            self.truth,
            self.verdict["evidence"]
        )
    }
}

/// Every connection of every lab case `accept`s, read in each of [`WINDOWS`].
fn readings(accept: impl Fn(&Value) -> bool) -> Vec<Reading> {
    let mut out = Vec::new();
    for (dir, truth) in common::lab_cases().into_iter().filter(|(_, t)| accept(t)) {
        let case = truth["case"].as_str().unwrap();
        let roles = common::connections_by_client(&truth);
        for window in WINDOWS {
            let r = report_of_window(&dir, &truth, window);
            for c in r["connections"].as_array().unwrap() {
                let Some(want) = roles.get(c["client"].as_str().unwrap()) else {
                    continue;
                };
                out.push(Reading {
                    case: case.to_string(),
                    window,
                    verdict: c.clone(),
                    truth: want["role"].as_str().unwrap().to_string(),
                });
            }
        }
    }
    out
}

#[test]
fn a_capture_started_late_or_stopped_early_is_never_confidently_wrong() {
    let all = readings(|_| true);
    let high: Vec<&Reading> = all
        .iter()
        .filter(|r| r.verdict["confidence"] == "high")
        .collect();
    let confidently_wrong: Vec<String> = high
        .iter()
        .filter(|r| r.verdict["class"] != r.truth.as_str())
        .map(|r| r.describe())
        .collect();
    assert!(
        confidently_wrong.is_empty(),
        "{} of {} high-confidence verdicts wrong:\n{}",
        confidently_wrong.len(),
        high.len(),
        confidently_wrong.join("\n")
    );
    assert!(
        all.len() >= 3000 && high.len() >= 1600,
        "{} checked, {} high",
        all.len(),
        high.len()
    );
}

/// A single-threaded client (libmongoc, PHP) checks each node every 60 s by default over
/// the connection its operations use, so a capture begun after its handshakes can show
/// a connection with operations and nothing else: what a pool connection shows too. With
/// no monitor from its host to tell a pooled driver, it may be read as either, but only
/// with low confidence, saying what else it may be.
#[test]
fn a_single_threaded_client_seen_without_its_handshakes_is_not_called_a_pool_with_confidence() {
    let single_threaded = |truth: &Value| {
        truth["connections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["role"] == "single-threaded")
    };
    let all = readings(single_threaded);
    let seen_as_pool: Vec<&Reading> = all
        .iter()
        .filter(|r| r.truth == "single-threaded" && r.verdict["class"] == "pool")
        .collect();
    let confident: Vec<String> = seen_as_pool
        .iter()
        .filter(|r| r.verdict["confidence"] != "low")
        .map(|r| r.describe())
        .collect();
    assert!(confident.is_empty(), "{}", confident.join("\n"));
    assert!(
        seen_as_pool.iter().all(|r| r.verdict["evidence"]
            .as_str()
            .unwrap()
            .contains("single-threaded")),
        "the evidence names the alternative"
    );
    // The lab's libmongoc and PHP cases, plaintext and TLS: some windows do leave a
    // connection with operations only.
    assert!(
        seen_as_pool.len() >= 4,
        "{} read as pool",
        seen_as_pool.len()
    );
}

/// A capture stopped moments after a pool connection's handshake shows what an RTT
/// monitor shows before its first check. Where each of the client's streaming monitors
/// to that node already has its RTT connection (one of each per server and MongoClient),
/// the newcomer is a pool connection; and an RTT monitor is never called one.
#[test]
fn a_handshake_only_connection_beside_complete_monitors_is_a_pool_connection() {
    let all = readings(|_| true);
    let named_by_the_rule: Vec<&Reading> = all
        .iter()
        .filter(|r| {
            r.verdict["evidence"]
                .as_str()
                .unwrap()
                .contains("already has its RTT connection beside it")
        })
        .collect();
    let wrong: Vec<String> = named_by_the_rule
        .iter()
        .filter(|r| r.truth != "pool")
        .map(|r| r.describe())
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        named_by_the_rule.len() >= 20,
        "{} handshake-only pool connections named",
        named_by_the_rule.len()
    );
    let rtt_as_pool: Vec<String> = all
        .iter()
        .filter(|r| r.truth == "rtt-monitor" && r.verdict["class"] == "pool")
        .filter(|r| r.verdict["confidence"] != "low")
        .map(|r| r.describe())
        .collect();
    assert!(rtt_as_pool.is_empty(), "{}", rtt_as_pool.join("\n"));
}
