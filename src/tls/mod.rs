//! Between reassembly and frames: TLS records of a connection → the MongoDB bytes inside.
//!
//! A [`TlsConn`] follows one connection's two directions. It splits each direction into
//! records ([`record`]), reads the plaintext handshake with `tls-parser` (ClientHello:
//! client random and SNI; ServerHello: server random, cipher suite, version including the
//! supported_versions extension), finds the session's secrets in the key log by client
//! random ([`keylog`]), and decrypts application data ([`decrypt`]): TLS 1.3 (AES-GCM,
//! ChaCha20-Poly1305, with KeyUpdate) and TLS 1.2 AEAD suites. The plaintext is appended to
//! a caller's buffer, which the observer pushes into the very same `wire::Framer` as a
//! plaintext connection's bytes.
//!
//! Nothing here panics on capture input: damaged records, gaps and wrong keys stop the
//! affected direction and become a [`TlsIssue`] for the report. Keys never appear in an
//! issue, a summary or `Debug` output.

pub mod decrypt;
pub mod fingerprint;
pub mod keylog;
pub mod record;
pub mod trial;

use serde::Serialize;

use crate::tcp::Side;
use decrypt::{
    DecryptError, RecordKeys, Suite, ALERT, APPLICATION_DATA, CHANGE_CIPHER_SPEC, HANDSHAKE,
};
use keylog::{KeyStore, Secret};
use record::{BadRecord, Record, RecordReader, HEADER_LEN};

pub use keylog::{KeyLog, KeyLogError};

/// Encrypted records held per connection while a followed (live) key log does not have
/// the session's secrets yet.
const MAX_QUEUED: usize = 256 << 10;
/// Handshake message type of a ClientHello (RFC 8446 §4).
const CLIENT_HELLO: u8 = 1;
/// Records a gap may have swallowed whole, as far as the next record's sequence number is
/// searched for (each guess is one AEAD open of that record).
const MAX_LOST_RECORDS: u64 = 64;
/// Records a TLS 1.3 direction may fail to open with its application key before the keys
/// are called wrong, when no handshake secret is logged to check them (the handshake
/// flight is a handful of records).
const MAX_HANDSHAKE_RECORDS: u8 = 16;

/// Records of a direction a mid-session search is tried on: one that continues a large
/// message rather than beginning one cannot be recognised, the next usually can.
const MAX_TRIAL_RECORDS: u8 = 4;

/// Sequence numbers searched on a direction's n-th record with any logged secret: cheap
/// first (the secrets of a busy log times 2^10), deeper later; a monitor writes one record
/// a heartbeat each way, 2^16 of them is a week at 10 s. Once one direction is found, the
/// other's secret is known and its search goes to 2^22 records.
const TRIAL_SEQS_ANY: [u64; MAX_TRIAL_RECORDS as usize] = [1 << 10, 1 << 12, 1 << 14, 1 << 16];
const TRIAL_SEQS_PAIRED: u64 = 1 << 22;

/// Decrypted application data of one or more records, each chunk tagged with its
/// direction, in the order the records were sent.
#[derive(Debug, Default)]
pub struct Plaintext {
    bytes: Vec<u8>,
    /// (direction, end offset in `bytes`) per run of one direction's data.
    chunks: Vec<(Side, usize)>,
}

impl Plaintext {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.chunks.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn push(&mut self, side: Side, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        let end = self.bytes.len();
        match self.chunks.last_mut() {
            Some((s, e)) if *s == side => *e = end,
            _ => self.chunks.push((side, end)),
        }
    }

    /// Each run of one direction's plaintext, in order.
    pub fn chunks(&self) -> impl Iterator<Item = (Side, &[u8])> + '_ {
        let mut start = 0;
        self.chunks.iter().map(move |&(side, end)| {
            let chunk = &self.bytes[start..end];
            start = end;
            (side, chunk)
        })
    }
}

/// Whether and why a connection's records could (not) be decrypted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyStatus {
    /// No key log was given.
    #[default]
    NoKeyLog,
    /// Keys not needed yet (no encrypted record so far).
    NotNeeded,
    /// A followed key log does not have the session yet.
    Waiting,
    /// The key log has no secrets for this session's client random.
    NotInKeyLog,
    /// The ClientHello was not captured: the client random that finds the keys is unknown.
    NoHandshake,
    /// The negotiated cipher suite is not an AEAD this tool decrypts.
    UnsupportedCipher,
    /// Secrets found and records decrypt.
    Found,
    /// The handshake was not captured, but one of the key log's TLS 1.3 traffic secrets
    /// opened the connection's records ([`trial`]): decrypted from that record on.
    FoundMidSession,
    /// Secrets found but the records do not authenticate with them.
    WrongKeys,
}

/// What the report says about a TLS connection.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TlsSummary {
    /// "TLS 1.3", "TLS 1.2", … as negotiated (None when the handshake was not captured).
    pub version: Option<&'static str>,
    /// IANA name of the negotiated cipher suite (or its number).
    pub cipher: Option<String>,
    /// Server name the client asked for (drivers send none for IP addresses).
    pub sni: Option<String>,
    /// JA4 fingerprint of the ClientHello: the client's TLS stack ([`fingerprint`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja4: Option<String>,
    /// When the hello resumed a session, the JA4 of its stack's full handshake
    /// ([`fingerprint::HelloParts::full_handshake_ja4`]); see [`TlsSummary::stack_fingerprint`].
    #[serde(skip)]
    pub full_handshake_ja4: Option<String>,
    /// Application data of this connection was decrypted and went through the wire stage.
    pub decrypted: bool,
    pub keys: KeyStatus,
    pub records_decrypted: u64,
    pub records_failed: u64,
}

impl TlsSummary {
    /// The client's TLS stack, the same for its full and resumed hellos: what keyless
    /// connections are grouped by.
    pub fn stack_fingerprint(&self) -> Option<&str> {
        self.full_handshake_ja4.as_deref().or(self.ja4.as_deref())
    }
}

/// A problem following one connection's TLS; the observer names the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsIssue {
    #[error("{0}; this direction is not followed further")]
    BadRecord(BadRecord),
    #[error(
        "bytes missing from the capture inside the TLS stream: the records they held are lost, the next ones are decrypted again"
    )]
    Gap,
    #[error("the key log has no secrets for this TLS session (client random not found)")]
    NotInKeyLog,
    #[error("the TLS handshake was not captured, so the session's keys cannot be looked up")]
    NoHandshake,
    #[error("cipher suite {0} is not decrypted (AES-GCM and ChaCha20-Poly1305 only)")]
    UnsupportedCipher(String),
    #[error("the key log's secrets for this session do not decrypt its records")]
    WrongKeys,
    #[error("record {seq} did not decrypt: {error}; this direction is not followed further")]
    DecryptFailed { seq: u64, error: DecryptError },
}

/// Application-data records of one direction handed over by one [`TlsConn::data`] call
/// (all share the segment's timestamp): what record shapes are built from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppRecords {
    pub records: u32,
    pub bytes: u64,
}

/// Which of a connection's protected records carry application data, without keys.
///
/// TLS 1.3 protects its own handshake and post-handshake messages as application_data
/// (RFC 8446 §5.1): the server's EncryptedExtensions..Finished, the client's Finished, and
/// NewSessionTicket messages that servers (OpenSSL: two) send right after the handshake.
/// Counting those as MongoDB traffic would make the tickets look like server-pushed
/// replies, so they are told apart by position: server records before the client's
/// Finished are its handshake; the client's first protected record is its Finished; server
/// records after it but before the client's first request are tickets. Tickets that cross
/// the first request join the first reply's flight, which the shape reads as one flight.
/// A protected record too short for a MongoDB message (alert, KeyUpdate) is control.
#[derive(Debug, Default)]
struct AppFilter {
    client_finished: bool,
    client_requested: bool,
    /// The previous application record of each side filled a whole record: a short one
    /// after it continues a large message rather than being an alert.
    last_full: [bool; 2],
    tickets: u32,
}

/// Smallest TLS 1.3 record that can carry a MongoDB message: a 16-byte header and a
/// minimal body, plus the content type byte and a 16-byte AEAD tag. An alert is 19 bytes,
/// a KeyUpdate 22.
const MIN_TLS13_APP_RECORD: usize = 24;

/// One direction's record protection state.
#[derive(Debug, Default)]
enum Dir {
    /// Records are plaintext (handshake so far).
    #[default]
    Plain,
    /// Records are encrypted; keys not installed yet.
    Encrypted,
    /// TLS 1.3 handshake flight: records open with the handshake key (when logged) until
    /// the first one opens with the application key.
    Handshake13 {
        hs: Option<RecordKeys>,
        app: RecordKeys,
        secret: Secret,
        failures: u8,
    },
    /// The capture began mid-session: the key log's TLS 1.3 secrets are tried on this
    /// direction's records ([`trial`]); after [`MAX_TRIAL_RECORDS`] it gives up.
    Seeking { tries: u8 },
    /// Application traffic; `secret` (TLS 1.3) derives the next keys on KeyUpdate.
    App {
        keys: RecordKeys,
        secret: Option<Secret>,
    },
    /// Not followed (no keys, damaged stream): records are only counted.
    Off,
}

/// TLS state of one connection, sides as the flow table names them.
#[derive(Debug, Default)]
pub struct TlsConn {
    readers: [RecordReader; 2],
    dirs: [Dir; 2],
    /// Keys derived for a direction that is not encrypted yet (TLS 1.2 before its CCS).
    ready: [Option<Dir>; 2],
    /// Encrypted records waiting for a followed key log, both directions in arrival
    /// order: side byte (0 = A), header, body.
    queued: Vec<u8>,
    client: Option<Side>,
    /// The side that opened the TCP connection (its SYN captured): the client, should
    /// the ClientHello be lost.
    opener: Option<Side>,
    /// Bytes were lost before the version was known: the ServerHello may be among them.
    handshake_gap: bool,
    client_random: Option<[u8; 32]>,
    server_random: Option<[u8; 32]>,
    version: Option<u16>,
    cipher_id: Option<u16>,
    suite: Option<Suite>,
    sni: Option<String>,
    ja4: Option<String>,
    full_handshake_ja4: Option<String>,
    status: KeyStatus,
    records_decrypted: u64,
    records_failed: u64,
    scratch: Vec<u8>,
    /// A direction that lost records to a gap or a damaged header: how many is unknown, so
    /// its next record's sequence number is searched for.
    seq_unknown: [bool; 2],
    /// The session a mid-session search found, and which of its writers was found.
    found_mid_session: Option<([u8; 32], trial::Writer)>,
    /// The record being read carries application data ([`AppFilter`]): only such a record
    /// can begin a MongoDB message, so only it is worth a search's tries.
    record_is_app: bool,
    app_filter: AppFilter,
    /// Application records of the current `data` call.
    app: AppRecords,
    /// Problems since the observer last drained them.
    pub issues: Vec<TlsIssue>,
}

fn version_name(v: u16) -> &'static str {
    match v {
        0x0304 => "TLS 1.3",
        0x0303 => "TLS 1.2",
        0x0302 => "TLS 1.1",
        0x0301 => "TLS 1.0",
        _ => "SSL 3.0 or older",
    }
}

impl TlsConn {
    pub fn new(with_keylog: bool) -> TlsConn {
        TlsConn {
            status: if with_keylog {
                KeyStatus::NotNeeded
            } else {
                KeyStatus::NoKeyLog
            },
            ..TlsConn::default()
        }
    }

    pub fn summary(&self) -> TlsSummary {
        let cipher = match (self.suite, self.cipher_id) {
            (Some(s), _) => Some(s.name.to_string()),
            (None, Some(id)) => Some(match tls_parser::TlsCipherSuite::from_id(id) {
                Some(s) => s.name.to_string(),
                None => format!("{id:#06x}"),
            }),
            _ => None,
        };
        TlsSummary {
            version: self.version.map(version_name),
            cipher,
            sni: self.sni.clone(),
            ja4: self.ja4.clone(),
            full_handshake_ja4: self.full_handshake_ja4.clone(),
            decrypted: self.records_decrypted > 0,
            keys: self.status,
            records_decrypted: self.records_decrypted,
            records_failed: self.records_failed,
        }
    }

    fn issue(&mut self, issue: TlsIssue) {
        if !self.issues.contains(&issue) {
            self.issues.push(issue);
        }
    }

    /// `lost` bytes of `side`'s direction were not captured. The record they cut into is
    /// lost (it cannot be authenticated), but when the gap ended inside it the next
    /// records are read and decrypted as before; otherwise the reader hunts for the next
    /// header and the decrypter for its sequence number. Returns the cut record when it
    /// carried application data (its size still shapes the connection), and whether whole
    /// records may have been lost.
    pub fn gap(&mut self, side: Side, lost: u64) -> (AppRecords, bool) {
        let i = side.index();
        let outcome = self.readers[i].gap(lost);
        self.handshake_gap |= self.version.is_none();
        if matches!(self.dirs[i], Dir::App { .. } | Dir::Handshake13 { .. }) {
            self.issue(TlsIssue::Gap);
        }
        let mut app = AppRecords::default();
        if let Some((kind, len)) = outcome.cut {
            if self.is_app_record(side, kind, len) {
                app.records = 1;
                app.bytes = len as u64;
            }
        }
        let protected = outcome
            .cut
            .is_some_and(|(kind, _)| kind != CHANGE_CIPHER_SPEC);
        match &mut self.dirs[i] {
            Dir::App { keys, .. } if outcome.in_sync && protected => keys.skip_record(),
            _ if outcome.in_sync && !protected => {}
            _ => self.seq_unknown[i] = true,
        }
        (app, !outcome.in_sync)
    }

    /// Some application data was decrypted.
    pub fn decrypted(&self) -> bool {
        self.records_decrypted > 0
    }

    /// The TCP connection was opened by `side` (its SYN was captured).
    pub fn opened_by(&mut self, side: Side) {
        self.opener = Some(side);
    }

    /// The client: the side that sent the ClientHello, or, when that was lost to a gap,
    /// the one the ServerHello went to or that opened the connection. (A handshake that
    /// was captured but does not parse names no client.)
    pub fn client_side(&self) -> Option<Side> {
        self.client.or(self.opener.filter(|_| self.handshake_gap))
    }

    /// NewSessionTicket records told apart from application data (TLS 1.3).
    pub fn tickets(&self) -> u32 {
        self.app_filter.tickets
    }

    /// TLS 1.3: everything after the ServerHello is protected, both ways.
    fn protect_both_ways(&mut self) {
        for d in &mut self.dirs {
            if matches!(d, Dir::Plain) {
                *d = Dir::Encrypted;
            }
        }
    }

    /// The ServerHello may have been lost to a gap: the client's next record names the
    /// version. Under TLS 1.3 it is protected, as application_data (its
    /// Finished; a middlebox-compatibility CCS before it says nothing); under TLS 1.2 it
    /// is a handshake record (ClientKeyExchange, or the Finished after its CCS). A second
    /// ClientHello (after a HelloRetryRequest) is a handshake record too, but a readable one.
    fn infer_version(&mut self, side: Side, rec: &Record<'_>) {
        if self.version.is_some() || !self.handshake_gap || self.client_side() != Some(side) {
            return;
        }
        match (rec.kind(), rec.body.first()) {
            (APPLICATION_DATA, _) => {
                self.version = Some(0x0304);
                self.protect_both_ways();
            }
            (HANDSHAKE, Some(&kind)) if kind != CLIENT_HELLO => self.version = Some(0x0303),
            _ => {}
        }
    }

    /// Whether a protected record of `side` carries application data (see [`AppFilter`]).
    fn is_app_record(&mut self, side: Side, kind: u8, body_len: usize) -> bool {
        if kind != APPLICATION_DATA {
            return false;
        }
        let Some(client) = self.client_side() else {
            return true; // the handshake predates the capture: every record is data
        };
        let f = &mut self.app_filter;
        let i = side.index();
        if self.version == Some(0x0304) {
            if side == client {
                if !f.client_finished {
                    f.client_finished = true;
                    return false;
                }
            } else if !f.client_finished {
                return false; // the server's encrypted handshake flight
            } else if !f.client_requested {
                f.tickets += 1;
                return false;
            }
            if body_len < MIN_TLS13_APP_RECORD && !f.last_full[i] {
                return false;
            }
        } else if self.version.is_none() {
            return false; // protected data before any ServerHello: not a session we read
        }
        if side == client {
            f.client_requested = true;
        }
        f.last_full[i] = body_len >= 1 << 14;
        true
    }

    /// Reassembled bytes of `side`'s direction; decrypted application data is appended to
    /// `out` (with records of the other direction held until the keys were found). Returns
    /// the application-data records among them, for record shapes when nothing decrypts.
    pub fn data(
        &mut self,
        side: Side,
        data: &[u8],
        keys: Option<&mut KeyStore>,
        out: &mut Plaintext,
    ) -> AppRecords {
        let i = side.index();
        self.app = AppRecords::default();
        let mut reader = std::mem::take(&mut self.readers[i]);
        let mut keys = keys;
        let result = reader.push(data, |rec| {
            self.infer_version(side, &rec);
            self.record_is_app = self.is_app_record(side, rec.kind(), rec.body.len());
            if self.record_is_app {
                self.app.records += 1;
                self.app.bytes += rec.body.len() as u64;
            }
            self.record(side, rec, keys.as_deref_mut(), out)
        });
        self.readers[i] = reader;
        if let Err(bad) = result {
            if !matches!(self.dirs[i], Dir::Off | Dir::Seeking { .. }) {
                self.issue(TlsIssue::BadRecord(bad));
            }
            // The reader hunted past it; records in between may be lost.
            self.seq_unknown[i] = true;
        }
        self.app
    }

    fn record(
        &mut self,
        side: Side,
        rec: Record<'_>,
        mut keys: Option<&mut KeyStore>,
        out: &mut Plaintext,
    ) {
        let i = side.index();
        let tls13 = self.version == Some(0x0304);
        match (&self.dirs[i], rec.kind()) {
            (Dir::Off, _) => {}
            (_, CHANGE_CIPHER_SPEC) => {
                // TLS 1.2: this side's later records are protected. TLS 1.3 sends a
                // dummy CCS for middleboxes only.
                if !tls13 && matches!(self.dirs[i], Dir::Plain) {
                    self.dirs[i] = Dir::Encrypted;
                }
            }
            (Dir::Plain, HANDSHAKE) => self.plain_handshake(side, rec.body),
            // TLS 1.3 protects every record as application_data; a handshake record is
            // still plaintext (a second ClientHello after HelloRetryRequest).
            (_, HANDSHAKE) if tls13 => self.plain_handshake(side, rec.body),
            (Dir::Plain, APPLICATION_DATA)
                if (self.client_random.is_none() || self.found_mid_session.is_some())
                    && self.version != Some(0x0303)
                    && keys.as_deref_mut().is_some_and(KeyStore::can_search) =>
            {
                // Protected data without a handshake we saw: the capture began mid-session.
                // The key log's TLS 1.3 secrets may still find its session (until then,
                // its keys are not looked up; it is said once the search gave up).
                if self.status == KeyStatus::NotNeeded {
                    self.status = KeyStatus::NoHandshake;
                }
                self.dirs[i] = Dir::Seeking { tries: 0 };
                if let Some(store) = keys {
                    self.seek(side, &rec, store, out);
                }
            }
            (Dir::Seeking { tries }, APPLICATION_DATA) if *tries < MAX_TRIAL_RECORDS => {
                if let Some(store) = keys {
                    self.seek(side, &rec, store, out);
                }
            }
            (Dir::Seeking { .. }, _) => {}
            (Dir::Plain, APPLICATION_DATA) => {
                // Protected data without a handshake we saw: the capture began mid-session.
                if self.client_random.is_none() {
                    // Said once per connection, not per direction, and only when a key
                    // log was given: without one there were no keys to look up anyway.
                    if self.status == KeyStatus::NotNeeded {
                        self.issue(TlsIssue::NoHandshake);
                        self.status = KeyStatus::NoHandshake;
                    }
                }
                self.dirs[i] = Dir::Off;
            }
            (Dir::Plain, _) => {}
            _ => self.protected(side, rec, keys, out),
        }
    }

    /// Try the key log's TLS 1.3 secrets on a record of a direction joined mid-session.
    fn seek(&mut self, side: Side, rec: &Record<'_>, store: &mut KeyStore, out: &mut Plaintext) {
        let i = side.index();
        let Dir::Seeking { tries } = &mut self.dirs[i] else {
            return;
        };
        if !self.record_is_app {
            return; // a handshake flight's record, a ticket, an alert
        }
        let (wanted, seqs) = match self.found_mid_session {
            // The other direction was found: this one is the same session's other writer.
            Some((random, writer)) => (
                trial::Wanted::Session(random, writer.other()),
                TRIAL_SEQS_PAIRED,
            ),
            None => (trial::Wanted::Any, TRIAL_SEQS_ANY[*tries as usize]),
        };
        *tries += 1;
        let tries = *tries;
        let mut plain = std::mem::take(&mut self.scratch);
        let attempt = trial::Attempt {
            wanted,
            seqs: 0..seqs,
            header: &rec.header,
            body: rec.body,
        };
        let found = store.search(attempt, &mut plain);
        match found {
            Some(found) => {
                let client = match found.writer {
                    trial::Writer::Client => side,
                    trial::Writer::Server => side.other(),
                };
                self.client = Some(client);
                self.client_random = Some(found.random);
                self.version = Some(0x0304);
                self.suite = Some(found.suite);
                self.cipher_id = Some(found.suite.id);
                self.status = KeyStatus::FoundMidSession;
                // Past the handshake and the tickets: every record from here is data.
                self.app_filter.client_finished = true;
                self.app_filter.client_requested = true;
                self.dirs[i] = Dir::App {
                    keys: found.keys,
                    secret: Some(found.secret),
                };
                self.found_mid_session = Some((found.random, found.writer));
                // The other direction searches again, now for this session's other key.
                let j = side.other().index();
                if matches!(self.dirs[j], Dir::Seeking { .. }) {
                    self.dirs[j] = Dir::Seeking { tries: 0 };
                }
                self.deliver(side, found.kind, &plain, out);
            }
            None if tries >= MAX_TRIAL_RECORDS => self.give_up_search(i),
            None => {}
        }
        self.scratch = plain;
    }

    /// A direction joined mid-session whose keys were not found: its records are only
    /// counted, and the connection's keys reported as not looked up (once).
    fn give_up_search(&mut self, i: usize) {
        if self.status == KeyStatus::NoHandshake {
            self.issue(TlsIssue::NoHandshake);
        }
        // Seeking with no tries left keeps the direction open to its session's other key.
        self.dirs[i] = Dir::Seeking {
            tries: MAX_TRIAL_RECORDS,
        };
    }

    fn plain_handshake(&mut self, side: Side, mut body: &[u8]) {
        use tls_parser::{TlsMessage, TlsMessageHandshake};
        while !body.is_empty() {
            let Ok((rest, TlsMessage::Handshake(msg))) =
                tls_parser::parse_tls_message_handshake(body)
            else {
                break; // a message continued in the next record (a certificate): not needed
            };
            body = rest;
            match msg {
                TlsMessageHandshake::ClientHello(ch) => {
                    self.client = Some(side);
                    self.client_random = ch.random.try_into().ok();
                    let ciphers: Vec<u16> = ch.ciphers.iter().map(|c| c.0).collect();
                    // The first ClientHello names the stack (a second one after a
                    // HelloRetryRequest comes from the same stack).
                    if self.ja4.is_none() {
                        let parts = fingerprint::HelloParts::new(ch.version.0, &ciphers, ch.ext);
                        let (ja4, full_handshake_ja4) = parts.fingerprints();
                        self.ja4 = Some(ja4);
                        self.full_handshake_ja4 = full_handshake_ja4;
                    }
                    if let Some(name) = ch.ext.and_then(fingerprint::server_name) {
                        self.sni = Some(String::from_utf8_lossy(name).into_owned());
                    }
                }
                TlsMessageHandshake::ServerHello(sh) => {
                    // A ClientHello lost to a gap: the ServerHello names the client too.
                    self.client.get_or_insert(side.other());
                    self.server_random = sh.random.try_into().ok();
                    self.cipher_id = Some(sh.cipher.0);
                    let version = sh
                        .ext
                        .and_then(fingerprint::selected_version)
                        .unwrap_or(sh.version.0);
                    self.version = Some(version);
                    match Suite::from_id(sh.cipher.0) {
                        Ok(suite) => self.suite = Some(suite),
                        Err(name) => {
                            if self.status != KeyStatus::NoKeyLog {
                                self.status = KeyStatus::UnsupportedCipher;
                                let name =
                                    name.map_or(format!("{:#06x}", sh.cipher.0), str::to_string);
                                self.issue(TlsIssue::UnsupportedCipher(name));
                            }
                        }
                    }
                    if version == 0x0304 {
                        self.protect_both_ways();
                    }
                }
                _ => {}
            }
        }
    }

    /// Derive both directions' keys from the key log. `false` when they are not there.
    fn install_keys(&mut self, store: Option<&mut KeyStore>) -> bool {
        let Some(store) = store else {
            self.status = KeyStatus::NoKeyLog;
            return false;
        };
        let (Some(client), Some(random)) = (self.client, self.client_random) else {
            self.status = KeyStatus::NoHandshake;
            self.issue(TlsIssue::NoHandshake);
            return false;
        };
        let Some(suite) = self.suite else {
            if self.status != KeyStatus::UnsupportedCipher {
                self.status = KeyStatus::NoHandshake;
                self.issue(TlsIssue::NoHandshake);
            }
            return false;
        };
        let follows = store.follows();
        let Some(secrets) = store.lookup(&random) else {
            self.status = if follows {
                KeyStatus::Waiting
            } else {
                self.issue(TlsIssue::NotInKeyLog);
                KeyStatus::NotInKeyLog
            };
            return false;
        };
        let server = client.other();
        if self.version == Some(0x0304) {
            let (Some(c0), Some(s0)) = (&secrets.client_traffic_0, &secrets.server_traffic_0)
            else {
                self.status = if follows {
                    KeyStatus::Waiting
                } else {
                    self.issue(TlsIssue::NotInKeyLog);
                    KeyStatus::NotInKeyLog
                };
                return false;
            };
            let dir = |hs: &Option<Secret>, app: &Secret| -> Option<Dir> {
                Some(Dir::Handshake13 {
                    hs: hs.as_ref().and_then(|s| RecordKeys::tls13(&suite, s)),
                    app: RecordKeys::tls13(&suite, app)?,
                    secret: app.clone(),
                    failures: 0,
                })
            };
            self.ready[client.index()] = dir(&secrets.client_handshake, c0);
            self.ready[server.index()] = dir(&secrets.server_handshake, s0);
        } else {
            let (Some(master), Some(server_random)) = (&secrets.master, self.server_random) else {
                self.status = if follows {
                    KeyStatus::Waiting
                } else {
                    self.issue(TlsIssue::NotInKeyLog);
                    KeyStatus::NotInKeyLog
                };
                return false;
            };
            if let Some((c, s)) = RecordKeys::tls12(&suite, master, &random, &server_random) {
                self.ready[client.index()] = Some(Dir::App {
                    keys: c,
                    secret: None,
                });
                self.ready[server.index()] = Some(Dir::App {
                    keys: s,
                    secret: None,
                });
            }
        }
        self.status = KeyStatus::Found;
        true
    }

    fn protected(
        &mut self,
        side: Side,
        rec: Record<'_>,
        mut store: Option<&mut KeyStore>,
        out: &mut Plaintext,
    ) {
        let i = side.index();
        let need_keys = matches!(self.dirs[i], Dir::Encrypted)
            && self.ready[i].is_none()
            && self.status != KeyStatus::Found;
        if need_keys && !self.install_keys(store.as_deref_mut()) {
            let waiting = self.status == KeyStatus::Waiting;
            // The ClientHello lost to the capture, the rest of a TLS 1.3 handshake seen:
            // its session is searched for as a mid-session one's.
            let hello_lost = self.status == KeyStatus::NoHandshake
                && self.client_random.is_none()
                && self.version == Some(0x0304);
            let searchable = hello_lost && store.as_deref_mut().is_some_and(KeyStore::can_search);
            if let Some(store) = store.filter(|_| searchable) {
                for dir in &mut self.dirs {
                    if matches!(dir, Dir::Encrypted | Dir::Plain) {
                        *dir = Dir::Seeking { tries: 0 };
                    }
                }
                self.seek(side, &rec, store, out);
            } else if waiting && self.queued.len() < MAX_QUEUED {
                self.queued.push(i as u8);
                self.queued.extend_from_slice(&rec.header);
                self.queued.extend_from_slice(rec.body);
            } else {
                if waiting {
                    self.status = KeyStatus::NotInKeyLog;
                    self.issue(TlsIssue::NotInKeyLog);
                }
                self.dirs = [Dir::Off, Dir::Off];
                self.queued = Vec::new();
            }
            return;
        }
        // Records held while the key log caught up come first, in arrival order.
        self.drain(out);
        self.activate(i);
        self.open(side, &rec.header, rec.body, out);
    }

    /// Keys derived for direction `i` take effect once it is encrypted.
    fn activate(&mut self, i: usize) {
        if matches!(self.dirs[i], Dir::Encrypted) {
            self.dirs[i] = self.ready[i].take().unwrap_or(Dir::Off);
        }
    }

    fn drain(&mut self, out: &mut Plaintext) {
        let queued = std::mem::take(&mut self.queued);
        let mut at = 0;
        while at + 1 + HEADER_LEN <= queued.len() {
            let side = if queued[at] == 0 { Side::A } else { Side::B };
            let header: [u8; HEADER_LEN] =
                queued[at + 1..at + 1 + HEADER_LEN].try_into().expect("5");
            let len = u16::from_be_bytes([header[3], header[4]]) as usize;
            let start = at + 1 + HEADER_LEN;
            let body = &queued[start..(start + len).min(queued.len())];
            self.activate(side.index());
            self.open(side, &header, body, out);
            at = start + len;
        }
    }

    /// Look the session up once more (a followed key log may have caught up) and open
    /// the records held meanwhile: for connections that went quiet while waiting.
    pub fn retry(&mut self, store: Option<&mut KeyStore>, out: &mut Plaintext) {
        if self.status == KeyStatus::Waiting && self.install_keys(store) {
            self.drain(out);
        }
    }

    fn open(&mut self, side: Side, header: &[u8; HEADER_LEN], body: &[u8], out: &mut Plaintext) {
        let i = side.index();
        let mut plain = std::mem::take(&mut self.scratch);
        // After a loss the next record's sequence number is searched for.
        let max_lost = if std::mem::take(&mut self.seq_unknown[i]) {
            MAX_LOST_RECORDS
        } else {
            0
        };
        let opened = match &mut self.dirs[i] {
            Dir::Handshake13 {
                hs, app, failures, ..
            } => {
                if hs
                    .as_mut()
                    .is_some_and(|k| k.open(header, body, &mut plain).is_ok())
                {
                    None // a handshake-flight record, opened with the handshake key
                } else {
                    match app.open_after_loss(header, body, &mut plain, max_lost) {
                        Ok(kind) => {
                            let Dir::Handshake13 { app, secret, .. } =
                                std::mem::take(&mut self.dirs[i])
                            else {
                                unreachable!("matched above")
                            };
                            self.dirs[i] = Dir::App {
                                keys: app,
                                secret: Some(secret),
                            };
                            Some(Ok(kind))
                        }
                        Err(_) if hs.is_none() && *failures < MAX_HANDSHAKE_RECORDS => {
                            *failures += 1;
                            None
                        }
                        Err(_) => Some(Err(TlsIssue::WrongKeys)),
                    }
                }
            }
            Dir::App { keys, .. } => {
                let seq = keys.seq();
                let opened = keys.open_after_loss(header, body, &mut plain, max_lost);
                Some(opened.map_err(|error| {
                    if seq == 0 {
                        TlsIssue::WrongKeys
                    } else {
                        TlsIssue::DecryptFailed { seq, error }
                    }
                }))
            }
            _ => None,
        };
        match opened {
            Some(Ok(kind)) => self.deliver(side, kind, &plain, out),
            Some(Err(issue)) => {
                self.records_failed += 1;
                if issue == TlsIssue::WrongKeys && self.records_decrypted == 0 {
                    self.status = KeyStatus::WrongKeys;
                }
                self.issue(issue);
                self.dirs[i] = Dir::Off;
            }
            None => {}
        }
        self.scratch = plain;
    }

    fn deliver(&mut self, side: Side, kind: u8, plain: &[u8], out: &mut Plaintext) {
        match kind {
            APPLICATION_DATA => {
                self.records_decrypted += 1;
                out.push(side, plain);
            }
            HANDSHAKE if self.version == Some(0x0304) => {
                // Post-handshake messages: NewSessionTicket (ignored) and KeyUpdate.
                let mut rest = plain;
                while rest.len() >= 4 {
                    let len = u32::from_be_bytes([0, rest[1], rest[2], rest[3]]) as usize;
                    if rest[0] == 24 {
                        self.key_update(side);
                    }
                    rest = rest.get(4 + len..).unwrap_or_default();
                }
            }
            ALERT | HANDSHAKE => {}
            _ => {}
        }
    }

    /// KeyUpdate (RFC 8446 §4.6.3): the sender's next records use the next secret.
    fn key_update(&mut self, side: Side) {
        let i = side.index();
        let Some(suite) = self.suite else { return };
        if let Dir::App {
            keys,
            secret: Some(secret),
        } = &mut self.dirs[i]
        {
            let next = decrypt::tls13_next_secret(&suite, secret)
                .and_then(|s| Some((RecordKeys::tls13(&suite, &s)?, s)));
            if let Some((k, s)) = next {
                *keys = k;
                *secret = s;
            }
        }
    }
}

#[cfg(test)]
mod tests;
