//! TLS records out of one direction's reassembled bytes (RFC 8446 §5.1, RFC 5246 §6.2).
//!
//! Records that lie inside one push are handed out straight from the caller's slice; only
//! a record that spans pushes is copied, into a buffer that never holds more than one
//! record (header + at most 2^14 + 2048 bytes, the TLS 1.2 ciphertext limit).

/// The largest record body any TLS version allows (TLSCiphertext, RFC 5246 §6.2.3).
pub const MAX_BODY: usize = (1 << 14) + 2048;
pub const HEADER_LEN: usize = 5;

/// One record: its header bytes (the AEAD's additional data needs them) and body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub header: [u8; HEADER_LEN],
    pub body: &'a [u8],
}

impl Record<'_> {
    pub fn kind(&self) -> u8 {
        self.header[0]
    }
}

/// Bytes that cannot be a record header; the direction cannot be followed further.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a TLS record header at TLS stream byte {offset} (type {kind}, version {version:#06x}, length {len})")]
pub struct BadRecord {
    pub offset: u64,
    pub kind: u8,
    pub version: u16,
    pub len: usize,
}

/// Splits one direction's bytes into records.
#[derive(Debug, Default)]
pub struct RecordReader {
    partial: Vec<u8>,
    /// Stream bytes consumed so far (for messages).
    offset: u64,
}

/// The body length of a valid header, read with `tls-parser`.
fn body_len(header: &[u8; HEADER_LEN], offset: u64) -> Result<usize, BadRecord> {
    let (_, h) = tls_parser::parse_tls_record_header(header).map_err(|_| BadRecord {
        offset,
        kind: header[0],
        version: 0,
        len: 0,
    })?;
    let (kind, version, len) = (h.record_type.0, h.version.0, h.len as usize);
    if !(20..=24).contains(&kind) || version >> 8 != 3 || len > MAX_BODY {
        return Err(BadRecord {
            offset,
            kind,
            version,
            len,
        });
    }
    Ok(len)
}

impl RecordReader {
    /// Hand every complete record in `data` (after what earlier pushes left) to `f`.
    pub fn push(
        &mut self,
        mut data: &[u8],
        mut f: impl FnMut(Record<'_>),
    ) -> Result<(), BadRecord> {
        if !self.partial.is_empty() {
            if self.partial.len() < HEADER_LEN {
                let take = (HEADER_LEN - self.partial.len()).min(data.len());
                self.partial.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.partial.len() < HEADER_LEN {
                    return Ok(());
                }
            }
            let header: [u8; HEADER_LEN] = self.partial[..HEADER_LEN].try_into().expect("5");
            let total = HEADER_LEN + body_len(&header, self.offset)?;
            let take = (total - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() < total {
                return Ok(());
            }
            f(Record {
                header,
                body: &self.partial[HEADER_LEN..],
            });
            self.offset += total as u64;
            self.partial.clear();
        }
        while data.len() >= HEADER_LEN {
            let header: [u8; HEADER_LEN] = data[..HEADER_LEN].try_into().expect("5");
            let total = HEADER_LEN + body_len(&header, self.offset)?;
            if data.len() < total {
                break;
            }
            f(Record {
                header,
                body: &data[HEADER_LEN..total],
            });
            self.offset += total as u64;
            data = &data[total..];
        }
        self.partial.extend_from_slice(data);
        Ok(())
    }

    /// Bytes waiting for the rest of their record.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![kind, 3, 3];
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    fn collect(reader: &mut RecordReader, data: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, BadRecord> {
        let mut out = Vec::new();
        reader.push(data, |r| out.push((r.kind(), r.body.to_vec())))?;
        Ok(out)
    }

    #[test]
    fn records_split_anywhere_come_out_whole() {
        let mut stream = record(23, b"hello");
        stream.extend(record(21, b"\x01\x00"));
        stream.extend(record(23, &[9; 300]));
        for cut in 0..stream.len() {
            let mut reader = RecordReader::default();
            let mut got = collect(&mut reader, &stream[..cut]).unwrap();
            got.extend(collect(&mut reader, &stream[cut..]).unwrap());
            assert_eq!(got.len(), 3, "cut at {cut}");
            assert_eq!(got[0], (23, b"hello".to_vec()));
            assert_eq!(got[2].1.len(), 300);
            assert_eq!(reader.pending(), 0);
        }
        // One byte at a time.
        let mut reader = RecordReader::default();
        let n: usize = stream
            .iter()
            .map(|b| collect(&mut reader, &[*b]).unwrap().len())
            .sum();
        assert_eq!(n, 3);
    }

    #[test]
    fn bad_headers_are_errors_not_panics() {
        // A MongoDB message header is not a TLS record.
        let mongo = [0x3a, 0x01, 0, 0, 0x01, 0, 0, 0];
        let err = collect(&mut RecordReader::default(), &mongo).unwrap_err();
        assert_eq!(err.offset, 0);
        // Length beyond the TLS limit.
        let mut big = vec![23, 3, 3, 0xff, 0xff];
        big.extend([0; 10]);
        assert!(collect(&mut RecordReader::default(), &big).is_err());
        // A good record, then garbage: the error names the stream offset.
        let mut s = record(22, b"abc");
        s.extend([1, 2, 3, 4, 5, 6]);
        let mut reader = RecordReader::default();
        let err = reader.push(&s, |_| {}).unwrap_err();
        assert_eq!(err.offset, 8);
    }
}
