//! The default, human report: what a support engineer reads in a terminal.

use std::fmt::Write;
use std::io;

use super::{
    client_notes, cluster_lines, node_rows, push_connection_evidence, tls_line, Report,
    CONNECTION_HEADER, NODE_HEADER,
};
use crate::attribute::Client;
use crate::classify::Class;

/// Append one line of left-aligned columns (the last one unpadded, trailing blanks cut).
fn push_line(out: &mut String, widths: &[usize], cells: &[&str]) {
    let start = out.len();
    for (i, c) in cells.iter().enumerate() {
        let cell = out.len();
        out.push_str(c);
        if i + 1 < cells.len() {
            pad_cell(out, cell, widths[i]);
        }
    }
    end_line(out, start);
}

/// Pad the cell written from `cell` on to `width` characters, plus the two-blank gutter.
/// As `{c:<w$}` pads (by chars), without the fmt machinery: one call per cell of every
/// connection row.
fn pad_cell(out: &mut String, cell: usize, width: usize) {
    const BLANKS: &str = "                                                                ";
    let pad = width.saturating_sub(out[cell..].chars().count()) + 2;
    match BLANKS.get(..pad) {
        Some(blanks) => out.push_str(blanks),
        None => out.extend(std::iter::repeat_n(' ', pad)),
    }
}

/// End the line begun at `start`: trailing blanks cut, then the newline.
fn end_line(out: &mut String, start: usize) {
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

/// One row's cells in one reused string: the client table of a busy capture has
/// thousands of rows of fourteen cells, a string each when they were `Vec<String>` rows.
#[derive(Default)]
struct Row {
    text: String,
    /// Where each cell ends in `text`.
    ends: Vec<usize>,
}

impl Row {
    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }

    fn push(&mut self, cell: &str) {
        self.text.push_str(cell);
        self.end_cell();
    }

    fn push_count(&mut self, n: u64) {
        self.push(itoa::Buffer::new().format(n));
    }

    /// Close the cell written into `text` since the last one ended.
    fn end_cell(&mut self) {
        self.ends.push(self.text.len());
    }

    fn cells(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(a, &b)| &self.text[a..b])
    }
}

const CLIENT_HEADER: [&str; 14] = [
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
];

/// A client's row of the client table, in [`CLIENT_HEADER`] order.
fn client_row(row: &mut Row, c: &Client) {
    row.clear();
    row.push(&c.host);
    row.push(c.app_name.as_deref().unwrap_or("-"));
    push_driver_label(&mut row.text, c);
    row.end_cell();
    row.push(c.mode.name());
    row.push_count(u64::from(c.mongo_clients));
    for class in Class::ALL {
        row.push_count(c.counts.get(class));
    }
    row.push_count(c.counts.total);
    row.push(&expected_label(c));
}

/// The client table, streamed like the connection table: each row is made twice (to size
/// the columns, then to write it) rather than held, so the report adds no table-sized
/// buffer at the run's peak of memory.
fn write_client_table(report: &Report, out: &mut dyn io::Write) -> io::Result<()> {
    let mut widths = CLIENT_HEADER.map(|h| h.chars().count());
    let mut row = Row::default();
    for c in &report.attribution.clients {
        client_row(&mut row, c);
        for (width, cell) in widths.iter_mut().zip(row.cells()) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut line = String::new();
    push_line(&mut line, &widths, &CLIENT_HEADER);
    out.write_all(line.as_bytes())?;
    for c in &report.attribution.clients {
        client_row(&mut row, c);
        let mut cells = [""; CLIENT_HEADER.len()];
        for (slot, cell) in cells.iter_mut().zip(row.cells()) {
            *slot = cell;
        }
        line.clear();
        push_line(&mut line, &widths, &cells);
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

/// The connection table, streamed: one pass sizes the padded columns (addresses and
/// class; the evidence, last, is not padded), a second writes row by row into one
/// reused line.
fn write_connection_table(report: &Report, out: &mut dyn io::Write) -> io::Result<()> {
    let mut widths = CONNECTION_HEADER.map(|h| h.chars().count());
    let mut line = String::new();
    for c in &report.attribution.connections {
        for (column, addr) in [(0, c.obs.client), (1, c.obs.server)] {
            line.clear();
            report.push_endpoint(&mut line, addr);
            widths[column] = widths[column].max(line.chars().count());
        }
        widths[2] = widths[2].max(c.verdict.class.name().chars().count());
    }
    line.clear();
    push_line(&mut line, &widths, &CONNECTION_HEADER);
    out.write_all(line.as_bytes())?;
    for (i, c) in report.attribution.connections.iter().enumerate() {
        line.clear();
        for (column, addr) in [(0, c.obs.client), (1, c.obs.server)] {
            let cell = line.len();
            report.push_endpoint(&mut line, addr);
            pad_cell(&mut line, cell, widths[column]);
        }
        let cell = line.len();
        line.push_str(c.verdict.class.name());
        pad_cell(&mut line, cell, widths[2]);
        push_connection_evidence(report, i, &mut line);
        end_line(&mut line, 0);
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

/// The driver, or for a keyless TLS client (metadata encrypted) its TLS stack's JA4.
pub fn driver_label(c: &Client) -> String {
    let mut out = String::new();
    push_driver_label(&mut out, c);
    out
}

/// [`driver_label`] appended to `out`.
fn push_driver_label(out: &mut String, c: &Client) {
    match (&c.driver, &c.tls_fingerprint) {
        (Some(d), _) => out.push_str(format!("{} {}", d.name, d.version).trim()),
        (None, Some(ja4)) => {
            out.push_str("TLS ");
            out.push_str(ja4);
        }
        (None, None) => out.push('-'),
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
    sink.write_all(out.as_bytes())?;
    out.clear();
    write_client_table(report, sink)?;
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
        // Written as it grows: a line per client is thousands of lines.
        if out.len() >= 1 << 16 {
            sink.write_all(out.as_bytes())?;
            out.clear();
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
