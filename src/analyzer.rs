//! The [`Analyzer`] owns stages 2–5 (slicing, reassembly, framing, observation) and is fed
//! packets by any [`PacketSource`]: offline and live mode differ only in the source.

use serde::Serialize;

use crate::capture::{CaptureError, LinkType, Packet, PacketSource, SourceStats};
use crate::net::{self, SliceError, Sliced};
use crate::observe::{ConnState, InFlight, NodeStats, Observations, Observer, ObserverConfig};
use crate::tcp::{ConnHandler, ConnInfo, FlowTable, TableConfig, TableStats};
use crate::warnings::{Warning, Warnings};

mod pipelined;
pub use pipelined::analyze_pipelined;

#[derive(Clone, Debug, Default)]
pub struct AnalyzerConfig {
    pub observer: ObserverConfig,
    pub table: TableConfig,
    /// Read and reassemble on a second thread ([`analyze_pipelined`]), for sources that
    /// can move to one: the same analysis, sooner on two free cores.
    pub pipelined: bool,
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
    /// Connections seen a second time on the far side of a NAT, counted once.
    #[serde(skip_serializing_if = "is_zero")]
    pub nat_duplicates: u64,
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

pub(crate) fn is_zero(n: &u64) -> bool {
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
    front: Front<ConnState>,
    observer: Observer,
}

/// Stages 2–4 for one packet, up to the flow table's handler: the part of the analysis
/// that knows nothing of MongoDB. Generic over the handler's per-connection state so that
/// the pipelined analyzer ([`pipelined`]) can run it on a thread of its own.
struct Front<S> {
    table: FlowTable<S>,
    input: InputSummary,
    warnings: Warnings,
    unsupported_links: Vec<LinkType>,
    /// TCP segments the snap length cut short, the most bytes such a packet kept, and
    /// the fewest TCP payload bytes such a segment kept.
    snapped: u64,
    snap_len: usize,
    snapped_payload: usize,
}

/// What the front hands on when the input ends.
struct FrontEnd {
    input: InputSummary,
    warnings: Warnings,
    table: TableStats,
}

impl<S> Front<S> {
    fn new(table: TableConfig) -> Front<S> {
        Front {
            table: FlowTable::new(table),
            input: InputSummary {
                complete: true,
                ..InputSummary::default()
            },
            warnings: Warnings::default(),
            unsupported_links: Vec::new(),
            snapped: 0,
            snap_len: 0,
            snapped_payload: usize::MAX,
        }
    }

    fn packet<H: ConnHandler<State = S>>(&mut self, packet: &Packet<'_>, handler: &mut H) {
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
                if segment.missing_tail > 0 {
                    self.snapped += 1;
                    self.snap_len = self.snap_len.max(packet.data.len());
                    self.snapped_payload = self.snapped_payload.min(segment.payload.len());
                }
                self.table.segment(packet.ts, &segment, handler);
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

    fn source_failed(&mut self, err: &CaptureError) {
        self.input.complete = false;
        let kind = match err {
            CaptureError::Truncated { .. } => "truncated-file",
            CaptureError::RecordTooLarge { .. } => "bad-record-length",
            _ => "capture-error",
        };
        self.warnings.push(kind, err.to_string());
    }

    fn source_notes(&mut self, notes: Vec<String>) {
        for note in notes {
            self.warnings.push("capture-note", note);
        }
    }

    /// End of input: every connection still open is handed to `handler` as open.
    fn finish<H: ConnHandler<State = S>>(mut self, handler: &mut H) -> FrontEnd {
        self.table.finish(handler);
        if self.snapped > 0 {
            // A message's start names its command within its first ~40 bytes (header,
            // flags, section kind, then the document's first key); a hello's telling
            // fields follow within ~100.
            let what = if self.snapped_payload < 64 {
                "some kept fewer than 64 bytes of TCP payload, too few for a message's command name, so the roles of those connections cannot be read; capture with `tcpdump -s 0` (or at least `-s 512`)"
            } else {
                "a message longer than what was kept is read from its start, which holds its command name and a hello's first fields, so roles and operation counts hold, but later fields (a long handshake's client metadata, a reply's host list) may be missing; capture with `tcpdump -s 0` for whole messages"
            };
            self.warnings.push(
                "snap-length",
                format!(
                    "{} of {} TCP segments were cut short by the capture's snap length (at most {} bytes of a packet kept): {what}",
                    self.snapped, self.input.tcp_segments, self.snap_len
                ),
            );
        }
        FrontEnd {
            input: self.input,
            warnings: self.warnings,
            table: self.table.stats,
        }
    }
}

/// The input's figures that only the observer knows, added to the front's.
fn input_with(mut input: InputSummary, observer: &Observer, table: &TableStats) -> InputSummary {
    input.foreign_flows = observer.foreign_flows;
    input.tcp_connections = table.connections;
    input.peak_open_connections = table.peak_open;
    input.reused_ports = table.reused_ports;
    input.nat_duplicates = table.nat_mirrors;
    input
}

/// Stages 1–5 done: the front's and the observer's results as one analysis.
fn finish_analysis(front: FrontEnd, mut observer: Observer) -> Analysis {
    let mut warnings = front.warnings;
    warnings.merge(std::mem::take(&mut observer.warnings));
    let undecrypted = observer.tls_connections - observer.tls_decrypted;
    if undecrypted > 0 {
        let why = match observer.tls_without_handshake {
            _ if !observer.has_keylog() => "no key log was given (--keylog)".to_string(),
            0 => "the key log did not decrypt them".to_string(),
            n => format!(
                "the key log did not decrypt them; {n} of them began before the capture, so the ClientHello whose client random names their keys is missing, and trying the key log's TLS 1.3 secrets on their records did not find them (a TLS 1.2 session, a session not in the key log, or one rekeyed before the capture){}: capture from before the application connects to decrypt those",
                match observer.key_searches_starved() {
                    0 => String::new(),
                    cut => format!(
                        "; {cut} search(es) were cut short, the analysis' budget of {} tries spent",
                        crate::tls::trial::TRIAL_BUDGET
                    ),
                }
            ),
        };
        warnings.push(
            "tls",
            format!(
                "{undecrypted} of {} TLS-encrypted connection(s) on MongoDB ports were not decrypted ({why}): their messages are not visible, so their roles are inferred from TLS record shapes (see each connection's confidence)",
                observer.tls_connections
            ),
        );
    }
    node_life_warnings(&observer.nodes, front.input.first_ts, &mut warnings);
    if front.table.nat_mirrors > 0 {
        warnings.push(
            "nat-duplicates",
            format!(
                "{} connection(s) were captured twice, under other addresses the second time, with the same TCP sequence numbers: the two sides of a NAT (tcpdump -i any on a container host or Kubernetes node sees a masqueraded container's traffic on its veth and again on the uplink). Each is counted once, under the addresses first seen",
                front.table.nat_mirrors
            ),
        );
    }
    let input = input_with(front.input, &observer, &front.table);
    let mut connections = observer.finished;
    // Cached-key sort permutes with one swap per record; a plain sort moved each
    // ~1 KB record O(log n) times.
    connections.sort_by_cached_key(|o| o.id);
    Analysis {
        input,
        warnings: warnings.into_list(),
        connections,
        nodes: observer.nodes,
        in_flight: observer.in_flight,
        table: front.table,
    }
}

/// A node that restarted during the capture, or refused or never answered connection
/// attempts: one warning each, in node order. Such attempts are not connections (the
/// server never held them), so these warnings are where they are counted.
/// Role changes a warning spells out; the report's node table has them all.
const MAX_ROLE_STEPS_TOLD: usize = 4;

fn node_life_warnings(nodes: &NodeStats, start: Option<f64>, warnings: &mut Warnings) {
    let at = |ts: f64| format!("{:.1} s", ts - start.unwrap_or(ts));
    let span = |a: &crate::observe::Attempts| match (a.first, a.last) {
        (Some(first), Some(last)) if last > first => {
            format!("between {} and {} into the capture", at(first), at(last))
        }
        (Some(first), _) => format!("at {} into the capture", at(first)),
        _ => String::new(),
    };
    let attempts = |n: u64| format!("{n} connection attempt{}", if n == 1 { "" } else { "s" });
    let mut life: Vec<_> = nodes.life.iter().collect();
    life.sort_by_key(|(node, _)| **node);
    for (node, life) in life {
        let restarts: Vec<String> = life.restarts().map(at).collect();
        let refused = (life.refused.count > 0).then(|| {
            format!(
                "{} refused {} (each SYN answered by a RST: nothing listening on the port, as while a mongod is stopped or restarting)",
                attempts(life.refused.count),
                span(&life.refused)
            )
        });
        let changes = life.role_changes();
        if !changes.is_empty() {
            let steps: Vec<String> = changes
                .iter()
                .take(MAX_ROLE_STEPS_TOLD)
                .map(|(from, to)| {
                    format!("{} until {}, then {}", from.text(), at(to.since), to.text())
                })
                .collect();
            let more = match changes.len().saturating_sub(MAX_ROLE_STEPS_TOLD) {
                0 => String::new(),
                n => format!("; and {n} more (each node's role_changes in the report)"),
            };
            let roles = changes.iter().flat_map(|(from, to)| [from, to]);
            let was_primary = roles.clone().any(|r| r.is_primary());
            let why = if was_primary {
                " (a stepdown or an election: drivers move their writes to the new primary, whose pool grows, and on 4.2+ servers keep their connections to the old one)"
            } else if roles.clone().any(|r| r.set_name.is_none()) {
                " (a reconfig removed it from the set, or it lost its config: drivers drop it once they see the new config)"
            } else {
                ""
            };
            warnings.push(
                "role-change",
                format!(
                    "{node} changed role during the capture: {}{more}{why}",
                    steps.join("; ")
                ),
            );
        }
        if life.concurrent() {
            let n = life.processes.len();
            let roles = life.side_by_side_roles();
            let answering = if roles.len() > 1 {
                let texts: Vec<String> = roles.iter().map(|r| r.text()).collect();
                format!(
                    ". They answer in different roles ({}): a proxy or Service that spreads one address over members in different roles, so a driver that connects through it directly sends operations to whichever member its connection reached",
                    texts.join(", ")
                )
            } else {
                String::new()
            };
            warnings.push(
                "several-processes",
                format!(
                    "{node}: {}{n} server processes answered at this address side by side (hello replies name different topologyVersion.processId on connections open at the same time): a load balancer or proxy in front of several mongos or mongod, not restarts; its connections are spread over them{answering}",
                    if n >= crate::observe::MAX_PROCESSES { "at least " } else { "" }
                ),
            );
        }
        if !restarts.is_empty() {
            warnings.push(
                "node-restart",
                format!(
                    "{node} restarted during the capture: its hello replies name {} processes (topologyVersion.processId), a new one from {} into the capture. A restart closes every connection to it and its clients reconnect, so their connections to it are counted before and after{}",
                    life.processes.len(),
                    restarts.join(", "),
                    refused.map(|r| format!("; {r}")).unwrap_or_default()
                ),
            );
        } else if let Some(refused) = refused {
            warnings.push(
                "refused-connections",
                format!("{node}: {refused}; they are not counted as connections"),
            );
        }
        if life.unanswered.count > 0 {
            warnings.push(
                "unanswered-connections",
                format!(
                    "{node}: {} {} never answered (no SYN-ACK: the host down or unreachable, a firewall dropping them, or the capture ended first); they are not counted as connections",
                    attempts(life.unanswered.count),
                    span(&life.unanswered)
                ),
            );
        }
    }
}

/// What a caller's hook between packets may do with the analysis so far: fold old closed
/// connections away to bound memory. Both analyzers, on one thread or two, offer it.
pub trait Held {
    /// The closed records held in full detail, oldest closed first.
    fn closed(&self) -> &[Box<Observations>];
    fn closed_mut(&mut self) -> &mut Vec<Box<Observations>>;
    /// Copies of the open connections whose connection info `wanted` accepts, in no
    /// particular order.
    fn peek_open(&self, wanted: &dyn Fn(&ConnInfo) -> bool) -> Vec<Box<Observations>>;
    /// The time the capture covers so far (see [`InputSummary::window`]).
    fn window(&self) -> Option<crate::classify::Window>;

    /// Closed connections held in full detail.
    fn closed_held(&self) -> usize {
        self.closed().len()
    }
    /// The closed records held, moved out (not copied), oldest closed first. Hand back
    /// those still wanted with [`Held::restore_closed`]; until then none are held.
    fn take_closed(&mut self) -> Vec<Box<Observations>> {
        std::mem::take(self.closed_mut())
    }
    /// Closed records taken by [`Held::take_closed`] and kept, oldest closed first.
    fn restore_closed(&mut self, kept: Vec<Box<Observations>>) {
        debug_assert!(self.closed().is_empty());
        *self.closed_mut() = kept;
    }
}

impl Analyzer {
    pub fn new(config: AnalyzerConfig) -> Analyzer {
        Analyzer {
            front: Front::new(config.table),
            observer: Observer::new(config.observer),
        }
    }

    /// Feed one packet through slicing, reassembly and observation.
    pub fn packet(&mut self, packet: &Packet<'_>) {
        self.front.packet(packet, &mut self.observer);
    }

    /// The source stopped with an error: what came before is still analysed.
    pub fn source_failed(&mut self, err: &CaptureError) {
        self.front.source_failed(err);
    }

    pub fn source_notes(&mut self, notes: Vec<String>) {
        self.front.source_notes(notes);
    }

    /// Connections so far, closed and open, without disturbing the analysis.
    pub fn snapshot(&self) -> Vec<Box<Observations>> {
        let mut all = self.observer.finished.clone();
        all.extend(self.peek_open(&|_| true));
        all.sort_by_key(|o| o.id);
        all
    }

    /// The oldest closed connections beyond the newest `keep`, to be released.
    pub fn closed_beyond(&self, keep: usize) -> std::collections::HashSet<u64> {
        let finished = &self.observer.finished;
        let excess = finished.len().saturating_sub(keep);
        finished[..excess]
            .iter()
            .filter(|o| o.releasable())
            .map(|o| o.id)
            .collect()
    }

    /// Drop these closed connections' records (they were folded into a summary).
    pub fn release(&mut self, ids: &std::collections::HashSet<u64>) {
        self.observer.finished.retain(|o| !ids.contains(&o.id));
    }

    /// Everything so far as an analysis (live refresh), leaving the analyzer running.
    pub fn snapshot_analysis(&self) -> Analysis {
        self.analysis_of(self.snapshot())
    }

    // Boxed records on purpose: a snapshot moves ~1 KB records as pointers.
    #[allow(clippy::vec_box)]
    fn analysis_of(&self, connections: Vec<Box<Observations>>) -> Analysis {
        let front = &self.front;
        let mut warnings = front.warnings.clone();
        warnings.merge(self.observer.warnings.clone());
        Analysis {
            input: input_with(front.input.clone(), &self.observer, &front.table.stats),
            warnings: warnings.into_list(),
            connections,
            nodes: self.observer.nodes.clone(),
            in_flight: self.observer.in_flight.clone(),
            table: front.table.stats,
        }
    }

    pub fn finish(mut self) -> Analysis {
        let front = self.front.finish(&mut self.observer);
        finish_analysis(front, self.observer)
    }
}

impl Held for Analyzer {
    fn closed(&self) -> &[Box<Observations>] {
        &self.observer.finished
    }

    fn closed_mut(&mut self) -> &mut Vec<Box<Observations>> {
        &mut self.observer.finished
    }

    fn peek_open(&self, wanted: &dyn Fn(&ConnInfo) -> bool) -> Vec<Box<Observations>> {
        let mut open = Vec::new();
        self.front.table.for_each_open(|info, state| {
            if wanted(info) {
                open.extend(self.observer.peek(state, info).map(Box::new));
            }
        });
        open
    }

    fn window(&self) -> Option<crate::classify::Window> {
        self.front.input.window()
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

impl Progress {
    fn of(source: SourceStats, connections: u64, done: bool) -> Progress {
        Progress {
            packets: source.packets,
            bytes: source.bytes,
            connections,
            done,
        }
    }
}

/// Packets between two progress reports: a power of two, so the hot loop pays one mask
/// and compare per packet and the callback runs a few hundred times a second at most.
const PROGRESS_EVERY: u64 = 1 << 12;
/// Packets between two calls of [`analyze_with_hook`]'s `between`: often enough that a
/// bound on held connections is kept closely, and a cheap check when nothing is to do.
const HOOK_EVERY: u64 = 1 << 6;

/// What the read loop hands its caller, in input order.
enum Step<'a, 'p> {
    Packet(&'a Packet<'p>),
    /// Every [`HOOK_EVERY`] packets: where a caller may fold.
    Hook,
    /// At the start, every [`PROGRESS_EVERY`] packets, and (done) at the end.
    Progress(SourceStats, bool),
    /// The source failed; nothing follows but the final progress.
    Failed(&'a CaptureError),
}

/// The read loop both analyzers share, one thread or two.
fn read_source(source: &mut dyn PacketSource, mut step: impl FnMut(Step<'_, '_>)) {
    step(Step::Progress(source.stats(), false));
    let mut packets: u64 = 0;
    loop {
        match source.next_packet() {
            Ok(Some(packet)) => step(Step::Packet(&packet)),
            Ok(None) => break,
            Err(err) => {
                step(Step::Failed(&err));
                break;
            }
        }
        packets += 1;
        if packets & (HOOK_EVERY - 1) == 0 {
            step(Step::Hook);
            if packets & (PROGRESS_EVERY - 1) == 0 {
                step(Step::Progress(source.stats(), false));
            }
        }
    }
    step(Step::Progress(source.stats(), true));
}

/// The source's own figures, once it is read.
fn with_source(mut analysis: Analysis, source: &mut dyn PacketSource) -> Analysis {
    let stats = source.stats();
    analysis.input.path = source.name().to_string();
    analysis.input.bytes = stats.bytes;
    analysis.input.dropped = stats.dropped;
    analysis
}

/// Run stages 1–5 over a whole source.
pub fn analyze(source: &mut dyn PacketSource, config: AnalyzerConfig) -> Analysis {
    analyze_with_hook(source, config, &mut |_| {}, &mut |_| {})
}

/// [`analyze`], calling `on_progress` at the start, every few thousand packets and at the
/// end of the input, and handing the analysis so far to `between` every few dozen packets:
/// where a caller folds old closed connections away to bound memory.
pub fn analyze_with_hook(
    source: &mut dyn PacketSource,
    config: AnalyzerConfig,
    on_progress: &mut dyn FnMut(Progress),
    between: &mut dyn FnMut(&mut dyn Held),
) -> Analysis {
    let mut analyzer = Analyzer::new(config);
    read_source(source, |step| match step {
        Step::Packet(packet) => analyzer.packet(packet),
        Step::Hook => between(&mut analyzer),
        Step::Progress(stats, done) => on_progress(Progress::of(
            stats,
            analyzer.front.table.stats.connections,
            done,
        )),
        Step::Failed(err) => analyzer.source_failed(err),
    });
    analyzer.source_notes(source.take_notes());
    with_source(analyzer.finish(), source)
}
