//! Offline captures: pcap (both byte orders, µs and ns) and pcapng (several sections and
//! interfaces), from a file or from stdin.
//!
//! Reading is delegated to `pcap-parser`'s streaming readers, which parse straight out of
//! one fixed read buffer: memory does not depend on the size of the file, and a packet is
//! borrowed from that buffer until the next call. This module adds what the crate leaves to
//! its caller: the refill/grow loop with a hard cap (so a garbage record length cannot make
//! us allocate gigabytes), per-interface link types and timestamp resolutions for pcapng,
//! and error messages that name the file and the byte offset.

use std::fs::File;
use std::io::{self, Read};

use pcap_parser::pcapng::Block;
use pcap_parser::traits::{PcapNGPacketBlock, PcapReaderIterator};
use pcap_parser::{PcapBlockOwned, PcapError};

use super::{CaptureError, LinkType, Packet, PacketSource, SourceStats, Timestamp};

/// Where packet bytes start in a pcapng Enhanced Packet Block (type, length, interface id,
/// timestamp high and low, captured and original lengths) and a Simple Packet Block (type,
/// length, original length).
const EPB_DATA: usize = 28;
const SPB_DATA: usize = 12;

/// Initial read buffer: large reads keep syscalls and buffer shifts rare.
const READ_BUFFER: usize = 1 << 20;
/// The largest record we accept. Real snap lengths stop at 256 KiB; pcapng blocks of a
/// few MiB exist (e.g. jumbo frames with options). Anything larger is a damaged length field.
pub const MAX_RECORD: usize = 64 << 20;
/// Bytes read before handing the stream to pcap-parser, which recognises the format from
/// its first read alone: enough for any real pcapng section header with its options.
const PEEK: usize = 64 << 10;

/// One pcapng interface (IDB): what its packets need to be decoded.
#[derive(Clone, Copy, Debug)]
struct Interface {
    link: LinkType,
    /// Timestamp units per second (10^6 unless `if_tsresol` says otherwise).
    units_per_sec: u64,
    offset_secs: i64,
}

impl Interface {
    /// A legacy pcap record's timestamp: seconds, and a fraction in this file's units.
    fn legacy_timestamp(&self, secs: u32, frac: u32) -> Timestamp {
        Timestamp::from_parts(secs as i64, scale_to_nanos(frac as u64, self.units_per_sec))
    }

    /// An Enhanced Packet Block's timestamp: one 64-bit count of this interface's units.
    fn block_timestamp(&self, high: u32, low: u32) -> Timestamp {
        let raw = ((high as u64) << 32) | low as u64;
        Timestamp::from_parts(
            (raw / self.units_per_sec) as i64 + self.offset_secs,
            scale_to_nanos(raw % self.units_per_sec, self.units_per_sec),
        )
    }
}

pub struct FileSource {
    name: String,
    reader: Box<dyn PcapReaderIterator + Send>,
    /// Bytes of the last block handed out, consumed on the next call (the packet borrows them).
    pending_consume: usize,
    /// Legacy pcap: one link type and resolution for the whole file.
    legacy: Option<Interface>,
    /// Legacy pcap: bytes before a record's packet data.
    record_header: usize,
    /// Byte order of the legacy file or the current pcapng section.
    big_endian: bool,
    interfaces: Vec<Interface>,
    stats: SourceStats,
    notes: Vec<String>,
    finished: bool,
}

impl FileSource {
    /// Open a capture file, or standard input when `path` is "-".
    pub fn open(path: &str) -> Result<FileSource, CaptureError> {
        let reader: Box<dyn Read + Send> = if path == "-" {
            Box::new(io::stdin())
        } else {
            let file = File::open(path).map_err(|source| CaptureError::Open {
                path: path.to_string(),
                source,
            })?;
            Box::new(file)
        };
        FileSource::from_reader(path, reader)
    }

    /// Read a capture from any byte stream; `name` is used in messages.
    pub fn from_reader(
        name: &str,
        mut reader: Box<dyn Read + Send>,
    ) -> Result<FileSource, CaptureError> {
        // pcap-parser recognises the format from its first read; peek enough bytes first
        // so a short first read (a pipe) does not make a valid capture look unrecognised.
        let mut head = Vec::with_capacity(PEEK);
        (&mut reader)
            .take(PEEK as u64)
            .read_to_end(&mut head)
            .map_err(|source| CaptureError::Open {
                path: name.to_string(),
                source,
            })?;
        if head.is_empty() {
            return Err(CaptureError::Empty {
                path: name.to_string(),
            });
        }
        let magic = head
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        let chained = Box::new(io::Cursor::new(head).chain(reader));
        let reader = pcap_parser::create_reader(READ_BUFFER, chained).map_err(|_| {
            CaptureError::NotACapture {
                path: name.to_string(),
                magic,
            }
        })?;
        Ok(FileSource {
            name: name.to_string(),
            reader,
            pending_consume: 0,
            legacy: None,
            record_header: 16,
            big_endian: false,
            interfaces: Vec::new(),
            stats: SourceStats::default(),
            notes: Vec::new(),
            finished: false,
        })
    }

    fn offset(&self) -> u64 {
        self.reader.consumed() as u64
    }

    fn fail(&mut self, err: CaptureError) -> Result<Option<Record>, CaptureError> {
        self.finished = true;
        Err(err)
    }
}

/// Where the next packet is in the read buffer, and what the slicer needs to know of it.
struct Record {
    ts: Timestamp,
    link: LinkType,
    orig_len: u32,
    data: std::ops::Range<usize>,
}

impl FileSource {
    fn packet_of(&self, record: Record) -> Packet<'_> {
        Packet {
            ts: record.ts,
            link: record.link,
            data: self.reader.data().get(record.data).unwrap_or(&[]),
            orig_len: record.orig_len,
        }
    }

    /// The pcapng Enhanced Packet Block at the start of the unread buffer, with its
    /// length, when it has no options and is wholly in the buffer. Everything else is left
    /// to pcap-parser. (Legacy pcap records: [`FileSource::next_plain_legacy`].)
    ///
    /// Why by hand: the crate's general block parser (options list, nom plumbing, the
    /// reader's bookkeeping) cost ~600 instructions a packet, a sixth of the whole
    /// pipeline's; these records are a few fixed fields. It accepts only what the crate
    /// accepts too, so results and errors do not change.
    fn plain_block(&self) -> Option<(usize, Record)> {
        if self.legacy.is_some() {
            return None;
        }
        let rest = self.reader.data();
        let u32_at = |offset: usize| -> Option<u32> {
            let bytes: [u8; 4] = rest.get(offset..offset + 4)?.try_into().ok()?;
            Some(if self.big_endian {
                u32::from_be_bytes(bytes)
            } else {
                u32::from_le_bytes(bytes)
            })
        };
        // An Enhanced Packet Block (type 6): type, length, interface, timestamp high and
        // low, captured and original length, data padded to 32 bits, the length again.
        if u32_at(0)? != 6 {
            return None;
        }
        let len = u32_at(4)? as usize;
        let caplen = u32_at(20)?;
        let padded = (caplen as usize).checked_add(3)? & !3;
        if len != EPB_DATA.checked_add(padded)?.checked_add(4)?
            || u32_at(len - 4)? as usize != len
            || rest.len() < len
        {
            return None;
        }
        let iface = *self.interfaces.get(u32_at(8)? as usize)?;
        let record = Record {
            ts: iface.block_timestamp(u32_at(12)?, u32_at(16)?),
            link: iface.link,
            orig_len: u32_at(24)?,
            data: EPB_DATA..EPB_DATA + caplen as usize,
        };
        Some((len, record))
    }

    /// The next record when it is a legacy pcap record wholly in the buffer, as nearly
    /// every one is: the previous record consumed and this one read with one look at the
    /// buffer, then taken. The general path ([`FileSource::next_record`]) took ~130
    /// instructions a packet, a third of them in calls through the reader's trait object.
    fn next_plain_legacy(&mut self) -> Option<Record> {
        let iface = self
            .legacy
            .filter(|_| self.record_header == 16 && !self.finished)?;
        self.consume_taken();
        let rest = self.reader.data();
        let head: &[u8; 16] = rest.get(..16)?.try_into().ok()?;
        let field = |at: usize| {
            let bytes = [head[at], head[at + 1], head[at + 2], head[at + 3]];
            if self.big_endian {
                u32::from_be_bytes(bytes)
            } else {
                u32::from_le_bytes(bytes)
            }
        };
        let caplen = field(8) as usize;
        if rest.len() - 16 < caplen {
            return None;
        }
        let record = Record {
            ts: iface.legacy_timestamp(field(0), field(4)),
            link: iface.link,
            orig_len: field(12),
            data: 16..16 + caplen,
        };
        Some(self.take(16 + caplen, record))
    }

    /// Consume the record handed out last, which its packet borrowed until now. Not
    /// `consume`, which moves the unread bytes to the front of the buffer each time half
    /// of it has been read, copying the capture a second time; `refill` moves them once,
    /// when the buffer runs out.
    fn consume_taken(&mut self) {
        if self.pending_consume > 0 {
            self.reader.consume_noshift(self.pending_consume);
            self.pending_consume = 0;
        }
    }

    /// Hand out a record of `len` bytes at the start of the buffer, which is consumed on
    /// the next call (the packet borrows it until then).
    fn take(&mut self, len: usize, record: Record) -> Record {
        self.pending_consume = len;
        self.stats.packets += 1;
        self.stats.bytes += len as u64;
        record
    }

    /// Advance to the next packet record, leaving its bytes in the read buffer.
    fn next_record(&mut self) -> Result<Option<Record>, CaptureError> {
        if self.finished {
            return Ok(None);
        }
        self.consume_taken();
        if let Some((len, record)) = self.plain_block() {
            return Ok(Some(self.take(len, record)));
        }
        loop {
            // Decide what to do with the block while it borrows the reader; act afterwards.
            let step = match self.reader.next() {
                Ok((len, block)) => match block {
                    PcapBlockOwned::LegacyHeader(header) => {
                        // The "modified" (Kuznetzov) format adds 8 bytes per record header.
                        self.record_header = if header.is_modified_format() { 24 } else { 16 };
                        self.big_endian = header.is_bigendian();
                        self.legacy = Some(Interface {
                            link: LinkType::from(header.network.0 as u32),
                            units_per_sec: if header.is_nanosecond_precision() {
                                1_000_000_000
                            } else {
                                1_000_000
                            },
                            offset_secs: 0,
                        });
                        Step::Skip(len)
                    }
                    PcapBlockOwned::Legacy(record) => {
                        let iface = self.legacy.unwrap_or(Interface {
                            link: LinkType::Ethernet,
                            units_per_sec: 1_000_000,
                            offset_secs: 0,
                        });
                        Step::Packet(
                            len,
                            iface.legacy_timestamp(record.ts_sec, record.ts_usec),
                            iface.link,
                            record.origlen,
                            self.record_header..self.record_header + record.data.len(),
                        )
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(shb)) => {
                        // Interface ids are per section.
                        self.interfaces.clear();
                        self.big_endian = shb.big_endian();
                        Step::Skip(len)
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        let units_per_sec = idb.ts_resolution().unwrap_or_else(|| {
                            self.notes.push(format!(
                                "interface {} has an invalid timestamp resolution; assuming microseconds",
                                self.interfaces.len()
                            ));
                            1_000_000
                        });
                        self.interfaces.push(Interface {
                            link: LinkType::from(idb.linktype.0 as u32),
                            units_per_sec: units_per_sec.max(1),
                            offset_secs: idb.ts_offset(),
                        });
                        Step::Skip(len)
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        match self.interfaces.get(epb.if_id as usize) {
                            Some(iface) => {
                                // Block data includes 32-bit padding; the captured length bounds it.
                                let caplen = (epb.caplen as usize).min(epb.data.len());
                                Step::Packet(
                                    len,
                                    iface.block_timestamp(epb.ts_high, epb.ts_low),
                                    iface.link,
                                    epb.orig_len(),
                                    EPB_DATA..EPB_DATA + caplen,
                                )
                            }
                            None => Step::Orphan(len, epb.if_id),
                        }
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => match self.interfaces.first() {
                        // Simple packets carry no timestamp and belong to interface 0.
                        Some(iface) => {
                            let caplen = (spb.origlen as usize).min(spb.data.len());
                            Step::Packet(
                                len,
                                Timestamp(0),
                                iface.link,
                                spb.origlen,
                                SPB_DATA..SPB_DATA + caplen,
                            )
                        }
                        None => Step::Orphan(len, 0),
                    },
                    PcapBlockOwned::NG(_) => Step::Skip(len),
                },
                Err(PcapError::Eof) => Step::End,
                Err(PcapError::Incomplete(_)) => Step::Refill,
                Err(PcapError::BufferTooSmall) => Step::Grow,
                Err(PcapError::UnexpectedEof) => Step::Truncated,
                Err(PcapError::ReadError) => Step::ReadError,
                Err(other) => Step::Corrupt(format!("{other:?}").chars().take(80).collect()),
            };
            match step {
                Step::Skip(len) => self.reader.consume_noshift(len),
                Step::Orphan(len, if_id) => {
                    self.notes.push(format!(
                        "packet at byte {} names interface {if_id}, which was never described; skipped",
                        self.offset()
                    ));
                    self.reader.consume_noshift(len);
                }
                Step::Packet(len, ts, link, orig_len, range) => {
                    // The block was parsed above; its packet bytes sit at a fixed offset
                    // from the block's start, which is the start of the unconsumed buffer.
                    // Slicing them later (instead of returning the parsed block's slice)
                    // keeps the borrow out of the loop without parsing the block twice.
                    let record = Record {
                        ts,
                        link,
                        orig_len,
                        data: range,
                    };
                    return Ok(Some(self.take(len, record)));
                }
                Step::End => {
                    self.finished = true;
                    return Ok(None);
                }
                Step::Refill => {
                    let before = self.reader.data().len();
                    if self.reader.refill().is_err() {
                        let offset = self.offset();
                        let path = self.name.clone();
                        return self.fail(CaptureError::Read { path, offset });
                    }
                    if self.reader.reader_exhausted() && self.reader.data().len() == before {
                        if before == 0 {
                            self.finished = true;
                            return Ok(None);
                        }
                        let offset = self.offset();
                        let path = self.name.clone();
                        return self.fail(CaptureError::Truncated { path, offset });
                    }
                }
                Step::Grow => {
                    let current = self.reader.data().len().max(READ_BUFFER);
                    let wanted = current.saturating_mul(2);
                    if wanted > MAX_RECORD || !self.reader.grow(wanted) {
                        let offset = self.offset();
                        let path = self.name.clone();
                        return self.fail(CaptureError::RecordTooLarge {
                            path,
                            offset,
                            claimed: self.claimed_record_len(),
                            limit: MAX_RECORD as u64,
                        });
                    }
                    if self.reader.refill().is_err() {
                        let offset = self.offset();
                        let path = self.name.clone();
                        return self.fail(CaptureError::Read { path, offset });
                    }
                }
                Step::Truncated => {
                    let offset = self.offset();
                    let path = self.name.clone();
                    return self.fail(CaptureError::Truncated { path, offset });
                }
                Step::ReadError => {
                    let offset = self.offset();
                    let path = self.name.clone();
                    return self.fail(CaptureError::Read { path, offset });
                }
                Step::Corrupt(reason) => {
                    let offset = self.offset();
                    let path = self.name.clone();
                    return self.fail(CaptureError::Corrupt {
                        path,
                        offset,
                        reason,
                    });
                }
            }
        }
    }
}

impl PacketSource for FileSource {
    fn next_packet(&mut self) -> Result<Option<Packet<'_>>, CaptureError> {
        if let Some(record) = self.next_plain_legacy() {
            return Ok(Some(self.packet_of(record)));
        }
        Ok(self.next_record()?.map(|record| self.packet_of(record)))
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }
}

impl FileSource {
    /// The length field of the record that did not fit, for the error message.
    fn claimed_record_len(&self) -> u64 {
        let data = self.reader.data();
        match self.legacy {
            // pcap record header: ts_sec, ts_frac, caplen, origlen. The byte order is the
            // file's; the smaller reading is the plausible one to show.
            Some(_) if data.len() >= 12 => {
                let bytes = [data[8], data[9], data[10], data[11]];
                u32::from_le_bytes(bytes).min(u32::from_be_bytes(bytes)) as u64
            }
            None if data.len() >= 8 => {
                let bytes = [data[4], data[5], data[6], data[7]];
                u32::from_le_bytes(bytes).min(u32::from_be_bytes(bytes)) as u64
            }
            _ => 0,
        }
    }
}

enum Step {
    Skip(usize),
    Orphan(usize, u32),
    /// Block length, timestamp, link type, original length, packet bytes in the block.
    Packet(usize, Timestamp, LinkType, u32, std::ops::Range<usize>),
    End,
    Refill,
    Grow,
    Truncated,
    ReadError,
    Corrupt(String),
}

fn scale_to_nanos(frac: u64, units_per_sec: u64) -> i64 {
    if units_per_sec == 1_000_000_000 {
        frac as i64
    } else if units_per_sec == 1_000_000 {
        (frac * 1000) as i64
    } else {
        ((frac as u128 * 1_000_000_000u128) / units_per_sec as u128) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A legacy pcap header (little-endian, µs) followed by `records`.
    fn pcap(link: u32, nanos: bool, big_endian: bool, records: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let w32 = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let w16 = |v: u16| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut out = Vec::new();
        out.extend(w32(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
        out.extend(w16(2));
        out.extend(w16(4));
        out.extend(w32(0));
        out.extend(w32(0));
        out.extend(w32(65535));
        out.extend(w32(link));
        for (sec, frac, data) in records {
            out.extend(w32(*sec));
            out.extend(w32(*frac));
            out.extend(w32(data.len() as u32));
            out.extend(w32(data.len() as u32));
            out.extend_from_slice(data);
        }
        out
    }

    type Read = (Vec<(Timestamp, LinkType, Vec<u8>)>, Option<CaptureError>);

    fn read_all(bytes: Vec<u8>) -> Read {
        read_from(Box::new(io::Cursor::new(bytes)))
    }

    fn read_from(reader: Box<dyn io::Read + Send>) -> Read {
        let mut src = FileSource::from_reader("test.pcap", reader).expect("opens");
        let mut out = Vec::new();
        loop {
            match src.next_packet() {
                Ok(Some(p)) => out.push((p.ts, p.link, p.data.to_vec())),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn reads_both_byte_orders_and_resolutions() {
        for big_endian in [false, true] {
            for nanos in [false, true] {
                let frac = if nanos { 123_456_789 } else { 123_456 };
                let bytes = pcap(
                    1,
                    nanos,
                    big_endian,
                    &[(1_700_000_000, frac, b"abc"), (1_700_000_001, 0, b"de")],
                );
                let (packets, err) = read_all(bytes);
                assert!(err.is_none(), "{err:?}");
                assert_eq!(packets.len(), 2);
                assert_eq!(packets[0].1, LinkType::Ethernet);
                assert_eq!(packets[0].2, b"abc");
                let expect = if nanos {
                    1_700_000_000_123_456_789
                } else {
                    1_700_000_000_123_456_000
                };
                assert_eq!(
                    packets[0].0,
                    Timestamp(expect),
                    "be={big_endian} ns={nanos}"
                );
                assert_eq!(packets[1].2, b"de");
            }
        }
    }

    #[test]
    fn truncated_record_keeps_earlier_packets() {
        let mut bytes = pcap(1, false, false, &[(1, 0, &[7u8; 40]), (2, 0, &[8u8; 40])]);
        bytes.truncate(bytes.len() - 10);
        let (packets, err) = read_all(bytes);
        assert_eq!(packets.len(), 1);
        let err = err.expect("truncation is reported");
        assert!(matches!(err, CaptureError::Truncated { .. }), "{err}");
        assert!(err.is_partial());
        assert!(err.to_string().contains("test.pcap"));
    }

    #[test]
    fn garbage_record_length_is_refused_without_allocating_it() {
        let mut bytes = pcap(1, false, false, &[(1, 0, &[7u8; 40])]);
        // A record claiming 2 GB.
        bytes.extend(2u32.to_le_bytes());
        bytes.extend(0u32.to_le_bytes());
        bytes.extend(0x7fff_ffffu32.to_le_bytes());
        bytes.extend(0x7fff_ffffu32.to_le_bytes());
        bytes.extend([0u8; 100]);
        let (packets, err) = read_all(bytes);
        assert_eq!(packets.len(), 1);
        let err = err.expect("reported");
        assert!(
            matches!(
                err,
                CaptureError::RecordTooLarge { .. } | CaptureError::Truncated { .. }
            ),
            "{err}"
        );
    }

    #[test]
    fn not_a_capture_names_the_magic() {
        let err = FileSource::from_reader(
            "x",
            Box::new(io::Cursor::new(b"hello world, not pcap".to_vec())),
        )
        .err()
        .expect("refused");
        assert!(matches!(err, CaptureError::NotACapture { .. }));
        assert!(err.to_string().contains("68 65 6c 6c"), "{err}");
        let err = FileSource::from_reader("x", Box::new(io::Cursor::new(Vec::new())))
            .err()
            .unwrap();
        assert!(matches!(err, CaptureError::Empty { .. }));
    }

    #[test]
    fn unknown_link_type_is_data() {
        let bytes = pcap(147, false, false, &[(1, 0, b"zz")]);
        let (packets, err) = read_all(bytes);
        assert!(err.is_none());
        assert_eq!(packets[0].1, LinkType::Unknown(147));
    }

    /// A little-endian pcapng block.
    fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let padded = body.len().div_ceil(4) * 4;
        let total = 12 + padded as u32;
        let mut b = Vec::new();
        b.extend(kind.to_le_bytes());
        b.extend(total.to_le_bytes());
        b.extend_from_slice(body);
        b.resize(8 + padded, 0);
        b.extend(total.to_le_bytes());
        b
    }

    fn section_header() -> Vec<u8> {
        let mut shb = Vec::new();
        shb.extend(0x1a2b_3c4du32.to_le_bytes());
        shb.extend(1u16.to_le_bytes());
        shb.extend(0u16.to_le_bytes());
        shb.extend((-1i64).to_le_bytes());
        block(0x0A0D_0D0A, &shb)
    }

    /// An interface description; `tsresol` 9 means nanoseconds.
    fn interface(linktype: u16, tsresol: Option<u8>) -> Vec<u8> {
        let mut idb = Vec::new();
        idb.extend(linktype.to_le_bytes());
        idb.extend(0u16.to_le_bytes());
        idb.extend(65535u32.to_le_bytes());
        if let Some(r) = tsresol {
            idb.extend(9u16.to_le_bytes());
            idb.extend(1u16.to_le_bytes());
            idb.extend([r, 0, 0, 0]);
            idb.extend([0u8; 4]);
        }
        block(1, &idb)
    }

    fn enhanced_packet(if_id: u32, ts: u64, data: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(if_id.to_le_bytes());
        b.extend(((ts >> 32) as u32).to_le_bytes());
        b.extend((ts as u32).to_le_bytes());
        b.extend((data.len() as u32).to_le_bytes());
        b.extend((data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
        b.resize(20 + data.len().div_ceil(4) * 4, 0);
        block(6, &b)
    }

    #[test]
    fn reads_pcapng_with_two_interfaces_and_resolutions() {
        let mut file = section_header();
        file.extend(interface(1, None));
        file.extend(interface(101, Some(9)));
        file.extend(enhanced_packet(0, 1_700_000_000_000_001, b"first"));
        file.extend(enhanced_packet(1, 1_700_000_000_000_000_002, b"second"));
        let (packets, err) = read_all(file);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(packets.len(), 2);
        assert_eq!(packets[0].1, LinkType::Ethernet);
        assert_eq!(packets[0].0, Timestamp(1_700_000_000_000_001_000));
        assert_eq!(packets[0].2, b"first");
        assert_eq!(packets[1].1, LinkType::Raw);
        assert_eq!(packets[1].0, Timestamp(1_700_000_000_000_000_002));
        assert_eq!(packets[1].2, b"second");
    }

    #[test]
    fn interface_ids_restart_with_each_pcapng_section() {
        // Section 1: interface 0 is Ethernet. Section 2: interface 0 is Linux SLL2.
        let mut file = section_header();
        file.extend(interface(1, None));
        file.extend(enhanced_packet(0, 1, b"one"));
        file.extend(section_header());
        file.extend(interface(276, None));
        file.extend(enhanced_packet(0, 2, b"two"));
        // An undescribed interface is skipped with a note, not a crash.
        file.extend(enhanced_packet(5, 3, b"orphan"));
        let mut src = FileSource::from_reader("s.pcapng", Box::new(io::Cursor::new(file))).unwrap();
        let first = src
            .next_packet()
            .unwrap()
            .map(|p| (p.link, p.data.to_vec()));
        let second = src
            .next_packet()
            .unwrap()
            .map(|p| (p.link, p.data.to_vec()));
        assert_eq!(first, Some((LinkType::Ethernet, b"one".to_vec())));
        assert_eq!(second, Some((LinkType::LinuxSll2, b"two".to_vec())));
        assert!(src.next_packet().unwrap().is_none());
        let notes = src.take_notes();
        assert!(notes.iter().any(|n| n.contains("interface 5")), "{notes:?}");
    }

    /// A reader that hands out a few kilobytes per call, so records straddle refills.
    struct Trickle(io::Cursor<Vec<u8>>);

    impl io::Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(7919);
            self.0.read(&mut buf[..n])
        }
    }

    fn read_trickled(bytes: Vec<u8>) -> Read {
        read_from(Box::new(Trickle(io::Cursor::new(bytes))))
    }

    /// Payloads of many sizes (0 to ~9 KB, odd and even) filling several read buffers.
    fn payloads() -> Vec<Vec<u8>> {
        (0..1500u32)
            .map(|i| (0..(i * 37) % 9001).map(|j| (i + j) as u8).collect())
            .collect()
    }

    #[test]
    fn pcap_records_across_many_buffer_refills_read_whole() {
        let payloads = payloads();
        for big_endian in [false, true] {
            let records: Vec<(u32, u32, &[u8])> = payloads
                .iter()
                .enumerate()
                .map(|(i, p)| (1_700_000_000 + i as u32, i as u32, p.as_slice()))
                .collect();
            let (packets, err) = read_trickled(pcap(1, false, big_endian, &records));
            assert!(err.is_none(), "{err:?}");
            assert_eq!(packets.len(), payloads.len());
            for (i, (ts, link, data)) in packets.iter().enumerate() {
                assert_eq!(
                    *ts,
                    Timestamp::from_parts(1_700_000_000 + i as i64, i as i64 * 1000)
                );
                assert_eq!(*link, LinkType::Ethernet);
                assert_eq!(data, &payloads[i], "packet {i}");
            }
        }
    }

    /// An Enhanced Packet Block with a comment option: the general parser reads those.
    fn enhanced_packet_with_comment(if_id: u32, ts: u64, data: &[u8]) -> Vec<u8> {
        let plain = enhanced_packet(if_id, ts, data);
        let mut body = plain[8..plain.len() - 4].to_vec();
        body.extend(1u16.to_le_bytes());
        body.extend(5u16.to_le_bytes());
        body.extend(b"hello\0\0\0");
        body.extend([0u8; 4]);
        block(6, &body)
    }

    #[test]
    fn pcapng_blocks_with_and_without_options_across_refills_read_whole() {
        let payloads = payloads();
        let mut file = section_header();
        file.extend(interface(1, Some(9)));
        for (i, p) in payloads.iter().enumerate() {
            let ts = 1_700_000_000_000_000_000 + i as u64;
            file.extend(if i % 3 == 0 {
                enhanced_packet_with_comment(0, ts, p)
            } else {
                enhanced_packet(0, ts, p)
            });
        }
        let (packets, err) = read_trickled(file);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(packets.len(), payloads.len());
        for (i, (ts, _, data)) in packets.iter().enumerate() {
            assert_eq!(*ts, Timestamp(1_700_000_000_000_000_000 + i as i64));
            assert_eq!(data, &payloads[i], "packet {i}");
        }
    }
}
