//! Captures taken where mirrored traffic is delivered: AWS VPC Traffic Mirroring and Azure
//! vTAP wrap each frame in VXLAN, AWS Gateway Load Balancer in Geneve, SPAN sessions and
//! TAPs in ERSPAN over GRE; and on a Kubernetes node's interface, where pod traffic is in
//! VXLAN on port 8472 (flannel, Cilium) or IP in IP (Calico). A lab capture of real drivers, every frame wrapped as a mirror
//! target receives it (outer addresses of the mirror source and target), must read as the
//! capture itself: same clients, same connections, same classes.

use std::path::Path;

use conn_attrib::attribute::Options;
use conn_attrib::capture::{FileSource, PacketSource};
use conn_attrib::report::{Meta, Report};
use conn_attrib::{analyze_path, conclude, AnalyzerConfig};

mod common;

const MIRROR_SOURCE: [u8; 4] = [172, 31, 5, 10];
const MIRROR_TARGET: [u8; 4] = [172, 31, 9, 20];

/// Outer Ethernet + IPv4 (protocol `proto`) around `inner`, which starts with `tunnel`.
fn outer_ipv4(proto: u8, tunnel: &[u8], inner: &[u8]) -> Vec<u8> {
    use etherparse::{EtherType, Ethernet2Header, IpNumber, Ipv4Header};
    let mut frame = Vec::new();
    Ethernet2Header {
        source: [2, 0, 0, 0, 0, 1],
        destination: [2, 0, 0, 0, 0, 2],
        ether_type: EtherType::IPV4,
    }
    .write(&mut frame)
    .unwrap();
    let payload = (tunnel.len() + inner.len()) as u16;
    let mut ip = Ipv4Header::new(payload, 64, IpNumber(proto), MIRROR_SOURCE, MIRROR_TARGET)
        .expect("a small payload");
    ip.header_checksum = ip.calc_header_checksum();
    ip.write(&mut frame).unwrap();
    frame.extend(tunnel);
    frame.extend(inner);
    frame
}

/// UDP (checksum 0: none, as VXLAN senders do) to `port`, then the tunnel header.
fn udp_header(port: u16, tunnel: &[u8], inner_len: usize) -> Vec<u8> {
    let udp = etherparse::UdpHeader::without_ipv4_checksum(50_000, port, tunnel.len() + inner_len)
        .expect("a small datagram");
    [&udp.to_bytes()[..], tunnel].concat()
}

fn wrap(kind: &str, frame: &[u8], seq: u32) -> Vec<u8> {
    match kind {
        // VNI 7.
        "vxlan" => outer_ipv4(
            17,
            &udp_header(4789, &[0x08, 0, 0, 0, 0, 0, 7, 0], frame.len()),
            frame,
        ),
        // Geneve carrying Ethernet with one 4-byte option word.
        "geneve" => outer_ipv4(
            17,
            &udp_header(
                6081,
                &[0x01, 0, 0x65, 0x58, 0, 0, 7, 0, 0, 1, 0x01, 0],
                frame.len(),
            ),
            frame,
        ),
        // flannel's and Cilium's VXLAN port on a Kubernetes node.
        "vxlan-8472" => outer_ipv4(
            17,
            &udp_header(8472, &[0x08, 0, 0, 0, 0, 0, 1, 0], frame.len()),
            frame,
        ),
        // Calico's IP in IP: the pod's IP packet, without its Ethernet header.
        "ipip" => outer_ipv4(4, &[], &frame[14..]),
        // GRE with a sequence number, then the ERSPAN type II header (session 1).
        "erspan" => {
            let mut gre = vec![0x10, 0x00, 0x88, 0xbe];
            gre.extend(seq.to_be_bytes());
            gre.extend([0x10, 0, 0, 1, 0, 0, 0, 0]);
            outer_ipv4(47, &gre, frame)
        }
        _ => unreachable!(),
    }
}

fn wrapped_capture(path: &Path, kind: &str) -> Vec<u8> {
    let mut source = FileSource::open(path.to_str().unwrap()).expect("a lab capture");
    let mut out = common::Pcap::new(1);
    let mut seq = 0;
    while let Some(p) = source.next_packet().expect("clean capture") {
        seq += 1;
        let us = (p.ts.0 / 1_000) as u64;
        match kind.strip_suffix("-twice") {
            // Mirror sessions on both ends (the application's interface and the
            // server's): every frame arrives twice.
            Some(kind) => {
                out.record(us, &wrap(kind, p.data, seq));
                out.record(us + 3, &wrap(kind, p.data, seq));
            }
            None => out.record(us, &wrap(kind, p.data, seq)),
        }
    }
    out.bytes
}

fn summary(r: &Report) -> Vec<String> {
    let mut lines: Vec<String> = r
        .attribution
        .connections
        .iter()
        .map(|c| {
            format!(
                "{} {} {:?} {}",
                c.obs.client, c.obs.server, c.verdict.class, c.client_id
            )
        })
        .collect();
    lines.extend(r.attribution.clients.iter().map(|c| format!("{c:?}")));
    lines
}

#[test]
fn mirrored_traffic_reads_as_the_capture_itself() {
    // Three real drivers (PyMongo, the Node.js driver, libmongoc) on one host.
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/lab/three-drivers/capture.pcap");
    let plain = conclude(
        analyze_path(path.to_str().unwrap(), AnalyzerConfig::default()).unwrap(),
        Options::default(),
        Meta::default(),
    );
    assert!(plain.attribution.connections.len() >= 20);
    for kind in [
        "vxlan",
        "vxlan-8472",
        "geneve",
        "erspan",
        "ipip",
        "vxlan-twice",
    ] {
        let analysis = common::analyze_bytes(wrapped_capture(&path, kind));
        let mirrored = conclude(analysis, Options::default(), Meta::default());
        assert_eq!(summary(&mirrored), summary(&plain), "{kind}");
        assert_eq!(
            mirrored.input.tcp_connections, plain.input.tcp_connections,
            "{kind}"
        );
    }
}
