//! Roles of TLS connections that no key decrypts, inferred from their record shapes
//! ([`crate::observe::Shape`]): flights of application-data records, their sizes and
//! timing. The rules restate the specifications' behaviour in shapes, not our captures':
//!
//! - server-monitoring.md, "Streaming Protocol": a streaming monitor sends one awaitable
//!   hello and, with `exhaustAllowed`, the server answers every heartbeat
//!   (heartbeatFrequencyMS, the `maxAwaitTimeMS`) without a new request: server flights on a
//!   cadence with no client flight between them. A driver that streams without exhaust
//!   sends an awaitable hello each time and waits ≈ maxAwaitTimeMS for every reply.
//! - "Measuring RTT" and polling: a plain hello every heartbeat, answered at once, the same
//!   request each time and nothing else: periodic, fast, near-constant request/response
//!   pairs. Which of the two depends on the client: RTT when the same client streams to
//!   that server, polling otherwise. heartbeatFrequencyMS is at least
//!   minHeartbeatFrequencyMS (500 ms), so a cadence is never faster.
//! - CMAP: pool connections handshake (and authenticate: a SASL conversation right after
//!   the hello), then carry the application's bursts, of varying sizes and not on a
//!   cadence, or sit idle (minPoolSize). Monitors never authenticate nor run operations.
//! - single-threaded clients (libmongoc `mongoc_client_t`, PHP) keep one connection per
//!   node for checks and operations and no monitoring connection at all.
//!
//! A client is grouped by source host + the ClientHello's JA4 fingerprint (the driver's
//! TLS stack), since appName and driver metadata are encrypted. Confidence is `high` only
//! for an exhaust stream seen at least three times on a steady cadence (nothing else makes
//! the server speak unasked on a heartbeat); other shapes are `medium` or `low`.

use std::net::SocketAddr;

use rustc_hash::FxHashMap as HashMap;

use super::{
    verdict, Class, ClientKey, Confidence, Verdict, Window, DEFAULT_HEARTBEAT_SECS,
    SILENT_HEARTBEATS,
};
use crate::observe::{FlightStats, Observations, Shape};

/// minHeartbeatFrequencyMS (500 ms) less some jitter: no monitor checks faster.
const MIN_CADENCE_SECS: f64 = 0.4;
/// A cadence's relative spread (sd / mean) at most this.
const CADENCE_CV: f64 = 0.25;
/// Size tolerance of "the same request each time" and of its reply.
const REQUEST_TOLERANCE: f64 = 0.05;
const REPLY_TOLERANCE: f64 = 0.10;

/// What a connection's own shape says, before its client is looked at.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// Server flights on a cadence with no request between: exhaust streaming.
    Exhaust { strong: bool },
    /// Requests each answered only after ≈ maxAwaitTimeMS: streaming without exhaust.
    AwaitEach,
    /// The opening, then one request still unanswered at the end: an awaitable hello.
    Awaiting { waited: f64 },
    /// Periodic, fast, near-constant request/response pairs and nothing else.
    Periodic,
    /// One fast request/response pair a while after the opening and nothing else.
    OneCheck,
    /// The opening (or nothing) and no further flight.
    Idle,
    /// Opened before the capture and fewer than two requests with a reply: nothing to
    /// read a role from.
    TooFew,
    /// Anything else: application traffic.
    Busy,
}

impl Kind {
    fn streams(self) -> bool {
        matches!(
            self,
            Kind::Exhaust { .. } | Kind::AwaitEach | Kind::Awaiting { .. }
        )
    }
    fn monitor_like(self) -> bool {
        self.streams() || matches!(self, Kind::Periodic | Kind::OneCheck)
    }
}

fn cadence(stats: &FlightStats) -> Option<f64> {
    let mean = stats.interval.mean()?;
    (mean >= MIN_CADENCE_SECS && stats.interval.cv()? < CADENCE_CV).then_some(mean)
}

fn kind(shape: &Shape, until: f64) -> Kind {
    let (c, s) = (&shape.client, &shape.server);
    if s.pushed >= 1 && c.flights <= 1 + s.flights / 2 {
        let paced = s.interval.mean().is_none_or(|m| m >= MIN_CADENCE_SECS);
        if paced {
            let strong = s.pushed >= 3
                && cadence(s).is_some()
                && s.near_constant(REPLY_TOLERANCE)
                && c.flights <= 2;
            return Kind::Exhaust { strong };
        }
    }
    if c.flights >= 2
        && s.pushed <= c.gaps
        && s.latency.count >= 2
        && s.latency.min >= MIN_CADENCE_SECS
        && c.near_constant(REQUEST_TOLERANCE)
    {
        return Kind::AwaitEach;
    }
    // Every reply of `server` came within a quarter of the requests' interval.
    let fast = |server: &FlightStats, interval: f64| server.latency.max < 0.25 * interval;
    // The quick pairs right after the handshake are left out of the cadence: a monitor
    // may start with some (libmongoc's RTT monitor checks at once; the Java driver 3.x
    // sends buildinfo and getlasterror on every connection). The cadence and the one
    // request size after them keep authenticated pool connections' bursts out.
    let (pc, ps) = (&shape.steady_client, &shape.steady_server);
    // A capture gap may have lost a request (its reply then looks pushed) or a reply.
    if pc.flights >= 2 && ps.pushed <= pc.gaps && pc.pushed <= ps.gaps {
        if let Some(every) = cadence(pc) {
            if fast(ps, every)
                && ps.flights + 1 + ps.gaps >= pc.flights
                && pc.near_constant(REQUEST_TOLERANCE)
                && ps.near_constant(REPLY_TOLERANCE)
            {
                return Kind::Periodic;
            }
        }
    }
    if c.flights == 1
        && s.flights == 1
        && shape.early_round_trips == 0
        && shape
            .first_request_after
            .is_some_and(|t| t >= MIN_CADENCE_SECS && fast(s, t))
    {
        return Kind::OneCheck;
    }
    if c.flights == 1 && s.flights == 0 && shape.last_from_client == Some(true) {
        let waited = shape.last_flight_end.map_or(0.0, |end| until - end);
        if waited >= 1.0 {
            return Kind::Awaiting { waited };
        }
    }
    if c.flights == 0 && s.flights == 0 {
        return Kind::Idle;
    }
    if shape.opening.is_none() && (c.flights < 2 || s.flights == 0) {
        return Kind::TooFew;
    }
    Kind::Busy
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn bytes(stats: &FlightStats) -> String {
    if stats.min_bytes == stats.max_bytes {
        evidence!("{} bytes", stats.min_bytes)
    } else {
        evidence!("{}-{} bytes", stats.min_bytes, stats.max_bytes)
    }
}

fn every(stats: &FlightStats) -> String {
    match (stats.interval.mean(), stats.interval.sd()) {
        (Some(m), Some(sd)) => evidence!("every {m:.1} s (±{sd:.2})"),
        _ => String::new(),
    }
}

/// The opening as a phrase: "after the handshake (382 → 515 bytes)".
fn opening(shape: &Shape) -> String {
    match shape.opening {
        Some(o) if o.reply_end.is_some() => evidence!(
            "after the handshake flights ({} → {} bytes)",
            o.hello_bytes,
            o.reply_bytes
        ),
        Some(o) if o.hello_bytes > 0 => {
            evidence!(
                "a first request ({} bytes) with no reply yet",
                o.hello_bytes
            )
        }
        Some(_) => "the TLS handshake only".into(),
        None => "no TLS handshake captured (opened before the capture, or its packets lost)".into(),
    }
}

/// The facts a verdict rests on, for the evidence sentence.
fn facts(shape: &Shape, kind: Kind) -> String {
    let (c, s) = (&shape.client, &shape.server);
    let open = opening(shape);
    match kind {
        Kind::Exhaust { .. } => evidence!(
            "{open}, {} request{} then {} server flight{} of which {} pushed with no request between, {} ({})",
            c.flights,
            plural(c.flights as u64),
            s.flights,
            plural(s.flights as u64),
            s.pushed,
            every(s),
            bytes(s)
        ),
        Kind::AwaitEach => evidence!(
            "{open}, {} requests ({}) each answered only after {:.1}-{:.1} s",
            c.flights,
            bytes(c),
            s.latency.min,
            s.latency.max
        ),
        Kind::Awaiting { waited } => evidence!(
            "{open}, one request ({}) unanswered for {waited:.1} s until the end",
            bytes(c)
        ),
        Kind::Periodic => {
            let (pc, ps) = (&shape.steady_client, &shape.steady_server);
            let early = match shape.early_round_trips {
                0 => ",".to_string(),
                n => evidence!(
                    ", {n} quick round trip{} right after the handshake, then",
                    plural(n as u64)
                ),
            };
            evidence!(
                "{open}{early} {} request/response pairs {} ({} → {}), answered within {:.0} ms, nothing else",
                pc.flights,
                every(pc),
                bytes(pc),
                bytes(ps),
                ps.latency.max * 1e3
            )
        }
        Kind::OneCheck => evidence!(
            "{open}, one request/response pair ({} → {}) {:.1} s later, answered within {:.0} ms, nothing else",
            bytes(c),
            bytes(s),
            shape.first_request_after.unwrap_or_default(),
            s.latency.max * 1e3
        ),
        Kind::Idle => evidence!("{open}, then no application data"),
        Kind::TooFew => evidence!(
            "{open}, {} request flight{} and {} response flight{}",
            c.flights,
            plural(c.flights as u64),
            s.flights,
            plural(s.flights as u64)
        ),
        Kind::Busy => {
            let early = if shape.early_round_trips > 0 {
                evidence!(
                    ", {} quick round trip{} right after the handshake (authentication or first operations)",
                    shape.early_round_trips,
                    plural(shape.early_round_trips as u64)
                )
            } else {
                String::new()
            };
            let sizes = if c.more_sizes {
                "more than 8 sizes".to_string()
            } else {
                evidence!(
                    "{} size{}",
                    c.distinct_sizes,
                    plural(c.distinct_sizes as u64)
                )
            };
            let cadence = match (c.interval.mean(), c.interval.sd()) {
                (Some(mean), Some(sd)) if c.interval.count >= 2 => {
                    evidence!(", every {mean:.2} s ± {sd:.2}")
                }
                _ => String::new(),
            };
            evidence!(
                "{open}{early}, {} request flight{} ({}, {sizes}{cadence}) and {} response flight{} ({})",
                c.flights,
                plural(c.flights as u64),
                bytes(c),
                s.flights,
                plural(s.flights as u64),
                bytes(s)
            )
        }
    }
}

/// Whether a connection's role must come from its shape: TLS, nothing decrypted.
pub(super) fn is_keyless(obs: &Observations) -> bool {
    obs.tls && !obs.tls_decrypted()
}

/// Classify every keyless TLS connection of `conns` (the others are left as they are).
pub(super) fn classify_keyless(
    conns: &[Box<Observations>],
    keys: &[ClientKey],
    verdicts: &mut [Option<Verdict>],
    window: Option<Window>,
) {
    let end_of = |o: &Observations| -> f64 {
        o.closed
            .or(window.map(|w| w.end))
            .unwrap_or(o.last_seen)
            .max(o.last_seen)
    };
    let empty = Shape::default();
    let shapes: Vec<(usize, &Shape, Kind)> = conns
        .iter()
        .enumerate()
        .filter(|(_, o)| is_keyless(o))
        .map(|(i, o)| {
            let shape = o.shape.as_deref().unwrap_or(&empty);
            (i, shape, kind(shape, end_of(o)))
        })
        .collect();

    #[derive(Default)]
    struct Hood {
        streaming: Vec<SocketAddr>,
        monitors: usize,
        /// Heartbeat cadences shown by the group's monitors.
        heartbeats: Vec<f64>,
        /// Polling-candidate cadences per node.
        periodic: Vec<(SocketAddr, f64)>,
        /// Nodes with a monitor-shaped connection, and with an application-shaped one.
        checked_nodes: Vec<SocketAddr>,
        busy_nodes: Vec<SocketAddr>,
        members: Vec<usize>,
    }
    // Grouped by client as attribution groups them (`ClientKeys`): a connection whose
    // ClientHello was not captured joins its host's one known client, and keyless
    // connections join the decrypted ones whose TLS stack they share.
    let mut hoods: HashMap<&ClientKey, Hood> = HashMap::default();
    // What the client's decrypted (or plaintext) connections showed first: its monitors
    // are not keyless when their sessions were found.
    for (i, obs) in conns.iter().enumerate() {
        if is_keyless(obs) {
            continue;
        }
        let streams = verdicts[i]
            .as_ref()
            .is_some_and(|v| v.class == Class::StreamingMonitor);
        let ops = super::application_ops(obs);
        let checks_only = ops == 0 && super::periodic_hellos(obs) > 0;
        if !streams && !checks_only && ops == 0 {
            continue;
        }
        let hood = hoods.entry(&keys[i]).or_default();
        if streams {
            hood.streaming.push(obs.server);
        }
        if streams || checks_only {
            hood.monitors += 1;
            hood.checked_nodes.push(obs.server);
        } else {
            hood.busy_nodes.push(obs.server);
        }
    }
    for &(i, shape, kind) in &shapes {
        let hood = hoods.entry(&keys[i]).or_default();
        hood.members.push(i);
        if kind.streams() {
            hood.streaming.push(conns[i].server);
        }
        if kind.monitor_like() {
            hood.monitors += 1;
            hood.checked_nodes.push(conns[i].server);
        }
        if kind == Kind::Busy {
            hood.busy_nodes.push(conns[i].server);
        }
        match kind {
            Kind::Exhaust { .. } => hood.heartbeats.extend(cadence(&shape.server)),
            Kind::AwaitEach => hood.heartbeats.extend(shape.server.latency.mean()),
            Kind::Periodic => {
                if let Some(m) = cadence(&shape.client) {
                    hood.heartbeats.push(m);
                    hood.periodic.push((conns[i].server, m));
                }
            }
            _ => {}
        }
    }

    // What each group says, worked out once: per connection it made a big group quadratic.
    let settled: HashMap<&ClientKey, Settled> = hoods
        .iter()
        .map(|(group, hood)| (*group, Settled::of(hood, conns)))
        .collect();
    for &(i, shape, kind) in &shapes {
        let obs = &conns[i];
        let settled = &settled[&keys[i]];
        let v = decide(
            obs,
            shape,
            kind,
            settled.view(obs),
            settled.heartbeat,
            end_of(obs),
        );
        // The shape's account after a fixed preface: concatenated, not formatted again.
        let evidence = if super::WITH_EVIDENCE.get() {
            let why = super::not_decrypted_reason(obs);
            [
                "inferred from TLS record shapes (not decrypted: ",
                why,
                "): ",
                &v.evidence,
            ]
            .concat()
        } else {
            String::new()
        };
        verdicts[i] = Some(Verdict { evidence, ..v });
    }

    /// A group, with its figures that do not depend on which of its connections asks.
    struct Settled<'h> {
        hood: &'h Hood,
        /// Sorted and deduplicated, for binary search.
        streaming: Vec<SocketAddr>,
        heartbeat: Option<f64>,
        links_per_node: Option<usize>,
        nodes: usize,
        watched: f64,
        /// A node carrying application traffic with no monitor-shaped connection beside it.
        unmonitored_busy: Option<SocketAddr>,
    }

    impl<'h> Settled<'h> {
        fn of(hood: &'h Hood, conns: &[Box<Observations>]) -> Settled<'h> {
            let servers: Vec<SocketAddr> = hood.members.iter().map(|&j| conns[j].server).collect();
            let start = hood
                .members
                .iter()
                .map(|&j| conns[j].first_seen)
                .fold(f64::INFINITY, f64::min);
            let end = hood
                .members
                .iter()
                .map(|&j| conns[j].last_seen)
                .fold(0.0, f64::max);
            Settled {
                hood,
                unmonitored_busy: super::first_unwatched(&hood.busy_nodes, &hood.checked_nodes),
                streaming: super::sorted_unique(&hood.streaming),
                heartbeat: super::median(&hood.heartbeats),
                links_per_node: links_per_node(&hood.members, conns),
                nodes: super::sorted_unique(&servers).len(),
                watched: (end - start).max(0.0),
            }
        }

        /// What the group says about one of its connections.
        fn view(&self, obs: &Observations) -> HoodView {
            let same_cadence = |m: f64| {
                self.hood
                    .periodic
                    .iter()
                    .any(|(node, other)| *node != obs.server && (other - m).abs() <= 0.25 * m)
            };
            HoodView {
                streams_to_node: self.streaming.binary_search(&obs.server).is_ok(),
                monitors: self.hood.monitors,
                same_cadence_elsewhere: obs
                    .shape
                    .as_deref()
                    .and_then(|s| cadence(&s.client))
                    .is_some_and(same_cadence),
                links_per_node: self.links_per_node,
                nodes: self.nodes,
                watched: self.watched,
                // The single-threaded pattern with check-only links (see classify's
                // plaintext rule): one link per node, no streaming, application traffic
                // to a node no monitor-shaped connection watches.
                single_threaded_links: self.unmonitored_busy.filter(|_| {
                    self.links_per_node == Some(1)
                        && self.streaming.is_empty()
                        && self.hood.monitors > 0
                }),
            }
        }
    }
}

struct HoodView {
    /// The same client streams to this connection's server.
    streams_to_node: bool,
    /// Monitor-shaped connections in the group.
    monitors: usize,
    /// Another node's connection of the group polls on the same cadence.
    same_cadence_elsewhere: bool,
    /// The group's connections open at once to each node, when that is the same on every
    /// node: 1 for one single-threaded client, N for N of them side by side (workers).
    links_per_node: Option<usize>,
    nodes: usize,
    /// From the group's first to its last record (seconds).
    watched: f64,
    /// The node whose application-shaped connection has no monitor beside it, in a group
    /// that holds one link per node and does not stream: a single-threaded client whose
    /// other links only check.
    single_threaded_links: Option<SocketAddr>,
}

/// Most of `members` open at once to each node, when every node has as many.
fn links_per_node(members: &[usize], conns: &[Box<Observations>]) -> Option<usize> {
    let mut per_node: HashMap<SocketAddr, Vec<(f64, Option<f64>)>> = HashMap::default();
    for &j in members {
        let o = &conns[j];
        per_node
            .entry(o.server)
            .or_default()
            .push((o.first_seen, o.closed));
    }
    let mut peaks = per_node
        .into_values()
        .map(|spans| super::peak_overlap(spans.into_iter()));
    let first = peaks.next()?;
    peaks.all(|p| p == first).then_some(first as usize)
}

fn decide(
    obs: &Observations,
    shape: &Shape,
    kind: Kind,
    hood: HoodView,
    heartbeat: Option<f64>,
    until: f64,
) -> Verdict {
    use Confidence::*;
    let facts = facts(shape, kind);
    if let Some(node) = hood.single_threaded_links {
        if matches!(
            kind,
            Kind::Periodic | Kind::OneCheck | Kind::Busy | Kind::Idle
        ) {
            return verdict(
                Class::SingleThreaded,
                if hood.nodes >= 2 { Medium } else { Low },
                evidence!(
                    "{facts}; the client (host + JA4) holds one connection per node ({} node{}), does not stream, and its application traffic to {} has no monitor-shaped connection beside it, while a pooled driver monitors every node on a connection of its own: a single-threaded client, its other links only checking",
                    hood.nodes,
                    plural(hood.nodes as u64),
                    crate::net::addr_text(node)
                ),
            );
        }
    }
    match kind {
        Kind::Exhaust { strong } => verdict(
            Class::StreamingMonitor,
            if strong { High } else { Medium },
            evidence!("{facts}: a streaming monitor (exhaust: the server answers every heartbeat unasked)"),
        ),
        Kind::AwaitEach => verdict(
            Class::StreamingMonitor,
            Medium,
            evidence!("{facts}: a streaming monitor without exhaust (each awaitable hello waits maxAwaitTimeMS)"),
        ),
        Kind::Awaiting { .. } => verdict(
            Class::StreamingMonitor,
            Low,
            evidence!("{facts}: likely a streaming monitor's awaitable hello (too short to see its heartbeat)"),
        ),
        Kind::Periodic | Kind::OneCheck => {
            let confidence = match kind {
                Kind::OneCheck => Low,
                _ if hood.streams_to_node || hood.same_cadence_elsewhere => Medium,
                _ => Low,
            };
            if hood.streams_to_node {
                verdict(
                    Class::RttMonitor,
                    confidence,
                    evidence!("{facts}, beside a streaming-shaped connection of the same client (host + JA4) to this node: an RTT monitor"),
                )
            } else {
                verdict(
                    Class::PollingMonitor,
                    confidence,
                    evidence!(
                        "{facts}; the same client (host + JA4) has no streaming-shaped connection to this node: a polling monitor{}",
                        if hood.same_cadence_elsewhere { ", on the cadence its other nodes' monitors keep" } else { "" }
                    ),
                )
            }
        }
        Kind::TooFew => verdict(
            Class::Unknown,
            Low,
            evidence!("{facts}: too few flights to tell its role"),
        ),
        // Several at once to a single node say nothing: a load-balanced client's pool.
        Kind::Idle | Kind::Busy
            if hood.monitors == 0
                && hood.links_per_node.is_some_and(|n| n == 1 || hood.nodes >= 2)
                && shape.opening.is_some() =>
        {
            // No monitoring connection at all and one connection per node: only a
            // single-threaded client works this way (N at once to every node: N of them
            // side by side, as worker processes run). A pooled client whose monitors have
            // not spoken yet (the first check comes a heartbeat after the handshake, 10 s
            // by default) looks alike until then, and a load-balanced client's single
            // connection too.
            let confidence = if hood.nodes >= 2 && hood.watched > SILENT_HEARTBEATS * DEFAULT_HEARTBEAT_SECS {
                Medium
            } else {
                Low
            };
            let links = match hood.links_per_node {
                Some(n) if n > 1 => evidence!("{n} connections at once to every node ({} node{}), as many single-threaded clients side by side (worker processes),", hood.nodes, plural(hood.nodes as u64)),
                _ => evidence!("one connection per node ({} node{})", hood.nodes, plural(hood.nodes as u64)),
            };
            verdict(
                Class::SingleThreaded,
                confidence,
                evidence!(
                    "{facts}; the client (host + JA4) has {links} and no monitoring-shaped connection in {:.1} s: a single-threaded client (libmongoc/PHP style)",
                    hood.watched
                ),
            )
        }
        // One exchange shows no pattern: a pool connection's single operation, or a
        // streaming monitor's first awaitable hello answered at once (the next answer
        // waits a heartbeat), in a window that ends before it.
        Kind::Busy if shape.client.flights <= 1 => verdict(
            Class::Pool,
            Low,
            evidence!("{facts}: one exchange, not yet a monitor's heartbeat: probably a pool connection"),
        ),
        // Two exchanges alike (one request size, one response size) are a monitor's two
        // checks as much as an operation sent twice: too few to show a cadence.
        Kind::Busy
            if shape.client.flights == 2
                && shape.client.distinct_sizes <= 1
                && shape.server.distinct_sizes <= 1 =>
        {
            verdict(
                Class::Pool,
                Low,
                evidence!("{facts}: two alike exchanges, as a monitor's two checks or one operation sent twice would be: probably a pool connection"),
            )
        }
        Kind::Busy => verdict(
            Class::Pool,
            if hood.monitors > 0 { Medium } else { Low },
            evidence!(
                "{facts}: application traffic, not a monitor's fixed heartbeat{}: a pool connection",
                if hood.monitors > 0 { " (the client's monitors are separate connections)" } else { "" }
            ),
        ),
        Kind::Idle => {
            let beat = heartbeat.unwrap_or(DEFAULT_HEARTBEAT_SECS);
            let since = shape
                .opening
                .and_then(|o| o.reply_end)
                .unwrap_or(obs.first_seen);
            let idle = until - since;
            if shape.opening.and_then(|o| o.reply_end).is_none() {
                verdict(
                    Class::Unknown,
                    Low,
                    evidence!("{facts}: too little traffic to tell its role"),
                )
            } else if idle > SILENT_HEARTBEATS * beat {
                verdict(
                    Class::Pool,
                    Medium,
                    evidence!(
                        "{facts} for {idle:.1} s, longer than {SILENT_HEARTBEATS} heartbeats ({beat:.1} s{}): not a monitor; an idle pool connection",
                        if heartbeat.is_some() { ", the client's monitors' cadence" } else { " by default" }
                    ),
                )
            } else {
                verdict(
                    Class::Unknown,
                    Low,
                    evidence!(
                        "{facts} for {idle:.1} s, less than {SILENT_HEARTBEATS} heartbeats ({beat:.1} s): an idle pool connection and a monitor awaiting its next check look alike"
                    ),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Timestamp;
    use crate::observe::shape::ShapeTracker;
    use crate::tcp::Side;

    fn shape_of(flights: &[(bool, f64, u64)], open: bool) -> Shape {
        let mut t = ShapeTracker::new(open.then_some(Side::A));
        for &(client, at, bytes) in flights {
            let side = if client { Side::A } else { Side::B };
            t.add(side, Timestamp((at * 1e9) as i64), 1, bytes);
        }
        t.shape(Side::A, 0)
    }

    fn opening() -> Vec<(bool, f64, u64)> {
        vec![(true, 0.0, 382), (false, 0.01, 515)]
    }

    #[test]
    fn exhaust_on_a_cadence_is_a_streaming_monitor() {
        let mut f = opening();
        f.push((true, 0.012, 171));
        for k in 1..=5 {
            f.push((false, 2.0 * k as f64, 524));
        }
        let s = shape_of(&f, true);
        assert_eq!(kind(&s, 11.0), Kind::Exhaust { strong: true });
        // Two pushes are not yet a steady cadence.
        let s = shape_of(&f[..5], true);
        assert_eq!(kind(&s, 11.0), Kind::Exhaust { strong: false });
    }

    #[test]
    fn periodic_fast_constant_pairs_are_monitor_checks_and_bursts_are_not() {
        let mut f = opening();
        for k in 1..=6 {
            f.push((true, 2.0 * k as f64, 89));
            f.push((false, 2.0 * k as f64 + 0.001, 524));
        }
        assert_eq!(kind(&shape_of(&f, true), 13.0), Kind::Periodic);
        // libmongoc's RTT monitor checks once right after its handshake, then on the cadence.
        let mut m = opening();
        for k in 0..6 {
            m.push((true, 0.012 + 2.0 * k as f64, 82));
            m.push((false, 0.013 + 2.0 * k as f64, 524));
        }
        assert_eq!(kind(&shape_of(&m, true), 13.0), Kind::Periodic);
        // The Java driver 3.x's monitor (the lab's tls-java): buildinfo, getlasterror and an
        // immediate check right after the handshake, then a check every heartbeat.
        let mut j = opening();
        for (k, (ask, answer)) in [(92, 137), (95, 70), (88, 505)].into_iter().enumerate() {
            j.push((true, 0.04 + 0.02 * k as f64, ask));
            j.push((false, 0.045 + 0.02 * k as f64, answer));
        }
        for k in 1..=5 {
            j.push((true, 0.08 + 2.0 * k as f64, 88));
            j.push((false, 0.081 + 2.0 * k as f64, 505));
        }
        let java = shape_of(&j, true);
        assert_eq!(java.early_round_trips, 3);
        assert_eq!(kind(&java, 11.0), Kind::Periodic);
        // The same quick pairs followed by application bursts stay application traffic.
        let mut jb = j[..8].to_vec();
        for k in 1..=12 {
            let t = 0.1 + 0.25 * k as f64;
            jb.push((true, t, if k % 2 == 0 { 198 } else { 147 }));
            jb.push((false, t + 0.001, 62));
        }
        assert_eq!(kind(&shape_of(&jb, true), 4.0), Kind::Busy);
        // A SASL conversation right after the handshake, then idle: not periodic.
        let mut a = opening();
        for (k, size) in [(0, 250), (1, 120)] {
            a.push((true, 0.02 + 0.01 * k as f64, size));
            a.push((false, 0.025 + 0.01 * k as f64, 200));
        }
        assert_eq!(kind(&shape_of(&a, true), 13.0), Kind::Busy);
        // The same pairs with two alternating request sizes every 0.25 s: application.
        let mut g = opening();
        for k in 1..=12 {
            let t = 0.25 * k as f64 + if k % 2 == 0 { 0.002 } else { 0.0 };
            g.push((true, t, if k % 2 == 0 { 198 } else { 147 }));
            g.push((false, t + 0.001, 62));
        }
        assert_eq!(kind(&shape_of(&g, true), 4.0), Kind::Busy);
        // An awaitable hello answered after the heartbeat each time, no exhaust.
        let mut h = opening();
        for k in 0..4 {
            h.push((true, 0.02 + 2.01 * k as f64, 160));
            h.push((false, 0.02 + 2.01 * k as f64 + 2.0, 524));
        }
        assert_eq!(kind(&shape_of(&h, true), 9.0), Kind::AwaitEach);
    }

    #[test]
    fn a_check_lost_to_a_capture_gap_keeps_a_monitor_periodic() {
        // Checks every 2 s; the request at 6 s was not captured, so its reply follows
        // the previous reply with no request between, and the requests skip a beat.
        let mut t = ShapeTracker::new(Some(Side::A));
        let at = |secs: f64| Timestamp((secs * 1e9) as i64);
        for &(client, secs, bytes) in &opening() {
            t.add(if client { Side::A } else { Side::B }, at(secs), 1, bytes);
        }
        for k in 1..=6 {
            let secs = 2.0 * k as f64;
            if k == 3 {
                t.lost(Side::A);
            } else {
                t.add(Side::A, at(secs), 1, 89);
            }
            t.add(Side::B, at(secs + 0.001), 1, 524);
        }
        let lossy = t.shape(Side::A, 0);
        assert_eq!(lossy.server.pushed, 1);
        assert_eq!(kind(&lossy, 13.0), Kind::Periodic);
        // The same flights with no gap named: a reply without a request is not a check.
        let mut unexplained = lossy;
        unexplained.client.gaps = 0;
        unexplained.steady_client.gaps = 0;
        assert_eq!(kind(&unexplained, 13.0), Kind::Busy);
    }

    #[test]
    fn an_unanswered_first_request_and_silence_are_told_apart() {
        let mut f = opening();
        f.push((true, 0.02, 171));
        assert!(matches!(
            kind(&shape_of(&f, true), 3.0),
            Kind::Awaiting { .. }
        ));
        assert_eq!(kind(&shape_of(&f, true), 0.5), Kind::Busy);
        assert_eq!(kind(&shape_of(&opening(), true), 30.0), Kind::Idle);
        // Opened before the capture: one unanswered request tells nothing.
        assert_eq!(
            kind(&shape_of(&[(true, 1.0, 300)], false), 1.5),
            Kind::TooFew
        );
    }
}
