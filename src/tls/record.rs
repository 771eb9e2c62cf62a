//! TLS records out of one direction's reassembled bytes (RFC 8446 §5.1, RFC 5246 §6.2).
//!
//! Records that lie inside one push are handed out straight from the caller's slice; only
//! a record that spans pushes is copied, into a buffer that never holds more than one
//! record (header + at most 2^14 + 2048 bytes, the TLS 1.2 ciphertext limit).
//!
//! A capture that lost packets loses bytes of a record, not the stream: a gap inside a
//! record's body keeps the boundaries (the header said where the record ends), and a gap
//! over a header, or a header that makes no sense, makes the reader *hunt* for the next
//! plausible header, as the wire framer does for MongoDB messages.

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
    /// The rest of a record a gap cut: skipped when it comes.
    skip: usize,
    /// Record boundaries were lost: scanning for a plausible header.
    hunting: bool,
}

/// What a gap did to the record being read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GapOutcome {
    /// The record the gap cut into, when its header had been read: (type, body length).
    pub cut: Option<(u8, usize)>,
    /// Record boundaries are still known: the gap ended inside, or at the end of, the
    /// record it cut. Otherwise records may have been lost whole and the reader hunts.
    pub in_sync: bool,
}

/// Whether a record header plausibly starts at `at`: a known type, a TLS record version,
/// a length within the limit, and the next header (when `data` holds it) plausible too or
/// the record ending exactly where `data` ends. Ciphertext looks random, so a false match
/// needs three fixed bytes by chance and survives the next header's check only rarely.
fn plausible_header_at(data: &[u8], at: usize) -> bool {
    let Some(h) = data.get(at..at + HEADER_LEN) else {
        return false;
    };
    let one = |h: &[u8]| (21..=23).contains(&h[0]) && h[1] == 3 && (1..=3).contains(&h[2]);
    let len = u16::from_be_bytes([h[3], h[4]]) as usize;
    if !one(h) || len > MAX_BODY {
        return false;
    }
    let next = at + HEADER_LEN + len;
    match data.get(next..) {
        None | Some([]) => true,
        Some(rest) if rest.len() >= 3 => one(rest),
        Some(_) => true,
    }
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
    /// A header that makes no sense is returned as the error, after the reader has
    /// hunted on through `data` (and goes on hunting in later pushes) for the next one.
    pub fn push(
        &mut self,
        mut data: &[u8],
        mut f: impl FnMut(Record<'_>),
    ) -> Result<(), BadRecord> {
        let mut first_bad = None;
        loop {
            match self.push_in_sync(data, &mut f) {
                Ok(()) => break,
                Err((bad, at)) => {
                    first_bad.get_or_insert(bad);
                    self.hunting = true;
                    // Past the bad header's first byte: hunt in the rest.
                    data = &data[(at + 1).min(data.len())..];
                    self.offset += 1;
                }
            }
        }
        match first_bad {
            Some(bad) => Err(bad),
            None => Ok(()),
        }
    }

    /// `lost` bytes of the direction were not captured.
    pub fn gap(&mut self, lost: u64) -> GapOutcome {
        self.offset += lost;
        let lost = usize::try_from(lost).unwrap_or(usize::MAX);
        let mut outcome = GapOutcome::default();
        let remaining = if self.hunting {
            None
        } else if self.skip > 0 {
            Some(self.skip)
        } else if self.partial.len() >= HEADER_LEN {
            let header: [u8; HEADER_LEN] = self.partial[..HEADER_LEN].try_into().expect("5");
            let len = u16::from_be_bytes([header[3], header[4]]) as usize;
            outcome.cut = Some((header[0], len));
            Some(HEADER_LEN + len - self.partial.len())
        } else {
            None // at a record boundary or inside a header: the next header is lost
        };
        self.partial.clear();
        self.skip = 0;
        match remaining {
            Some(remaining) if lost <= remaining => {
                self.skip = remaining - lost;
                outcome.in_sync = true;
            }
            _ => self.hunting = true,
        }
        outcome
    }

    /// Records of `data` from a known boundary; on a bad header, the error and where it
    /// starts in `data`.
    fn push_in_sync(
        &mut self,
        mut data: &[u8],
        f: &mut impl FnMut(Record<'_>),
    ) -> Result<(), (BadRecord, usize)> {
        let whole = data.len();
        if self.skip > 0 {
            let n = self.skip.min(data.len());
            self.skip -= n;
            self.offset += n as u64;
            data = &data[n..];
        }
        if self.hunting {
            match (0..data.len()).find(|&at| plausible_header_at(data, at)) {
                Some(at) => {
                    self.hunting = false;
                    self.offset += at as u64;
                    data = &data[at..];
                }
                None => {
                    self.offset += data.len() as u64;
                    return Ok(());
                }
            }
        }
        let at = |data: &[u8]| whole - data.len();
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
            let total = match body_len(&header, self.offset) {
                Ok(len) => HEADER_LEN + len,
                Err(bad) => {
                    // The header straddled pushes: hunt from this push's start.
                    self.partial.clear();
                    return Err((bad, at(data).saturating_sub(1)));
                }
            };
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
            let total = HEADER_LEN + body_len(&header, self.offset).map_err(|b| (b, at(data)))?;
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
    fn a_gap_inside_a_body_keeps_the_boundaries_and_one_over_a_header_hunts() {
        let mut stream = record(23, &[1; 200]);
        stream.extend(record(23, &[2; 50]));
        stream.extend(record(23, &[3; 80]));
        // Lost: bytes 20..120 of the first record's body.
        let mut reader = RecordReader::default();
        assert!(collect(&mut reader, &stream[..25]).unwrap().is_empty());
        let gap = reader.gap(100);
        assert_eq!(
            gap,
            GapOutcome {
                cut: Some((23, 200)),
                in_sync: true
            }
        );
        let got = collect(&mut reader, &stream[125..]).unwrap();
        assert_eq!(got, vec![(23, vec![2; 50]), (23, vec![3; 80])]);

        // Lost: the whole second record and the third's header. The reader hunts and,
        // ciphertext being random, finds nothing in the rest of the third record; the
        // next push starts with a header.
        let mut reader = RecordReader::default();
        assert_eq!(collect(&mut reader, &stream[..205]).unwrap().len(), 1);
        let gap = reader.gap(55 + 5);
        assert_eq!(
            gap,
            GapOutcome {
                cut: None,
                in_sync: false
            }
        );
        assert!(collect(&mut reader, &stream[265..]).unwrap().is_empty());
        let got = collect(&mut reader, &record(23, &[4; 10])).unwrap();
        assert_eq!(got, vec![(23, vec![4; 10])]);

        // Lost mid-way through a push: the records behind the gap in the same push are
        // found (a header whose successor is a header too).
        let mut reader = RecordReader::default();
        reader.gap(7);
        let mut after = vec![0x55; 13];
        after.extend(&stream);
        assert_eq!(collect(&mut reader, &after).unwrap().len(), 3);
    }

    #[test]
    fn a_bad_header_is_named_and_the_reader_hunts_past_it() {
        let mut s = record(23, b"one");
        s.extend([0x3a, 0x01, 0, 0, 0x01, 0, 0, 0]); // a MongoDB header
        s.extend(record(23, b"two"));
        let mut out = Vec::new();
        let mut reader = RecordReader::default();
        let err = reader.push(&s, |r| out.push(r.body.to_vec())).unwrap_err();
        assert_eq!(err.offset, 8);
        assert_eq!(out, vec![b"one".to_vec(), b"two".to_vec()]);
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
