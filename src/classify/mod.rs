//! Stage 6, classification: [`Observations`] → a connection class and one sentence of
//! evidence.
//!
//! Rules follow the drivers' specifications (mongodb/specifications):
//! - `source/server-discovery-and-monitoring/server-monitoring.md`: a streaming monitor
//!   sends *awaitable* hellos (carrying `topologyVersion` + `maxAwaitTimeMS`, "Awaitable hello
//!   or legacy hello Server Specification"), usually with the OP_MSG `exhaustAllowed` flag so
//!   the server streams replies flagged `moreToCome`; in streaming mode a separate RTT
//!   connection sends a plain hello every heartbeat ("Measuring RTT"); a polling monitor
//!   sends a plain hello every heartbeatFrequencyMS (10 s by default, 60 s for
//!   single-threaded clients). "Servers are monitored with dedicated sockets": drivers MUST
//!   NOT authenticate on monitoring sockets nor include `saslSupportedMechs`, and monitors
//!   never run operations. `serverMonitoringMode=auto` polls on FaaS platforms.
//! - CMAP: pool connections do the handshake (and authentication), then operations, or sit
//!   idle (minPoolSize).
//! - single-threaded clients (libmongoc `mongoc_client_t`, PHP) check the server with hello
//!   on the same, only, connection they use for operations.
//! - handshake: `internalClient` marks a mongod/mongos as the client; `loadBalanced`
//!   clients have no monitors at all.
//!
//! Classification runs in two passes: rules that need only the connection itself, then
//! rules that need its neighbours (the same client's connections to the same node), e.g.
//! an RTT monitor is a plain-hello connection beside a streaming monitor. A connection that
//! neither pass can place is `unknown`, with the missing evidence spelled out.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use crate::observe::Observations;

thread_local! {
    /// Whether verdicts are written with their evidence: not while [`classes_after`] runs.
    pub(crate) static WITH_EVIDENCE: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// `format!` for a verdict's evidence, or an empty string when only classes are wanted.
macro_rules! evidence {
    ($($arg:tt)*) => {
        if $crate::classify::WITH_EVIDENCE.get() {
            format!($($arg)*)
        } else {
            String::new()
        }
    };
}

mod shape;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    StreamingMonitor,
    RttMonitor,
    PollingMonitor,
    Pool,
    SingleThreaded,
    Internal,
    Unknown,
}

impl Class {
    pub const ALL: [Class; 7] = [
        Class::StreamingMonitor,
        Class::RttMonitor,
        Class::PollingMonitor,
        Class::Pool,
        Class::SingleThreaded,
        Class::Internal,
        Class::Unknown,
    ];

    /// The contract's name (`conn-attrib/1`).
    pub fn name(self) -> &'static str {
        match self {
            Class::StreamingMonitor => "streaming-monitor",
            Class::RttMonitor => "rtt-monitor",
            Class::PollingMonitor => "polling-monitor",
            Class::Pool => "pool",
            Class::SingleThreaded => "single-threaded",
            Class::Internal => "internal",
            Class::Unknown => "unknown",
        }
    }

    pub fn is_monitor(self) -> bool {
        matches!(
            self,
            Class::StreamingMonitor | Class::RttMonitor | Class::PollingMonitor
        )
    }
}

/// How sure the classifier is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Only partial evidence; the sentence says what was inferred.
    Low,
    /// Behaviour consistent with one class, confirmed by its neighbours.
    Medium,
    /// Protocol evidence that only one class produces (an awaitable hello, internalClient…).
    High,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub class: Class,
    pub confidence: Confidence,
    pub evidence: String,
    /// What an `internal` connection is for; `None` for every other class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

fn verdict(class: Class, confidence: Confidence, evidence: String) -> Verdict {
    Verdict {
        class,
        confidence,
        evidence,
        role: None,
    }
}

/// The sub-role of an `internal` connection: which part of a mongod/mongos opened it.
///
/// Read from what real servers send (mongodb/mongo):
/// - `replication-heartbeat`: `replSetHeartbeat` every heartbeatIntervalMillis (2 s) from
///   every member to every other, on the replication executor's pool ("ReplNetwork";
///   src/mongo/db/repl/replication_coordinator_impl_heartbeat.cpp);
/// - `oplog-fetcher`: a secondary tailing its sync source's oplog, `find` on
///   `local.oplog.rs` with `tailable` + `awaitData` (+ `term`), then `getMore`
///   (src/mongo/db/repl/oplog_fetcher.cpp, `makeFindCommandObject`);
/// - `replication-reporter`: `replSetUpdatePosition` sent upstream by a secondary's
///   Reporter (src/mongo/db/repl/reporter.cpp, sync_source_feedback.cpp);
/// - `sharding-pool`: a mongos or shard's executor pools (ShardRegistry, TaskExecutorPool-N,
///   AddShard…; their handshake names the pool, "NetworkInterfaceTL-<pool>", from
///   src/mongo/executor/network_interface_tl.cpp and AsyncDBClient::_buildHelloRequest in
///   src/mongo/client/async_client.cpp), or sharding-only commands (`_shardsvr*`,
///   `_configsvr*`, chunk migration);
/// - `other`: internal, but none of the above was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ReplicationHeartbeat,
    OplogFetcher,
    ReplicationReporter,
    ShardingPool,
    Other,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::ReplicationHeartbeat,
        Role::OplogFetcher,
        Role::ReplicationReporter,
        Role::ShardingPool,
        Role::Other,
    ];

    /// The name in reports and in JSON `connections[].role`.
    pub fn name(self) -> &'static str {
        match self {
            Role::ReplicationHeartbeat => "replication-heartbeat",
            Role::OplogFetcher => "oplog-fetcher",
            Role::ReplicationReporter => "replication-reporter",
            Role::ShardingPool => "sharding-pool",
            Role::Other => "other",
        }
    }
}

/// Pool names (the internal handshake's driver or application name) of sharding executors.
const SHARDING_POOLS: &[&str] = &[
    "ShardRegistry",
    "TaskExecutorPool",
    "AddShard",
    "Sharding",
    "ConfigServer",
    "CatalogCache",
];

fn is_sharding_command(name: &str) -> bool {
    name.starts_with("_shardsvr")
        || name.starts_with("_configsvr")
        || matches!(
            name,
            "_flushRoutingTableCacheUpdates"
                | "_flushDatabaseCacheUpdates"
                | "_recvChunkStart"
                | "_recvChunkStatus"
                | "_recvChunkCommit"
                | "_migrateClone"
                | "_transferMods"
                | "moveChunk"
                | "splitChunk"
                | "splitVector"
        )
}

/// Which part of a server an internal connection serves, and why, in a few words.
pub fn internal_role(obs: &Observations) -> (Role, String) {
    let c = &obs.cluster;
    let heartbeats = obs.command_count("replSetHeartbeat");
    let updates = obs.command_count("replSetUpdatePosition");
    if c.tails_oplog {
        let getmores = obs.command_count("getMore");
        return (
            Role::OplogFetcher,
            evidence!(
                "tails local.oplog.rs (tailable + awaitData{}{})",
                if c.oplog_term {
                    ", with the replication term"
                } else {
                    ""
                },
                if getmores > 0 {
                    evidence!(", {getmores} getMore{}", plural(getmores))
                } else {
                    String::new()
                }
            ),
        );
    }
    if heartbeats > 0 {
        let from = c
            .heartbeat_from
            .as_deref()
            .map(|f| evidence!(" from {f}"))
            .unwrap_or_default();
        let also = if updates > 0 {
            evidence!(", and {updates} replSetUpdatePosition")
        } else {
            String::new()
        };
        return (
            Role::ReplicationHeartbeat,
            evidence!(
                "{heartbeats} replSetHeartbeat{}{from}{also}",
                plural(heartbeats)
            ),
        );
    }
    if updates > 0 {
        return (
            Role::ReplicationReporter,
            evidence!(
                "{updates} replSetUpdatePosition{}: a secondary reporting its progress upstream",
                plural(updates)
            ),
        );
    }
    let pool_name = obs.handshake.as_ref().and_then(|h| {
        [h.app_name.as_deref(), h.driver_name.as_deref()]
            .into_iter()
            .flatten()
            .find(|n| SHARDING_POOLS.iter().any(|p| n.contains(p)))
            .map(str::to_string)
    });
    if let Some(pool) = pool_name {
        return (
            Role::ShardingPool,
            evidence!("sharding executor pool {pool}"),
        );
    }
    if let Some(cmd) = obs.commands.iter().find(|c| is_sharding_command(&c.name)) {
        return (
            Role::ShardingPool,
            evidence!("sends {} ({}x): sharding internals", cmd.name, cmd.count),
        );
    }
    let pool = obs
        .handshake
        .as_ref()
        .and_then(|h| h.driver_name.clone().or_else(|| h.app_name.clone()));
    (
        Role::Other,
        match pool {
            Some(p) => evidence!("pool {p}, no replication or sharding command seen"),
            None => "no replication or sharding command seen".into(),
        },
    )
}

fn internal_verdict(obs: &Observations, confidence: Confidence, why: &str) -> Verdict {
    let (role, what) = internal_role(obs);
    Verdict {
        class: Class::Internal,
        confidence,
        evidence: evidence!("{why}; {}: {what}", role.name()),
        role: Some(role),
    }
}

/// Commands only servers send to each other (replication and sharding internals).
const INTERNAL_COMMANDS: &[&str] = &[
    "replSetHeartbeat",
    "replSetUpdatePosition",
    "replSetRequestVotes",
    "_flushRoutingTableCacheUpdates",
    "_shardsvrMoveRange",
    "_recvChunkStart",
    "_migrateClone",
];

/// Commands a driver sends on a connection as housekeeping rather than application work.
fn is_housekeeping(name: &str) -> bool {
    POOL_HOUSEKEEPING.contains(&name) || MONITOR_HANDSHAKE_FOLLOW_UPS.contains(&name)
}

/// Housekeeping only a pool connection carries: a client ends its sessions (at close),
/// kills cursors and runs pings through its pool, while a monitor sends hello alone
/// (server-monitoring spec).
const POOL_HOUSEKEEPING: &[&str] = &["endSessions", "killCursors", "ping"];

/// The Java driver 3.x follows every handshake, its monitors' too, with `buildinfo` and
/// `getlasterror` (the server version and connection id, asked for the old servers'
/// sake): spelled as it sends them. They say nothing of a connection's role.
const MONITOR_HANDSHAKE_FOLLOW_UPS: &[&str] =
    &["buildInfo", "buildinfo", "getLastError", "getlasterror"];

/// A connection seen opened and closed with no byte sent either way: never a MongoDB
/// connection, though the server accepted it.
pub fn is_connect_only_probe(obs: &Observations) -> bool {
    obs.syn_seen
        && obs.closed.is_some()
        && obs.client_traffic.bytes == 0
        && obs.server_traffic.bytes == 0
}

/// PyMongo's AsyncMongoClient names its pool connections' driver "PyMongo|c|async" (an
/// empty "|" version part beside it) but builds its monitors' pools with the synchronous
/// defaults, so they say "PyMongo|c" (PyMongo 4.x: `PoolOptions(is_sync=...)` is not passed
/// for monitors). One MongoClient either way: its key drops the "async" part, and the
/// report names the driver as its pool connections do.
fn without_async_marker<'a>(
    name: Option<&'a str>,
    version: Option<&'a str>,
) -> (Option<Cow<'a, str>>, Option<Cow<'a, str>>) {
    let unchanged = (name.map(Cow::Borrowed), version.map(Cow::Borrowed));
    let Some(n) = name.filter(|n| n.starts_with("PyMongo|")) else {
        return unchanged;
    };
    let Some(at) = n.split('|').position(|part| part == "async") else {
        return unchanged;
    };
    // Part `at` removed; a borrowed prefix when it is the last part (the usual case).
    let without = |text: &'a str| -> Cow<'a, str> {
        let parts: Vec<&str> = text.split('|').collect();
        if at + 1 == parts.len() {
            let cut = text.len() - parts[at].len() - 1;
            Cow::Borrowed(&text[..cut])
        } else {
            let mut kept = parts;
            kept.remove(at);
            Cow::Owned(kept.join("|"))
        }
    };
    let version = version.map(|v| {
        if v.split('|').nth(at).is_some_and(str::is_empty) {
            without(v)
        } else {
            Cow::Borrowed(v)
        }
    });
    (Some(without(n)), version)
}

/// High when the handshake was seen (the connection's whole life is in the capture),
/// medium when it predates the capture.
fn handshake_confidence(obs: &Observations) -> Confidence {
    if obs.handshake.is_some() {
        Confidence::High
    } else {
        Confidence::Medium
    }
}

/// The [`POOL_HOUSEKEEPING`] commands a connection carried, as "endSessions 1, ping 2".
fn pool_only_housekeeping(obs: &Observations) -> Option<String> {
    let names: Vec<String> = obs
        .commands
        .iter()
        .filter(|c| POOL_HOUSEKEEPING.contains(&&*c.name))
        .map(|c| evidence!("{} {}", c.name, c.count))
        .collect();
    (!names.is_empty()).then(|| names.join(", "))
}

/// Heartbeat interval assumed when a client shows none (heartbeatFrequencyMS default 10 s).
const DEFAULT_HEARTBEAT_SECS: f64 = 10.0;

/// How many heartbeats a connection must stay silent before it cannot be a monitor. A
/// monitor exchanges a hello at least once a heartbeat (a streaming one gets the server's
/// answer at least every maxAwaitTimeMS, which drivers set to heartbeatFrequencyMS), plus
/// the check's own round trip: the margin is for a slow check. (It was 1.5 until a cut
/// capture of 14 s with the default 10 s heartbeat left idle pool connections unknown.)
const SILENT_HEARTBEATS: f64 = 1.2;

/// Neither side of the connection closed it in the capture.
fn open_at_end(obs: &Observations) -> bool {
    obs.closed.is_none() && obs.closing.is_none()
}

/// How long after its handshake a streaming monitor has always sent its first awaitable
/// hello: it streams at once (SDAM monitoring: the handshake reply carries the
/// topologyVersion the next check awaits on), where an RTT monitor waits a heartbeat.
const STREAMING_START_SECS: f64 = 0.5;

/// The identity a connection's client is grouped by: host, appName, driver.
///
/// The names are borrowed from the connection's observations where they come from
/// ([`ClientKey::of`]): classification and attribution key maps by them for every
/// connection, and copying four strings per connection each time was ~2% of a run. A key
/// that outlives its connections (a released client's) owns them
/// ([`ClientKey::into_owned`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey<'a> {
    pub host: IpAddr,
    pub app_name: Option<Cow<'a, str>>,
    pub driver_name: Option<Cow<'a, str>>,
    pub driver_version: Option<Cow<'a, str>>,
    /// JA4 of the client's TLS stack, for a connection whose handshake metadata is
    /// encrypted (or not captured): what tells its client apart from the host's others.
    pub tls_fingerprint: Option<Cow<'a, str>>,
}

impl<'a> ClientKey<'a> {
    pub fn of(obs: &'a Observations) -> ClientKey<'a> {
        let hs = obs.handshake.as_deref();
        let borrow = |s: Option<&'a String>| s.map(|s| Cow::Borrowed(s.as_str()));
        let (driver_name, driver_version) = without_async_marker(
            hs.and_then(|h| h.driver_name.as_deref()),
            hs.and_then(|h| h.driver_version.as_deref()),
        );
        ClientKey {
            host: obs.client.ip(),
            app_name: borrow(hs.and_then(|h| h.app_name.as_ref())),
            driver_name,
            driver_version,
            tls_fingerprint: match hs {
                Some(_) => None,
                None => obs
                    .tls_session
                    .as_ref()
                    .and_then(|t| t.stack_fingerprint())
                    .map(Cow::Borrowed),
            },
        }
    }

    /// The key of a host's connections whose client is not known.
    pub fn host_only(host: IpAddr) -> ClientKey<'a> {
        ClientKey {
            host,
            app_name: None,
            driver_name: None,
            driver_version: None,
            tls_fingerprint: None,
        }
    }

    /// The same key, owning its names.
    pub fn into_owned(self) -> ClientKey<'static> {
        let own = |s: Option<Cow<'a, str>>| s.map(|s| Cow::Owned(s.into_owned()));
        ClientKey {
            host: self.host,
            app_name: own(self.app_name),
            driver_name: own(self.driver_name),
            driver_version: own(self.driver_version),
            tls_fingerprint: own(self.tls_fingerprint),
        }
    }

    /// The driver's name and version, when the handshake gave both: what the rules for
    /// particular driver versions read.
    pub fn driver(&self) -> Option<(&str, &str)> {
        Some((
            self.driver_name.as_deref()?,
            self.driver_version.as_deref()?,
        ))
    }

    /// The key names a client beyond its host: handshake metadata or a TLS fingerprint.
    pub fn has_metadata(&self) -> bool {
        self.driver_name.is_some() || self.app_name.is_some() || self.tls_fingerprint.is_some()
    }

    /// `host|appName|driver version` as in the contract's `client_id`; a keyless client
    /// has `tls:JA4` in the driver's place (`10.0.0.5||tls:t13i181000_…`).
    pub fn id(&self) -> String {
        // Pieces pushed, not formatted: every client's id is made once per conclusion.
        let mut id = String::with_capacity(64);
        crate::net::push_ip_text(&mut id, self.host);
        id.push('|');
        id.push_str(self.app_name.as_deref().unwrap_or(""));
        id.push('|');
        match (
            &self.driver_name,
            &self.driver_version,
            &self.tls_fingerprint,
        ) {
            (Some(n), Some(v), _) => {
                id.push_str(n);
                id.push(' ');
                id.push_str(v);
            }
            (Some(n), None, _) => id.push_str(n),
            (None, _, Some(fp)) => {
                id.push_str("tls:");
                id.push_str(fp);
            }
            (None, _, None) => {}
        }
        id
    }
}

/// Why a TLS connection's application data was not decrypted, for its evidence.
fn not_decrypted_reason(obs: &Observations) -> &'static str {
    use crate::tls::KeyStatus;
    match obs.tls_session.as_ref().map(|t| t.keys) {
        Some(KeyStatus::NotInKeyLog) => "the key log has no secrets for its session",
        Some(KeyStatus::NoHandshake) => {
            "its TLS handshake is not in the capture, so its keys cannot be looked up"
        }
        Some(KeyStatus::UnsupportedCipher) => "its cipher suite is not one that is decrypted",
        Some(KeyStatus::WrongKeys) => "the key log's secrets for it do not decrypt it",
        Some(KeyStatus::Waiting) => "its secrets have not appeared in the key log yet",
        Some(KeyStatus::Found | KeyStatus::FoundMidSession | KeyStatus::NotNeeded) => {
            "no application data of it was decrypted"
        }
        Some(KeyStatus::NoKeyLog) | None => "no key log",
    }
}

/// The names a mongod or mongos gives itself in a handshake's `client.driver.name`: its
/// connection pools' ("NetworkInterfaceTL-<pool>", network_interface_tl.cpp) and
/// DBClientConnection's ("MongoDB Internal Client"). The legacy `mongo` shell (3.4 to
/// 5.0) is built on DBClientConnection too and names itself the same way, with the
/// application name "MongoDB Shell" (and no `internalClient`): a person's session, not a
/// server's connection.
fn is_server_client_name(name: &str, app_name: Option<&str>) -> bool {
    let shell = app_name.is_some_and(|app| app.starts_with("MongoDB Shell"));
    name.starts_with("NetworkInterfaceTL") || (name == "MongoDB Internal Client" && !shell)
}

/// First pass: what the connection's own traffic proves.
pub fn intrinsic(obs: &Observations) -> Option<Verdict> {
    use Confidence::*;
    let hs = obs.handshake.as_ref();
    let hello = &obs.hello;
    if shape::is_keyless(obs) {
        // Its messages are not visible: the record shapes decide, beside its client's
        // other connections (`shape::classify_keyless`).
        return None;
    }
    if hs.is_some_and(|h| h.internal_client) {
        return Some(internal_verdict(
            obs,
            High,
            "handshake carries internalClient: a mongod or mongos is the client",
        ));
    }
    let app_name = hs.and_then(|h| h.app_name.as_deref());
    if let Some(name) = hs
        .and_then(|h| h.driver_name.as_deref())
        .filter(|n| is_server_client_name(n, app_name))
    {
        // internalClient comes after the client metadata: a snap length may cut it off.
        return Some(internal_verdict(
            obs,
            High,
            &evidence!(
                "handshake names the client {name}: a mongod or mongos's own connection pool"
            ),
        ));
    }
    if let Some(cmd) = obs
        .commands
        .iter()
        .find(|c| INTERNAL_COMMANDS.contains(&&*c.name))
    {
        return Some(internal_verdict(
            obs,
            High,
            &evidence!(
                "sends {} ({}x): only servers send it to each other",
                cmd.name,
                cmd.count
            ),
        ));
    }
    // Tailing the oplog without a captured handshake: a member's oplog fetcher when the
    // requests carry the replication term; otherwise possibly an application tailing the
    // oplog (Meteor, connectors), which a captured handshake would tell apart.
    if hs.is_none() && obs.cluster.tails_oplog {
        return Some(if obs.cluster.oplog_term {
            internal_verdict(
                obs,
                High,
                "opened before the capture; tails local.oplog.rs with the replication term, which only a member's oplog fetcher sends",
            )
        } else {
            internal_verdict(
                obs,
                Medium,
                "opened before the capture; tails local.oplog.rs like a secondary's oplog fetcher (an application tailing the oplog looks alike without its handshake)",
            )
        });
    }
    if hs.is_some_and(|h| h.load_balanced) {
        return Some(verdict(
            Class::Pool,
            High,
            evidence!(
                "loadBalanced handshake: a load-balanced client has no monitors, every connection is pooled; {}",
                activity(obs)
            ),
        ));
    }
    if hello.awaitable > 0 || hello.streamed_replies > 0 {
        let mut parts = Vec::new();
        if hello.awaitable > 0 {
            parts.push(evidence!(
                "{} awaitable hello{} with topologyVersion+maxAwaitTimeMS{}",
                hello.awaitable,
                plural(hello.awaitable as u64),
                hello
                    .max_await_time_ms
                    .map(|ms| evidence!(" ({ms} ms)"))
                    .unwrap_or_default()
            ));
        }
        if hello.exhaust_requests > 0 {
            parts.push("exhaustAllowed".into());
        }
        if hello.streamed_replies > 0 {
            parts.push(evidence!(
                "{} streamed (moreToCome) repl{}",
                hello.streamed_replies,
                if hello.streamed_replies == 1 {
                    "y"
                } else {
                    "ies"
                }
            ));
        }
        if hello.awaitable == 0 {
            parts.push("its request predates the capture".into());
        }
        return Some(verdict(Class::StreamingMonitor, High, parts.join("; ")));
    }
    if obs.server_info.as_ref().is_some_and(|s| s.service_id) && obs.operations() > 0 {
        return Some(verdict(
            Class::Pool,
            Medium,
            evidence!(
                "replies carry serviceId (load-balanced deployment); {}",
                activity(obs)
            ),
        ));
    }
    if application_ops(obs) > 0 {
        // Pool or single-threaded: hello checks mixed with operations mean single-threaded
        // only for a client without monitors (a pooled driver's application may run
        // hello/isMaster itself, e.g. as a health check). The context pass decides.
        return None;
    }
    if obs.auth.attempts > 0 || obs.auth.speculative {
        return Some(verdict(
            Class::Pool,
            Medium,
            evidence!(
                "handshake and authentication{}, then no operations: an idle pool connection (monitors never authenticate)",
                mechanism(obs)
            ),
        ));
    }
    if negotiates_sasl(obs) {
        return Some(verdict(
            Class::Pool,
            Medium,
            "handshake asks for the user's SCRAM mechanisms (saslSupportedMechs), which monitoring sockets never do; no operations yet: an idle pool connection".into(),
        ));
    }
    None
}

/// The handshake asked which SCRAM mechanisms the user has: only connections that are going
/// to authenticate do that (server-monitoring spec: never on monitoring sockets).
fn negotiates_sasl(obs: &Observations) -> bool {
    obs.handshake
        .as_ref()
        .is_some_and(|h| h.sasl_supported_mechs.is_some())
}

/// Hellos after the first one: periodic server checks.
fn periodic_hellos(obs: &Observations) -> u32 {
    let first_is_hello = obs.handshake.is_some();
    obs.hello.requests.saturating_sub(u32::from(first_is_hello))
}

/// Requests that are the application's work (not hello, auth or housekeeping).
fn application_ops(obs: &Observations) -> u64 {
    obs.commands
        .iter()
        .filter(|c| !is_housekeeping(&c.name))
        .map(|c| c.count)
        .sum::<u64>()
        + obs.legacy_opcodes.iter().map(|c| c.count).sum::<u64>()
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn mechanism(obs: &Observations) -> String {
    match (&obs.auth.mechanism, obs.auth.speculative) {
        (Some(m), true) => evidence!(" ({m}, speculative)"),
        (Some(m), false) => evidence!(" ({m})"),
        (None, true) => " (speculative)".into(),
        (None, false) => String::new(),
    }
}

/// A short account of what a connection did.
fn activity(obs: &Observations) -> String {
    let ops = obs.operations();
    if ops == 0 {
        return "no operations in the capture".into();
    }
    let mut names: Vec<_> = obs.commands.iter().collect();
    names.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
    let top: Vec<String> = names
        .iter()
        .take(3)
        .map(|c| evidence!("{} {}", c.name, c.count))
        .collect();
    evidence!("{ops} operation{} ({})", plural(ops), top.join(", "))
}

/// The capture's first and last timestamps: a connection that predates the capture was
/// observable (and idle, if silent) from `start`; one still open, until `end`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub start: f64,
    pub end: f64,
}

/// What a client without monitoring connections is.
#[derive(Clone, Copy)]
enum Unmonitored {
    /// Single-threaded: no monitoring connection at all, and its own traffic or driver
    /// says so.
    SingleThreaded,
    /// Single-threaded: a connection to this node mixes checks and operations with no
    /// monitor beside it, and every node has as many links at once.
    SingleThreadedMix(std::net::SocketAddr),
    /// Single-threaded by its driver, which has no other mode (PHP's ext-mongodb, the Perl
    /// driver): its links that only check are not monitors.
    SingleThreadedDriver,
    /// A pooled driver checking over its pool: `peak` connections at once to `node`,
    /// `fewest` to another.
    ChecksOverPool {
        node: std::net::SocketAddr,
        peak: u64,
        fewest: u64,
    },
}

/// Classify every connection of an analysis. The result is index-aligned with `conns`.
pub fn classify(conns: &[Box<Observations>], window: Option<Window>) -> Vec<Verdict> {
    classify_after(conns, window, &Prior::default())
}

/// What earlier connections of a long capture, already released from memory, showed of
/// their clients: the neighbourhood a connection is classified in includes them. An RTT
/// monitor whose streaming sibling was released first is still beside a streaming monitor.
#[derive(Clone, Debug, Default)]
pub struct Prior {
    /// Nodes each client had a streaming monitor to.
    pub streaming_nodes: Vec<(ClientKey<'static>, std::net::SocketAddr)>,
    /// The heartbeat each client's released monitors kept.
    pub heartbeats: Vec<(ClientKey<'static>, f64)>,
    /// Clients some of whose released connections were single-threaded: what made them so
    /// (checks between operations, or as many links to every node) may have gone with them.
    pub single_threaded: Vec<ClientKey<'static>>,
}

/// Every connection's client key, as classification and attribution group by it.
///
/// A connection's own key ([`ClientKey::of`]) names its client by handshake metadata, or,
/// over TLS without keys, by its TLS stack's fingerprint (JA4). Two links join keys that
/// name the same client differently:
/// - a keyless connection joins the client whose decrypted (or plaintext) connections on
///   the same host present the same fingerprint, when only one does: its monitor's
///   ClientHello lost to the capture or its session not in the key log, a client's
///   connections otherwise read as two clients;
/// - a connection with neither (opened before the capture) joins its host's client when
///   the host has exactly one that metadata names, among these connections and `known`
///   (released clients, already resolved).
pub struct ClientKeys<'k> {
    pub keys: Vec<ClientKey<'k>>,
    only_named: FxHashMap<IpAddr, ClientKey<'k>>,
}

impl<'k> ClientKeys<'k> {
    pub fn of<'c: 'k>(
        conns: impl Iterator<Item = &'c Observations> + Clone,
        known: impl Iterator<Item = &'k ClientKey<'static>>,
    ) -> ClientKeys<'k> {
        let mut keys: Vec<ClientKey<'k>> = conns.clone().map(ClientKey::of).collect();
        // Fingerprints seen with handshake metadata: (host, JA4) → the one client, if one.
        let mut by_stack: FxHashMap<(IpAddr, &str), Option<usize>> = FxHashMap::default();
        for (i, obs) in conns.enumerate() {
            // Keyed by its handshake (metadata, no fingerprint in the key), with a
            // ClientHello seen.
            let by_handshake = keys[i].has_metadata() && keys[i].tls_fingerprint.is_none();
            let fingerprint = obs.tls_session.as_ref().and_then(|t| t.stack_fingerprint());
            let Some(fp) = fingerprint.filter(|_| by_handshake) else {
                continue;
            };
            by_stack
                .entry((keys[i].host, fp))
                .and_modify(|only| {
                    if only.is_some_and(|j| keys[j] != keys[i]) {
                        *only = None;
                    }
                })
                .or_insert(Some(i));
        }
        for i in 0..keys.len() {
            let link = keys[i]
                .tls_fingerprint
                .as_deref()
                .and_then(|fp| by_stack.get(&(keys[i].host, fp)).copied().flatten());
            if let Some(j) = link {
                keys[i] = keys[j].clone();
            }
        }
        let mut named: FxHashMap<IpAddr, Option<ClientKey<'k>>> = FxHashMap::default();
        let known: Vec<&ClientKey<'static>> = known.collect();
        let candidates = keys.iter().chain(known.iter().map(|k| &**k));
        for key in candidates.filter(|k| k.has_metadata()) {
            named
                .entry(key.host)
                .and_modify(|only| {
                    if only.as_ref().is_some_and(|o| o != key) {
                        *only = None;
                    }
                })
                .or_insert_with(|| Some(key.clone()));
        }
        let only_named: FxHashMap<IpAddr, ClientKey<'k>> = named
            .into_iter()
            .filter_map(|(host, only)| Some((host, only?)))
            .collect();
        for key in &mut keys {
            if !key.has_metadata() {
                if let Some(named) = only_named.get(&key.host) {
                    *key = named.clone();
                }
            }
        }
        ClientKeys { keys, only_named }
    }

    /// Another key (a released client's) resolved the same way.
    pub fn resolve<'a>(&'a self, key: &'a ClientKey<'a>) -> &'a ClientKey<'a> {
        match self.only_named.get(&key.host) {
            Some(named) if !key.has_metadata() => named,
            _ => key,
        }
    }
}

/// [`classify_after`] for a fold, which keeps only classes (and client keys): the
/// verdicts' evidence is left empty. Writing it was about half the fold's classifying
/// (a few formatted sentences per connection, each a few reallocations); no decision
/// reads it.
pub fn classes_after(
    conns: &[Box<Observations>],
    window: Option<Window>,
    prior: &Prior,
) -> Vec<Verdict> {
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            WITH_EVIDENCE.set(true);
        }
    }
    WITH_EVIDENCE.set(false);
    let _restore = Restore;
    classify_after(conns, window, prior)
}

/// [`classify`], with what released connections showed of the same clients.
pub fn classify_after(
    conns: &[Box<Observations>],
    window: Option<Window>,
    prior: &Prior,
) -> Vec<Verdict> {
    let capture_end = window.map(|w| w.end);
    let mut verdicts: Vec<Option<Verdict>> = conns.iter().map(|o| intrinsic(o)).collect();
    // Neighbourhoods: the same client (host + metadata when known) and the same node.
    let prior_keys = prior
        .streaming_nodes
        .iter()
        .map(|(k, _)| k)
        .chain(prior.heartbeats.iter().map(|(k, _)| k));
    let resolved = ClientKeys::of(conns.iter().map(|o| &**o), prior_keys);
    let keys = &resolved.keys;
    shape::classify_keyless(conns, keys, &mut verdicts, window);
    let host_only = |i: usize| -> IpAddr { keys[i].host };

    #[derive(Default)]
    struct Hood {
        streaming_nodes: Vec<std::net::SocketAddr>,
        monitor_like: usize,
        authenticated_pool: usize,
        single_threaded: usize,
        heartbeat: Vec<f64>,
        conns: Vec<usize>,
        load_balanced: bool,
        /// Nodes a connection of this client mixes hello checks with operations on.
        mixing_nodes: Vec<std::net::SocketAddr>,
        /// Nodes a connection of this client only checks (monitor-like).
        checked_only_nodes: Vec<std::net::SocketAddr>,
        /// The client's driver is known (a handshake named it).
        driver_known: bool,
        /// Per connection of this client open at the end of the capture read as a
        /// streaming monitor, and per such check-only connection (an RTT monitor beside
        /// one), its node; repeated per connection.
        streaming_links: Vec<std::net::SocketAddr>,
        checking_links: Vec<std::net::SocketAddr>,
        /// Nodes where a connection of this client lost data to the capture, or was read
        /// with doubt: its streaming monitor may be there unrecognised.
        doubtful_nodes: Vec<std::net::SocketAddr>,
    }
    // Settled once after the first pass: looked up per connection in the second, where
    // recomputing them made a host with thousands of connections quadratic.
    struct Settled {
        /// Sorted and deduplicated, for binary search.
        streaming_nodes: Vec<std::net::SocketAddr>,
        /// The same.
        doubtful_nodes: Vec<std::net::SocketAddr>,
        heartbeat: Option<f64>,
    }
    // Each connection's neighbourhood, looked up once: an index into `hoods`.
    let mut hoods: Vec<Hood> = Vec::new();
    let mut hood_index: FxHashMap<ClientKey, usize> = FxHashMap::default();
    let hood_of: Vec<usize> = keys
        .iter()
        .map(|k| {
            let group = if k.has_metadata() {
                k.clone()
            } else {
                // Without a handshake the best neighbourhood is the whole host.
                ClientKey::host_only(k.host)
            };
            let driver_known = group.driver().is_some();
            *hood_index.entry(group).or_insert_with(|| {
                hoods.push(Hood {
                    driver_known,
                    ..Hood::default()
                });
                hoods.len() - 1
            })
        })
        .collect();
    let mut host_streaming: FxHashMap<IpAddr, Vec<std::net::SocketAddr>> = FxHashMap::default();
    // Streaming monitors opened before the capture whose client is not known (no handshake,
    // and their host has several clients): a named client's plain-hello connection to the
    // same node may be its RTT monitor.
    let mut anonymous_streaming: FxHashSet<(IpAddr, std::net::SocketAddr)> = FxHashSet::default();
    // Heartbeat cadence shown by any monitor of a host: the yardstick for connections of
    // that host whose own client is unknown (no handshake seen).
    let mut host_heartbeat: FxHashMap<IpAddr, Vec<f64>> = FxHashMap::default();
    // Hosts where some connection read as a monitor, or checks like one.
    let mut host_monitored: FxHashSet<IpAddr> = FxHashSet::default();
    for (i, obs) in conns.iter().enumerate() {
        let hood = &mut hoods[hood_of[i]];
        hood.conns.push(i);
        let class = verdicts[i].as_ref().map(|v| v.class);
        if matches!(
            class,
            Some(Class::StreamingMonitor | Class::RttMonitor | Class::PollingMonitor)
        ) {
            host_monitored.insert(host_only(i));
        }
        let lost = obs.client_traffic.gaps + obs.server_traffic.gaps > 0;
        let doubted = verdicts[i]
            .as_ref()
            .is_some_and(|v| v.confidence != Confidence::High);
        if lost || doubted {
            hood.doubtful_nodes.push(obs.server);
        }
        if class == Some(Class::StreamingMonitor) {
            hood.streaming_nodes.push(obs.server);
            if open_at_end(obs) {
                hood.streaming_links.push(obs.server);
            }
            host_streaming
                .entry(host_only(i))
                .or_default()
                .push(obs.server);
            if !keys[i].has_metadata() {
                anonymous_streaming.insert((host_only(i), obs.server));
            }
            // Read from its replies, or, over TLS without keys, from its pushed flights.
            let cadence = obs
                .hello
                .reply_intervals
                .mean()
                .or_else(|| obs.shape.as_ref().and_then(|s| s.server.interval.mean()));
            if let Some(m) = cadence {
                host_heartbeat.entry(host_only(i)).or_default().push(m);
            }
        }
        // A monitor read from TLS record shapes keeps its cadence in its request flights.
        if matches!(class, Some(Class::RttMonitor | Class::PollingMonitor)) {
            if let Some(m) = obs.shape.as_ref().and_then(|s| s.client.interval.mean()) {
                host_heartbeat.entry(host_only(i)).or_default().push(m);
            }
        }
        // Checks mixed with operations on one connection: the single-threaded pattern.
        if checks_between_operations(obs) {
            hood.single_threaded += 1;
            hood.mixing_nodes.push(obs.server);
        }
        // Monitors never authenticate: any authenticated connection is evidence that
        // this client authenticates its pool connections.
        if obs.auth.attempts > 0 || obs.auth.speculative || negotiates_sasl(obs) {
            hood.authenticated_pool += 1;
        }
        if obs.handshake.as_ref().is_some_and(|h| h.load_balanced) {
            hood.load_balanced = true;
        }
        if class.is_none() && application_ops(obs) == 0 && periodic_hellos(obs) > 0 {
            host_monitored.insert(host_only(i));
            hood.monitor_like += 1;
            hood.checked_only_nodes.push(obs.server);
            if open_at_end(obs) {
                hood.checking_links.push(obs.server);
            }
            if let Some(m) = obs.hello.request_intervals.median() {
                hood.heartbeat.push(m);
                host_heartbeat.entry(host_only(i)).or_default().push(m);
            }
        }
    }

    let hood_of_key = |key: &ClientKey| {
        let key = resolved.resolve(key);
        let group = if key.has_metadata() {
            key.clone()
        } else {
            ClientKey::host_only(key.host)
        };
        hood_index.get(&group).copied()
    };
    for (key, node) in &prior.streaming_nodes {
        if let Some(h) = hood_of_key(key) {
            hoods[h].streaming_nodes.push(*node);
        }
        host_streaming.entry(key.host).or_default().push(*node);
        host_monitored.insert(key.host);
    }
    for (key, beat) in &prior.heartbeats {
        if let Some(h) = hood_of_key(key) {
            hoods[h].heartbeat.push(*beat);
        }
        host_heartbeat.entry(key.host).or_default().push(*beat);
        host_monitored.insert(key.host);
    }
    for key in &prior.single_threaded {
        if let Some(h) = hood_of_key(key) {
            hoods[h].single_threaded += 1;
        }
    }

    let settled: Vec<Settled> = hoods
        .iter()
        .map(|hood| Settled {
            streaming_nodes: sorted_unique(&hood.streaming_nodes),
            doubtful_nodes: sorted_unique(&hood.doubtful_nodes),
            heartbeat: median(&hood.heartbeat),
        })
        .collect();
    let host_streaming: FxHashMap<IpAddr, Vec<std::net::SocketAddr>> = host_streaming
        .into_iter()
        .map(|(host, nodes)| (host, sorted_unique(&nodes)))
        .collect();
    let host_heartbeat: FxHashMap<IpAddr, f64> = host_heartbeat
        .into_iter()
        .filter_map(|(host, beats)| Some((host, median(&beats)?)))
        .collect();

    // A client with no monitoring connection at all, that is not load balanced, is a
    // single-threaded client when its own traffic says so (checks mixed with operations)
    // or it is a libmongoc-based driver holding one connection per node: every pooled
    // driver monitors every node (SDAM), only single-threaded libmongoc/PHP clients do not.
    //
    // Its check-only connections do not make it pooled: a single-threaded client that
    // checks more often than it has work for a node (a short heartbeatFrequencyMS, a long
    // capture: libmongoc's default is 60 s) holds connections that only check. What tells
    // it apart is a connection mixing checks and operations to a node with no dedicated
    // monitor: a pooled driver monitors every node it uses on a connection of its own.
    //
    // Unless its links are uneven: a client without monitors holding more connections at
    // once to one node than to another is a pooled driver that checks its servers over
    // pool connections (mgo; the Node.js driver 3.x legacy topology), its pool grown
    // where the work is. A single-threaded client holds one link per node.
    let mut unmonitored = vec![None; hoods.len()];
    for (key, &h) in &hood_index {
        let hood = &hoods[h];
        if hood.load_balanced || !hood.streaming_nodes.is_empty() {
            continue;
        }
        let unmonitored_mix = first_unwatched(&hood.mixing_nodes, &hood.checked_only_nodes);
        unmonitored[h] = if always_single_threaded_driver(key) {
            Some(Unmonitored::SingleThreadedDriver)
        } else if hood.monitor_like == 0
            && (hood.single_threaded > 0 || looks_single_threaded_driver(key))
        {
            Some(Unmonitored::SingleThreaded)
        } else if let Some(mixing) = unmonitored_mix {
            let peaks = peaks_per_node(conns, &hood.conns, |j| conns[j].messages() > 0);
            let busiest = peaks.iter().max_by_key(|(_, &p)| p);
            let fewest = peaks.values().copied().min().unwrap_or(0);
            Some(match busiest {
                Some((&node, &peak)) if peak > fewest => {
                    Unmonitored::ChecksOverPool { node, peak, fewest }
                }
                _ => Unmonitored::SingleThreadedMix(mixing),
            })
        } else {
            None
        };
    }

    // A handshake-only connection of a streaming client is its RTT monitor before the
    // first check, or an idle pool connection. It is the latter when every streaming
    // monitor of the client to that node already has its RTT connection: how many it
    // streams on, if so. Only connections open at the end of the capture count, this one
    // and the monitors: those a restart closed are not the ones it pairs with, and
    // connections never closed are never released from memory by a fold, so the
    // verdict is the same however many closed connections are held.
    let monitors_complete = |hood: &Hood, obs: &Observations, lived: f64| {
        let node = obs.server;
        let streams = hood.streaming_links.iter().filter(|&&n| n == node).count();
        let checking = hood.checking_links.iter().filter(|&&n| n == node).count();
        (open_at_end(obs) && lived >= STREAMING_START_SECS && streams > 0 && checking >= streams)
            .then_some(streams)
    };

    // A single-threaded client's links to each node, counted once per client and node
    // rather than per link: a PHP-FPM host runs hundreds of workers.
    let mut links_to: FxHashMap<(usize, std::net::SocketAddr), usize> = FxHashMap::default();

    // Second pass.
    for i in 0..conns.len() {
        if verdicts[i].is_some() {
            continue;
        }
        let obs = &conns[i];
        let hood = &hoods[hood_of[i]];
        let settled = &settled[hood_of[i]];
        let beside_streaming = settled.streaming_nodes.binary_search(&obs.server).is_ok()
            || (!keys[i].has_metadata()
                && host_streaming
                    .get(&host_only(i))
                    .is_some_and(|v| v.binary_search(&obs.server).is_ok()));
        let ops = application_ops(obs);
        let checks = periodic_hellos(obs);
        let no_handshake = if obs.handshake.is_none() {
            " (opened before the capture: no handshake seen)"
        } else {
            ""
        };

        let v = if let Some(Unmonitored::ChecksOverPool { node, peak, fewest }) =
            unmonitored[hood_of[i]].filter(|_| obs.messages() > 0)
        {
            verdict(
                Class::Pool,
                Confidence::Medium,
                evidence!(
                    "{checks} hello check{} and {ops} operation{}; the client has no monitoring connections and held {peak} connections at once to {} against {fewest} to another node: a pooled driver that checks its servers over pool connections (mgo; the Node.js driver 3.x legacy topology), not a single-threaded client, which holds one per node{no_handshake}",
                    plural(checks as u64),
                    plural(ops),
                    crate::net::addr_text(node)
                ),
            )
        } else if let Some(by) = unmonitored[hood_of[i]].filter(|_| obs.messages() > 0) {
            let what = if ops > 0 {
                evidence!("hello and {ops} operation{}", plural(ops))
            } else if checks > 0 {
                evidence!("{} hello checks", obs.hello.requests)
            } else {
                "only the handshake hello (single-threaded clients check every 60 s by default)"
                    .to_string()
            };
            let how = match by {
                Unmonitored::SingleThreadedMix(node) if node == obs.server => {
                    "with no monitor beside it, while a pooled driver monitors every node on a connection of its own: a single-threaded client, checking each node over its one connection (libmongoc/PHP/Perl style)".to_string()
                }
                Unmonitored::SingleThreadedMix(node) => evidence!(
                    "and its connection to {} mixes hello checks with operations with no monitor beside it, while a pooled driver monitors every node on a connection of its own: a single-threaded client, checking each node over its one connection (libmongoc/PHP/Perl style)",
                    crate::net::addr_text(node)
                ),
                Unmonitored::SingleThreadedDriver => evidence!(
                    "and its driver ({}) has no monitoring connections, no pooled mode: it checks each server over its one connection to it, a single-threaded client",
                    keys[i].driver_name.as_deref().unwrap_or_default().trim()
                ),
                _ => "and the client has no monitoring connections: a single-threaded client (libmongoc/PHP style)".to_string(),
            };
            let links = *links_to.entry((hood_of[i], obs.server)).or_insert_with(|| {
                hood.conns
                    .iter()
                    .filter(|&&j| conns[j].server == obs.server)
                    .count()
            });
            let on = if links > 1 {
                evidence!(
                    "on one of the client's {links} links to this node (one per process or client)"
                )
            } else {
                "on the client's only connection to this node".to_string()
            };
            verdict(
                Class::SingleThreaded,
                Confidence::Medium,
                evidence!("{what} {on}, {how}{no_handshake}"),
            )
        } else if ops > 0 {
            {
                let app_hellos = if checks > 0 {
                    evidence!(
                        "; its {checks} later hello{} came from the application (the client has monitoring connections)",
                        plural(checks as u64)
                    )
                } else {
                    String::new()
                };
                // Without its handshake, operations alone do not tell a pool connection
                // from a single-threaded client's one link to a node (checking every 60 s
                // by default, maybe not once in the capture) or a load-balanced client's:
                // what does is a monitor from the same host.
                let unwatched = obs.handshake.is_none()
                    && !hood.load_balanced
                    && !host_monitored.contains(&host_only(i));
                if unwatched {
                    let checked = if checks > 0 {
                        evidence!(" and {checks} hello check{}", plural(checks as u64))
                    } else {
                        String::new()
                    };
                    verdict(
                        Class::Pool,
                        Confidence::Low,
                        evidence!("{}{checked}{no_handshake}: a pool connection, or, since no connection from this host checks a server in the capture, a single-threaded client's one link to this node (libmongoc/PHP check it every 60 s by default) or a load-balanced client's", activity(obs)),
                    )
                } else {
                    verdict(
                        Class::Pool,
                        handshake_confidence(obs),
                        evidence!("{}{app_hellos}{no_handshake}", activity_sentence(obs)),
                    )
                }
            }
        } else if checks > 0 {
            // Plain hellos on a cadence, nothing else.
            let cadence = obs
                .hello
                .request_intervals
                .median()
                .map(|s| evidence!(" every {s:.1} s"))
                .unwrap_or_default();
            if beside_streaming {
                verdict(
                    Class::RttMonitor,
                    Confidence::High,
                    evidence!("{} plain hello{}{cadence}, no operations, beside a streaming monitor to the same node{no_handshake}", obs.hello.requests, plural(obs.hello.requests as u64)),
                )
            } else if !settled.streaming_nodes.is_empty() && supports_streaming(obs) {
                // One MongoClient streams to every node that can: a streaming monitor to
                // this one went unseen (no reply in a short window, or lost to the capture).
                verdict(
                    Class::RttMonitor,
                    Confidence::Medium,
                    evidence!("{} plain hello{}{cadence}, no operations; its client streams to {} other node{} and this server supports streaming too: its streaming monitor to it went unseen (no reply in the window, or lost to the capture), which makes this the RTT monitor{no_handshake}", obs.hello.requests, plural(obs.hello.requests as u64), settled.streaming_nodes.len(), plural(settled.streaming_nodes.len() as u64)),
                )
            } else if anonymous_streaming.contains(&(host_only(i), obs.server)) {
                verdict(
                    Class::RttMonitor,
                    Confidence::Medium,
                    evidence!("{} plain hello{}{cadence}, no operations, and a streaming monitor from this host to the same node that began before the capture (no handshake seen, and the host runs several clients): most likely this client's, which makes this its RTT monitor{no_handshake}", obs.hello.requests, plural(obs.hello.requests as u64)),
                )
            } else {
                // Two connections of one client checking a node alike are two MongoClients'
                // polling monitors, or the Go driver 1.4 to 1.12's polling monitor and RTT
                // connection (`polls_with_rtt_monitor`): only a handshake names the driver.
                let twin = !hood.driver_known
                    && hood
                        .checked_only_nodes
                        .iter()
                        .filter(|&&n| n == obs.server)
                        .count()
                        >= 2;
                // A handshake without client metadata: a driver older than the 3.4
                // handshake spec (mgo), which may check servers over its pool sockets
                // between operations instead of on monitoring connections.
                let pre_metadata = obs
                    .handshake
                    .as_ref()
                    .is_some_and(|h| h.driver_name.is_none() && h.app_name.is_none());
                let doubtful = settled.doubtful_nodes.binary_search(&obs.server).is_ok();
                // One hello and no handshake: no cadence shows it is a monitor's.
                let single = obs.hello.requests <= 1 && obs.handshake.is_none();
                let hedge = if twin {
                    "; another connection of this client checks the same node alike: two MongoClients polling, or the Go driver 1.4 to 1.12, whose RTT connection polls beside its monitor (a handshake would name the driver)"
                } else if pre_metadata {
                    "; its handshake names no driver (older than the 3.4 handshake metadata, as mgo): such a driver may check a server over a pool socket between operations"
                } else if doubtful {
                    "; a connection of this client to this node lost packets to the capture or was read with doubt: a streaming monitor may be among them"
                } else if single {
                    "; one hello is no cadence yet: a driver that checks over its pool connections (the Node.js driver 3.x legacy topology, mgo) sends the same"
                } else {
                    ""
                };
                verdict(
                    Class::PollingMonitor,
                    if hedge.is_empty() {
                        Confidence::High
                    } else {
                        Confidence::Medium
                    },
                    evidence!(
                        "{} plain hello{}{cadence}, no operations, no streaming monitor to this node{}{no_handshake}{hedge}",
                        obs.hello.requests,
                        plural(obs.hello.requests as u64),
                        polling_reason(obs),
                    ),
                )
            }
        } else if let Some(commands) = pool_only_housekeeping(obs) {
            verdict(
                Class::Pool,
                handshake_confidence(obs),
                evidence!(
                    "{}{commands} and no other operation: only a pool connection carries these (a client ends its sessions, kills its cursors and pings through its pool; monitors send hello alone){no_handshake}",
                    if obs.handshake.is_some() { "handshake, then " } else { "" }
                ),
            )
        } else if obs.handshake.is_some() {
            // A handshake and nothing more: an idle pool connection or a monitor that has
            // not reached its next heartbeat yet.
            let until = obs
                .closed
                .or(capture_end)
                .unwrap_or(obs.last_seen)
                .max(obs.last_seen);
            let lived = until - obs.handshake_ts.unwrap_or(obs.first_seen);
            let heartbeat = settled.heartbeat.unwrap_or(DEFAULT_HEARTBEAT_SECS);
            if hood.authenticated_pool > 0 {
                let class = if beside_streaming {
                    Class::RttMonitor
                } else {
                    Class::PollingMonitor
                };
                verdict(
                    class,
                    Confidence::Medium,
                    evidence!(
                        "handshake only and no authentication, while this client's pool connections authenticate: monitoring connections never authenticate{}",
                        if beside_streaming { "; a streaming monitor to the same node exists" } else { "" }
                    ),
                )
            } else if lived > heartbeat * SILENT_HEARTBEATS {
                // Silence proves nothing where the capture lost bytes of the connection:
                // a monitor's checks may be what it lost.
                let lost = obs.client_traffic.gap_bytes + obs.server_traffic.gap_bytes;
                verdict(
                    Class::Pool,
                    if lost > 0 {
                        Confidence::Low
                    } else {
                        Confidence::Medium
                    },
                    evidence!(
                        "handshake, then idle for {lived:.1} s with no hello check (heartbeat {heartbeat:.0} s): an idle pool connection{}",
                        if lost > 0 {
                            evidence!(", though {lost} bytes of it were lost to the capture and may have held its checks")
                        } else {
                            String::new()
                        }
                    ),
                )
            } else if let Some(streams) = monitors_complete(hood, obs, lived) {
                verdict(
                    Class::Pool,
                    Confidence::Medium,
                    evidence!(
                        "handshake only ({lived:.1} s seen), while {} to this node already has its RTT connection beside it, and a MongoClient keeps one of each per server: an idle pool connection",
                        if streams == 1 {
                            "this client's streaming monitor".to_string()
                        } else {
                            evidence!("each of this client's {streams} streaming monitors")
                        }
                    ),
                )
            } else {
                verdict(
                    Class::Unknown,
                    Confidence::Low,
                    evidence!(
                        "only the handshake was seen, {lived:.1} s before the capture or the connection ended (less than {SILENT_HEARTBEATS} heartbeats of {heartbeat:.0} s): an idle pool connection and a monitor awaiting its next check look alike"
                    ),
                )
            }
        } else if let Some(v) = silent_through_window(
            obs,
            window,
            settled
                .heartbeat
                .or_else(|| host_heartbeat.get(&host_only(i)).copied()),
        ) {
            v
        } else if obs.messages() == 0 {
            verdict(
                Class::Unknown,
                Confidence::Low,
                if obs.client_traffic.bytes + obs.server_traffic.bytes > 0 {
                    "bytes were exchanged but no MongoDB message could be decoded".into()
                } else if is_connect_only_probe(obs) {
                    "opened and closed without a byte sent: a connect-only probe (the Ruby driver 2.x's address resolver connects to each node once this way; TCP health checks look alike)".into()
                } else if obs.syn_seen {
                    "TCP connection with no MongoDB message in the capture".into()
                } else {
                    "no MongoDB message in the capture window (opened before it, idle during it)"
                        .into()
                },
            )
        } else if obs.syn_seen {
            // Messages whose commands could not be read: a snap length too short for
            // even a command name (the capture's warnings say so).
            verdict(
                Class::Unknown,
                Confidence::Low,
                evidence!(
                    "{} message{} seen, none naming a command that tells its role",
                    obs.messages(),
                    plural(obs.messages())
                ),
            )
        } else {
            verdict(
                Class::Unknown,
                Confidence::Low,
                evidence!(
                    "opened before the capture and only {} hello/reply message{} seen: not enough to tell its role",
                    obs.messages(),
                    plural(obs.messages())
                ),
            )
        };
        verdicts[i] = Some(v);
    }
    let mut verdicts: Vec<Verdict> = verdicts
        .into_iter()
        .map(|v| v.expect("every connection classified"))
        .collect();
    split_polling_pairs(conns, keys, &mut verdicts);
    legacy_node_topology(conns, keys, &mut verdicts);
    verdicts
}

/// The Node.js driver 3.x's legacy topology (the default until `useUnifiedTopology`,
/// removed in 4.0) has no monitoring connections: it checks each server with `ismaster`
/// over a connection of that server's pool, between operations. A client of such a
/// version that mixes checks and operations on one connection, and never streams, is
/// using it; then its check-only connections are pool connections too. (The unified
/// topology of 3.x monitors on dedicated connections, as the SDAM spec has it.)
fn legacy_node_topology(conns: &[Box<Observations>], keys: &[ClientKey], verdicts: &mut [Verdict]) {
    let is_node_3 = |key: &ClientKey| {
        key.driver()
            .is_some_and(|(name, version)| may_use_legacy_node_topology(name, version))
    };
    // Per client key: (never streams, some connection mixes checks and operations).
    let mixes = |i: usize| checks_between_operations(&conns[i]);
    let mut legacy: FxHashMap<&ClientKey, (bool, bool)> = FxHashMap::default();
    for (i, key) in keys.iter().enumerate() {
        if !is_node_3(key) {
            continue;
        }
        let (streams_never, mixed) = legacy.entry(key).or_insert((true, false));
        if conns[i].hello.awaitable > 0 || verdicts[i].class == Class::StreamingMonitor {
            *streams_never = false;
        }
        *mixed |= mixes(i);
    }
    // Without a connection seen mixing them (a window or a lossy capture may show none), a
    // check-only connection of such a client is a polling monitor of its unified topology
    // or a pool connection of its legacy one: not a certain monitor.
    for (i, key) in keys.iter().enumerate() {
        let unsure = legacy
            .get(key)
            .is_some_and(|&(never, mixed)| never && !mixed);
        let v = &mut verdicts[i];
        if unsure && v.class == Class::PollingMonitor && v.confidence == Confidence::High {
            v.confidence = Confidence::Medium;
            v.evidence.push_str("; the Node.js driver 3.x may use its legacy topology (no useUnifiedTopology), which checks servers over pool connections: then a pool connection");
        }
    }
    legacy.retain(|_, (streams_never, mixed)| *streams_never && *mixed);
    for (i, key) in keys.iter().enumerate() {
        if !legacy.contains_key(key) || (verdicts[i].class == Class::Pool && !mixes(i)) {
            continue;
        }
        let obs = &conns[i];
        verdicts[i] = verdict(
            Class::Pool,
            Confidence::Medium,
            evidence!(
                "{} hello check{} and {} operation{}: the Node.js driver 3.x legacy topology (no useUnifiedTopology) checks each server over a connection of its pool, between operations, and has no monitoring connections",
                periodic_hellos(obs),
                plural(periodic_hellos(obs) as u64),
                application_ops(obs),
                plural(application_ops(obs))
            ),
        );
    }
}

/// The driver under any wrapping library: the handshake spec has wrappers append their
/// name and version after a `|` (Mongoose: "nodejs|Mongoose", "6.9.0|8.2.1"), so the first
/// parts are the driver's own.
fn underlying(driver_name_or_version: &str) -> &str {
    let s = driver_name_or_version;
    s.split('|').next().unwrap_or(s).trim()
}

/// The Node.js driver before 4.0, whose default topology was the legacy one (also under a
/// wrapper: Mongoose 5 runs on it).
pub fn may_use_legacy_node_topology(driver_name: &str, driver_version: &str) -> bool {
    // The name first: classifying asks this of every connection with a handshake.
    underlying(driver_name) == "nodejs"
        && underlying(driver_version)
            .split('.')
            .next()
            .and_then(|major| major.parse::<u32>().ok())
            .is_some_and(|major| major < 4)
}

/// Hello checks after the handshake and operations on the same connection.
pub fn checks_between_operations(obs: &Observations) -> bool {
    application_ops(obs) > 0 && periodic_hellos(obs) > 0
}

/// Drivers that keep an RTT connection to each server even when they poll: the Go driver
/// from 1.4 (streaming hello, GODRIVER-1489) to 1.12 starts its RTT monitor in
/// `Server.Connect` whatever the server supports; 1.13 starts it only once it streams, as
/// the server-monitoring spec has it. Such a client shows two polling-shaped connections
/// per node for one MongoClient.
pub fn polls_with_rtt_monitor(driver_name: &str, driver_version: &str) -> bool {
    if underlying(driver_name) != "mongo-go-driver" {
        return false;
    }
    let mut parts = underlying(driver_version)
        .trim_start_matches('v')
        .split(['.', '-', '+']);
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    matches!((major, minor), (Some(1), Some(4..=12)))
}

/// For a client whose driver polls with an RTT monitor beside ([`polls_with_rtt_monitor`]),
/// half of its polling-shaped connections to each node are RTT monitors. The check
/// monitor is the one that also runs immediate checks (server selection asks for them),
/// so it has the shortest gap between hellos and the most hellos; the RTT monitor ticks
/// at the heartbeat only.
fn split_polling_pairs(conns: &[Box<Observations>], keys: &[ClientKey], verdicts: &mut [Verdict]) {
    let mut groups: FxHashMap<(&ClientKey, std::net::SocketAddr), Vec<usize>> =
        FxHashMap::default();
    for (i, key) in keys.iter().enumerate() {
        // The class first: reading the driver's version is the dearer question.
        let paired = verdicts[i].class == Class::PollingMonitor
            && key
                .driver()
                .is_some_and(|(name, version)| polls_with_rtt_monitor(name, version));
        if paired {
            groups.entry((key, conns[i].server)).or_default().push(i);
        }
    }
    for (_, mut members) in groups {
        if members.len() < 2 {
            continue;
        }
        let shortest_gap = |i: usize| conns[i].hello.request_intervals.min.unwrap_or(f64::MAX);
        members.sort_by(|&a, &b| {
            shortest_gap(a)
                .total_cmp(&shortest_gap(b))
                .then(conns[b].hello.requests.cmp(&conns[a].hello.requests))
                .then(conns[a].first_seen.total_cmp(&conns[b].first_seen))
        });
        let monitors = members.len().div_ceil(2);
        for &i in &members[monitors..] {
            let obs = &conns[i];
            let driver = keys[i].driver_version.as_deref().unwrap_or("");
            verdicts[i] = verdict(
                Class::RttMonitor,
                Confidence::Medium,
                evidence!(
                    "{} plain hello{} at the heartbeat, no operations, beside this client's polling monitor to the same node: mongo-go-driver {driver} (1.4 to 1.12) keeps an RTT connection even when it polls; of the pair, the RTT monitor is the one without immediate checks",
                    obs.hello.requests,
                    plural(obs.hello.requests as u64)
                ),
            );
        }
    }
}

/// A connection that predates the capture and carried no MongoDB message while the capture
/// watched it for longer than [`SILENT_HEARTBEATS`] cannot be a monitor (monitors exchange a
/// hello every heartbeat): it is an idle pool connection. Inferred, and said so.
fn silent_through_window(
    obs: &Observations,
    window: Option<Window>,
    heartbeat: Option<f64>,
) -> Option<Verdict> {
    let window = window?;
    if obs.syn_seen || obs.messages() > 0 {
        return None;
    }
    let heartbeat = heartbeat.unwrap_or(DEFAULT_HEARTBEAT_SECS);
    let watched = obs.closed.unwrap_or(window.end) - window.start;
    (watched > heartbeat * SILENT_HEARTBEATS).then(|| {
        verdict(
            Class::Pool,
            Confidence::Low,
            evidence!(
                "opened before the capture and silent for the {watched:.1} s it was watched{}, longer than {SILENT_HEARTBEATS} heartbeats ({heartbeat:.0} s): not a monitor; inferred to be an idle pool connection",
                if obs.closed.is_some() { " until it closed" } else { "" }
            ),
        )
    })
}

fn activity_sentence(obs: &Observations) -> String {
    let auth = if obs.auth.attempts > 0 || obs.auth.speculative {
        evidence!("handshake + authentication{}, then ", mechanism(obs))
    } else if obs.handshake.is_some() {
        "handshake, then ".into()
    } else {
        String::new()
    };
    evidence!("{auth}{}: a pool connection", activity(obs))
}

/// The server announced the streaming protocol (topologyVersion) to a client that is not
/// in a FaaS environment (where drivers poll).
fn supports_streaming(obs: &Observations) -> bool {
    let faas = obs.handshake.as_ref().is_some_and(|h| h.env_name.is_some());
    !faas && obs.server_info.as_ref().is_some_and(|s| s.topology_version)
}

/// Why a monitor polls instead of streaming, when the capture says.
fn polling_reason(obs: &Observations) -> String {
    if let Some(env) = obs.handshake.as_ref().and_then(|h| h.env_name.as_deref()) {
        return evidence!(" (FaaS environment {env}: drivers poll there)");
    }
    match obs.server_info.as_ref() {
        Some(s) if s.max_wire_version.is_some_and(|w| w < 9) => {
            " (server below 4.4: no streaming protocol)".into()
        }
        Some(s) if s.topology_version => {
            " (server supports streaming: serverMonitoringMode=poll or a polling driver)".into()
        }
        _ => String::new(),
    }
}

/// The drivers with a single-threaded mode beside a pooled one: libmongoc and those built
/// on it (C, C++; PHP and Perl, which have no other mode, are
/// [`always_single_threaded_driver`]). Used only when the capture itself cannot tell: such
/// a client without any monitoring connection is single-threaded, since its pooled mode
/// monitors every server on connections of its own. Several of them under one key are
/// processes side by side, each with one connection per node; lost packets, workers
/// recycled, or a connection that sent nothing yet can leave the nodes uneven, which is
/// why the count of links does not decide.
fn looks_single_threaded_driver(key: &ClientKey) -> bool {
    key.driver_name.as_deref().is_some_and(is_libmongoc_based)
}

/// Drivers with no pooled mode at all: PHP's ext-mongodb gives each Manager a
/// single-threaded libmongoc client, and the Perl driver has no monitoring thread. Whatever
/// the capture lost, their connections are single-threaded links (the C driver, and the
/// C++ driver on it, have a pooled mode too, so "mongoc" alone does not say).
fn always_single_threaded_driver(key: &ClientKey) -> bool {
    key.driver_name
        .as_deref()
        .is_some_and(|name| name.contains("ext-mongodb:PHP") || name == PERL_DRIVER)
}

/// The Perl driver (2.x, end of life) has no monitoring thread: like a libmongoc
/// single-threaded client it checks each server over its one connection to it, every 60 s
/// by default (`heartbeat_frequency_ms`); pre-forking Perl servers run a client per worker.
const PERL_DRIVER: &str = "MongoDB Perl Driver";

/// The handshake's driver name says libmongoc: the C driver ("mongoc") and the drivers
/// built on it, which append their own name ("mongoc / ext-mongodb:PHP", C++ "mongocxx").
pub fn is_libmongoc_based(driver_name: &str) -> bool {
    driver_name.contains("mongoc") || driver_name.contains("PHP") || driver_name.contains("php")
}

/// Most of the `members` that `keep` accepts open at once, per node.
fn peaks_per_node(
    conns: &[Box<Observations>],
    members: &[usize],
    keep: impl Fn(usize) -> bool,
) -> BTreeMap<std::net::SocketAddr, u64> {
    let mut per_node: BTreeMap<std::net::SocketAddr, Vec<(f64, Option<f64>)>> = BTreeMap::new();
    for &j in members.iter().filter(|&&j| keep(j)) {
        let o = &conns[j];
        per_node.entry(o.server).or_default().push(o.span());
    }
    per_node
        .into_iter()
        .map(|(node, spans)| (node, peak_overlap(spans.into_iter())))
        .collect()
}

/// The first of `nodes` not among `watched`: a node with work and no monitor beside it.
/// Both lists hold one entry per connection, so they are deduplicated first (a busy host
/// holds thousands of connections to a few nodes).
pub(super) fn first_unwatched(
    nodes: &[std::net::SocketAddr],
    watched: &[std::net::SocketAddr],
) -> Option<std::net::SocketAddr> {
    let watched = sorted_unique(watched);
    sorted_unique(nodes)
        .into_iter()
        .find(|n| watched.binary_search(n).is_err())
}

/// Most of these (open, close) spans open at once; a span never closed stays open.
pub fn peak_overlap(intervals: impl Iterator<Item = (f64, Option<f64>)>) -> u64 {
    let mut events: Vec<(f64, i32)> = Vec::new();
    for (open, close) in intervals {
        events.push((open, 1));
        events.push((close.unwrap_or(f64::INFINITY), -1));
    }
    // Closes sort before opens at the same instant: a replacement is not an overlap.
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut open, mut peak) = (0i64, 0i64);
    for (_, d) in events {
        open += d as i64;
        peak = peak.max(open);
    }
    peak.max(0) as u64
}

fn sorted_unique<T: Ord + Copy>(values: &[T]) -> Vec<T> {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

#[cfg(test)]
mod tests;
