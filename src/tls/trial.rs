//! Finding the TLS 1.3 session of a connection the capture joined mid-flight.
//!
//! A key log names its sessions by the ClientHello's random, so a connection whose
//! handshake came before the capture cannot be looked up: yet those are the long-lived
//! ones that matter most here (monitors, and pool connections opened at start-up), and
//! tcpdump is usually started after the application. TLS 1.3 makes a search possible:
//! each direction's keys come from one traffic secret the key log holds in full, and the
//! record nonce is the IV XOR the record's sequence number (RFC 8446 §5.3). So each
//! logged secret is tried against a record at each sequence number up to a bound. (TLS 1.2
//! keys also need both randoms from the handshake: nothing to search with.)
//!
//! A full AEAD open per try would cost a pass over the record; instead one block of key
//! stream is made per try (AES-GCM's first counter block, ChaCha20's block 1) and the
//! record's first 16 bytes deciphered with it. A record that begins a MongoDB message
//! (drivers and servers write each message with one TLS write, so most records do) then
//! shows a sane `messageLength` and a known `opCode`: about one chance in 10^9 by accident.
//! Only such a candidate is opened in full, and its tag decides beyond doubt.
//!
//! Sessions since rekeyed (a KeyUpdate before the capture began) are not found: their
//! current secret is not in the key log.

use std::ops::Range;

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::{Aes128, Aes256, Block};
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20;
use rustc_hash::FxHashSet;

use super::decrypt::{seq_nonce, tls13_key_iv, AeadAlg, RecordKeys, Suite, APPLICATION_DATA};
use super::keylog::{KeyLog, Secret};

/// Smallest record worth trying: a MongoDB header (16 bytes), the inner content type and
/// the AEAD tag.
const MIN_RECORD: usize = 16 + 1 + 16;

/// Tries spent on all searches of one analysis, at most: a second or two of one core (an
/// AES try costs 1–3 ns). Each search that finds nothing spends its share, so a key log
/// without the sessions (or captures of another application's TLS) cannot stall the
/// analysis.
pub const TRIAL_BUDGET: u64 = 1 << 29;

/// Which direction of a session a secret protects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    Client,
    Server,
}

impl Writer {
    pub fn other(self) -> Writer {
        match self {
            Writer::Client => Writer::Server,
            Writer::Server => Writer::Client,
        }
    }
}

/// What a search looks for: any logged session, or one direction of a known session (once
/// the connection's other direction was found).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    Any,
    Session([u8; 32], Writer),
}

/// One search: what for, at which sequence numbers, on which record.
pub struct Attempt<'r> {
    pub wanted: Wanted,
    pub seqs: Range<u64>,
    /// The record's 5-byte header (the AEAD's additional data) and its body.
    pub header: &'r [u8; 5],
    pub body: &'r [u8],
}

/// A record's keys found: the session and direction, and the keys, which opened it (their
/// sequence number is the record's plus one).
pub struct Found {
    pub random: [u8; 32],
    pub writer: Writer,
    pub suite: Suite,
    pub secret: Secret,
    pub keys: RecordKeys,
    pub kind: u8,
}

/// A candidate's cipher, set up for one search: kept only as key bytes between searches,
/// so that a key log of many sessions costs ~100 bytes a secret, not a key schedule.
// One at a time, on the stack: the AES variants' round keys need no box.
#[allow(clippy::large_enum_variant)]
enum Probe {
    Aes128(Aes128),
    Aes256(Aes256),
    ChaCha([u8; 32]),
}

impl Probe {
    fn new(aead: AeadAlg, key: &[u8]) -> Option<Probe> {
        Some(match aead {
            AeadAlg::Aes128Gcm => Probe::Aes128(Aes128::new_from_slice(key).ok()?),
            AeadAlg::Aes256Gcm => Probe::Aes256(Aes256::new_from_slice(key).ok()?),
            AeadAlg::ChaCha20Poly1305 => Probe::ChaCha(key.try_into().ok()?),
        })
    }

    /// A try's cost in AES tries: ChaCha20 sets up a cipher for each nonce and makes four
    /// blocks to use one.
    fn cost(&self) -> u64 {
        match self {
            Probe::Aes128(_) | Probe::Aes256(_) => 1,
            Probe::ChaCha(_) => 16,
        }
    }
}

/// One logged traffic secret under one suite its length allows: its record key and IV.
struct Candidate {
    random: [u8; 32],
    writer: Writer,
    suite: Suite,
    key: [u8; 32],
    iv: [u8; 12],
}

/// The key log's TLS 1.3 traffic secrets, ready to be tried, and what was spent.
pub struct Trials {
    candidates: Vec<Candidate>,
    /// Sessions in the log when the candidates were made (a followed log grows).
    made_for: usize,
    /// Sessions found already: each belongs to one connection.
    claimed: FxHashSet<[u8; 32]>,
    spent: u64,
    budget: u64,
    /// Searches cut short by the budget.
    pub starved: u64,
}

impl Default for Trials {
    fn default() -> Trials {
        Trials::with_budget(TRIAL_BUDGET)
    }
}

impl std::fmt::Debug for Trials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trials")
            .field("candidates", &self.candidates.len())
            .field("spent", &self.spent)
            .finish_non_exhaustive()
    }
}

/// TLS 1.3 suites a traffic secret of `len` bytes can belong to (its hash's length).
fn suites_for(len: usize) -> impl Iterator<Item = Suite> {
    let ids: &[u16] = match len {
        32 => &[0x1301, 0x1303], // TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256
        48 => &[0x1302],         // TLS_AES_256_GCM_SHA384
        _ => &[],
    };
    ids.iter().filter_map(|&id| Suite::from_id(id).ok())
}

impl Trials {
    fn with_budget(budget: u64) -> Trials {
        Trials {
            candidates: Vec::new(),
            made_for: 0,
            claimed: FxHashSet::default(),
            spent: 0,
            budget,
            starved: 0,
        }
    }

    /// Make the candidates again when the log has sessions they were not made from.
    pub fn refresh(&mut self, log: &KeyLog) {
        if self.made_for == log.len() {
            return;
        }
        self.made_for = log.len();
        self.candidates.clear();
        // In a fixed order: which searches a spent budget cuts short must not vary by run.
        let mut sessions: Vec<_> = log.sessions().collect();
        sessions.sort_unstable_by_key(|(random, _)| **random);
        for (random, secrets) in sessions {
            let both = [
                (Writer::Client, &secrets.client_traffic_0),
                (Writer::Server, &secrets.server_traffic_0),
            ];
            for (writer, secret) in both {
                let Some(secret) = secret else { continue };
                for suite in suites_for(secret.bytes().len()) {
                    if let Some(c) = Candidate::new(*random, writer, suite, secret) {
                        self.candidates.push(c);
                    }
                }
            }
        }
    }

    /// The secret a found candidate was made from.
    fn secret<'l>(log: &'l KeyLog, random: &[u8; 32], writer: Writer) -> Option<&'l Secret> {
        let secrets = log.get(random)?;
        match writer {
            Writer::Client => secrets.client_traffic_0.as_ref(),
            Writer::Server => secrets.server_traffic_0.as_ref(),
        }
    }

    /// Whether the log holds any TLS 1.3 traffic secret to search with.
    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    /// Make the attempt; `out` receives the opened record's plaintext. `log` is the one the
    /// candidates were made from.
    pub fn search(
        &mut self,
        log: &KeyLog,
        attempt: Attempt<'_>,
        out: &mut Vec<u8>,
    ) -> Option<Found> {
        let Attempt {
            wanted,
            seqs,
            header,
            body,
        } = attempt;
        if body.len() < MIN_RECORD {
            return None;
        }
        let first: [u8; 16] = body[..16].try_into().expect("16 bytes");
        for c in &self.candidates {
            let fits = match wanted {
                Wanted::Any => !self.claimed.contains(&c.random),
                Wanted::Session(random, writer) => c.random == random && c.writer == writer,
            };
            if !fits {
                continue;
            }
            let Some(probe) = Probe::new(c.suite.aead, &c.key[..c.suite.aead.key_len()]) else {
                continue;
            };
            let cost = seqs.end.saturating_sub(seqs.start) * probe.cost();
            if self.spent.saturating_add(cost) > self.budget {
                self.starved += 1;
                return None;
            }
            self.spent += cost;
            let Some(secret) = Trials::secret(log, &c.random, c.writer) else {
                continue;
            };
            let mut hits = c.probe_range(&probe, seqs.clone(), &first);
            let opened = hits.find_map(|seq| c.open_at(secret, seq, header, body, out));
            if let Some((keys, kind)) = opened {
                self.claimed.insert(c.random);
                return Some(Found {
                    random: c.random,
                    writer: c.writer,
                    suite: c.suite,
                    secret: secret.clone(),
                    keys,
                    kind,
                });
            }
        }
        None
    }
}

impl Candidate {
    fn new(random: [u8; 32], writer: Writer, suite: Suite, secret: &Secret) -> Option<Candidate> {
        let (key_bytes, iv) = tls13_key_iv(&suite, secret.bytes())?;
        let mut key = [0u8; 32];
        key.get_mut(..key_bytes.len())?.copy_from_slice(&key_bytes);
        Some(Candidate {
            random,
            writer,
            suite,
            key,
            iv: iv.try_into().ok()?,
        })
    }

    /// The sequence numbers in `seqs` at which `first` (a record's first 16 bytes)
    /// deciphers to the start of a MongoDB message.
    fn probe_range<'a>(
        &'a self,
        probe: &'a Probe,
        seqs: Range<u64>,
        first: &'a [u8; 16],
    ) -> impl Iterator<Item = u64> + 'a {
        const BATCH: u64 = 64;
        let mut counter_block = [0u8; 16];
        counter_block[..12].copy_from_slice(&self.iv);
        counter_block[15] = 2;
        let counter_block = u128::from_be_bytes(counter_block);
        let first = u128::from_le_bytes(*first);
        let mut blocks = [Block::default(); BATCH as usize];
        let mut at = seqs.start;
        let mut pending: Vec<u64> = Vec::new();
        std::iter::from_fn(move || loop {
            if let Some(seq) = pending.pop() {
                return Some(seq);
            }
            if at >= seqs.end {
                return None;
            }
            let n = (seqs.end - at).min(BATCH);
            for (k, block) in blocks[..n as usize].iter_mut().enumerate() {
                // nonce (IV XOR seq) || GCM's first data block counter, 2 (1 masks the tag).
                let counter = counter_block ^ (u128::from(at + k as u64) << 32);
                block.copy_from_slice(&counter.to_be_bytes());
            }
            let stream = &mut blocks[..n as usize];
            match probe {
                Probe::Aes128(aes) => aes.encrypt_blocks(stream),
                Probe::Aes256(aes) => aes.encrypt_blocks(stream),
                Probe::ChaCha(key) => {
                    for (k, block) in stream.iter_mut().enumerate() {
                        let nonce = seq_nonce(&self.iv, at + k as u64);
                        let mut cipher = ChaCha20::new(key.into(), &nonce.into());
                        // RFC 8439: block 0 makes the Poly1305 key, data starts at block 1.
                        cipher.seek(64u32);
                        block.fill(0);
                        cipher.apply_keystream(block);
                    }
                }
            }
            for (k, block) in stream.iter().enumerate().rev() {
                let key_stream = u128::from_le_bytes((*block).into());
                if starts_message(first ^ key_stream) {
                    pending.push(at + k as u64);
                }
            }
            at += n;
        })
    }

    /// Open the record in full at `seq`: the AEAD tag confirms the candidate.
    fn open_at(
        &self,
        secret: &Secret,
        seq: u64,
        header: &[u8; 5],
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<(RecordKeys, u8)> {
        let mut keys = RecordKeys::tls13(&self.suite, secret)?;
        keys.set_seq(seq);
        let kind = keys.open(header, body, out).ok()?;
        (kind == APPLICATION_DATA).then_some((keys, kind))
    }
}

/// A MongoDB message header's first 16 bytes (read little-endian, as the wire is): an
/// opcode that exists (OP_REPLY, the legacy 2001–2007, OP_COMMAND/REPLY, OP_COMPRESSED,
/// OP_MSG) and a length within the server's limit (48 MB).
fn starts_message(head: u128) -> bool {
    let op = (head >> 96) as u32;
    let len = head as u32;
    matches!(op, 1 | 2001..=2007 | 2010..=2013) && (16..=48_000_000).contains(&len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::tests::sealed_as;

    const RANDOM: [u8; 32] = [7; 32];

    /// A key log with one TLS 1.3 session whose secrets are `len` bytes long.
    fn log(len: usize) -> KeyLog {
        let hex = |b: u8| format!("{b:02x}").repeat(len);
        let random = "07".repeat(32);
        let text = format!(
            "CLIENT_TRAFFIC_SECRET_0 {random} {}\nSERVER_TRAFFIC_SECRET_0 {random} {}\n",
            hex(0xc1),
            hex(0x5e)
        );
        KeyLog::parse(&text).0
    }

    /// A record sealed as a TLS stack writes it, split into header and body.
    type Sealed = ([u8; 5], Vec<u8>);

    fn seal(suite: u16, secret: &[u8], seq: u64, content: &[u8]) -> Sealed {
        let record = sealed_as(suite, secret, seq, APPLICATION_DATA, content);
        (record[..5].try_into().unwrap(), record[5..].to_vec())
    }

    /// Search `record` for `wanted` at `seqs`: the session found, with its plaintext.
    fn search(
        trials: &mut Trials,
        log: &KeyLog,
        wanted: Wanted,
        seqs: Range<u64>,
        record: &Sealed,
    ) -> Option<(Found, Vec<u8>)> {
        let attempt = Attempt {
            wanted,
            seqs,
            header: &record.0,
            body: &record.1,
        };
        let mut out = Vec::new();
        trials.search(log, attempt, &mut out).map(|f| (f, out))
    }

    /// An OP_MSG hello's first bytes: messageLength 40, requestID, responseTo, opCode 2013.
    fn op_msg() -> Vec<u8> {
        let mut m = Vec::new();
        for field in [40i32, 9, 0, 2013] {
            m.extend_from_slice(&field.to_le_bytes());
        }
        m.resize(40, 0);
        m
    }

    #[test]
    fn each_suite_is_found_at_its_sequence_number_and_writer() {
        for (id, len) in [(0x1301, 32), (0x1302, 48), (0x1303, 32)] {
            let suite = Suite::from_id(id).unwrap();
            let log = log(len);
            let mut trials = Trials::default();
            trials.refresh(&log);
            let record = seal(id, &vec![0x5e; len], 1234, &op_msg());
            let (found, plain) = search(&mut trials, &log, Wanted::Any, 0..4096, &record)
                .unwrap_or_else(|| panic!("{}: not found", suite.name));
            assert_eq!((found.random, found.writer), (RANDOM, Writer::Server));
            assert_eq!(found.suite, suite);
            assert_eq!(plain, op_msg());
            // The keys go on from the next record.
            assert_eq!(found.keys.seq(), 1235);
            // A session belongs to one connection: it is not offered to another.
            assert!(search(&mut trials, &log, Wanted::Any, 0..4096, &record).is_none());
            // Asked for by name (the other direction found), it still is.
            let named = Wanted::Session(RANDOM, Writer::Server);
            assert!(search(&mut trials, &log, named, 1000..2000, &record).is_some());
        }
    }

    #[test]
    fn beyond_the_range_or_mid_message_nothing_is_found() {
        let log = log(32);
        let mut trials = Trials::default();
        trials.refresh(&log);
        let beyond = seal(0x1301, &[0xc1; 32], 5000, &op_msg());
        assert!(search(&mut trials, &log, Wanted::Any, 0..4096, &beyond).is_none());
        // The continuation of a large message does not begin with a header.
        let continuation = seal(0x1301, &[0xc1; 32], 3, &[0x61; 64]);
        assert!(search(&mut trials, &log, Wanted::Any, 0..4096, &continuation).is_none());
        // The wrong writer of the right session is not the one that sealed it.
        let from_client = seal(0x1301, &[0xc1; 32], 3, &op_msg());
        let server = Wanted::Session(RANDOM, Writer::Server);
        assert!(search(&mut trials, &log, server, 0..4096, &from_client).is_none());
        assert_eq!(trials.starved, 0);
    }

    #[test]
    fn the_budget_bounds_the_work_and_says_when_it_cut_a_search_short() {
        let log = log(48);
        let mut trials = Trials::with_budget(1 << 16);
        trials.refresh(&log);
        let continuation = seal(0x1302, &[0x5e; 48], 3, &[0x61; 64]);
        let width = 1 << 14;
        // Two candidates (both writers) a search: the budget lasts two searches.
        for _ in 0..2 {
            assert!(search(&mut trials, &log, Wanted::Any, 0..width, &continuation).is_none());
        }
        assert_eq!(trials.starved, 0);
        assert!(search(&mut trials, &log, Wanted::Any, 0..width, &continuation).is_none());
        assert_eq!(trials.starved, 1);
    }
}
