//! `conn-attrib merge`: many `conn-attrib/1` reports (one per app host, or per time
//! window) → one fleet report, `conn-attrib-fleet/1`: per application across its hosts,
//! per cluster node against the connection limit, and a projection to N instances.
//!
//! Inputs are read into typed mirrors of the contract holding only the fields used here;
//! unknown fields are ignored, so reports with additions merge. Counting rules:
//!
//! * A client (the contract's `host|appName|driver` id) seen in several reports — the same
//!   host captured in several windows, or on both ends — is counted once, from the report
//!   where it held the most connections: windows of one host do not add up.
//! * Different clients add up, per class and per node (from `connections[].server`).
//! * An application's instances are its clients; the projection scales every application
//!   to N instances of its largest observed instance, per node.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::markdown::md_table;
use super::text::table;
use super::SCHEMA;
use crate::attribute::Counts;

pub const FLEET_SCHEMA: &str = "conn-attrib-fleet/1";

/// Only the schema, read first so a report of another version is refused by name rather
/// than by whichever of its fields fails to parse.
#[derive(Deserialize)]
struct SchemaProbe {
    schema: Option<serde_json::Value>,
}

/// A `conn-attrib/1` report, the fields the merge uses.
#[derive(Clone, Debug, Deserialize)]
pub struct ReportIn {
    pub schema: String,
    pub input: InputIn,
    #[serde(default)]
    pub warnings: Vec<serde_json::Value>,
    pub connections: Vec<ConnectionIn>,
    pub clients: Vec<ClientIn>,
    /// Addition: pseudonyms differ from one redacted report to the next.
    #[serde(default)]
    pub redacted: bool,
}

#[derive(Clone, Debug, Deserialize)]
pub struct InputIn {
    pub path: String,
    pub first_ts: Option<f64>,
    pub last_ts: Option<f64>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ConnectionIn {
    pub server: String,
    pub class: String,
    pub client_id: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct DriverIn {
    pub name: String,
    pub version: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ExpectedIn {
    pub total: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ClientIn {
    pub id: String,
    pub host: String,
    pub app_name: Option<String>,
    pub driver: Option<DriverIn>,
    pub mode: String,
    pub mongo_clients: u32,
    pub counts: Counts,
    pub expected: Option<ExpectedIn>,
    pub verdict: String,
}

/// Read one report; every refusal is one line naming the file.
pub fn load(path: &str) -> Result<ReportIn, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let probe: SchemaProbe =
        serde_json::from_slice(&bytes).map_err(|e| format!("{path}: not a JSON report ({e})"))?;
    match probe.schema {
        Some(serde_json::Value::String(s)) if s == SCHEMA => {}
        Some(other) => {
            return Err(format!(
                "{path}: schema {other} is not {SCHEMA}; only {SCHEMA} reports can be merged"
            ))
        }
        None => {
            return Err(format!(
                "{path}: no \"schema\" field; not a {SCHEMA} report"
            ))
        }
    }
    let report: ReportIn = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{path}: does not follow {SCHEMA}: {e}"))?;
    if report.redacted {
        return Err(format!(
            "{path}: a redacted report cannot be merged (its host-N pseudonyms do not match other reports'); merge the unredacted reports"
        ));
    }
    Ok(report)
}

#[derive(Clone, Copy, Debug, Default)]
pub struct MergeOptions {
    pub instances: Option<u32>,
    pub max_connections: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FleetInput {
    /// The report file.
    pub file: String,
    /// The capture the report was made from.
    pub capture: String,
    pub first_ts: Option<f64>,
    pub last_ts: Option<f64>,
    pub connections: usize,
    pub clients: usize,
    pub warnings: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct FleetClient {
    pub id: String,
    pub host: String,
    pub app_name: Option<String>,
    pub driver: Option<String>,
    pub mode: String,
    pub mongo_clients: u32,
    pub counts: Counts,
    pub expected: Option<u64>,
    pub verdict: String,
    /// Index into `inputs` of the report counted for this client.
    pub input: usize,
    /// How many reports held this client.
    pub seen_in: usize,
    pub per_node: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AppProjection {
    pub instances: u32,
    /// Connections of the largest observed instance.
    pub per_instance: u64,
    pub total: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Application {
    /// The appName, or null for clients that sent none.
    pub app_name: Option<String>,
    pub drivers: Vec<String>,
    pub hosts: Vec<String>,
    /// Clients of this application (host, driver): its instances.
    pub instances: usize,
    pub mongo_clients: u64,
    pub counts: Counts,
    /// Sum of the clients' formula totals, when every client has one.
    pub expected: Option<u64>,
    /// Most connections one instance holds.
    pub per_instance_max: u64,
    pub per_node: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projection: Option<AppProjection>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FleetNode {
    pub node: String,
    pub counts: Counts,
    pub clients: usize,
    pub applications: Vec<String>,
    pub max_connections: Option<u64>,
    /// total / max_connections.
    pub share_of_limit: Option<f64>,
    pub over_limit: Option<bool>,
    /// With `--instances N`: every application at N instances of its largest instance.
    pub projected: Option<u64>,
    pub projected_over_limit: Option<bool>,
}

/// The fleet report, `conn-attrib-fleet/1`.
#[derive(Clone, Debug, Serialize)]
pub struct Fleet {
    pub schema: &'static str,
    pub inputs: Vec<FleetInput>,
    pub instances: Option<u32>,
    pub max_connections: Option<u64>,
    pub counts: Counts,
    pub applications: Vec<Application>,
    pub nodes: Vec<FleetNode>,
    pub clients: Vec<FleetClient>,
    /// Sentences about how the inputs were combined.
    pub notes: Vec<String>,
}

fn add_class(counts: &mut Counts, class: &str) {
    let slot = match class {
        "streaming-monitor" => &mut counts.streaming_monitor,
        "rtt-monitor" => &mut counts.rtt_monitor,
        "polling-monitor" => &mut counts.polling_monitor,
        "pool" => &mut counts.pool,
        "single-threaded" => &mut counts.single_threaded,
        "internal" => &mut counts.internal,
        _ => &mut counts.unknown,
    };
    *slot += 1;
    counts.total += 1;
}

fn add_counts(sum: &mut Counts, c: &Counts) {
    sum.streaming_monitor += c.streaming_monitor;
    sum.rtt_monitor += c.rtt_monitor;
    sum.polling_monitor += c.polling_monitor;
    sum.pool += c.pool;
    sum.single_threaded += c.single_threaded;
    sum.internal += c.internal;
    sum.unknown += c.unknown;
    sum.total += c.total;
}

const NO_APP: &str = "(no appName)";

/// Combine `(file, report)` pairs into one fleet report.
pub fn merge(reports: &[(String, ReportIn)], opts: MergeOptions) -> Fleet {
    let inputs: Vec<FleetInput> = reports
        .iter()
        .map(|(file, r)| FleetInput {
            file: file.clone(),
            capture: r.input.path.clone(),
            first_ts: r.input.first_ts,
            last_ts: r.input.last_ts,
            connections: r.connections.len(),
            clients: r.clients.len(),
            warnings: r.warnings.len(),
        })
        .collect();

    // Each client once, from the report where it held the most connections.
    let mut chosen: BTreeMap<&str, (usize, &ClientIn, usize)> = BTreeMap::new();
    for (i, (_, r)) in reports.iter().enumerate() {
        for c in &r.clients {
            chosen
                .entry(&c.id)
                .and_modify(|(at, best, seen)| {
                    *seen += 1;
                    if c.counts.total > best.counts.total {
                        (*at, *best) = (i, c);
                    }
                })
                .or_insert((i, c, 1));
        }
    }
    let mut notes = Vec::new();
    let clients: Vec<FleetClient> = chosen
        .into_iter()
        .map(|(id, (at, c, seen_in))| {
            let mut per_node: BTreeMap<String, Counts> = BTreeMap::new();
            for conn in reports[at]
                .1
                .connections
                .iter()
                .filter(|x| x.client_id == id)
            {
                add_class(
                    per_node.entry(conn.server.clone()).or_default(),
                    &conn.class,
                );
            }
            if seen_in > 1 {
                notes.push(format!(
                    "client {id} is in {seen_in} reports: counted once, from {} ({} connections)",
                    reports[at].0, c.counts.total
                ));
            }
            FleetClient {
                id: id.to_string(),
                host: c.host.clone(),
                app_name: c.app_name.clone(),
                driver: c
                    .driver
                    .as_ref()
                    .map(|d| format!("{} {}", d.name, d.version).trim().to_string()),
                mode: c.mode.clone(),
                mongo_clients: c.mongo_clients,
                counts: c.counts.clone(),
                expected: c.expected.as_ref().map(|e| e.total),
                verdict: c.verdict.clone(),
                input: at,
                seen_in,
                per_node: per_node.into_iter().map(|(n, c)| (n, c.total)).collect(),
            }
        })
        .collect();

    let mut apps: BTreeMap<Option<&str>, Vec<&FleetClient>> = BTreeMap::new();
    for c in &clients {
        apps.entry(c.app_name.as_deref()).or_default().push(c);
    }
    let applications: Vec<Application> = apps
        .into_iter()
        .map(|(app, members)| {
            let mut counts = Counts::default();
            let mut per_node: BTreeMap<String, u64> = BTreeMap::new();
            for c in &members {
                add_counts(&mut counts, &c.counts);
                for (n, k) in &c.per_node {
                    *per_node.entry(n.clone()).or_default() += k;
                }
            }
            let per_instance_max = members.iter().map(|c| c.counts.total).max().unwrap_or(0);
            Application {
                app_name: app.map(str::to_string),
                drivers: members
                    .iter()
                    .filter_map(|c| c.driver.clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                hosts: members
                    .iter()
                    .map(|c| c.host.clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                instances: members.len(),
                mongo_clients: members.iter().map(|c| c.mongo_clients as u64).sum(),
                counts,
                expected: members.iter().map(|c| c.expected).sum(),
                per_instance_max,
                per_node,
                projection: opts.instances.map(|n| AppProjection {
                    instances: n,
                    per_instance: per_instance_max,
                    total: per_instance_max * n as u64,
                }),
            }
        })
        .collect();

    let mut node_counts: BTreeMap<&str, (Counts, BTreeSet<&str>, BTreeSet<&str>)> = BTreeMap::new();
    for c in &clients {
        let r = &reports[c.input].1;
        for conn in r.connections.iter().filter(|x| x.client_id == c.id) {
            let entry = node_counts.entry(&conn.server).or_default();
            add_class(&mut entry.0, &conn.class);
            entry.1.insert(&c.id);
            entry.2.insert(c.app_name.as_deref().unwrap_or(NO_APP));
        }
    }
    let nodes: Vec<FleetNode> = node_counts
        .into_iter()
        .map(|(node, (counts, clients_here, apps_here))| {
            // Every application at N instances, each as large as its largest instance
            // is on this node.
            let projected = opts.instances.map(|n| {
                applications
                    .iter()
                    .map(|a| {
                        let largest = clients
                            .iter()
                            .filter(|c| c.app_name == a.app_name)
                            .map(|c| c.per_node.get(node).copied().unwrap_or(0))
                            .max()
                            .unwrap_or(0);
                        largest * n as u64
                    })
                    .sum::<u64>()
            });
            let max = opts.max_connections;
            FleetNode {
                node: node.to_string(),
                clients: clients_here.len(),
                applications: apps_here.into_iter().map(str::to_string).collect(),
                max_connections: max,
                share_of_limit: max
                    .filter(|&m| m > 0)
                    .map(|m| counts.total as f64 / m as f64),
                over_limit: max.map(|m| counts.total > m),
                projected,
                projected_over_limit: max.zip(projected).map(|(m, p)| p > m),
                counts,
            }
        })
        .collect();
    let mut counts = Counts::default();
    for n in &nodes {
        add_counts(&mut counts, &n.counts);
    }
    Fleet {
        schema: FLEET_SCHEMA,
        inputs,
        instances: opts.instances,
        max_connections: opts.max_connections,
        counts,
        applications,
        nodes,
        clients,
        notes,
    }
}

fn or_dash(v: Option<impl ToString>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn class_cells(c: &Counts) -> Vec<String> {
    [
        c.streaming_monitor,
        c.rtt_monitor,
        c.polling_monitor,
        c.pool,
        c.single_threaded,
        c.internal,
        c.unknown,
        c.total,
    ]
    .iter()
    .map(u64::to_string)
    .collect()
}

const CLASS_HEADER: [&str; 8] = [
    "stream", "rtt", "poll", "pool", "single", "internal", "unknown", "total",
];

impl Fleet {
    fn application_rows(&self) -> (Vec<&'static str>, Vec<Vec<String>>) {
        let mut header = vec!["app", "instances", "hosts", "drivers", "MongoClients"];
        header.extend(CLASS_HEADER);
        header.extend(["expected", "largest instance"]);
        if self.instances.is_some() {
            header.push("projected");
        }
        let rows = self
            .applications
            .iter()
            .map(|a| {
                let mut row = vec![
                    a.app_name.clone().unwrap_or_else(|| NO_APP.into()),
                    a.instances.to_string(),
                    a.hosts.join(", "),
                    a.drivers.join(", "),
                    a.mongo_clients.to_string(),
                ];
                row.extend(class_cells(&a.counts));
                row.push(or_dash(a.expected));
                row.push(a.per_instance_max.to_string());
                if let Some(p) = &a.projection {
                    row.push(format!(
                        "{} x {} = {}",
                        p.per_instance, p.instances, p.total
                    ));
                }
                row
            })
            .collect();
        (header, rows)
    }

    fn node_rows(&self) -> (Vec<&'static str>, Vec<Vec<String>>) {
        let mut header = vec!["node", "clients", "apps"];
        header.extend(CLASS_HEADER);
        header.push("limit");
        if self.instances.is_some() {
            header.push("projected");
        }
        let rows = self
            .nodes
            .iter()
            .map(|n| {
                let mut row = vec![
                    n.node.clone(),
                    n.clients.to_string(),
                    n.applications.len().to_string(),
                ];
                row.extend(class_cells(&n.counts));
                row.push(match (n.max_connections, n.share_of_limit) {
                    (Some(m), Some(s)) => format!(
                        "{:.0}% of {m}{}",
                        s * 100.0,
                        if n.over_limit == Some(true) {
                            " OVER"
                        } else {
                            ""
                        }
                    ),
                    _ => "-".into(),
                });
                if let Some(p) = n.projected {
                    row.push(format!(
                        "{p}{}",
                        match n.projected_over_limit {
                            Some(true) => " OVER the limit",
                            Some(false) => " within the limit",
                            None => "",
                        }
                    ));
                }
                row
            })
            .collect();
        (header, rows)
    }

    fn summary(&self) -> String {
        let windows = self
            .inputs
            .iter()
            .filter_map(|i| i.first_ts.zip(i.last_ts))
            .fold(None, |acc: Option<(f64, f64)>, (a, b)| {
                Some(acc.map_or((a, b), |(x, y)| (x.min(a), y.max(b))))
            });
        format!(
            "{} report{} merged: {} connection{} from {} client{} of {} application{} to {} node{}{}",
            self.inputs.len(),
            plural(self.inputs.len()),
            self.counts.total,
            plural(self.counts.total as usize),
            self.clients.len(),
            plural(self.clients.len()),
            self.applications.len(),
            plural(self.applications.len()),
            self.nodes.len(),
            plural(self.nodes.len()),
            windows
                .map(|(a, b)| format!(", captured over {:.1} s", b - a))
                .unwrap_or_default()
        )
    }

    fn limit_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(m) = self.max_connections {
            for n in &self.nodes {
                if n.over_limit == Some(true) {
                    lines.push(format!(
                        "{} holds {} connections, over the {m}-connection limit",
                        n.node, n.counts.total
                    ));
                }
                if let (Some(p), Some(true), Some(i)) =
                    (n.projected, n.projected_over_limit, self.instances)
                {
                    lines.push(format!(
                        "{} would hold {p} connections at {i} instances per application, over the {m}-connection limit",
                        n.node
                    ));
                }
            }
        }
        lines
    }

    pub fn to_text(&self) -> String {
        let mut out = self.summary() + "\n\nAPPLICATIONS\n";
        let (h, rows) = self.application_rows();
        out.push_str(&table(&h, &rows));
        out.push_str("\nNODES\n");
        let (h, rows) = self.node_rows();
        out.push_str(&table(&h, &rows));
        out.push_str("\nCLIENTS\n");
        for c in &self.clients {
            let _ = writeln!(
                out,
                "{} {} ({}): {}",
                c.host,
                c.app_name.as_deref().unwrap_or("-"),
                c.driver.as_deref().unwrap_or("-"),
                c.verdict
            );
        }
        let limits = self.limit_lines();
        if !limits.is_empty() {
            out.push_str("\nLIMITS\n");
            for line in limits {
                let _ = writeln!(out, "{line}");
            }
        }
        if !self.notes.is_empty() {
            out.push_str("\nNOTES\n");
            for n in &self.notes {
                let _ = writeln!(out, "{n}");
            }
        }
        out.push_str("\nINPUTS\n");
        for i in &self.inputs {
            let _ = writeln!(
                out,
                "{} (capture {}): {} connections, {} clients, {} warnings",
                i.file, i.capture, i.connections, i.clients, i.warnings
            );
        }
        out
    }

    pub fn to_markdown(&self) -> String {
        let mut out = format!("# MongoDB fleet connections\n\n{}.\n\n", self.summary());
        for line in self.limit_lines() {
            let _ = writeln!(out, "> **{line}**\n");
        }
        out.push_str("## Applications\n\n");
        let (h, rows) = self.application_rows();
        out.push_str(&md_table(&h, &rows));
        out.push_str("\n## Nodes\n\n");
        let (h, rows) = self.node_rows();
        out.push_str(&md_table(&h, &rows));
        out.push_str("\n## Clients\n\n");
        for c in &self.clients {
            let _ = writeln!(
                out,
                "- **{} {}** ({}): {}",
                c.host,
                c.app_name.as_deref().unwrap_or("-"),
                c.driver.as_deref().unwrap_or("-"),
                c.verdict
            );
        }
        if !self.notes.is_empty() {
            out.push_str("\n## Notes\n\n");
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        out.push_str("\n## Inputs\n\n");
        for i in &self.inputs {
            let _ = writeln!(
                out,
                "- `{}` (capture `{}`): {} connections, {} clients, {} warnings",
                i.file, i.capture, i.connections, i.clients, i.warnings
            );
        }
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a fleet serialises") + "\n"
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
