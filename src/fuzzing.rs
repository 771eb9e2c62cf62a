//! Entry points shared by the fuzz targets (`fuzz/`) and by the regression tests that
//! replay their minimised crashers (`tests/fuzz_regressions.rs`): both call the same code.
//! Each takes arbitrary bytes and must neither panic nor allocate without bound.

use std::io::Cursor;

use crate::capture::{FileSource, LinkType, Packet, Timestamp};
use crate::report::{Format, Meta};
use crate::wire::{self, FrameEvent, Framer, FramerConfig};
use crate::{conclude, Analyzer, AnalyzerConfig};

/// Arbitrary bytes as a capture file: read it, analyse it, render every report; and the
/// same on two threads (`--threads 2`), which must render the same reports.
pub fn capture(data: &[u8]) {
    let open = || FileSource::from_reader("fuzz", Box::new(Cursor::new(data.to_vec())));
    let Ok(mut source) = open() else {
        return;
    };
    let one = render_all(crate::analyze(&mut source, AnalyzerConfig::default()));
    let mut source = open().expect("opened once already");
    let two = render_all(crate::analyze_pipelined(
        &mut source,
        AnalyzerConfig::default(),
        &mut |_| {},
        &mut |_| {},
    ));
    assert!(one == two, "two threads must report what one does");
}

/// Arbitrary bytes as TCP segments of three flows, built as raw IPv4 packets: each
/// segment is 6 control bytes (flow, direction, flags, sequence step, payload length)
/// followed by its payload.
pub fn pipeline(data: &[u8]) {
    let mut analyzer = Analyzer::new(AnalyzerConfig::default());
    let mut seq = [[1000u32, 50_000u32]; 3];
    let mut rest = data;
    let mut ts = 1_700_000_000_000_000_000i64;
    let mut frame = Vec::with_capacity(2048);
    while rest.len() >= 6 {
        let (ctl, tail) = rest.split_at(6);
        let flow = (ctl[0] % 3) as usize;
        let dir = (ctl[1] & 1) as usize;
        let flags = ctl[2] & 0x17; // FIN, SYN, RST, ACK
        let step = u16::from_le_bytes([ctl[3], ctl[4]]) as u32;
        let len = (ctl[5] as usize).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        // Mostly in order, sometimes jumping: reordering, gaps and retransmissions.
        let s = seq[flow][dir].wrapping_add(step.wrapping_sub(1024));
        seq[flow][dir] = s.wrapping_add(len as u32);
        let ack = seq[flow][1 - dir];
        let client = [10, 0, 0, 5 + flow as u8];
        let server = [10, 0, 0, 9];
        let (src, dst, sport, dport) = if dir == 0 {
            (client, server, 50_000 + flow as u16, 27017)
        } else {
            (server, client, 27017, 50_000 + flow as u16)
        };
        frame.clear();
        let total = (40 + payload.len()) as u16;
        frame.extend([0x45, 0]);
        frame.extend(total.to_be_bytes());
        frame.extend([0, 0, 0x40, 0, 64, 6, 0, 0]);
        frame.extend(src);
        frame.extend(dst);
        frame.extend(sport.to_be_bytes());
        frame.extend(dport.to_be_bytes());
        frame.extend(s.to_be_bytes());
        frame.extend(ack.to_be_bytes());
        frame.extend([0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        frame.extend_from_slice(payload);
        ts += 1_000_000;
        analyzer.packet(&Packet {
            ts: Timestamp(ts),
            link: LinkType::Raw,
            data: &frame,
            orig_len: frame.len() as u32,
        });
    }
    let _ = analyzer.snapshot();
    render_all(analyzer.finish());
}

/// Arbitrary bytes as one direction of a MongoDB stream, cut into pushes of varying size;
/// every message is parsed and read as hello request and reply.
pub fn wire(data: &[u8]) {
    let cfg = FramerConfig {
        max_buffered: 4096,
        prefix_len: 256,
        ..FramerConfig::default()
    };
    let mut framer = Framer::new(cfg);
    if data.first().is_some_and(|b| b & 1 == 1) {
        framer.hunt();
    }
    let mut scratch = crate::wire::Scratch::default();
    let mut on_event = |event: FrameEvent<'_>| match event {
        FrameEvent::Message(bytes) => {
            if let Ok(msg) = wire::parse_message(bytes, &mut scratch, wire::DEFAULT_MAX_MESSAGE_LEN)
            {
                inspect(&msg);
            }
        }
        FrameEvent::Truncated { prefix, total_len } | FrameEvent::Cut { prefix, total_len } => {
            if let Ok(msg) = wire::parse_prefix(prefix, total_len) {
                inspect(&msg);
            }
        }
        _ => {}
    };
    let mut rest = data;
    let mut i = 0usize;
    while !rest.is_empty() {
        let n = (1 + (rest[0] as usize * 7 + i) % 300).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        i += 1;
        if i % 17 == 0 {
            framer.gap(n as u64, &mut on_event);
            continue;
        }
        framer.push(chunk, &mut on_event);
    }
}

fn inspect(msg: &wire::Message<'_>) {
    let _ = (
        msg.command_name(),
        msg.database(),
        msg.is_request(),
        msg.is_reply(),
    );
    if let Some(h) = wire::hello_request(msg) {
        let _ = (h.is_awaitable(), h.compressors().count());
    }
    if let Some(r) = wire::hello_reply(msg) {
        if let Some(hosts) = r.hosts {
            let _ = hosts.strings().count();
        }
    }
    let _ = wire::reply_ok(msg);
}

fn render_all(analysis: crate::Analysis) -> Vec<String> {
    let report = conclude(analysis, Default::default(), Meta::default());
    [Format::Text, Format::Json, Format::Markdown, Format::Html]
        .into_iter()
        .map(|format| report.render(format))
        .collect()
}

/// Arbitrary bytes as the two directions of a TLS connection, with a key log that holds
/// secrets (TLS 1.2 and 1.3) for an all-zero client random: record splitting, hello
/// parsing, key lookup and decryption must neither panic nor grow without bound. Each
/// chunk is 2 control bytes (direction, length) followed by its bytes.
pub fn tls(data: &[u8]) {
    use crate::tcp::Side;
    use crate::tls::keylog::{KeyLog, KeyStore};
    use crate::tls::{Plaintext, TlsConn};
    let zero = "00".repeat(32);
    let text = format!(
        "CLIENT_RANDOM {zero} {m}\nCLIENT_TRAFFIC_SECRET_0 {zero} {s}\nSERVER_TRAFFIC_SECRET_0 {zero} {s}\nSERVER_HANDSHAKE_TRAFFIC_SECRET {zero} {s}\n",
        m = "ab".repeat(48),
        s = "cd".repeat(32)
    );
    let mut keys = KeyStore::from_log(KeyLog::parse(&text).0);
    let mut conn = TlsConn::new(true);
    let mut out = Plaintext::default();
    let mut rest = data;
    while rest.len() >= 2 {
        let side = if rest[0] & 1 == 0 { Side::A } else { Side::B };
        let len = (rest[1] as usize * 8).min(rest.len() - 2);
        let (chunk, tail) = rest[2..].split_at(len);
        rest = tail;
        out.clear();
        conn.data(side, chunk, Some(&mut keys), &mut out);
        if let [0xff, lost, ..] = rest {
            conn.gap(side, u64::from(*lost));
        }
    }
    let _ = conn.summary();
}
