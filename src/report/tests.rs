use super::*;
use crate::analyzer::{Analysis, InputSummary};
use crate::attribute::{attribute, Options};
use crate::classify::classify;
use crate::observe::fixture::{boxed, conn};
use crate::observe::NodeStats;

fn sample() -> Report {
    let n = "10.0.0.9:27017";
    let conns = vec![
        conn(1, "10.0.0.5:50001", n)
            .with_handshake("orders-api", "PyMongo", "4.20.0")
            .with_awaitable(2, true, 2),
        conn(2, "10.0.0.5:50002", n)
            .with_handshake("orders-api", "PyMongo", "4.20.0")
            .with_plain_hellos(2, 10.0),
        conn(3, "10.0.0.5:50003", n)
            .with_handshake("orders-api", "PyMongo", "4.20.0")
            .with_auth()
            .with_ops("insert", 3),
    ];
    let analysis = Analysis {
        input: InputSummary {
            path: "capture.pcap".into(),
            packets: 10,
            bytes: 1000,
            first_ts: Some(1000.0),
            last_ts: Some(1030.0),
            complete: true,
            ..InputSummary::default()
        },
        warnings: vec![],
        connections: boxed(&conns),
        nodes: NodeStats::default(),
        in_flight: Default::default(),
        table: Default::default(),
    };
    let v = classify(&boxed(&conns), None);
    let a = attribute(
        boxed(&conns),
        v,
        Options::default(),
        &Default::default(),
        &Default::default(),
        &[],
    );
    Report::new(
        analysis,
        a,
        Meta {
            tool: "conn-attrib".into(),
            version: "0.1.0".into(),
            command_line: "conn-attrib capture.pcap".into(),
        },
    )
}

#[test]
fn contract_field_names_and_types() {
    let v: serde_json::Value = serde_json::from_str(&to_json(&sample())).unwrap();
    assert_eq!(v["schema"], "conn-attrib/1");
    for f in ["path", "packets", "bytes", "first_ts", "last_ts"] {
        assert!(v["input"].get(f).is_some(), "input.{f}");
    }
    assert!(v["warnings"].is_array());
    let c = &v["connections"][0];
    for f in [
        "client",
        "server",
        "class",
        "client_id",
        "app_name",
        "driver",
        "opened",
        "closed",
        "evidence",
    ] {
        assert!(c.get(f).is_some(), "connections[].{f}");
    }
    assert_eq!(c["client"], "10.0.0.5:50001");
    assert_eq!(c["class"], "streaming-monitor");
    assert_eq!(c["client_id"], "10.0.0.5|orders-api|PyMongo 4.20.0");
    assert_eq!(c["driver"]["name"], "PyMongo");
    assert_eq!(c["driver"]["version"], "4.20.0");
    assert!(c["closed"].is_null());
    assert!(c["opened"].is_number());
    assert_eq!(v["connections"][1]["class"], "rtt-monitor");
    assert_eq!(v["connections"][2]["class"], "pool");
    let k = &v["clients"][0];
    for f in [
        "id",
        "host",
        "app_name",
        "driver",
        "mode",
        "mongo_clients",
        "nodes",
        "counts",
        "expected",
        "verdict",
    ] {
        assert!(k.get(f).is_some(), "clients[].{f}");
    }
    assert_eq!(k["mode"], "streaming");
    assert_eq!(k["mongo_clients"], 1);
    for f in [
        "streaming-monitor",
        "rtt-monitor",
        "polling-monitor",
        "pool",
        "single-threaded",
        "internal",
        "unknown",
        "total",
    ] {
        assert!(k["counts"][f].is_u64(), "counts.{f}");
    }
    assert_eq!(k["counts"]["total"], 3);
    for f in ["formula", "min_pool_size", "total"] {
        assert!(k["expected"].get(f).is_some(), "expected.{f}");
    }
    assert_eq!(k["verdict"], "matches: (1 + 2) x 1 node = 3");
}

#[test]
fn text_and_markdown_carry_the_same_verdict() {
    let r = sample();
    let text = to_text(&r);
    let md = to_markdown(&r);
    for out in [&text, &md] {
        assert!(out.contains("matches: (1 + 2) x 1 node = 3"), "{out}");
        assert!(out.contains("orders-api"));
    }
    assert!(text.contains("CLIENTS") && text.contains("NODES") && text.contains("CONNECTIONS"));
    assert!(md.starts_with("# MongoDB connection attribution"));
    assert!(md.contains("| host | app |"));
}

#[test]
fn html_ticks_are_thinned_past_the_cap_and_say_so_and_json_has_none() {
    let mut r = sample();
    let rtt = r
        .attribution
        .connections
        .iter_mut()
        .find(|c| c.obs.id == 2)
        .unwrap();
    // 200 hellos 0.1 s apart: past 64 and again past 128 kept, one in four is drawn.
    for i in 0..200 {
        rtt.obs.hello_ticks.record(i as f64 * 0.1);
    }
    let html = to_html(&r);
    assert!(
        html.contains("data-ticks=\"50\" data-hellos=\"200\" data-every=\"4\""),
        "{html}"
    );
    assert!(html.contains("<title>200 hellos; every 4th drawn</title>"));
    assert!(html.contains("id=\"ticks-thinned\">1 connection sent more than 64 hellos"));
    let json = to_json(&r);
    assert!(
        !json.contains("tick"),
        "ticks stay out of the JSON contract"
    );
}
