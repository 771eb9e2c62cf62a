//! What a client's verdict reads from its connections, in a form that folds: a client's
//! connections released during a long capture ([`super::Released`]) and those still held
//! at the end each give a [`Footprint`], and the merged footprint is what the verdict is
//! built from. Without it a client whose older connections were released lost its
//! monitored nodes, pool peaks and MongoClient estimate.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::Counts;
use crate::classify::{self, peak_overlap, Class, ClientKey};
use crate::observe::Observations;

/// A small map kept as a sorted vector. A client's footprint holds a handful of entries
/// per map, and a long capture keeps one footprint per released client: a `BTreeMap`'s
/// first node (eleven slots) is several times what these need.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct SmallMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        SmallMap(Vec::new())
    }
}

impl<K: Ord, V> SmallMap<K, V> {
    pub fn get(&self, key: &K) -> Option<&V> {
        let at = self.0.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
        Some(&self.0[at].1)
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn iter(&self) -> impl Iterator<Item = &(K, V)> {
        self.0.iter()
    }

    /// Insert `value`, or fold it into the value already there.
    fn upsert(&mut self, key: K, value: V, fold: impl FnOnce(&mut V, V)) {
        match self.0.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(at) => fold(&mut self.0[at].1, value),
            Err(at) => self.0.insert(at, (key, value)),
        }
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for SmallMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut entries: Vec<(K, V)> = entries.into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|a, b| a.0 == b.0);
        SmallMap(entries)
    }
}

/// The processes each node answered with: (node, processId) → what heard it.
pub(super) type Processes = SmallMap<(SocketAddr, [u8; 12]), Heard>;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Heard {
    /// The first packet of the first connection that heard it.
    pub first: f64,
    /// Until when a connection that heard it was open (infinite: to the end).
    pub until: f64,
    pub connections: u64,
}

fn hear(processes: &mut Processes, at: (SocketAddr, [u8; 12]), heard: Heard) {
    processes.upsert(at, heard, |known, heard| {
        known.first = known.first.min(heard.first);
        known.until = known.until.max(heard.until);
        known.connections += heard.connections;
    });
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Footprint {
    pub counts: Counts,
    pub nodes: BTreeSet<SocketAddr>,
    pub opened_before_capture: u64,
    pub load_balanced: bool,
    pub platform: Option<String>,
    pub env: Option<String>,
    /// Hosts the servers announced (hello `hosts` and `passives`).
    pub announced: BTreeSet<String>,
    pub max_wire: Option<i32>,
    /// Most connections of a class open at once to a node; an entry for every (class,
    /// node) the client had a connection of.
    pub peaks: SmallMap<(Class, SocketAddr), u64>,
    /// Pool connections seen closed.
    pub closed_pool: u64,
    /// Unclassified connections that never carried a byte.
    pub connect_only_probes: u64,
    /// Some connection checked its server (hello) between operations.
    pub checks_between_operations: bool,
    pub processes: Processes,
    /// The driver as a connection's handshake names it, where the key dropped a part of
    /// it (PyMongo's "async").
    pub handshake_driver: Option<(String, String)>,
    /// The heartbeat its RTT or polling monitors kept (median of a monitor's plain hello
    /// intervals): the yardstick for its idle connections once the monitors are released.
    pub heartbeat: Option<f64>,
}

impl Footprint {
    /// The footprint of `conns`, one client's, with their classes; peaks over them alone.
    pub fn of(key: &ClientKey, conns: &[(&Observations, Class)]) -> Self {
        Footprint {
            peaks: peaks_of(conns),
            ..Footprint::tally(key, conns)
        }
    }

    /// [`Footprint::of`] without the peaks, for a caller that takes them over more
    /// connections than it tallies (a fold).
    pub fn tally(key: &ClientKey, conns: &[(&Observations, Class)]) -> Self {
        let mut footprint = Footprint::default();
        for &(obs, class) in conns {
            footprint.add(key, obs, class);
        }
        footprint
    }

    fn add(&mut self, key: &ClientKey, obs: &Observations, class: Class) {
        self.counts.add(class);
        self.nodes.insert(obs.server);
        if !obs.syn_seen {
            self.opened_before_capture += 1;
        }
        if class == Class::Pool && obs.closed.is_some() {
            self.closed_pool += 1;
        }
        if class == Class::Unknown && classify::is_connect_only_probe(obs) {
            self.connect_only_probes += 1;
        }
        self.checks_between_operations |= classify::checks_between_operations(obs);
        if matches!(class, Class::RttMonitor | Class::PollingMonitor) && self.heartbeat.is_none() {
            self.heartbeat = obs.hello.request_intervals.median();
        }
        if let Some(h) = &obs.handshake {
            self.load_balanced |= h.load_balanced;
            if self.platform.is_none() {
                self.platform.clone_from(&h.platform);
            }
            if self.env.is_none() {
                self.env.clone_from(&h.env_name);
            }
            if self.handshake_driver.is_none() {
                if let Some(name) = h.driver_name.as_deref() {
                    if Some(name) != key.driver_name.as_deref() {
                        let version = h.driver_version.clone().unwrap_or_default();
                        self.handshake_driver = Some((name.to_string(), version));
                    }
                }
            }
        }
        if let Some(s) = &obs.server_info {
            // Each connection repeats its replica set's whole host list: copied once.
            for host in s.hosts.iter().chain(&s.passives) {
                if !self.announced.contains(host) {
                    self.announced.insert(host.clone());
                }
            }
            if s.max_wire_version.is_some() {
                self.max_wire = self.max_wire.max(s.max_wire_version);
            }
            if let Some(pid) = s.process_id {
                let heard = Heard {
                    first: obs.first_seen,
                    until: obs.span().1.unwrap_or(f64::INFINITY),
                    connections: 1,
                };
                hear(&mut self.processes, (obs.server, pid), heard);
            }
        }
    }

    /// Add `other`, another part of the same client's connections. Peaks take the larger:
    /// each part's peaks are exact over the times its connections cover (see
    /// [`super::Released`]), and no part's exceed the whole's.
    pub fn merge(&mut self, other: &Footprint) {
        self.counts.merge(&other.counts);
        self.nodes.extend(other.nodes.iter().copied());
        self.opened_before_capture += other.opened_before_capture;
        self.load_balanced |= other.load_balanced;
        if self.platform.is_none() {
            self.platform.clone_from(&other.platform);
        }
        if self.env.is_none() {
            self.env.clone_from(&other.env);
        }
        self.announced.extend(other.announced.iter().cloned());
        self.max_wire = self.max_wire.max(other.max_wire);
        for &(at, peak) in other.peaks.iter() {
            self.peaks
                .upsert(at, peak, |mine, peak| *mine = (*mine).max(peak));
        }
        self.closed_pool += other.closed_pool;
        self.connect_only_probes += other.connect_only_probes;
        self.checks_between_operations |= other.checks_between_operations;
        for &(at, heard) in other.processes.iter() {
            hear(&mut self.processes, at, heard);
        }
        if self.handshake_driver.is_none() {
            self.handshake_driver.clone_from(&other.handshake_driver);
        }
        self.heartbeat = self.heartbeat.or(other.heartbeat);
    }
}

/// Most connections of each class open at once to each node, among `conns`.
pub(super) fn peaks_of(conns: &[(&Observations, Class)]) -> SmallMap<(Class, SocketAddr), u64> {
    type Span = (f64, Option<f64>);
    let mut spans: BTreeMap<(Class, SocketAddr), Vec<Span>> = BTreeMap::new();
    for &(obs, class) in conns {
        spans
            .entry((class, obs.server))
            .or_default()
            .push(obs.span());
    }
    spans
        .into_iter()
        .map(|(at, spans)| (at, peak_overlap(spans.into_iter())))
        .collect()
}
