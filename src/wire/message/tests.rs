use super::*;
use crate::wire::test_util::{op_compressed, op_msg, op_query, op_reply};
use bson::rawdoc;

const MAX: u32 = 48_000_000;

fn parse(bytes: &[u8]) -> Result<(Header, Option<Compressor>, String), WireError> {
    let mut scratch = Scratch::default();
    let m = parse_message(bytes, &mut scratch, MAX)?;
    Ok((
        m.header,
        m.compressor,
        m.command_name().unwrap_or("-").to_string(),
    ))
}

#[test]
fn op_msg_kind0_kind1_and_checksum() {
    let doc = rawdoc! { "insert": "c", "$db": "t" };
    let body = doc.as_bytes();
    let seq_doc = rawdoc! { "_id": 1i32 };
    let ident = b"documents\0";
    let seq_len = 4 + ident.len() + seq_doc.as_bytes().len();
    let len = 16 + 4 + 1 + body.len() + 1 + seq_len + 4;
    let mut m = Vec::new();
    m.extend((len as i32).to_le_bytes());
    m.extend(1i32.to_le_bytes());
    m.extend(0i32.to_le_bytes());
    m.extend(2013i32.to_le_bytes());
    m.extend(1u32.to_le_bytes()); // checksumPresent
    m.push(0);
    m.extend_from_slice(body);
    m.push(1);
    m.extend((seq_len as i32).to_le_bytes());
    m.extend_from_slice(ident);
    m.extend_from_slice(seq_doc.as_bytes());
    m.extend([0xde, 0xad, 0xbe, 0xef]);
    let mut scratch = Scratch::default();
    let msg = parse_message(&m, &mut scratch, MAX).unwrap();
    assert!(msg.is_request() && !msg.is_reply());
    assert_eq!(msg.command_name(), Some("insert"));
    assert_eq!(msg.database(), Some("t"));
    match msg.body {
        Body::Msg {
            flags, sequences, ..
        } => {
            assert!(flags.checksum_present());
            assert_eq!(sequences, 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_required_flag_bit_is_malformed() {
    let m = op_msg(1, 0, 1 << 5, &rawdoc! { "ping": 1i32 });
    assert!(matches!(parse(&m), Err(WireError::Malformed { .. })));
    // Optional bits (16+) other than exhaustAllowed are fine.
    let m = op_msg(1, 0, 1 << 20, &rawdoc! { "ping": 1i32 });
    assert_eq!(parse(&m).unwrap().2, "ping");
}

#[test]
fn op_query_with_query_wrapper() {
    let m = op_query(
        3,
        "admin.$cmd",
        &rawdoc! { "$query": { "isMaster": 1i32 }, "$readPreference": { "mode": "primary" } },
    );
    let mut scratch = Scratch::default();
    let msg = parse_message(&m, &mut scratch, MAX).unwrap();
    assert_eq!(msg.command_name(), Some("isMaster"));
    assert_eq!(msg.database(), Some("admin"));
    // A query on a collection is not a command.
    let m = op_query(4, "test.users", &rawdoc! { "name": "x" });
    let msg = parse_message(&m, &mut scratch, MAX).unwrap();
    assert_eq!(msg.command_name(), None);
    assert!(msg.is_request());
}

#[test]
fn op_reply_and_op_command() {
    let m = op_reply(9, 3, &rawdoc! { "ok": 1.0 });
    let mut scratch = Scratch::default();
    let msg = parse_message(&m, &mut scratch, MAX).unwrap();
    assert!(msg.is_reply());
    assert_eq!(msg.header.response_to, 3);
    assert!(matches!(
        msg.body,
        Body::Reply {
            number_returned: 1,
            first: Some(_),
            ..
        }
    ));

    let args = rawdoc! { "insert": "c" };
    let meta = rawdoc! {};
    let mut body = b"test\0insert\0".to_vec();
    body.extend_from_slice(args.as_bytes());
    body.extend_from_slice(meta.as_bytes());
    let mut m = ((16 + body.len()) as i32).to_le_bytes().to_vec();
    m.extend(5i32.to_le_bytes());
    m.extend(0i32.to_le_bytes());
    m.extend(2010i32.to_le_bytes());
    m.extend(body);
    let msg = parse_message(&m, &mut scratch, MAX).unwrap();
    assert_eq!(msg.command_name(), Some("insert"));
    assert_eq!(msg.database(), Some("test"));
}

#[test]
fn op_compressed_with_each_compressor() {
    let inner = op_msg(
        21,
        0,
        0,
        &rawdoc! { "find": "c", "filter": { "a": 1i32 }, "$db": "t" },
    );
    let body = &inner[16..];
    let snappy = snap::raw::Encoder::new().compress_vec(body).unwrap();
    let zlib = {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(body).unwrap();
        e.finish().unwrap()
    };
    let zstd = zstd::bulk::compress(body, 3).unwrap();
    for (id, data, c) in [
        (1u8, snappy, Compressor::Snappy),
        (2, zlib, Compressor::Zlib),
        (3, zstd, Compressor::Zstd),
        (0, body.to_vec(), Compressor::Noop),
    ] {
        let m = op_compressed(&inner, id, &data);
        let (header, compressor, name) = parse(&m).unwrap();
        assert_eq!(compressor, Some(c));
        assert_eq!(header.op_code, OpCode::Msg);
        assert_eq!(header.request_id, 77);
        assert_eq!(name, "find");
    }
}

#[test]
fn an_unread_op_compressed_keeps_its_header_and_is_checked_like_a_read_one() {
    let inner = op_msg(21, 0, 0, &rawdoc! { "cursor": { "id": 0i64 }, "ok": 1.0 });
    let zstd = zstd::bulk::compress(&inner[16..], 3).unwrap();
    let m = op_compressed(&inner, 3, &zstd);
    let mut scratch = Scratch::default();
    let read = parse_message(&m, &mut scratch, MAX).unwrap();
    let unread = parse_unread(&m, MAX).unwrap();
    assert_eq!(unread.header, read.header);
    assert_eq!(unread.header.op_code, OpCode::Msg);
    assert_eq!(unread.compressor, Some(Compressor::Zstd));
    assert!(matches!(unread.body, Body::Compressed));
    assert!(unread.sent_by(Sender::Server).is_reply() && unread.msg_flags().is_none());
    // The envelope's own checks still hold; only the inflating is skipped.
    let mut huge = m.clone();
    huge[20..24].copy_from_slice(&2_000_000_000i32.to_le_bytes());
    assert!(matches!(
        parse_unread(&huge, MAX),
        Err(WireError::TooLarge { .. })
    ));
    let unknown = op_compressed(&inner, 9, b"");
    assert_eq!(
        parse_unread(&unknown, MAX).unwrap_err(),
        WireError::UnknownCompressor(9)
    );
    assert!(parse_unread(&inner, MAX).is_err(), "not OP_COMPRESSED");
    assert!(parse_unread(&m[..m.len() - 1], MAX).is_err(), "not whole");
}

#[test]
fn op_compressed_claiming_two_gigabytes_is_refused_before_allocating() {
    let inner = op_msg(1, 0, 0, &rawdoc! { "ping": 1i32 });
    let mut m = op_compressed(&inner, 1, b"xxxx");
    m[20..24].copy_from_slice(&2_000_000_000i32.to_le_bytes());
    let mut scratch = Scratch::default();
    let err = parse_message(&m, &mut scratch, MAX).unwrap_err();
    assert!(matches!(err, WireError::TooLarge { .. }), "{err}");
    assert_eq!(scratch.out.capacity(), 0);
    // Lying about the size is caught after decompression.
    let mut m = op_compressed(&inner, 0, &inner[16..]);
    m[20..24].copy_from_slice(&100i32.to_le_bytes());
    assert!(matches!(parse(&m), Err(WireError::Decompress { .. })));
    // Unknown compressor.
    let m = op_compressed(&inner, 9, b"");
    assert_eq!(parse(&m).unwrap_err(), WireError::UnknownCompressor(9));
}

#[test]
fn invalid_bson_is_an_error_not_a_panic() {
    let mut m = op_msg(1, 0, 0, &rawdoc! { "find": "c" });
    m[21..25].copy_from_slice(&4000i32.to_le_bytes());
    assert!(matches!(parse(&m), Err(WireError::Bson { .. })));
    let mut m = op_msg(1, 0, 0, &rawdoc! { "find": "c" });
    let last = m.len() - 1;
    m[last] = 7; // document not NUL-terminated
    assert!(parse(&m).is_err());
    // Length that disagrees with the bytes handed in.
    let m = op_msg(1, 0, 0, &rawdoc! { "find": "c" });
    assert!(parse(&m[..m.len() - 1]).is_err());
}

#[test]
fn prefix_of_oversized_messages_names_the_command() {
    let m = op_msg(1, 0, 0, &rawdoc! { "insert": "c", "pad": "x".repeat(1000) });
    let msg = parse_prefix(&m[..64], m.len() as u32).unwrap();
    assert_eq!(msg.command_name(), Some("insert"));
    assert_eq!(msg.header.message_length, m.len() as u32);
    let q = op_query(
        2,
        "db.$cmd",
        &rawdoc! { "aggregate": "c", "pad": "x".repeat(100) },
    );
    assert_eq!(
        parse_prefix(&q[..64], q.len() as u32)
            .unwrap()
            .command_name(),
        Some("aggregate")
    );
    assert!(parse_prefix(&m[..10], 100).is_err());
}

#[test]
fn exhaust_reply_is_a_reply() {
    let m = op_msg(40, 39, 2, &rawdoc! { "isWritablePrimary": true, "ok": 1.0 });
    let mut scratch = Scratch::default();
    let msg = parse_message(&m, &mut scratch, MAX).unwrap();
    assert!(msg.is_reply());
    assert!(matches!(msg.body, Body::Msg { flags, .. } if flags.more_to_come()));
    assert_eq!(msg.command_name(), None);
}

/// What `decompress` did with a new decoder per message, before the decoders were reused:
/// the reference the reused ones must match, result and bytes.
fn decompress_fresh(
    compressor: Compressor,
    input: &[u8],
    size: usize,
) -> (Result<(), WireError>, Vec<u8>) {
    use std::io::Read;
    let fail = |reason: String| WireError::Decompress { compressor, reason };
    let mut out = Vec::new();
    let read = match compressor {
        Compressor::Zlib => flate2::read::ZlibDecoder::new(input)
            .take(size as u64 + 1)
            .read_to_end(&mut out),
        Compressor::Zstd => zstd::stream::read::Decoder::new(input)
            .unwrap()
            .take(size as u64 + 1)
            .read_to_end(&mut out),
        _ => unreachable!(),
    };
    let result = match read {
        Err(e) => Err(fail(e.to_string())),
        Ok(_) if out.len() != size => Err(fail(format!(
            "{} bytes after decompression, uncompressedSize says {size}",
            out.len()
        ))),
        Ok(_) => Ok(()),
    };
    (result, out)
}

/// Reused zlib and zstd decoders give what a new decoder per message gave: whole, cut,
/// damaged (at random places) and padded streams, sizes claimed too small (a bomb) or too large, streams
/// longer than the 32 KB read buffer, and every message after a failed one.
#[test]
fn reused_decoders_match_a_new_decoder_per_message() {
    use std::io::Write;
    let small: Vec<u8> = (0..3000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
    // Poorly compressible, so that the compressed stream is longer than 32 KB.
    let mut x = 0x2545_f491u32;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let large: Vec<u8> = (0..120_000).map(|_| (next() % 7) as u8).collect();
    let mut scratch = Scratch::default();
    let mut reasons_differ = 0;
    for plain in [&small, &large] {
        let zlib = {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(plain).unwrap();
            e.finish().unwrap()
        };
        let zstd = zstd::bulk::compress(plain, 3).unwrap();
        for (compressor, stream) in [(Compressor::Zlib, zlib), (Compressor::Zstd, zstd)] {
            let n = stream.len();
            let mut damaged = stream.clone();
            damaged[n / 2] ^= 0x5a;
            let mut padded = stream.clone();
            padded.extend_from_slice(b"trailing bytes");
            let mut cases = vec![
                (stream.clone(), plain.len(), false),
                (stream.clone(), plain.len() - 1, false),
                (stream.clone(), plain.len() / 3, false),
                (stream.clone(), plain.len() + 10, false),
                (damaged, plain.len(), true),
                (padded, plain.len(), false),
                (Vec::new(), plain.len(), false),
                (vec![0x78], plain.len(), false),
            ];
            for cut in [2, 7, n / 2, n - 4, n - 1] {
                cases.push((stream[..cut].to_vec(), plain.len(), false));
            }
            // Damage anywhere: a byte changed, then the stream cut after it or not.
            for _ in 0..40 {
                let mut bad = stream.clone();
                let at = next() as usize % n;
                bad[at] ^= 1 << (next() % 8);
                if next() % 2 == 0 {
                    bad.truncate(at + 1 + next() as usize % (n - at));
                }
                cases.push((bad, plain.len(), true));
            }
            for (input, size, damaged) in cases {
                let (want, want_out) = decompress_fresh(compressor, &input, size);
                let got = decompress(compressor, &input, size, &mut scratch);
                // Zlib streams damaged inside differ in how they fail: the reference
                // (flate2's stream over a zero-filled 32 KB window) and miniz's one-shot
                // inflater meet the damage at different points, so one may report a
                // corrupt stream where the other ran on to the end of the input or past
                // the claimed size. Both must fail; only the reason may differ.
                if damaged && compressor == Compressor::Zlib && got.is_err() && want.is_err() {
                    if got != want {
                        reasons_differ += 1;
                    }
                } else {
                    assert_eq!(
                        got,
                        want,
                        "{compressor:?}, {} input bytes, size {size}",
                        input.len()
                    );
                }
                // After an error the buffer is not read: only whole messages are compared
                // (a damaged zstd frame without a checksum still decodes, to other bytes).
                if want.is_ok() {
                    assert!(scratch.out == want_out, "{compressor:?}, size {size}");
                }
            }
        }
    }
    // Most damaged streams still fail alike.
    assert!(
        reasons_differ < 20,
        "{reasons_differ} damaged streams failed differently"
    );
}

#[test]
fn the_sender_decides_an_op_msgs_direction_when_response_to_is_zero() {
    // The Rust driver numbers its first request 0, so the server's reply answers 0: by
    // responseTo alone that reply reads as a request whose command is the reply's first key.
    let reply = op_msg(
        7,
        0,
        0,
        &rawdoc! { "helloOk": true, "isWritablePrimary": true, "ok": 1.0 },
    );
    let mut scratch = Scratch::default();
    let guessed = parse_message(&reply, &mut scratch, MAX).unwrap();
    assert!(guessed.is_request());
    let known = guessed.sent_by(Sender::Server);
    assert!(known.is_reply() && !known.is_request());
    assert_eq!(known.command_name(), None);

    let request = op_msg(0, 0, 0, &rawdoc! { "hello": 1i32, "$db": "admin" });
    let msg = parse_message(&request, &mut scratch, MAX)
        .unwrap()
        .sent_by(Sender::Client);
    assert!(msg.is_request() && !msg.is_reply());
    assert_eq!(msg.command_name(), Some("hello"));
    // An OP_MSG from the client that carries a responseTo is still the client's request.
    let odd = op_msg(5, 9, 0, &rawdoc! { "ping": 1i32, "$db": "admin" });
    let msg = parse_message(&odd, &mut scratch, MAX)
        .unwrap()
        .sent_by(Sender::Client);
    assert_eq!(msg.command_name(), Some("ping"));
}
