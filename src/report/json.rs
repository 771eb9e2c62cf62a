//! The JSON report, `conn-attrib/1`. Contract fields are written by name here, in one
//! place, so a rename cannot slip in through a struct field; extra fields are additions.

use serde_json::{json, Value};

use super::{Report, SCHEMA};
use crate::attribute::{Attributed, Client};

fn connection(c: &Attributed) -> Value {
    let hs = c.obs.handshake.as_ref();
    let driver = hs.and_then(|h| {
        h.driver_name.as_ref().map(
            |name| json!({ "name": name, "version": h.driver_version.clone().unwrap_or_default() }),
        )
    });
    json!({
        "client": c.obs.client.to_string(),
        "server": c.obs.server.to_string(),
        "class": c.verdict.class.name(),
        "client_id": c.client_id,
        "app_name": hs.and_then(|h| h.app_name.clone()),
        "driver": driver,
        "opened": c.obs.opened,
        "closed": c.obs.closed,
        "evidence": c.verdict.evidence,
        // Additions to the contract.
        "confidence": c.verdict.confidence,
        "observations": c.obs,
    })
}

fn client(c: &Client) -> Value {
    json!({
        "id": c.id,
        "host": c.host,
        "app_name": c.app_name,
        "driver": c.driver,
        "mode": c.mode.name(),
        "mongo_clients": c.mongo_clients,
        "nodes": c.nodes,
        "counts": c.counts,
        "expected": c.expected.as_ref().map(|e| json!({
            "formula": e.formula,
            "min_pool_size": e.min_pool_size,
            "total": e.total,
            "per_node": e.per_node,
            "min_pool_size_source": e.min_pool_size_source,
        })),
        "verdict": c.verdict,
        // Additions to the contract.
        "deviations": c.deviations,
        "advice": c.advice,
        "platform": c.platform,
        "env": c.env,
        "opened_before_capture": c.opened_before_capture,
        "peak_pool_per_node": c.peak_pool_per_node,
        "projection": c.projection,
    })
}

pub fn to_value(report: &Report) -> Value {
    let input = &report.input;
    json!({
        "schema": SCHEMA,
        "input": {
            "path": input.path,
            "packets": input.packets,
            "bytes": input.bytes,
            "first_ts": input.first_ts,
            "last_ts": input.last_ts,
            // Additions to the contract.
            "complete": input.complete,
            "tcp_segments": input.tcp_segments,
            "non_tcp_packets": input.non_tcp_packets,
            "ip_fragments": input.ip_fragments,
            "undecodable_packets": input.undecodable_packets,
            "tcp_connections": input.tcp_connections,
            "foreign_flows": input.foreign_flows,
            "peak_open_connections": input.peak_open_connections,
            "reused_ports": input.reused_ports,
            "dropped": input.dropped,
        },
        "warnings": report.warnings,
        "connections": report.attribution.connections.iter().map(connection).collect::<Vec<_>>(),
        "clients": report.attribution.clients.iter().map(client).collect::<Vec<_>>(),
        "nodes": report.nodes,
        "tool": report.meta,
    })
}

pub fn to_json(report: &Report) -> String {
    let mut s = serde_json::to_string_pretty(&to_value(report)).expect("JSON values serialise");
    s.push('\n');
    s
}
