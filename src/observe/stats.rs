//! Small numeric summaries: per connection a bounded [`Summary`], per server node
//! hdrhistograms ([`NodeStats`]) for heartbeat cadence, hello round trips and operation
//! latency. Both have a fixed size however long the capture is.

use std::net::SocketAddr;

use hdrhistogram::Histogram;

use crate::tcp::FailedAttempt;
use serde::Serialize;

/// Samples kept per summary for medians; the first ones are representative enough for
/// a cadence, and the bound keeps a busy connection's record small.
const SAMPLES: usize = 32;

/// Count, min, max and mean, in a fixed size.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub sum: f64,
}

impl Summary {
    pub fn add(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = Some(self.min.map_or(value, |m| m.min(value)));
        self.max = Some(self.max.map_or(value, |m| m.max(value)));
    }
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// A [`Summary`] that also keeps its first samples for a median: only for the series whose
/// median classification reads (hello cadence), so that the others' records do not carry
/// an empty vector each (24 bytes per series, per connection held).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SampledSummary {
    #[serde(flatten)]
    summary: Summary,
    #[serde(skip)]
    samples: Vec<f32>,
}

impl std::ops::Deref for SampledSummary {
    type Target = Summary;
    fn deref(&self) -> &Summary {
        &self.summary
    }
}

impl SampledSummary {
    pub fn add_sample(&mut self, value: f64) {
        self.summary.add(value);
        if self.samples.len() < SAMPLES {
            self.samples.push(value as f32);
        }
    }
    pub fn median(&self) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        let mut s = self.samples.clone();
        s.sort_by(|a, b| a.total_cmp(b));
        Some(s[s.len() / 2] as f64)
    }
}

/// Hello times kept per connection at most: enough to draw a monitor's cadence, and a
/// bound on what a long-lived monitor costs (256 bytes).
pub const MAX_HELLO_TICKS: usize = 64;

/// When a connection sent hellos and received streamed heartbeats, for the HTML
/// timeline: milliseconds after the connection's first packet, bounded. When the record
/// is full, every other tick is dropped and only every second hello from then on is kept,
/// so the ticks stay spread over the whole connection, `every` hellos apart.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HelloTicks {
    offsets_ms: Vec<u32>,
    /// Hellos seen, kept or not.
    seen: u32,
    /// One hello in `every` is kept (a power of two; 0 before the first thinning means 1).
    every: u32,
}

impl HelloTicks {
    /// A hello `secs` after the connection's first packet.
    pub fn record(&mut self, secs: f64) {
        let n = self.seen;
        self.seen = self.seen.saturating_add(1);
        if n % self.every() != 0 {
            return;
        }
        if self.offsets_ms.len() == MAX_HELLO_TICKS {
            let mut index = 0;
            self.offsets_ms.retain(|_| {
                index += 1;
                index % 2 == 1
            });
            self.every = self.every() * 2;
            if n % self.every != 0 {
                return;
            }
        }
        // Float to integer casts saturate: a negative or huge offset cannot wrap.
        self.offsets_ms.push((secs * 1000.0) as u32);
    }
    /// The kept ticks, in milliseconds after the connection's first packet.
    pub fn offsets_ms(&self) -> &[u32] {
        &self.offsets_ms
    }
    /// How many hellos apart the kept ticks are (1: every hello is drawn).
    pub fn every(&self) -> u32 {
        self.every.max(1)
    }
    /// Hellos seen, drawn or not.
    pub fn seen(&self) -> u32 {
        self.seen
    }
}

/// p50/p99/max of a histogram, in the histogram's unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Clone, Debug)]
pub struct NodeHistograms {
    /// Seconds between consecutive hello replies on monitoring connections, in ms.
    pub heartbeat_ms: Histogram<u64>,
    /// Round trip of non-awaitable hellos, µs.
    pub hello_rtt_us: Histogram<u64>,
    /// Round trip of operations, µs.
    pub op_latency_us: Histogram<u64>,
}

impl Default for NodeHistograms {
    fn default() -> Self {
        let h = || Histogram::new(2).expect("2 significant figures is valid");
        NodeHistograms {
            heartbeat_ms: h(),
            hello_rtt_us: h(),
            op_latency_us: h(),
        }
    }
}

/// A histogram cut into equal-width bins between its smallest and largest value, for
/// small charts in reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Bins {
    pub lo: f64,
    pub hi: f64,
    pub counts: Vec<u64>,
}

fn bins(h: &Histogram<u64>, scale: f64, n: usize) -> Option<Bins> {
    if h.is_empty() {
        return None;
    }
    let (lo, hi) = (h.min() as f64 / scale, h.max() as f64 / scale);
    let mut counts = vec![0u64; n];
    let width = (hi - lo) / n as f64;
    for v in h.iter_recorded() {
        let x = v.value_iterated_to() as f64 / scale;
        let i = if width > 0.0 {
            (((x - lo) / width) as usize).min(n - 1)
        } else {
            0
        };
        counts[i] += v.count_at_value();
    }
    Some(Bins { lo, hi, counts })
}

/// Bins per chart: enough to show a shape, few enough to stay a thumbnail.
const CHART_BINS: usize = 16;

fn percentiles(h: &Histogram<u64>, scale: f64) -> Option<Percentiles> {
    (!h.is_empty()).then(|| Percentiles {
        count: h.len(),
        p50: h.value_at_quantile(0.5) as f64 / scale,
        p99: h.value_at_quantile(0.99) as f64 / scale,
        max: h.max() as f64 / scale,
    })
}

impl NodeHistograms {
    /// Heartbeat interval in seconds.
    pub fn heartbeat(&self) -> Option<Percentiles> {
        percentiles(&self.heartbeat_ms, 1000.0)
    }
    /// Heartbeat intervals in seconds, binned.
    pub fn heartbeat_bins(&self) -> Option<Bins> {
        bins(&self.heartbeat_ms, 1000.0, CHART_BINS)
    }
    /// Hello round trips in milliseconds, binned.
    pub fn hello_rtt_bins(&self) -> Option<Bins> {
        bins(&self.hello_rtt_us, 1000.0, CHART_BINS)
    }
    /// Hello round trip in milliseconds.
    pub fn hello_rtt(&self) -> Option<Percentiles> {
        percentiles(&self.hello_rtt_us, 1000.0)
    }
    /// Operation latency in milliseconds.
    pub fn op_latency(&self) -> Option<Percentiles> {
        percentiles(&self.op_latency_us, 1000.0)
    }
}

/// Processes kept per node: a restart starts a new one, and a few restarts in one
/// capture are worth naming; more only repeat the story.
pub const MAX_PROCESSES: usize = 8;

/// One server process, as hello replies name it (`topologyVersion.processId`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcessSeen {
    pub process_id: [u8; 12],
    /// The first whole hello reply read from it (epoch seconds).
    pub first_seen: f64,
    /// Until when a connection that heard it was open: its first FIN or RST, or forever
    /// when none was captured.
    pub heard_until: f64,
}

/// Role changes kept per node: a few failovers are worth naming; more only repeat them.
pub const MAX_ROLES: usize = 16;

/// A role a node's hello replies stated ([`crate::observe::ServerInfo::role_parts`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RoleSeen {
    /// When a reply first stated it (epoch seconds).
    pub since: f64,
    pub role: &'static str,
    pub set_name: Option<String>,
    /// The process that stated it (`topologyVersion.processId`; servers before 4.4 name
    /// none).
    pub process: Option<[u8; 12]>,
}

impl RoleSeen {
    pub fn is_primary(&self) -> bool {
        self.role == "primary"
    }

    pub fn same_role(&self, other: &RoleSeen) -> bool {
        self.role == other.role && self.set_name == other.set_name
    }

    /// "primary of rs0".
    pub fn text(&self) -> String {
        role_text(self.role, self.set_name.as_deref())
    }
}

pub fn role_text(role: &str, set: Option<&str>) -> String {
    match set {
        Some(set) => format!("{role} of {set}"),
        None => role.to_string(),
    }
}

/// Connection attempts a node never accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Attempts {
    pub count: u64,
    /// The first and last attempt's SYN (epoch seconds).
    pub first: Option<f64>,
    pub last: Option<f64>,
}

impl Attempts {
    fn add(&mut self, ts: f64) {
        self.count += 1;
        self.first = Some(self.first.map_or(ts, |f| f.min(ts)));
        self.last = Some(self.last.map_or(ts, |l| l.max(ts)));
    }
}

/// What a node's traffic says of its life: the processes that answered (more than one:
/// it restarted during the capture) and the connection attempts it refused or left
/// unanswered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeLife {
    /// In the order first seen; at most [`MAX_PROCESSES`].
    pub processes: Vec<ProcessSeen>,
    /// The roles its hello replies stated, each from when first heard: more than one when
    /// it stepped down or was elected during the capture. At most [`MAX_ROLES`].
    pub roles: Vec<RoleSeen>,
    pub refused: Attempts,
    pub unanswered: Attempts,
}

impl NodeLife {
    /// When each process after the first was first seen: the node's restarts. None when
    /// its processes answered at the same time ([`NodeLife::concurrent`]).
    pub fn restarts(&self) -> impl Iterator<Item = f64> + '_ {
        let successive = !self.concurrent();
        self.processes
            .iter()
            .skip(1)
            .filter(move |_| successive)
            .map(|p| p.first_seen)
    }

    /// Two processes answered at once: a connection that heard one was still open when
    /// another first answered. A restarted mongod's old process is gone, its sockets
    /// closed, before the new one answers; processes behind a load balancer or proxy (a
    /// set of mongos behind one address) answer side by side.
    pub fn concurrent(&self) -> bool {
        side_by_side(self.processes.iter().map(|p| (p.first_seen, p.heard_until)))
    }

    /// Its changes of role, as (from, to), in time order. Processes that answer side by
    /// side each keep their own role, so only a process's own steps are changes there;
    /// successive processes (restarts) are one timeline.
    pub fn role_changes(&self) -> Vec<(&RoleSeen, &RoleSeen)> {
        let concurrent = self.concurrent();
        let mut changes: Vec<(&RoleSeen, &RoleSeen)> = Vec::new();
        for (i, to) in self.roles.iter().enumerate() {
            let from = if concurrent {
                self.roles[..i]
                    .iter()
                    .rev()
                    .find(|r| r.process == to.process)
            } else {
                // One timeline: a restarted process restating its role is no change.
                changes.last().map(|c| c.1).or(self.roles.first())
            };
            if let Some(from) = from.filter(|from| !from.same_role(to)) {
                changes.push((from, to));
            }
        }
        changes
    }

    /// The roles its side-by-side processes stated last, distinct, in the order first
    /// seen: more than one when a proxy spreads one address over members in different
    /// roles. Empty unless [`NodeLife::concurrent`].
    pub fn side_by_side_roles(&self) -> Vec<&RoleSeen> {
        if !self.concurrent() {
            return Vec::new();
        }
        let mut last: Vec<&RoleSeen> = Vec::new();
        for role in &self.roles {
            match last.iter_mut().find(|r| r.process == role.process) {
                Some(seen) => *seen = role,
                None => last.push(role),
            }
        }
        let mut distinct: Vec<&RoleSeen> = Vec::new();
        for role in last {
            if !distinct.iter().any(|d| d.same_role(role)) {
                distinct.push(role);
            }
        }
        distinct
    }

    /// The role it answers in now: the last stated, or all of its side-by-side
    /// processes' roles ("primary of rs0 / secondary of rs0").
    pub fn current_role(&self) -> Option<String> {
        let side_by_side = self.side_by_side_roles();
        if side_by_side.len() > 1 {
            let texts: Vec<String> = side_by_side.iter().map(|r| r.text()).collect();
            return Some(texts.join(" / "));
        }
        self.roles.last().map(RoleSeen::text)
    }
}

/// Whether processes, each as (first answered, heard until), answered side by side: one
/// was still heard when another first answered.
pub fn side_by_side(processes: impl Iterator<Item = (f64, f64)>) -> bool {
    let mut order: Vec<(f64, f64)> = processes.collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut heard_until = f64::NEG_INFINITY;
    order.into_iter().any(|(first, until)| {
        let overlaps = heard_until > first;
        heard_until = heard_until.max(until);
        overlaps
    })
}

/// Histograms per server endpoint.
#[derive(Clone, Debug, Default)]
pub struct NodeStats {
    /// Each node's histograms, in the order its first reply came. Found by a [`NodeSlot`]
    /// that a connection keeps for its server: replies (a record each) skip the lookup.
    histograms: Vec<(SocketAddr, NodeHistograms)>,
    slots: rustc_hash::FxHashMap<SocketAddr, NodeSlot>,
    /// Only for nodes with a whole hello reply or a failed attempt seen: written once per
    /// connection or role change, not per message.
    pub life: rustc_hash::FxHashMap<SocketAddr, NodeLife>,
}

/// Where a node's histograms are in [`NodeStats`]: the index plus one, so that an
/// `Option<NodeSlot>` in every open connection's state takes four bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeSlot(std::num::NonZeroU32);

impl NodeSlot {
    fn index(self) -> usize {
        self.0.get() as usize - 1
    }
}

impl NodeStats {
    /// `server`'s slot, made at its first reply.
    pub fn slot(&mut self, server: SocketAddr) -> NodeSlot {
        let histograms = &mut self.histograms;
        *self.slots.entry(server).or_insert_with(|| {
            histograms.push((server, NodeHistograms::default()));
            let count = u32::try_from(histograms.len()).ok();
            NodeSlot(
                count
                    .and_then(std::num::NonZeroU32::new)
                    .expect("1 to 2^32 - 1 nodes"),
            )
        })
    }
    /// A node's histograms, when any reply from it was timed.
    pub fn histograms(&self, server: &SocketAddr) -> Option<&NodeHistograms> {
        let slot = *self.slots.get(server)?;
        Some(&self.histograms[slot.index()].1)
    }
    /// Every node with a reply timed, in the order the first came.
    pub fn all_histograms(&self) -> impl Iterator<Item = &(SocketAddr, NodeHistograms)> {
        self.histograms.iter()
    }
    fn node(&mut self, slot: NodeSlot) -> &mut NodeHistograms {
        &mut self.histograms[slot.index()].1
    }
    // `record` (not `saturating_record`) so the auto-resizing histograms grow to the value;
    // it can only fail beyond u64, which a float-to-int cast cannot produce.
    pub fn heartbeat(&mut self, node: NodeSlot, secs: f64) {
        let _ = self.node(node).heartbeat_ms.record((secs * 1000.0) as u64);
    }
    pub fn hello_rtt(&mut self, node: NodeSlot, ms: f64) {
        let _ = self.node(node).hello_rtt_us.record((ms * 1000.0) as u64);
    }
    pub fn op_latency(&mut self, node: NodeSlot, ms: f64) {
        let _ = self.node(node).op_latency_us.record((ms * 1000.0) as u64);
    }
    /// A whole hello reply from `server` naming its process.
    pub fn process(&mut self, server: SocketAddr, process_id: [u8; 12], ts: f64) {
        let processes = &mut self.life.entry(server).or_default().processes;
        if let Some(p) = processes.iter_mut().find(|p| p.process_id == process_id) {
            p.first_seen = p.first_seen.min(ts);
            p.heard_until = p.heard_until.max(ts);
        } else if processes.len() < MAX_PROCESSES {
            processes.push(ProcessSeen {
                process_id,
                first_seen: ts,
                heard_until: ts,
            });
        }
        // Replies reach here in capture order, nearly: keep the order exact.
        processes.sort_by(|a, b| a.first_seen.total_cmp(&b.first_seen));
    }
    /// A whole hello reply from `server` at `ts`, from `process` when it named one,
    /// stated this role: a change of that process's role is recorded.
    pub fn role(
        &mut self,
        server: SocketAddr,
        (role, set): (&'static str, Option<&str>),
        process: Option<[u8; 12]>,
        ts: f64,
    ) {
        let roles = &mut self.life.entry(server).or_default().roles;
        let same = |r: &RoleSeen| r.role == role && r.set_name.as_deref() == set;
        let last_of_process = roles.iter().rev().find(|r| r.process == process);
        if last_of_process.is_some_and(same) || roles.len() >= MAX_ROLES {
            return;
        }
        roles.push(RoleSeen {
            since: ts,
            role,
            set_name: set.map(str::to_string),
            process,
        });
    }
    /// A connection that heard `process_id` (at `server`) was open until `until`.
    pub fn process_heard_until(&mut self, server: SocketAddr, process_id: [u8; 12], until: f64) {
        let heard = self.life.get_mut(&server).and_then(|life| {
            life.processes
                .iter_mut()
                .find(|p| p.process_id == process_id)
        });
        if let Some(p) = heard {
            p.heard_until = p.heard_until.max(until);
        }
    }
    /// A connection attempt to `server` that never became a connection, sent at `ts`.
    pub fn failed_attempt(&mut self, server: SocketAddr, how: FailedAttempt, ts: f64) {
        let life = self.life.entry(server).or_default();
        match how {
            FailedAttempt::Refused => life.refused.add(ts),
            FailedAttempt::Unanswered => life.unanswered.add(ts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_side_by_side_keep_their_own_roles_and_a_restart_continues_the_timeline() {
        let node: SocketAddr = "10.0.0.1:27017".parse().unwrap();
        let primary = ("primary", Some("rs0"));
        let secondary = ("secondary", Some("rs0"));
        let (a, b) = ([1; 12], [2; 12]);
        // A proxy in front of two members: its connections answer in turn as each.
        let mut stats = NodeStats::default();
        for (i, ts) in [1.0, 2.0, 3.0, 4.0].into_iter().enumerate() {
            let (process, role) = if i % 2 == 0 {
                (a, primary)
            } else {
                (b, secondary)
            };
            stats.process(node, process, ts);
            stats.role(node, role, Some(process), ts);
        }
        stats.process_heard_until(node, a, f64::INFINITY);
        let life = &stats.life[&node];
        assert!(life.concurrent());
        assert!(life.role_changes().is_empty());
        assert_eq!(
            life.current_role().as_deref(),
            Some("primary of rs0 / secondary of rs0")
        );
        // One of them steps down: that is a change, of that process.
        stats.role(node, secondary, Some(a), 5.0);
        let life = &stats.life[&node];
        let changes: Vec<(String, String, f64)> = life
            .role_changes()
            .into_iter()
            .map(|(from, to)| (from.text(), to.text(), to.since))
            .collect();
        assert_eq!(
            changes,
            vec![("primary of rs0".into(), "secondary of rs0".into(), 5.0)]
        );
        assert_eq!(life.current_role().as_deref(), Some("secondary of rs0"));

        // A restart: the new process restating the old one's role is no change; coming
        // back as a secondary is.
        let mut stats = NodeStats::default();
        stats.process(node, a, 1.0);
        stats.role(node, primary, Some(a), 1.0);
        stats.process_heard_until(node, a, 2.0);
        stats.process(node, b, 3.0);
        stats.role(node, primary, Some(b), 3.0);
        assert!(stats.life[&node].role_changes().is_empty());
        stats.role(node, secondary, Some(b), 4.0);
        let life = &stats.life[&node];
        assert_eq!(life.role_changes().len(), 1);
        assert_eq!(life.current_role().as_deref(), Some("secondary of rs0"));
    }

    #[test]
    fn a_restart_is_processes_one_after_another_and_a_balancer_side_by_side() {
        let node: SocketAddr = "10.0.0.1:27017".parse().unwrap();
        let (old, new) = ([1; 12], [2; 12]);
        // The old process's connections close at 6 s; the new one answers at 10 s.
        let mut stats = NodeStats::default();
        stats.process(node, old, 1.0);
        stats.process_heard_until(node, old, 6.0);
        stats.process(node, new, 10.0);
        stats.process_heard_until(node, new, f64::INFINITY);
        let life = &stats.life[&node];
        assert!(!life.concurrent());
        assert_eq!(life.restarts().collect::<Vec<_>>(), vec![10.0]);
        // Behind a balancer: a connection to the first is still open when the second
        // answers, though the first answered no handshake after it.
        stats.process_heard_until(node, old, 12.0);
        let life = &stats.life[&node];
        assert!(life.concurrent());
        assert_eq!(life.restarts().count(), 0);
        // A process heard only later than another ended: successive, in any order given.
        assert!(!side_by_side([(5.0, 9.0), (1.0, 5.0)].into_iter()));
        assert!(side_by_side(
            [(5.0, 9.0), (1.0, 3.0), (2.0, 6.0)].into_iter()
        ));
    }

    #[test]
    fn hello_ticks_are_bounded_and_thinned_evenly() {
        let mut t = HelloTicks::default();
        for i in 0..10 {
            t.record(i as f64 * 2.0);
        }
        assert_eq!(
            t.offsets_ms(),
            (0..10).map(|i| i * 2000).collect::<Vec<_>>()
        );
        assert_eq!((t.every(), t.seen()), (1, 10));
        let mut t = HelloTicks::default();
        // Three hours of a 10 s monitor: 1,080 hellos.
        for i in 0..1080 {
            t.record(i as f64 * 10.0);
        }
        assert!(t.offsets_ms().len() <= MAX_HELLO_TICKS);
        assert_eq!(t.every(), 32);
        // Kept: hellos 0, 32, 64, … — evenly spread from the first to near the last.
        let want: Vec<u32> = (0..1080).step_by(32).map(|i| i * 10_000).collect();
        assert_eq!(t.offsets_ms(), want);
        assert_eq!(t.seen(), 1080);
        t.record(-1.0);
        assert!(t.offsets_ms().len() <= MAX_HELLO_TICKS);
    }

    #[test]
    fn summary_and_percentiles() {
        let mut s = SampledSummary::default();
        for v in [3.0, 1.0, 2.0] {
            s.add_sample(v);
        }
        assert_eq!(s.count, 3);
        assert_eq!(s.median(), Some(2.0));
        assert_eq!(s.min, Some(1.0));
        assert_eq!(s.max, Some(3.0));
        let mut n = NodeStats::default();
        let addr: SocketAddr = "10.0.0.9:27017".parse().unwrap();
        for _ in 0..99 {
            let slot = n.slot(addr);
            n.op_latency(slot, 1.0);
        }
        let slot = n.slot(addr);
        n.op_latency(slot, 100.0);
        assert_eq!(n.all_histograms().count(), 1);
        let p = n.histograms(&addr).unwrap().op_latency().unwrap();
        assert_eq!(p.count, 100);
        assert!((p.p50 - 1.0).abs() < 0.05, "{p:?}");
        assert!((p.max - 100.0).abs() < 1.0, "{p:?}");
    }
}
