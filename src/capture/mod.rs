//! Stage 1, capture: where packets come from.
//!
//! A source hands out *borrowed* packets one at a time (`next_packet`), so the bytes of a
//! packet live in the reader's buffer and nothing is copied per packet. Offline captures
//! (pcap, pcapng, from a file or stdin) are read by [`file::FileSource`]; live capture
//! through libpcap will be another implementation of [`PacketSource`].

pub mod file;
pub mod live;

use std::fmt;

pub use file::FileSource;

/// A link-layer header type, as numbered by tcpdump's LINKTYPE_ registry.
/// Unknown values are data, not errors: the slicing stage warns once per type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// BSD loopback: a 4-byte address family in the capturing host's byte order.
    Null,
    Ethernet,
    /// Raw IP: IPv4 or IPv6 told apart by the version nibble.
    Raw,
    /// OpenBSD loopback: like `Null`, but the family is always big-endian.
    Loop,
    /// Linux cooked capture v1 (`tcpdump -i any` before libpcap 1.10).
    LinuxSll,
    /// Linux cooked capture v2 (`tcpdump -i any` with libpcap 1.10+).
    LinuxSll2,
    Ipv4,
    Ipv6,
    Unknown(u32),
}

impl From<u32> for LinkType {
    fn from(value: u32) -> Self {
        match value {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            101 => LinkType::Raw,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            276 => LinkType::LinuxSll2,
            other => LinkType::Unknown(other),
        }
    }
}

impl From<LinkType> for u32 {
    fn from(value: LinkType) -> Self {
        match value {
            LinkType::Null => 0,
            LinkType::Ethernet => 1,
            LinkType::Raw => 101,
            LinkType::Loop => 108,
            LinkType::LinuxSll => 113,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::LinuxSll2 => 276,
            LinkType::Unknown(other) => other,
        }
    }
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            LinkType::Null => "NULL (BSD loopback)",
            LinkType::Ethernet => "Ethernet",
            LinkType::Raw => "raw IP",
            LinkType::Loop => "LOOP (OpenBSD loopback)",
            LinkType::LinuxSll => "Linux cooked (SLL)",
            LinkType::LinuxSll2 => "Linux cooked v2 (SLL2)",
            LinkType::Ipv4 => "raw IPv4",
            LinkType::Ipv6 => "raw IPv6",
            LinkType::Unknown(n) => return write!(f, "link type {n}"),
        };
        f.write_str(name)
    }
}

/// A capture timestamp in nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_parts(secs: i64, nanos: i64) -> Timestamp {
        Timestamp(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
    /// Nanoseconds from `earlier` to `self`, zero if the clock went backwards.
    pub fn nanos_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0).max(0) as u64
    }
}

/// One captured frame, borrowed from the source's buffer until the next call.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    pub ts: Timestamp,
    pub link: LinkType,
    pub data: &'a [u8],
    /// Length on the wire; larger than `data.len()` when the snap length cut the frame.
    pub orig_len: u32,
}

/// Counters a source keeps about what it read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    pub packets: u64,
    pub bytes: u64,
    /// Packets the kernel dropped (live capture only).
    pub dropped: Option<u64>,
    /// Packets libpcap received (live capture only).
    pub received: Option<u64>,
}

/// Why a capture could not be read (further).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is empty")]
    Empty { path: String },
    #[error("{path} is neither a pcap nor a pcapng file (first bytes: {magic})")]
    NotACapture { path: String, magic: String },
    #[error(
        "{path}: capture ends in the middle of a record at byte {offset}; the rest is missing"
    )]
    Truncated { path: String, offset: u64 },
    #[error("{path}: record at byte {offset} claims {claimed} bytes (limit {limit}); the file is damaged from there on")]
    RecordTooLarge {
        path: String,
        offset: u64,
        claimed: u64,
        limit: u64,
    },
    #[error("{path}: damaged record at byte {offset} ({reason}); the file cannot be read past it")]
    Corrupt {
        path: String,
        offset: u64,
        reason: String,
    },
    #[error("{path}: read error at byte {offset}")]
    Read { path: String, offset: u64 },
    #[error("{0}")]
    Live(String),
}

impl CaptureError {
    /// Whether anything before the error could still be analysed.
    pub fn is_partial(&self) -> bool {
        matches!(
            self,
            CaptureError::Truncated { .. }
                | CaptureError::RecordTooLarge { .. }
                | CaptureError::Corrupt { .. }
                | CaptureError::Read { .. }
        )
    }
}

/// A source of packets. Implemented by offline files and (later) live capture.
pub trait PacketSource {
    /// The next packet, `Ok(None)` at the end. After an error the source is finished.
    fn next_packet(&mut self) -> Result<Option<Packet<'_>>, CaptureError>;
    fn stats(&self) -> SourceStats;
    /// What was being read, for the report (a path, "-" for stdin, an interface).
    fn name(&self) -> &str;
    /// Non-fatal things the source noticed (e.g. an interface with an odd timestamp resolution).
    fn take_notes(&mut self) -> Vec<String> {
        Vec::new()
    }
}
