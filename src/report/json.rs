//! The JSON report, `conn-attrib/1`. Contract fields are named here, in one place, so a
//! rename cannot slip in through an internal struct; extra fields are additions.
//!
//! The document is serialised straight to the writer from borrowed views of the report:
//! no JSON tree is built, so a report of a million connections costs no more memory than
//! the analysis already holds.

use std::io::{self, Write};

use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;

use super::{Meta, NodeSummary, Report, SCHEMA};
use crate::analyzer::InputSummary;
use crate::attribute::cluster::Cluster;
use crate::attribute::{Attributed, Client, Counts, Driver, Expected, Projection};
use crate::classify::Confidence;
use crate::observe::Observations;
use crate::process::ProcessInfo;
use crate::tls::TlsSummary;
use crate::warnings::Warning;

#[derive(Serialize)]
struct Document<'a> {
    schema: &'static str,
    input: Input<'a>,
    warnings: &'a [Warning],
    connections: Connections<'a>,
    clients: Vec<ClientView<'a>>,
    // Additions to the contract.
    nodes: &'a [NodeSummary],
    tool: &'a Meta,
    /// Hosts, names and document values were replaced (`--redact`).
    redacted: bool,
    /// Membership, stale hosts, the dropConnections plan and the ones seen.
    cluster: &'a Cluster,
}

#[derive(Serialize)]
struct Input<'a> {
    path: &'a str,
    packets: u64,
    bytes: u64,
    first_ts: Option<f64>,
    last_ts: Option<f64>,
    // Additions to the contract.
    #[serde(flatten)]
    more: &'a InputSummary,
}

#[derive(Serialize)]
struct DriverView<'a> {
    name: &'a str,
    version: &'a str,
}

#[derive(Serialize)]
struct ConnectionView<'a> {
    client: String,
    server: String,
    class: &'static str,
    client_id: &'a str,
    app_name: Option<&'a str>,
    driver: Option<DriverView<'a>>,
    opened: Option<f64>,
    closed: Option<f64>,
    evidence: &'a str,
    // Additions to the contract.
    confidence: Confidence,
    /// null for plaintext; {version, cipher, sni, decrypted, keys, records_*} for TLS.
    tls: Option<&'a TlsSummary>,
    /// The sub-role of an internal connection (absent for other classes).
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    /// The member that opened an internal connection, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    member: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<&'a ProcessInfo>,
    observations: ObservationsView<'a>,
}

/// A connection's observations; in a redacted report its endpoints are shown by their
/// pseudonyms, as in the contract fields beside it.
struct ObservationsView<'a>(&'a Attributed, &'a Report);

impl Serialize for ObservationsView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (obs, report): (&Observations, &Report) = (&self.0.obs, self.1);
        if !report.is_redacted() {
            return obs.serialize(s);
        }
        // Only redacted reports pay for the detour through a JSON value.
        let mut v = serde_json::to_value(obs).map_err(serde::ser::Error::custom)?;
        v["client"] = report.endpoint(obs.client).into();
        v["server"] = report.endpoint(obs.server).into();
        v.serialize(s)
    }
}

impl<'a> ConnectionView<'a> {
    fn of(i: usize, c: &'a Attributed, report: &'a Report) -> ConnectionView<'a> {
        let hs = c.obs.handshake.as_ref();
        ConnectionView {
            client: report.endpoint(c.obs.client),
            server: report.endpoint(c.obs.server),
            class: c.verdict.class.name(),
            client_id: &c.client_id,
            app_name: hs.and_then(|h| h.app_name.as_deref()),
            driver: hs.and_then(|h| {
                h.driver_name.as_deref().map(|name| DriverView {
                    name,
                    version: h.driver_version.as_deref().unwrap_or(""),
                })
            }),
            opened: c.obs.opened,
            closed: c.obs.closed,
            evidence: &c.verdict.evidence,
            confidence: c.verdict.confidence,
            tls: c.obs.tls_session.as_deref(),
            role: c.verdict.role.map(|r| r.name()),
            member: report.cluster.origins.get(i).and_then(|o| o.as_deref()),
            process: report.process_of(c.obs.client),
            observations: ObservationsView(c, report),
        }
    }
}

/// Serialised one connection at a time.
struct Connections<'a>(&'a Report);

impl Serialize for Connections<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let all = &self.0.attribution.connections;
        let mut seq = s.serialize_seq(Some(all.len()))?;
        for (i, c) in all.iter().enumerate() {
            seq.serialize_element(&ConnectionView::of(i, c, self.0))?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct ExpectedView<'a> {
    formula: &'a str,
    min_pool_size: Option<u32>,
    total: u64,
    // Additions to the contract.
    per_node: u64,
    min_pool_size_source: &'static str,
}

#[derive(Serialize)]
struct ClientView<'a> {
    id: &'a str,
    host: &'a str,
    app_name: Option<&'a str>,
    driver: Option<&'a Driver>,
    mode: &'static str,
    mongo_clients: u32,
    nodes: &'a [String],
    counts: &'a Counts,
    expected: Option<ExpectedView<'a>>,
    verdict: &'a str,
    // Additions to the contract.
    deviations: &'a [String],
    advice: &'a [String],
    platform: Option<&'a str>,
    env: Option<&'a str>,
    nodes_not_reached: &'a [String],
    opened_before_capture: u64,
    peak_pool_per_node: &'a std::collections::BTreeMap<String, u64>,
    projection: Option<&'a Projection>,
    /// JA4 of a keyless TLS client's stack (absent for clients named by metadata).
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_fingerprint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<&'a ProcessInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    processes: Vec<&'a ProcessInfo>,
}

impl<'a> ClientView<'a> {
    fn of(c: &'a Client, report: &'a Report) -> ClientView<'a> {
        let processes = report.client_processes(&c.id);
        ClientView {
            process: processes.first().copied(),
            processes,
            id: &c.id,
            host: &c.host,
            app_name: c.app_name.as_deref(),
            driver: c.driver.as_ref(),
            tls_fingerprint: c.tls_fingerprint.as_deref(),
            mode: c.mode.name(),
            mongo_clients: c.mongo_clients,
            nodes: &c.nodes,
            counts: &c.counts,
            expected: c.expected.as_ref().map(|e: &Expected| ExpectedView {
                formula: &e.formula,
                min_pool_size: e.min_pool_size,
                total: e.total,
                per_node: e.per_node,
                min_pool_size_source: e.min_pool_size_source,
            }),
            verdict: &c.verdict,
            deviations: &c.deviations,
            advice: &c.advice,
            platform: c.platform.as_deref(),
            env: c.env.as_deref(),
            nodes_not_reached: &c.nodes_not_reached,
            opened_before_capture: c.opened_before_capture,
            peak_pool_per_node: &c.peak_pool_per_node,
            projection: c.projection.as_ref(),
        }
    }
}

/// Write the JSON report to `out`.
pub fn write_json(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let input = &report.input;
    let doc = Document {
        schema: SCHEMA,
        input: Input {
            path: &input.path,
            packets: input.packets,
            bytes: input.bytes,
            first_ts: input.first_ts,
            last_ts: input.last_ts,
            more: input,
        },
        warnings: &report.warnings,
        connections: Connections(report),
        clients: report
            .attribution
            .clients
            .iter()
            .map(|c| ClientView::of(c, report))
            .collect(),
        nodes: &report.nodes,
        tool: &report.meta,
        redacted: report.is_redacted(),
        cluster: &report.cluster,
    };
    // serde_json writes every token, indentation level and quote separately: through
    // `dyn Write` each was a virtual call into the caller's writer, ~40 instructions, and
    // a report is tens of millions of them (half of a run's instructions for a JSON
    // report). A concrete buffer here lets those writes inline into a copy.
    let mut buffered = io::BufWriter::with_capacity(64 << 10, out);
    // Keep the I/O error's kind (a closed pipe must stay recognisable to the caller).
    let mut serializer = serde_json::Serializer::with_formatter(&mut buffered, Pretty::default());
    doc.serialize(&mut serializer)
        .map_err(|e| match e.io_error_kind() {
            Some(kind) => io::Error::new(kind, e),
            None => io::Error::other(e),
        })?;
    buffered.write_all(b"\n")?;
    buffered.flush()
}

/// `serde_json::ser::PrettyFormatter`'s output (two-space indent), byte for byte, with each
/// line break and its indentation written at once: the crate's formatter writes the
/// indentation one level at a time, and a report's connections sit four to six levels deep.
#[derive(Default)]
struct Pretty {
    depth: usize,
    has_value: bool,
}

/// A comma, a line break, and indentation for 32 levels.
const BREAK: &[u8] = b",\n                                                                ";

impl Pretty {
    fn new_line<W: ?Sized + Write>(&self, w: &mut W, comma: bool) -> io::Result<()> {
        let start = usize::from(!comma);
        match BREAK.get(start..2 + 2 * self.depth) {
            Some(line) => w.write_all(line),
            None => {
                w.write_all(&BREAK[start..2])?;
                (0..self.depth).try_for_each(|_| w.write_all(b"  "))
            }
        }
    }

    fn open<W: ?Sized + Write>(&mut self, w: &mut W, bracket: &[u8]) -> io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(bracket)
    }

    fn close<W: ?Sized + Write>(&mut self, w: &mut W, bracket: &[u8]) -> io::Result<()> {
        self.depth -= 1;
        if self.has_value {
            self.new_line(w, false)?;
        }
        w.write_all(bracket)
    }
}

impl serde_json::ser::Formatter for Pretty {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, b"[")
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, b"]")
    }
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.new_line(w, !first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, b"{")
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, b"}")
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.new_line(w, !first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// The JSON report as a string.
pub fn to_json(report: &Report) -> String {
    let mut buf = Vec::new();
    write_json(report, &mut buf).expect("writing to memory cannot fail");
    String::from_utf8(buf).expect("serde_json writes UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(value: &serde_json::Value) -> (String, String) {
        let mut ours = Vec::new();
        value
            .serialize(&mut serde_json::Serializer::with_formatter(
                &mut ours,
                Pretty::default(),
            ))
            .unwrap();
        let theirs = serde_json::to_string_pretty(value).unwrap();
        (String::from_utf8(ours).unwrap(), theirs)
    }

    #[test]
    fn pretty_matches_serde_json_byte_for_byte() {
        let value = serde_json::json!({
            "empty_object": {},
            "empty_array": [],
            "scalars": [1, -2.5, "three", null, true],
            "nested": {"a": [{"b": {"c": []}}, {}], "d": "\"quoted\"\n"},
        });
        let (ours, theirs) = both(&value);
        assert_eq!(ours, theirs);
    }

    #[test]
    fn pretty_indents_beyond_its_prepared_depth() {
        let mut value = serde_json::json!({"leaf": [1, 2]});
        for level in 0..40 {
            value = serde_json::json!({ format!("level{level}"): value, "after": level });
        }
        let (ours, theirs) = both(&value);
        assert_eq!(ours, theirs);
    }
}
