//! A forward-only walk over a BSON document's elements, for the few fields the hot path
//! reads from every hello and every command.
//!
//! Written by hand rather than with `bson::RawIter` because of what the hot path needs:
//! it matches keys as bytes and reads a handful of scalar values, while `RawIter` checks
//! every key's UTF-8 and builds a typed value for every element it passes. On the bench
//! capture that iterator was a quarter of the run (`perf`: `RawIter::next`, `from_utf8`,
//! `read_cstring_at`). Here a key is a byte slice, a skipped value costs one length read,
//! and UTF-8 is checked only for the strings a caller takes. Everything else (cold paths,
//! tests) keeps using the `bson` crate.
//!
//! Every read is bounds-checked: a damaged document ends the walk, it never panics.

use bson::RawDocument;

/// A BSON document (or array: the same encoding with "0", "1", … keys) as bytes: int32
/// length, elements, NUL. Only the bounds are trusted, not the content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Doc<'a>(&'a [u8]);

impl<'a> Doc<'a> {
    /// The bytes of a whole document, as `bson::RawDocument` checked them.
    pub fn of(doc: &'a RawDocument) -> Doc<'a> {
        Doc(doc.as_bytes())
    }

    /// A document's bytes; `None` unless the length prefix matches and the last byte is NUL.
    pub fn from_bytes(bytes: &'a [u8]) -> Option<Doc<'a>> {
        let len = i32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
        (len >= 5 && len as usize == bytes.len() && bytes[bytes.len() - 1] == 0)
            .then_some(Doc(bytes))
    }

    /// The start of a document whose end was not captured (a snap length, lost packets):
    /// its walk ends at the first element that does not fit. When the bytes hold the
    /// whole document, and more, only the document is kept.
    pub fn truncated(bytes: &'a [u8]) -> Doc<'a> {
        match int32_at(bytes, 0) {
            Some(len) if len <= bytes.len() => Doc(&bytes[..len]),
            _ => Doc(bytes),
        }
    }

    /// The document's bytes, its length prefix included.
    pub fn as_bytes(self) -> &'a [u8] {
        self.0
    }

    pub fn elements(self) -> Elements<'a> {
        // A whole document ends with a NUL; a truncated one ends where the bytes do.
        let end = match int32_at(self.0, 0) {
            Some(len) if len > self.0.len() => self.0.len(),
            _ => self.0.len().saturating_sub(1),
        };
        Elements {
            rest: self.0.get(4..end).unwrap_or(&[]),
            truncated: end == self.0.len(),
        }
    }

    /// The first element named `key`.
    pub fn get(self, key: &str) -> Option<Element<'a>> {
        self.elements().find(|e| e.key == key.as_bytes())
    }

    pub fn get_str(self, key: &str) -> Option<&'a str> {
        self.get(key)?.str()
    }

    pub fn get_doc(self, key: &str) -> Option<Doc<'a>> {
        self.get(key)?.doc()
    }

    /// The name of the first element (a command's name), when it is UTF-8.
    pub fn first_key(self) -> Option<&'a str> {
        std::str::from_utf8(self.elements().next()?.key).ok()
    }

    /// The string values of an array (or document), skipping anything else.
    pub fn strings(self) -> impl Iterator<Item = &'a str> {
        self.elements().filter_map(|e| e.str())
    }

    /// The bytes of every string value, their UTF-8 unchecked ([`Element::str_bytes`]).
    pub fn string_bytes(self) -> impl Iterator<Item = &'a [u8]> {
        self.elements().filter_map(|e| e.str_bytes())
    }
}

/// BSON element types (bsonspec.org) the readers here look at.
mod kind {
    pub const DOUBLE: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const DOCUMENT: u8 = 0x03;
    pub const ARRAY: u8 = 0x04;
    pub const OBJECT_ID: u8 = 0x07;
    pub const BOOLEAN: u8 = 0x08;
    pub const INT32: u8 = 0x10;
    pub const INT64: u8 = 0x12;
}

/// One element: its type byte, key bytes and value bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Element<'a> {
    pub kind: u8,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl<'a> Element<'a> {
    /// A UTF-8 string value (int32 length including the NUL, bytes, NUL).
    pub fn str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.str_bytes()?).ok()
    }

    /// A string value's bytes, their UTF-8 unchecked: enough to compare it with a known
    /// name, which costs less than the check.
    pub fn str_bytes(&self) -> Option<&'a [u8]> {
        if self.kind != kind::STRING {
            return None;
        }
        self.value.get(4..self.value.len().checked_sub(1)?)
    }

    /// Any numeric value as f64: drivers send the same field as int32, int64 or double.
    pub fn number(&self) -> Option<f64> {
        match self.kind {
            kind::DOUBLE => Some(f64::from_le_bytes(self.value.try_into().ok()?)),
            kind::INT32 => Some(i32::from_le_bytes(self.value.try_into().ok()?) as f64),
            kind::INT64 => Some(i64::from_le_bytes(self.value.try_into().ok()?) as f64),
            _ => None,
        }
    }

    /// A boolean, or a number read as one (`isMaster: 1`).
    pub fn truthy(&self) -> Option<bool> {
        match self.kind {
            kind::BOOLEAN => Some(*self.value.first()? != 0),
            _ => self.number().map(|n| n != 0.0),
        }
    }

    /// A sub-document: whole, or, as the last element of a truncated document, its
    /// captured start ([`Doc::truncated`]).
    pub fn doc(&self) -> Option<Doc<'a>> {
        if self.kind != kind::DOCUMENT {
            return None;
        }
        Doc::from_bytes(self.value)
            .or_else(|| (int32_at(self.value, 0)? > self.value.len()).then_some(Doc(self.value)))
    }

    pub fn array(&self) -> Option<Doc<'a>> {
        (self.kind == kind::ARRAY).then(|| Doc::from_bytes(self.value))?
    }

    pub fn object_id(&self) -> Option<[u8; 12]> {
        (self.kind == kind::OBJECT_ID).then(|| self.value.try_into().ok())?
    }
}

/// The elements of a document, in order; ends at the first element that does not fit.
/// Of a truncated document, a sub-document cut short is the last element, so that the
/// fields it begins with can still be read (a cut handshake's `client.driver`).
#[derive(Clone, Debug)]
pub struct Elements<'a> {
    rest: &'a [u8],
    truncated: bool,
}

impl<'a> Iterator for Elements<'a> {
    type Item = Element<'a>;

    fn next(&mut self) -> Option<Element<'a>> {
        let parsed = split_element(self.rest);
        match parsed {
            Some((element, rest)) => {
                self.rest = rest;
                Some(element)
            }
            None => {
                let cut = if self.truncated {
                    cut_sub_document(self.rest)
                } else {
                    None
                };
                self.rest = &[];
                cut
            }
        }
    }
}

/// A sub-document whose end the bytes do not reach: its type, key and captured start.
fn cut_sub_document(input: &[u8]) -> Option<Element<'_>> {
    let (kind, key, value) = split_head(input)?;
    (kind == kind::DOCUMENT && value.len() >= 4).then_some(Element { kind, key, value })
}

/// An element's type byte, its key, and the bytes after the key (its value, then the
/// elements that follow).
fn split_head(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&kind, after_kind) = input.split_first()?;
    let nul = nul_at(after_kind)?;
    Some((kind, &after_kind[..nul], &after_kind[nul + 1..]))
}

/// Where the first NUL is: the end of a key. Eight bytes at a time, by hand: every key of
/// every document walked ends here (4 M keys on the bench capture), and a byte-by-byte
/// search was a twentieth of the run. Keys are 4 to 20 bytes, shorter than what `memchr`
/// sets its vector search up for; below eight bytes both go byte by byte.
#[inline]
fn nul_at(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let mut at = 0;
    while let Some(&word) = bytes.get(at..).and_then(|rest| rest.first_chunk::<8>()) {
        let word = u64::from_le_bytes(word);
        // The lowest byte flagged is the first zero byte (a borrow can only flag bytes
        // above a zero one).
        let zeros = word.wrapping_sub(ONES) & !word & HIGHS;
        if zeros != 0 {
            return Some(at + zeros.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    let tail = bytes.get(at..)?;
    tail.iter().position(|&b| b == 0).map(|i| at + i)
}

fn split_element(input: &[u8]) -> Option<(Element<'_>, &[u8])> {
    let (kind, key, body) = split_head(input)?;
    let len = value_len(kind, body)?;
    let (value, rest) = body.split_at_checked(len)?;
    Some((Element { kind, key, value }, rest))
}

fn int32_at(body: &[u8], at: usize) -> Option<usize> {
    let n = i32::from_le_bytes(body.get(at..at + 4)?.try_into().ok()?);
    usize::try_from(n).ok()
}

/// How many bytes a value of `kind` takes at the start of `body` (bsonspec.org, 1.1).
fn value_len(kind: u8, body: &[u8]) -> Option<usize> {
    Some(match kind {
        0x06 | 0x0A | 0xFF | 0x7F => 0, // undefined, null, min key, max key
        kind::BOOLEAN => 1,
        kind::INT32 => 4,
        kind::DOUBLE | 0x09 | 0x11 | kind::INT64 => 8, // double, datetime, timestamp, int64
        kind::OBJECT_ID => 12,
        0x13 => 16, // decimal128
        // string, JavaScript code, symbol: int32 length (with the NUL), then the bytes.
        kind::STRING | 0x0D | 0x0E => 4 + int32_at(body, 0)?,
        // document, array, code with scope: the int32 covers the whole value.
        kind::DOCUMENT | kind::ARRAY | 0x0F => int32_at(body, 0)?.max(4),
        0x05 => 5 + int32_at(body, 0)?, // binary: length, subtype, bytes
        0x0B => {
            // regex: pattern and options, two C strings.
            let first = body.iter().position(|&b| b == 0)? + 1;
            first + body[first..].iter().position(|&b| b == 0)? + 1
        }
        0x0C => 4 + int32_at(body, 0)? + 12, // DBPointer: string, ObjectId
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{rawdoc, RawDocumentBuf};

    fn doc(d: &RawDocumentBuf) -> Doc<'_> {
        Doc::of(d)
    }

    #[test]
    fn walks_every_bson_type_like_the_bson_crate() {
        let d = rawdoc! {
            "d": 1.5, "s": "héllo", "doc": { "a": 1i32 }, "arr": ["x", 2i32, "y"],
            "bin": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![1, 2, 3] },
            "oid": bson::oid::ObjectId::from_bytes([9; 12]), "t": true, "dt": bson::DateTime::from_millis(5),
            "null": bson::RawBson::Null, "re": bson::Regex { pattern: "a.b".try_into().unwrap(), options: "i".try_into().unwrap() },
            "i": 7i32, "ts": bson::Timestamp { time: 1, increment: 2 }, "l": -3i64,
            "dec": bson::Decimal128::from_bytes([0; 16]), "min": bson::RawBson::MinKey,
            "max": bson::RawBson::MaxKey, "last": "end",
        };
        let ours: Vec<&[u8]> = doc(&d).elements().map(|e| e.key).collect();
        let theirs: Vec<String> = d.iter().map(|e| e.unwrap().0.to_string()).collect();
        assert_eq!(ours.len(), theirs.len());
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(*a, b.as_bytes());
        }
        let doc = doc(&d);
        assert_eq!(doc.get("d").unwrap().number(), Some(1.5));
        assert_eq!(doc.get_str("s"), Some("héllo"));
        assert_eq!(
            doc.get_doc("doc").unwrap().get("a").unwrap().number(),
            Some(1.0)
        );
        let arr: Vec<&str> = doc.get("arr").unwrap().array().unwrap().strings().collect();
        assert_eq!(arr, ["x", "y"]);
        assert_eq!(doc.get("oid").unwrap().object_id(), Some([9; 12]));
        assert_eq!(doc.get("t").unwrap().truthy(), Some(true));
        assert_eq!(doc.get("i").unwrap().truthy(), Some(true));
        assert_eq!(doc.get("l").unwrap().number(), Some(-3.0));
        assert_eq!(doc.get_str("last"), Some("end"));
        assert_eq!(doc.first_key(), Some("d"));
        assert!(doc.get("s").unwrap().number().is_none());
        assert!(doc.get("missing").is_none());
    }

    #[test]
    fn finds_the_first_nul_wherever_it_is() {
        for len in 0..40 {
            for nul in 0..=len {
                // Bytes that set the high bit or borrow (0x01, 0x80, 0xff) around the NUL.
                let mut b: Vec<u8> = (0..len).map(|i| [0x01, 0x80, 0xff, b'a'][i % 4]).collect();
                if nul < len {
                    b[nul] = 0;
                    if nul + 1 < len {
                        b[nul + 1] = 0;
                    }
                }
                let want = b.iter().position(|&x| x == 0);
                assert_eq!(nul_at(&b), want, "len {len}, nul {nul}");
            }
        }
    }

    #[test]
    fn a_damaged_document_ends_the_walk_without_panicking() {
        let d = rawdoc! { "a": 1i32, "s": "text", "b": 2i32 };
        let bytes = d.as_bytes();
        // Every truncation and every single-byte corruption: never a panic, never an
        // element reaching past the bytes.
        for cut in 0..bytes.len() {
            let walked = Doc(&bytes[..cut]).elements().count();
            assert!(walked <= 3);
        }
        for at in 0..bytes.len() {
            for v in [0x00, 0x7f, 0xff] {
                let mut b = bytes.to_vec();
                b[at] = v;
                for e in Doc(&b).elements() {
                    let _ = (e.str(), e.number(), e.doc(), e.array());
                }
            }
        }
        // A string whose length claims more than there is.
        let mut b = bytes.to_vec();
        let s = b.windows(2).position(|w| w == b"s\0").unwrap() + 2;
        b[s..s + 4].copy_from_slice(&1000i32.to_le_bytes());
        let keys: Vec<&[u8]> = Doc(&b).elements().map(|e| e.key).collect();
        assert_eq!(keys, [b"a".as_slice()]);
        assert!(Doc::from_bytes(&b[..b.len() - 1]).is_none());
    }
}
