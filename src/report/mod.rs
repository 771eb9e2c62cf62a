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
use crate::attribute::cluster::{self, Cluster, MembershipInput};
use crate::attribute::{Attribution, Counts};
use crate::classify::{Class, Confidence};
use crate::net;
use crate::observe::{Bins, NodeLife, Percentiles};
use crate::process::ProcessInfo;
use crate::warnings::Warning;

pub use html::to_html;
pub use json::{to_json, write_json};
pub use markdown::{to_markdown, write_markdown};
pub use redact::Redactor;
pub use text::{driver_label, to_text, write_text};

pub const SCHEMA: &str = "conn-attrib/1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Markdown,
    /// One self-contained page: tables, verdicts and an SVG timeline, no scripts.
    Html,
}

/// A node's new role, from when its hello replies first stated it (epoch seconds).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RoleChange {
    pub at: f64,
    pub from: String,
    pub to: String,
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
    /// When a new process first answered (epoch seconds): the node restarted then.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restarts: Vec<f64>,
    /// Each change of the role its hello replies stated (a stepdown, an election, a
    /// removal from the set), when first stated. `role` is the last one's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub role_changes: Vec<RoleChange>,
    /// Server processes that answered at this address side by side (a load balancer or
    /// proxy in front of several): 0 unless more than one did.
    #[serde(skip_serializing_if = "crate::analyzer::is_zero")]
    pub concurrent_processes: u64,
    /// Connection attempts it refused (SYN answered by RST) or never answered: not
    /// connections, so not in `counts`.
    #[serde(skip_serializing_if = "crate::analyzer::is_zero")]
    pub refused_attempts: u64,
    #[serde(skip_serializing_if = "crate::analyzer::is_zero")]
    pub unanswered_attempts: u64,
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
    /// Internal connections' origins, membership, stale hosts, dropConnections.
    pub cluster: Cluster,
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
        let cluster = cluster_of(&attribution, None);
        Report {
            meta,
            input: analysis.input,
            warnings: analysis.warnings,
            attribution,
            nodes,
            cluster,
            processes: HashMap::new(),
            client_processes: HashMap::new(),
            endpoint_names: HashMap::new(),
            redacted: false,
        }
    }

    /// Judge stale hosts against the membership the user gave (`--members`,
    /// `--members-file`) instead of the one hello replies announced.
    pub fn with_membership(mut self, given: &MembershipInput) -> Report {
        self.cluster = cluster_of(&self.attribution, Some(given));
        self
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
        let mut out = String::new();
        self.push_endpoint(&mut out, addr);
        out
    }

    /// [`Report::endpoint`] appended to `out`.
    pub fn push_endpoint(&self, out: &mut String, addr: SocketAddr) {
        // Names exist only in a redacted report: the others skip hashing every address.
        if self.endpoint_names.is_empty() {
            return net::push_addr_text(out, addr);
        }
        match self.endpoint_names.get(&addr.ip()) {
            Some(name) => net::push_host_port_text(out, name, addr.port()),
            None => net::push_addr_text(out, addr),
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

    /// Write the report in `format` to `out`. JSON is streamed; text and Markdown stream
    /// their connection tables (the bulk of a large report); HTML is built in memory.
    pub fn write(&self, format: Format, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        match format {
            Format::Json => write_json(self, out),
            Format::Text => write_text(self, out),
            Format::Markdown => write_markdown(self, out),
            Format::Html => out.write_all(to_html(self).as_bytes()),
        }
    }
}

fn cluster_of(
    attribution: &Attribution,
    given: Option<&cluster::MembershipInput>,
) -> cluster::Cluster {
    let mut cluster = cluster::analyse(&attribution.connections, given);
    // Internal connections released during the capture are counted, though not listed.
    cluster.internal_connections += attribution
        .released_nodes
        .values()
        .map(|n| n.counts.internal as usize)
        .sum::<usize>();
    // A dropConnections is checked against the connections still held: say so where some
    // to its targets were released (--keep-closed) and could be among those it closed.
    for drop in &mut cluster.drop_connections_seen {
        let released: u64 = attribution
            .released_nodes
            .iter()
            .filter(|(node, _)| {
                let node = crate::net::addr_text(**node);
                drop.targets
                    .iter()
                    .flatten()
                    .any(|t| t.eq_ignore_ascii_case(&node))
            })
            .map(|(_, n)| n.counts.internal)
            .sum();
        if released > 0 {
            drop.summary.push_str(&format!(
                "; but {released} internal connection{} to its targets {} released from memory before the end (--keep-closed): those it closed may be among them",
                if released == 1 { "" } else { "s" },
                if released == 1 { "was" } else { "were" }
            ));
        }
    }
    cluster
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
            entry.2 = c.obs.server_info.as_ref().map(|s| s.role());
        }
    }
    // Connections released during the capture count on their nodes as on their clients.
    for (node, tally) in attribution.released_nodes.iter() {
        let entry = by_node.entry(*node).or_default();
        entry.0.merge(&tally.counts);
        entry.1.extend(tally.clients.iter().map(String::as_str));
    }
    // A node that only refused or left attempts unanswered (down the whole capture) is
    // listed too: it is where the clients tried to go.
    for node in analysis.nodes.life.keys() {
        by_node.entry(*node).or_default();
    }
    by_node
        .into_iter()
        .map(|(node, (counts, clients, role))| {
            let h = analysis.nodes.histograms(&node);
            let life = analysis.nodes.life.get(&node);
            NodeSummary {
                restarts: life.map(|l| l.restarts().collect()).unwrap_or_default(),
                role_changes: life
                    .map(|l| {
                        l.role_changes()
                            .into_iter()
                            .map(|(from, to)| RoleChange {
                                at: to.since,
                                from: from.text(),
                                to: to.text(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                concurrent_processes: life
                    .filter(|l| l.concurrent())
                    .map_or(0, |l| l.processes.len() as u64),
                refused_attempts: life.map_or(0, |l| l.refused.count),
                unanswered_attempts: life.map_or(0, |l| l.unanswered.count),
                node: node.to_string(),
                counts,
                clients: clients.len(),
                heartbeat_s: h.and_then(|h| h.heartbeat()),
                hello_rtt_ms: h.and_then(|h| h.hello_rtt()),
                op_latency_ms: h.and_then(|h| h.op_latency()),
                role: life.and_then(NodeLife::current_role).or(role),
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
                node_role(report, n),
                n.counts.total.to_string(),
                n.clients.to_string(),
                fmt_percentiles(&n.heartbeat_s, " s"),
                fmt_percentiles(&n.hello_rtt_ms, " ms"),
                fmt_percentiles(&n.op_latency_ms, " ms"),
            ]
        })
        .collect()
}

/// What a node said it is, and what happened to it during the capture.
fn node_role(report: &Report, n: &NodeSummary) -> String {
    let start = report.input.first_ts.unwrap_or(0.0);
    let mut events: Vec<String> = n
        .restarts
        .iter()
        .map(|t| format!("restarted at {:.1} s", t - start))
        .collect();
    for change in &n.role_changes {
        events.push(format!("{} until {:.1} s", change.from, change.at - start));
    }
    if n.concurrent_processes > 0 {
        events.push(format!(
            "{} processes behind this address",
            n.concurrent_processes
        ));
    }
    if n.refused_attempts > 0 {
        events.push(format!("{} attempts refused", n.refused_attempts));
    }
    if n.unanswered_attempts > 0 {
        events.push(format!("{} attempts unanswered", n.unanswered_attempts));
    }
    let role = n.role.as_deref().unwrap_or("-");
    if events.is_empty() {
        role.to_string()
    } else {
        format!("{role} ({})", events.join(", "))
    }
}

pub(crate) const CONNECTION_HEADER: [&str; 4] = ["client", "server", "class", "evidence"];

/// Connection `i`'s row; `quote` wraps addresses as code (Markdown).
pub(crate) fn connection_row(report: &Report, i: usize, quote: bool) -> [String; 4] {
    let q = |s: String| if quote { format!("`{s}`") } else { s };
    let c = &report.attribution.connections[i];
    let mut evidence = String::new();
    push_connection_evidence(report, i, &mut evidence);
    [
        q(report.endpoint(c.obs.client)),
        q(report.endpoint(c.obs.server)),
        c.verdict.class.name().to_string(),
        evidence,
    ]
}

/// Connection `i`'s evidence column, appended to `out`.
pub(crate) fn push_connection_evidence(report: &Report, i: usize, out: &mut String) {
    out.push_str(&report.attribution.connections[i].verdict.evidence);
    if let Some(member) = report.cluster.origins.get(i).and_then(|o| o.as_deref()) {
        out.push_str("; opened by member ");
        out.push_str(member);
    }
}

/// Every connection's row, made one at a time: printers stream them rather than hold a
/// table as large as the report's connection list.
pub(crate) fn connection_rows(
    report: &Report,
    quote: bool,
) -> impl Iterator<Item = [String; 4]> + '_ {
    (0..report.attribution.connections.len()).map(move |i| connection_row(report, i, quote))
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

/// The cluster-side section as lines, shared by the text and Markdown printers. `code`
/// wraps commands and addresses (Markdown).
pub(crate) fn cluster_lines(report: &Report, code: bool) -> Vec<String> {
    let q = |s: &str| {
        if code {
            format!("`{s}`")
        } else {
            s.to_string()
        }
    };
    let cluster = &report.cluster;
    let start = report.input.first_ts.unwrap_or(0.0);
    let mut lines = Vec::new();
    for m in &cluster.membership {
        let source = match m.source {
            "hello" => "hello replies in the capture, highest setVersion",
            "members" => "--members",
            _ => "--members-file",
        };
        lines.push(format!(
            "membership of {}{} (from {source}): {}{}",
            m.set_name.as_deref().unwrap_or("the set"),
            m.set_version
                .map(|v| format!(" setVersion {v}"))
                .unwrap_or_default(),
            m.members
                .iter()
                .map(|h| q(h))
                .collect::<Vec<_>>()
                .join(", "),
            if m.removed.is_empty() {
                String::new()
            } else {
                format!(
                    "; no longer members: {}",
                    m.removed
                        .iter()
                        .map(|h| q(h))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ));
    }
    if cluster.membership.is_empty() && cluster.internal_connections > 0 {
        lines.push("membership unknown: no hello reply announced a replica set (pass --members or --members-file)".into());
    }
    if cluster.internal_connections > 0 {
        let mut roles: std::collections::BTreeMap<&str, usize> = Default::default();
        for c in &report.attribution.connections {
            if let Some(r) = c.verdict.role {
                *roles.entry(r.name()).or_default() += 1;
            }
        }
        lines.push(format!(
            "internal connections: {} ({})",
            cluster.internal_connections,
            roles
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if cluster.stale.is_empty() {
        if !cluster.membership.is_empty() {
            lines.push("stale: no open connection to a host outside the membership".into());
        }
    } else {
        lines.push(format!(
            "stale: {} connection{} to hosts outside the membership (open at the end of the capture, or monitoring a removed host long after the new config was announced):",
            cluster.stale.len(),
            if cluster.stale.len() == 1 { "" } else { "s" }
        ));
        for s in &cluster.stale {
            let who = match (s.kind, &s.member) {
                ("internal", Some(m)) => format!(
                    "internal {} opened by member {}",
                    s.role.unwrap_or("other"),
                    q(m)
                ),
                ("internal", None) => format!("internal {}", s.role.unwrap_or("other")),
                _ if s.open_at_end => format!("{} of client {}", s.class, s.client_id),
                _ => format!(
                    "{} of client {}, kept monitoring the removed host until it closed at +{:.1} s",
                    s.class,
                    s.client_id,
                    s.last_seen - start
                ),
            };
            lines.push(format!(
                "  {} -> {} ({}): {who}",
                q(&s.client),
                q(&s.server),
                s.host
            ));
        }
    }
    for p in &cluster.drop_connections {
        lines.push(format!(
            "run on {} (against admin; it holds {} stale connection{}): {}",
            q(&p.member),
            p.connections,
            if p.connections == 1 { "" } else { "s" },
            q(&p.command)
        ));
        lines.push(format!("  privilege: {}", p.privilege));
        lines.push(format!("  check: {}", p.check));
    }
    for d in &cluster.drop_connections_seen {
        let targets: Vec<String> = d
            .targets
            .iter()
            .map(|t| match t {
                Some(t) => format!("\"{t}\""),
                None => "(not a string)".into(),
            })
            .collect();
        lines.push(format!(
            "dropConnections seen at +{:.3} s from {} ({}) to {}: hostAndPort [{}]{}: {}",
            d.ts - start,
            q(&d.sender),
            d.client_id,
            q(&d.member),
            targets.join(", "),
            d.reply_ms
                .map(|ms| format!(", replied in {ms:.1} ms"))
                .unwrap_or_default(),
            d.summary
        ));
        for t in d.targeted.iter().chain(&d.missed) {
            let what = match (t.closed_after_s, t.still_open) {
                (Some(s), _) => format!("closed {s:.3} s later"),
                (None, true) => "still open at the end of the capture".into(),
                _ => "-".into(),
            };
            lines.push(format!(
                "  {} -> {} ({}): {what}",
                q(&t.client),
                q(&t.server),
                t.role.unwrap_or("internal")
            ));
        }
        if let Some(fix) = &d.corrected_command {
            lines.push(format!(
                "  lint: the server silently ignores {}; send instead: {}",
                d.ignored.join(", "),
                q(fix)
            ));
        }
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
    let mid_session = conns
        .iter()
        .filter(|c| {
            c.obs.tls_session.as_ref().map(|t| t.keys)
                == Some(crate::tls::KeyStatus::FoundMidSession)
        })
        .count();
    let found_by_search = match mid_session {
        0 => String::new(),
        n => format!(
            " ({n} of them begun before the capture: found by trying the key log's TLS 1.3 secrets on their records)"
        ),
    };
    if not == 0 {
        return Some(format!("TLS: {tls} encrypted connection{s}, all decrypted with the key log and analysed like plaintext{found_by_search}"));
    }
    // Roles of the others come from record shapes: say how sure each is.
    let keyless = conns.iter().filter(|c| c.obs.tls && !c.obs.tls_decrypted());
    let (mut inferred, mut unknown) = (0, 0);
    let mut by_confidence = [0usize; 3];
    for c in keyless {
        if c.verdict.class == Class::Unknown {
            unknown += 1;
            continue;
        }
        inferred += 1;
        by_confidence[match c.verdict.confidence {
            Confidence::High => 0,
            Confidence::Medium => 1,
            Confidence::Low => 2,
        }] += 1;
    }
    let [high, medium, low] = by_confidence;
    Some(format!(
        "TLS: {tls} encrypted connection{s}: {decrypted} decrypted{found_by_search}, {not} not decrypted; of those, {inferred} role{} inferred from TLS record shapes (confidence: {high} high, {medium} medium, {low} low) and {unknown} left unknown",
        if inferred == 1 { "" } else { "s" }
    ))
}
