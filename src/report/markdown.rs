//! Markdown: paste-ready for a support ticket.

use std::fmt::Write;
use std::io;

use super::text::{driver_label, duration, expected_label};
use super::{
    client_notes, cluster_lines, connection_rows, node_rows, tls_line, Report, CONNECTION_HEADER,
    NODE_HEADER,
};

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn push_md_row(out: &mut String, cells: &[&str]) {
    out.push_str("| ");
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.push_str(" | ");
        }
        out.push_str(&c.replace('|', "\\|"));
    }
    out.push_str(" |\n");
}

fn push_md_header(out: &mut String, header: &[&str]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
}

pub(crate) fn md_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    push_md_header(&mut out, header);
    for r in rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        push_md_row(&mut out, &cells);
    }
    out
}

pub fn to_markdown(report: &Report) -> String {
    let mut out = Vec::new();
    write_markdown(report, &mut out).expect("writing to memory");
    String::from_utf8(out).expect("the report is text")
}

/// The report as Markdown; the connection table is streamed row by row.
pub fn write_markdown(report: &Report, sink: &mut dyn io::Write) -> io::Result<()> {
    let mut out = String::new();
    let input = &report.input;
    let conns = &report.attribution.connections;
    let _ = writeln!(out, "# MongoDB connection attribution\n");
    let _ = writeln!(
        out,
        "Capture `{}`: {} packets, {:.1} MB over {:.1} s{}. **{} connection{}** from {} client{} to {} node{}.\n",
        input.path,
        input.packets,
        input.bytes as f64 / 1e6,
        duration(report),
        if input.complete { "" } else { " (incomplete capture, see warnings)" },
        conns.len(),
        plural(conns.len()),
        report.attribution.clients.len(),
        plural(report.attribution.clients.len()),
        report.nodes.len(),
        plural(report.nodes.len()),
    );
    if let Some(line) = tls_line(report) {
        let _ = writeln!(out, "{line}.\n");
    }

    if let (Some(received), Some(dropped)) = (input.received, input.dropped) {
        let _ = writeln!(
            out,
            "Live capture: libpcap received {received} packets and dropped {dropped}.\n"
        );
    }
    if input.released_connections > 0 {
        let _ = writeln!(
            out,
            "{} closed connection(s) were released from memory during the capture: they count in their clients' totals but are not listed one by one.\n",
            input.released_connections
        );
    }
    out.push_str("## Clients\n\n");
    let rows: Vec<Vec<String>> = report
        .attribution
        .clients
        .iter()
        .map(|c| {
            vec![
                c.host.clone(),
                c.app_name.clone().unwrap_or_else(|| "-".into()),
                driver_label(c),
                c.mode.name().into(),
                c.mongo_clients.to_string(),
                format!(
                    "{} / {} / {} / {} / {}",
                    c.counts.streaming_monitor,
                    c.counts.rtt_monitor,
                    c.counts.polling_monitor,
                    c.counts.pool,
                    c.counts.single_threaded
                ),
                c.counts.total.to_string(),
                expected_label(c),
            ]
        })
        .collect();
    out.push_str(&md_table(
        &[
            "host",
            "app",
            "driver",
            "mode",
            "MongoClients",
            "stream / rtt / poll / pool / single",
            "total",
            "expected",
        ],
        &rows,
    ));

    out.push_str("\n## Formula checks\n\n");
    for c in &report.attribution.clients {
        let _ = writeln!(
            out,
            "- **{} {}** ({}): {}",
            c.host,
            c.app_name.as_deref().unwrap_or("-"),
            driver_label(c),
            c.verdict
        );
        for line in client_notes(report, c) {
            let _ = writeln!(out, "  - {line}");
        }
    }

    out.push_str("\n## Nodes\n\n");
    out.push_str(&md_table(&NODE_HEADER, &node_rows(report)));

    if !report.cluster.is_empty() {
        out.push_str("\n## Cluster side\n\n");
        for line in cluster_lines(report, true) {
            match line.strip_prefix("  ") {
                Some(sub) => {
                    let _ = writeln!(out, "  - {sub}");
                }
                None => {
                    let _ = writeln!(out, "- {line}");
                }
            }
        }
    }

    let anomalies: Vec<_> = conns
        .iter()
        .filter(|c| c.verdict.class == crate::classify::Class::Unknown)
        .collect();
    if !anomalies.is_empty() {
        out.push_str("\n## Unclassified connections\n\n");
        for c in anomalies {
            let _ = writeln!(
                out,
                "- `{}` → `{}`: {}",
                report.endpoint(c.obs.client),
                report.endpoint(c.obs.server),
                c.verdict.evidence
            );
        }
    }

    out.push_str("\n<details><summary>All connections</summary>\n\n");
    push_md_header(&mut out, &CONNECTION_HEADER);
    sink.write_all(out.as_bytes())?;
    for row in connection_rows(report, true) {
        out.clear();
        push_md_row(&mut out, &row.each_ref().map(String::as_str));
        sink.write_all(out.as_bytes())?;
    }
    out.clear();
    out.push_str("\n</details>\n");

    if !report.warnings.is_empty() {
        out.push_str("\n## Warnings\n\n");
        for w in &report.warnings {
            let _ = writeln!(out, "- `{}`: {}", w.kind, w.message);
        }
    }
    let _ = writeln!(
        out,
        "\n---\n{} {} · `{}`",
        report.meta.tool, report.meta.version, report.meta.command_line
    );
    sink.write_all(out.as_bytes())
}
