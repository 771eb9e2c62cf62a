use super::*;
use crate::wire::test_util::{op_msg, op_query, op_reply};
use bson::rawdoc;
use proptest::prelude::*;

fn msg(id: i32, size: usize) -> Vec<u8> {
    op_msg(
        id,
        0,
        0,
        &rawdoc! { "find": "c", "pad": "x".repeat(size), "$db": "t" },
    )
}

/// Everything a framer reports, owned.
#[derive(Debug, PartialEq, Eq)]
enum Ev {
    Msg(Vec<u8>),
    Trunc(usize, u32),
    Cut(usize, u32),
    Resync(u64),
    Bad,
}

fn owned(e: FrameEvent<'_>) -> Ev {
    match e {
        FrameEvent::Message(m) => Ev::Msg(m.to_vec()),
        FrameEvent::Truncated { prefix, total_len } => Ev::Trunc(prefix.len(), total_len),
        FrameEvent::Cut { prefix, total_len } => Ev::Cut(prefix.len(), total_len),
        FrameEvent::Resynced { skipped } => Ev::Resync(skipped),
        FrameEvent::Malformed { .. } => Ev::Bad,
    }
}

fn run(framer: &mut Framer, chunks: &[&[u8]]) -> Vec<Ev> {
    let mut out = Vec::new();
    for c in chunks {
        framer.push(c, |e| out.push(owned(e)));
    }
    out
}

/// A gap of `lost` bytes, and what the framer reports of it.
fn gap(framer: &mut Framer, lost: u64) -> Vec<Ev> {
    let mut out = Vec::new();
    framer.gap(lost, |e| out.push(owned(e)));
    out
}

#[test]
fn split_at_every_byte() {
    let m = msg(1, 40);
    for cut in 0..=m.len() {
        let mut f = Framer::new(FramerConfig::default());
        let ev = run(&mut f, &[&m[..cut], &m[cut..]]);
        assert_eq!(ev, vec![Ev::Msg(m.clone())], "cut at {cut}");
        assert_eq!(f.buffered(), 0);
        assert_eq!(f.stream_offset(), m.len() as u64);
    }
}

#[test]
fn two_messages_in_one_push_are_zero_copy() {
    let mut data = msg(1, 10);
    let first_len = data.len();
    data.extend(msg(2, 20));
    let mut f = Framer::new(FramerConfig::default());
    let range = data.as_ptr_range();
    let mut seen = 0;
    f.push(&data, |e| {
        if let FrameEvent::Message(m) = e {
            assert!(range.contains(&m.as_ptr()), "borrowed from the pushed data");
            seen += 1;
        }
    });
    assert_eq!(seen, 2);
    assert_eq!(f.buffered(), 0);
    assert!(first_len > 0);
}

#[test]
fn oversized_message_yields_prefix_and_the_next_message() {
    let cfg = FramerConfig {
        max_buffered: 1000,
        prefix_len: 64,
        ..FramerConfig::default()
    };
    let big = msg(1, 5000);
    let next = msg(2, 10);
    let mut f = Framer::new(cfg);
    let mut chunks: Vec<&[u8]> = big.chunks(700).collect();
    chunks.push(&next);
    let ev = run(&mut f, &chunks);
    assert_eq!(
        ev,
        vec![Ev::Trunc(64, big.len() as u32), Ev::Msg(next.clone())]
    );
    let mut f2 = Framer::new(FramerConfig {
        max_buffered: 1000,
        prefix_len: 64,
        ..FramerConfig::default()
    });
    // Buffer never exceeds the cap.
    for c in big.chunks(100) {
        f2.push(c, |_| {});
        assert!(f2.buffered() <= 1000 + HEADER_LEN);
    }
}

#[test]
fn gap_inside_a_known_message_skips_exactly() {
    let a = msg(1, 200);
    let b = msg(2, 10);
    let mut f = Framer::new(FramerConfig::default());
    let mut ev = run(&mut f, &[&a[..50]]);
    ev.extend(gap(&mut f, 100));
    ev.extend(run(&mut f, &[&a[150..], &b]));
    // The message's start is handed out for what it says; the next one is whole.
    assert_eq!(ev, vec![Ev::Cut(50, a.len() as u32), Ev::Msg(b.clone())]);
}

#[test]
fn a_snap_length_keeps_every_messages_start_and_the_framer_in_sync() {
    // Each message in its own segment, of which the capture kept 40 bytes: the rest of
    // every segment is a gap, the message's length says where the next one starts.
    let msgs: Vec<Vec<u8>> = (1..=5).map(|id| msg(id, 100 + id as usize)).collect();
    let mut f = Framer::new(FramerConfig::default());
    let mut ev = Vec::new();
    for m in &msgs {
        ev.extend(run(&mut f, &[&m[..40]]));
        ev.extend(gap(&mut f, (m.len() - 40) as u64));
    }
    let want: Vec<Ev> = msgs.iter().map(|m| Ev::Cut(40, m.len() as u32)).collect();
    assert_eq!(ev, want);
    // A message that fits in what was kept is whole; the gap after it starts the next.
    let small = msg(9, 1);
    let mut ev = run(&mut f, &[&small]);
    ev.extend(run(&mut f, &[&msgs[0][..40]]));
    ev.extend(gap(&mut f, (msgs[0].len() - 40) as u64));
    assert_eq!(ev, vec![Ev::Msg(small), Ev::Cut(40, msgs[0].len() as u32)]);
    // A gap that reaches past the message's end holds the next header: the framer
    // hunts, and finds the message after it.
    let mut ev = run(&mut f, &[&msgs[1][..40]]);
    ev.extend(gap(&mut f, msgs[1].len() as u64));
    ev.extend(run(&mut f, &[&[0x41; 7], &msgs[2]]));
    assert_eq!(
        ev,
        vec![
            Ev::Cut(40, msgs[1].len() as u32),
            Ev::Resync(7),
            Ev::Msg(msgs[2].clone())
        ]
    );
}

#[test]
fn gap_then_hunt_through_garbage() {
    let b = msg(2, 10);
    let mut f = Framer::new(FramerConfig::default());
    assert!(gap(&mut f, 10).is_empty());
    let mut data = vec![0x41u8; 37];
    data.extend(&b);
    let ev = run(&mut f, &[&data]);
    assert_eq!(ev, vec![Ev::Resync(37), Ev::Msg(b.clone())]);
}

#[test]
fn hunting_window_spans_pushes() {
    let b = op_reply(9, 1, &rawdoc! { "ok": 1.0 });
    let mut f = Framer::new(FramerConfig::default());
    f.hunt();
    let mut garbage = vec![0xeeu8; 20];
    garbage.extend(&b[..10]);
    let ev = run(&mut f, &[&garbage, &b[10..]]);
    assert_eq!(ev, vec![Ev::Resync(20), Ev::Msg(b.clone())]);
}

#[test]
fn huge_length_in_sync_is_malformed_then_resyncs() {
    let mut bad = msg(1, 10);
    bad[0..4].copy_from_slice(&2_000_000_000i32.to_le_bytes());
    let good = op_query(2, "admin.$cmd", &rawdoc! { "isMaster": 1i32 });
    let mut f = Framer::new(FramerConfig::default());
    let mut data = bad.clone();
    data.extend(&good);
    let ev = run(&mut f, &[&data]);
    assert_eq!(ev.first(), Some(&Ev::Bad));
    assert_eq!(ev.last(), Some(&Ev::Msg(good.clone())));
    assert!(f.buffered() <= 2 * HUNT_WINDOW);
}

#[test]
fn http_is_not_mongodb() {
    let mut f = Framer::new(FramerConfig::default());
    let ev = run(&mut f, &[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]);
    assert_eq!(ev, vec![Ev::Bad]);
}

fn any_message() -> impl Strategy<Value = Vec<u8>> {
    (0i32..3, 1i32..1000, 0usize..300).prop_map(|(kind, id, pad)| {
        let doc = rawdoc! { "cmd": 1i32, "pad": "p".repeat(pad) };
        match kind {
            0 => op_msg(id, 0, 0, &doc),
            1 => op_query(id, "db.$cmd", &doc),
            _ => op_reply(id, id - 1, &doc),
        }
    })
}

proptest! {
    #[test]
    fn any_segmentation_yields_the_same_messages(
        msgs in prop::collection::vec(any_message(), 1..12),
        cuts in prop::collection::vec(1usize..200, 0..40),
    ) {
        let stream: Vec<u8> = msgs.concat();
        let mut chunks = Vec::new();
        let mut at = 0;
        for c in cuts {
            if at >= stream.len() { break; }
            let end = (at + c).min(stream.len());
            chunks.push(&stream[at..end]);
            at = end;
        }
        chunks.push(&stream[at..]);
        let mut f = Framer::new(FramerConfig::default());
        let ev = run(&mut f, &chunks);
        let expect: Vec<Ev> = msgs.into_iter().map(Ev::Msg).collect();
        prop_assert_eq!(ev, expect);
    }

    #[test]
    fn garbage_prefix_then_hunt_recovers_the_tail(
        garbage in prop::collection::vec(any::<u8>(), 0..300),
        msgs in prop::collection::vec(any_message(), 2..8),
    ) {
        let mut data = garbage.clone();
        for m in &msgs { data.extend(m); }
        let mut f = Framer::new(FramerConfig::default());
        f.hunt();
        let ev = run(&mut f, &[&data]);
        let got: Vec<&Vec<u8>> = ev.iter().filter_map(|e| if let Ev::Msg(m) = e { Some(m) } else { None }).collect();
        // Random bytes may fake a header, but the last message is always found again.
        prop_assert_eq!(got.last().copied(), msgs.last());
    }
}

#[test]
fn hunting_window_holding_several_messages() {
    // Found by the wire fuzz target on real replies: after a hunt the buffer held a
    // whole message and the start of the next.
    let a = op_reply(9, 1, &rawdoc! { "ok": 1.0 });
    let b = op_reply(10, 2, &rawdoc! { "ok": 1.0 });
    let mut f = Framer::new(FramerConfig::default());
    f.hunt();
    let mut first = vec![0xeeu8; 5];
    first.extend(&a[..10]);
    let mut second = a[10..].to_vec();
    second.extend(&b);
    let ev = run(&mut f, &[&first, &second]);
    assert_eq!(
        ev,
        vec![Ev::Resync(5), Ev::Msg(a.clone()), Ev::Msg(b.clone())]
    );
}
