//! The SSLKEYLOGFILE format (NSS key log): one secret per line,
//! `LABEL <client_random hex> <secret hex>`, `#` comments. Written by OpenSSL/BoringSSL
//! keylog callbacks (Python's `keylog_filename`, Node's `--tls-keylog`), Go's
//! `KeyLogWriter` and Java agents.
//!
//! Only the labels that decrypt application data are kept: `CLIENT_RANDOM` (TLS 1.2
//! master secret), `CLIENT_TRAFFIC_SECRET_0` / `SERVER_TRAFFIC_SECRET_0` (TLS 1.3
//! application traffic) and the two handshake traffic secrets (TLS 1.3, used to recognise
//! handshake records and to tell wrong keys early). Secrets never reach `Debug` output,
//! warnings or reports: [`Secret`] prints as `Secret(..)`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::trial::{Attempt, Found, Trials};

/// A secret from the key log. Its bytes are only handed to key derivation.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Everything the key log holds for one TLS session (one ClientHello random).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Secrets {
    /// TLS 1.2 `CLIENT_RANDOM`: the 48-byte master secret.
    pub master: Option<Secret>,
    pub client_handshake: Option<Secret>,
    pub server_handshake: Option<Secret>,
    pub client_traffic_0: Option<Secret>,
    pub server_traffic_0: Option<Secret>,
}

/// A line of the key log that could not be used; the secret is never repeated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyLogError {
    #[error("key log line {line}: expected `LABEL <client random> <secret>`")]
    Fields { line: usize },
    #[error("key log line {line}: the client random is not 32 bytes of hex")]
    Random { line: usize },
    #[error("key log line {line}: the secret is not hex, or not 32, 48 or 64 bytes")]
    Secret { line: usize },
}

/// Parsed key log: secrets by client random.
#[derive(Clone, Debug, Default)]
pub struct KeyLog {
    sessions: HashMap<[u8; 32], Secrets>,
}

impl KeyLog {
    /// Parse a key log; unusable lines are reported and skipped, unknown labels ignored.
    pub fn parse(text: &str) -> (KeyLog, Vec<KeyLogError>) {
        let mut log = KeyLog::default();
        let mut errors = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Err(e) = log.add_line(n + 1, line) {
                errors.push(e);
            }
        }
        (log, errors)
    }

    fn add_line(&mut self, line_no: usize, line: &str) -> Result<(), KeyLogError> {
        let mut fields = line.split_ascii_whitespace();
        let (Some(label), Some(random), Some(secret), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(KeyLogError::Fields { line: line_no });
        };
        let known = matches!(
            label,
            "CLIENT_RANDOM"
                | "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
                | "SERVER_HANDSHAKE_TRAFFIC_SECRET"
                | "CLIENT_TRAFFIC_SECRET_0"
                | "SERVER_TRAFFIC_SECRET_0"
        );
        if !known {
            return Ok(()); // EXPORTER_SECRET, early traffic, …: not needed
        }
        let random: [u8; 32] = hex(random)
            .and_then(|r| r.try_into().ok())
            .ok_or(KeyLogError::Random { line: line_no })?;
        let secret = hex(secret)
            .filter(|s| matches!(s.len(), 32 | 48 | 64))
            .map(Secret)
            .ok_or(KeyLogError::Secret { line: line_no })?;
        let entry = self.sessions.entry(random).or_default();
        let slot = match label {
            "CLIENT_RANDOM" => &mut entry.master,
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET" => &mut entry.client_handshake,
            "SERVER_HANDSHAKE_TRAFFIC_SECRET" => &mut entry.server_handshake,
            "CLIENT_TRAFFIC_SECRET_0" => &mut entry.client_traffic_0,
            _ => &mut entry.server_traffic_0,
        };
        *slot = Some(secret);
        Ok(())
    }

    pub fn get(&self, client_random: &[u8; 32]) -> Option<&Secrets> {
        self.sessions.get(client_random)
    }

    /// Every session, by client random.
    pub fn sessions(&self) -> impl Iterator<Item = (&[u8; 32], &Secrets)> {
        self.sessions.iter()
    }

    /// Sessions with at least one secret.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// The key log an analysis decrypts with: read once (offline), or followed while the
/// application runs (live: the file grows as connections are made, so a missing session
/// triggers a re-read when the file's length changed).
#[derive(Debug)]
pub struct KeyStore {
    log: KeyLog,
    path: Option<PathBuf>,
    follow: bool,
    last_len: u64,
    /// Unusable lines seen, for one warning.
    pub bad_lines: Vec<KeyLogError>,
    /// The TLS 1.3 secrets, ready for connections joined mid-session.
    trials: Trials,
}

impl KeyStore {
    /// A key store over an already parsed log (tests, fuzzing).
    pub fn from_log(log: KeyLog) -> KeyStore {
        KeyStore {
            log,
            path: None,
            follow: false,
            last_len: 0,
            bad_lines: Vec::new(),
            trials: Trials::default(),
        }
    }

    /// Read a key log file. With `follow`, the file may not exist yet and is re-read
    /// whenever a session is not found in it.
    pub fn open(path: &Path, follow: bool) -> std::io::Result<KeyStore> {
        let mut store = KeyStore::from_log(KeyLog::default());
        store.path = Some(path.to_path_buf());
        store.follow = follow;
        match store.reload() {
            Err(e) if !(follow && e.kind() == std::io::ErrorKind::NotFound) => Err(e),
            _ => Ok(store),
        }
    }

    fn reload(&mut self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let len = std::fs::metadata(path)?.len();
        if len == self.last_len && !self.log.is_empty() {
            return Ok(());
        }
        let text = std::fs::read_to_string(path)?;
        let (log, errors) = KeyLog::parse(&text);
        self.last_len = len;
        self.log = log;
        self.bad_lines = errors;
        Ok(())
    }

    /// The secrets of a session, re-reading a followed key log when they are missing.
    pub fn lookup(&mut self, client_random: &[u8; 32]) -> Option<&Secrets> {
        if self.log.get(client_random).is_none() && self.follow {
            let _ = self.reload();
        }
        self.log.get(client_random)
    }

    /// Whether a missing session may still appear (live key logs grow).
    pub fn follows(&self) -> bool {
        self.follow
    }

    pub fn sessions(&self) -> usize {
        self.log.len()
    }

    /// Searches for mid-session keys cut short by the analysis' budget of tries.
    pub fn searches_starved(&self) -> u64 {
        self.trials.starved
    }

    /// Whether the log holds TLS 1.3 traffic secrets to search a mid-session record with.
    pub fn can_search(&mut self) -> bool {
        self.trials.refresh(&self.log);
        !self.trials.is_empty()
    }

    /// Search a record of a connection joined mid-session ([`Trials::search`]).
    pub fn search(&mut self, attempt: Attempt<'_>, out: &mut Vec<u8>) -> Option<Found> {
        self.trials.refresh(&self.log);
        self.trials.search(&self.log, attempt, out)
    }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const R1: &str = "0101010101010101010101010101010101010101010101010101010101010101";

    #[test]
    fn parses_tls12_and_tls13_labels() {
        let text = format!(
            "# comment\n\
             CLIENT_RANDOM {R1} {m}\n\
             CLIENT_TRAFFIC_SECRET_0 {R1} {s}\n\
             SERVER_TRAFFIC_SECRET_0 {R1} {s}\n\
             EXPORTER_SECRET {R1} {s}\n",
            m = "ab".repeat(48),
            s = "cd".repeat(32)
        );
        let (log, errors) = KeyLog::parse(&text);
        assert!(errors.is_empty(), "{errors:?}");
        let s = log.get(&[1; 32]).unwrap();
        assert_eq!(s.master.as_ref().unwrap().bytes(), &[0xab; 48][..]);
        assert_eq!(
            s.client_traffic_0.as_ref().unwrap().bytes(),
            &[0xcd; 32][..]
        );
        assert!(s.client_handshake.is_none());
        assert!(log.get(&[2; 32]).is_none());
    }

    #[test]
    fn bad_lines_are_reported_without_their_secret() {
        let text = format!(
            "CLIENT_RANDOM {R1}\nCLIENT_RANDOM 0102 {s}\nCLIENT_RANDOM {R1} zz{s}\nCLIENT_RANDOM {R1} {s}\n",
            s = "ab".repeat(48)
        );
        let (log, errors) = KeyLog::parse(&text);
        assert_eq!(
            errors,
            vec![
                KeyLogError::Fields { line: 1 },
                KeyLogError::Random { line: 2 },
                KeyLogError::Secret { line: 3 }
            ]
        );
        assert_eq!(log.len(), 1);
        for e in &errors {
            assert!(!e.to_string().contains("abab"));
        }
        let secrets = log.get(&[1; 32]).unwrap();
        assert!(!format!("{secrets:?}").contains("ab, "));
        assert!(format!("{secrets:?}").contains("Secret(..)"));
    }

    #[test]
    fn a_followed_key_log_is_reread_when_a_session_is_missing() {
        let dir = std::env::temp_dir().join(format!("conn-attrib-keylog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.log");
        let _ = std::fs::remove_file(&path);
        // A live key log may not exist yet; an offline one must.
        assert!(KeyStore::open(&path, false).is_err());
        let mut store = KeyStore::open(&path, true).unwrap();
        assert!(store.lookup(&[1; 32]).is_none());
        std::fs::write(&path, format!("CLIENT_RANDOM {R1} {}\n", "ab".repeat(48))).unwrap();
        assert!(store.lookup(&[1; 32]).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
