//! Builders for hand-made captures: only for edge cases that real drivers cannot be made
//! to produce on demand (damaged files, lost segments, garbage). Real traffic lives in
//! testdata/ and ../shared/pcaps.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use bson::RawDocumentBuf;
use conn_attrib::capture::FileSource;
use conn_attrib::{analyze, Analysis, AnalyzerConfig};
use serde_json::Value;

/// Where the project's shared material is: `$CONN_ATTRIB_SHARED`, else `../shared` beside
/// the checkout (as in CI).
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CONN_ATTRIB_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    dir.join("pcaps/public").is_dir().then_some(dir)
}

/// A capture from ../shared/pcaps/public, or `None` (with a line saying the test is
/// skipped) when the shared material is not beside this checkout.
pub fn shared_pcap(name: &str) -> Option<PathBuf> {
    let Some(dir) = shared_dir() else {
        eprintln!(
            "skipped: ../shared/pcaps/public is not beside this checkout (set CONN_ATTRIB_SHARED)"
        );
        return None;
    };
    let p = dir.join("pcaps/public").join(name);
    assert!(p.exists(), "missing shared capture {}", p.display());
    Some(p)
}

/// `let path = shared!("file.pcap");` — returns from the test when the material is absent.
#[macro_export]
macro_rules! shared {
    ($name:expr) => {
        match common::shared_pcap($name) {
            Some(p) => p,
            None => return,
        }
    };
}

pub fn analyze_bytes(bytes: Vec<u8>) -> Analysis {
    analyze_bytes_with(bytes, AnalyzerConfig::default())
}

pub fn analyze_bytes_with(bytes: Vec<u8>, config: AnalyzerConfig) -> Analysis {
    let mut src =
        FileSource::from_reader("test.pcap", Box::new(Cursor::new(bytes))).expect("a capture");
    analyze(&mut src, config)
}

/// A legacy pcap file being written (little-endian, µs, Ethernet unless told).
pub struct Pcap {
    pub bytes: Vec<u8>,
}

impl Pcap {
    pub fn new(linktype: u32) -> Pcap {
        let mut bytes = Vec::new();
        bytes.extend(0xa1b2_c3d4u32.to_le_bytes());
        bytes.extend(2u16.to_le_bytes());
        bytes.extend(4u16.to_le_bytes());
        bytes.extend(0u32.to_le_bytes());
        bytes.extend(0u32.to_le_bytes());
        bytes.extend(262_144u32.to_le_bytes());
        bytes.extend(linktype.to_le_bytes());
        Pcap { bytes }
    }
    pub fn record(&mut self, ts_us: u64, frame: &[u8]) {
        self.bytes
            .extend(((ts_us / 1_000_000) as u32).to_le_bytes());
        self.bytes
            .extend(((ts_us % 1_000_000) as u32).to_le_bytes());
        self.bytes.extend((frame.len() as u32).to_le_bytes());
        self.bytes.extend((frame.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(frame);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

pub const DATA: Flags = Flags {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
};
pub const SYN: Flags = Flags {
    syn: true,
    ack: false,
    fin: false,
    rst: false,
};
pub const SYN_ACK: Flags = Flags {
    syn: true,
    ack: true,
    fin: false,
    rst: false,
};
pub const FIN: Flags = Flags {
    syn: false,
    ack: true,
    fin: true,
    rst: false,
};

/// Ethernet + IPv4 + TCP frame.
pub fn frame(
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    seq: u32,
    ack: u32,
    flags: Flags,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00];
    let total = (40 + payload.len()) as u16;
    f.extend([0x45, 0]);
    f.extend(total.to_be_bytes());
    f.extend([0, 0, 0x40, 0, 64, 6, 0, 0]);
    f.extend(src.0);
    f.extend(dst.0);
    f.extend(src.1.to_be_bytes());
    f.extend(dst.1.to_be_bytes());
    f.extend(seq.to_be_bytes());
    f.extend(ack.to_be_bytes());
    let bits = (flags.fin as u8)
        | (flags.syn as u8) << 1
        | (flags.rst as u8) << 2
        | (flags.ack as u8) << 4;
    f.extend([0x50, bits, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// One TCP conversation written into a pcap, with sequence numbers kept for you.
pub struct Conversation {
    pub client: ([u8; 4], u16),
    pub server: ([u8; 4], u16),
    pub client_seq: u32,
    pub server_seq: u32,
    pub ts_us: u64,
}

impl Conversation {
    pub fn new(client: ([u8; 4], u16), server: ([u8; 4], u16), ts_us: u64) -> Conversation {
        Conversation {
            client,
            server,
            client_seq: 1000,
            server_seq: 50_000,
            ts_us,
        }
    }
    fn tick(&mut self, us: u64) -> u64 {
        self.ts_us += us;
        self.ts_us
    }
    pub fn open(&mut self, pcap: &mut Pcap) {
        let t = self.tick(1);
        pcap.record(
            t,
            &frame(self.client, self.server, self.client_seq, 0, SYN, b""),
        );
        let t = self.tick(100);
        pcap.record(
            t,
            &frame(
                self.server,
                self.client,
                self.server_seq,
                self.client_seq + 1,
                SYN_ACK,
                b"",
            ),
        );
        self.client_seq += 1;
        self.server_seq += 1;
        let t = self.tick(100);
        pcap.record(
            t,
            &frame(
                self.client,
                self.server,
                self.client_seq,
                self.server_seq,
                DATA,
                b"",
            ),
        );
    }
    /// Client bytes as one segment; returns the segment's frame (for reordering tests).
    pub fn client_frame(&mut self, payload: &[u8]) -> (u64, Vec<u8>) {
        let f = frame(
            self.client,
            self.server,
            self.client_seq,
            self.server_seq,
            DATA,
            payload,
        );
        self.client_seq = self.client_seq.wrapping_add(payload.len() as u32);
        (self.tick(50), f)
    }
    pub fn server_frame(&mut self, payload: &[u8]) -> (u64, Vec<u8>) {
        let f = frame(
            self.server,
            self.client,
            self.server_seq,
            self.client_seq,
            DATA,
            payload,
        );
        self.server_seq = self.server_seq.wrapping_add(payload.len() as u32);
        (self.tick(50), f)
    }
    pub fn client(&mut self, pcap: &mut Pcap, payload: &[u8]) {
        let (t, f) = self.client_frame(payload);
        pcap.record(t, &f);
    }
    pub fn server(&mut self, pcap: &mut Pcap, payload: &[u8]) {
        let (t, f) = self.server_frame(payload);
        pcap.record(t, &f);
    }
    pub fn close(&mut self, pcap: &mut Pcap) {
        let t = self.tick(10);
        pcap.record(
            t,
            &frame(
                self.client,
                self.server,
                self.client_seq,
                self.server_seq,
                FIN,
                b"",
            ),
        );
        self.client_seq += 1;
        let t = self.tick(10);
        pcap.record(
            t,
            &frame(
                self.server,
                self.client,
                self.server_seq,
                self.client_seq,
                FIN,
                b"",
            ),
        );
        self.server_seq += 1;
    }
    pub fn wait(&mut self, us: u64) {
        self.ts_us += us;
    }
}

/// OP_MSG with one kind-0 section.
pub fn op_msg(request_id: i32, response_to: i32, flags: u32, doc: &RawDocumentBuf) -> Vec<u8> {
    let body = doc.as_bytes();
    let len = 16 + 4 + 1 + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend((len as i32).to_le_bytes());
    m.extend(request_id.to_le_bytes());
    m.extend(response_to.to_le_bytes());
    m.extend(2013i32.to_le_bytes());
    m.extend(flags.to_le_bytes());
    m.push(0);
    m.extend_from_slice(body);
    m
}

/// A driver's first hello, with client metadata.
pub fn handshake(app: &str, driver: &str, version: &str) -> RawDocumentBuf {
    bson::rawdoc! {
        "hello": 1i32,
        "helloOk": true,
        "client": {
            "application": { "name": app },
            "driver": { "name": driver, "version": version },
            "os": { "type": "Linux" },
        },
        "$db": "admin",
    }
}

pub fn hello_reply() -> RawDocumentBuf {
    bson::rawdoc! {
        "isWritablePrimary": true,
        "topologyVersion": { "processId": bson::oid::ObjectId::from_bytes([1; 12]), "counter": 0i64 },
        "maxWireVersion": 21i32,
        "ok": 1.0,
    }
}

pub fn command(name: &str) -> RawDocumentBuf {
    let mut d = RawDocumentBuf::new();
    let key: &bson::raw::CStr = name.try_into().expect("no NUL in a command name");
    d.append(key, "coll");
    d.append(bson::raw::cstr!("$db"), "test");
    d
}

pub fn ok_reply() -> RawDocumentBuf {
    bson::rawdoc! { "ok": 1.0 }
}

/// The capture lab's cases (testdata/lab/*/ with a truth.json), sorted, with their truth.
pub fn lab_cases() -> Vec<(PathBuf, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/lab");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("truth.json").exists())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|d| {
            let t = serde_json::from_slice(&std::fs::read(d.join("truth.json")).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", d.display()));
            (d, t)
        })
        .collect()
}

/// A lab case whose connections are TLS but that has no key log: the driver's TLS stack
/// cannot write one (rustls in the Rust driver), so only keyless reading applies.
pub fn is_keyless_only(truth: &Value) -> bool {
    truth["keylog"].is_null()
        && truth["connections"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["tls"].is_object()))
}

/// A JSON report's connections by their client address ("IP:PORT").
pub fn connections_by_client(report: &Value) -> HashMap<&str, &Value> {
    report["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["client"].as_str().unwrap(), c))
        .collect()
}

/// The report's client with this `id`.
pub fn client_by_id<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no client {id} in the report"))
}

/// Client addresses of the truth's connections that belong to truth client `key`.
pub fn truth_members<'a>(truth: &'a Value, key: &Value) -> Vec<&'a str> {
    truth["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["client_key"] == *key)
        .map(|c| c["client"].as_str().unwrap())
        .collect()
}

/// Whether the `n`th packet is one of those a lossy capture dropped, one in `every`,
/// picked pseudo-randomly (SplitMix64 of `n`): a fixed stride would hit the same packet of
/// every heartbeat in periodic traffic.
pub fn lost(n: u64, every: u64) -> bool {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % every == 0
}
