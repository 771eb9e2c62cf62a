//! Stage 5, observations: MongoDB messages and stream events → one small [`Observations`]
//! record per connection.
//!
//! This is the last stage that sees bytes. It frames each direction (`wire::Framer`),
//! parses each message lazily, and keeps only what classification and attribution need:
//! the handshake, how `hello` is used (awaitable, exhaust, streamed replies, cadence),
//! which other commands ran, compression, sizes, gaps and timings. Everything after this
//! stage works on plain data.
//!
//! Which side is the client is decided from evidence, strongest first: the captured SYN,
//! then who sends requests (a request is intrinsic to the message: OP_QUERY, or OP_MSG with
//! `responseTo == 0`), then well-known server ports.

#[cfg(test)]
pub mod fixture;
pub mod shape;
mod stats;

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::capture::Timestamp;
use crate::tcp::{CloseKind, ConnHandler, ConnInfo, Side, StreamEvent, StreamStats};
use crate::tls::keylog::KeyStore;
use crate::tls::{Plaintext, TlsConn, TlsSummary};
use crate::warnings::Warnings;
use crate::wire::{self, ClientMetadata, FrameEvent, Framer, FramerConfig, Message};

pub use shape::{FlightStats, Opening, Shape, Spread};
pub use stats::{
    side_by_side, Attempts, Bins, HelloTicks, NodeLife, NodeSlot, NodeStats, Percentiles,
    ProcessSeen, SampledSummary, Summary, MAX_HELLO_TICKS, MAX_PROCESSES,
};

/// Operations in flight at once, per (client host, appName, server): the pool's real
/// concurrency, which is what makes it grow past minPoolSize.
///
/// A connection looks its key up once (at its first operation) and then counts through a
/// slot index: hashing a key that holds the appName string on every operation was a
/// tenth of the whole run on busy captures.
#[derive(Clone, Debug, Default)]
pub struct InFlight {
    slots: rustc_hash::FxHashMap<InFlightKey, u32>,
    /// Per slot: operations in flight now, and the most seen at once.
    counts: Vec<(u32, u32)>,
}

/// (client host, appName from the handshake, server endpoint).
pub type InFlightKey = (std::net::IpAddr, Option<String>, SocketAddr);

impl InFlight {
    fn slot(&mut self, key: InFlightKey) -> u32 {
        let next = self.counts.len() as u32;
        let slot = *self.slots.entry(key).or_insert(next);
        if slot == next {
            self.counts.push((0, 0));
        }
        slot
    }
    fn started(&mut self, slot: u32) {
        let (now, peak) = &mut self.counts[slot as usize];
        *now += 1;
        *peak = (*peak).max(*now);
    }
    fn finished(&mut self, slot: u32) {
        let (now, _) = &mut self.counts[slot as usize];
        *now = now.saturating_sub(1);
    }
    /// The most operations in flight at once, per key.
    pub fn peaks(&self) -> HashMap<InFlightKey, u32> {
        self.slots
            .iter()
            .map(|(key, slot)| (key.clone(), self.counts[*slot as usize].1))
            .collect()
    }
}

/// One shared copy of each distinct value. Tens of thousands of connection records hold
/// the same few handshakes, server descriptions and command names; sharing them
/// was a third of a big capture's memory. Values no record holds any more are dropped
/// when the set has doubled, so the set follows the records it serves.
#[derive(Debug)]
struct Interner<T: ?Sized> {
    values: rustc_hash::FxHashSet<Arc<T>>,
    prune_at: usize,
    /// The value last made under each key of [`Interner::intern_recent`].
    recent: rustc_hash::FxHashMap<u64, Arc<T>>,
}

impl<T: ?Sized> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            values: Default::default(),
            prune_at: 1024,
            recent: Default::default(),
        }
    }
}

/// How many keys [`Interner::intern_recent`] remembers before starting afresh.
const RECENT_KEYS: usize = 4096;

impl<T: ?Sized + Hash + Eq> Interner<T> {
    /// The shared copy of `value`; `share` makes it the first time the value is seen.
    fn intern_with<V: Borrow<T>>(&mut self, value: V, share: impl FnOnce(V) -> Arc<T>) -> Arc<T> {
        if let Some(shared) = self.values.get(value.borrow()) {
            return Arc::clone(shared);
        }
        if self.values.len() >= self.prune_at {
            self.recent.clear();
            self.values.retain(|v| Arc::strong_count(v) > 1);
            self.prune_at = (self.values.len() * 2).max(1024);
        }
        let shared = share(value);
        self.values.insert(Arc::clone(&shared));
        shared
    }
}

impl<T: Hash + Eq + std::fmt::Debug> Interner<T> {
    fn intern(&mut self, value: T) -> Arc<T> {
        self.intern_with(value, Arc::new)
    }

    /// The shared copy of what `build` makes, found without building it when the value
    /// last made under `key` is one `made_by` confirms. Most connections repeat their
    /// client's handshake and their server's description: building each copy only to
    /// find it interned already was ~50 allocations and frees per connection.
    fn intern_recent(
        &mut self,
        key: u64,
        made_by: impl Fn(&T) -> bool,
        build: impl FnOnce() -> T,
    ) -> Arc<T> {
        if let Some(known) = self.recent.get(&key).filter(|k| made_by(k)) {
            if cfg!(debug_assertions) {
                // `made_by` must agree with `build` field for field: the tests check
                // every hit against the value built.
                assert_eq!(**known, build(), "made_by confirmed another value");
            }
            return Arc::clone(known);
        }
        let shared = self.intern(build());
        if self.recent.len() >= RECENT_KEYS {
            self.recent.clear();
        }
        self.recent.insert(key, Arc::clone(&shared));
        shared
    }
}

impl Interner<str> {
    fn intern_str(&mut self, value: &str) -> Arc<str> {
        self.intern_with(value, Arc::from)
    }
}

/// How the client side of a connection was determined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Orientation {
    /// The SYN (or SYN-ACK) was captured.
    Syn,
    /// The side sending requests is the client.
    Messages,
    /// No messages in a direction that tells: the server is the side on a server port.
    Port,
    /// Nothing told: the side that sent the first captured segment is taken as client.
    Guess,
}

/// The first `hello`/`isMaster` of a connection: the driver's handshake. Every connection
/// of a driver instance sends the same one, so records share it ([`Interner`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Handshake {
    /// `hello`, `isMaster` or `ismaster`, as sent.
    pub command: String,
    /// Sent as OP_QUERY on `admin.$cmd` (drivers do this until they know the server
    /// supports OP_MSG, unless `loadBalanced` or a stable API is requested).
    pub legacy_op_query: bool,
    pub app_name: Option<String>,
    pub driver_name: Option<String>,
    pub driver_version: Option<String>,
    pub os_type: Option<String>,
    pub platform: Option<String>,
    /// `client.env.name`: set by drivers running in a FaaS environment (e.g. "aws.lambda").
    pub env_name: Option<String>,
    pub load_balanced: bool,
    pub hello_ok: bool,
    pub compression: Vec<String>,
    pub sasl_supported_mechs: Option<String>,
    pub speculative_authenticate: bool,
    /// `internalClient` present: a mongod or mongos is the client.
    pub internal_client: bool,
    /// The handshake was itself awaitable (never true for a real first hello).
    pub awaitable: bool,
}

/// How `hello`/`isMaster` was used on the connection.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HelloStats {
    /// Every hello/isMaster request, handshake included.
    pub requests: u32,
    /// Requests carrying `topologyVersion` + `maxAwaitTimeMS` (streaming protocol).
    pub awaitable: u32,
    /// Awaitable requests sent with the OP_MSG `exhaustAllowed` flag.
    pub exhaust_requests: u32,
    /// Replies to hello.
    pub replies: u32,
    /// Replies with `moreToCome`: the server streams without a new request.
    pub streamed_replies: u32,
    /// Requests sent as legacy OP_QUERY.
    pub legacy_op_query: u32,
    pub max_await_time_ms: Option<i64>,
    /// Seconds between consecutive hello requests (polling cadence) on this connection.
    pub request_intervals: SampledSummary,
    /// Seconds between consecutive hello replies (streamed cadence included).
    pub reply_intervals: Summary,
    /// Round trip of non-awaitable hellos, in milliseconds.
    pub rtt_ms: Summary,
    pub first_ts: Option<f64>,
    pub last_ts: Option<f64>,
    /// When a reply first announced a newer replica-set config (higher setVersion) than
    /// this connection had seen: the reconfig, as this connection learnt it.
    pub newer_config_ts: Option<f64>,
}

/// What the server said about itself in hello replies; shared between the connections
/// that heard the same ([`Interner`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct ServerInfo {
    pub set_name: Option<String>,
    pub me: Option<String>,
    pub hosts: Vec<String>,
    pub passives: Vec<String>,
    pub arbiters: Vec<String>,
    pub set_version: Option<i64>,
    pub is_writable_primary: Option<bool>,
    pub secondary: Option<bool>,
    pub is_mongos: bool,
    pub max_wire_version: Option<i32>,
    pub topology_version: bool,
    pub service_id: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub arbiter_only: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub is_replica_set: bool,
    /// `topologyVersion.processId`: which process answered, so that connections to a
    /// node that restarted during the capture tell the old process from the new one.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "object_id_hex"
    )]
    pub process_id: Option<[u8; 12]>,
}

impl ServerInfo {
    /// The node's role as its hello reply states it: "primary of rs0", "mongos", ….
    pub fn role(&self) -> String {
        let (role, set) = self.role_parts();
        stats::role_text(role, set)
    }

    /// The role, and the replica set it is held in.
    pub fn role_parts(&self) -> (&'static str, Option<&str>) {
        let role = if self.service_id {
            "mongos behind a load balancer"
        } else if self.is_mongos {
            "mongos"
        } else if self.set_name.is_none() {
            // A member without a valid config says isreplicaset instead of a set name.
            if self.is_replica_set {
                "member removed from its set or not initiated"
            } else {
                "standalone"
            }
        } else if self.is_writable_primary == Some(true) {
            "primary"
        } else if self.secondary == Some(true) {
            "secondary"
        } else if self.arbiter_only {
            "arbiter"
        } else {
            // RECOVERING, STARTUP2 (initial sync), ROLLBACK: a member serving no reads.
            "recovering member"
        };
        (role, self.set_name.as_deref())
    }
}

fn object_id_hex<S: serde::Serializer>(id: &Option<[u8; 12]>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => s.serialize_str(&bson::oid::ObjectId::from_bytes(*id).to_hex()),
        None => s.serialize_none(),
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CommandCount {
    /// Shared among connections (interned): comparing a command against a connection's
    /// list then reads a few hot strings, where one heap string per connection and name
    /// cost a cache miss for every message.
    pub name: Arc<str>,
    pub count: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Auth {
    /// saslStart / authenticate commands.
    pub attempts: u32,
    pub mechanism: Option<String>,
    /// Authentication piggy-backed on the handshake (`speculativeAuthenticate`).
    pub speculative: bool,
    pub failed: bool,
}

/// Server-to-server evidence on a connection: small and bounded (two flags, one sender
/// name, and the rare `dropConnections` commands).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClusterTraffic {
    /// Tails `local.oplog.rs` (tailable + awaitData find, or getMore on it).
    pub tails_oplog: bool,
    /// The tailing requests carried `term`/`lastKnownCommittedOpTime`: a member's oplog
    /// fetcher, not an application tailing the oplog.
    pub oplog_term: bool,
    /// `from` of the first replSetHeartbeat: the sending member as the set's config names it.
    pub heartbeat_from: Option<String>,
    /// `dropConnections` commands sent on this connection (at most [`MAX_DROPS`] kept).
    pub drop_connections: Vec<DropConnectionsSeen>,
}

impl DropConnectionsSeen {
    /// Whether this command is still waiting for the reply answering `response_to`.
    fn awaits(&self, response_to: i32) -> bool {
        self.request_id == response_to && self.replied.is_none()
    }
}

impl ClusterTraffic {
    pub fn is_empty(&self) -> bool {
        *self == ClusterTraffic::default()
    }
}

/// dropConnections commands kept per connection.
pub const MAX_DROPS: usize = 16;

/// One `dropConnections` command and its reply.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DropConnectionsSeen {
    pub ts: f64,
    /// Each `hostAndPort` element as sent (`null`: not a string).
    pub targets: Vec<Option<String>>,
    pub replied: Option<f64>,
    pub ok: Option<bool>,
    pub errmsg: Option<String>,
    #[serde(skip)]
    pub request_id: i32,
}

/// Per-direction traffic counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    pub bytes: u64,
    pub messages: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    pub retransmissions: u64,
    pub resyncs: u64,
    pub skipped_bytes: u64,
    pub malformed: u64,
    /// Messages longer than the framer buffers whole; only their start was read.
    pub oversized: u64,
    /// Messages whose end a gap left out (a snap length, lost packets); only their start
    /// was read.
    pub cut: u64,
}

/// Everything later stages know about one connection.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Observations {
    pub id: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub orientation: Orientation,
    pub syn_seen: bool,
    /// The SYN's timestamp, when captured.
    pub opened: Option<f64>,
    pub closed: Option<f64>,
    /// The first FIN or RST from either side (see `ConnInfo::closing_since`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closing: Option<f64>,
    /// "client" or "server": whose FIN/RST came first.
    pub closed_by: Option<&'static str>,
    /// "fin", "rst" or "reused".
    pub close_kind: Option<&'static str>,
    pub first_seen: f64,
    pub last_seen: f64,
    /// The first bytes of a direction were not a message start (no SYN captured and the
    /// stream had to be hunted for a header).
    pub mid_stream: bool,
    /// The first request seen on the connection (its command name).
    pub first_command: Option<String>,
    pub handshake: Option<Arc<Handshake>>,
    /// When the handshake was sent.
    pub handshake_ts: Option<f64>,
    pub hello: HelloStats,
    /// When hellos were sent and heartbeats streamed (bounded), for the HTML timeline;
    /// not part of the JSON contract.
    #[serde(skip)]
    pub hello_ticks: HelloTicks,
    /// Requests other than hello and authentication, by command name.
    pub commands: Vec<CommandCount>,
    pub auth: Auth,
    /// Compressor of OP_COMPRESSED messages seen.
    pub compression: Option<&'static str>,
    /// Legacy opcodes (OP_INSERT …) counted by name.
    pub legacy_opcodes: Vec<CommandCount>,
    pub server_info: Option<Arc<ServerInfo>>,
    /// Round trips of operations (non-hello requests), milliseconds.
    pub op_latency_ms: Summary,
    pub client_traffic: Traffic,
    pub server_traffic: Traffic,
    /// The connection carries TLS records: its MongoDB messages are only visible when a
    /// key log decrypts them (`tls_session.decrypted`).
    pub tls: bool,
    /// The TLS session: version, cipher, SNI, whether it was decrypted.
    pub tls_session: Option<Box<TlsSummary>>,
    /// Record shapes of a TLS connection that was not decrypted: what its role is
    /// inferred from ([`shape`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shape: Option<Box<Shape>>,
    /// Replication and cluster-administration evidence.
    #[serde(skip_serializing_if = "ClusterTraffic::is_empty")]
    pub cluster: ClusterTraffic,
}

impl Observations {
    /// Nothing observed yet; orientation is settled when the connection ends.
    pub fn new(id: u64, client: SocketAddr, server: SocketAddr) -> Observations {
        Observations {
            id,
            client,
            server,
            orientation: Orientation::Guess,
            syn_seen: false,
            opened: None,
            closed: None,
            closing: None,
            closed_by: None,
            close_kind: None,
            first_seen: 0.0,
            last_seen: 0.0,
            mid_stream: false,
            first_command: None,
            handshake: None,
            handshake_ts: None,
            hello: HelloStats::default(),
            hello_ticks: HelloTicks::default(),
            commands: Vec::new(),
            auth: Auth::default(),
            compression: None,
            legacy_opcodes: Vec::new(),
            server_info: None,
            op_latency_ms: Summary::default(),
            client_traffic: Traffic::default(),
            server_traffic: Traffic::default(),
            tls: false,
            tls_session: None,
            shape: None,
            cluster: ClusterTraffic::default(),
        }
    }

    /// TLS whose application data was decrypted: its messages are as good as plaintext.
    pub fn tls_decrypted(&self) -> bool {
        self.tls_session.as_ref().is_some_and(|t| t.decrypted)
    }

    /// Requests that are neither hello nor authentication.
    pub fn operations(&self) -> u64 {
        self.commands.iter().map(|c| c.count).sum::<u64>()
            + self.legacy_opcodes.iter().map(|c| c.count).sum::<u64>()
    }
    /// From its first packet until either side began to close it (or, never closed, to
    /// the end): the time it counted against its pool or monitor set. A replacement
    /// opened while the old connection's close is still in flight is not an overlap.
    pub fn span(&self) -> (f64, Option<f64>) {
        // A connection older than the capture whose first captured packet is its FIN was
        // open all along: it ends with its last packet, not at the instant it appeared.
        let closing = self.closing.filter(|&c| c > self.first_seen);
        (self.first_seen, closing.or(self.closed))
    }
    /// Whether a bound on memory may fold this closed connection into its client's
    /// tally. One that sent `dropConnections` stays listed: the cluster section reports
    /// each such command with what it closed, from the sender's record. They are few.
    pub fn releasable(&self) -> bool {
        self.cluster.drop_connections.is_empty()
    }
    pub fn messages(&self) -> u64 {
        self.client_traffic.messages + self.server_traffic.messages
    }
    pub fn command_count(&self, name: &str) -> u64 {
        self.commands
            .iter()
            .find(|c| &*c.name == name)
            .map_or(0, |c| c.count)
    }
}

/// What a request was, remembered until its reply arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Hello { awaitable: bool },
    Operation,
    Other,
}

/// Outstanding requests per connection: drivers keep one in flight per connection, so a
/// handful of slots is plenty; the oldest is overwritten when full.
const PENDING_SLOTS: usize = 8;

/// Per-connection state while the connection is open. The framers are kept apart from
/// the rest so a framer can hand out messages (borrowing itself) while they are recorded.
pub struct ConnState {
    framers: [Framer; 2],
    /// Set once the connection is seen to carry TLS.
    tls: Option<Box<TlsConn>>,
    /// Application-data record shapes, from the first such record of a TLS connection.
    shape: Option<Box<shape::ShapeTracker>>,
    core: Core,
}

struct Core {
    /// Which side sends requests, once a message told us.
    client_side: Option<Side>,
    /// Requests awaiting a reply: request id (`None`: a free slot; 0 is a valid id), when
    /// sent, and what it was.
    pending: [(Option<i32>, Timestamp, Pending); PENDING_SLOTS],
    /// The slot the next request takes (a byte: the state of every open connection).
    pending_next: u8,
    last_hello_request: Option<Timestamp>,
    last_hello_reply: Option<Timestamp>,
    /// Boxed from the start: at the close the record moves to the finished list as it
    /// is, where a record inside the state was copied out twice (~900 bytes each time).
    obs: Box<Observations>,
    traffic: [Traffic; 2],
    mid_stream: [bool; 2],
    hunting_warned: [bool; 2],
    /// This connection's [`InFlight`] slot, found at its first operation.
    in_flight_slot: Option<u32>,
    node: KnownNode,
    /// Whether an operation of this connection is counted in flight now.
    outstanding: bool,
    /// Whether a request was seen (`obs.first_command` is set): asked of every request,
    /// and here it costs no read of the record, whose lines are cold by then.
    requested: bool,
}

impl Core {
    /// The pending request a reply answering `response_to` is for: the first match.
    fn pending_slot(&self, response_to: i32) -> Option<usize> {
        self.pending
            .iter()
            .position(|(id, ..)| *id == Some(response_to))
    }

    /// A request (or a streamed reply announcing the next) awaits its reply, in the next
    /// slot: the oldest is forgotten once all are taken.
    fn await_reply(&mut self, request_id: i32, sent: Timestamp, kind: Pending) {
        let next = usize::from(self.pending_next);
        self.pending[next] = (Some(request_id), sent, kind);
        self.pending_next = ((next + 1) % PENDING_SLOTS) as u8;
    }
}

#[derive(Clone, Debug)]
pub struct ObserverConfig {
    pub framer: FramerConfig,
    /// Ports that identify the server side when nothing else does.
    pub server_ports: Vec<u16>,
    /// SSLKEYLOGFILE to decrypt TLS connections with.
    pub keylog: Option<KeyLogConfig>,
}

/// Where the key log is, and whether it is still being written (live mode).
#[derive(Clone, Debug)]
pub struct KeyLogConfig {
    pub path: std::path::PathBuf,
    /// Re-read the file when a session's secrets are missing: the application appends to
    /// it while it runs.
    pub follow: bool,
}

impl Default for ObserverConfig {
    fn default() -> Self {
        ObserverConfig {
            framer: FramerConfig::default(),
            server_ports: vec![27017, 27018, 27019],
            keylog: None,
        }
    }
}

/// Stage 5 as a [`ConnHandler`]: the flow table feeds it, it fills `finished`.
pub struct Observer {
    config: ObserverConfig,
    /// Decompression scratch (buffer and decompressors), reused by every message.
    scratch: wire::Scratch,
    pub finished: Vec<Box<Observations>>,
    pub nodes: NodeStats,
    pub in_flight: InFlight,
    handshakes: Interner<Handshake>,
    client_docs: ClientDocMemo,
    command_names: Interner<str>,
    server_infos: Interner<ServerInfo>,
    pub warnings: Warnings,
    /// TCP flows that never carried a MongoDB message and touch no server port.
    pub foreign_flows: u64,
    /// Connections on a MongoDB port that carry TLS.
    pub tls_connections: u64,
    /// TLS connections that began before the capture: no ClientHello, so no client random
    /// to find their keys by.
    pub tls_without_handshake: u64,
    /// Of those, connections whose application data was decrypted.
    pub tls_decrypted: u64,
    /// The key log, when one was given.
    keys: Option<KeyStore>,
    /// Decrypted bytes of the current segment, reused.
    plain: Plaintext,
    /// dropConnections commands recorded and not answered yet, in any connection: while
    /// there are none (nearly always), a reply does not look through its record's list.
    drops_unanswered: u64,
}

impl Observer {
    pub fn new(config: ObserverConfig) -> Observer {
        let mut warnings = Warnings::default();
        let keys = config
            .keylog
            .as_ref()
            .and_then(|k| match KeyStore::open(&k.path, k.follow) {
                Ok(store) => {
                    if let Some(first) = store.bad_lines.first() {
                        warnings.push(
                            "tls-keylog",
                            format!(
                                "{} unusable line(s) in the key log, first: {first}",
                                store.bad_lines.len()
                            ),
                        );
                    }
                    Some(store)
                }
                Err(e) => {
                    warnings.push(
                        "tls-keylog",
                        format!("cannot read the key log {}: {e}", k.path.display()),
                    );
                    None
                }
            });
        Observer {
            keys,
            plain: Plaintext::default(),
            tls_decrypted: 0,
            config,
            scratch: wire::Scratch::default(),
            finished: Vec::new(),
            nodes: NodeStats::default(),
            in_flight: InFlight::default(),
            handshakes: Interner::default(),
            client_docs: ClientDocMemo::default(),
            command_names: Interner::default(),
            server_infos: Interner::default(),
            warnings,
            foreign_flows: 0,
            tls_connections: 0,
            tls_without_handshake: 0,
            drops_unanswered: 0,
        }
    }

    fn is_server_port(&self, port: u16) -> bool {
        self.config.server_ports.contains(&port)
    }

    /// The observations of a connection still open (live snapshots): settled as if it
    /// ended now, without changing it. None for a SYN not answered yet: an attempt, not
    /// (yet) a connection.
    pub fn peek(&self, state: &ConnState, info: &ConnInfo) -> Option<Observations> {
        if info.never_accepted() && state.core.traffic.iter().all(|t| t.bytes == 0) {
            return None;
        }
        let mut obs = Observations::clone(&state.core.obs);
        let client = self.client_side(&state.core, info);
        let core = &state.core;
        self.settle(&mut obs, (&core.traffic, core.mid_stream), info, client);
        obs.tls_session = state.tls.as_ref().map(|t| Box::new(t.summary()));
        obs.shape = keyless_shape(state, client.0);
        Some(obs)
    }

    /// Which side is the client, and what told: the SYN, the messages (or the
    /// ClientHello), the server port, or a guess (the first captured segment's sender).
    fn client_side(&self, state: &Core, info: &ConnInfo) -> (Side, Orientation) {
        match (info.initiator, state.client_side) {
            (Some(side), _) => (side, Orientation::Syn),
            (None, Some(side)) => (side, Orientation::Messages),
            (None, None) => {
                let a_is_server = self.is_server_port(info.endpoint(Side::A).port());
                let b_is_server = self.is_server_port(info.endpoint(Side::B).port());
                match (a_is_server, b_is_server) {
                    (true, false) => (Side::B, Orientation::Port),
                    (false, true) => (Side::A, Orientation::Port),
                    _ => (Side::A, Orientation::Guess),
                }
            }
        }
    }

    /// The connection's endpoints, times, close and traffic, its client side decided by
    /// [`Observer::client_side`].
    fn settle(
        &self,
        obs: &mut Observations,
        (traffic, mid_stream): (&[Traffic; 2], [bool; 2]),
        info: &ConnInfo,
        (client_side, orientation): (Side, Orientation),
    ) {
        let server_side = client_side.other();
        obs.client = info.endpoint(client_side);
        obs.server = info.endpoint(server_side);
        obs.orientation = orientation;
        obs.syn_seen = info.initiator.is_some();
        obs.opened = info.initiator.map(|_| info.first_seen.as_secs_f64());
        obs.first_seen = info.first_seen.as_secs_f64();
        obs.last_seen = info.last_seen.as_secs_f64();
        obs.mid_stream = mid_stream[0] || mid_stream[1];
        obs.closing = info.closing_since.map(|t| t.as_secs_f64());
        if let Some(close) = info.close {
            obs.closed = Some(close.ts.as_secs_f64());
            obs.close_kind = Some(match close.kind {
                CloseKind::Fin => "fin",
                CloseKind::Rst => "rst",
                CloseKind::Reused => "reused",
            });
            obs.closed_by = close.by.map(|side| {
                if side == client_side {
                    "client"
                } else {
                    "server"
                }
            });
        }
        obs.client_traffic = traffic[client_side.index()];
        obs.server_traffic = traffic[server_side.index()];
    }

    fn on_message(
        &mut self,
        state: &mut Core,
        info: &ConnInfo,
        side: Side,
        ts: Timestamp,
        msg: &Message<'_>,
    ) {
        state.traffic[side.index()].messages += 1;
        // Once the connection says which side is the client (its SYN, a ClientHello or an
        // earlier message), OP_MSG's direction comes from the side, not from responseTo.
        let msg = &match info.initiator.or(state.client_side) {
            Some(client) if side == client => msg.sent_by(wire::Sender::Client),
            Some(_) => msg.sent_by(wire::Sender::Server),
            None => *msg,
        };
        if let Some(c) = msg.compressor {
            state.obs.compression = Some(c.name());
        }
        if msg.is_request() {
            if state.client_side.is_none() {
                state.client_side = Some(side);
            }
            let kind = self.on_request(state, ts, msg);
            if kind == Pending::Operation && !state.outstanding {
                let slot = *state.in_flight_slot.get_or_insert_with(|| {
                    self.in_flight.slot((
                        info.endpoint(side).ip(),
                        state
                            .obs
                            .handshake
                            .as_ref()
                            .and_then(|h| h.app_name.clone()),
                        info.endpoint(side.other()),
                    ))
                });
                self.in_flight.started(slot);
                state.outstanding = true;
            }
        } else if msg.is_reply() {
            if state.client_side.is_none() {
                state.client_side = Some(side.other());
            }
            let server = info.endpoint(side);
            self.on_reply(state, ReplyFrom { side, server, ts }, msg);
        }
    }

    fn on_request(&mut self, state: &mut Core, ts: Timestamp, msg: &Message<'_>) -> Pending {
        let obs = &mut state.obs;
        let name = msg.command_name();
        if !std::mem::replace(&mut state.requested, true) {
            obs.first_command = Some(name.unwrap_or(msg.header.op_code.name()).to_string());
        }
        let kind = match name {
            Some(name) if wire::is_hello_name(name) => {
                let hello = wire::hello_request_named(msg, name);
                let awaitable = hello.is_awaitable();
                let h = &mut obs.hello;
                h.requests += 1;
                if awaitable {
                    h.awaitable += 1;
                    if let Some(ms) = hello.max_await_time_ms {
                        h.max_await_time_ms = Some(ms);
                    }
                }
                if let Some(flags) = msg.msg_flags() {
                    if flags.exhaust_allowed() {
                        h.exhaust_requests += 1;
                    }
                }
                if hello.legacy_op_query {
                    h.legacy_op_query += 1;
                }
                if obs.handshake.is_none() && is_handshake(&hello, obs.syn_seen) {
                    obs.handshake = Some(self.handshake(&hello));
                    obs.handshake_ts = Some(ts.as_secs_f64());
                    if hello.speculative_authenticate {
                        obs.auth.speculative = true;
                    }
                }
                let secs = ts.as_secs_f64();
                h.first_ts.get_or_insert(secs);
                h.last_ts = Some(secs);
                if let Some(prev) = state.last_hello_request {
                    let gap = ts.nanos_since(prev) as f64 / 1e9;
                    h.request_intervals.add_sample(gap);
                }
                state.last_hello_request = Some(ts);
                obs.hello_ticks.record(secs - obs.first_seen);
                Pending::Hello { awaitable }
            }
            Some(name) if is_auth_command(name) => {
                if matches!(name, "saslStart" | "authenticate") {
                    obs.auth.attempts += 1;
                    if let Some(mech) = msg.command_doc().and_then(|d| d.get_str("mechanism").ok())
                    {
                        obs.auth.mechanism = Some(mech.to_string());
                    }
                }
                Pending::Other
            }
            Some(name) => {
                count(&mut obs.commands, name, &mut self.command_names);
                if cluster_evidence(obs, ts, msg, Some(name)) {
                    self.drops_unanswered += 1;
                }
                Pending::Operation
            }
            // Legacy writes, and OP_QUERY on a collection (a find, not a command).
            None if matches!(msg.body, wire::Body::Legacy | wire::Body::Query { .. }) => {
                count(
                    &mut obs.legacy_opcodes,
                    msg.header.op_code.name(),
                    &mut self.command_names,
                );
                if cluster_evidence(obs, ts, msg, None) {
                    self.drops_unanswered += 1;
                }
                Pending::Operation
            }
            None => Pending::Other,
        };
        // Fire-and-forget messages (moreToCome on a request) get no reply.
        let expects_reply = match (msg.msg_flags(), msg.body) {
            (Some(flags), _) => !flags.more_to_come(),
            (None, wire::Body::Legacy) => false,
            _ => true,
        };
        if expects_reply {
            state.await_reply(msg.header.request_id, ts, kind);
            kind
        } else {
            Pending::Other
        }
    }

    fn on_reply(&mut self, state: &mut Core, from: ReplyFrom, msg: &Message<'_>) {
        let ReplyFrom { side, server, ts } = from;
        let wanted = msg.header.response_to;
        let Some(slot) = state.pending_slot(wanted) else {
            self.on_unmatched_reply(state, from, msg);
            return;
        };
        let (_, sent, kind) = state.pending[slot];
        state.pending[slot].0 = None;
        let elapsed_ms = ts.nanos_since(sent) as f64 / 1e6;
        let streamed = msg.msg_flags().is_some_and(|f| f.more_to_come());
        let obs = &mut state.obs;
        match kind {
            Pending::Hello { awaitable } => {
                obs.hello.replies += 1;
                if streamed {
                    obs.hello.streamed_replies += 1;
                    obs.hello_ticks.record(ts.as_secs_f64() - obs.first_seen);
                    // The next streamed reply will answer this one.
                    state.pending[slot] = (Some(msg.header.request_id), ts, kind);
                }
                if let Some(prev) = state.last_hello_reply {
                    let gap = ts.nanos_since(prev) as f64 / 1e9;
                    obs.hello.reply_intervals.add(gap);
                    let node = state.node.slot(&mut self.nodes, side, server);
                    self.nodes.heartbeat(node, gap);
                }
                state.last_hello_reply = Some(ts);
                if !awaitable {
                    obs.hello.rtt_ms.add(elapsed_ms);
                    let node = state.node.slot(&mut self.nodes, side, server);
                    self.nodes.hello_rtt(node, elapsed_ms);
                }
                // The first replies describe the server; a later one replaces them only
                // when it carries a newer replica-set config (setVersion), so a reconfig
                // during the capture is seen. Most replies are later ones (a monitor's
                // every heartbeat): of those only setVersion is read, unless it is newer.
                // A later one is read whole, too, when its role changed (a stepdown, an
                // election): only the role fields are read first.
                let describes = obs.server_info.is_none() || obs.hello.replies <= 2;
                let glance = wire::reply_state(msg);
                let newer = note_newer_config(obs, glance.set_version, ts);
                let role_changed = obs
                    .server_info
                    .as_deref()
                    .is_some_and(|known| changes_role(glance, known));
                // Only a whole reply describes the server: of one a snap length cut, the
                // host list is missing, not empty.
                if (describes || newer || role_changed) && !msg.is_partial() {
                    if let Some(reply) = wire::hello_reply(msg) {
                        self.describe(obs, server, &reply, ts);
                        if let Some(tv) = reply.topology_version {
                            self.nodes.process(server, tv.process_id, ts.as_secs_f64());
                        }
                    }
                }
            }
            Pending::Operation => {
                let drop = match self.drops_unanswered {
                    0 => None,
                    _ => obs
                        .cluster
                        .drop_connections
                        .iter_mut()
                        .find(|d| d.awaits(wanted)),
                };
                if let Some(drop) = drop {
                    drop.replied = Some(ts.as_secs_f64());
                    drop.ok = wire::reply_ok(msg);
                    drop.errmsg = wire::reply_errmsg(msg).map(str::to_string);
                    self.drops_unanswered -= 1;
                }
                if std::mem::take(&mut state.outstanding) {
                    self.in_flight
                        .finished(state.in_flight_slot.unwrap_or_default());
                }
                obs.op_latency_ms.add(elapsed_ms);
                let node = state.node.slot(&mut self.nodes, side, server);
                self.nodes.op_latency(node, elapsed_ms);
            }
            Pending::Other => {
                if wire::reply_ok(msg) == Some(false) {
                    obs.auth.failed = obs.auth.attempts > 0;
                }
            }
        }
    }
}

impl Observer {
    /// A whole hello reply from `server` describes it: the connection's record takes the
    /// (shared) description, and the node its role. The server's last description is
    /// looked up first ([`Interner::intern_recent`]): most replies repeat it.
    fn describe(
        &mut self,
        obs: &mut Observations,
        server: SocketAddr,
        reply: &wire::HelloReply<'_>,
        ts: Timestamp,
    ) {
        let info = self.server_infos.intern_recent(
            rustc_hash::FxBuildHasher.hash_one(server),
            |known| known.made_by(reply),
            || server_info_of(reply),
        );
        let process = reply.topology_version.map(|tv| tv.process_id);
        self.nodes
            .role(server, info.role_parts(), process, ts.as_secs_f64());
        obs.server_info = Some(info);
    }

    /// A reply to a request the capture did not show. Only an exhaust stream can be
    /// recognised from its replies alone: a hello reply flagged moreToCome answers an
    /// awaitable hello sent before the capture began, and announces the next reply.
    fn on_unmatched_reply(&mut self, state: &mut Core, from: ReplyFrom, msg: &Message<'_>) {
        let ReplyFrom { side, server, ts } = from;
        let streamed = msg.msg_flags().is_some_and(|f| f.more_to_come());
        if !streamed {
            return;
        }
        let Some(reply) = wire::hello_reply(msg) else {
            return;
        };
        if reply.topology_version.is_none() && reply.is_writable_primary.is_none() {
            return;
        }
        let obs = &mut state.obs;
        obs.hello.replies += 1;
        obs.hello.streamed_replies += 1;
        obs.hello_ticks.record(ts.as_secs_f64() - obs.first_seen);
        if let Some(prev) = state.last_hello_reply {
            let gap = ts.nanos_since(prev) as f64 / 1e9;
            obs.hello.reply_intervals.add(gap);
            let node = state.node.slot(&mut self.nodes, side, server);
            self.nodes.heartbeat(node, gap);
        }
        state.last_hello_reply = Some(ts);
        let newer = note_newer_config(obs, reply.set_version, ts);
        let glance = wire::ReplyState {
            set_version: reply.set_version,
            is_writable_primary: reply.is_writable_primary,
            secondary: reply.secondary,
        };
        let role_changed = obs
            .server_info
            .as_deref()
            .is_some_and(|known| changes_role(glance, known));
        if (obs.server_info.is_none() || newer || role_changed) && !msg.is_partial() {
            self.describe(obs, server, &reply, ts);
        }
        if let Some(tv) = reply.topology_version.filter(|_| !msg.is_partial()) {
            self.nodes.process(server, tv.process_id, ts.as_secs_f64());
        }
        state.await_reply(
            msg.header.request_id,
            ts,
            Pending::Hello { awaitable: true },
        );
    }
}

/// The connection's record-shape tracker, started with the first records (or gap).
fn shape_of<'a>(
    shape: &'a mut Option<Box<shape::ShapeTracker>>,
    tls: &TlsConn,
) -> &'a mut shape::ShapeTracker {
    shape.get_or_insert_with(|| Box::new(shape::ShapeTracker::new(tls.client_side())))
}

/// The record shapes of a TLS connection none of whose application data was decrypted
/// (a decrypted one is read from its messages instead).
/// `client`: the side the connection's record names as client ([`Observer::client_side`]):
/// in a capture that began mid-connection, with no SYN or ClientHello, the side on the
/// server port, not the first segment's sender (a streaming monitor's server speaks first).
fn keyless_shape(state: &ConnState, client: Side) -> Option<Box<Shape>> {
    let tls = state.tls.as_ref()?;
    if tls.decrypted() {
        return None;
    }
    let tracker = state.shape.as_deref().copied().unwrap_or_default();
    Some(Box::new(tracker.shape(client, tls.tickets())))
}

/// A TLS record header (RFC 8446 §5.1): content type change_cipher_spec, alert, handshake
/// or application_data, legacy version 3.x, and a length within the record limit. Read as
/// a MongoDB messageLength those bytes claim 16–67 MB, so they are only trusted while the
/// connection has produced no MongoDB message (a first message is a small handshake).
fn looks_like_tls(data: &[u8]) -> bool {
    match data {
        [kind, 3, minor, hi, lo, ..] => {
            (20..=23).contains(kind)
                && *minor <= 4
                && u16::from_be_bytes([*hi, *lo]) <= 16_384 + 2_048
        }
        _ => false,
    }
}

/// Record what a request says about replication roles and cluster administration;
/// whether it recorded a dropConnections, which awaits its reply.
fn cluster_evidence(
    obs: &mut Observations,
    ts: Timestamp,
    msg: &Message<'_>,
    name: Option<&str>,
) -> bool {
    let Some(req) = wire::cluster_request(msg, name) else {
        return false;
    };
    let cluster = &mut obs.cluster;
    match req {
        wire::ClusterRequest::OplogTail { term } => {
            cluster.tails_oplog = true;
            cluster.oplog_term |= term;
            false
        }
        wire::ClusterRequest::Heartbeat { from } => {
            if cluster.heartbeat_from.is_none() {
                cluster.heartbeat_from = from.map(str::to_string);
            }
            false
        }
        wire::ClusterRequest::DropConnections { targets } => {
            let recorded = cluster.drop_connections.len() < MAX_DROPS;
            if recorded {
                cluster.drop_connections.push(DropConnectionsSeen {
                    ts: ts.as_secs_f64(),
                    targets: targets
                        .into_iter()
                        .take(256)
                        .map(|t| t.map(str::to_string))
                        .collect(),
                    request_id: msg.header.request_id,
                    ..DropConnectionsSeen::default()
                });
            }
            recorded
        }
    }
}

/// Where and when a reply came from: its side (the server's), that side's address, and
/// its time.
#[derive(Clone, Copy)]
struct ReplyFrom {
    side: Side,
    server: SocketAddr,
    ts: Timestamp,
}

/// The node in [`NodeStats`] that a connection's replies from `side` come from, found at
/// its first timed reply: a reply then records without a lookup.
struct KnownNode {
    slot: Option<NodeSlot>,
    side: Side,
}

impl KnownNode {
    fn slot(&mut self, nodes: &mut NodeStats, side: Side, server: SocketAddr) -> NodeSlot {
        match self.slot {
            Some(slot) if self.side == side => slot,
            _ => {
                let slot = nodes.slot(server);
                (self.slot, self.side) = (Some(slot), side);
                slot
            }
        }
    }
}

fn is_auth_command(name: &str) -> bool {
    matches!(
        name,
        "saslStart" | "saslContinue" | "authenticate" | "getnonce" | "logout"
    )
}

/// Distinct command names counted per connection: real drivers send a few dozen at most,
/// while a stream of garbage could send a new one with every message.
const MAX_COMMAND_NAMES: usize = 128;
/// Where the names beyond [`MAX_COMMAND_NAMES`] are counted.
const OTHER_COMMANDS: &str = "(other commands)";

/// Whether a whole message can stay compressed: an OP_COMPRESSED reply, from the side
/// known to be the server, to an operation. Nothing reads such a reply's contents (only
/// its time and size count), but an inflater reads all of it: a compressed find's
/// results cost far more to inflate than everything else its connection does. A reply
/// the observer would read is still inflated: a hello's, an authentication step's, a
/// `dropConnections`'s, and any it cannot place (a streamed hello reply answers no
/// pending request).
fn leaves_compressed(state: &Core, info: &ConnInfo, side: Side, bytes: &[u8]) -> bool {
    // Every message passes here: the opcode's bytes first, then the rest.
    const OP_COMPRESSED: [u8; 4] = 2012i32.to_le_bytes();
    if bytes.get(12..16) != Some(&OP_COMPRESSED[..])
        || info.initiator.or(state.client_side) != Some(side.other())
    {
        return false;
    }
    let Ok(header) = wire::HeaderView::new_checked(bytes) else {
        return false;
    };
    let answers = header.response_to();
    state
        .pending_slot(answers)
        .is_some_and(|slot| state.pending[slot].2 == Pending::Operation)
        && !state
            .obs
            .cluster
            .drop_connections
            .iter()
            .any(|d| d.awaits(answers))
}

fn count(list: &mut Vec<CommandCount>, name: &str, names: &mut Interner<str>) {
    let name = if list.len() < MAX_COMMAND_NAMES || list.iter().any(|c| &*c.name == name) {
        name
    } else {
        OTHER_COMMANDS
    };
    match list.iter_mut().find(|c| &*c.name == name) {
        Some(c) => c.count += 1,
        None => list.push(CommandCount {
            name: names.intern_str(name),
            count: 1,
        }),
    }
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_string)
}

/// Whether a connection's first hello is its handshake. The handshake spec has a driver send
/// `client` metadata in the handshake and never after it, and mongod/mongos mark theirs
/// `internalClient`. A hello with neither is the handshake only on a connection seen to
/// open (drivers such as mgo send no metadata): on one that predates the capture it is a
/// monitor's periodic check, and taking it for a handshake made a cut capture's RTT monitor
/// read as "only the handshake was seen".
fn is_handshake(hello: &wire::HelloRequest<'_>, syn_seen: bool) -> bool {
    hello.client.is_some() || hello.internal_client || syn_seen
}

/// Handshakes by their hello's `client` document, byte for byte ([`Observer::handshake`]).
#[derive(Default)]
struct ClientDocMemo {
    recent: rustc_hash::FxHashMap<u64, (Box<[u8]>, Arc<Handshake>)>,
}

/// Documents remembered before the memo starts afresh, and the largest one remembered:
/// the handshake spec caps client metadata at 512 bytes, so this bounds what a crafted
/// capture can make it hold (~1 MB) without turning real drivers away.
const CLIENT_DOCS: usize = 1024;
const CLIENT_DOC_MAX: usize = 1024;

impl Observer {
    /// The shared record of a connection's handshake. A driver sends the same `client`
    /// document on every connection it opens: a handshake is looked up by those bytes
    /// first (confirmed by the request's other fields), and the document is read only
    /// when it is new. Reading it was ~2,400 instructions a connection.
    fn handshake(&mut self, hello: &wire::HelloRequest<'_>) -> Arc<Handshake> {
        let raw = hello
            .client
            .map(wire::Doc::as_bytes)
            .filter(|raw| raw.len() <= CLIENT_DOC_MAX);
        let key = raw.map(|raw| rustc_hash::FxBuildHasher.hash_one((hello.command, raw)));
        if let Some((known_raw, known)) = key.and_then(|key| self.client_docs.recent.get(&key)) {
            if raw == Some(&**known_raw) && known.requested_by(hello) {
                if cfg!(debug_assertions) {
                    assert_eq!(
                        **known,
                        handshake_of(hello, hello.client_metadata().as_ref())
                    );
                }
                return Arc::clone(known);
            }
        }
        let client = hello.client_metadata();
        let shared = self.handshakes.intern_recent(
            handshake_key(hello, client.as_ref()),
            |known| known.made_by(hello, client.as_ref()),
            || handshake_of(hello, client.as_ref()),
        );
        if let (Some(key), Some(raw)) = (key, raw) {
            let memo = &mut self.client_docs.recent;
            if memo.len() >= CLIENT_DOCS {
                memo.clear();
            }
            memo.insert(key, (raw.into(), Arc::clone(&shared)));
        }
        shared
    }
}

fn handshake_of(hello: &wire::HelloRequest<'_>, client: Option<&ClientMetadata<'_>>) -> Handshake {
    Handshake {
        command: hello.command.to_string(),
        legacy_op_query: hello.legacy_op_query,
        app_name: owned(client.and_then(|c| c.app_name)),
        driver_name: owned(client.and_then(|c| c.driver_name)),
        driver_version: owned(client.and_then(|c| c.driver_version)),
        os_type: owned(client.and_then(|c| c.os_type)),
        platform: owned(client.and_then(|c| c.platform)),
        env_name: owned(client.and_then(|c| c.env_name)),
        load_balanced: hello.load_balanced,
        hello_ok: hello.hello_ok,
        compression: hello.compressors().map(str::to_string).collect(),
        sasl_supported_mechs: owned(hello.sasl_supported_mechs),
        speculative_authenticate: hello.speculative_authenticate,
        internal_client: hello.internal_client,
        awaitable: hello.is_awaitable(),
    }
}

/// Where [`Interner::intern_recent`] looks for a handshake: the client's names, which
/// tell its clients apart (the rest is confirmed by [`Handshake::made_by`]).
fn handshake_key(hello: &wire::HelloRequest<'_>, client: Option<&ClientMetadata<'_>>) -> u64 {
    let names = client.map(|c| (c.app_name, c.driver_name, c.driver_version));
    rustc_hash::FxBuildHasher.hash_one((hello.command, names))
}

/// An owned text field equals the borrowed one it would be made of ([`owned`]).
fn same(mine: &Option<String>, theirs: Option<&str>) -> bool {
    mine.as_deref() == theirs
}

impl Handshake {
    /// Whether [`handshake_of`] would make this very value of `hello` with its `client`
    /// metadata.
    fn made_by(&self, hello: &wire::HelloRequest<'_>, client: Option<&ClientMetadata<'_>>) -> bool {
        same(&self.app_name, client.and_then(|c| c.app_name))
            && same(&self.driver_name, client.and_then(|c| c.driver_name))
            && same(&self.driver_version, client.and_then(|c| c.driver_version))
            && same(&self.os_type, client.and_then(|c| c.os_type))
            && same(&self.platform, client.and_then(|c| c.platform))
            && same(&self.env_name, client.and_then(|c| c.env_name))
            && self.requested_by(hello)
    }

    /// [`Handshake::made_by`] for every field but the client metadata's.
    fn requested_by(&self, hello: &wire::HelloRequest<'_>) -> bool {
        self.command == hello.command
            && self.legacy_op_query == hello.legacy_op_query
            && self.load_balanced == hello.load_balanced
            && self.hello_ok == hello.hello_ok
            && self
                .compression
                .iter()
                .map(String::as_str)
                .eq(hello.compressors())
            && same(&self.sasl_supported_mechs, hello.sasl_supported_mechs)
            && self.speculative_authenticate == hello.speculative_authenticate
            && self.internal_client == hello.internal_client
            && self.awaitable == hello.is_awaitable()
    }
}

impl ServerInfo {
    /// Whether [`server_info_of`] would make this very value of `reply`.
    fn made_by(&self, reply: &wire::HelloReply<'_>) -> bool {
        // As bytes: a list with a string that is not UTF-8 (which `strings` would skip)
        // only fails to match, and is then built and interned as the same value.
        let same_list = |mine: &[String], theirs: Option<wire::Doc<'_>>| {
            mine.iter()
                .map(String::as_bytes)
                .eq(theirs.into_iter().flat_map(wire::Doc::string_bytes))
        };
        same(&self.set_name, reply.set_name)
            && same(&self.me, reply.me)
            && same_list(&self.hosts, reply.hosts)
            && same_list(&self.passives, reply.passives)
            && same_list(&self.arbiters, reply.arbiters)
            && self.set_version == reply.set_version
            && self.is_writable_primary == reply.is_writable_primary
            && self.secondary == reply.secondary
            && self.is_mongos == reply.is_mongos
            && self.max_wire_version == reply.max_wire_version
            && self.topology_version == reply.topology_version.is_some()
            && self.service_id == reply.service_id
            && self.arbiter_only == (reply.arbiter_only == Some(true))
            && self.is_replica_set == reply.is_replica_set
            && self.process_id == reply.topology_version.map(|t| t.process_id)
    }
}

fn strings(a: Option<wire::Doc<'_>>) -> Vec<String> {
    a.map(|a| a.strings().map(str::to_string).collect())
        .unwrap_or_default()
}

/// A later hello reply states a role other than `known`'s (fields it leaves out say
/// nothing).
fn changes_role(glance: wire::ReplyState, known: &ServerInfo) -> bool {
    let differs = |now: Option<bool>, was: Option<bool>| now.is_some() && now != was;
    differs(glance.is_writable_primary, known.is_writable_primary)
        || differs(glance.secondary, known.secondary)
}

/// Whether a hello reply's `set_version` announces a newer replica-set config than the
/// server description the connection already holds; the first such reply's time is kept.
fn note_newer_config(obs: &mut Observations, set_version: Option<i64>, ts: Timestamp) -> bool {
    let Some(known) = obs.server_info.as_deref() else {
        return false;
    };
    let newer = match (known.set_version, set_version) {
        (Some(old), Some(new)) => new > old,
        (None, Some(_)) => true,
        _ => false,
    };
    if newer && obs.hello.newer_config_ts.is_none() {
        obs.hello.newer_config_ts = Some(ts.as_secs_f64());
    }
    newer
}

fn server_info_of(reply: &wire::HelloReply<'_>) -> ServerInfo {
    ServerInfo {
        set_name: owned(reply.set_name),
        me: owned(reply.me),
        hosts: strings(reply.hosts),
        passives: strings(reply.passives),
        arbiters: strings(reply.arbiters),
        set_version: reply.set_version,
        is_writable_primary: reply.is_writable_primary,
        secondary: reply.secondary,
        is_mongos: reply.is_mongos,
        max_wire_version: reply.max_wire_version,
        topology_version: reply.topology_version.is_some(),
        service_id: reply.service_id,
        arbiter_only: reply.arbiter_only == Some(true),
        is_replica_set: reply.is_replica_set,
        process_id: reply.topology_version.map(|t| t.process_id),
    }
}

impl ConnHandler for Observer {
    /// Held inline in the flow table's (boxed) entry, not boxed again: a packet then
    /// follows one pointer fewer to its connection's state (cachegrind, 8 MB last level,
    /// bench capture: 2% fewer data misses there; peak memory unchanged).
    type State = ConnState;

    fn open(&mut self, info: &ConnInfo) -> ConnState {
        let cfg = self.config.framer.clone();
        let a = info.endpoint(Side::A);
        let mut obs = Box::new(Observations::new(info.id, a, info.endpoint(Side::B)));
        // Known from the first packet on (settled again at the end): hello ticks count from
        // it, and whether the connection was seen to open tells a handshake apart.
        obs.first_seen = info.first_seen.as_secs_f64();
        obs.syn_seen = info.initiator.is_some();
        ConnState {
            framers: [Framer::new(cfg.clone()), Framer::new(cfg)],
            tls: None,
            shape: None,
            core: Core {
                client_side: None,
                pending: [(None, Timestamp(0), Pending::Other); PENDING_SLOTS],
                pending_next: 0,
                last_hello_request: None,
                last_hello_reply: None,
                obs,
                traffic: [Traffic::default(); 2],
                mid_stream: [false; 2],
                hunting_warned: [false; 2],
                in_flight_slot: None,
                node: KnownNode {
                    slot: None,
                    side: Side::B,
                },
                outstanding: false,
                requested: false,
            },
        }
    }

    fn stream(
        &mut self,
        state: &mut ConnState,
        info: &ConnInfo,
        side: Side,
        ts: Timestamp,
        event: StreamEvent<'_>,
    ) {
        let i = side.index();
        let ConnState {
            framers,
            tls,
            shape,
            core,
        } = state;
        match event {
            StreamEvent::MidStreamStart => {
                core.mid_stream[i] = true;
                framers[i].hunt();
            }
            StreamEvent::Gap(n) => {
                core.traffic[i].gaps += 1;
                core.traffic[i].gap_bytes += n;
                if let Some(tls) = tls {
                    // Ciphertext was lost: how much plaintext is not known, so a
                    // decrypted direction's framer hunts for its next message.
                    framers[i].hunt();
                    let (cut, records_lost) = tls.gap(side, n);
                    // Before any application record there are no flights to excuse.
                    if cut.records > 0 || shape.is_some() {
                        let tracker = shape_of(shape, tls);
                        tracker.add(side, ts, cut.records, cut.bytes);
                        if records_lost {
                            tracker.lost(side);
                        }
                    }
                    self.tls_issues(tls, core, info, side);
                } else {
                    let max_len = self.config.framer.max_message_len;
                    let mut scratch = std::mem::take(&mut self.scratch);
                    framers[i].gap(n, |event| {
                        self.handle_frame(core, info, side, ts, event, &mut scratch, max_len)
                    });
                    self.scratch = scratch;
                }
            }
            StreamEvent::Data(data) => {
                // The first bytes of a direction tell TLS apart: then nothing is framed.
                // Segment starts are checked until a MongoDB message has been seen, so a
                // capture that begins inside a TLS connection is recognised at its next record.
                let undecided = core.traffic[0].messages + core.traffic[1].messages == 0;
                // `tls` is set exactly when `obs.tls` is: asked here, the record's line
                // (cold on most packets) is not read.
                if undecided && tls.is_none() && looks_like_tls(data) {
                    core.obs.tls = true;
                    let mut conn = TlsConn::new(self.keys.is_some());
                    if let Some(opener) = info.initiator {
                        conn.opened_by(opener);
                    }
                    *tls = Some(Box::new(conn));
                }
                core.traffic[i].bytes += data.len() as u64;
                let max_len = self.config.framer.max_message_len;
                let mut scratch = std::mem::take(&mut self.scratch);
                if let Some(tls) = tls {
                    // Decrypted application data takes the plaintext path: the same framers.
                    let mut plain = std::mem::take(&mut self.plain);
                    plain.clear();
                    let app = tls.data(side, data, self.keys.as_mut(), &mut plain);
                    if app.records > 0 {
                        shape_of(shape, tls).add(side, ts, app.records, app.bytes);
                    }
                    if core.client_side.is_none() {
                        // The ClientHello's sender is the client, messages or not.
                        core.client_side = tls.client_side();
                    }
                    self.tls_issues(tls, core, info, side);
                    for (s, chunk) in plain.chunks() {
                        framers[s.index()].push(chunk, |event| {
                            self.handle_frame(core, info, s, ts, event, &mut scratch, max_len)
                        });
                    }
                    self.plain = plain;
                } else {
                    debug_assert!(!core.obs.tls);
                    framers[i].push(data, |event| {
                        self.handle_frame(core, info, side, ts, event, &mut scratch, max_len)
                    });
                }
                self.scratch = scratch;
            }
        }
    }

    fn close(&mut self, mut state: ConnState, info: &ConnInfo, stats: [StreamStats; 2]) {
        if let Some(failed) = info.failed_attempt(&stats) {
            // Never a connection: tallied for its server, not listed or counted.
            let server = info.endpoint(Side::B);
            if self.is_server_port(server.port()) {
                self.nodes
                    .failed_attempt(server, failed, info.first_seen.as_secs_f64());
            } else {
                self.foreign_flows += 1;
            }
            return;
        }
        if let Some(tls) = state.tls.as_mut() {
            // A connection that went quiet while a followed key log lagged behind: its
            // held records are opened now if the secrets have appeared.
            let mut plain = std::mem::take(&mut self.plain);
            plain.clear();
            tls.retry(self.keys.as_mut(), &mut plain);
            let ConnState { framers, core, .. } = &mut state;
            let max_len = self.config.framer.max_message_len;
            let mut scratch = std::mem::take(&mut self.scratch);
            for (s, chunk) in plain.chunks() {
                framers[s.index()].push(chunk, |event| {
                    self.handle_frame(core, info, s, info.last_seen, event, &mut scratch, max_len)
                });
            }
            self.scratch = scratch;
            self.plain = plain;
        }
        let tls_session = state.tls.as_ref().map(|t| Box::new(t.summary()));
        let client = self.client_side(&state.core, info);
        let shape = keyless_shape(&state, client.0);
        let mut state = state.core;
        state.obs.tls_session = tls_session;
        state.obs.shape = shape;
        if std::mem::take(&mut state.outstanding) {
            self.in_flight
                .finished(state.in_flight_slot.unwrap_or_default());
        }
        for side in [Side::A, Side::B] {
            let s = stats[side.index()];
            state.traffic[side.index()].retransmissions = s.retransmissions;
            if s.cap_hits > 0 {
                self.warnings.push(
                    "reassembly-cap",
                    format!(
                        "{} -> {}: the out-of-order buffer hit its cap {} time(s); {} bytes were skipped as lost (raise --max-stream-buffer / --max-total-buffer)",
                        info.endpoint(side),
                        info.endpoint(side.other()),
                        s.cap_hits,
                        s.gap_bytes
                    ),
                );
            }
        }
        let Core {
            mut obs,
            traffic,
            mid_stream,
            ..
        } = state;
        self.settle(&mut obs, (&traffic, mid_stream), info, client);
        if let Some(pid) = obs.server_info.as_ref().and_then(|s| s.process_id) {
            // Open to the end of the capture: it outlived every process seen after it.
            let until = obs.closing.or(obs.closed).unwrap_or(f64::INFINITY);
            self.nodes.process_heard_until(obs.server, pid, until);
        }
        let on_server_port =
            self.is_server_port(obs.server.port()) || self.is_server_port(obs.client.port());
        if obs.messages() == 0 && !on_server_port {
            self.foreign_flows += 1;
            return;
        }
        if obs.tls {
            self.tls_connections += 1;
            if obs.tls_decrypted() {
                self.tls_decrypted += 1;
            }
            if obs
                .tls_session
                .as_ref()
                .is_some_and(|t| t.keys == crate::tls::KeyStatus::NoHandshake)
            {
                self.tls_without_handshake += 1;
            }
        } else if obs.messages() == 0 && obs.client_traffic.bytes + obs.server_traffic.bytes > 0 {
            self.warnings.push(
                "not-mongodb",
                format!(
                    "{} -> {}: {} bytes on a MongoDB port but no MongoDB message could be decoded",
                    obs.client,
                    obs.server,
                    obs.client_traffic.bytes + obs.server_traffic.bytes
                ),
            );
        }
        self.finished.push(obs);
    }
}

impl Observer {
    /// Problems the TLS layer met on this connection, as warnings naming it.
    fn tls_issues(&mut self, tls: &mut TlsConn, core: &Core, info: &ConnInfo, side: Side) {
        for issue in tls.issues.drain(..) {
            let kind = match issue {
                crate::tls::TlsIssue::NotInKeyLog | crate::tls::TlsIssue::NoHandshake => {
                    "tls-no-key"
                }
                _ => "tls-decrypt",
            };
            // A missing handshake is the connection's, not a direction's: name it client
            // first, as its record does (its server may have spoken first).
            let from = match issue {
                crate::tls::TlsIssue::NoHandshake => self.client_side(core, info).0,
                _ => side,
            };
            self.warnings.push(
                kind,
                format!(
                    "{} -> {}: {issue}",
                    info.endpoint(from),
                    info.endpoint(from.other())
                ),
            );
        }
    }

    /// Whether a key log is in use.
    pub fn has_keylog(&self) -> bool {
        self.keys.is_some()
    }

    /// Searches for the keys of connections joined mid-session that the budget of tries
    /// cut short ([`crate::tls::trial::TRIAL_BUDGET`]).
    pub fn key_searches_starved(&self) -> u64 {
        self.keys.as_ref().map_or(0, KeyStore::searches_starved)
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_frame(
        &mut self,
        state: &mut Core,
        info: &ConnInfo,
        side: Side,
        ts: Timestamp,
        event: FrameEvent<'_>,
        scratch: &mut wire::Scratch,
        max_len: u32,
    ) {
        let i = side.index();
        match event {
            FrameEvent::Message(bytes) => match if leaves_compressed(state, info, side, bytes) {
                wire::parse_unread(bytes, max_len)
            } else {
                wire::parse_message(bytes, scratch, max_len)
            } {
                Ok(msg) => self.on_message(state, info, side, ts, &msg),
                Err(err) => {
                    state.traffic[i].malformed += 1;
                    self.warnings.push(
                        "malformed-message",
                        format!(
                            "{} -> {}: message ending near stream byte {}: {err}",
                            info.endpoint(side),
                            info.endpoint(side.other()),
                            state.traffic[i].bytes
                        ),
                    );
                }
            },
            FrameEvent::Truncated { prefix, total_len } | FrameEvent::Cut { prefix, total_len } => {
                if matches!(event, FrameEvent::Cut { .. }) {
                    state.traffic[i].cut += 1;
                } else {
                    state.traffic[i].oversized += 1;
                }
                if let Ok(msg) = wire::parse_prefix(prefix, total_len) {
                    self.on_message(state, info, side, ts, &msg);
                }
            }
            FrameEvent::Resynced { skipped } => {
                state.traffic[i].resyncs += 1;
                state.traffic[i].skipped_bytes += skipped;
            }
            FrameEvent::Malformed {
                stream_offset,
                error,
            } => {
                state.traffic[i].malformed += 1;
                if !state.hunting_warned[i] {
                    state.hunting_warned[i] = true;
                    self.warnings.push(
                        "malformed-header",
                        format!(
                            "{} -> {}: bad message header at stream byte {stream_offset}: {error}; resynchronising",
                            info.endpoint(side),
                            info.endpoint(side.other()),
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Doc, HelloReply, HelloRequest, TopologyVersion};
    use bson::rawdoc;

    /// A handshake found by its `client` document's bytes is the one reading it makes,
    /// and only when the request's other fields agree too.
    #[test]
    fn handshakes_are_recognised_by_their_client_document() {
        let client = |app: &str| {
            rawdoc! {
                "application": { "name": app },
                "driver": { "name": "PyMongo|c", "version": "4.20.1" },
                "os": { "type": "Linux" },
            }
        };
        let (orders, billing) = (client("orders"), client("billing"));
        let hello = |doc: &'static bson::RawDocument| HelloRequest {
            hello_ok: true,
            client: Some(Doc::of(doc)),
            ..HelloRequest::named("hello")
        };
        let (orders, billing) = (Box::leak(Box::new(orders)), Box::leak(Box::new(billing)));
        let mut observer = Observer::new(ObserverConfig::default());
        let first = observer.handshake(&hello(orders));
        assert_eq!(first.app_name.as_deref(), Some("orders"));
        assert!(Arc::ptr_eq(&first, &observer.handshake(&hello(orders))));
        let authenticating = HelloRequest {
            speculative_authenticate: true,
            ..hello(orders)
        };
        let other = observer.handshake(&authenticating);
        assert!(other.speculative_authenticate && other.app_name == first.app_name);
        let billing = observer.handshake(&hello(billing));
        assert_eq!(billing.app_name.as_deref(), Some("billing"));
        assert!(Arc::ptr_eq(&first, &observer.handshake(&hello(orders))));
    }

    /// `made_by` confirms the value built from the same source, and tells each field
    /// changed on its own: a field it missed would hand a connection another client's
    /// handshake or another server's description.
    #[test]
    fn made_by_tells_every_field_of_a_handshake() {
        let zlib = rawdoc! { "0": "zlib" };
        let snappy = rawdoc! { "0": "snappy" };
        let client = ClientMetadata {
            app_name: Some("orders"),
            driver_name: Some("PyMongo"),
            driver_version: Some("4.20.1"),
            os_type: Some("Linux"),
            os_name: None,
            platform: Some("CPython 3.13"),
            env_name: None,
        };
        let base = HelloRequest {
            command: "hello",
            legacy_op_query: false,
            hello_ok: true,
            topology_version: None,
            max_await_time_ms: None,
            load_balanced: false,
            compression: Some(Doc::of(&zlib)),
            sasl_supported_mechs: Some("admin.app"),
            speculative_authenticate: true,
            internal_client: false,
            client: None,
        };
        let known = handshake_of(&base, Some(&client));
        assert!(known.made_by(&base, Some(&client)));
        // Each variant: a request and the client metadata its `client` document holds.
        let with_client = |c: ClientMetadata<'static>| (base, Some(c));
        let request = |r| (r, Some(client));
        let variants = [
            request(HelloRequest {
                command: "isMaster",
                ..base
            }),
            request(HelloRequest {
                legacy_op_query: true,
                ..base
            }),
            request(HelloRequest {
                hello_ok: false,
                ..base
            }),
            request(HelloRequest {
                load_balanced: true,
                ..base
            }),
            request(HelloRequest {
                compression: Some(Doc::of(&snappy)),
                ..base
            }),
            request(HelloRequest {
                compression: None,
                ..base
            }),
            request(HelloRequest {
                sasl_supported_mechs: None,
                ..base
            }),
            request(HelloRequest {
                speculative_authenticate: false,
                ..base
            }),
            request(HelloRequest {
                internal_client: true,
                ..base
            }),
            request(HelloRequest {
                topology_version: Some(TopologyVersion {
                    process_id: [1; 12],
                    counter: 0,
                }),
                max_await_time_ms: Some(10_000),
                ..base
            }),
            (base, None),
            with_client(ClientMetadata {
                app_name: None,
                ..client
            }),
            with_client(ClientMetadata {
                driver_name: Some("nodejs"),
                ..client
            }),
            with_client(ClientMetadata {
                driver_version: Some("4.20.0"),
                ..client
            }),
            with_client(ClientMetadata {
                os_type: Some("Darwin"),
                ..client
            }),
            with_client(ClientMetadata {
                platform: Some("CPython 3.12"),
                ..client
            }),
            with_client(ClientMetadata {
                env_name: Some("aws.lambda"),
                ..client
            }),
        ];
        for (n, (other, client)) in variants.iter().enumerate() {
            let client = client.as_ref();
            assert_ne!(
                handshake_of(other, client),
                known,
                "variant {n} builds the same value"
            );
            assert!(
                !known.made_by(other, client),
                "variant {n} taken for the known handshake"
            );
            assert!(
                handshake_of(other, client).made_by(other, client),
                "variant {n}"
            );
        }
    }

    #[test]
    fn made_by_tells_every_field_of_a_server_description() {
        let hosts = rawdoc! { "0": "db1:27017", "1": "db2:27017" };
        let fewer = rawdoc! { "0": "db1:27017" };
        let passives = rawdoc! { "0": "db3:27017" };
        let base = HelloReply {
            set_name: Some("rs0"),
            me: Some("db1:27017"),
            hosts: Some(Doc::of(&hosts)),
            set_version: Some(3),
            is_writable_primary: Some(true),
            secondary: Some(false),
            max_wire_version: Some(25),
            topology_version: Some(TopologyVersion {
                process_id: [7; 12],
                counter: 4,
            }),
            ..HelloReply::default()
        };
        let known = server_info_of(&base);
        assert!(known.made_by(&base));
        // The counter is not part of the description: a later heartbeat's reply is the same.
        let later = HelloReply {
            topology_version: Some(TopologyVersion {
                process_id: [7; 12],
                counter: 5,
            }),
            ..base
        };
        assert!(known.made_by(&later));
        let variants = [
            HelloReply {
                set_name: Some("rs1"),
                ..base
            },
            HelloReply { me: None, ..base },
            HelloReply {
                hosts: Some(Doc::of(&fewer)),
                ..base
            },
            HelloReply {
                passives: Some(Doc::of(&passives)),
                ..base
            },
            HelloReply {
                arbiters: Some(Doc::of(&passives)),
                ..base
            },
            HelloReply {
                set_version: Some(4),
                ..base
            },
            HelloReply {
                is_writable_primary: Some(false),
                ..base
            },
            HelloReply {
                secondary: Some(true),
                ..base
            },
            HelloReply {
                is_mongos: true,
                ..base
            },
            HelloReply {
                max_wire_version: Some(21),
                ..base
            },
            HelloReply {
                topology_version: None,
                ..base
            },
            HelloReply {
                topology_version: Some(TopologyVersion {
                    process_id: [8; 12],
                    counter: 4,
                }),
                ..base
            },
            HelloReply {
                service_id: true,
                ..base
            },
            HelloReply {
                arbiter_only: Some(true),
                ..base
            },
            HelloReply {
                is_replica_set: true,
                ..base
            },
        ];
        for (n, other) in variants.iter().enumerate() {
            assert_ne!(
                server_info_of(other),
                known,
                "variant {n} builds the same value"
            );
            assert!(
                !known.made_by(other),
                "variant {n} taken for the known description"
            );
            assert!(server_info_of(other).made_by(other), "variant {n}");
        }
    }

    /// Every connection held (open, or closed and kept for the report) has one record: its
    /// size is what the memory bound of issue 7 is made of (tens of thousands held at once).
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn a_connection_record_stays_small() {
        use std::mem::size_of;
        assert!(
            size_of::<Observations>() <= 896,
            "{}",
            size_of::<Observations>()
        );
        // The record is boxed apart from an open connection's state (stop 28).
        assert!(size_of::<ConnState>() <= 592, "{}", size_of::<ConnState>());
    }
}
