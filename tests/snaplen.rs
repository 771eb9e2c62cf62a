//! Captures taken with a short snap length (`tcpdump -s N`, often asked for so that no
//! document data leaves the customer): the lab's plaintext recordings of real drivers,
//! every packet cut to N bytes as tcpdump would have kept them, read against the truth.
//! Every message still starts in the kept bytes, so its command name and a hello's first
//! fields are there; what is lost is what lies further in.

use std::path::Path;

use conn_attrib::attribute::Options;
use conn_attrib::conclude;
use conn_attrib::report::Meta;
use serde_json::Value;

mod common;

/// Whether a file is a legacy pcap (either byte order, µs or ns), not pcapng.
fn is_legacy_pcap(bytes: &[u8]) -> bool {
    let magic = u32::from_le_bytes(bytes[..4].try_into().unwrap());
    matches!(magic, 0xa1b2_c3d4 | 0xa1b2_3c4d | 0xd4c3_b2a1 | 0x4d3c_b2a1)
}

/// A legacy pcap file with every record cut to `snap` bytes (the on-wire length kept), as
/// `tcpdump -s snap` writes it. Both byte orders and both time resolutions.
fn with_snap_length(pcap: &[u8], snap: u32) -> Vec<u8> {
    let magic = u32::from_le_bytes(pcap[..4].try_into().unwrap());
    let little = matches!(magic, 0xa1b2_c3d4 | 0xa1b2_3c4d);
    let read = |b: &[u8]| {
        let b: [u8; 4] = b.try_into().unwrap();
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let write = |n: u32| {
        if little {
            n.to_le_bytes()
        } else {
            n.to_be_bytes()
        }
    };
    let mut out = pcap[..24].to_vec();
    out[16..20].copy_from_slice(&write(snap));
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let incl = read(&pcap[at + 8..at + 12]) as usize;
        let kept = incl.min(snap as usize);
        out.extend_from_slice(&pcap[at..at + 8]);
        out.extend_from_slice(&write(kept as u32));
        out.extend_from_slice(&pcap[at + 12..at + 16]);
        out.extend_from_slice(&pcap[at + 16..at + 16 + kept]);
        at += 16 + incl;
    }
    out
}

/// Each plaintext lab case stored as legacy pcap (the cut cases are pcapng, as editcap
/// writes them), read with every packet cut to `snap`: (case, truth, report).
fn snapped_cases(snap: u32) -> Vec<(String, Value, Value)> {
    let cases: Vec<_> = common::lab_cases()
        .into_iter()
        .filter(|(_, t)| {
            !t["connections"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["tls"].is_object())
        })
        .filter_map(|(dir, t): (std::path::PathBuf, Value)| {
            let path = Path::new(&dir).join(t["capture"].as_str().unwrap());
            let bytes = std::fs::read(path).unwrap();
            if !is_legacy_pcap(&bytes) {
                return None;
            }
            let analysis = common::analyze_bytes(with_snap_length(&bytes, snap));
            let r = conclude(analysis, Options::default(), Meta::default());
            let r: Value = serde_json::from_str(&conn_attrib::report::to_json(&r)).unwrap();
            Some((t["case"].as_str().unwrap().to_string(), t, r))
        })
        .collect();
    assert!(cases.len() >= 30, "the lab's plaintext cases are missing");
    cases
}

/// Connections read as the drivers used them, and those read as another role (not
/// unknown), with what they were read as.
fn compare(cases: &[(String, Value, Value)]) -> (usize, usize, Vec<String>) {
    let (mut total, mut right, mut wrong) = (0, 0, Vec::new());
    for (case, t, r) in cases {
        let found = common::connections_by_client(r);
        for tc in t["connections"].as_array().unwrap() {
            total += 1;
            let c = found
                .get(tc["client"].as_str().unwrap())
                .unwrap_or_else(|| panic!("{case}: {} not found", tc["client"]));
            if c["class"] == tc["role"] {
                right += 1;
            } else if c["class"] != "unknown" {
                wrong.push(format!(
                    "{case}: {} is {}, read as {}: {}",
                    tc["client"], tc["role"], c["class"], c["evidence"]
                ));
            }
        }
    }
    (total, right, wrong)
}

fn snap_warning(r: &Value) -> &str {
    r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["kind"] == "snap-length")
        .map(|w| w["message"].as_str().unwrap())
        .unwrap_or("")
}

#[test]
fn at_512_bytes_every_connection_reads_as_with_whole_packets() {
    let cases = snapped_cases(512);
    let (total, right, wrong) = compare(&cases);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(right, total, "{} of {total} unknown", total - right);
    for (case, _, r) in &cases {
        if r["input"]["tcp_segments"].as_u64().unwrap() > 0 && !snap_warning(r).is_empty() {
            assert!(
                snap_warning(r).contains("at most 512 bytes of a packet kept"),
                "{case}: {}",
                snap_warning(r)
            );
        }
    }
    // Most cases carry messages longer than 512 bytes (hello replies): they say so.
    let warned = cases.iter().filter(|(_, _, r)| !snap_warning(r).is_empty());
    assert!(warned.count() * 2 > cases.len());
}

#[test]
fn at_256_bytes_roles_hold_and_nothing_is_read_as_another_role() {
    // The handshake's client metadata is cut, so what only it tells (libmongoc's name for
    // a single-threaded client, loadBalanced, internalClient) may be missing: those
    // connections may be unknown, never another role.
    let cases = snapped_cases(256);
    let (total, right, wrong) = compare(&cases);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(right * 100 >= total * 99, "{right} of {total} right");
}

#[test]
fn too_short_for_command_names_says_so_and_claims_no_role() {
    let cases = snapped_cases(80);
    let (_, _, wrong) = compare(&cases);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    for (case, _, r) in &cases {
        assert!(
            snap_warning(r).contains("too few for a message's command name"),
            "{case}: {}",
            snap_warning(r)
        );
    }
}
