//! A synthetic TLS 1.3 session (hello messages built by hand, records sealed with the
//! RustCrypto AEAD under keys from made-up secrets) through [`TlsConn`]: decryption,
//! KeyUpdate, and every way it can go wrong ending in an issue, not a panic. The lab's
//! real captures (tests/lab.rs) cover the drivers' own sessions.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::Aes128Gcm;

use super::decrypt::{hkdf_expand_label, tls13_key_iv, AeadAlg, HashAlg};
use super::keylog::{KeyLog, KeyStore};
use super::*;

const CLIENT_RANDOM: [u8; 32] = [0x11; 32];
const C_APP: [u8; 32] = [0xc0; 32];
const S_APP: [u8; 32] = [0x50; 32];
const C_HS: [u8; 32] = [0xc1; 32];

fn record(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![kind, 3, 3];
    r.extend_from_slice(&(body.len() as u16).to_be_bytes());
    r.extend_from_slice(body);
    r
}

fn handshake(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![msg_type];
    m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    m.extend_from_slice(body);
    m
}

/// ClientHello offering TLS_AES_128_GCM_SHA256 with SNI "db.example".
fn client_hello() -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&CLIENT_RANDOM);
    b.push(0); // session id
    b.extend_from_slice(&[0, 2, 0x13, 0x01]); // cipher suites
    b.extend_from_slice(&[1, 0]); // compression
    let name = b"db.example";
    let mut sni = Vec::new();
    sni.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name);
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.extend_from_slice(&sni);
    b.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    b.extend_from_slice(&ext);
    record(22, &handshake(1, &b))
}

/// ServerHello choosing TLS_AES_128_GCM_SHA256 and TLS 1.3 (supported_versions).
fn server_hello() -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[0x22; 32]);
    b.push(0);
    b.extend_from_slice(&[0x13, 0x01, 0]);
    b.extend_from_slice(&[0, 6, 0, 0x2b, 0, 2, 3, 4]);
    record(22, &handshake(2, &b))
}

/// A TLS 1.3 record sealed under `secret` at `seq`: content, inner type, padding.
fn sealed(secret: &[u8], seq: u64, inner_type: u8, content: &[u8]) -> Vec<u8> {
    sealed_as(0x1301, secret, seq, inner_type, content)
}

/// The same under the TLS 1.3 suite `suite_id`.
pub(super) fn sealed_as(
    suite_id: u16,
    secret: &[u8],
    seq: u64,
    inner_type: u8,
    content: &[u8],
) -> Vec<u8> {
    let suite = Suite::from_id(suite_id).unwrap();
    let (key, iv) = tls13_key_iv(&suite, secret).unwrap();
    let mut nonce: [u8; 12] = iv.try_into().unwrap();
    for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
        *n ^= s;
    }
    let mut buf = content.to_vec();
    buf.push(inner_type);
    buf.extend_from_slice(&[0, 0]);
    let header = [23, 3, 3, 0, 0];
    let mut header = header;
    header[3..].copy_from_slice(&((buf.len() + 16) as u16).to_be_bytes());
    let sealed = match suite.aead {
        AeadAlg::Aes128Gcm => Aes128Gcm::new_from_slice(&key).unwrap().encrypt_in_place(
            (&nonce).into(),
            &header,
            &mut buf,
        ),
        AeadAlg::Aes256Gcm => aes_gcm::Aes256Gcm::new_from_slice(&key)
            .unwrap()
            .encrypt_in_place((&nonce).into(), &header, &mut buf),
        AeadAlg::ChaCha20Poly1305 => chacha20poly1305::ChaCha20Poly1305::new_from_slice(&key)
            .unwrap()
            .encrypt_in_place((&nonce).into(), &header, &mut buf),
    };
    sealed.unwrap();
    let mut r = header.to_vec();
    r.extend_from_slice(&buf);
    r
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn store(with_handshake: bool) -> KeyStore {
    let r = hex(&CLIENT_RANDOM);
    let mut text = format!(
        "CLIENT_TRAFFIC_SECRET_0 {r} {}\nSERVER_TRAFFIC_SECRET_0 {r} {}\n",
        hex(&C_APP),
        hex(&S_APP)
    );
    if with_handshake {
        text += &format!("CLIENT_HANDSHAKE_TRAFFIC_SECRET {r} {}\n", hex(&C_HS));
    }
    let (log, errors) = KeyLog::parse(&text);
    assert!(errors.is_empty());
    KeyStore::from_log(log)
}

/// Feed (side, bytes) chunks; return the plaintext per side.
fn run(conn: &mut TlsConn, keys: &mut KeyStore, chunks: &[(Side, Vec<u8>)]) -> [Vec<u8>; 2] {
    let mut out = [Vec::new(), Vec::new()];
    for (side, bytes) in chunks {
        let mut plain = Plaintext::default();
        conn.data(*side, bytes, Some(keys), &mut plain);
        for (s, chunk) in plain.chunks() {
            assert_eq!(s, *side, "no records were held for the other direction");
            out[s.index()].extend_from_slice(chunk);
        }
    }
    out
}

#[test]
fn a_tls13_session_decrypts_across_any_segmentation() {
    let hello = client_hello();
    let mut client = Vec::new();
    client.extend(record(20, &[1])); // middlebox-compatibility CCS
    client.extend(sealed(&C_HS, 0, 22, &handshake(20, &[0; 32]))); // Finished
    client.extend(sealed(&C_APP, 0, 23, b"hello request"));
    client.extend(sealed(&C_APP, 1, 23, b" and another"));
    let mut server = server_hello();
    server.extend(sealed(&[0x5f; 32], 0, 22, &handshake(8, &[0, 0]))); // handshake flight
    server.extend(sealed(&S_APP, 0, 22, &handshake(4, &[0; 12]))); // NewSessionTicket
    server.extend(sealed(&S_APP, 1, 23, b"the reply"));
    // The ClientHello comes first (the server answers it); the rest is cut anywhere.
    for cut in [0, 1, 7, 60, 100, client.len()] {
        let mut conn = TlsConn::new(true);
        let mut keys = store(true);
        let mut chunks = vec![
            (Side::A, hello[..9].to_vec()),
            (Side::A, hello[9..].to_vec()),
        ];
        chunks.push((Side::B, server.clone()));
        chunks.push((Side::A, client[..cut].to_vec()));
        chunks.push((Side::A, client[cut..].to_vec()));
        let out = run(&mut conn, &mut keys, &chunks);
        assert_eq!(out[0], b"hello request and another", "cut {cut}");
        assert_eq!(out[1], b"the reply");
        let s = conn.summary();
        assert_eq!(s.version, Some("TLS 1.3"));
        assert_eq!(s.cipher.as_deref(), Some("TLS_AES_128_GCM_SHA256"));
        assert_eq!(s.sni.as_deref(), Some("db.example"));
        assert!(s.decrypted);
        assert_eq!(
            (s.keys, s.records_decrypted, s.records_failed),
            (KeyStatus::Found, 3, 0)
        );
        assert!(conn.issues.is_empty(), "{:?}", conn.issues);
    }
}

#[test]
fn key_update_moves_the_sender_to_its_next_secret() {
    let next = hkdf_expand_label(HashAlg::Sha256, &S_APP, b"traffic upd", b"", 32).unwrap();
    let mut server = server_hello();
    server.extend(sealed(&S_APP, 0, 23, b"before "));
    server.extend(sealed(&S_APP, 1, 22, &handshake(24, &[0]))); // KeyUpdate
    server.extend(sealed(&next, 0, 23, b"after"));
    let mut conn = TlsConn::new(true);
    let out = run(
        &mut conn,
        &mut store(false),
        &[(Side::A, client_hello()), (Side::B, server)],
    );
    assert_eq!(out[1], b"before after");
    assert!(conn.issues.is_empty(), "{:?}", conn.issues);
}

#[test]
fn wrong_keys_are_reported_not_used() {
    // The handshake secret is logged: its first record proves the keys wrong at once.
    let mut client = client_hello();
    client.extend(sealed(&[0x99; 32], 0, 22, &handshake(20, &[0; 32])));
    client.extend(sealed(&[0x98; 32], 0, 23, b"secret"));
    let mut conn = TlsConn::new(true);
    let out = run(
        &mut conn,
        &mut store(true),
        &[(Side::B, server_hello()), (Side::A, client)],
    );
    assert!(out[0].is_empty());
    assert_eq!(conn.issues, vec![TlsIssue::WrongKeys]);
    let s = conn.summary();
    assert!(!s.decrypted);
    assert_eq!(s.keys, KeyStatus::WrongKeys);
}

#[test]
fn damaged_ciphertext_stops_the_direction_with_an_issue() {
    let mut server = server_hello();
    server.extend(sealed(&S_APP, 0, 23, b"fine"));
    let mut bad = sealed(&S_APP, 1, 23, b"damaged");
    let last = bad.len() - 1;
    bad[last] ^= 1;
    server.extend(bad);
    server.extend(sealed(&S_APP, 2, 23, b"never seen"));
    let mut conn = TlsConn::new(true);
    let out = run(
        &mut conn,
        &mut store(false),
        &[(Side::A, client_hello()), (Side::B, server)],
    );
    assert_eq!(out[1], b"fine");
    assert!(matches!(
        conn.issues[..],
        [TlsIssue::DecryptFailed { seq: 1, .. }]
    ));
    assert_eq!(conn.summary().records_failed, 1);
}

#[test]
fn garbage_gaps_and_missing_handshakes_are_issues() {
    // Not a record header.
    let mut conn = TlsConn::new(true);
    let mut server = server_hello();
    server.extend([0x3a, 1, 0, 0, 0xd4, 7, 0, 0]);
    run(
        &mut conn,
        &mut store(false),
        &[(Side::A, client_hello()), (Side::B, server)],
    );
    assert!(matches!(conn.issues[..], [TlsIssue::BadRecord(_)]));

    // A gap that swallowed records 1 to 4 whole: the reader hunts for the next header and
    // the decrypter finds its sequence number (5) by trial; decryption goes on.
    let mut conn = TlsConn::new(true);
    let mut keys = store(false);
    let mut first = server_hello();
    first.extend(sealed(&S_APP, 0, 23, b"a"));
    run(
        &mut conn,
        &mut keys,
        &[(Side::A, client_hello()), (Side::B, first)],
    );
    let lost: usize = (1..5).map(|seq| sealed(&S_APP, seq, 23, b"x").len()).sum();
    let (_, records_lost) = conn.gap(Side::B, lost as u64);
    assert!(records_lost);
    let out = run(
        &mut conn,
        &mut keys,
        &[(Side::B, sealed(&S_APP, 5, 23, b"b"))],
    );
    assert_eq!(out[1], b"b");
    assert_eq!(conn.issues, vec![TlsIssue::Gap]);
    // More records lost than are searched for: the direction is given up, named.
    conn.gap(Side::B, 1000);
    let out = run(
        &mut conn,
        &mut keys,
        &[(Side::B, sealed(&S_APP, 500, 23, b"c"))],
    );
    assert!(out[1].is_empty());
    assert!(matches!(
        conn.issues[..],
        [TlsIssue::Gap, TlsIssue::DecryptFailed { seq: 6, .. }]
    ));

    // A gap inside one record's body: that record is lost, its header said where the
    // next begins, and the next decrypts with the following sequence number, no search.
    let mut conn = TlsConn::new(true);
    let mut keys = store(false);
    let mut first = server_hello();
    first.extend(sealed(&S_APP, 0, 23, b"a"));
    let cut = sealed(&S_APP, 1, 23, &[7; 300]);
    first.extend(&cut[..100]);
    run(
        &mut conn,
        &mut keys,
        &[(Side::A, client_hello()), (Side::B, first)],
    );
    // (Server records before the client's Finished are its handshake flight, not
    // application data, so the cut one is not counted as a flight here.)
    let (_, records_lost) = conn.gap(Side::B, 150);
    assert!(!records_lost);
    let mut rest = cut[250..].to_vec();
    rest.extend(sealed(&S_APP, 2, 23, b"after"));
    let out = run(&mut conn, &mut keys, &[(Side::B, rest)]);
    assert_eq!(out[1], b"after");

    // Protected data with no handshake captured: the keys cannot be looked up, and the key
    // log's TLS 1.3 secrets are tried on its records (too short here to be a MongoDB
    // message). The connection says so once the search gave up.
    let mut conn = TlsConn::new(true);
    let mut keys = store(false);
    run(
        &mut conn,
        &mut keys,
        &[(Side::B, sealed(&S_APP, 3, 23, b"x"))],
    );
    assert_eq!(conn.summary().keys, KeyStatus::NoHandshake);
    assert!(conn.issues.is_empty());
    for seq in 4..7 {
        run(
            &mut conn,
            &mut keys,
            &[(Side::B, sealed(&S_APP, seq, 23, b"x"))],
        );
    }
    assert_eq!(conn.issues, vec![TlsIssue::NoHandshake]);
    assert_eq!(conn.summary().keys, KeyStatus::NoHandshake);

    // No key log at all: the handshake is still read, nothing is decrypted, no issue.
    let mut conn = TlsConn::new(false);
    let mut plain = Plaintext::default();
    conn.data(Side::A, &client_hello(), None, &mut plain);
    conn.data(Side::B, &server_hello(), None, &mut plain);
    conn.data(Side::B, &sealed(&S_APP, 0, 23, b"x"), None, &mut plain);
    assert!(plain.is_empty() && conn.issues.is_empty());
    let s = conn.summary();
    assert_eq!((s.version, s.keys), (Some("TLS 1.3"), KeyStatus::NoKeyLog));
}

#[test]
fn arbitrary_bytes_never_panic() {
    // Deterministic pseudo-random streams mixed into a valid session's prefix.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..300 {
        let mut conn = TlsConn::new(true);
        let mut keys = store(round % 2 == 0);
        let mut chunks = vec![(Side::A, client_hello()), (Side::B, server_hello())];
        for _ in 0..6 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 300) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|i| (x >> (i % 56)) as u8).collect();
            if x % 3 == 0 && bytes.len() >= 5 {
                // A plausible header over random content.
                bytes[..3].copy_from_slice(&[23, 3, 3]);
                bytes[3..5].copy_from_slice(&((len - 5) as u16).to_be_bytes());
            }
            let side = if x % 2 == 0 { Side::A } else { Side::B };
            chunks.push((side, bytes));
        }
        run(&mut conn, &mut keys, &chunks);
        assert!(!conn.summary().decrypted);
    }
}

#[test]
fn a_growing_key_log_releases_held_records_in_order() {
    // Live: the application writes its secrets after the capture saw the first records.
    let dir = std::env::temp_dir().join(format!("conn-attrib-follow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keys.log");
    let mut keys = KeyStore::open(&path, true).unwrap();
    let mut conn = TlsConn::new(true);
    let mut server = server_hello();
    server.extend(sealed(&[0x5f; 32], 0, 22, &handshake(8, &[0, 0]))); // handshake flight
    let mut plain = Plaintext::default();
    for (side, bytes) in [
        (Side::A, client_hello()),
        (Side::B, server),
        (Side::A, sealed(&C_APP, 0, 23, b"request")),
        (Side::B, sealed(&S_APP, 0, 23, b"reply")),
    ] {
        conn.data(side, &bytes, Some(&mut keys), &mut plain);
    }
    assert!(plain.is_empty());
    assert_eq!(conn.summary().keys, KeyStatus::Waiting);
    // The secrets appear; the connection sends nothing more: retry opens what was held.
    let r = hex(&CLIENT_RANDOM);
    std::fs::write(
        &path,
        format!(
            "CLIENT_TRAFFIC_SECRET_0 {r} {}\nSERVER_TRAFFIC_SECRET_0 {r} {}\n",
            hex(&C_APP),
            hex(&S_APP)
        ),
    )
    .unwrap();
    conn.retry(Some(&mut keys), &mut plain);
    let got: Vec<(Side, Vec<u8>)> = plain.chunks().map(|(s, c)| (s, c.to_vec())).collect();
    assert_eq!(
        got,
        vec![(Side::A, b"request".to_vec()), (Side::B, b"reply".to_vec())]
    );
    assert_eq!(conn.summary().keys, KeyStatus::Found);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Without keys, which protected records are application data: TLS 1.3's encrypted
/// handshake, the client's Finished, NewSessionTickets before the first request and
/// alerts are not (they would read as extra flights, tickets as pushed replies).
#[test]
fn without_keys_only_application_records_are_counted() {
    let opaque = |len: usize| record(23, &vec![0xab; len]);
    let mut conn = TlsConn::new(false);
    let mut plain = Plaintext::default();
    let (c, s) = (Side::A, Side::B);
    let mut feed = |side: Side, bytes: Vec<u8>| conn.data(side, &bytes, None, &mut plain);
    assert_eq!(feed(c, client_hello()).records, 0);
    // ServerHello, dummy CCS, then EncryptedExtensions..Finished, all type 23.
    let mut flight = server_hello();
    flight.extend(record(20, &[1]));
    for len in [23, 856, 281, 69] {
        flight.extend(opaque(len));
    }
    assert_eq!(feed(s, flight).records, 0);
    // The client's CCS + Finished.
    let mut fin = record(20, &[1]);
    fin.extend(opaque(69));
    assert_eq!(feed(c, fin).records, 0);
    // Two tickets before the client's first request.
    let mut tickets = opaque(250);
    tickets.extend(opaque(250));
    assert_eq!(feed(s, tickets).records, 0);
    // The MongoDB handshake and its reply are data.
    assert_eq!(feed(c, opaque(382)).records, 1);
    assert_eq!(
        feed(s, opaque(515)),
        AppRecords {
            records: 1,
            bytes: 515
        }
    );
    // A 19-byte close_notify is control; a short tail after a full record is data.
    assert_eq!(feed(c, opaque(19)).records, 0);
    let mut big = opaque(1 << 14);
    big.extend(opaque(19));
    assert_eq!(feed(s, big).records, 2);
    assert_eq!(conn.tickets(), 2);
    assert_eq!(conn.client_side(), Some(c));
    assert!(!conn.decrypted());
    // The ClientHello offers TLS 1.2 only (no supported_versions), one suite, SNI.
    assert!(conn.summary().ja4.unwrap().starts_with("t12d010100_"));
}

/// The first bytes of an OP_MSG: messageLength, requestID, responseTo, opCode 2013.
fn op_msg(len: usize) -> Vec<u8> {
    let mut m = Vec::new();
    for field in [len as i32, 9, 0, 2013] {
        m.extend_from_slice(&field.to_le_bytes());
    }
    m.resize(len, 0);
    m
}

#[test]
fn a_session_begun_before_the_capture_is_found_by_its_traffic_secrets() {
    // The server speaks first in the window (a streamed reply at record 40), then the
    // client (its record 7): each direction's secret and sequence number are found, and
    // the client is the side whose secret is the client's.
    let mut conn = TlsConn::new(true);
    let mut keys = store(false);
    let out = run(
        &mut conn,
        &mut keys,
        &[
            (Side::A, sealed(&S_APP, 40, 23, &op_msg(60))),
            (Side::A, sealed(&S_APP, 41, 23, b"the rest")),
            (Side::B, sealed(&C_APP, 7, 23, &op_msg(40))),
        ],
    );
    let [from_server, from_client] = out;
    assert_eq!(from_server, [op_msg(60), b"the rest".to_vec()].concat());
    assert_eq!(from_client, op_msg(40));
    let summary = conn.summary();
    assert_eq!(summary.keys, KeyStatus::FoundMidSession);
    assert_eq!(summary.version, Some("TLS 1.3"));
    assert_eq!((summary.records_decrypted, summary.records_failed), (3, 0));
    assert_eq!(conn.client_side(), Some(Side::B));
    assert!(conn.issues.is_empty());

    // Without a key log nothing is tried.
    let mut conn = TlsConn::new(false);
    let mut plain = Plaintext::default();
    conn.data(
        Side::A,
        &sealed(&S_APP, 40, 23, &op_msg(60)),
        None,
        &mut plain,
    );
    assert!(plain.is_empty());
    assert_eq!(conn.summary().keys, KeyStatus::NoKeyLog);
}
