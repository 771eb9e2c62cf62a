//! Socket addresses as text, the way `Display` prints them, for the reports.
//!
//! Written by hand because std's `SocketAddrV4` formatting runs the whole `fmt` machinery
//! (one `pad_integral` per octet): ~1,700 instructions an address under callgrind, while a
//! report prints two endpoints for each of up to hundreds of thousands of connections. On a
//! capture of short connections that was 9% of a run's instructions.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

/// `addr.to_string()`, faster for IPv4. IPv6 keeps std's formatting: its zero-run
/// compression and embedded-IPv4 rules are not worth repeating for a rare case.
pub fn addr_text(addr: SocketAddr) -> String {
    let mut out = String::with_capacity(21);
    push_addr_text(&mut out, addr);
    out
}

/// [`addr_text`] appended to `out`: a report's table writes its rows without a string
/// per cell.
pub fn push_addr_text(out: &mut String, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            push_ip_text(out, IpAddr::V4(*v4.ip()));
            push_port(out, v4.port());
        }
        SocketAddr::V6(_) => {
            let _ = write!(out, "{addr}");
        }
    }
}

/// An IP address appended to `out` as `Display` prints it (client ids start with one).
pub fn push_ip_text(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(digits.format(octet));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// `"{host}:{port}"`.
pub fn host_port_text(host: &str, port: u16) -> String {
    let mut out = String::with_capacity(host.len() + 6);
    push_host_port_text(&mut out, host, port);
    out
}

/// [`host_port_text`] appended to `out`.
pub fn push_host_port_text(out: &mut String, host: &str, port: u16) {
    out.push_str(host);
    push_port(out, port);
}

fn push_port(out: &mut String, port: u16) {
    out.push(':');
    out.push_str(itoa::Buffer::new().format(port));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

    #[test]
    fn ipv4_text_is_what_display_prints() {
        // Every octet value in every position, and ports across their whole range.
        for value in 0..=255u8 {
            for position in 0..4 {
                let mut octets = [10, 200, 3, 45];
                octets[position] = value;
                let port = u16::from(value) * 257;
                let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(octets), port));
                assert_eq!(addr_text(addr), addr.to_string());
            }
        }
        let top = SocketAddr::from(([255, 255, 255, 255], 65535));
        assert_eq!(addr_text(top), "255.255.255.255:65535");
        assert_eq!(addr_text(SocketAddr::from(([0, 0, 0, 0], 0))), "0.0.0.0:0");
    }

    #[test]
    fn ipv6_text_is_what_display_prints() {
        for ip in [
            Ipv6Addr::LOCALHOST,
            "fe80::1:2".parse().unwrap(),
            "::ffff:10.0.0.1".parse().unwrap(),
        ] {
            let addr = SocketAddr::V6(SocketAddrV6::new(ip, 27017, 0, 0));
            assert_eq!(addr_text(addr), addr.to_string());
        }
    }

    #[test]
    fn ip_text_is_what_display_prints_appended() {
        for ip in [
            IpAddr::from([10, 0, 255, 7]),
            IpAddr::from(Ipv6Addr::LOCALHOST),
            "::ffff:10.0.0.1".parse().unwrap(),
        ] {
            let mut out = String::from("a|");
            push_ip_text(&mut out, ip);
            assert_eq!(out, format!("a|{ip}"));
        }
    }

    #[test]
    fn host_port_text_joins_with_a_colon() {
        assert_eq!(host_port_text("host-3", 27018), "host-3:27018");
    }
}
