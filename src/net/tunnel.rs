//! Mirrored traffic arrives wrapped. A capture taken where mirrored packets are delivered
//! holds the driver's frames inside a tunnel: AWS VPC Traffic Mirroring and Azure virtual
//! network TAP send VXLAN (UDP 4789), AWS Gateway Load Balancer Geneve (UDP 6081), SPAN
//! sessions and network TAPs ERSPAN over GRE (types I/II: 0x88BE, III: 0x22EB), and GRE
//! tunnels carry Ethernet or IP. So does pod traffic captured on a Kubernetes node's own
//! interface: flannel and Cilium use VXLAN on UDP 8472 (Linux's default port), Calico IP
//! in IP. Each header here is a few fixed fields that no crate we
//! use parses (etherparse stops at UDP and at the GRE protocol number), so they are read by
//! hand, as views over the packet: the inner frame borrows it.

/// What a tunnel carries.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Inner<'a> {
    Ethernet(&'a [u8]),
    /// IPv4 or IPv6, told apart by the version nibble.
    Ip(&'a [u8]),
}

pub const VXLAN_PORT: u16 = 4789;
/// Linux's VXLAN port before IANA assigned 4789: flannel's and Cilium's default.
pub const VXLAN_LINUX_PORT: u16 = 8472;
pub const VXLAN_GPE_PORT: u16 = 4790;
pub const GENEVE_PORT: u16 = 6081;
/// GRE's IP protocol number.
pub const GRE: u8 = 47;
/// IPv4 in IP (RFC 2003) and IPv6 in IP (RFC 4213).
pub const IP_IN_IP: u8 = 4;
pub const IPV6_IN_IP: u8 = 41;

const TRANSPARENT_ETHERNET: u16 = 0x6558;
const IPV4: u16 = 0x0800;
const IPV6: u16 = 0x86DD;
const ERSPAN_I_II: u16 = 0x88BE;
const ERSPAN_III: u16 = 0x22EB;

fn be16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

fn by_ether_type(ether_type: u16, payload: &[u8]) -> Option<Inner<'_>> {
    match ether_type {
        TRANSPARENT_ETHERNET => Some(Inner::Ethernet(payload)),
        IPV4 | IPV6 => Some(Inner::Ip(payload)),
        _ => None,
    }
}

/// The frame inside a UDP datagram to a tunnel port, or `None` when it is not one.
pub(super) fn udp(dst_port: u16, payload: &[u8]) -> Option<Inner<'_>> {
    match dst_port {
        // RFC 7348: flags (I set: the VNI is valid), 3 reserved, VNI, 1 reserved.
        VXLAN_PORT | VXLAN_LINUX_PORT if payload.first()? & 0x08 != 0 => {
            Some(Inner::Ethernet(payload.get(8..)?))
        }
        // VXLAN-GPE: the fourth byte names what follows.
        VXLAN_GPE_PORT => match payload.get(3)? {
            1 | 2 => Some(Inner::Ip(payload.get(8..)?)),
            3 => Some(Inner::Ethernet(payload.get(8..)?)),
            _ => None,
        },
        // RFC 8926: version (2 bits, 0) and options length in 4-byte words, then flags,
        // the protocol type and the VNI; the options follow the 8 fixed bytes.
        GENEVE_PORT => {
            let first = *payload.first()?;
            if first >> 6 != 0 {
                return None;
            }
            let header = 8 + usize::from(first & 0x3f) * 4;
            by_ether_type(be16(payload, 2)?, payload.get(header..)?)
        }
        _ => None,
    }
}

/// The frame inside an IP packet of protocol `ip_number`, or `None` when it is no tunnel.
pub(super) fn ip(ip_number: u8, payload: &[u8]) -> Option<Inner<'_>> {
    match ip_number {
        GRE => gre(payload),
        IP_IN_IP | IPV6_IN_IP => Some(Inner::Ip(payload)),
        _ => None,
    }
}

/// The frame inside a GRE packet (RFC 2784/2890), ERSPAN included.
fn gre(payload: &[u8]) -> Option<Inner<'_>> {
    let flags = be16(payload, 0)?;
    // Version 1 is PPTP's enhanced GRE, which carries PPP, not frames; routing (RFC
    // 1701) is long deprecated.
    if flags & 0x0007 != 0 || flags & 0x4000 != 0 {
        return None;
    }
    let checksum = flags & 0x8000 != 0;
    let key = flags & 0x2000 != 0;
    let sequence = flags & 0x1000 != 0;
    let header = 4 + 4 * (usize::from(checksum) + usize::from(key) + usize::from(sequence));
    let inner = payload.get(header..)?;
    match be16(payload, 2)? {
        // Type I has no sequence number and no ERSPAN header; type II has both, the
        // header 8 bytes (version, VLAN, session, index).
        ERSPAN_I_II if sequence => Some(Inner::Ethernet(inner.get(8..)?)),
        ERSPAN_I_II => Some(Inner::Ethernet(inner)),
        // Type III: 12 bytes, and an 8-byte platform subheader when its O bit is set.
        ERSPAN_III => {
            let subheader = if inner.get(11)? & 0x01 != 0 { 8 } else { 0 };
            Some(Inner::Ethernet(inner.get(12 + subheader..)?))
        }
        other => by_ether_type(other, inner),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: &[u8] = b"inner frame";

    fn with(header: &[u8]) -> Vec<u8> {
        [header, FRAME].concat()
    }

    #[test]
    fn vxlan_and_geneve_headers_are_skipped_to_the_inner_frame() {
        let vxlan = with(&[0x08, 0, 0, 0, 0, 0x12, 0x34, 0]);
        assert_eq!(udp(4789, &vxlan), Some(Inner::Ethernet(FRAME)));
        assert_eq!(udp(8472, &vxlan), Some(Inner::Ethernet(FRAME)));
        assert_eq!(ip(4, FRAME), Some(Inner::Ip(FRAME)));
        assert_eq!(ip(6, FRAME), None);
        // Without the I flag it is not VXLAN as RFC 7348 sends it.
        assert_eq!(udp(4789, &with(&[0; 8])), None);
        assert_eq!(udp(53, &vxlan), None);
        let gpe_ip = with(&[0x0c, 0, 0, 1, 0, 0, 1, 0]);
        assert_eq!(udp(4790, &gpe_ip), Some(Inner::Ip(FRAME)));
        // Geneve with one 4-byte option word, carrying Ethernet.
        let geneve = with(&[0x01, 0, 0x65, 0x58, 0, 0, 7, 0, 1, 2, 3, 4]);
        assert_eq!(udp(6081, &geneve), Some(Inner::Ethernet(FRAME)));
        let geneve_v1 = with(&[0x41, 0, 0x65, 0x58, 0, 0, 7, 0, 1, 2, 3, 4]);
        assert_eq!(udp(6081, &geneve_v1), None);
        // Cut inside the header: nothing, never a panic.
        assert_eq!(udp(6081, &geneve[..9]), None);
        assert_eq!(udp(4789, &vxlan[..3]), None);
    }

    #[test]
    fn gre_carries_ethernet_ip_and_erspan() {
        // Plain GRE with a key, carrying IPv4.
        let gre_ip = with(&[0x20, 0x00, 0x08, 0x00, 0, 0, 0, 9]);
        assert_eq!(gre(&gre_ip), Some(Inner::Ip(FRAME)));
        // Transparent Ethernet bridging with checksum and sequence number.
        let teb = with(&[0x90, 0x00, 0x65, 0x58, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(gre(&teb), Some(Inner::Ethernet(FRAME)));
        // ERSPAN type II: sequence number, then its 8-byte header.
        let erspan2 = with(&[
            0x10, 0x00, 0x88, 0xbe, 0, 0, 0, 5, 0x10, 0, 0, 1, 0, 0, 0, 0,
        ]);
        assert_eq!(gre(&erspan2), Some(Inner::Ethernet(FRAME)));
        // ERSPAN type I: no sequence number, no header.
        assert_eq!(
            gre(&with(&[0x00, 0x00, 0x88, 0xbe])),
            Some(Inner::Ethernet(FRAME))
        );
        // ERSPAN type III with the O bit: 12 + 8 bytes.
        let mut erspan3 = vec![0x10, 0x00, 0x22, 0xeb, 0, 0, 0, 5];
        erspan3.extend([0x20, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x01]);
        erspan3.extend([0; 8]);
        assert_eq!(gre(&with(&erspan3)), Some(Inner::Ethernet(FRAME)));
        // Enhanced GRE (PPTP) and unknown payloads are not frames.
        assert_eq!(gre(&with(&[0x30, 0x01, 0x88, 0x0b, 0, 0, 0, 0])), None);
        assert_eq!(gre(&with(&[0x00, 0x00, 0x12, 0x34])), None);
        assert_eq!(gre(&teb[..10]), None);
    }
}
