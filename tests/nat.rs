//! A container host's `tcpdump -i any`: PyMongo and the Node.js driver in a network
//! namespace whose traffic the host masquerades (nftables) on its way to the test server's
//! replica set, recorded by `scripts/lab/record-nat.sh` on both sides of the NAT at once
//! (`testdata/nat/any.pcap`) and on the application's side only (`app.pcap`). Each
//! connection appears twice in the first, under other addresses, with the same sequence
//! numbers. Before mirrors were recognised, the uplink's copies read as a second client
//! (10.200.2.1) with as many connections again.

use std::path::Path;

use conn_attrib::attribute::Options;
use conn_attrib::report::Meta;
use conn_attrib::{analyze_path, conclude, AnalyzerConfig};
use serde_json::Value;

fn report(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/nat")
        .join(name);
    let analysis = analyze_path(path.to_str().unwrap(), AnalyzerConfig::default()).unwrap();
    let r = conclude(analysis, Options::default(), Meta::default());
    serde_json::from_str(&conn_attrib::report::to_json(&r)).unwrap()
}

/// Each connection as (client, server, class), and each client as (id, counts, verdict).
fn reading(r: &Value) -> (Vec<[String; 3]>, Vec<[String; 3]>) {
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    let connections = r["connections"].as_array().unwrap().iter();
    let clients = r["clients"].as_array().unwrap().iter();
    (
        connections
            .map(|c| [text(&c["client"]), text(&c["server"]), text(&c["class"])])
            .collect(),
        clients
            .map(|c| [text(&c["id"]), c["counts"].to_string(), text(&c["verdict"])])
            .collect(),
    )
}

#[test]
fn both_sides_of_a_nat_read_as_the_application_side_alone() {
    let (any, app) = (report("any.pcap"), report("app.pcap"));
    let (connections, clients) = reading(&app);
    assert_eq!(connections.len(), 20, "{connections:?}");
    assert_eq!(clients.len(), 2, "{clients:?}");
    assert_eq!(reading(&any), (connections.clone(), clients));
    assert!(connections.iter().all(|c| c[0].starts_with("10.200.1.2:")));

    assert_eq!(any["input"]["nat_duplicates"], 20);
    assert!(app["input"]["nat_duplicates"].is_null());
    let said = |r: &Value| {
        r["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["kind"] == "nat-duplicates")
    };
    assert!(said(&any));
    assert!(!said(&app));
}
