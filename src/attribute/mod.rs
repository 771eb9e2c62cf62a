//! Stage 7, attribution: classified connections → clients (host, appName, driver),
//! MongoClient instances, the drivers' connection formula, and a verdict that explains
//! every deviation.
//!
//! Formulas (per MongoClient instance, per node): single-threaded 1; polling
//! minPoolSize + 1 (monitor); streaming minPoolSize + 2 (monitor + RTT); load-balanced
//! minPoolSize (no monitors). MongoClient instances are counted as the monitor sets a
//! client keeps open at once to one node: every instance monitors every node once.

pub mod cluster;
mod footprint;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::classify::{Class, ClientKey, ClientKeys, Verdict};
use crate::net;
use crate::observe::{InFlightKey, Observations};
use footprint::Footprint;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// minPoolSize from the user (`--min-pool-size` or `--uri`), instead of the estimate.
    pub min_pool_size: Option<u32>,
    /// Project each client to this many application instances.
    pub instances: Option<u32>,
    /// The connection limit to compare projections against.
    pub max_connections: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Streaming,
    Polling,
    SingleThreaded,
    LoadBalanced,
    Unknown,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Streaming => "streaming",
            Mode::Polling => "polling",
            Mode::SingleThreaded => "single-threaded",
            Mode::LoadBalanced => "load-balanced",
            Mode::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Driver {
    pub name: String,
    pub version: String,
}

/// Connections per class, as in the contract (read back by `merge`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    #[serde(rename = "streaming-monitor")]
    pub streaming_monitor: u64,
    #[serde(rename = "rtt-monitor")]
    pub rtt_monitor: u64,
    #[serde(rename = "polling-monitor")]
    pub polling_monitor: u64,
    pub pool: u64,
    #[serde(rename = "single-threaded")]
    pub single_threaded: u64,
    pub internal: u64,
    pub unknown: u64,
    pub total: u64,
}

impl Counts {
    pub fn add(&mut self, class: Class) {
        *self.slot(class) += 1;
        self.total += 1;
    }
    pub fn merge(&mut self, other: &Counts) {
        for class in Class::ALL {
            *self.slot(class) += other.get(class);
        }
        self.total += other.total;
    }
    fn slot(&mut self, class: Class) -> &mut u64 {
        match class {
            Class::StreamingMonitor => &mut self.streaming_monitor,
            Class::RttMonitor => &mut self.rtt_monitor,
            Class::PollingMonitor => &mut self.polling_monitor,
            Class::Pool => &mut self.pool,
            Class::SingleThreaded => &mut self.single_threaded,
            Class::Internal => &mut self.internal,
            Class::Unknown => &mut self.unknown,
        }
    }
    pub fn get(&self, class: Class) -> u64 {
        match class {
            Class::StreamingMonitor => self.streaming_monitor,
            Class::RttMonitor => self.rtt_monitor,
            Class::PollingMonitor => self.polling_monitor,
            Class::Pool => self.pool,
            Class::SingleThreaded => self.single_threaded,
            Class::Internal => self.internal,
            Class::Unknown => self.unknown,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Expected {
    pub formula: String,
    pub min_pool_size: Option<u32>,
    pub total: u64,
    /// "given" (from the user) or "estimated" (from the capture).
    pub min_pool_size_source: &'static str,
    pub per_node: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Projection {
    pub instances: u32,
    pub connections_per_instance: u64,
    pub total: u64,
    pub per_node: u64,
    pub max_connections: Option<u64>,
    pub over_limit: Option<bool>,
    pub summary: String,
}

/// One client: a (host, appName, driver) group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Client {
    pub id: String,
    pub host: String,
    pub app_name: Option<String>,
    pub driver: Option<Driver>,
    /// JA4 of a keyless TLS client's stack (its handshake metadata is encrypted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_fingerprint: Option<String>,
    pub mode: Mode,
    pub mongo_clients: u32,
    pub nodes: Vec<String>,
    pub counts: Counts,
    pub expected: Option<Expected>,
    pub verdict: String,
    /// Each deviation from the formula, one sentence each.
    pub deviations: Vec<String>,
    /// Advice that follows from the deviations.
    pub advice: Vec<String>,
    pub platform: Option<String>,
    pub env: Option<String>,
    /// Nodes the servers announced (hello `hosts`) that this client never connected to.
    pub nodes_not_reached: Vec<String>,
    pub opened_before_capture: u64,
    pub peak_pool_per_node: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projection: Option<Projection>,
}

/// A connection with its class and client.
#[derive(Clone, Debug, PartialEq)]
pub struct Attributed {
    pub obs: Box<Observations>,
    pub verdict: Verdict,
    pub client_id: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Attribution {
    pub connections: Vec<Attributed>,
    pub clients: Vec<Client>,
    /// Connections released during the capture, per node ([`Released::nodes`]).
    pub released_nodes: BTreeMap<SocketAddr, NodeTally>,
}

/// Peak operations in flight per (client host, appName, server), from observation.
pub type InFlightPeaks = HashMap<InFlightKey, u32>;

/// Closed connections released from memory during a long capture, folded per client and
/// per node: they still count in their clients' totals, modes, MongoClient estimates and
/// formulas, and in their nodes' rows; their per-connection details (evidence, timings)
/// are gone. This is what keeps memory bounded by open connections plus a fixed number of
/// recent closed ones, however long the capture.
///
/// Peaks (connections of a class open at once to a node) fold exactly, up to the classes
/// the fold gave: a released connection ended before its fold, so every connection open at
/// any instant it covers was known then, held or released in that fold, or released by an
/// earlier one only if it ended before that earlier fold. Each fold takes the peak over
/// all of a client's known connections, which is exact from the client's previous fold on
/// and a lower bound before it; the end takes it over what is held. The largest is the
/// peak over the whole capture.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Released {
    clients: BTreeMap<ClientKey<'static>, Footprint>,
    nodes: BTreeMap<SocketAddr, NodeTally>,
    /// Connections folded in so far.
    pub connections: u64,
}

/// A node's released connections: their classes and clients. (Its role is the
/// observer's: `NodeLife::roles`.)
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeTally {
    pub counts: Counts,
    /// Client ids ([`Client::id`]).
    pub clients: BTreeSet<String>,
}

impl Released {
    /// Fold the connections whose ids are in `ids`, with the class `verdicts` gives them
    /// (index-aligned with `conns`) and the client [`attribute`] would give them, without
    /// the rest of an attribution: what an offline fold needs, at a fraction of the cost.
    pub fn fold_classified<S: std::hash::BuildHasher>(
        &mut self,
        conns: &[Box<Observations>],
        verdicts: &[Verdict],
        ids: &std::collections::HashSet<u64, S>,
    ) {
        let classified = conns
            .iter()
            .map(|o| &**o)
            .zip(verdicts.iter().map(|v| v.class));
        self.fold_each(classified.collect(), ids);
    }

    /// Fold the connections of `attribution` whose ids are in `ids`, with the class and
    /// client the attribution gave them.
    pub fn fold<S: std::hash::BuildHasher>(
        &mut self,
        attribution: &Attribution,
        ids: &std::collections::HashSet<u64, S>,
    ) {
        let classified = attribution
            .connections
            .iter()
            .map(|c| (&*c.obs, c.verdict.class));
        self.fold_each(classified.collect(), ids);
    }

    /// What the released connections showed of their clients, for classifying the
    /// connections still held ([`crate::classify::classify_after`]).
    pub fn prior(&self) -> crate::classify::Prior {
        // Per client, the nodes it had a connection of `class` to.
        let nodes_of = |class: Class| {
            self.clients.iter().flat_map(move |(key, footprint)| {
                footprint
                    .peaks
                    .keys()
                    .filter(move |(c, _)| *c == class)
                    .map(move |&(_, node)| (key, node))
            })
        };
        let streaming_nodes = nodes_of(Class::StreamingMonitor)
            .map(|(key, node)| (key.clone(), node))
            .collect();
        let heartbeats = self
            .clients
            .iter()
            .filter_map(|(key, footprint)| Some((key.clone(), footprint.heartbeat?)))
            .collect();
        let mut single_threaded: Vec<ClientKey<'static>> = nodes_of(Class::SingleThreaded)
            .map(|(key, _)| key.clone())
            .collect();
        single_threaded.dedup();
        crate::classify::Prior {
            streaming_nodes,
            heartbeats,
            single_threaded,
        }
    }

    /// Tally the connections in `ids` under the client key [`attribute`] gives them
    /// ([`resolve_keys`] over the same connections and the same released clients). `conns`
    /// are all the connections of the released ones' hosts still held, for the peaks.
    fn fold_each<S: std::hash::BuildHasher>(
        &mut self,
        conns: Vec<(&Observations, Class)>,
        ids: &std::collections::HashSet<u64, S>,
    ) {
        let resolved = ClientKeys::of(conns.iter().map(|(o, _)| *o), self.clients.keys());
        // Per client: (its connections released now, all its connections).
        let mut groups: BTreeMap<&ClientKey, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
        for (i, key) in resolved.keys.iter().enumerate() {
            let group = groups.entry(key).or_default();
            if ids.contains(&conns[i].0.id) {
                group.0.push(i);
            }
            group.1.push(i);
        }
        let groups: Vec<(ClientKey<'static>, Vec<usize>, Vec<usize>)> = groups
            .into_iter()
            .filter(|(_, (released, _))| !released.is_empty())
            .map(|(key, (released, all))| (key.clone().into_owned(), released, all))
            .collect();
        for (key, released, all) in groups {
            let pick = |members: &[usize]| -> Vec<(&Observations, Class)> {
                members.iter().map(|&i| conns[i]).collect()
            };
            let released = pick(&released);
            // Tallied from the released connections; peaks over all the client's known.
            let mut part = Footprint::tally(&key, &released);
            part.peaks = footprint::peaks_of(&pick(&all));
            let id = key.id();
            for &(obs, class) in &released {
                let node = self.nodes.entry(obs.server).or_default();
                node.counts.add(class);
                if !node.clients.contains(&id) {
                    node.clients.insert(id.clone());
                }
            }
            self.connections += released.len() as u64;
            self.clients.entry(key).or_default().merge(&part);
        }
    }
}

/// Writes follow the primary: after a failover a client holds pool connections to the old
/// primary and to the new one, where before it needed only one of them.
fn failover_deviation(
    failovers: &[PrimaryChange],
    pool_peaks: &BTreeMap<SocketAddr, u64>,
) -> Vec<String> {
    // Per replica set, the nodes that stepped down or were elected and that this client's
    // pool reached. A node can be both, re-elected after a second failover.
    let mut by_set: BTreeMap<Option<&str>, BTreeSet<SocketAddr>> = BTreeMap::new();
    for change in failovers {
        if pool_peaks.get(&change.node).is_some_and(|&p| p > 0) {
            by_set
                .entry(change.set_name.as_deref())
                .or_default()
                .insert(change.node);
        }
    }
    by_set
        .into_iter()
        .filter(|(_, nodes)| nodes.len() > 1)
        .map(|(set, nodes)| {
            let list: Vec<String> = nodes.iter().map(|&n| net::addr_text(n)).collect();
            format!(
                "a failover during the capture: the primary{} moved between {}; writes follow the primary, so the pool holds connections to each (those to a former primary stay until idle or reused for reads)",
                set.map(|s| format!(" of {s}")).unwrap_or_default(),
                list.join(" and ")
            )
        })
        .collect()
}

/// A node some of whose connections heard another process than the first, each process
/// answering only once the one before it had no connection left: it restarted during the
/// capture, and the connections to its new process were opened again. Processes that
/// answered side by side are several behind one address (NodeLife::concurrent).
fn restart_deviations(processes: footprint::Processes) -> Vec<String> {
    let mut by_node: BTreeMap<SocketAddr, Vec<footprint::Heard>> = BTreeMap::new();
    for &((node, _), heard) in processes.iter() {
        by_node.entry(node).or_default().push(heard);
    }
    by_node
        .into_iter()
        .filter_map(|(node, mut order)| {
            order.sort_by(|a, b| a.first.total_cmp(&b.first));
            let successive = !crate::observe::side_by_side(order.iter().map(|h| (h.first, h.until)));
            (order.len() > 1 && successive).then_some((node, order))
        })
        .map(|(node, order)| {
            let reopened: u64 = order[1..].iter().map(|h| h.connections).sum();
            format!(
                "{node} restarted during the capture ({} processes answered): {reopened} connection{} to it {} opened again to the new process (a restart closes every connection; the driver reopens its monitors and refills its pool)",
                order.len(),
                if reopened == 1 { "" } else { "s" },
                if reopened == 1 { "was" } else { "were" }
            )
        })
        .collect()
}

/// A node that became, or stopped being, the primary of its replica set during the
/// capture (from its hello replies: `NodeLife::roles`).
#[derive(Clone, Debug, PartialEq)]
pub struct PrimaryChange {
    pub node: SocketAddr,
    pub set_name: Option<String>,
}

/// Group, count, check. `verdicts` is index-aligned with `conns`.
pub fn attribute(
    conns: Vec<Box<Observations>>,
    verdicts: Vec<Verdict>,
    opts: Options,
    in_flight: &InFlightPeaks,
    released: &Released,
    failovers: &[PrimaryChange],
) -> Attribution {
    // Keys borrow the connections' names: grouping copies no string, and a client's id
    // is formatted once and copied to its connections.
    let resolved = ClientKeys::of(conns.iter().map(|o| &**o), released.clients.keys());
    let keys = &resolved.keys;

    // Each client's connections still held, and its released tally.
    type Members<'r> = (Vec<usize>, Option<&'r Footprint>);
    let mut groups: BTreeMap<&ClientKey, Members> = BTreeMap::new();
    for (i, k) in keys.iter().enumerate() {
        groups.entry(k).or_default().0.push(i);
    }
    for (k, tally) in &released.clients {
        groups.entry(k).or_default().1 = Some(tally);
    }
    let mut client_ids = vec![String::new(); conns.len()];
    let clients: Vec<Client> = groups
        .iter()
        .map(|(key, (members, released))| {
            let group = Group {
                key,
                members,
                released: *released,
            };
            let client = client_of(group, &conns, &verdicts, opts, in_flight, failovers);
            for &i in members {
                client_ids[i].clone_from(&client.id);
            }
            client
        })
        .collect();
    let connections = conns
        .into_iter()
        .zip(verdicts)
        .zip(client_ids)
        .map(|((obs, verdict), client_id)| Attributed {
            obs,
            verdict,
            client_id,
        })
        .collect();
    Attribution {
        connections,
        clients,
        released_nodes: released.nodes.clone(),
    }
}

/// One client's connections: those still held (indices) and those already released.
struct Group<'a> {
    key: &'a ClientKey<'a>,
    members: &'a [usize],
    released: Option<&'a Footprint>,
}

fn client_of(
    group: Group<'_>,
    conns: &[Box<Observations>],
    verdicts: &[Verdict],
    opts: Options,
    in_flight: &InFlightPeaks,
    failovers: &[PrimaryChange],
) -> Client {
    let Group {
        key,
        members,
        released,
    } = group;
    let held: Vec<(&Observations, Class)> = members
        .iter()
        .map(|&i| (&*conns[i], verdicts[i].class))
        .collect();
    let mut footprint = Footprint::of(key, &held);
    if let Some(r) = released {
        footprint.merge(r);
    }
    let Footprint {
        counts,
        nodes,
        opened_before_capture,
        load_balanced,
        platform,
        env,
        announced,
        max_wire,
        peaks,
        closed_pool,
        connect_only_probes,
        checks_between_operations,
        processes,
        handshake_driver,
        ..
    } = footprint;
    let per_node_peak = |class: Class| -> BTreeMap<SocketAddr, u64> {
        nodes
            .iter()
            .map(|&node| (node, peaks.get(&(class, node)).copied().unwrap_or(0)))
            .collect()
    };
    let mode = if load_balanced {
        Mode::LoadBalanced
    } else if counts.streaming_monitor > 0 {
        Mode::Streaming
    } else if counts.polling_monitor > 0 {
        Mode::Polling
    } else if counts.single_threaded > 0 {
        Mode::SingleThreaded
    } else {
        Mode::Unknown
    };
    let polls_with_rtt = mode == Mode::Polling
        && counts.rtt_monitor > 0
        && key
            .driver()
            .is_some_and(|(name, version)| crate::classify::polls_with_rtt_monitor(name, version));
    // No monitors, every connection pool, and checks between operations on one of them:
    // a driver that checks its servers over its pool (classify: the Node.js driver 3.x
    // legacy topology from its handshake, or uneven links without monitors).
    let checks_over_pool = mode == Mode::Unknown
        && counts.pool > 0
        && counts.pool == counts.total
        && checks_between_operations;
    let legacy_node_topology = checks_over_pool
        && key.driver().is_some_and(|(name, version)| {
            crate::classify::may_use_legacy_node_topology(name, version)
        });
    let instance_class = match mode {
        Mode::Streaming => Some(Class::StreamingMonitor),
        Mode::Polling => Some(Class::PollingMonitor),
        Mode::SingleThreaded => Some(Class::SingleThreaded),
        _ => None,
    };
    let mongo_clients = instance_class
        .map(|c| per_node_peak(c).values().copied().max().unwrap_or(0))
        .unwrap_or(0)
        .max(1) as u32;
    // Nodes the client monitors (or, for single-threaded and LB, talks to).
    let monitored: BTreeSet<SocketAddr> = match instance_class {
        Some(class) => peaks
            .keys()
            .filter(|(c, _)| *c == class)
            .map(|&(_, node)| node)
            .collect(),
        None => nodes.clone(),
    };
    let node_count = monitored.len().max(1) as u64;
    let pool_peaks = per_node_peak(Class::Pool);
    let peak_pool_per_node: BTreeMap<String, u64> = pool_peaks
        .iter()
        .map(|(&n, &p)| (net::addr_text(n), p))
        .collect();

    // minPoolSize: given, or the smallest per-instance pool any monitored node keeps:
    // every node's pool is filled to minPoolSize, while load grows only the busy ones.
    let estimate = monitored
        .iter()
        .map(|n| pool_peaks.get(n).copied().unwrap_or(0) / mongo_clients as u64)
        .min()
        .unwrap_or(0) as u32;
    let (min_pool, source) = match opts.min_pool_size {
        Some(m) => (m, "given"),
        None => (estimate, "estimated"),
    };

    let mut deviations = Vec::new();
    let mut advice = Vec::new();
    let expected = match mode {
        Mode::Streaming | Mode::Polling | Mode::SingleThreaded | Mode::LoadBalanced => {
            let (per_node, formula_name) = match mode {
                Mode::Streaming => (min_pool as u64 + 2, "(minPoolSize + 2) x nodes"),
                // A driver that keeps an RTT connection beside each polling monitor
                // (classify::polls_with_rtt_monitor) holds two monitors per node.
                Mode::Polling if polls_with_rtt => {
                    (min_pool as u64 + 2, "(minPoolSize + 2) x nodes")
                }
                Mode::Polling => (min_pool as u64 + 1, "(minPoolSize + 1) x nodes"),
                Mode::SingleThreaded => (1, "1 x nodes"),
                _ => (min_pool as u64, "minPoolSize x load balancers"),
            };
            let total = per_node * node_count * mongo_clients as u64;
            let formula = if mongo_clients > 1 {
                format!("{formula_name} x MongoClients")
            } else {
                formula_name.to_string()
            };
            Some(Expected {
                formula,
                min_pool_size: (mode != Mode::SingleThreaded).then_some(min_pool),
                total,
                min_pool_size_source: source,
                per_node,
            })
        }
        Mode::Unknown => None,
    };
    let arithmetic = expected.as_ref().map(|e| {
        let nodes_word = if node_count == 1 { "node" } else { "nodes" };
        let instances = if mongo_clients > 1 {
            format!(" x {mongo_clients} MongoClients")
        } else {
            String::new()
        };
        match mode {
            Mode::Streaming => format!(
                "({min_pool} + 2) x {node_count} {nodes_word}{instances} = {}",
                e.total
            ),
            Mode::Polling => format!(
                "({min_pool} + {}) x {node_count} {nodes_word}{instances} = {}",
                e.per_node - min_pool as u64,
                e.total
            ),
            Mode::SingleThreaded => {
                format!("1 x {node_count} {nodes_word}{instances} = {}", e.total)
            }
            _ => format!(
                "{min_pool} x {node_count} load balancer{}{instances} = {}",
                if node_count == 1 { "" } else { "s" },
                e.total
            ),
        }
    });

    // In the nodes' order: also the report's node list.
    let node_texts: Vec<String> = nodes.iter().map(|&n| net::addr_text(n)).collect();
    let not_reached: Vec<String> = announced
        .iter()
        .filter(|h| !node_texts.iter().any(|r| same_host(r, h)))
        .map(|h| h.to_string())
        .collect();
    if expected.is_some() {
        // Explain each difference between what is open and what the formula says.
        if mongo_clients > 1 {
            // Without the handshake (keyless TLS, a cut capture) the driver is not known:
            // pairs of polling monitors may be one MongoClient of a Go driver 1.4 to 1.12,
            // which keeps an RTT connection beside each polling monitor.
            let or_go = if mode == Mode::Polling
                && mongo_clients % 2 == 0
                && key.driver_name.is_none()
            {
                let half = mongo_clients / 2;
                format!(", or {half} MongoClient{} of a driver that keeps an RTT connection beside each polling monitor (the Go driver 1.4 to 1.12 does; the handshake that names the driver is not in the capture)", if half == 1 { "" } else { "s" })
            } else {
                String::new()
            };
            if mode == Mode::SingleThreaded {
                // One host, one key: worker processes side by side look like one process
                // from the wire, and each single-threaded client is one per process.
                deviations.push(format!(
                    "{mongo_clients} single-threaded MongoClients, each with one connection to every node: {mongo_clients} processes side by side, as PHP-FPM or a pre-forking server runs its workers (each keeps its own client and connections), or one process holding {mongo_clients} clients, or hosts behind one NAT address (pods translated to their node's address)"
                ));
                advice.push(format!(
                    "connections follow the worker count: {node_count} per worker; size the workers (PHP-FPM pm.max_children) with the servers' connection limits in mind"
                ));
            } else {
                // The wire shows hosts, not processes: several worker processes (gunicorn,
                // uWSGI, Node.js cluster, Puma), each with its own client, look the same.
                deviations.push(format!(
                    "{mongo_clients} monitor sets per node: {mongo_clients} MongoClient instances under this host and key{or_go}, created by one process (a client per request or per task), or one each by worker processes side by side (gunicorn, uWSGI, Node.js cluster, Puma) or by hosts behind one NAT address (pods translated to their node's address)"
                ));
                advice.push(
                    "create one MongoClient per process, outside the request handler, and reuse it; with worker processes, each holds its own monitors and pool, so connections grow with the worker count"
                        .into(),
                );
            }
        }
        if mode == Mode::Polling {
            let why = if env.is_some() {
                format!(
                    "FaaS environment {}: drivers poll there",
                    env.as_deref().unwrap_or("")
                )
            } else if max_wire.is_some_and(|w| w < 9) {
                "the server is older than 4.4 and has no streaming protocol".into()
            } else {
                "the server supports streaming, so serverMonitoringMode=poll or a polling-only driver".into()
            };
            if polls_with_rtt {
                deviations.push(format!(
                    "the client polls ({why}), and its driver keeps an RTT connection to each node beside the polling monitor (mongo-go-driver 1.4 to 1.12 do; 1.13 and later do not): two monitoring connections per node"
                ));
            } else {
                deviations.push(format!("no RTT connections: the client polls ({why})"));
            }
        }
        for (node, peak) in &pool_peaks {
            let allowed = min_pool as u64 * mongo_clients as u64;
            if matches!(mode, Mode::Streaming | Mode::Polling | Mode::LoadBalanced)
                && *peak > allowed
            {
                let peak_busy = in_flight
                    .get(&(key.host, key.app_name.as_deref().map(str::to_string), *node))
                    .copied();
                let busy = peak_busy
                    .map(|n| {
                        format!(
                            ", with up to {n} operation{} in flight at once",
                            if n == 1 { "" } else { "s" }
                        )
                    })
                    .unwrap_or_default();
                let open = format!(
                    "{peak} pool connection{} open at once to {node}",
                    if *peak == 1 { "" } else { "s" }
                );
                let load_explains = peak_busy.is_none_or(|n| n as u64 > allowed);
                // More connections than operations ever in flight on the wire: requests
                // that queued while the first connections were still being established
                // each had the pool open another (CMAP's maxConnecting lets two at once).
                let queued = peak_busy.is_some_and(|n| (n as u64) < *peak);
                deviations.push(if min_pool == 0 {
                    format!(
                        "the pool opened connections on demand (minPoolSize 0): {open}{busy}{}",
                        if queued { " (requests that waited while connections were being established each had another opened)" } else { "" }
                    )
                } else if !load_explains {
                    format!(
                        "the pool holds more than minPoolSize {min_pool} though the load did not need it: {open}{busy} (connections opened while others were still being established, or kept after a burst)"
                    )
                } else {
                    format!(
                        "pool grew past minPoolSize under concurrency: {open} (minPoolSize {min_pool}{}){busy}",
                        if mongo_clients > 1 { format!(" x {mongo_clients}") } else { String::new() }
                    )
                });
            }
        }
        // libmongoc's minPoolSize (deprecated since 1.9) only caps the idle clients its
        // pool keeps; nothing is opened ahead of time (CDRIVER-2389, CDRIVER-4663).
        if matches!(mode, Mode::Streaming | Mode::Polling)
            && min_pool > 0
            && key
                .driver_name
                .as_deref()
                .is_some_and(crate::classify::is_libmongoc_based)
        {
            deviations.push(format!(
                "a libmongoc-based pool does not open minPoolSize connections ahead of time: its minPoolSize {min_pool} only caps the idle connections it keeps, so its pool follows concurrent use"
            ));
        } else if matches!(mode, Mode::Streaming | Mode::Polling) && min_pool > 0 {
            // Nodes whose pool never reached minPoolSize in the capture (only possible
            // with a given minPoolSize: an estimate is the smallest pool kept).
            let allowed = min_pool as u64 * mongo_clients as u64;
            let short: Vec<String> = monitored
                .iter()
                .filter_map(|n| {
                    let peak = pool_peaks.get(n).copied().unwrap_or(0);
                    (peak < allowed).then(|| format!("{n} ({peak})"))
                })
                .collect();
            if !short.is_empty() {
                deviations.push(format!(
                    "fewer pool connections than minPoolSize {min_pool}{} at any time to {}: the driver had not filled its pool yet (CMAP fills it in the background, from the first check), closed connections, or opens pool connections only when used (the Ruby driver 2.5 does)",
                    if mongo_clients > 1 { format!(" x {mongo_clients}") } else { String::new() },
                    short.join(", ")
                ));
            }
        }
        let pool_total = counts.pool;
        let pool_peak_sum: u64 = pool_peaks.values().sum();
        if pool_total > pool_peak_sum {
            deviations.push(format!(
                "pool churn: {pool_total} pool connections over the capture but at most {pool_peak_sum} open at once; {closed_pool} closed (maxIdleTimeMS, errors or pool clears)"
            ));
        }
        deviations.extend(restart_deviations(processes));
        deviations.extend(failover_deviation(failovers, &pool_peaks));
        let probes = connect_only_probes;
        if probes > 0 {
            deviations.push(format!(
                "{probes} connection{} opened and closed without a byte sent: connect-only probes (the Ruby driver 2.x's address resolver connects to each node once this way; TCP health checks look alike), counted in the total though they never carried MongoDB traffic",
                if probes == 1 { "" } else { "s" }
            ));
        }
        let unclassified = counts.unknown.saturating_sub(probes);
        if unclassified > 0 {
            deviations.push(format!(
                "{unclassified} connection{} could not be classified (see evidence)",
                if unclassified == 1 { "" } else { "s" }
            ));
        }
        if matches!(mode, Mode::Streaming | Mode::Polling) {
            for node in &nodes {
                let monitored = peaks.keys().any(|&(c, n)| n == *node && c.is_monitor());
                if !monitored {
                    deviations.push(format!("no monitoring connection to {node} in the capture"));
                }
            }
        }
        if !not_reached.is_empty() && mode != Mode::LoadBalanced {
            deviations.push(format!(
                "the replica set announces {} node{} this client has no connection to in the capture: {}",
                not_reached.len(),
                if not_reached.len() == 1 { "" } else { "s" },
                not_reached.join(", ")
            ));
        }
        if opened_before_capture > 0 {
            deviations.push(format!(
                "{opened_before_capture} connection{} opened before the capture began (no handshake seen)",
                if opened_before_capture == 1 { "" } else { "s" }
            ));
        }
        if source == "estimated"
            && monitored.len() == 1
            && matches!(mode, Mode::Streaming | Mode::Polling)
        {
            deviations.push("minPoolSize estimated from a single node, where pool growth and minPoolSize look alike: pass --min-pool-size or --uri for a firm check".into());
        }
    }
    let verdict = match (&expected, &arithmetic) {
        (Some(e), Some(arith)) => {
            let total = counts.total;
            let head = if total == e.total {
                format!("matches: {arith}")
            } else if total > e.total {
                format!("exceeds: {total} connections vs {arith}")
            } else {
                format!("below: {total} connections vs {arith}")
            };
            let explained: Vec<&String> = deviations
                .iter()
                .filter(|d| total != e.total || d.contains("MongoClient"))
                .collect();
            if explained.is_empty() {
                head
            } else {
                format!(
                    "{head}; {}",
                    explained.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; ")
                )
            }
        }
        _ if counts.total > 0 && counts.internal == counts.total => format!(
            "server-to-server: {} internal connection{} opened by a mongod/mongos (see the cluster section); no driver formula applies",
            counts.total,
            if counts.total == 1 { "" } else { "s" }
        ),
        _ if legacy_node_topology => format!(
            "unknown mode: the Node.js driver 3.x legacy topology (no useUnifiedTopology) has no monitoring connections, it checks each server over a connection of its pool between operations, so no SDAM formula applies; {} pool connection{} (useUnifiedTopology: true, or the driver 4.x, monitors on dedicated connections)",
            counts.total,
            if counts.total == 1 { "" } else { "s" }
        ),
        _ if checks_over_pool => format!(
            "unknown mode: no monitoring connections, the client checks its servers (hello) over its pool connections between operations, as mgo and the Node.js driver 3.x legacy topology do, so no SDAM formula applies; {} pool connection{}",
            counts.total,
            if counts.total == 1 { "" } else { "s" }
        ),
        _ => format!(
            "unknown mode: no monitoring connection and no single-threaded or load-balanced evidence among {} connection{}",
            counts.total,
            if counts.total == 1 { "" } else { "s" }
        ),
    };

    let projection = opts.instances.map(|n| {
        let per = counts.total;
        let total = per * n as u64;
        let per_node = total / (nodes.len().max(1) as u64);
        let over = opts.max_connections.map(|m| total > m);
        let summary = match opts.max_connections {
            Some(m) => format!(
                "{per} connections x {n} instances = {total} ({per_node} per node), {} the {m}-connection limit",
                if total > m { "over" } else { "within" }
            ),
            None => format!("{per} connections x {n} instances = {total} ({per_node} per node)"),
        };
        Projection {
            instances: n,
            connections_per_instance: per,
            total,
            per_node,
            max_connections: opts.max_connections,
            over_limit: over,
            summary,
        }
    });

    // Named as the pool connections name it, where the key dropped PyMongo's "async" part
    // (classify::ClientKey::of).
    let driver = key.driver_name.as_ref().map(|n| {
        let (name, version) = handshake_driver.unwrap_or_else(|| {
            (
                n.to_string(),
                key.driver_version
                    .as_deref()
                    .unwrap_or_default()
                    .to_string(),
            )
        });
        Driver { name, version }
    });
    Client {
        id: key.id(),
        host: key.host.to_string(),
        app_name: key.app_name.as_deref().map(str::to_string),
        driver,
        tls_fingerprint: key.tls_fingerprint.as_deref().map(str::to_string),
        mode,
        mongo_clients,
        nodes: node_texts,
        counts,
        expected,
        verdict,
        deviations,
        advice,
        platform,
        env,
        nodes_not_reached: not_reached,
        opened_before_capture,
        peak_pool_per_node,
        projection,
    }
}

/// `a` and `b` name the same endpoint ("localhost:27017" vs "127.0.0.1:27017" cannot be
/// resolved offline, so only exact host:port or default-port equivalence counts).
fn same_host(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        if s.contains(':') {
            s.to_string()
        } else {
            format!("{s}:27017")
        }
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests;
