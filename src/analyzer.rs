//! The [`Analyzer`] owns stages 2–5 (slicing, reassembly, framing, observation) and is fed
//! packets by any [`PacketSource`]: offline and live mode differ only in the source.

use serde::Serialize;

use crate::capture::{CaptureError, LinkType, Packet, PacketSource};
use crate::net::{self, SliceError, Sliced};
use crate::observe::{ConnState, InFlight, NodeStats, Observations, Observer, ObserverConfig};
use crate::tcp::{ConnInfo, FlowTable, TableConfig, TableStats};
use crate::warnings::{Warning, Warnings};

#[derive(Clone, Debug, Default)]
pub struct AnalyzerConfig {
    pub observer: ObserverConfig,
    pub table: TableConfig,
}

/// What was read, for the report's `input` section.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct InputSummary {
    // The contract's own fields are written by name in the JSON report; the rest of this
    // struct is flattened beside them.
    #[serde(skip)]
    pub path: String,
    #[serde(skip)]
    pub packets: u64,
    #[serde(skip)]
    pub bytes: u64,
    #[serde(skip)]
    pub first_ts: Option<f64>,
    #[serde(skip)]
    pub last_ts: Option<f64>,
    pub tcp_segments: u64,
    pub non_tcp_packets: u64,
    pub ip_fragments: u64,
    pub undecodable_packets: u64,
    /// TCP flows that carried no MongoDB message and used no MongoDB port.
    pub foreign_flows: u64,
    pub tcp_connections: u64,
    pub peak_open_connections: u64,
    pub reused_ports: u64,
    /// Packets libpcap dropped (live capture only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
    /// Packets libpcap received (live capture only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<u64>,
    /// Closed connections released from memory during a long live capture: counted in
    /// their clients' totals, absent from the connection list.
    #[serde(skip_serializing_if = "is_zero")]
    pub released_connections: u64,
    /// Whether the whole input was read (false after a truncated or damaged file).
    pub complete: bool,
}

impl InputSummary {
    /// The time the capture covers, for classification (`None` before a packet).
    pub fn window(&self) -> Option<crate::classify::Window> {
        match (self.first_ts, self.last_ts) {
            (Some(start), Some(end)) => Some(crate::classify::Window { start, end }),
            _ => None,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The result of stages 1–5: plain data for classification, attribution and reports.
#[derive(Clone, Debug)]
pub struct Analysis {
    pub input: InputSummary,
    pub warnings: Vec<Warning>,
    pub connections: Vec<Box<Observations>>,
    pub nodes: NodeStats,
    /// Peak operations in flight per (client host, appName, server).
    pub in_flight: InFlight,
    pub table: TableStats,
}

pub struct Analyzer {
    table: FlowTable<Box<ConnState>>,
    observer: Observer,
    input: InputSummary,
    warnings: Warnings,
    unsupported_links: Vec<LinkType>,
}

impl Analyzer {
    pub fn new(config: AnalyzerConfig) -> Analyzer {
        Analyzer {
            table: FlowTable::new(config.table),
            observer: Observer::new(config.observer),
            input: InputSummary {
                complete: true,
                ..InputSummary::default()
            },
            warnings: Warnings::default(),
            unsupported_links: Vec::new(),
        }
    }

    /// Feed one packet through slicing, reassembly and observation.
    pub fn packet(&mut self, packet: &Packet<'_>) {
        let input = &mut self.input;
        input.packets += 1;
        let secs = packet.ts.as_secs_f64();
        if input.first_ts.is_none() {
            input.first_ts = Some(secs);
        }
        input.last_ts = Some(secs);
        match net::slice(packet.link, packet.data, packet.orig_len) {
            Ok(Sliced::Tcp(segment)) => {
                input.tcp_segments += 1;
                self.table.segment(packet.ts, &segment, &mut self.observer);
            }
            Ok(Sliced::NotTcp) => input.non_tcp_packets += 1,
            Ok(Sliced::Fragment) => input.ip_fragments += 1,
            Err(SliceError::UnsupportedLink(link)) => {
                input.undecodable_packets += 1;
                if !self.unsupported_links.contains(&link) {
                    self.unsupported_links.push(link);
                    self.warnings.push(
                        "unsupported-link-type",
                        format!("packets with {link} cannot be decoded and were skipped"),
                    );
                }
            }
            Err(err) => {
                input.undecodable_packets += 1;
                self.warnings.push(
                    "undecodable-packet",
                    format!(
                        "packet {} ({} bytes): {err}",
                        input.packets,
                        packet.data.len()
                    ),
                );
            }
        }
    }

    /// The source stopped with an error: what came before is still analysed.
    pub fn source_failed(&mut self, err: &CaptureError) {
        self.input.complete = false;
        let kind = match err {
            CaptureError::Truncated { .. } => "truncated-file",
            CaptureError::RecordTooLarge { .. } => "bad-record-length",
            _ => "capture-error",
        };
        self.warnings.push(kind, err.to_string());
    }

    pub fn source_notes(&mut self, notes: Vec<String>) {
        for note in notes {
            self.warnings.push("capture-note", note);
        }
    }

    /// Connections so far, closed and open, without disturbing the analysis.
    pub fn snapshot(&self) -> Vec<Box<Observations>> {
        let mut all = self.observer.finished.clone();
        self.table
            .for_each_open(|info, state| all.push(Box::new(self.observer.peek(state, info))));
        all.sort_by_key(|o| o.id);
        all
    }

    /// Closed connections held in full detail.
    pub fn closed_held(&self) -> usize {
        self.observer.finished.len()
    }

    /// The oldest closed connections beyond the newest `keep`, to be released.
    pub fn closed_beyond(&self, keep: usize) -> std::collections::HashSet<u64> {
        let finished = &self.observer.finished;
        let excess = finished.len().saturating_sub(keep);
        finished[..excess].iter().map(|o| o.id).collect()
    }

    /// Drop these closed connections' records (they were folded into a summary).
    pub fn release(&mut self, ids: &std::collections::HashSet<u64>) {
        self.observer.finished.retain(|o| !ids.contains(&o.id));
    }

    /// Everything so far as an analysis (live refresh), leaving the analyzer running.
    pub fn snapshot_analysis(&self) -> Analysis {
        self.analysis_of(self.snapshot())
    }

    /// For a fold: the closed records held, moved out (not copied), oldest closed first.
    /// Hand back those still wanted with [`Analyzer::restore_closed`]; until then the
    /// analyzer holds none.
    pub fn take_closed(&mut self) -> Vec<Box<Observations>> {
        std::mem::take(&mut self.observer.finished)
    }

    /// Copies of the open connections whose connection info `wanted` accepts.
    pub fn peek_open(&self, wanted: impl Fn(&ConnInfo) -> bool) -> Vec<Box<Observations>> {
        let mut open = Vec::new();
        self.table.for_each_open(|info, state| {
            if wanted(info) {
                open.push(Box::new(self.observer.peek(state, info)));
            }
        });
        open
    }

    /// Closed records taken by [`Analyzer::take_closed`] and kept, oldest closed first.
    pub fn restore_closed(&mut self, kept: Vec<Box<Observations>>) {
        debug_assert!(self.observer.finished.is_empty());
        self.observer.finished = kept;
    }

    /// The time the capture covers so far (see [`InputSummary::window`]).
    pub fn window(&self) -> Option<crate::classify::Window> {
        self.input.window()
    }

    // Boxed records on purpose: a snapshot moves ~1 KB records as pointers.
    #[allow(clippy::vec_box)]
    fn analysis_of(&self, connections: Vec<Box<Observations>>) -> Analysis {
        let mut warnings = self.warnings.clone();
        warnings.merge(self.observer.warnings.clone());
        let mut input = self.input.clone();
        input.foreign_flows = self.observer.foreign_flows;
        input.tcp_connections = self.table.stats.connections;
        input.peak_open_connections = self.table.stats.peak_open;
        Analysis {
            input,
            warnings: warnings.into_list(),
            connections,
            nodes: self.observer.nodes.clone(),
            in_flight: self.observer.in_flight.clone(),
            table: self.table.stats,
        }
    }

    pub fn finish(mut self) -> Analysis {
        self.table.finish(&mut self.observer);
        let mut warnings = self.warnings;
        warnings.merge(std::mem::take(&mut self.observer.warnings));
        let undecrypted = self.observer.tls_connections - self.observer.tls_decrypted;
        if undecrypted > 0 {
            let why = if self.observer.has_keylog() {
                "the key log did not decrypt them"
            } else {
                "no key log was given (--keylog)"
            };
            warnings.push(
                "tls",
                format!(
                    "{undecrypted} of {} TLS-encrypted connection(s) on MongoDB ports were not decrypted ({why}): their messages are not visible, so their roles are inferred from TLS record shapes (see each connection's confidence)",
                    self.observer.tls_connections
                ),
            );
        }
        let mut input = self.input;
        input.foreign_flows = self.observer.foreign_flows;
        input.tcp_connections = self.table.stats.connections;
        input.peak_open_connections = self.table.stats.peak_open;
        input.reused_ports = self.table.stats.reused_ports;
        let mut connections = self.observer.finished;
        // Cached-key sort permutes with one swap per record; a plain sort moved each
        // ~1 KB record O(log n) times.
        connections.sort_by_cached_key(|o| o.id);
        Analysis {
            input,
            warnings: warnings.into_list(),
            connections,
            nodes: self.observer.nodes,
            in_flight: self.observer.in_flight,
            table: self.table.stats,
        }
    }
}

/// Counters for a progress display, from what the source and the flow table already count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub packets: u64,
    /// Capture bytes read so far (packet records).
    pub bytes: u64,
    pub connections: u64,
    /// The whole input has been read.
    pub done: bool,
}

/// Packets between two progress reports: a power of two, so the hot loop pays one mask
/// and compare per packet and the callback runs a few hundred times a second at most.
const PROGRESS_EVERY: u64 = 1 << 12;
/// Packets between two calls of [`analyze_with_hook`]'s `between`: often enough that a
/// bound on held connections is kept closely, and a cheap check when nothing is to do.
const HOOK_EVERY: u64 = 1 << 6;

/// Run stages 1–5 over a whole source.
pub fn analyze(source: &mut dyn PacketSource, config: AnalyzerConfig) -> Analysis {
    analyze_with_hook(source, config, &mut |_| {}, &mut |_| {})
}

/// [`analyze`], calling `on_progress` at the start, every few thousand packets and at the
/// end of the input, and handing the analyzer to `between` every few dozen packets:
/// where a caller folds old closed connections away to bound memory.
pub fn analyze_with_hook(
    source: &mut dyn PacketSource,
    config: AnalyzerConfig,
    on_progress: &mut dyn FnMut(Progress),
    between: &mut dyn FnMut(&mut Analyzer),
) -> Analysis {
    let mut analyzer = Analyzer::new(config);
    let progress = |source: &dyn PacketSource, analyzer: &Analyzer, done: bool| {
        let stats = source.stats();
        Progress {
            packets: stats.packets,
            bytes: stats.bytes,
            connections: analyzer.table.stats.connections,
            done,
        }
    };
    on_progress(progress(source, &analyzer, false));
    loop {
        match source.next_packet() {
            Ok(Some(packet)) => analyzer.packet(&packet),
            Ok(None) => break,
            Err(err) => {
                analyzer.source_failed(&err);
                break;
            }
        }
        if analyzer.input.packets & (HOOK_EVERY - 1) == 0 {
            between(&mut analyzer);
            if analyzer.input.packets & (PROGRESS_EVERY - 1) == 0 {
                on_progress(progress(source, &analyzer, false));
            }
        }
    }
    on_progress(progress(source, &analyzer, true));
    analyzer.source_notes(source.take_notes());
    let stats = source.stats();
    let mut analysis = analyzer.finish();
    analysis.input.path = source.name().to_string();
    analysis.input.bytes = stats.bytes;
    analysis.input.dropped = stats.dropped;
    analysis
}
