//! The client's TLS stack, named by its ClientHello: a JA4 fingerprint (FoxIO's JA4
//! technical details, `technical_details/JA4.md`).
//!
//! Without keys the driver's handshake metadata (appName, driver name) is encrypted, but
//! the ClientHello is not: which TLS library, in which version and configuration, offers
//! which cipher suites, extensions and signature algorithms. Every connection of one
//! MongoClient (monitors and pool alike) is made by the same stack, so source host +
//! fingerprint groups a keyless client's connections the way host + metadata does for
//! plaintext. JA4 is used as published (rather than a private format) so the value can be
//! compared with what Wireshark, Zeek or a load balancer log for the same client.
//!
//! JA4: `t` (TLS over TCP), the highest offered version (supported_versions when
//! present), `d`/`i` for SNI present or not, the number of cipher suites and of extensions
//! (two digits each, at most 99), the first and last characters of the first ALPN value
//! (`00` without ALPN); then the first 12 hex digits of SHA-256 over the sorted cipher
//! list, and over the sorted extension list (SNI and ALPN left out) `_` the signature
//! algorithms in offered order. GREASE values (RFC 8701) are ignored everywhere.

use std::cell::RefCell;

use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};

const EXT_SNI: u16 = 0x0000;
const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
const EXT_ALPN: u16 = 0x0010;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;
const EXT_SESSION_TICKET: u16 = 0x0023;
const EXT_PRE_SHARED_KEY: u16 = 0x0029;
const EXT_EARLY_DATA: u16 = 0x002a;

/// RFC 8701 GREASE values: 0x?a?a with both bytes equal.
fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// What JA4 reads from a ClientHello, GREASE already removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct HelloParts {
    /// The legacy `client_version` field.
    pub legacy_version: u16,
    pub ciphers: Vec<u16>,
    /// Extension types in the order offered.
    pub extensions: Vec<u16>,
    pub supported_versions: Vec<u16>,
    pub signature_algorithms: Vec<u16>,
    pub first_alpn: Option<Vec<u8>>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// A hello's extension block as (type, data), without copying: 2-byte type, 2-byte
/// length, data; it stops quietly at a truncated one, so a damaged hello still gives what
/// it holds. Written here rather than taken from `tls_parser::parse_tls_extensions`, which
/// builds a vector of every extension parsed: walked three times per ClientHello, that
/// was 1% of a keyless capture's instructions.
pub fn extensions(mut block: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let (kind, len) = (u16_at(block, 0)?, u16_at(block, 2)?);
        let data = block.get(4..4 + len as usize)?;
        block = &block[4 + len as usize..];
        Some((kind, data))
    })
}

/// The first name of a ClientHello's server_name extension (RFC 6066: a list of
/// (type, length-prefixed name) after the list's own length).
pub fn server_name(ext: &[u8]) -> Option<&[u8]> {
    let (_, data) = extensions(ext).find(|(kind, _)| *kind == EXT_SNI)?;
    let len = usize::from(u16_at(data, 3)?);
    data.get(5..5 + len)
}

/// The version a ServerHello's supported_versions extension selected (RFC 8446 4.2.1: one
/// version; a list, as a ClientHello sends, is read for its first).
pub fn selected_version(ext: &[u8]) -> Option<u16> {
    let (_, data) = extensions(ext).find(|(kind, _)| *kind == EXT_SUPPORTED_VERSIONS)?;
    match data.len() {
        2 => u16_at(data, 0),
        _ => u16_at(data, 1),
    }
}

/// A list of u16 behind a length prefix of `prefix` bytes (1 or 2).
fn u16_list(data: &[u8], prefix: usize) -> Vec<u16> {
    let len = match prefix {
        1 => data.first().map(|&n| n as usize),
        _ => u16_at(data, 0).map(usize::from),
    };
    let Some(body) = len.and_then(|n| data.get(prefix..prefix + n)) else {
        return Vec::new();
    };
    // Sized up front: a filtered iterator's `collect` grows the vector step by step.
    let mut list = Vec::with_capacity(body.len() / 2);
    list.extend(
        body.chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .filter(|v| !is_grease(*v)),
    );
    list
}

impl HelloParts {
    /// From a parsed ClientHello's fields; the extension block is read here (type, length,
    /// data), stopping quietly at a truncated one: a damaged hello still gives a value.
    pub fn new(legacy_version: u16, ciphers: &[u16], ext: Option<&[u8]>) -> HelloParts {
        let mut parts = HelloParts {
            legacy_version,
            ciphers: Vec::with_capacity(ciphers.len()),
            // Real hellos carry 10 to 20 extensions.
            extensions: Vec::with_capacity(24),
            ..HelloParts::default()
        };
        parts
            .ciphers
            .extend(ciphers.iter().copied().filter(|c| !is_grease(*c)));
        for (kind, data) in extensions(ext.unwrap_or_default()) {
            if is_grease(kind) {
                continue;
            }
            parts.extensions.push(kind);
            match kind {
                EXT_SUPPORTED_VERSIONS => parts.supported_versions = u16_list(data, 1),
                EXT_SIGNATURE_ALGORITHMS => parts.signature_algorithms = u16_list(data, 2),
                EXT_ALPN => {
                    // protocol_name_list: u16 length, then u8-prefixed names.
                    let first = data
                        .get(2)
                        .and_then(|&n| data.get(3..3 + n as usize))
                        .filter(|n| !n.is_empty());
                    parts.first_alpn = first.map(<[u8]>::to_vec);
                }
                _ => {}
            }
        }
        parts
    }

    /// For a hello that resumes a session (pre_shared_key), the JA4 of the full handshake
    /// its stack makes; `None` for a full hello, whose own JA4 is that already. The
    /// resumed hello loses pre_shared_key and early_data, and offers session_ticket, as
    /// the stacks' full hellos do: OpenSSL keeps session_ticket beside pre_shared_key,
    /// rustls swaps one for the other. JA4 itself would split a client whose TLS library
    /// resumes sessions (rustls, Java's JSSE) in two.
    pub fn full_handshake_ja4(&self) -> Option<String> {
        if !self.extensions.contains(&EXT_PRE_SHARED_KEY) {
            return None;
        }
        let mut full = self.clone();
        full.extensions
            .retain(|e| *e != EXT_PRE_SHARED_KEY && *e != EXT_EARLY_DATA);
        if !full.extensions.contains(&EXT_SESSION_TICKET) {
            full.extensions.push(EXT_SESSION_TICKET);
        }
        Some(full.ja4())
    }

    /// [`HelloParts::ja4`] and [`HelloParts::full_handshake_ja4`], remembered per thread.
    ///
    /// Every connection of one TLS stack and configuration sends the same hello parts (the
    /// random, session id and key shares are not among them), so a capture of thousands of
    /// TLS connections has a handful of distinct fingerprints; the two SHA-256 runs per
    /// fingerprint were 5% of a keyless capture's instructions. The memo is cleared when
    /// it holds [`FINGERPRINT_MEMO`] entries, so a capture of ever-new hellos (a scanner)
    /// costs its memory no more than that.
    pub fn fingerprints(&self) -> (String, Option<String>) {
        thread_local! {
            static MEMO: RefCell<FxHashMap<HelloParts, (String, Option<String>)>> =
                RefCell::new(FxHashMap::default());
        }
        MEMO.with_borrow_mut(|memo| {
            if let Some(known) = memo.get(self) {
                return known.clone();
            }
            let computed = (self.ja4(), self.full_handshake_ja4());
            if memo.len() >= FINGERPRINT_MEMO {
                memo.clear();
            }
            memo.insert(self.clone(), computed.clone());
            computed
        })
    }

    /// The JA4 fingerprint, e.g. `t13i1811h1_85036bcba153_2b3a3e8a4a3f`.
    ///
    /// Written straight into one string, and the hashed lists' text (4 lowercase hex
    /// digits per value, comma-separated) streamed into the hasher without being built:
    /// once per TLS connection, the per-value `format!` was 5% of a keyless capture's run.
    pub fn ja4(&self) -> String {
        let version = self
            .supported_versions
            .iter()
            .copied()
            .max()
            .unwrap_or(self.legacy_version);
        let version = match version {
            0x0304 => "13",
            0x0303 => "12",
            0x0302 => "11",
            0x0301 => "10",
            0x0300 => "s3",
            _ => "00",
        };
        let sni = if self.extensions.contains(&EXT_SNI) {
            'd'
        } else {
            'i'
        };
        let mut ciphers = self.ciphers.clone();
        ciphers.sort_unstable();
        let mut exts: Vec<u16> = self
            .extensions
            .iter()
            .copied()
            .filter(|e| *e != EXT_SNI && *e != EXT_ALPN)
            .collect();
        exts.sort_unstable();

        let mut ja4 = String::with_capacity(36);
        ja4.push('t');
        ja4.push_str(version);
        ja4.push(sni);
        push_two_digits(&mut ja4, self.ciphers.len());
        push_two_digits(&mut ja4, self.extensions.len());
        match self.first_alpn.as_deref() {
            Some([first, .., last]) => push_alpn_chars(&mut ja4, *first, *last),
            Some([only]) => push_alpn_chars(&mut ja4, *only, *only),
            _ => ja4.push_str("00"),
        }
        ja4.push('_');
        push_truncated_hash(&mut ja4, &[&ciphers]);
        ja4.push('_');
        // The extension list, then `_` and the signature algorithms when there are any.
        push_truncated_hash(&mut ja4, &[&exts, &self.signature_algorithms]);
        ja4
    }
}

/// How many distinct hellos [`HelloParts::fingerprints`] remembers (each ~200 bytes).
const FINGERPRINT_MEMO: usize = 256;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A count as two decimal digits, at most 99.
fn push_two_digits(out: &mut String, n: usize) {
    let n = n.min(99) as u8;
    out.push(char::from(b'0' + n / 10));
    out.push(char::from(b'0' + n % 10));
}

/// JA4 takes the ALPN value's first and last characters; when either is not alphanumeric,
/// the first and last characters of the value's hex instead.
fn push_alpn_chars(out: &mut String, first: u8, last: u8) {
    if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
        out.push(char::from(first));
        out.push(char::from(last));
    } else {
        out.push(char::from(HEX[usize::from(first >> 4)]));
        out.push(char::from(HEX[usize::from(last & 0xf)]));
    }
}

/// The first 12 hex digits of SHA-256 over JA4's text of `lists`: each list's values as 4
/// lowercase hex digits joined by `,`, the non-empty lists after the first joined by `_`
/// (`0005,000a_0403` for `[[0x5, 0xa], [0x403]]`). JA4 writes twelve zeros when that text
/// is empty.
fn push_truncated_hash(out: &mut String, lists: &[&[u16]]) {
    let mut hasher = Sha256::new();
    let mut empty = true;
    for (n, list) in lists.iter().enumerate() {
        if n > 0 && !list.is_empty() {
            hasher.update(b"_");
            empty = false;
        }
        // Up to 64 values' text at a time: one hasher call per chunk, not per value.
        for (c, chunk) in list.chunks(64).enumerate() {
            let mut text = [0u8; 64 * 5];
            let mut len = 0;
            for (i, v) in chunk.iter().enumerate() {
                if c > 0 || i > 0 {
                    text[len] = b',';
                    len += 1;
                }
                for shift in [12, 8, 4, 0] {
                    text[len] = HEX[usize::from(v >> shift & 0xf)];
                    len += 1;
                }
            }
            hasher.update(&text[..len]);
            empty = false;
        }
    }
    if empty {
        out.push_str("000000000000");
        return;
    }
    for b in &hasher.finalize()[..6] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of FoxIO's JA4 technical details.
    #[test]
    fn the_published_example_gives_the_published_fingerprint() {
        let ciphers = [
            0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
            0x009c, 0x009d, 0x002f, 0x0035,
        ];
        let extensions = [
            0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012,
            0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
        ];
        let parts = HelloParts {
            legacy_version: 0x0303,
            ciphers: ciphers.to_vec(),
            extensions: extensions.to_vec(),
            supported_versions: vec![0x0304, 0x0303],
            signature_algorithms: vec![
                0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
            ],
            first_alpn: Some(b"h2".to_vec()),
        };
        assert_eq!(parts.ja4(), "t13d1516h2_8daaf6152771_e5627efa2ab1");
        // Without signature algorithms the extension list is hashed alone.
        let bare = HelloParts {
            signature_algorithms: Vec::new(),
            ..parts
        };
        assert!(bare.ja4().ends_with("_6d807ffa2a79"), "{}", bare.ja4());
    }

    /// The extensions of the Rust driver's rustls hellos in the lab's tls-rust capture
    /// (monitors: fresh; pool connections opened later: resumed), and of an OpenSSL-style
    /// resumption that keeps session_ticket and adds pre_shared_key and early_data.
    #[test]
    fn a_resumed_hello_names_the_same_stack_as_a_fresh_one() {
        let hello = |extensions: &[u16]| HelloParts {
            legacy_version: 0x0303,
            ciphers: vec![0x1302, 0x1301, 0x1303, 0xc02c, 0xc02b],
            extensions: extensions.to_vec(),
            supported_versions: vec![0x0304, 0x0303],
            signature_algorithms: vec![0x0503, 0x0403, 0x0807],
            first_alpn: None,
        };
        let fresh = hello(&[51, 11, 43, 35, 10, 45, 5, 23, 13]);
        let rustls_resumed = hello(&[43, 51, 5, 45, 11, 13, 10, 23, 41]);
        let openssl_resumed = hello(&[51, 11, 43, 35, 10, 45, 5, 23, 13, 42, 41]);
        assert_ne!(rustls_resumed.ja4(), fresh.ja4());
        assert_ne!(openssl_resumed.ja4(), fresh.ja4());
        assert_eq!(fresh.full_handshake_ja4(), None);
        assert_eq!(rustls_resumed.full_handshake_ja4(), Some(fresh.ja4()));
        assert_eq!(openssl_resumed.full_handshake_ja4(), Some(fresh.ja4()));
        // Another stack stays another stack, fresh or resumed.
        let other = hello(&[51, 11, 43, 35, 10, 45, 5, 23]);
        assert_eq!(other.full_handshake_ja4(), None);
        assert_ne!(other.ja4(), fresh.ja4());
        let other_resumed = hello(&[51, 11, 43, 35, 10, 45, 5, 23, 41]);
        assert_eq!(other_resumed.full_handshake_ja4(), Some(other.ja4()));
    }

    /// The zero-copy walk reads what tls-parser's parse of the same block reads: the SNI
    /// (first name), and a ServerHello's selected version or a ClientHello's list.
    #[test]
    fn extension_walk_reads_what_tls_parser_reads() {
        use tls_parser::TlsExtension;
        let ext = |kind: u16, data: &[u8]| {
            let mut e = kind.to_be_bytes().to_vec();
            e.extend((data.len() as u16).to_be_bytes());
            e.extend(data);
            e
        };
        let name = b"db1.example.net";
        let mut sni = vec![0, name.len() as u8 + 3, 0, 0, name.len() as u8];
        sni.extend(name);
        let client: Vec<u8> = [
            ext(0x0a0a, &[]),
            ext(EXT_SNI, &sni),
            ext(EXT_ALPN, &[0, 3, 2, b'h', b'2']),
            ext(EXT_SUPPORTED_VERSIONS, &[4, 0x03, 0x04, 0x03, 0x03]),
        ]
        .concat();
        let server = ext(EXT_SUPPORTED_VERSIONS, &[0x03, 0x04]);

        let (_, parsed) = tls_parser::parse_tls_extensions(&client).unwrap();
        let theirs = parsed.iter().find_map(|e| match e {
            TlsExtension::SNI(names) => names.first().map(|(_, n)| *n),
            _ => None,
        });
        assert_eq!(server_name(&client), theirs);
        assert_eq!(server_name(&client), Some(&name[..]));
        assert_eq!(selected_version(&client), Some(0x0304));
        let (_, parsed) = tls_parser::parse_tls_extensions(&server).unwrap();
        let theirs = parsed.iter().find_map(|e| match e {
            TlsExtension::SupportedVersions(v) => v.first().map(|v| v.0),
            _ => None,
        });
        assert_eq!(selected_version(&server), theirs);
        assert_eq!(selected_version(&server), Some(0x0304));
        // Types in order; a truncated last extension ends the walk without a panic.
        let kinds: Vec<u16> = extensions(&client).map(|(k, _)| k).collect();
        assert_eq!(kinds, [0x0a0a, EXT_SNI, EXT_ALPN, EXT_SUPPORTED_VERSIONS]);
        assert_eq!(extensions(&client[..client.len() - 1]).count(), 3);
        assert_eq!(server_name(&client[..6]), None);
        assert_eq!(selected_version(&[]), None);
    }

    /// The memo answers what the computation would, for a hello seen again and across the
    /// clearing that bounds it (more distinct hellos than it keeps, then the first again).
    #[test]
    fn remembered_fingerprints_are_the_computed_ones() {
        let hello = |cipher: u16| HelloParts {
            legacy_version: 0x0303,
            ciphers: vec![0x1301, cipher],
            extensions: vec![0x002b, 0x0029],
            supported_versions: vec![0x0304],
            ..HelloParts::default()
        };
        let computed = |parts: &HelloParts| (parts.ja4(), parts.full_handshake_ja4());
        let first = hello(0xc000);
        assert_eq!(first.fingerprints(), computed(&first));
        assert_eq!(first.fingerprints(), computed(&first));
        for cipher in 0..FINGERPRINT_MEMO as u16 * 2 {
            let parts = hello(cipher);
            assert_eq!(parts.fingerprints(), computed(&parts), "cipher {cipher:#x}");
        }
        assert_eq!(first.fingerprints(), computed(&first));
        assert_ne!(hello(1).fingerprints(), hello(2).fingerprints());
    }

    /// The hashed text streamed in chunks hashes as the text built whole: lists longer than
    /// a chunk, and signature algorithms without any other extension.
    #[test]
    fn streamed_list_hashes_match_the_joined_text() {
        fn joined(values: &[u16]) -> String {
            let hex: Vec<String> = values.iter().map(|v| format!("{v:04x}")).collect();
            hex.join(",")
        }
        fn hash_of(text: &str) -> String {
            let digest = Sha256::digest(text.as_bytes());
            digest[..6].iter().map(|b| format!("{b:02x}")).collect()
        }
        let long: Vec<u16> = (0..200u16).map(|i| i.wrapping_mul(0x1f3d)).collect();
        for (first, second) in [
            (&long[..], &long[..3]),
            (&long[..64], &[][..]),
            (&long[..65], &long[..130]),
            (&[][..], &[0x0403, 0x0804][..]),
        ] {
            let mut text = joined(first);
            if !second.is_empty() {
                text.push('_');
                text.push_str(&joined(second));
            }
            let mut got = String::new();
            push_truncated_hash(&mut got, &[first, second]);
            assert_eq!(got, hash_of(&text), "{text}");
        }
        let mut none = String::new();
        push_truncated_hash(&mut none, &[&[], &[]]);
        assert_eq!(none, "000000000000");
        // An ALPN value with a non-alphanumeric end: hex digits of its first and last byte.
        let mut alpn = String::new();
        push_alpn_chars(&mut alpn, 0xab, 0x2f);
        assert_eq!(alpn, "af");
    }

    /// An extension block as a ClientHello carries it.
    fn ext(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut e = kind.to_be_bytes().to_vec();
        e.extend((data.len() as u16).to_be_bytes());
        e.extend(data);
        e
    }

    #[test]
    fn raw_extensions_are_read_and_grease_is_ignored() {
        let mut block = ext(0x0a0a, &[]); // GREASE
        block.extend(ext(EXT_SUPPORTED_VERSIONS, &[4, 0x3a, 0x3a, 0x03, 0x04]));
        block.extend(ext(
            EXT_SIGNATURE_ALGORITHMS,
            &[0, 4, 0x04, 0x03, 0x08, 0x04],
        ));
        block.extend(ext(
            EXT_ALPN,
            &[0, 9, 8, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1'],
        ));
        let parts = HelloParts::new(0x0303, &[0x1a1a, 0x1301, 0x1302], Some(&block));
        assert_eq!(parts.ciphers, [0x1301, 0x1302]);
        assert_eq!(
            parts.extensions,
            [EXT_SUPPORTED_VERSIONS, EXT_SIGNATURE_ALGORITHMS, EXT_ALPN]
        );
        assert_eq!(parts.supported_versions, [0x0304]);
        assert_eq!(parts.signature_algorithms, [0x0403, 0x0804]);
        let ja4 = parts.ja4();
        assert!(ja4.starts_with("t13i0203h1_"), "{ja4}");
        // A truncated block stops quietly.
        let cut = HelloParts::new(0x0303, &[0x1301], Some(&block[..block.len() - 3]));
        assert_eq!(cut.extensions.len(), 2);
        assert!(cut.ja4().starts_with("t13i0102"), "{}", cut.ja4());
        // No cipher at all: twelve zeros.
        assert!(HelloParts::new(0x0303, &[], None)
            .ja4()
            .starts_with("t12i000000_000000000000_"));
    }
}
