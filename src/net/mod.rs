//! Stage 2, slicing: a captured frame → a typed TCP segment view.
//!
//! Link layers are peeled here (Ethernet with 802.1Q/QinQ, Linux cooked SLL and SLL2, BSD
//! NULL/LOOP, raw IP); IP and TCP are sliced by `etherparse`'s *lax* slicer, which still
//! yields the TCP header when the snap length cut the payload, so a cut segment becomes a
//! shorter payload plus a known number of missing bytes instead of a lost packet.
//! Nothing is copied: the segment borrows the packet.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};

use crate::capture::LinkType;

mod addr_text;
mod tunnel;
pub use addr_text::{addr_text, host_port_text, push_addr_text, push_host_port_text, push_ip_text};

/// Tunnels peeled inside one another at most: mirrored traffic is wrapped once, rarely
/// twice; a frame claiming more is crafted.
const MAX_TUNNELS: u8 = 3;

/// TCP control flags we act on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

/// One end of a segment: its address as IPv6 bits (IPv4 mapped, `::ffff:a.b.c.d`) and its
/// port, ordered as the `(u128, u16)` they are. Not a `SocketAddr`: the flow table orders,
/// hashes and compares both ends of every segment, and building and matching the
/// `SocketAddr` enum for that was ~60 instructions a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub high: u64,
    pub low: u64,
    pub port: u16,
    /// Sliced from an IPv6 header: an IPv4-mapped IPv6 address stays IPv6 in reports.
    /// The same host either way to the flow table (compared after the fields above).
    pub v6: bool,
}

/// The low 64 bits of an IPv4-mapped IPv6 address, but for the IPv4 address itself.
const MAPPED_V4: u64 = 0xffff << 32;

impl Endpoint {
    pub fn v4(ip: [u8; 4], port: u16) -> Endpoint {
        Endpoint {
            high: 0,
            low: MAPPED_V4 | u64::from(u32::from_be_bytes(ip)),
            port,
            v6: false,
        }
    }

    pub fn v6(ip: [u8; 16], port: u16) -> Endpoint {
        let bits = u128::from_be_bytes(ip);
        Endpoint {
            high: (bits >> 64) as u64,
            low: bits as u64,
            port,
            v6: true,
        }
    }

    pub fn addr(self) -> SocketAddr {
        let bits = (u128::from(self.high) << 64) | u128::from(self.low);
        if self.v6 {
            SocketAddr::new(Ipv6Addr::from_bits(bits).into(), self.port)
        } else {
            SocketAddr::new(Ipv4Addr::from_bits(self.low as u32).into(), self.port)
        }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Endpoint {
        match addr {
            SocketAddr::V4(v4) => Endpoint::v4(v4.ip().octets(), v4.port()),
            SocketAddr::V6(v6) => Endpoint::v6(v6.ip().octets(), v6.port()),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr().fmt(f)
    }
}

/// One TCP segment, borrowed from its packet.
#[derive(Clone, Copy, Debug)]
pub struct TcpSegment<'a> {
    pub src: Endpoint,
    pub dst: Endpoint,
    pub seq: u32,
    /// The acknowledgement number, when the ACK flag is set.
    pub ack: Option<u32>,
    pub flags: TcpFlags,
    pub payload: &'a [u8],
    /// Payload bytes the capture did not keep (snap length); they follow `payload`.
    pub missing_tail: u32,
}

impl TcpSegment<'_> {
    /// Sequence space the segment occupies: payload (captured or not) plus SYN and FIN.
    pub fn seq_len(&self) -> u32 {
        self.payload.len() as u32
            + self.missing_tail
            + u32::from(self.flags.syn)
            + u32::from(self.flags.fin)
    }
}

/// What a frame turned out to be.
#[derive(Debug)]
pub enum Sliced<'a> {
    Tcp(TcpSegment<'a>),
    /// Valid, but not TCP over IP (ARP, UDP, ICMP…): not ours.
    NotTcp,
    /// An IP fragment: MongoDB over TCP practically never fragments; counted, not reassembled.
    Fragment,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SliceError {
    #[error("unsupported link type {0}")]
    UnsupportedLink(LinkType),
    #[error("frame too short for its {layer} header")]
    Truncated { layer: &'static str },
    #[error("malformed {layer} header")]
    Malformed { layer: &'static str },
}

mod field {
    use std::ops::Range;
    /// BSD loopback: the address family, then the IP packet.
    pub const NULL_HEADER_LEN: usize = 4;
    /// Linux cooked v1: packet type, ARPHRD, address length, 8 address bytes, protocol.
    pub const SLL_PROTOCOL: Range<usize> = 14..16;
    pub const SLL_HEADER_LEN: usize = 16;
    /// Linux cooked v2: the protocol comes first.
    pub const SLL2_PROTOCOL: Range<usize> = 0..2;
    pub const SLL2_HEADER_LEN: usize = 20;
}

/// Slice one captured frame of the given link type. `orig_len` is the frame's length on
/// the wire; the difference to `data.len()` is what the snap length cut off.
pub fn slice(link: LinkType, data: &[u8], orig_len: u32) -> Result<Sliced<'_>, SliceError> {
    slice_within(link, data, orig_len, 0)
}

/// [`slice`] of a frame found inside `tunnels` tunnels.
fn slice_within(
    link: LinkType,
    data: &[u8],
    orig_len: u32,
    tunnels: u8,
) -> Result<Sliced<'_>, SliceError> {
    // Nearly every packet of a capture is a whole, unfragmented IPv4 TCP segment behind
    // untagged Ethernet. etherparse's header slices read those in place; its lax slicer
    // (below) handles everything else, but builds a description of every layer, which
    // was a tenth of a run.
    if link == LinkType::Ethernet && data.len() as u32 == orig_len {
        const ETHERNET_LEN: usize = 14;
        if data.get(12..14) == Some(&[0x08, 0x00]) {
            if let Some(segment) = whole_ipv4_tcp(&data[ETHERNET_LEN..]) {
                return Ok(Sliced::Tcp(segment));
            }
        }
    }
    slice_any(link, data, orig_len, tunnels)
}

/// [`slice`] without the fast path: every link type, truncated and odd packets.
fn slice_any(
    link: LinkType,
    data: &[u8],
    orig_len: u32,
    tunnels: u8,
) -> Result<Sliced<'_>, SliceError> {
    let lax = match link {
        LinkType::Ethernet => LaxSlicedPacket::from_ethernet(data)
            .map_err(|_| SliceError::Truncated { layer: "Ethernet" })?,
        LinkType::Null | LinkType::Loop => {
            // The family field's byte order depends on the capturing host; the IP version
            // nibble that follows is unambiguous, so we use that instead.
            let ip = data
                .get(field::NULL_HEADER_LEN..)
                .ok_or(SliceError::Truncated { layer: "loopback" })?;
            from_ip(ip)?
        }
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => from_ip(data)?,
        LinkType::LinuxSll => cooked(data, field::SLL_PROTOCOL, field::SLL_HEADER_LEN, "SLL")?,
        LinkType::LinuxSll2 => cooked(data, field::SLL2_PROTOCOL, field::SLL2_HEADER_LEN, "SLL2")?,
        LinkType::Unknown(_) => return Err(SliceError::UnsupportedLink(link)),
    };
    let (src_ip, dst_ip, fragmented) = match &lax.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let header = ip.header();
            (
                IpAddr::V4(header.source()),
                IpAddr::V4(header.destination()),
                ip.payload().fragmented,
            )
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let header = ip.header();
            (
                IpAddr::V6(header.source()),
                IpAddr::V6(header.destination()),
                ip.payload().fragmented,
            )
        }
        Some(_) => return Ok(Sliced::NotTcp),
        None => {
            return match lax.stop_err {
                Some(_) => Err(SliceError::Malformed { layer: "IP" }),
                None => Ok(Sliced::NotTcp),
            }
        }
    };
    if fragmented {
        return Ok(Sliced::Fragment);
    }
    if let Some(inner) = tunnelled(&lax).filter(|_| tunnels < MAX_TUNNELS) {
        let (link, frame) = match inner {
            tunnel::Inner::Ethernet(frame) => (LinkType::Ethernet, frame),
            tunnel::Inner::Ip(packet) => (LinkType::Raw, packet),
        };
        // The inner frame is a tail of this one: what the snap length cut is cut from it.
        let outer = (frame.as_ptr() as usize).saturating_sub(data.as_ptr() as usize) as u32;
        return slice_within(link, frame, orig_len.saturating_sub(outer), tunnels + 1);
    }
    let tcp = match lax.transport {
        Some(TransportSlice::Tcp(tcp)) => tcp,
        Some(_) => return Ok(Sliced::NotTcp),
        None => {
            let is_tcp = lax
                .net
                .as_ref()
                .and_then(|n| n.ip_payload_ref())
                .is_some_and(|p| p.ip_number == etherparse::IpNumber::TCP);
            return if is_tcp {
                Err(SliceError::Truncated { layer: "TCP" })
            } else {
                Ok(Sliced::NotTcp)
            };
        }
    };
    let missing_tail = orig_len.saturating_sub(data.len() as u32);
    let header = etherparse::TcpHeaderSlice::from_slice(tcp.header_slice())
        .map_err(|_| SliceError::Malformed { layer: "TCP" })?;
    Ok(Sliced::Tcp(segment(
        src_ip,
        dst_ip,
        &header,
        tcp.payload(),
        missing_tail,
    )))
}

/// A segment's source or destination address, as its IP header holds it.
#[derive(Clone, Copy)]
enum IpAddr {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl IpAddr {
    fn endpoint(self, port: u16) -> Endpoint {
        match self {
            IpAddr::V4(ip) => Endpoint::v4(ip, port),
            IpAddr::V6(ip) => Endpoint::v6(ip, port),
        }
    }
}

/// The segment view both slicing paths give: endpoints, sequence numbers, flags, payload.
fn segment<'a>(
    src: IpAddr,
    dst: IpAddr,
    tcp: &etherparse::TcpHeaderSlice<'_>,
    payload: &'a [u8],
    missing_tail: u32,
) -> TcpSegment<'a> {
    TcpSegment {
        src: src.endpoint(tcp.source_port()),
        dst: dst.endpoint(tcp.destination_port()),
        seq: tcp.sequence_number(),
        ack: tcp.ack().then(|| tcp.acknowledgment_number()),
        flags: TcpFlags {
            syn: tcp.syn(),
            ack: tcp.ack(),
            fin: tcp.fin(),
            rst: tcp.rst(),
        },
        payload,
        missing_tail,
    }
}

/// A complete, unfragmented IPv4 packet carrying TCP, or `None` for the general path.
fn whole_ipv4_tcp(ip: &[u8]) -> Option<TcpSegment<'_>> {
    let header = etherparse::Ipv4HeaderSlice::from_slice(ip).ok()?;
    if header.protocol() != etherparse::IpNumber::TCP || header.is_fragmenting_payload() {
        return None;
    }
    let total = usize::from(header.total_len());
    let ip_payload = ip.get(header.slice().len()..total)?;
    let tcp = etherparse::TcpHeaderSlice::from_slice(ip_payload).ok()?;
    let payload = &ip_payload[tcp.slice().len()..];
    let (src, dst) = (header.source(), header.destination());
    Some(segment(IpAddr::V4(src), IpAddr::V4(dst), &tcp, payload, 0))
}

/// The frame a tunnel packet carries (see [`tunnel`]).
fn tunnelled<'a>(lax: &LaxSlicedPacket<'a>) -> Option<tunnel::Inner<'a>> {
    match &lax.transport {
        Some(TransportSlice::Udp(udp)) => tunnel::udp(udp.destination_port(), udp.payload()),
        Some(_) => None,
        None => {
            let ip = lax.net.as_ref()?.ip_payload_ref()?;
            tunnel::ip(ip.ip_number.0, ip.payload)
        }
    }
}

fn from_ip(data: &[u8]) -> Result<LaxSlicedPacket<'_>, SliceError> {
    LaxSlicedPacket::from_ip(data).map_err(|_| SliceError::Malformed { layer: "IP" })
}

fn cooked<'a>(
    data: &'a [u8],
    protocol: std::ops::Range<usize>,
    header_len: usize,
    layer: &'static str,
) -> Result<LaxSlicedPacket<'a>, SliceError> {
    let payload = data
        .get(header_len..)
        .ok_or(SliceError::Truncated { layer })?;
    let proto = u16::from_be_bytes([data[protocol.start], data[protocol.start + 1]]);
    Ok(LaxSlicedPacket::from_ether_type(EtherType(proto), payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &Result<Sliced<'_>, SliceError>, b: &Result<Sliced<'_>, SliceError>) -> bool {
        match (a, b) {
            (Ok(Sliced::Tcp(x)), Ok(Sliced::Tcp(y))) => {
                (
                    x.src,
                    x.dst,
                    x.seq,
                    x.ack,
                    x.flags,
                    x.payload,
                    x.missing_tail,
                ) == (
                    y.src,
                    y.dst,
                    y.seq,
                    y.ack,
                    y.flags,
                    y.payload,
                    y.missing_tail,
                )
            }
            (Ok(Sliced::NotTcp), Ok(Sliced::NotTcp))
            | (Ok(Sliced::Fragment), Ok(Sliced::Fragment)) => true,
            (Err(x), Err(y)) => x == y,
            _ => false,
        }
    }

    /// The fast path must see exactly what the general slicer sees, on every packet of
    /// the lab's real-driver captures (Ethernet) and on frames cut or padded by hand.
    #[test]
    fn fast_path_agrees_with_the_general_slicer() {
        use crate::capture::{FileSource, PacketSource};
        let lab = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/lab");
        let mut fast_hits = 0;
        for case in std::fs::read_dir(&lab).unwrap().flatten() {
            for file in ["capture.pcap", "capture.pcapng"] {
                let path = case.path().join(file);
                let Ok(mut source) = FileSource::open(path.to_str().unwrap()) else {
                    continue;
                };
                while let Ok(Some(p)) = source.next_packet() {
                    let fast = slice(p.link, p.data, p.orig_len);
                    let general = slice_any(p.link, p.data, p.orig_len, 0);
                    assert!(
                        same(&fast, &general),
                        "{}: {fast:?} vs {general:?}",
                        path.display()
                    );
                    fast_hits += u32::from(p.link == LinkType::Ethernet);
                }
            }
        }
        assert!(
            fast_hits > 1000,
            "the lab's Ethernet captures were read: {fast_hits}"
        );
        let mut frame = vec![0u8; 12];
        frame.extend([0x08, 0x00]);
        frame.extend(ipv4_tcp(b"hello", 0x18));
        let padded = [frame.clone(), vec![0; 20]].concat();
        for (data, orig) in [
            (&frame[..], frame.len() as u32),
            (&frame[..frame.len() - 3], frame.len() as u32),
            (&padded[..], padded.len() as u32),
            (&frame[..30], 30),
        ] {
            assert!(same(
                &slice(LinkType::Ethernet, data, orig),
                &slice_any(LinkType::Ethernet, data, orig, 0)
            ));
        }
    }

    /// IPv4 + TCP (20-byte headers) carrying `payload`.
    fn ipv4_tcp(payload: &[u8], flags: u8) -> Vec<u8> {
        let total = 40 + payload.len();
        let mut p = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            1,
            0x40,
            0,
            64,
            6,
            0,
            0,
            10,
            0,
            0,
            5,
            10,
            0,
            0,
            9,
        ];
        p.extend([0xc8, 0x3a, 0x69, 0x89]); // 51258 → 27017
        p.extend(1000u32.to_be_bytes());
        p.extend(2000u32.to_be_bytes());
        p.extend([0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    fn tcp(s: Sliced<'_>) -> TcpSegment<'_> {
        match s {
            Sliced::Tcp(t) => t,
            other => panic!("not tcp: {other:?}"),
        }
    }

    #[test]
    fn ethernet_with_qinq() {
        let mut frame = vec![0u8; 12];
        frame.extend([0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x14, 0x08, 0x00]);
        frame.extend(ipv4_tcp(b"hello", 0x18));
        let len = frame.len() as u32;
        let seg = tcp(slice(LinkType::Ethernet, &frame, len).unwrap());
        assert_eq!(seg.src.to_string(), "10.0.0.5:51258");
        assert_eq!(seg.dst.to_string(), "10.0.0.9:27017");
        assert_eq!(seg.seq, 1000);
        assert_eq!(seg.ack, Some(2000));
        assert_eq!(seg.payload, b"hello");
        assert!(!seg.flags.syn && seg.flags.ack);
    }

    #[test]
    fn cooked_v1_and_v2_and_null_and_raw() {
        let ip = ipv4_tcp(b"xy", 0x02);
        let mut sll = vec![0u8; 14];
        sll.extend([0x08, 0x00]);
        sll.extend(&ip);
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend([0u8; 18]);
        sll2.extend(&ip);
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend(&ip);
        for (link, frame) in [
            (LinkType::LinuxSll, sll),
            (LinkType::LinuxSll2, sll2),
            (LinkType::Null, null),
            (LinkType::Raw, ip.clone()),
        ] {
            let len = frame.len() as u32;
            let seg = tcp(slice(link, &frame, len).unwrap());
            assert_eq!(seg.payload, b"xy", "{link}");
            assert!(seg.flags.syn, "{link}");
        }
    }

    #[test]
    fn ipv6_raw() {
        let payload = b"abc";
        let mut p = vec![0x60, 0, 0, 0, 0, (20 + payload.len()) as u8, 6, 64];
        p.extend([0u8; 15]);
        p.push(1); // ::1
        p.extend([0u8; 15]);
        p.push(1);
        p.extend([0xc8, 0x3a, 0x69, 0x89]);
        p.extend(5u32.to_be_bytes());
        p.extend(0u32.to_be_bytes());
        p.extend([0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        let len = p.len() as u32;
        let seg = tcp(slice(LinkType::Ipv6, &p, len).unwrap());
        assert_eq!(seg.src.to_string(), "[::1]:51258");
        assert_eq!(seg.payload, b"abc");
    }

    #[test]
    fn snaplen_cut_reports_missing_tail() {
        let mut frame = vec![0u8; 12];
        frame.extend([0x08, 0x00]);
        frame.extend(ipv4_tcp(&[7u8; 100], 0x18));
        let orig = frame.len() as u32;
        frame.truncate(14 + 40 + 30);
        let seg = tcp(slice(LinkType::Ethernet, &frame, orig).unwrap());
        assert_eq!(seg.payload.len(), 30);
        assert_eq!(seg.missing_tail, 70);
        assert_eq!(seg.seq_len(), 100);
    }

    #[test]
    fn errors_and_non_tcp() {
        assert_eq!(
            slice(LinkType::Unknown(147), b"zz", 2).unwrap_err(),
            SliceError::UnsupportedLink(LinkType::Unknown(147))
        );
        assert!(slice(LinkType::Ethernet, &[0u8; 5], 5).is_err());
        assert!(slice(LinkType::LinuxSll2, &[0u8; 5], 5).is_err());
        // ARP
        let mut arp = vec![0u8; 12];
        arp.extend([0x08, 0x06]);
        arp.extend([0u8; 28]);
        assert!(matches!(
            slice(LinkType::Ethernet, &arp, 42),
            Ok(Sliced::NotTcp)
        ));
        // IPv4 header cut in the middle of TCP header
        let ip = ipv4_tcp(b"", 0x10);
        assert!(slice(LinkType::Raw, &ip[..30], 40).is_err());
    }
}
