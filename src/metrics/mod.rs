//! Live metrics for Prometheus (`conn-attrib live --prometheus ADDR`).
//!
//! The live loop already builds a report at every refresh; from it [`Tally::snapshot`]
//! makes a [`Snapshot`] of plain numbers, which is handed to the metrics server with one
//! pointer swap ([`server::Publisher`]). The server thread encodes the latest snapshot on
//! each scrape ([`encode`], Prometheus text format 0.0.4 through `prometheus-client`).
//! Nothing here runs on the packet path, and a slow scraper never holds up capture.
//!
//! Series and their labels (names are stable; values are empty when unknown):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `conn_attrib_connections` | gauge: open now | `client`, `app`, `driver`, `class`, `node` |
//! | `conn_attrib_connections_opened_total` | counter: SYN seen | `client`, `app`, `driver`, `node` |
//! | `conn_attrib_connections_closed_total` | counter: FIN/RST seen | `client`, `app`, `driver`, `class`, `node` |
//! | `conn_attrib_mongo_clients` | gauge | `client`, `app`, `driver` |
//! | `conn_attrib_heartbeat_interval_seconds` | histogram | `node` |
//! | `conn_attrib_hello_round_trip_seconds` | histogram | `node` |
//! | `conn_attrib_operation_latency_seconds` | histogram | `node` |
//! | `conn_attrib_pcap_{received,dropped,interface_dropped}_packets_total` | counter | `interface` |
//! | `conn_attrib_captured_{packets,bytes}_total` | counter | `interface` |
//! | `conn_attrib_snapshot_timestamp_seconds` | gauge | – |

pub mod server;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, DescriptorEncoder, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::attribute::Client;
use crate::capture::live::PcapCounters;
use crate::observe::NodeStats;
#[cfg(test)]
use crate::report::Redactor;
use crate::report::{driver_label, Report};

/// Who and where: the labels every connection series has.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnKey {
    /// The client host's address (`host-N` with `--redact`).
    pub client: String,
    /// The handshake's appName.
    pub app: String,
    /// Driver name and version from the handshake.
    pub driver: String,
    /// The server endpoint, `host:port`.
    pub node: String,
}

/// [`ConnKey`] with the connection's class.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClassKey {
    pub conn: ConnKey,
    pub class: &'static str,
}

/// A Prometheus histogram: per-bucket (not cumulative) counts by upper bound, in seconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

/// The three timing histograms of one server node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeTimings {
    pub heartbeat: Histogram,
    pub hello_rtt: Histogram,
    pub op_latency: Histogram,
}

/// libpcap's and the reader's counters, cumulative since capture started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CaptureCounters {
    pub interface: String,
    pub packets: u64,
    pub bytes: u64,
    /// `None` when libpcap cannot tell: the series are left out rather than made up.
    pub pcap: Option<PcapCounters>,
}

/// Everything one scrape shows, as plain numbers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub open: BTreeMap<ClassKey, u64>,
    pub opened: BTreeMap<ConnKey, u64>,
    pub closed: BTreeMap<ClassKey, u64>,
    /// MongoClient instances inferred per client (`node` is empty).
    pub mongo_clients: BTreeMap<ConnKey, u64>,
    /// Per node label.
    pub nodes: BTreeMap<String, NodeTimings>,
    pub capture: CaptureCounters,
    /// Unix time the snapshot was taken.
    pub taken_at: f64,
}

impl Snapshot {
    /// What a scrape shows before the first refresh: the capture counters alone.
    pub fn started(capture: CaptureCounters) -> Snapshot {
        Snapshot {
            capture,
            taken_at: unix_now(),
            ..Snapshot::default()
        }
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Upper bounds (seconds) of the heartbeat-interval buckets: drivers' heartbeatFrequencyMS
/// is 10 s by default, 500 ms at least, often set to 1–5 s.
const HEARTBEAT_BOUNDS: [f64; 11] = [
    0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0,
];
/// Upper bounds (seconds) of the round-trip and latency buckets: 100 µs on loopback to
/// seconds across regions.
const LATENCY_BOUNDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// An hdrhistogram recorded in `per_second` units as Prometheus buckets. The counts are
/// the hdrhistogram's, which keeps 2 significant digits: a value within 1% of a bound may
/// be counted on either side of it; the sum is its mean times its count.
fn buckets(h: &hdrhistogram::Histogram<u64>, per_second: f64, bounds: &[f64]) -> Histogram {
    let mut out = Histogram {
        buckets: Vec::with_capacity(bounds.len()),
        count: h.len(),
        sum: if h.is_empty() {
            0.0
        } else {
            h.mean() * h.len() as f64 / per_second
        },
    };
    let mut below = 0;
    for &bound in bounds {
        let upto = if h.is_empty() {
            0
        } else {
            h.count_between(0, (bound * per_second) as u64)
        };
        // Never decreasing, never past the total, whatever the rounding of equivalent ranges.
        let upto = upto.clamp(below, out.count);
        out.buckets.push((bound, upto - below));
        below = upto;
    }
    out
}

/// The node histograms of an analysis as Prometheus histograms, by server endpoint.
pub fn node_timings(nodes: &NodeStats) -> Vec<(SocketAddr, NodeTimings)> {
    nodes
        .all_histograms()
        .map(|(addr, h)| {
            let timings = NodeTimings {
                heartbeat: buckets(&h.heartbeat_ms, 1e3, &HEARTBEAT_BOUNDS),
                hello_rtt: buckets(&h.hello_rtt_us, 1e6, &LATENCY_BOUNDS),
                op_latency: buckets(&h.op_latency_us, 1e6, &LATENCY_BOUNDS),
            };
            (*addr, timings)
        })
        .collect()
}

/// Counts opens and closes across refreshes so the counters only ever grow: each
/// connection is counted once when a snapshot first shows its SYN, once when one first
/// shows its FIN/RST, under the labels it had then. It remembers the ids of the
/// connections the analyzer still holds, and forgets them when live mode releases them,
/// so its memory follows the analyzer's.
#[derive(Debug, Default)]
pub struct Tally {
    counted_open: HashSet<u64>,
    counted_close: HashSet<u64>,
    opened: BTreeMap<ConnKey, u64>,
    closed: BTreeMap<ClassKey, u64>,
}

impl Tally {
    /// The snapshot of `report` (already redacted when labels must be), counting the
    /// opens and closes it shows for the first time. `nodes` are the node timings under
    /// the labels the report uses for nodes.
    pub fn snapshot(
        &mut self,
        report: &Report,
        nodes: Vec<(String, NodeTimings)>,
        capture: CaptureCounters,
    ) -> Snapshot {
        let clients: HashMap<&str, &Client> = report
            .attribution
            .clients
            .iter()
            .map(|c| (c.id.as_str(), c))
            .collect();
        let mut snap = Snapshot {
            nodes: nodes.into_iter().collect(),
            capture,
            taken_at: unix_now(),
            ..Snapshot::default()
        };
        for c in &report.attribution.connections {
            let client = clients.get(c.client_id.as_str());
            let conn = ConnKey {
                client: client.map_or_else(|| report.endpoint(c.obs.client), |k| k.host.clone()),
                app: client.and_then(|k| k.app_name.clone()).unwrap_or_default(),
                driver: client.map(|k| label_of_driver(k)).unwrap_or_default(),
                node: report.endpoint(c.obs.server),
            };
            let id = c.obs.id;
            if c.obs.opened.is_some() && self.counted_open.insert(id) {
                *self.opened.entry(conn.clone()).or_default() += 1;
            }
            let key = ClassKey {
                conn,
                class: c.verdict.class.name(),
            };
            if c.obs.closed.is_some() {
                if self.counted_close.insert(id) {
                    *self.closed.entry(key).or_default() += 1;
                }
            } else {
                *snap.open.entry(key).or_default() += 1;
            }
        }
        for c in &report.attribution.clients {
            let key = ConnKey {
                client: c.host.clone(),
                app: c.app_name.clone().unwrap_or_default(),
                driver: label_of_driver(c),
                node: String::new(),
            };
            *snap.mongo_clients.entry(key).or_default() += u64::from(c.mongo_clients);
        }
        snap.opened = self.opened.clone();
        snap.closed = self.closed.clone();
        snap
    }

    /// The analyzer released these connections: no snapshot will show them again.
    pub fn forget(&mut self, ids: &HashSet<u64>) {
        self.counted_open.retain(|id| !ids.contains(id));
        self.counted_close.retain(|id| !ids.contains(id));
    }
}

/// The driver as reports print it, empty when the handshake was not seen.
fn label_of_driver(c: &Client) -> String {
    match c.driver {
        Some(_) => driver_label(c),
        None => String::new(),
    }
}

/// The latest snapshot as a `prometheus-client` collector.
#[derive(Debug)]
struct SnapshotCollector(Arc<Snapshot>);

fn conn_labels(k: &ConnKey) -> [(&'static str, &str); 4] {
    [
        ("client", &k.client),
        ("app", &k.app),
        ("driver", &k.driver),
        ("node", &k.node),
    ]
}

fn class_labels(k: &ClassKey) -> [(&'static str, &str); 5] {
    [
        ("client", &k.conn.client),
        ("app", &k.conn.app),
        ("driver", &k.conn.driver),
        ("class", k.class),
        ("node", &k.conn.node),
    ]
}

/// One family of counters or gauges: its descriptor, then a sample per label set.
fn family<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    series: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, n) in series {
        let sample = family.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(n).encode(sample)?,
            _ => ConstGauge::new(n as i64).encode(sample)?,
        }
    }
    Ok(())
}

impl SnapshotCollector {
    fn families(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &*self.0;
        family(
            encoder,
            "conn_attrib_connections",
            "MongoDB client connections open now (not seen to close), by client host, appName, driver, class and server node.",
            MetricType::Gauge,
            s.open.iter().map(|(k, n)| (class_labels(k), *n)),
        )?;
        family(
            encoder,
            "conn_attrib_connections_opened",
            "Connections whose SYN was captured, by client host, appName, driver and server node (labels as first seen).",
            MetricType::Counter,
            s.opened.iter().map(|(k, n)| (conn_labels(k), *n)),
        )?;
        family(
            encoder,
            "conn_attrib_connections_closed",
            "Connections whose FIN or RST was captured, by client host, appName, driver, class at close and server node.",
            MetricType::Counter,
            s.closed.iter().map(|(k, n)| (class_labels(k), *n)),
        )?;
        family(
            encoder,
            "conn_attrib_mongo_clients",
            "MongoClient instances inferred per client (monitor sets per node).",
            MetricType::Gauge,
            s.mongo_clients.iter().map(|(k, n)| {
                let labels = [
                    ("client", k.client.as_str()),
                    ("app", &k.app),
                    ("driver", &k.driver),
                ];
                (labels, *n)
            }),
        )?;
        type Pick = fn(&NodeTimings) -> &Histogram;
        let timings: [(&str, &str, Pick); 3] = [
            (
                "conn_attrib_heartbeat_interval_seconds",
                "Seconds between consecutive hello replies on a connection (monitor heartbeats), per server node.",
                |t| &t.heartbeat,
            ),
            (
                "conn_attrib_hello_round_trip_seconds",
                "Round trip of non-awaitable hellos (RTT and polling monitors, handshakes), per server node.",
                |t| &t.hello_rtt,
            ),
            (
                "conn_attrib_operation_latency_seconds",
                "Round trip of operations (requests other than hello and authentication), per server node.",
                |t| &t.op_latency,
            ),
        ];
        for (name, help, pick) in timings {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (node, t) in &s.nodes {
                let h = pick(t);
                family
                    .encode_family(&[("node", node.as_str())])?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    h.sum, h.count, &h.buckets, None,
                )?;
            }
        }
        Ok(())
    }

    fn capture(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let c = &self.0.capture;
        let labels = [("interface", c.interface.as_str())];
        let counters = [
            (
                "conn_attrib_pcap_received_packets",
                "Packets libpcap received (pcap_stats ps_recv).",
                c.pcap.map(|p| p.received),
            ),
            (
                "conn_attrib_pcap_dropped_packets",
                "Packets dropped because libpcap's buffer was full (pcap_stats ps_drop).",
                c.pcap.map(|p| p.dropped),
            ),
            (
                "conn_attrib_pcap_interface_dropped_packets",
                "Packets the interface or its driver dropped (pcap_stats ps_ifdrop).",
                c.pcap.map(|p| p.if_dropped),
            ),
            (
                "conn_attrib_captured_packets",
                "Packets read and analysed.",
                Some(c.packets),
            ),
            (
                "conn_attrib_captured_bytes",
                "Bytes of the packets read (as captured, with a 16-byte record header each).",
                Some(c.bytes),
            ),
        ];
        for (name, help, value) in counters {
            if value.is_some() {
                family(
                    encoder,
                    name,
                    help,
                    MetricType::Counter,
                    value.map(|v| (labels, v)),
                )?;
            }
        }
        let family = encoder.encode_descriptor(
            "conn_attrib_snapshot_timestamp_seconds",
            "When these numbers were taken (Unix time): they are refreshed every --refresh seconds.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.0.taken_at).encode(family)
    }
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.families(&mut encoder)?;
        self.capture(&mut encoder)
    }
}

/// The snapshot in the Prometheus text exposition format (version 0.0.4).
pub fn encode(snapshot: Arc<Snapshot>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(snapshot)));
    let mut out = String::new();
    // Writing into a String cannot fail, and the collector only fails when writing does.
    let _ = prometheus_text::encode(&mut out, &registry);
    out
}

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests;
