//! Stage 8, reports: one analysis, several printers (text, JSON `conn-attrib/1`, Markdown).
//!
//! [`Report`] gathers everything the printers need; each printer is a pure function of it.
//! The JSON field names are a contract (`shared/report-contract.md`): the `contract_*`
//! tests pin them.

mod json;
mod markdown;
mod text;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analyzer::{Analysis, InputSummary};
use crate::attribute::{Attribution, Counts};
use crate::observe::Percentiles;
use crate::warnings::Warning;

pub use json::{to_json, write_json};
pub use markdown::to_markdown;
pub use text::to_text;

pub const SCHEMA: &str = "conn-attrib/1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Markdown,
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
        }
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => to_text(self),
            Format::Json => to_json(self),
            Format::Markdown => to_markdown(self),
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
            }
        })
        .collect()
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
