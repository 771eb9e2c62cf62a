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

/// Whether packet `n` is one of those a busy host's capture dropped, one in `every`
/// (SplitMix64 of `n`: spread, not periodic).
fn lost(n: u64, every: u64) -> bool {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % every == 0
}

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
        if window.contains(&p.ts.as_secs_f64()) && !drop.is_some_and(|every| lost(n, every)) {
            analyzer.packet(&p);
        }
    }
    let report = conclude(analyzer.finish(), Options::default(), Meta::default());
    serde_json::from_str(&conn_attrib::report::to_json(&report)).unwrap()
}

#[test]
fn a_capture_started_late_or_stopped_early_is_never_confidently_wrong() {
    let mut checked = 0;
    let mut high = 0;
    let mut confidently_wrong = Vec::new();
    for (dir, truth) in common::lab_cases() {
        let case = truth["case"].as_str().unwrap();
        let roles = common::connections_by_client(&truth);
        let windows: [Window; 6] = [
            (0.05, 1.0, None),
            (0.2, 1.0, None),
            (0.5, 1.0, None),
            (0.0, 0.5, None),
            (0.1, 1.0, Some(10)),
            (0.5, 1.0, Some(10)),
        ];
        for window in windows {
            let r = report_of_window(&dir, &truth, window);
            for c in r["connections"].as_array().unwrap() {
                let Some(want) = roles.get(c["client"].as_str().unwrap()) else {
                    continue;
                };
                checked += 1;
                if c["confidence"] != "high" {
                    continue;
                }
                high += 1;
                if c["class"] != want["role"] {
                    confidently_wrong.push(format!(
                        "{case} in {window:?}: {} read as {} (truth {}): {}",
                        c["client"], c["class"], want["role"], c["evidence"]
                    ));
                }
            }
        }
    }
    assert!(
        confidently_wrong.is_empty(),
        "{} of {high} high-confidence verdicts wrong:\n{}",
        confidently_wrong.len(),
        confidently_wrong.join("\n")
    );
    assert!(
        checked >= 3000 && high >= 1600,
        "{checked} checked, {high} high"
    );
}
