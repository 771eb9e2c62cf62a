//! Record protection: the key schedules' glue (HKDF-Expand-Label, RFC 8446 §7.1; the
//! TLS 1.2 PRF, RFC 5246 §5) and AEAD record decryption (RFC 8446 §5.2–5.3, RFC 5288,
//! RFC 7905). The cryptography itself is RustCrypto's: `hkdf`, `hmac`, `sha2`, `aes-gcm`,
//! `chacha20poly1305`.
//!
//! Key material lives only in [`RecordKeys`], whose `Debug` shows no bytes.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use chacha20poly1305::ChaCha20Poly1305;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384};

use super::keylog::Secret;

/// Record content types (RFC 8446 §5.1).
pub const CHANGE_CIPHER_SPEC: u8 = 20;
pub const ALERT: u8 = 21;
pub const HANDSHAKE: u8 = 22;
pub const APPLICATION_DATA: u8 = 23;

const TAG_LEN: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlg {
    Sha256,
    Sha384,
}

impl HashAlg {
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AeadAlg {
    Aes128Gcm,
    Aes256Gcm,
    ChaCha20Poly1305,
}

impl AeadAlg {
    pub fn key_len(self) -> usize {
        match self {
            AeadAlg::Aes128Gcm => 16,
            AeadAlg::Aes256Gcm | AeadAlg::ChaCha20Poly1305 => 32,
        }
    }
}

/// A negotiated cipher suite this module can decrypt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suite {
    pub id: u16,
    /// IANA name, e.g. `TLS_AES_256_GCM_SHA384`.
    pub name: &'static str,
    pub aead: AeadAlg,
    pub hash: HashAlg,
}

impl Suite {
    /// The suite with IANA id `id` if it is an AEAD this module decrypts: AES-GCM or
    /// ChaCha20-Poly1305 (TLS 1.2 and 1.3). `Err` carries the suite's name when known.
    pub fn from_id(id: u16) -> Result<Suite, Option<&'static str>> {
        use tls_parser::{TlsCipherEnc, TlsCipherEncMode, TlsPRF};
        let s = tls_parser::TlsCipherSuite::from_id(id).ok_or(None)?;
        let aead = match (s.enc, s.enc_mode, s.enc_size) {
            (TlsCipherEnc::Aes, TlsCipherEncMode::Gcm, 128) => AeadAlg::Aes128Gcm,
            (TlsCipherEnc::Aes, TlsCipherEncMode::Gcm, 256) => AeadAlg::Aes256Gcm,
            (TlsCipherEnc::Chacha20_Poly1305, _, _) => AeadAlg::ChaCha20Poly1305,
            _ => return Err(Some(s.name)),
        };
        let hash = match s.prf {
            TlsPRF::Sha384 => HashAlg::Sha384,
            TlsPRF::Sha256 | TlsPRF::Default => HashAlg::Sha256,
            _ => return Err(Some(s.name)),
        };
        Ok(Suite {
            id,
            name: s.name,
            aead,
            hash,
        })
    }
}

/// Why a record did not decrypt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("record too short for its cipher")]
    TooShort,
    #[error("authentication failed (wrong key, or the record was damaged)")]
    Auth,
    #[error("decrypted record holds no content type")]
    NoContentType,
}

/// HKDF-Expand-Label (RFC 8446 §7.1): `HKDF-Expand(secret, HkdfLabel, len)` with
/// `HkdfLabel = len(u16) || "tls13 " + label (u8 length) || context (u8 length)`.
pub fn hkdf_expand_label(
    hash: HashAlg,
    secret: &[u8],
    label: &[u8],
    context: &[u8],
    len: usize,
) -> Option<Vec<u8>> {
    let info = hkdf_label(label, context, len)?;
    let mut out = vec![0; len];
    let ok = match hash {
        HashAlg::Sha256 => hkdf::Hkdf::<Sha256>::from_prk(secret)
            .ok()?
            .expand(&info, &mut out)
            .is_ok(),
        HashAlg::Sha384 => hkdf::Hkdf::<Sha384>::from_prk(secret)
            .ok()?
            .expand(&info, &mut out)
            .is_ok(),
    };
    ok.then_some(out)
}

fn hkdf_label(label: &[u8], context: &[u8], len: usize) -> Option<Vec<u8>> {
    let full = 6 + label.len();
    let len = u16::try_from(len).ok()?;
    let mut info = Vec::with_capacity(4 + full + context.len());
    info.extend_from_slice(&len.to_be_bytes());
    info.push(u8::try_from(full).ok()?);
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(label);
    info.push(u8::try_from(context.len()).ok()?);
    info.extend_from_slice(context);
    Some(info)
}

/// The TLS 1.2 PRF (RFC 5246 §5): `P_hash(secret, label + seed)` with the suite's hash.
pub fn prf(hash: HashAlg, secret: &[u8], label: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    let mut label_seed = Vec::with_capacity(label.len() + seed.len());
    label_seed.extend_from_slice(label);
    label_seed.extend_from_slice(seed);
    match hash {
        HashAlg::Sha256 => p_hash::<Hmac<Sha256>>(secret, &label_seed, len),
        HashAlg::Sha384 => p_hash::<Hmac<Sha384>>(secret, &label_seed, len),
    }
}

/// `P_hash`: `HMAC(secret, A(i) + seed)` for `A(0) = seed`, `A(i) = HMAC(secret, A(i-1))`.
fn p_hash<M: Mac + KeyInit + Clone>(secret: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    let key = <M as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    let mut out = Vec::with_capacity(len);
    let mut a = {
        let mut m = key.clone();
        m.update(seed);
        m.finalize().into_bytes()
    };
    while out.len() < len {
        let mut m = key.clone();
        m.update(&a);
        m.update(seed);
        out.extend_from_slice(&m.finalize().into_bytes());
        let mut m = key.clone();
        m.update(&a);
        a = m.finalize().into_bytes();
    }
    out.truncate(len);
    out
}

enum Cipher {
    Aes128(Box<Aes128Gcm>),
    Aes256(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
}

impl Cipher {
    fn new(alg: AeadAlg, key: &[u8]) -> Option<Cipher> {
        Some(match alg {
            AeadAlg::Aes128Gcm => Cipher::Aes128(Box::new(Aes128Gcm::new_from_slice(key).ok()?)),
            AeadAlg::Aes256Gcm => Cipher::Aes256(Box::new(Aes256Gcm::new_from_slice(key).ok()?)),
            AeadAlg::ChaCha20Poly1305 => {
                Cipher::ChaCha(Box::new(ChaCha20Poly1305::new_from_slice(key).ok()?))
            }
        })
    }

    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), DecryptError> {
        let r = match self {
            Cipher::Aes128(c) => c.decrypt_in_place(nonce.into(), aad, buf),
            Cipher::Aes256(c) => c.decrypt_in_place(nonce.into(), aad, buf),
            Cipher::ChaCha(c) => c.decrypt_in_place(nonce.into(), aad, buf),
        };
        r.map_err(|_| DecryptError::Auth)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// TLS 1.3: nonce = iv XOR seq, AAD = record header, inner content type.
    Tls13,
    /// TLS 1.2 AES-GCM (RFC 5288): nonce = 4-byte salt || 8-byte explicit nonce.
    Tls12Gcm,
    /// TLS 1.2 ChaCha20-Poly1305 (RFC 7905): nonce = iv XOR seq.
    Tls12ChaCha,
}

/// One direction's record keys and sequence number.
pub struct RecordKeys {
    cipher: Cipher,
    iv: [u8; 12],
    framing: Framing,
    seq: u64,
}

impl std::fmt::Debug for RecordKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordKeys")
            .field("framing", &self.framing)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// A TLS 1.3 traffic secret's key and IV (RFC 8446 §7.3).
pub fn tls13_key_iv(suite: &Suite, secret: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let key = hkdf_expand_label(suite.hash, secret, b"key", b"", suite.aead.key_len())?;
    let iv = hkdf_expand_label(suite.hash, secret, b"iv", b"", 12)?;
    Some((key, iv))
}

/// The next TLS 1.3 application traffic secret after a KeyUpdate (RFC 8446 §7.2).
pub fn tls13_next_secret(suite: &Suite, secret: &Secret) -> Option<Secret> {
    hkdf_expand_label(
        suite.hash,
        secret.bytes(),
        b"traffic upd",
        b"",
        suite.hash.output_len(),
    )
    .map(Secret::new)
}

/// The per-record nonce of TLS 1.3 (RFC 8446 §5.3) and of TLS 1.2 ChaCha20 (RFC 7905):
/// the IV with the record's sequence number XORed into its last 8 bytes.
pub fn seq_nonce(iv: &[u8; 12], seq: u64) -> [u8; 12] {
    let mut nonce = *iv;
    for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
        *n ^= s;
    }
    nonce
}

impl RecordKeys {
    /// TLS 1.3 keys from a traffic secret.
    pub fn tls13(suite: &Suite, secret: &Secret) -> Option<RecordKeys> {
        let (key, iv) = tls13_key_iv(suite, secret.bytes())?;
        Some(RecordKeys {
            cipher: Cipher::new(suite.aead, &key)?,
            iv: iv.try_into().ok()?,
            framing: Framing::Tls13,
            seq: 0,
        })
    }

    /// TLS 1.2 keys for (client, server) from the master secret (RFC 5246 §6.3: the key
    /// block; AEAD suites have no MAC keys).
    pub fn tls12(
        suite: &Suite,
        master: &Secret,
        client_random: &[u8; 32],
        server_random: &[u8; 32],
    ) -> Option<(RecordKeys, RecordKeys)> {
        let (framing, iv_len) = match suite.aead {
            AeadAlg::ChaCha20Poly1305 => (Framing::Tls12ChaCha, 12),
            _ => (Framing::Tls12Gcm, 4),
        };
        let key_len = suite.aead.key_len();
        let mut seed = [0u8; 64];
        seed[..32].copy_from_slice(server_random);
        seed[32..].copy_from_slice(client_random);
        let block = prf(
            suite.hash,
            master.bytes(),
            b"key expansion",
            &seed,
            2 * key_len + 2 * iv_len,
        );
        let (client_key, rest) = block.split_at(key_len);
        let (server_key, rest) = rest.split_at(key_len);
        let (client_iv, server_iv) = rest.split_at(iv_len);
        let make = |key: &[u8], iv: &[u8]| -> Option<RecordKeys> {
            let mut full = [0u8; 12];
            full[..iv.len()].copy_from_slice(iv);
            Some(RecordKeys {
                cipher: Cipher::new(suite.aead, key)?,
                iv: full,
                framing,
                seq: 0,
            })
        };
        Some((make(client_key, client_iv)?, make(server_key, server_iv)?))
    }

    /// Records opened so far with these keys.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Take up a session at a record whose sequence number was found by search
    /// ([`super::trial`]).
    pub fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }

    fn xor_nonce(&self) -> [u8; 12] {
        seq_nonce(&self.iv, self.seq)
    }

    /// Decrypt one record (`header` is its 5-byte header, `body` its payload) into `out`,
    /// returning the content type. The sequence number only advances on success, so a
    /// failed trial leaves the keys as they were.
    pub fn open(
        &mut self,
        header: &[u8; 5],
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<u8, DecryptError> {
        out.clear();
        let kind = match self.framing {
            Framing::Tls13 => {
                if body.len() < TAG_LEN + 1 {
                    return Err(DecryptError::TooShort);
                }
                out.extend_from_slice(body);
                self.cipher.open(&self.xor_nonce(), header, out)?;
                // TLSInnerPlaintext: content || type || zero padding.
                let end = out
                    .iter()
                    .rposition(|&b| b != 0)
                    .ok_or(DecryptError::NoContentType)?;
                let kind = out[end];
                out.truncate(end);
                kind
            }
            Framing::Tls12Gcm | Framing::Tls12ChaCha => {
                let explicit = if self.framing == Framing::Tls12Gcm {
                    8
                } else {
                    0
                };
                if body.len() < explicit + TAG_LEN {
                    return Err(DecryptError::TooShort);
                }
                let nonce = if explicit > 0 {
                    let mut n = self.iv;
                    n[4..].copy_from_slice(&body[..8]);
                    n
                } else {
                    self.xor_nonce()
                };
                let plain_len = (body.len() - explicit - TAG_LEN) as u16;
                let mut aad = [0u8; 13];
                aad[..8].copy_from_slice(&self.seq.to_be_bytes());
                aad[8..11].copy_from_slice(&header[..3]);
                aad[11..].copy_from_slice(&plain_len.to_be_bytes());
                out.extend_from_slice(&body[explicit..]);
                self.cipher.open(&nonce, &aad, out)?;
                header[0]
            }
        };
        self.seq += 1;
        Ok(kind)
    }

    /// A record of this direction was lost whole or in part (a capture gap inside it):
    /// the next one has the following sequence number.
    pub fn skip_record(&mut self) {
        self.seq += 1;
    }

    /// Open a record after a gap that may have swallowed up to `max_lost` whole records
    /// (0: none, a plain [`RecordKeys::open`]): each sequence number from the current one
    /// on is tried until one authenticates (the AEAD's tag leaves no doubt which one it is).
    pub fn open_after_loss(
        &mut self,
        header: &[u8; 5],
        body: &[u8],
        out: &mut Vec<u8>,
        max_lost: u64,
    ) -> Result<u8, DecryptError> {
        let base = self.seq;
        let mut last = DecryptError::Auth;
        for lost in 0..=max_lost {
            self.seq = base + lost;
            match self.open(header, body, out) {
                Ok(kind) => return Ok(kind),
                Err(e) => last = e,
            }
        }
        self.seq = base;
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // RFC 8448 §3 (Simple 1-RTT Handshake, TLS_AES_128_GCM_SHA256): each secret ("PRK")
    // with the key and iv the RFC expands from it.
    const RFC8448: [(&str, &str, &str, &str); 4] = [
        (
            "{server} derive write traffic keys for handshake data",
            "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38",
            "3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc",
            "5d 31 3e b2 67 12 76 ee 13 00 0b 30",
        ),
        (
            "{server} derive read traffic keys for handshake data",
            "b3 ed db 12 6e 06 7f 35 a7 80 b3 ab f4 5e 2d 8f 3b 1a 95 07 38 f5 2e 96 00 74 6a 0e 27 a5 5a 21",
            "db fa a6 93 d1 76 2c 5b 66 6a f5 d9 50 25 8d 01",
            "5b d3 c7 1b 83 6e 0b 76 bb 73 26 5f",
        ),
        (
            "{server} derive write traffic keys for application data",
            "a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43",
            "9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56",
            "cf 78 2b 88 dd 83 54 9a ad f1 e9 84",
        ),
        (
            "{client} derive write traffic keys for application data",
            "9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5",
            "17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51",
            "5b 78 92 3d ee 08 57 90 33 e5 23 d9",
        ),
    ];

    #[test]
    fn rfc8448_traffic_secrets_give_the_rfcs_keys_and_ivs() {
        let suite = Suite::from_id(0x1301).unwrap();
        assert_eq!(suite.aead, AeadAlg::Aes128Gcm);
        assert_eq!(suite.hash, HashAlg::Sha256);
        for (what, secret, key, iv) in RFC8448 {
            let (k, i) = tls13_key_iv(&suite, &h(secret)).unwrap();
            assert_eq!(k, h(key), "{what}: key");
            assert_eq!(i, h(iv), "{what}: iv");
        }
    }

    #[test]
    fn rfc8448_hkdf_labels() {
        // "key info (13 octets)" and "iv info (12 octets)" of RFC 8448 §3.
        assert_eq!(
            hkdf_label(b"key", b"", 16).unwrap(),
            h("00 10 09 74 6c 73 31 33 20 6b 65 79 00")
        );
        assert_eq!(
            hkdf_label(b"iv", b"", 12).unwrap(),
            h("00 0c 08 74 6c 73 31 33 20 69 76 00")
        );
    }

    #[test]
    fn suites() {
        let s = Suite::from_id(0x1302).unwrap();
        assert_eq!((s.aead, s.hash), (AeadAlg::Aes256Gcm, HashAlg::Sha384));
        let s = Suite::from_id(0xcca8).unwrap();
        assert_eq!(s.aead, AeadAlg::ChaCha20Poly1305);
        assert_eq!(s.name, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256");
        let s = Suite::from_id(0xc030).unwrap();
        assert_eq!((s.aead, s.hash), (AeadAlg::Aes256Gcm, HashAlg::Sha384));
        // CBC suites are not decrypted, but named.
        assert_eq!(
            Suite::from_id(0x002f),
            Err(Some("TLS_RSA_WITH_AES_128_CBC_SHA"))
        );
        assert_eq!(Suite::from_id(0xfefe), Err(None));
    }

    #[test]
    fn tls13_round_trip_and_wrong_key() {
        let suite = Suite::from_id(0x1303).unwrap();
        let secret = Secret::new(vec![7; 32]);
        let (key, iv) = tls13_key_iv(&suite, secret.bytes()).unwrap();
        // Seal "hi" + inner type 23 + 3 bytes of padding with the RustCrypto AEAD, seq 0.
        let cipher = ChaCha20Poly1305::new_from_slice(&key).unwrap();
        let mut buf = b"hi\x17\0\0\0".to_vec();
        let header = [23, 3, 3, 0, (buf.len() + TAG_LEN) as u8];
        let nonce: [u8; 12] = iv.try_into().unwrap();
        cipher
            .encrypt_in_place((&nonce).into(), &header, &mut buf)
            .unwrap();
        let mut keys = RecordKeys::tls13(&suite, &secret).unwrap();
        let mut out = Vec::new();
        assert_eq!(keys.open(&header, &buf, &mut out), Ok(APPLICATION_DATA));
        assert_eq!(out, b"hi");
        // The same record again is sequence 1 now: it no longer authenticates.
        assert_eq!(keys.open(&header, &buf, &mut out), Err(DecryptError::Auth));
        let mut wrong = RecordKeys::tls13(&suite, &Secret::new(vec![8; 32])).unwrap();
        assert_eq!(wrong.open(&header, &buf, &mut out), Err(DecryptError::Auth));
        assert_eq!(
            wrong.open(&header, &buf[..5], &mut out),
            Err(DecryptError::TooShort)
        );
        assert!(!format!("{keys:?}").contains("cipher"));
    }
}
