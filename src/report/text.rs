//! The default, human report: what a support engineer reads in a terminal.

use std::fmt::Write;
use std::io;

use super::{
    client_notes, cluster_lines, connection_rows, node_rows, tls_line, Report, CONNECTION_HEADER,
    NODE_HEADER,
};
use crate::attribute::Client;
use crate::classify::Class;

/// Append one line of left-aligned columns (the last one unpadded, trailing blanks cut).
fn push_line(out: &mut String, widths: &[usize], cells: &[&str]) {
    let start = out.len();
    for (i, c) in cells.iter().enumerate() {
        if i + 1 == cells.len() {
            out.push_str(c);
        } else {
            // As `{c:<w$}` pads (by chars), without the fmt machinery: one call per cell of
            // every connection row.
            out.push_str(c);
            let pad = widths[i].saturating_sub(c.chars().count()) + 2;
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    let kept = start + out[start..].trim_end().len();
    out.truncate(kept);
    out.push('\n');
}

/// Left-aligned columns sized to their widest cell.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    push_line(&mut out, &widths, header);
    for row in rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        push_line(&mut out, &widths, &cells);
    }
    out
}

/// The connection table, streamed: one pass sizes the padded columns (addresses and
/// class; the evidence, last, is not padded), a second writes row by row.
fn write_connection_table(report: &Report, out: &mut dyn io::Write) -> io::Result<()> {
    let mut widths = CONNECTION_HEADER.map(|h| h.chars().count());
    for c in &report.attribution.connections {
        widths[0] = widths[0].max(report.endpoint(c.obs.client).chars().count());
        widths[1] = widths[1].max(report.endpoint(c.obs.server).chars().count());
        widths[2] = widths[2].max(c.verdict.class.name().chars().count());
    }
    let mut line = String::new();
    push_line(&mut line, &widths, &CONNECTION_HEADER);
    out.write_all(line.as_bytes())?;
    for row in connection_rows(report, false) {
        line.clear();
        push_line(&mut line, &widths, &row.each_ref().map(String::as_str));
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

/// The driver, or for a keyless TLS client (metadata encrypted) its TLS stack's JA4.
pub fn driver_label(c: &Client) -> String {
    match (&c.driver, &c.tls_fingerprint) {
        (Some(d), _) => format!("{} {}", d.name, d.version).trim().to_string(),
        (None, Some(ja4)) => format!("TLS {ja4}"),
        (None, None) => "-".into(),
    }
}

pub(crate) fn expected_label(c: &Client) -> String {
    c.expected
        .as_ref()
        .map(|e| e.total.to_string())
        .unwrap_or_else(|| "-".into())
}

pub(crate) fn duration(report: &Report) -> f64 {
    match (report.input.first_ts, report.input.last_ts) {
        (Some(a), Some(b)) => (b - a).max(0.0),
        _ => 0.0,
    }
}

pub fn to_text(report: &Report) -> String {
    let mut out = Vec::new();
    write_text(report, &mut out).expect("writing to memory");
    String::from_utf8(out).expect("the report is text")
}

pub fn write_text(report: &Report, sink: &mut dyn io::Write) -> io::Result<()> {
    let mut out = String::new();
    let input = &report.input;
    let conns = &report.attribution.connections;
    let _ = writeln!(
        out,
        "{} — {} packets, {:.1} MB, {:.1} s{}",
        input.path,
        input.packets,
        input.bytes as f64 / 1e6,
        duration(report),
        if input.complete {
            ""
        } else {
            " (incomplete: see warnings)"
        }
    );
    if let (Some(received), Some(dropped)) = (input.received, input.dropped) {
        let _ = writeln!(
            out,
            "libpcap: {received} packets received, {dropped} dropped"
        );
    }
    if input.released_connections > 0 {
        let _ = writeln!(
            out,
            "{} closed connection(s) were released from memory during the capture: they count in their clients' totals but are not listed one by one",
            input.released_connections
        );
    }
    let _ = writeln!(
        out,
        "{} MongoDB connection{} from {} client{} to {} node{}\n",
        conns.len(),
        if conns.len() == 1 { "" } else { "s" },
        report.attribution.clients.len(),
        if report.attribution.clients.len() == 1 {
            ""
        } else {
            "s"
        },
        report.nodes.len(),
        if report.nodes.len() == 1 { "" } else { "s" },
    );
    if let Some(line) = tls_line(report) {
        let _ = writeln!(out, "{line}\n");
    }

    out.push_str("CLIENTS\n");
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
                c.counts.streaming_monitor.to_string(),
                c.counts.rtt_monitor.to_string(),
                c.counts.polling_monitor.to_string(),
                c.counts.pool.to_string(),
                c.counts.single_threaded.to_string(),
                c.counts.internal.to_string(),
                c.counts.unknown.to_string(),
                c.counts.total.to_string(),
                expected_label(c),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "host",
            "app",
            "driver",
            "mode",
            "MongoClients",
            "stream",
            "rtt",
            "poll",
            "pool",
            "single",
            "internal",
            "unknown",
            "total",
            "expected",
        ],
        &rows,
    ));
    out.push('\n');
    for c in &report.attribution.clients {
        // The driver too, as Markdown and HTML give it: without an appName it is what
        // tells two clients of one host apart.
        let _ = writeln!(
            out,
            "{} {} ({}): {}",
            c.host,
            c.app_name.as_deref().unwrap_or("-"),
            driver_label(c),
            c.verdict
        );
        for line in client_notes(report, c) {
            let _ = writeln!(out, "  {line}");
        }
    }

    out.push_str("\nNODES\n");
    out.push_str(&table(&NODE_HEADER, &node_rows(report)));

    if !report.cluster.is_empty() {
        out.push_str("\nCLUSTER\n");
        for line in cluster_lines(report, false) {
            let _ = writeln!(out, "{line}");
        }
    }

    out.push_str("\nCONNECTIONS\n");
    sink.write_all(out.as_bytes())?;
    write_connection_table(report, sink)?;
    out.clear();

    if !report.warnings.is_empty() {
        out.push_str("\nWARNINGS\n");
        for w in &report.warnings {
            let _ = writeln!(out, "[{}] {}", w.kind, w.message);
        }
    }
    let unknown = conns
        .iter()
        .filter(|c| c.verdict.class == Class::Unknown)
        .count();
    if unknown > 0 {
        let _ = writeln!(
            out,
            "\n{unknown} connection(s) unknown: their evidence says what is missing."
        );
    }
    sink.write_all(out.as_bytes())
}
