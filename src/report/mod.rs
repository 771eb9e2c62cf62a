//! Stage 8, reports: one analysis, several printers (text, JSON `conn-attrib/1`, Markdown,
//! HTML),
//! and [`merge`] of many JSON reports into one fleet report.
//!
//! [`Report`] gathers everything the printers need; each printer is a pure function of it.
//! The JSON field names are a contract (`shared/report-contract.md`): the `contract_*`
//! tests pin them.

mod html;
mod json;
mod markdown;
pub mod merge;
mod redact;
mod text;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::analyzer::{Analysis, InputSummary};
use crate::attribute::{Attribution, Counts};
use crate::observe::{Bins, Percentiles};
use crate::process::ProcessInfo;
use crate::warnings::Warning;

pub use html::to_html;
pub use json::{to_json, write_json};
pub use markdown::to_markdown;
pub use text::to_text;

pub const SCHEMA: &str = "conn-attrib/1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Markdown,
    /// One self-contained page: tables, verdicts and an SVG timeline, no scripts.
    Html,
}

/// Per server node: who connects and how it behaves.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeSummary {
    pub node: String,
    pub counts: Counts,
    pub clients: usize,
    /// Seconds between heartbeats seen on monitoring connections.
    pub heartbeat_s: Option<Percentiles>,
    /// Round trip of plain hellos, milliseconds.
    pub hello_rtt_ms: Option<Percentiles>,
    /// Operation latency, milliseconds.
    pub op_latency_ms: Option<Percentiles>,
    /// What the node said about itself (set name, role), when a hello reply was seen.
    pub role: Option<String>,
    /// Heartbeat intervals (s) and hello round trips (ms) binned for charts (HTML).
    #[serde(skip)]
    pub heartbeat_bins: Option<Bins>,
    #[serde(skip)]
    pub hello_rtt_bins: Option<Bins>,
}

/// Who ran the tool and how, for reports handed to someone else.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Meta {
    pub tool: String,
    pub version: String,
    pub command_line: String,
}

/// Everything a printer needs.
#[derive(Clone, Debug)]
pub struct Report {
    pub meta: Meta,
    pub input: InputSummary,
    pub warnings: Vec<Warning>,
    pub attribution: Attribution,
    pub nodes: Vec<NodeSummary>,
    /// Owning process per connection's client endpoint (live capture on the app host).
    processes: HashMap<SocketAddr, ProcessInfo>,
    /// Per client id, the pids behind its connections, most connections first. Built once
    /// in [`Report::with_processes`]: printers ask per client, and a per-call scan of every
    /// connection made reports on big captures quadratic.
    client_processes: HashMap<String, Vec<ProcessInfo>>,
    /// After [`Report::redacted`]: the pseudonym each stand-in endpoint address shows as.
    endpoint_names: HashMap<IpAddr, String>,
    redacted: bool,
}

impl Report {
    pub fn new(analysis: Analysis, attribution: Attribution, meta: Meta) -> Report {
        let nodes = node_summaries(&analysis, &attribution);
        Report {
            meta,
            input: analysis.input,
            warnings: analysis.warnings,
            attribution,
            nodes,
            processes: HashMap::new(),
            client_processes: HashMap::new(),
            endpoint_names: HashMap::new(),
            redacted: false,
        }
    }

    /// Attach the owning processes found on the app host (live mode).
    pub fn with_processes(mut self, processes: HashMap<SocketAddr, ProcessInfo>) -> Report {
        let mut counts: HashMap<&str, Vec<(&ProcessInfo, usize)>> = HashMap::new();
        for c in &self.attribution.connections {
            if let Some(p) = processes.get(&c.obs.client) {
                let owners = counts.entry(c.client_id.as_str()).or_default();
                match owners.iter_mut().find(|(q, _)| q.pid == p.pid) {
                    Some((_, n)) => *n += 1,
                    None => owners.push((p, 1)),
                }
            }
        }
        let client_processes = counts
            .into_iter()
            .map(|(client, mut owners)| {
                owners.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.pid.cmp(&b.0.pid)));
                let owners = owners.into_iter().map(|(p, _)| p.clone()).collect();
                (client.to_string(), owners)
            })
            .collect();
        self.client_processes = client_processes;
        self.processes = processes;
        self
    }

    /// A connection endpoint as printers show it: `host-N:port` in a redacted report.
    pub fn endpoint(&self, addr: SocketAddr) -> String {
        match self.endpoint_names.get(&addr.ip()) {
            Some(name) => format!("{name}:{}", addr.port()),
            None => addr.to_string(),
        }
    }

    /// Whether [`Report::redacted`] made this report.
    pub fn is_redacted(&self) -> bool {
        self.redacted
    }

    /// The owner of a connection, when known.
    pub fn process_of(&self, client: SocketAddr) -> Option<&ProcessInfo> {
        self.processes.get(&client)
    }

    /// The processes behind a client's connections, most connections first.
    pub fn client_processes(&self, client_id: &str) -> Vec<&ProcessInfo> {
        self.client_processes
            .get(client_id)
            .map(|owners| owners.iter().collect())
            .unwrap_or_default()
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => to_text(self),
            Format::Json => to_json(self),
            Format::Markdown => to_markdown(self),
            Format::Html => to_html(self),
        }
    }

    /// Write the report in `format` to `out` (JSON is streamed, never built in memory).
    pub fn write(&self, format: Format, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        match format {
            Format::Json => write_json(self, out),
            other => out.write_all(self.render(other).as_bytes()),
        }
    }
}

fn node_summaries(analysis: &Analysis, attribution: &Attribution) -> Vec<NodeSummary> {
    let mut by_node: BTreeMap<
        std::net::SocketAddr,
        (Counts, std::collections::BTreeSet<&str>, Option<String>),
    > = BTreeMap::new();
    for c in &attribution.connections {
        let entry = by_node.entry(c.obs.server).or_default();
        entry.0.add(c.verdict.class);
        entry.1.insert(&c.client_id);
        if entry.2.is_none() {
            entry.2 = c.obs.server_info.as_ref().map(|s| {
                let role = if s.is_mongos {
                    "mongos".to_string()
                } else if s.service_id {
                    "behind a load balancer".to_string()
                } else if s.is_writable_primary == Some(true) {
                    "primary".to_string()
                } else if s.secondary == Some(true) {
                    "secondary".to_string()
                } else {
                    "standalone or unknown".to_string()
                };
                match &s.set_name {
                    Some(set) => format!("{role} of {set}"),
                    None => role,
                }
            });
        }
    }
    by_node
        .into_iter()
        .map(|(node, (counts, clients, role))| {
            let h = analysis.nodes.nodes.get(&node);
            NodeSummary {
                node: node.to_string(),
                counts,
                clients: clients.len(),
                heartbeat_s: h.and_then(|h| h.heartbeat()),
                hello_rtt_ms: h.and_then(|h| h.hello_rtt()),
                op_latency_ms: h.and_then(|h| h.op_latency()),
                role,
                heartbeat_bins: h.and_then(|h| h.heartbeat_bins()),
                hello_rtt_bins: h.and_then(|h| h.hello_rtt_bins()),
            }
        })
        .collect()
}

pub(crate) const NODE_HEADER: [&str; 7] = [
    "node",
    "role",
    "connections",
    "clients",
    "heartbeat interval",
    "hello round trip",
    "operation latency",
];

/// One row per node, in [`NODE_HEADER`] order, for the table printers.
pub(crate) fn node_rows(report: &Report) -> Vec<Vec<String>> {
    report
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.node.clone(),
                n.role.clone().unwrap_or_else(|| "-".into()),
                n.counts.total.to_string(),
                n.clients.to_string(),
                fmt_percentiles(&n.heartbeat_s, " s"),
                fmt_percentiles(&n.hello_rtt_ms, " ms"),
                fmt_percentiles(&n.op_latency_ms, " ms"),
            ]
        })
        .collect()
}

pub(crate) const CONNECTION_HEADER: [&str; 4] = ["client", "server", "class", "evidence"];

/// One row per connection; `quote` wraps addresses as code (Markdown).
pub(crate) fn connection_rows(report: &Report, quote: bool) -> Vec<Vec<String>> {
    let q = |s: String| if quote { format!("`{s}`") } else { s };
    report
        .attribution
        .connections
        .iter()
        .map(|c| {
            vec![
                q(report.endpoint(c.obs.client)),
                q(report.endpoint(c.obs.server)),
                c.verdict.class.name().to_string(),
                c.verdict.evidence.clone(),
            ]
        })
        .collect()
}

/// The process, advice and projection lines under a client's verdict.
pub(crate) fn client_notes(report: &Report, c: &crate::attribute::Client) -> Vec<String> {
    let mut lines: Vec<String> = report
        .client_processes(&c.id)
        .into_iter()
        .map(|p| {
            format!(
                "process: pid {} {} ({}){}",
                p.pid,
                p.name,
                p.cmdline,
                p.container
                    .as_ref()
                    .map(|c| format!(" in container {c}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    lines.extend(c.advice.iter().map(|a| format!("advice: {a}")));
    if let Some(p) = &c.projection {
        lines.push(format!("projection: {}", p.summary));
    }
    lines
}

/// "p50 1.2 / p99 3.4 / max 5.6" or "-".
pub(crate) fn fmt_percentiles(p: &Option<Percentiles>, unit: &str) -> String {
    match p {
        Some(p) => format!(
            "p50 {:.1}{unit} / p99 {:.1}{unit} / max {:.1}{unit} (n={})",
            p.p50, p.p99, p.max, p.count
        ),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests;

/// One sentence on the capture's TLS connections: how many were decrypted with the key
/// log and how many stay opaque. None when no connection used TLS.
pub(crate) fn tls_line(report: &Report) -> Option<String> {
    let conns = &report.attribution.connections;
    let tls = conns.iter().filter(|c| c.obs.tls).count();
    if tls == 0 {
        return None;
    }
    let decrypted = conns.iter().filter(|c| c.obs.tls_decrypted()).count();
    let not = tls - decrypted;
    let s = if tls == 1 { "" } else { "s" };
    Some(if not == 0 {
        format!("TLS: {tls} encrypted connection{s}, all decrypted with the key log and analysed like plaintext")
    } else {
        format!("TLS: {tls} encrypted connection{s}: {decrypted} decrypted, {not} not decrypted (reported unknown: their messages are not visible)")
    })
}
