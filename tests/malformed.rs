//! Bad input: every case asserts a clear warning, no panic, and that the healthy part of
//! the capture is still reported. Hand-built bytes are right here: these are the damaged
//! files and streams real drivers do not produce on demand.

mod common;

use common::*;
use conn_attrib::observe::Observations;
use conn_attrib::{Analysis, AnalyzerConfig};

const CLIENT: ([u8; 4], u16) = ([10, 0, 0, 5], 50_000);
const SERVER: ([u8; 4], u16) = ([10, 0, 0, 9], 27017);

/// A healthy pool connection: handshake, two finds, close.
fn healthy(pcap: &mut Pcap, client_port: u16, ts: u64) {
    let mut c = Conversation::new((CLIENT.0, client_port), SERVER, ts);
    c.open(pcap);
    c.client(
        pcap,
        &op_msg(1, 0, 0, &handshake("orders", "PyMongo", "4.10.1")),
    );
    c.server(pcap, &op_msg(100, 1, 0, &hello_reply()));
    c.client(pcap, &op_msg(2, 0, 0, &command("find")));
    c.server(pcap, &op_msg(101, 2, 0, &ok_reply()));
    c.client(pcap, &op_msg(3, 0, 0, &command("find")));
    c.server(pcap, &op_msg(102, 3, 0, &ok_reply()));
    c.close(pcap);
}

fn conn_from(a: &Analysis, port: u16) -> &Observations {
    a.connections
        .iter()
        .find(|o| o.client.port() == port)
        .unwrap_or_else(|| panic!("no connection from port {port}: {:#?}", a.connections))
}

fn assert_healthy(o: &Observations) {
    assert_eq!(o.command_count("find"), 2, "{o:#?}");
    let hs = o.handshake.as_ref().expect("handshake decoded");
    assert_eq!(hs.app_name.as_deref(), Some("orders"));
}

fn has_warning(a: &Analysis, kind: &str) -> bool {
    a.warnings.iter().any(|w| w.kind == kind)
}

#[test]
fn truncated_file_keeps_what_came_before() {
    let mut pcap = Pcap::new(1);
    healthy(&mut pcap, 50_001, 1_000_000);
    let mut bytes = pcap.bytes;
    // Half a record more.
    let mut more = Pcap::new(1);
    healthy(&mut more, 50_002, 2_000_000);
    bytes.extend_from_slice(&more.bytes[24..24 + 30]);
    let a = analyze_bytes(bytes);
    assert!(!a.input.complete);
    assert!(has_warning(&a, "truncated-file"), "{:?}", a.warnings);
    assert_healthy(conn_from(&a, 50_001));
}

#[test]
fn garbage_record_length_stops_reading_with_a_warning() {
    let mut pcap = Pcap::new(1);
    healthy(&mut pcap, 50_001, 1_000_000);
    pcap.bytes.extend([
        1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0x7f,
    ]);
    pcap.bytes.extend([0u8; 64]);
    let a = analyze_bytes(pcap.bytes);
    assert!(!a.input.complete);
    assert!(
        a.warnings
            .iter()
            .any(|w| w.kind == "bad-record-length" || w.kind == "truncated-file"),
        "{:?}",
        a.warnings
    );
    assert_healthy(conn_from(&a, 50_001));
}

#[test]
fn two_gigabyte_message_length_is_malformed_and_the_stream_resynchronises() {
    let mut pcap = Pcap::new(1);
    let mut c = Conversation::new((CLIENT.0, 50_003), SERVER, 1_000_000);
    c.open(&mut pcap);
    c.client(
        &mut pcap,
        &op_msg(1, 0, 0, &handshake("orders", "PyMongo", "4.10.1")),
    );
    c.server(&mut pcap, &op_msg(100, 1, 0, &hello_reply()));
    let mut bogus = op_msg(2, 0, 0, &command("find"));
    bogus[0..4].copy_from_slice(&0x7fff_fff0i32.to_le_bytes());
    c.client(&mut pcap, &bogus);
    c.client(&mut pcap, &op_msg(3, 0, 0, &command("find")));
    c.server(&mut pcap, &op_msg(101, 3, 0, &ok_reply()));
    c.client(&mut pcap, &op_msg(4, 0, 0, &command("find")));
    c.server(&mut pcap, &op_msg(102, 4, 0, &ok_reply()));
    c.close(&mut pcap);
    healthy(&mut pcap, 50_001, 5_000_000);
    let a = analyze_bytes(pcap.bytes);
    assert!(has_warning(&a, "malformed-header"), "{:?}", a.warnings);
    let o = conn_from(&a, 50_003);
    assert!(o.client_traffic.malformed >= 1);
    assert!(
        o.command_count("find") >= 1,
        "messages after the bad header are found again: {o:#?}"
    );
    assert_healthy(conn_from(&a, 50_001));
}

#[test]
fn message_length_below_header_size_is_malformed() {
    let mut pcap = Pcap::new(1);
    let mut c = Conversation::new((CLIENT.0, 50_004), SERVER, 1_000_000);
    c.open(&mut pcap);
    let mut tiny = op_msg(1, 0, 0, &command("find"));
    tiny[0..4].copy_from_slice(&8i32.to_le_bytes());
    c.client(&mut pcap, &tiny);
    c.client(&mut pcap, &op_msg(2, 0, 0, &command("insert")));
    c.close(&mut pcap);
    let a = analyze_bytes(pcap.bytes);
    assert!(has_warning(&a, "malformed-header"), "{:?}", a.warnings);
    assert_eq!(conn_from(&a, 50_004).command_count("insert"), 1);
}

#[test]
fn invalid_bson_is_reported_and_the_next_message_still_counts() {
    let mut pcap = Pcap::new(1);
    let mut c = Conversation::new((CLIENT.0, 50_005), SERVER, 1_000_000);
    c.open(&mut pcap);
    let mut broken = op_msg(1, 0, 0, &command("find"));
    // The document claims to be longer than the message.
    broken[21..25].copy_from_slice(&5000i32.to_le_bytes());
    c.client(&mut pcap, &broken);
    c.client(&mut pcap, &op_msg(2, 0, 0, &command("insert")));
    c.close(&mut pcap);
    let a = analyze_bytes(pcap.bytes);
    assert!(has_warning(&a, "malformed-message"), "{:?}", a.warnings);
    let o = conn_from(&a, 50_005);
    assert_eq!(o.command_count("insert"), 1);
    assert!(o.client_traffic.malformed >= 1);
}

#[test]
fn unsupported_link_type_is_named_once() {
    let mut pcap = Pcap::new(147);
    pcap.record(1, b"whatever");
    pcap.record(2, b"whatever again");
    let a = analyze_bytes(pcap.bytes);
    let w: Vec<_> = a
        .warnings
        .iter()
        .filter(|w| w.kind == "unsupported-link-type")
        .collect();
    assert_eq!(w.len(), 1, "{:?}", a.warnings);
    assert!(w[0].message.contains("link type 147"), "{}", w[0].message);
    assert_eq!(a.input.undecodable_packets, 2);
}

#[test]
fn non_mongodb_bytes_on_the_port_are_flagged_not_decoded() {
    let mut pcap = Pcap::new(1);
    let mut c = Conversation::new((CLIENT.0, 50_006), SERVER, 1_000_000);
    c.open(&mut pcap);
    c.client(&mut pcap, b"GET / HTTP/1.1\r\nHost: example\r\n\r\n");
    c.server(
        &mut pcap,
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    );
    c.close(&mut pcap);
    healthy(&mut pcap, 50_001, 5_000_000);
    let a = analyze_bytes(pcap.bytes);
    assert!(has_warning(&a, "not-mongodb"), "{:?}", a.warnings);
    let o = conn_from(&a, 50_006);
    assert_eq!(o.messages(), 0);
    assert_healthy(conn_from(&a, 50_001));
}

#[test]
fn mid_stream_start_resynchronises_on_the_next_header() {
    let mut pcap = Pcap::new(1);
    let mut c = Conversation::new((CLIENT.0, 50_007), SERVER, 1_000_000);
    // No SYN: the capture starts inside a message.
    let half = op_msg(1, 0, 0, &command("find"));
    c.client(&mut pcap, &half[10..]);
    c.server(&mut pcap, &op_msg(100, 1, 0, &ok_reply()));
    c.client(&mut pcap, &op_msg(2, 0, 0, &command("insert")));
    c.server(&mut pcap, &op_msg(101, 2, 0, &ok_reply()));
    let a = analyze_bytes(pcap.bytes);
    let o = conn_from(&a, 50_007);
    assert!(!o.syn_seen);
    assert!(o.mid_stream);
    assert_eq!(o.command_count("insert"), 1);
    assert_eq!(o.client.port(), 50_007, "requests decide the client side");
}

#[test]
fn reordered_and_duplicated_segments_give_the_same_observations() {
    let build = |shuffle: bool| {
        let mut pcap = Pcap::new(1);
        let mut c = Conversation::new((CLIENT.0, 50_008), SERVER, 1_000_000);
        c.open(&mut pcap);
        let msg = op_msg(1, 0, 0, &handshake("orders", "PyMongo", "4.10.1"));
        let (a, b) = msg.split_at(msg.len() / 2);
        let f1 = c.client_frame(a);
        let f2 = c.client_frame(b);
        if shuffle {
            pcap.record(f2.0, &f2.1);
            pcap.record(f1.0, &f1.1);
            pcap.record(f2.0 + 1, &f2.1); // duplicate
        } else {
            pcap.record(f1.0, &f1.1);
            pcap.record(f2.0, &f2.1);
        }
        c.server(&mut pcap, &op_msg(100, 1, 0, &hello_reply()));
        c.client(&mut pcap, &op_msg(2, 0, 0, &command("find")));
        c.server(&mut pcap, &op_msg(101, 2, 0, &ok_reply()));
        c.close(&mut pcap);
        analyze_bytes(pcap.bytes)
    };
    let plain = build(false);
    let shuffled = build(true);
    let (p, s) = (conn_from(&plain, 50_008), conn_from(&shuffled, 50_008));
    let (ph, sh) = (p.handshake.clone().unwrap(), s.handshake.clone().unwrap());
    assert_eq!(
        (&ph.app_name, &ph.driver_name, &ph.driver_version),
        (&sh.app_name, &sh.driver_name, &sh.driver_version)
    );
    assert_eq!(p.commands, s.commands);
    assert_eq!(p.hello.requests, s.hello.requests);
    assert!(s.client_traffic.retransmissions >= 1);
    assert_eq!(s.client_traffic.gaps, 0);
}

#[test]
fn a_message_larger_than_the_stream_buffer_is_skipped_but_named() {
    let mut config = AnalyzerConfig::default();
    config.observer.framer.max_buffered = 4096;
    let mut pcap = Pcap::new(1);
    let mut c = Conversation::new((CLIENT.0, 50_009), SERVER, 1_000_000);
    c.open(&mut pcap);
    let big = bson::rawdoc! { "insert": "coll", "documents": [ { "blob": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![7u8; 100_000] } } ], "$db": "test" };
    let msg = op_msg(1, 0, 0, &big);
    for chunk in msg.chunks(1400) {
        c.client(&mut pcap, chunk);
    }
    c.server(&mut pcap, &op_msg(100, 1, 0, &ok_reply()));
    c.client(&mut pcap, &op_msg(2, 0, 0, &command("find")));
    c.close(&mut pcap);
    let a = analyze_bytes_with(pcap.bytes, config);
    let o = conn_from(&a, 50_009);
    assert_eq!(o.command_count("insert"), 1, "{o:#?}");
    assert_eq!(o.command_count("find"), 1);
    assert_eq!(o.client_traffic.oversized, 1);
}

#[test]
fn lost_segment_becomes_a_counted_gap() {
    let mut pcap = Pcap::new(1);
    let mut c = Conversation::new((CLIENT.0, 50_010), SERVER, 1_000_000);
    c.open(&mut pcap);
    c.client(&mut pcap, &op_msg(1, 0, 0, &command("find")));
    let _lost = c.client_frame(&op_msg(2, 0, 0, &command("find")));
    c.client(&mut pcap, &op_msg(3, 0, 0, &command("insert")));
    // The server acknowledges everything: the middle segment reached it, not the capture.
    c.server(&mut pcap, &op_msg(100, 3, 0, &ok_reply()));
    c.close(&mut pcap);
    let a = analyze_bytes(pcap.bytes);
    let o = conn_from(&a, 50_010);
    assert_eq!(o.client_traffic.gaps, 1, "{o:#?}");
    assert_eq!(o.command_count("find"), 1);
    assert_eq!(o.command_count("insert"), 1);
}

#[test]
fn garbage_file_is_not_a_capture() {
    let err = conn_attrib::capture::FileSource::from_reader(
        "junk.bin",
        Box::new(std::io::Cursor::new(vec![0x42u8; 4096])),
    )
    .err()
    .expect("refused");
    assert!(
        err.to_string().contains("neither a pcap nor a pcapng"),
        "{err}"
    );
}

#[test]
fn hitting_the_reassembly_cap_is_a_warning() {
    let mut config = AnalyzerConfig::default();
    config.table.stream.max_early_bytes = 100;
    let mut pcap = Pcap::new(1);
    let mut c = Conversation::new((CLIENT.0, 50_011), SERVER, 1_000_000);
    c.open(&mut pcap);
    let _lost = c.client_frame(&op_msg(1, 0, 0, &command("find")));
    // Early segments beyond the 100-byte cap, with no ACK to say what was lost.
    for i in 0..4 {
        let (t, f) = c.client_frame(&op_msg(2 + i, 0, 0, &command("insert")));
        pcap.record(t, &f);
    }
    let a = analyze_bytes_with(pcap.bytes, config);
    assert!(has_warning(&a, "reassembly-cap"), "{:?}", a.warnings);
    assert!(conn_from(&a, 50_011).command_count("insert") >= 1);
}

mod reorder {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Any segmentation, local reordering and duplication of a valid conversation gives
        /// the same observations as the clean one.
        #[test]
        fn segmentation_reordering_and_duplication_do_not_change_observations(
            cuts in prop::collection::vec(1usize..90, 1..30),
            swaps in prop::collection::vec(0usize..64, 0..12),
            dups in prop::collection::vec(0usize..64, 0..6),
        ) {
            let mut stream = op_msg(1, 0, 0, &handshake("orders", "PyMongo", "4.10.1"));
            for i in 0..6 {
                stream.extend(op_msg(2 + i, 0, 0, &command(if i % 2 == 0 { "find" } else { "insert" })));
            }
            let clean = {
                let mut pcap = Pcap::new(1);
                let mut c = Conversation::new((CLIENT.0, 50_100), SERVER, 1_000_000);
                c.open(&mut pcap);
                c.client(&mut pcap, &stream);
                c.close(&mut pcap);
                analyze_bytes(pcap.bytes)
            };
            let mut pcap = Pcap::new(1);
            let mut c = Conversation::new((CLIENT.0, 50_100), SERVER, 1_000_000);
            c.open(&mut pcap);
            let mut frames = Vec::new();
            let mut at = 0;
            // Cut the whole stream, cycling through the drawn segment sizes.
            for cut in cuts.iter().cycle() {
                if at >= stream.len() {
                    break;
                }
                let end = (at + cut).min(stream.len());
                frames.push(c.client_frame(&stream[at..end]));
                at = end;
            }
            let n = frames.len();
            for s in &swaps {
                let i = s % n;
                if i + 1 < n { frames.swap(i, i + 1); }
            }
            for d in &dups {
                let f = frames[d % n].clone();
                frames.push(f);
            }
            for (t, f) in &frames { pcap.record(*t, f); }
            c.close(&mut pcap);
            let messy = analyze_bytes(pcap.bytes);
            let (a, b) = (conn_from(&clean, 50_100), conn_from(&messy, 50_100));
            prop_assert_eq!(&a.commands, &b.commands);
            prop_assert_eq!(a.hello.requests, b.hello.requests);
            prop_assert_eq!(a.handshake.as_ref().map(|h| h.app_name.clone()), b.handshake.as_ref().map(|h| h.app_name.clone()));
            prop_assert_eq!(b.client_traffic.gaps, 0);
        }
    }
}

#[test]
fn tls_connections_are_named_as_such_not_as_garbage() {
    let mut pcap = Pcap::new(1);
    let mut c = Conversation::new((CLIENT.0, 50_012), SERVER, 1_000_000);
    c.open(&mut pcap);
    // A TLS 1.2 ClientHello record header and some handshake bytes, then the server's.
    let mut hello = vec![0x16, 0x03, 0x01, 0x00, 0x40];
    hello.extend([0x01u8; 0x40]);
    c.client(&mut pcap, &hello);
    let mut reply = vec![0x16, 0x03, 0x03, 0x00, 0x30];
    reply.extend([0x02u8; 0x30]);
    c.server(&mut pcap, &reply);
    c.client(
        &mut pcap,
        &[
            0x17, 0x03, 0x03, 0x00, 0x10, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
        ],
    );
    c.close(&mut pcap);
    let a = analyze_bytes(pcap.bytes);
    assert!(has_warning(&a, "tls"), "{:?}", a.warnings);
    assert!(!has_warning(&a, "not-mongodb"), "{:?}", a.warnings);
    assert!(!has_warning(&a, "malformed-header"), "{:?}", a.warnings);
    let o = conn_from(&a, 50_012);
    assert!(o.tls);
    let v = conn_attrib::classify::classify(&a.connections, None);
    // One record each way and an unreadable handshake: too little to infer a role from.
    assert_eq!(
        v[0].class,
        conn_attrib::classify::Class::Unknown,
        "{}",
        v[0].evidence
    );
    assert!(
        v[0].evidence.starts_with("inferred from TLS record shapes")
            && v[0].evidence.contains("too few flights"),
        "{}",
        v[0].evidence
    );
}

#[test]
fn endless_distinct_command_names_are_counted_within_a_bound() {
    let mut pcap = Pcap::new(1);
    let mut c = Conversation::new((CLIENT.0, 50_020), SERVER, 1_000_000);
    c.open(&mut pcap);
    c.client(&mut pcap, &op_msg(1, 0, 0, &command("find")));
    for i in 0..1000 {
        c.client(
            &mut pcap,
            &op_msg(2 + i, 0, 0, &command(&format!("cmd{i}"))),
        );
    }
    c.client(&mut pcap, &op_msg(5000, 0, 0, &command("find")));
    c.close(&mut pcap);
    healthy(&mut pcap, 50_021, 2_000_000);
    let a = analyze_bytes(pcap.bytes);
    let o = conn_from(&a, 50_020);
    // Every message is counted; names are kept up to a bound, the rest pooled.
    assert_eq!(o.operations(), 1002);
    assert_eq!(o.commands.len(), 129, "{:?}", o.commands.len());
    assert_eq!(o.command_count("find"), 2);
    assert_eq!(o.command_count("cmd0"), 1);
    assert_eq!(o.command_count("(other commands)"), 1000 - 127);
    assert_healthy(conn_from(&a, 50_021));
}

/// Connection attempts that never became connections: a SYN answered by a RST (nothing
/// listening: refused) and a SYN retransmitted but never answered. The server never held
/// either, so neither is listed or counted as a connection; each is counted on its node
/// and named in a warning, and the healthy connection beside them is reported as usual.
#[test]
fn failed_connection_attempts_are_counted_on_their_node_not_listed() {
    const RST_ACK: Flags = Flags {
        syn: false,
        ack: true,
        fin: false,
        rst: true,
    };
    let mut pcap = Pcap::new(1);
    healthy(&mut pcap, 50_000, 1_000_000);
    let refused = (CLIENT.0, 50_001);
    pcap.record(2_000_000, &frame(refused, SERVER, 7, 0, SYN, b""));
    pcap.record(2_000_100, &frame(SERVER, refused, 0, 8, RST_ACK, b""));
    let unanswered = (CLIENT.0, 50_002);
    pcap.record(3_000_000, &frame(unanswered, SERVER, 9, 0, SYN, b""));
    pcap.record(4_000_000, &frame(unanswered, SERVER, 9, 0, SYN, b""));
    let a = analyze_bytes(pcap.bytes);
    assert_eq!(a.connections.len(), 1, "{:#?}", a.connections);
    assert_healthy(conn_from(&a, 50_000));
    let kinds: Vec<&str> = a.warnings.iter().map(|w| w.kind.as_str()).collect();
    assert!(
        kinds.contains(&"refused-connections") && kinds.contains(&"unanswered-connections"),
        "{:#?}",
        a.warnings
    );
    let report = conn_attrib::conclude(a, Default::default(), Default::default());
    let json: serde_json::Value =
        serde_json::from_str(&conn_attrib::report::to_json(&report)).unwrap();
    let node = &json["nodes"][0];
    assert_eq!(node["node"], "10.0.0.9:27017");
    assert_eq!(node["refused_attempts"], 1);
    assert_eq!(node["unanswered_attempts"], 1);
    assert_eq!(json["clients"][0]["counts"]["total"], 1);
}

/// A live snapshot taken while a SYN waits for its answer lists the connections, not the
/// attempt; once answered, it is a connection like any other.
#[test]
fn a_snapshot_does_not_list_a_syn_waiting_for_its_answer() {
    fn snapshot_ports(bytes: Vec<u8>) -> Vec<u16> {
        use conn_attrib::capture::{FileSource, PacketSource};
        let mut src = FileSource::from_reader("test.pcap", Box::new(std::io::Cursor::new(bytes)))
            .expect("a capture");
        let mut analyzer = conn_attrib::Analyzer::new(AnalyzerConfig::default());
        while let Some(packet) = src.next_packet().expect("readable") {
            analyzer.packet(&packet);
        }
        let mut ports: Vec<u16> = analyzer
            .snapshot()
            .iter()
            .map(|o| o.client.port())
            .collect();
        ports.sort_unstable();
        ports
    }
    let mut pcap = Pcap::new(1);
    healthy(&mut pcap, 50_000, 1_000_000);
    // A second connection's SYN, SYN-ACK and ACK: records of 16 + 54 bytes after the
    // 24-byte file header.
    let mut later = Pcap::new(1);
    Conversation::new((CLIENT.0, 50_001), SERVER, 2_000_000).open(&mut later);
    let (syn, answer) = later.bytes[24..].split_at(70);
    pcap.bytes.extend_from_slice(syn);
    assert_eq!(snapshot_ports(pcap.bytes.clone()), [50_000]);
    pcap.bytes.extend_from_slice(answer);
    assert_eq!(snapshot_ports(pcap.bytes), [50_000, 50_001]);
}
