//! A container host's `tcpdump -i any`: PyMongo and the Node.js driver in a network
//! namespace whose traffic the host masquerades (nftables) on its way to the test server's
//! replica set, recorded by `scripts/lab/record-nat.sh` on both sides of the NAT at once
//! (`testdata/nat/any.pcap`) and on the application's side only (`app.pcap`). Each
//! connection appears twice in the first, under other addresses, with the same sequence
//! numbers. Before mirrors were recognised, the uplink's copies read as a second client
//! (10.200.2.1) with as many connections again.

use std::io::Cursor;
use std::path::Path;

use conn_attrib::analyzer::analyze;
use conn_attrib::attribute::Options;
use conn_attrib::capture::file::FileSource;
use conn_attrib::report::Meta;
use conn_attrib::{conclude, AnalyzerConfig};
use serde_json::Value;

fn capture(name: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/nat");
    std::fs::read(dir.join(name)).unwrap()
}

fn report_of(capture: Vec<u8>) -> Value {
    let mut src = FileSource::from_reader("nat.pcap", Box::new(Cursor::new(capture))).unwrap();
    let analysis = analyze(&mut src, AnalyzerConfig::default());
    let r = conclude(analysis, Options::default(), Meta::default());
    serde_json::from_str(&conn_attrib::report::to_json(&r)).unwrap()
}

fn report(name: &str) -> Value {
    report_of(capture(name))
}

/// A legacy pcap (little-endian, as tcpdump wrote it here) without its records before
/// `from` seconds (epoch): a capture started later, on connections already open.
fn from_second(pcap: &[u8], from: u32) -> Vec<u8> {
    let mut out = pcap[..24].to_vec();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let secs = u32::from_le_bytes(pcap[at..at + 4].try_into().unwrap());
        let incl = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        if secs >= from {
            out.extend_from_slice(&pcap[at..at + 16 + incl]);
        }
        at += 16 + incl;
    }
    out
}

/// Each connection as (client, server, class), and each client as (id, counts, verdict).
fn reading(r: &Value) -> (Vec<[String; 3]>, Vec<[String; 3]>) {
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    let connections = r["connections"].as_array().unwrap().iter();
    let clients = r["clients"].as_array().unwrap().iter();
    (
        connections
            .map(|c| [text(&c["client"]), text(&c["server"]), text(&c["class"])])
            .collect(),
        clients
            .map(|c| [text(&c["id"]), c["counts"].to_string(), text(&c["verdict"])])
            .collect(),
    )
}

#[test]
fn both_sides_of_a_nat_read_as_the_application_side_alone() {
    let (any, app) = (report("any.pcap"), report("app.pcap"));
    let (connections, clients) = reading(&app);
    assert_eq!(connections.len(), 20, "{connections:?}");
    assert_eq!(clients.len(), 2, "{clients:?}");
    assert_eq!(reading(&any), (connections.clone(), clients));
    assert!(connections.iter().all(|c| c[0].starts_with("10.200.1.2:")));

    assert_eq!(any["input"]["nat_duplicates"], 20);
    assert!(app["input"]["nat_duplicates"].is_null());
    let said = |r: &Value| {
        r["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["kind"] == "nat-duplicates")
    };
    assert!(said(&any));
    assert!(!said(&app));
}

#[test]
fn a_capture_begun_on_open_connections_matches_their_two_sides_by_their_first_segment() {
    // Started 4 s into the recording: every monitor and pool connection is already open,
    // no SYN to match. Both sides of the NAT show the same first segment of each.
    let (any, app) = (capture("any.pcap"), capture("app.pcap"));
    let start = u32::from_le_bytes(app[24..28].try_into().unwrap());
    let (any, app) = (
        report_of(from_second(&any, start + 4)),
        report_of(from_second(&app, start + 4)),
    );
    let (connections, clients) = reading(&app);
    assert!(connections.len() >= 12, "{connections:?}");
    assert_eq!(reading(&any), (connections.clone(), clients));
    assert_eq!(any["input"]["nat_duplicates"], connections.len());
}
