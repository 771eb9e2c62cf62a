//! Stage 3, reassembly: TCP segments → per connection and direction, in-order bytes, gaps,
//! and open/close events.
//!
//! The [`FlowTable`] finds a segment's connection by its unordered 4-tuple, follows the
//! SYN/FIN/RST lifecycle (a new SYN on a finished or differently-numbered flow is port
//! reuse: a new connection), and hands bytes to a [`ConnHandler`], the next stage, which
//! owns per-connection state of its own (`H::State`). Closed connections are remembered
//! (by key and id only) for a linger period so that late retransmissions and ACKs are
//! absorbed instead of being mistaken for new mid-stream connections; then forgotten.

mod seq;
mod stream;

use std::collections::VecDeque;

// The flow table is looked up for every packet; FxHash is several times cheaper than the
// default SipHash, and flow keys come from the capture, not from an attacker choosing
// keys to collide against a long-lived service.
use rustc_hash::FxHashMap as HashMap;
use std::net::SocketAddr;

pub use seq::SeqNumber;
pub use stream::{HalfStream, StreamEvent, StreamLimits, StreamStats};

use crate::capture::Timestamp;
use crate::net::{Endpoint, TcpSegment};

/// One endpoint of a connection: `A` is the side that sent the SYN when it was captured,
/// otherwise the source of the first captured segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseKind {
    Fin,
    Rst,
    /// A new SYN reused the 4-tuple before the old connection was seen to close.
    Reused,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Close {
    pub ts: Timestamp,
    pub kind: CloseKind,
    /// The side whose FIN or RST came first.
    pub by: Option<Side>,
}

/// What the table knows about a connection, passed with every event.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    /// A serial number, unique within one analysis.
    pub id: u64,
    /// Endpoints of side A and side B.
    pub endpoints: [SocketAddr; 2],
    /// Set when the SYN or SYN-ACK was captured: the side that opened the connection.
    pub initiator: Option<Side>,
    /// A SYN-ACK was captured: the server accepted the connection. A SYN answered by a
    /// RST, or not at all, is a connection attempt that failed, not a connection.
    pub answered: bool,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub close: Option<Close>,
    /// The first FIN or RST, from either side: from then on one side has given the
    /// connection up (a restarting server closes its side long before a driver notices
    /// and closes its own). Kept when the capture ends half-closed.
    pub closing_since: Option<Timestamp>,
}

/// How a connection attempt that never became a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailedAttempt {
    /// The SYN was answered by a RST: nothing listening on the port (a server down or
    /// restarting).
    Refused,
    /// The SYN was never answered: the host down or unreachable, a firewall dropping it,
    /// or the capture ended first.
    Unanswered,
}

impl ConnInfo {
    pub fn endpoint(&self, side: Side) -> SocketAddr {
        self.endpoints[side.index()]
    }

    /// Opened by a captured SYN that no SYN-ACK answered (yet).
    pub fn never_accepted(&self) -> bool {
        !self.answered && self.initiator == Some(Side::A)
    }

    /// A SYN the server never accepted, carrying no byte either way: not a connection
    /// the server ever held, so not one to count.
    pub fn failed_attempt(&self, stats: &[StreamStats; 2]) -> Option<FailedAttempt> {
        if !self.never_accepted() || stats.iter().any(|s| s.bytes > 0 || s.gap_bytes > 0) {
            return None;
        }
        Some(match self.close {
            Some(Close {
                kind: CloseKind::Rst,
                by: Some(Side::B),
                ..
            }) => FailedAttempt::Refused,
            _ => FailedAttempt::Unanswered,
        })
    }
}

/// The next stage: receives a connection's events and keeps its own state per connection.
pub trait ConnHandler {
    type State;
    fn open(&mut self, info: &ConnInfo) -> Self::State;
    fn stream(
        &mut self,
        state: &mut Self::State,
        info: &ConnInfo,
        side: Side,
        ts: Timestamp,
        event: StreamEvent<'_>,
    );
    /// The connection closed or the capture ended; the state is handed back for good.
    fn close(&mut self, state: Self::State, info: &ConnInfo, stats: [StreamStats; 2]);
    /// A segment of this open connection was taken in (`info` now says when, and whether
    /// it is closing), whether or not it delivered bytes. For a handler that keeps its own
    /// copy of the connection's info; most need nothing.
    fn touched(&mut self, _state: &mut Self::State, _info: &ConnInfo) {}
}

#[derive(Clone, Copy, Debug)]
pub struct TableConfig {
    pub stream: StreamLimits,
    /// Early (out-of-order) bytes buffered across all connections.
    pub max_total_buffered: usize,
    /// How long a closed connection keeps absorbing stray segments, in nanoseconds.
    pub linger_nanos: u64,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            stream: StreamLimits {
                max_early_bytes: 4 << 20,
                max_early_segments: 256,
            },
            max_total_buffered: 256 << 20,
            linger_nanos: 120_000_000_000,
        }
    }
}

/// Counters for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    pub connections: u64,
    pub reused_ports: u64,
    /// Segments that arrived for a connection after it closed.
    pub after_close: u64,
    pub peak_open: u64,
    /// Connections captured a second time under other addresses: the far side of a NAT
    /// ([`FlowTable`]'s mirrors), counted once.
    pub nat_mirrors: u64,
}

/// How soon after a connection's SYN the same SYN, translated, may cross the capture
/// point again: a NAT forwards it within microseconds; a second all the way.
const MIRROR_WINDOW_NANOS: u64 = 1_000_000_000;

/// No expiry pending.
const NEVER: Timestamp = Timestamp(i64::MAX);

/// When a connection start seen at `at` leaves the mirror index: once more than
/// [`MIRROR_WINDOW_NANOS`] have passed.
fn start_expiry(at: Timestamp) -> Timestamp {
    Timestamp(at.0.saturating_add_unsigned(MIRROR_WINDOW_NANOS + 1))
}

/// How a connection started, as far as telling its NAT mirror goes: the client's ISN of
/// a captured SYN, or the (seq, ack) of the first segment of one already open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Start {
    Syn(u32),
    FirstSegment(u32, u32),
}

/// A SYN that repeats an open connection's initial sequence number under other
/// addresses, waiting for its SYN-ACK to tell whether it is that connection seen again.
struct PendingMirror {
    original: FlowKey,
    syn_ts: Timestamp,
    src: Endpoint,
    dst: Endpoint,
    seq: u32,
}

struct Conn<S> {
    info: ConnInfo,
    halves: [HalfStream; 2],
    /// The initial sequence number each side sent in its SYN, for port-reuse detection.
    isn: [Option<u32>; 2],
    fin: [bool; 2],
    /// Side A's endpoint is the flow key's lower one ([`FlowKey::of`]): a segment's side is
    /// then told from the order of its ends alone.
    a_low: bool,
    /// The handler's own state, handed back when the connection leaves the table.
    state: S,
}

/// Key of a flow regardless of direction: both endpoints as (IPv6-mapped address, port),
/// smaller first. Plain integers rather than `SocketAddr`s because the key is hashed and
/// compared for every packet, and `SocketAddr`'s enum comparison was 5% of a run. Packed
/// in five u64 words (each address's halves, then both ports), 40 bytes: as `(u128, u16)`
/// pairs the alignment padding made it 64, in every open flow's entry and in every
/// recently closed flow's two (`closed`, `lingering`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey([u64; 5]);

impl FlowKey {
    /// The key of a segment from `src` to `dst`, and whether `src` is the key's lower end
    /// (or both ends are the same). Each end as its IPv6 address's (IPv4-mapped for IPv4)
    /// high and low 64 bits, then its port: ordered as the (u128, u16) it is.
    fn of(src: Endpoint, dst: Endpoint) -> (FlowKey, bool) {
        let src_low = (src.high, src.low, src.port) <= (dst.high, dst.low, dst.port);
        let (lo, hi) = if src_low { (src, dst) } else { (dst, src) };
        let key = FlowKey([
            lo.high,
            lo.low,
            hi.high,
            hi.low,
            u64::from(lo.port) << 16 | u64::from(hi.port),
        ]);
        (key, src_low)
    }

    /// The key of a connection whose side A is `a` and side B `b`, and whether `a` is its
    /// lower end ([`Conn::a_low`]).
    fn of_sides(a: SocketAddr, b: SocketAddr) -> (FlowKey, bool) {
        FlowKey::of(a.into(), b.into())
    }
}

pub struct FlowTable<S> {
    config: TableConfig,
    /// Open connections only, so the table (looked up for every packet) grows with open
    /// connections: a closed one moved to `closed`, a few bytes instead of a few hundred.
    /// Entries boxed: a hash table keeps up to half its slots empty after growing, and
    /// empty slots of ~350-byte connections were 5 MB at 17,000 open (the handler's state
    /// now makes an entry ~800 bytes).
    flows: HashMap<FlowKey, Box<Conn<S>>>,
    /// Connections that closed less than the linger period ago: key → connection id.
    closed: HashMap<FlowKey, u64>,
    /// The same, in close order, for expiry.
    lingering: VecDeque<(Timestamp, FlowKey, u64)>,
    /// Connections first seen in the last [`MIRROR_WINDOW_NANOS`], by how they started,
    /// for telling a NAT's two sides of one connection apart from two connections: both
    /// sides show the same SYN, or the same first segment of a connection already open.
    starts: HashMap<Start, (FlowKey, Timestamp)>,
    /// The same entries in the order made, to forget them after the window: a mirror
    /// crosses the capture point within microseconds, so the index stays small.
    recent_starts: VecDeque<(Timestamp, Start)>,
    /// SYNs that may be a NAT mirror, until their SYN-ACK says.
    pending_mirrors: HashMap<FlowKey, PendingMirror>,
    /// Confirmed mirrors → the connection they repeat; their segments are not read again.
    mirrors: HashMap<FlowKey, FlowKey>,
    /// The other way round, looked up when a connection ends (kept out of `Conn`, whose
    /// size every packet's table probe pays for).
    mirrored: HashMap<FlowKey, FlowKey>,
    /// A held SYN is being opened as a connection of its own.
    replaying: bool,
    /// When the oldest entry of `recent_starts` or `lingering` expires: until then
    /// [`FlowTable::expire`], called for every segment, has nothing to do.
    next_expiry: Timestamp,
    budget: usize,
    next_id: u64,
    open: u64,
    pub stats: TableStats,
}

impl<S> FlowTable<S> {
    pub fn new(config: TableConfig) -> FlowTable<S> {
        FlowTable {
            budget: config.max_total_buffered,
            config,
            flows: HashMap::default(),
            closed: HashMap::default(),
            lingering: VecDeque::new(),
            starts: HashMap::default(),
            recent_starts: VecDeque::new(),
            pending_mirrors: HashMap::default(),
            mirrors: HashMap::default(),
            mirrored: HashMap::default(),
            replaying: false,
            next_expiry: NEVER,
            next_id: 0,
            open: 0,
            stats: TableStats::default(),
        }
    }

    /// Connections currently tracked (open or lingering).
    pub fn len(&self) -> usize {
        self.flows.len() + self.closed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes currently held for out-of-order segments, across all connections.
    pub fn buffered(&self) -> usize {
        self.config.max_total_buffered - self.budget
    }

    /// Visit the state of every open connection (live snapshots).
    pub fn for_each_open<F: FnMut(&ConnInfo, &S)>(&self, mut f: F) {
        for conn in self.flows.values() {
            f(&conn.info, &conn.state);
        }
    }

    pub fn segment<H: ConnHandler<State = S>>(
        &mut self,
        ts: Timestamp,
        seg: &TcpSegment<'_>,
        handler: &mut H,
    ) {
        self.expire(ts);
        let (key, src_low) = FlowKey::of(seg.src, seg.dst);
        let pure_syn = seg.flags.syn && !seg.flags.ack;

        // Most segments belong to an open connection and are not a SYN: one lookup.
        if !pure_syn {
            if self.feed_open(key, src_low, ts, seg, handler) {
                return;
            }
        } else if let Some(conn) = self.flows.get(&key) {
            // A SYN with another initial sequence number on an open flow: the old
            // connection ended unseen and the port was reused.
            let side = conn.side_of(src_low);
            if conn.isn[side.index()].is_some_and(|isn| isn != seg.seq) {
                let mut conn = self.flows.remove(&key).expect("present");
                self.stats.reused_ports += 1;
                conn.info.close = Some(Close {
                    ts,
                    kind: CloseKind::Reused,
                    by: None,
                });
                self.finish_conn(*conn, handler);
            }
        }

        // Segments off the fast path: a NAT's far side of a connection already followed?
        if !self.mirrors.is_empty() && self.mirrors.contains_key(&key) {
            return;
        }
        if !self.pending_mirrors.is_empty() {
            if let Some(pending) = self.pending_mirrors.remove(&key) {
                if self.resolve_mirror(key, pending, seg, handler) {
                    return;
                }
            }
        }
        if pure_syn && !self.flows.contains_key(&key) && self.may_mirror(key, ts, seg) {
            return;
        }
        // A segment with an ACK and no RST: its (seq, ack) is random in full (a bare RST
        // may carry a zero acknowledgement).
        let first_segment = match (seg.flags.syn || seg.flags.rst, seg.ack) {
            (false, Some(ack)) => Some(Start::FirstSegment(seg.seq, ack)),
            _ => None,
        };
        if let Some(first) = first_segment.filter(|_| !self.flows.contains_key(&key)) {
            if self.mirrors_mid_stream(key, first, ts, seg) {
                return;
            }
        }

        if self.closed.contains_key(&key) {
            if !pure_syn {
                self.stats.after_close += 1;
                return;
            }
            // A new SYN on a recently closed flow: port reuse, a new connection.
            self.closed.remove(&key);
        }

        if !self.flows.contains_key(&key) {
            let (a, b, initiator) = if seg.flags.syn && seg.flags.ack {
                // We missed the SYN but see the SYN-ACK: its receiver opened the connection.
                (seg.dst, seg.src, Some(Side::A))
            } else if pure_syn {
                (seg.src, seg.dst, Some(Side::A))
            } else {
                (seg.src, seg.dst, None)
            };
            let a_low = FlowKey::of(a, b).1;
            let info = ConnInfo {
                id: self.next_id,
                endpoints: [a.addr(), b.addr()],
                initiator,
                answered: false,
                first_seen: ts,
                last_seen: ts,
                close: None,
                closing_since: None,
            };
            self.next_id += 1;
            self.stats.connections += 1;
            self.open += 1;
            self.stats.peak_open = self.stats.peak_open.max(self.open);
            let state = handler.open(&info);
            let start = if pure_syn {
                Some(Start::Syn(seg.seq))
            } else {
                first_segment
            };
            if let Some(start) = start {
                self.starts.insert(start, (key, ts));
                self.recent_starts.push_back((ts, start));
                self.expires_at(start_expiry(ts));
            }
            self.flows.insert(
                key,
                Box::new(Conn {
                    info,
                    halves: [HalfStream::default(), HalfStream::default()],
                    isn: [None, None],
                    fin: [false, false],
                    a_low,
                    state,
                }),
            );
        }

        let fed = self.feed_open(key, src_low, ts, seg, handler);
        debug_assert!(fed, "the connection was just opened");
    }

    /// Hand a segment to the open connection `key`, closing it when the segment ends it;
    /// false when no such connection is open.
    fn feed_open<H: ConnHandler<State = S>>(
        &mut self,
        key: FlowKey,
        src_low: bool,
        ts: Timestamp,
        seg: &TcpSegment<'_>,
        handler: &mut H,
    ) -> bool {
        let Some(conn) = self.flows.get_mut(&key) else {
            return false;
        };
        let side = conn.side_of(src_low);
        let limits = self.config.stream;
        if feed(conn, ts, seg, side, limits, &mut self.budget, handler) {
            self.closed(key, ts, handler);
        }
        true
    }

    /// A SYN for a new flow that repeats the client ISN of a connection opened within
    /// [`MIRROR_WINDOW_NANOS`] under other addresses: held back as a possible mirror. A
    /// NAT rewrites addresses and ports but not sequence numbers, so `tcpdump -i any` on a
    /// container host (or a Kubernetes node) sees each connection of a masqueraded
    /// container twice: on its veth before the NAT and on the uplink after it.
    fn may_mirror(&mut self, key: FlowKey, ts: Timestamp, seg: &TcpSegment<'_>) -> bool {
        let Some(&(original, syn_ts)) = self.starts.get(&Start::Syn(seg.seq)) else {
            return false;
        };
        let recent = ts.nanos_since(syn_ts) <= MIRROR_WINDOW_NANOS;
        if self.replaying || original == key || !recent || !self.flows.contains_key(&original) {
            return false;
        }
        let pending = PendingMirror {
            original,
            syn_ts: ts,
            src: seg.src,
            dst: seg.dst,
            seq: seg.seq,
        };
        self.pending_mirrors.insert(key, pending);
        true
    }

    /// A connection whose start was not captured (a capture begun on a running host),
    /// first seen in a segment whose sequence and acknowledgement numbers, 64 bits of
    /// both ends' randomness, are those of another such connection's first segment within
    /// [`MIRROR_WINDOW_NANOS`] under other addresses: the same packet on the NAT's other
    /// side. It is that connection's mirror.
    fn mirrors_mid_stream(
        &mut self,
        key: FlowKey,
        first: Start,
        ts: Timestamp,
        seg: &TcpSegment<'_>,
    ) -> bool {
        let Some(&(original, seen)) = self.starts.get(&first) else {
            return false;
        };
        let recent = ts.nanos_since(seen) <= MIRROR_WINDOW_NANOS;
        if original == key || !recent {
            return false;
        }
        if !self.flows.contains_key(&original) || self.mirrored.contains_key(&original) {
            return false;
        }
        // Keep the copy the client's packets cross first: its own addresses (a container's
        // behind a masquerade; the published address in front of a server's DNAT). That is
        // the first seen when this segment went client to server; when it came from the
        // server (the listening, lower port), the copy seen first is the far one.
        let from_server = seg.src.port < seg.dst.port;
        if !from_server {
            self.note_mirror(original, key);
            return true;
        }
        let mut conn = self.flows.remove(&original).expect("present");
        // Both copies' sides were named after this same first segment's sender.
        conn.info.endpoints = [seg.src.addr(), seg.dst.addr()];
        conn.a_low = FlowKey::of(seg.src, seg.dst).1;
        self.flows.insert(key, conn);
        self.note_mirror(key, original);
        self.starts.insert(first, (key, seen));
        true
    }

    /// `mirror` is `kept` seen again: counted once, its segments not read again.
    fn note_mirror(&mut self, kept: FlowKey, mirror: FlowKey) {
        self.mirrored.insert(kept, mirror);
        self.mirrors.insert(mirror, kept);
        self.stats.nat_mirrors += 1;
    }

    /// The next segment of a possible mirror: its SYN-ACK confirms it, and the flow is
    /// followed no further (true). The server's ISN must then be the original's too when
    /// that is known already; it rarely is, as the translated SYN-ACK crosses the capture
    /// point first, so the client's 32-bit ISN within [`MIRROR_WINDOW_NANOS`] carries the
    /// proof. Anything else makes it a connection of its own, opened from its held SYN
    /// (false: the caller goes on with `seg`).
    fn resolve_mirror<H: ConnHandler<State = S>>(
        &mut self,
        key: FlowKey,
        pending: PendingMirror,
        seg: &TcpSegment<'_>,
        handler: &mut H,
    ) -> bool {
        if seg.flags.syn && !seg.flags.ack && seg.seq == pending.seq {
            // The SYN retransmitted: still waiting.
            self.pending_mirrors.insert(key, pending);
            return true;
        }
        let is_syn_ack = seg.flags.syn && seg.flags.ack;
        let same_server_isn = |conn: &Conn<S>| {
            let server = conn.info.initiator.map(Side::other);
            let isn = server.and_then(|server| conn.isn[server.index()]);
            isn.is_none_or(|isn| isn == seg.seq)
        };
        let original = self.flows.get(&pending.original).map(|c| &**c);
        if is_syn_ack && original.is_some_and(same_server_isn) {
            self.note_mirror(pending.original, key);
            return true;
        }
        let syn = TcpSegment {
            src: pending.src,
            dst: pending.dst,
            seq: pending.seq,
            ack: None,
            flags: crate::net::TcpFlags {
                syn: true,
                ..Default::default()
            },
            payload: &[],
            missing_tail: 0,
        };
        // Not a mirror after all: the SYN opens its own connection.
        self.replaying = true;
        self.segment(pending.syn_ts, &syn, handler);
        self.replaying = false;
        false
    }

    /// Both FINs or a RST: hand the state back and remember the flow as closed (so late
    /// segments are recognised as after-close) until [`FlowTable::expire`] forgets it.
    fn closed<H: ConnHandler<State = S>>(&mut self, key: FlowKey, ts: Timestamp, handler: &mut H) {
        let mut conn = self.flows.remove(&key).expect("present");
        if let Some(close) = conn.info.close.as_mut() {
            close.ts = ts;
        }
        let id = conn.info.id;
        self.finish_conn(*conn, handler);
        self.linger(ts, key, id);
    }

    /// End of input: every connection still open is handed back as open.
    pub fn finish<H: ConnHandler<State = S>>(&mut self, handler: &mut H) {
        let mut keys: Vec<(u64, FlowKey)> =
            self.flows.iter().map(|(k, c)| (c.info.id, *k)).collect();
        keys.sort_unstable_by_key(|(id, _)| *id);
        for (_, key) in keys {
            let mut conn = self.flows.remove(&key).expect("present");
            // A FIN from one side only: the connection was closing but is not closed.
            if conn.info.close.is_some_and(|c| c.kind == CloseKind::Fin) {
                conn.info.close = None;
            }
            self.finish_conn(*conn, handler);
        }
        self.flows.clear();
        self.closed.clear();
        self.lingering.clear();
    }

    fn finish_conn<H: ConnHandler<State = S>>(&mut self, conn: Conn<S>, handler: &mut H) {
        let Conn {
            info,
            mut halves,
            mut state,
            ..
        } = conn;
        let ts = info.last_seen;
        // The mirror's last segments (its FIN's ACK) come after: absorbed as after-close.
        if !self.mirrored.is_empty() {
            let (key, _) = FlowKey::of_sides(info.endpoints[0], info.endpoints[1]);
            if let Some(mirror) = self.mirrored.remove(&key) {
                self.mirrors.remove(&mirror);
                self.linger(ts, mirror, info.id);
            }
        }
        for side in [Side::A, Side::B] {
            let budget = &mut self.budget;
            halves[side.index()].flush(budget, |event| {
                handler.stream(&mut state, &info, side, ts, event)
            });
            halves[side.index()].release(&mut self.budget);
        }
        self.open -= 1;
        handler.close(state, &info, [halves[0].stats, halves[1].stats]);
    }

    /// A flow closed at `ts`: remembered as closed for the linger period.
    fn linger(&mut self, ts: Timestamp, key: FlowKey, id: u64) {
        self.lingering.push_back((ts, key, id));
        self.closed.insert(key, id);
        self.expires_at(self.linger_expiry(ts));
    }

    fn expires_at(&mut self, at: Timestamp) {
        self.next_expiry = self.next_expiry.min(at);
    }

    fn linger_expiry(&self, closed: Timestamp) -> Timestamp {
        Timestamp(closed.0.saturating_add_unsigned(self.config.linger_nanos))
    }

    fn expire(&mut self, now: Timestamp) {
        if now < self.next_expiry {
            return;
        }
        self.expire_due(now);
        let starts = self.recent_starts.front().map(|&(at, _)| start_expiry(at));
        let closes = self
            .lingering
            .front()
            .map(|&(at, ..)| self.linger_expiry(at));
        self.next_expiry = starts.into_iter().chain(closes).min().unwrap_or(NEVER);
    }

    fn expire_due(&mut self, now: Timestamp) {
        while let Some(&(at, start)) = self.recent_starts.front() {
            if now < start_expiry(at) {
                break;
            }
            self.recent_starts.pop_front();
            // A newer connection may have taken the entry over since.
            if self.starts.get(&start).is_some_and(|(_, t)| *t == at) {
                self.starts.remove(&start);
            }
        }
        while let Some(&(closed, key, id)) = self.lingering.front() {
            if now < self.linger_expiry(closed) {
                break;
            }
            self.lingering.pop_front();
            // The key may have been reused by a newer connection since.
            if self.closed.get(&key) == Some(&id) {
                self.closed.remove(&key);
            }
        }
    }
}

impl<S> Conn<S> {
    /// The side that sent a segment, from whether its source is its key's lower end.
    fn side_of(&self, src_low: bool) -> Side {
        if src_low == self.a_low {
            Side::A
        } else {
            Side::B
        }
    }
}

/// Deliver one segment to an open connection; true once both FINs or a RST were seen.
fn feed<S, H: ConnHandler<State = S>>(
    conn: &mut Conn<S>,
    ts: Timestamp,
    seg: &TcpSegment<'_>,
    side: Side,
    limits: StreamLimits,
    budget: &mut usize,
    handler: &mut H,
) -> bool {
    conn.info.last_seen = ts;
    let i = side.index();
    let state = &mut conn.state;

    if seg.flags.syn {
        conn.info.answered |= seg.flags.ack;
        conn.isn[i].get_or_insert(seg.seq);
        conn.halves[i].syn(seg.seq);
    }
    let info = &conn.info;
    // The peer's ACK may reveal bytes of our direction the capture never showed.
    if let Some(ack) = seg.ack {
        let other = side.other();
        conn.halves[other.index()].acknowledged(ack, budget, |event| {
            handler.stream(state, info, other, ts, event)
        });
    }
    let payload_seq = if seg.flags.syn {
        seg.seq.wrapping_add(1)
    } else {
        seg.seq
    };
    conn.halves[i].segment(
        payload_seq,
        seg.payload,
        seg.missing_tail,
        limits,
        budget,
        |event| handler.stream(state, info, side, ts, event),
    );

    if seg.flags.fin {
        let fin_seq = payload_seq.wrapping_add(seg.payload.len() as u32 + seg.missing_tail);
        conn.halves[i].fin(fin_seq);
    }
    let ended = if seg.flags.rst || seg.flags.fin {
        conn.info.closing_since.get_or_insert(ts);
        if conn.info.close.is_none() {
            conn.info.close = Some(Close {
                ts,
                kind: if seg.flags.rst {
                    CloseKind::Rst
                } else {
                    CloseKind::Fin
                },
                by: Some(side),
            });
        }
        conn.fin[i] |= seg.flags.fin;
        if seg.flags.rst {
            if let Some(close) = conn.info.close.as_mut() {
                close.kind = CloseKind::Rst;
                close.ts = ts;
            }
        }
        seg.flags.rst || (conn.fin[0] && conn.fin[1])
    } else {
        false
    };
    handler.touched(&mut conn.state, &conn.info);
    ended
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::TcpFlags;

    /// The key is in every open flow's entry and twice in every recently closed flow's.
    #[test]
    fn a_flow_key_is_forty_bytes_and_ignores_direction() {
        assert_eq!(std::mem::size_of::<FlowKey>(), 40);
        let key = |a: SocketAddr, b: SocketAddr| FlowKey::of_sides(a, b).0;
        let a: SocketAddr = "10.0.0.1:50000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:27017".parse().unwrap();
        let v6: SocketAddr = "[::ffff:10.0.0.1]:50000".parse().unwrap();
        assert_eq!(key(a, b), key(b, a));
        assert_eq!(key(a, b), key(v6, b));
        let other_port: SocketAddr = "10.0.0.1:50001".parse().unwrap();
        assert_ne!(key(a, b), key(other_port, b));
        let swapped_ports: SocketAddr = "10.0.0.1:27017".parse().unwrap();
        let b_other: SocketAddr = "10.0.0.2:50000".parse().unwrap();
        assert_ne!(key(a, b), key(swapped_ports, b_other));
        // The same words as each address taken as the u128 of its IPv6 form (IPv4-mapped)
        // with its port, the lower pair first.
        let reference = |a: SocketAddr, b: SocketAddr| {
            let flat = |s: SocketAddr| {
                let ip = match s.ip() {
                    std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    std::net::IpAddr::V6(v6) => v6,
                };
                (u128::from(ip), s.port())
            };
            let (lo, hi) = if flat(a) <= flat(b) {
                (flat(a), flat(b))
            } else {
                (flat(b), flat(a))
            };
            let (lo_ip, hi_ip) = (lo.0, hi.0);
            FlowKey([
                (lo_ip >> 64) as u64,
                lo_ip as u64,
                (hi_ip >> 64) as u64,
                hi_ip as u64,
                u64::from(lo.1) << 16 | u64::from(hi.1),
            ])
        };
        let addrs: Vec<SocketAddr> = [
            "10.0.0.1:50000",
            "10.0.0.2:27017",
            "255.255.255.255:1",
            "0.0.0.0:0",
            "[::1]:27017",
            "[fe80::1]:50000",
            "[::ffff:10.0.0.3]:5",
            "[2001:db8::ffff:a00:1]:9",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        for &x in &addrs {
            // What the slicer gives back is what it was given, IPv4-mapped IPv6 included.
            assert_eq!(Endpoint::from(x).addr(), x);
            for &y in &addrs {
                assert_eq!(key(x, y), reference(x, y), "{x} {y}");
                // One end is the lower one, seen from either direction; the end itself
                // when both are the same.
                let (x_low, y_low) = (FlowKey::of_sides(x, y).1, FlowKey::of_sides(y, x).1);
                assert!(x_low != y_low || x == y, "{x} {y}");
            }
        }
    }

    #[derive(Default)]
    struct Recorder {
        closed: Vec<(ConnInfo, Vec<u8>, Vec<u8>, u64)>,
    }

    #[derive(Default)]
    struct Bytes {
        a: Vec<u8>,
        b: Vec<u8>,
        gaps: u64,
    }

    impl ConnHandler for Recorder {
        type State = Bytes;
        fn open(&mut self, _: &ConnInfo) -> Bytes {
            Bytes::default()
        }
        fn stream(
            &mut self,
            st: &mut Bytes,
            _: &ConnInfo,
            side: Side,
            _: Timestamp,
            ev: StreamEvent<'_>,
        ) {
            match ev {
                StreamEvent::Data(d) => match side {
                    Side::A => st.a.extend_from_slice(d),
                    Side::B => st.b.extend_from_slice(d),
                },
                StreamEvent::Gap(n) => st.gaps += n,
                StreamEvent::MidStreamStart => {}
            }
        }
        fn close(&mut self, st: Bytes, info: &ConnInfo, _: [StreamStats; 2]) {
            self.closed.push((*info, st.a, st.b, st.gaps));
        }
    }

    fn seg<'a>(
        src: &str,
        dst: &str,
        seq: u32,
        ack: Option<u32>,
        flags: &str,
        payload: &'a [u8],
    ) -> TcpSegment<'a> {
        TcpSegment {
            src: src.parse::<SocketAddr>().unwrap().into(),
            dst: dst.parse::<SocketAddr>().unwrap().into(),
            seq,
            ack,
            flags: TcpFlags {
                syn: flags.contains('S'),
                ack: ack.is_some(),
                fin: flags.contains('F'),
                rst: flags.contains('R'),
            },
            payload,
            missing_tail: 0,
        }
    }

    const C: &str = "10.0.0.5:50000";
    const S: &str = "10.0.0.9:27017";

    fn handshake(t: &mut FlowTable<Bytes>, r: &mut Recorder, isn: u32, ts: i64) {
        t.segment(Timestamp(ts), &seg(C, S, isn, None, "S", b""), r);
        t.segment(
            Timestamp(ts + 1),
            &seg(S, C, 7000, Some(isn + 1), "S", b""),
            r,
        );
        t.segment(
            Timestamp(ts + 2),
            &seg(C, S, isn + 1, Some(7001), "", b""),
            r,
        );
    }

    /// One connection as a NAT's two sides show it: before (`c`→`s`) and after
    /// (`nat`→`s2`), the same sequence numbers, each packet seen on one side then the
    /// other; `server_isn` is the mirror's SYN-ACK (the same as the original's for a NAT).
    fn through_nat(t: &mut FlowTable<Bytes>, r: &mut Recorder, nat: &str, server_isn: u32) {
        let s2 = "10.1.0.9:27017";
        let mut at = 0;
        let mut both = |t: &mut FlowTable<Bytes>, pre: TcpSegment<'_>, post: TcpSegment<'_>| {
            at += 10;
            t.segment(Timestamp(at), &pre, r);
            t.segment(Timestamp(at + 1), &post, r);
        };
        both(
            t,
            seg(C, S, 100, None, "S", b""),
            seg(nat, s2, 100, None, "S", b""),
        );
        // The translated SYN-ACK crosses the capture point first.
        let (syn_ack, syn_ack2) = (
            seg(s2, nat, server_isn, Some(101), "S", b""),
            seg(S, C, 500, Some(101), "S", b""),
        );
        both(t, syn_ack, syn_ack2);
        both(
            t,
            seg(C, S, 101, Some(501), "", b"ping"),
            seg(nat, s2, 101, Some(server_isn + 1), "", b"ping"),
        );
        both(
            t,
            seg(C, S, 105, Some(501), "F", b""),
            seg(nat, s2, 105, Some(server_isn + 1), "F", b""),
        );
        both(
            t,
            seg(S, C, 501, Some(106), "F", b""),
            seg(s2, nat, server_isn + 1, Some(106), "F", b""),
        );
        both(
            t,
            seg(C, S, 106, Some(502), "", b""),
            seg(nat, s2, 106, Some(server_isn + 2), "", b""),
        );
    }

    #[test]
    fn a_connection_seen_again_behind_a_nat_is_counted_once() {
        let mut t = FlowTable::new(TableConfig::default());
        let mut r = Recorder::default();
        through_nat(&mut t, &mut r, "10.1.0.1:40000", 500);
        t.finish(&mut r);
        assert_eq!(r.closed.len(), 1);
        assert_eq!(r.closed[0].0.endpoints[0], C.parse().unwrap());
        assert_eq!(r.closed[0].1, b"ping");
        assert_eq!(t.stats.nat_mirrors, 1);
        assert_eq!(t.stats.connections, 1);
        // Segments after the original closed (the mirror's FIN, both sides' last ACK) are
        // absorbed as after-close, not opened as a flow.
        assert_eq!(t.stats.after_close, 3);
    }

    #[test]
    fn a_repeated_isn_with_another_server_isn_is_a_connection_of_its_own() {
        // The original's SYN-ACK is seen before the second SYN-ACK here, so the server
        // ISNs are compared, and they differ: two connections that drew the same ISN.
        let mut t = FlowTable::new(TableConfig::default());
        let mut r = Recorder::default();
        let other = "10.1.0.7:40000";
        t.segment(Timestamp(1), &seg(C, S, 100, None, "S", b""), &mut r);
        t.segment(Timestamp(2), &seg(S, C, 500, Some(101), "S", b""), &mut r);
        t.segment(Timestamp(3), &seg(other, S, 100, None, "S", b""), &mut r);
        t.segment(
            Timestamp(4),
            &seg(S, other, 900, Some(101), "S", b""),
            &mut r,
        );
        t.segment(
            Timestamp(5),
            &seg(other, S, 101, Some(901), "", b"hi"),
            &mut r,
        );
        t.finish(&mut r);
        assert_eq!(t.stats.nat_mirrors, 0);
        assert_eq!(r.closed.len(), 2);
        let second = r
            .closed
            .iter()
            .find(|c| c.0.endpoints[0] == other.parse().unwrap());
        let second = second.expect("its own connection");
        assert_eq!(second.0.initiator, Some(Side::A));
        assert!(second.0.answered);
        assert_eq!(second.1, b"hi");
    }

    #[test]
    fn lifecycle_and_port_reuse() {
        let mut t = FlowTable::new(TableConfig::default());
        let mut r = Recorder::default();
        handshake(&mut t, &mut r, 100, 0);
        t.segment(
            Timestamp(10),
            &seg(C, S, 101, Some(7001), "", b"ping"),
            &mut r,
        );
        t.segment(
            Timestamp(11),
            &seg(S, C, 7001, Some(105), "", b"pong"),
            &mut r,
        );
        t.segment(Timestamp(12), &seg(C, S, 105, Some(7005), "F", b""), &mut r);
        t.segment(Timestamp(13), &seg(S, C, 7005, Some(106), "F", b""), &mut r);
        // A late retransmission after the close is absorbed.
        t.segment(
            Timestamp(14),
            &seg(C, S, 101, Some(7001), "", b"ping"),
            &mut r,
        );
        assert_eq!(r.closed.len(), 1);
        assert_eq!(t.stats.after_close, 1);
        // Port reuse: a new SYN with a new ISN is a new connection.
        handshake(&mut t, &mut r, 90_000, 20);
        t.segment(
            Timestamp(30),
            &seg(C, S, 90_001, Some(7001), "", b"again"),
            &mut r,
        );
        t.finish(&mut r);
        assert_eq!(r.closed.len(), 2);
        let (info, a, b, _) = &r.closed[0];
        assert_eq!(info.initiator, Some(Side::A));
        assert_eq!(info.endpoint(Side::A).to_string(), C);
        assert_eq!(a, b"ping");
        assert_eq!(b, b"pong");
        let close = info.close.unwrap();
        assert_eq!((close.kind, close.by), (CloseKind::Fin, Some(Side::A)));
        assert_eq!(r.closed[1].1, b"again");
        assert!(r.closed[1].0.close.is_none());
        assert_ne!(r.closed[0].0.id, r.closed[1].0.id);
    }

    #[test]
    fn rst_closes_and_mid_stream_has_no_initiator() {
        let mut t = FlowTable::new(TableConfig::default());
        let mut r = Recorder::default();
        t.segment(Timestamp(1), &seg(S, C, 5, Some(9), "", b"reply"), &mut r);
        t.segment(Timestamp(2), &seg(C, S, 9, Some(10), "R", b""), &mut r);
        assert_eq!(r.closed.len(), 1);
        let (info, a, _, _) = &r.closed[0];
        assert_eq!(info.initiator, None);
        assert_eq!(info.endpoint(Side::A).to_string(), S);
        assert_eq!(a, b"reply");
        assert_eq!(info.close.unwrap().kind, CloseKind::Rst);
        assert_eq!(info.close.unwrap().by, Some(Side::B));
    }

    #[test]
    fn syn_ack_only_identifies_initiator() {
        let mut t = FlowTable::new(TableConfig::default());
        let mut r = Recorder::default();
        t.segment(Timestamp(1), &seg(S, C, 7000, Some(101), "S", b""), &mut r);
        t.segment(Timestamp(2), &seg(C, S, 101, Some(7001), "", b"hi"), &mut r);
        t.finish(&mut r);
        let (info, a, _, _) = &r.closed[0];
        assert_eq!(info.endpoint(Side::A).to_string(), C);
        assert_eq!(info.initiator, Some(Side::A));
        assert_eq!(a, b"hi");
    }

    #[test]
    fn a_syn_answered_by_rst_was_never_accepted() {
        let mut t = FlowTable::new(TableConfig::default());
        let mut r = Recorder::default();
        // Refused: the server's RST answers the SYN.
        t.segment(Timestamp(1), &seg(C, S, 100, None, "S", b""), &mut r);
        t.segment(Timestamp(2), &seg(S, C, 0, Some(101), "R", b""), &mut r);
        // Accepted: a SYN-ACK, then the client's RST.
        handshake(&mut t, &mut r, 500, 10);
        t.segment(Timestamp(20), &seg(C, S, 501, Some(7001), "R", b""), &mut r);
        t.finish(&mut r);
        let no_bytes = [StreamStats::default(); 2];
        let refused = &r.closed[0].0;
        assert!(!refused.answered);
        assert_eq!(
            refused.failed_attempt(&no_bytes),
            Some(FailedAttempt::Refused)
        );
        assert!(r.closed[1].0.answered);
        assert_eq!(r.closed[1].0.failed_attempt(&no_bytes), None);
        // A SYN with no answer by the end of the capture.
        let mut t = FlowTable::new(TableConfig::default());
        let mut r = Recorder::default();
        t.segment(Timestamp(1), &seg(C, S, 100, None, "S", b""), &mut r);
        t.segment(Timestamp(3), &seg(C, S, 100, None, "S", b""), &mut r);
        t.finish(&mut r);
        assert_eq!(
            r.closed[0].0.failed_attempt(&no_bytes),
            Some(FailedAttempt::Unanswered)
        );
    }

    #[test]
    fn lingering_connections_are_released() {
        let config = TableConfig {
            linger_nanos: 100,
            ..TableConfig::default()
        };
        let mut t = FlowTable::new(config);
        let mut r = Recorder::default();
        handshake(&mut t, &mut r, 1, 0);
        t.segment(Timestamp(5), &seg(C, S, 2, Some(7001), "R", b""), &mut r);
        assert_eq!(t.len(), 1);
        t.segment(
            Timestamp(500),
            &seg("10.0.0.6:1", S, 1, None, "S", b""),
            &mut r,
        );
        assert_eq!(t.len(), 1, "the closed flow was released");
    }
}
