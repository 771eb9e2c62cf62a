//! Live capture through libpcap (the `pcap` crate): the same packets, the same pipeline.
//!
//! A live source differs from a file in one way the pipeline sees: "no packet right now"
//! is not the end. [`LiveSource::poll`] returns within the read timeout either way, so the
//! caller can refresh its display and watch for Ctrl-C between packets.

use std::path::Path;

use super::{CaptureError, LinkType, Packet, SourceStats, Timestamp};

/// How long a poll waits when no packet is ready.
const IDLE_WAIT: std::time::Duration = std::time::Duration::from_millis(5);

/// The default filter: MongoDB's usual ports plus any `--server-port`.
pub fn default_filter(extra_ports: &[u16]) -> String {
    let mut f = String::from("tcp portrange 27017-27019");
    for p in extra_ports {
        f.push_str(&format!(" or tcp port {p}"));
    }
    f
}

pub struct LiveSource {
    cap: pcap::Capture<pcap::Active>,
    link: LinkType,
    name: String,
    save: Option<pcap::Savefile>,
    stats: SourceStats,
}

/// `pcap_stats`: packets received, dropped for lack of buffer space (`ps_drop`), and
/// dropped by the interface or its driver (`ps_ifdrop`), since the capture opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PcapCounters {
    pub received: u64,
    pub dropped: u64,
    pub if_dropped: u64,
}

/// What one poll found.
pub enum Poll<'a> {
    Packet(Packet<'a>),
    /// The read timeout passed without a packet.
    Idle,
}

impl LiveSource {
    /// Open `interface` ("any" for all) with a BPF `filter`; optionally save what is
    /// captured to `write_pcap`. Errors name what to do about them.
    pub fn open(
        interface: &str,
        filter: &str,
        write_pcap: Option<&Path>,
    ) -> Result<LiveSource, CaptureError> {
        let explain = |e: pcap::Error| -> CaptureError {
            let text = e.to_string();
            let advice = if text.contains("permission") || text.contains("Operation not permitted")
            {
                " (run as root, or give the binary capture rights: setcap cap_net_raw,cap_net_admin+eip $(which conn-attrib))"
            } else if text.contains("No such device") || text.contains("doesn't exist") {
                " (list interfaces with `ip link`; `any` captures on all)"
            } else {
                ""
            };
            CaptureError::Live(format!("cannot capture on {interface}: {text}{advice}"))
        };
        let cap = pcap::Capture::from_device(interface)
            .map_err(explain)?
            .promisc(false)
            .snaplen(262_144)
            .timeout(200)
            .immediate_mode(true)
            .buffer_size(16 << 20)
            .open()
            .map_err(explain)?;
        // Non-blocking: with immediate mode, Linux libpcap does not honour the read timeout
        // on an idle interface, and a blocked read would never see --duration or Ctrl-C.
        let mut cap = cap.setnonblock().map_err(explain)?;
        cap.filter(filter, true)
            .map_err(|e| CaptureError::Live(format!("invalid capture filter `{filter}`: {e}")))?;
        let link = LinkType::from(cap.get_datalink().0 as u32);
        let save = match write_pcap {
            Some(path) => Some(cap.savefile(path).map_err(|e| {
                CaptureError::Live(format!("cannot write {}: {e}", path.display()))
            })?),
            None => None,
        };
        Ok(LiveSource {
            cap,
            link,
            name: interface.to_string(),
            save,
            stats: SourceStats::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next packet, or `Idle` after the read timeout.
    pub fn poll(&mut self) -> Result<Poll<'_>, CaptureError> {
        match self.cap.next_packet() {
            Ok(packet) => {
                if let Some(save) = self.save.as_mut() {
                    save.write(&packet);
                }
                self.stats.packets += 1;
                self.stats.bytes += packet.header.caplen as u64 + 16;
                // time_t and suseconds_t are 32-bit on some platforms.
                #[allow(clippy::unnecessary_cast)]
                let ts = Timestamp::from_parts(
                    packet.header.ts.tv_sec as i64,
                    packet.header.ts.tv_usec as i64 * 1000,
                );
                Ok(Poll::Packet(Packet {
                    ts,
                    link: self.link,
                    data: packet.data,
                    orig_len: packet.header.len,
                }))
            }
            Err(pcap::Error::TimeoutExpired) => {
                std::thread::sleep(IDLE_WAIT);
                Ok(Poll::Idle)
            }
            Err(e) => Err(CaptureError::Live(format!(
                "capture on {} failed: {e}",
                self.name
            ))),
        }
    }

    /// libpcap's received/dropped counters, with what was read.
    pub fn stats(&mut self) -> SourceStats {
        if let Some(p) = self.pcap_counters() {
            self.stats.dropped = Some(p.dropped + p.if_dropped);
            self.stats.received = Some(p.received);
        }
        self.stats
    }

    /// libpcap's own counters (`pcap_stats`), apart; `None` when it cannot tell.
    pub fn pcap_counters(&mut self) -> Option<PcapCounters> {
        let s = self.cap.stats().ok()?;
        Some(PcapCounters {
            received: u64::from(s.received),
            dropped: u64::from(s.dropped),
            if_dropped: u64::from(s.if_dropped),
        })
    }

    /// Flush the saved capture, if any.
    pub fn finish(&mut self) {
        if let Some(save) = self.save.as_mut() {
            let _ = save.flush();
        }
    }
}
