use super::*;
use crate::classify::classify;
use crate::observe::fixture::{boxed, conn};

const NODES: [&str; 3] = ["10.0.0.9:27017", "10.0.0.10:27017", "10.0.0.11:27017"];

/// One MongoClient in streaming mode: monitor + RTT + `pool` idle authenticated pool
/// connections per node, on the host `host`.
fn streaming_client(host: &str, first_port: u16, pool: usize, id: &mut u64) -> Vec<Observations> {
    let mut out = Vec::new();
    let mut port = first_port;
    let mut next = |server: &str| {
        *id += 1;
        port += 1;
        conn(*id, &format!("{host}:{port}"), server).with_handshake(
            "orders-api",
            "PyMongo",
            "4.20.0",
        )
    };
    for node in NODES {
        out.push(next(node).with_awaitable(3, true, 3));
        out.push(next(node).with_plain_hellos(3, 10.0));
        for _ in 0..pool {
            out.push(next(node).with_auth());
        }
    }
    out
}

fn run(conns: Vec<Observations>, opts: Options) -> Attribution {
    let v = classify(&boxed(&conns), None);
    attribute(
        boxed(&conns),
        v,
        opts,
        &Default::default(),
        &Default::default(),
        &[],
    )
}

#[test]
fn textbook_streaming_client_matches() {
    let mut id = 0;
    let a = run(
        streaming_client("10.0.0.5", 50000, 5, &mut id),
        Options::default(),
    );
    assert_eq!(a.clients.len(), 1);
    let c = &a.clients[0];
    assert_eq!(c.id, "10.0.0.5|orders-api|PyMongo 4.20.0");
    assert_eq!(c.mode, Mode::Streaming);
    assert_eq!(c.mongo_clients, 1);
    assert_eq!(c.counts.streaming_monitor, 3);
    assert_eq!(c.counts.rtt_monitor, 3);
    assert_eq!(c.counts.pool, 15);
    assert_eq!(c.counts.total, 21);
    let e = c.expected.as_ref().unwrap();
    assert_eq!((e.min_pool_size, e.total), (Some(5), 21));
    assert_eq!(e.formula, "(minPoolSize + 2) x nodes");
    assert_eq!(c.verdict, "matches: (5 + 2) x 3 nodes = 21");
}

#[test]
fn lambda_projection_reproduces_the_well_known_case() {
    let mut id = 0;
    let opts = Options {
        min_pool_size: Some(5),
        instances: Some(150),
        max_connections: Some(3000),
    };
    let a = run(streaming_client("10.0.0.5", 50000, 5, &mut id), opts);
    let p = a.clients[0].projection.as_ref().unwrap();
    assert_eq!(p.total, 3150);
    assert_eq!(p.over_limit, Some(true));
    assert!(
        p.summary.contains("21 connections x 150 instances = 3150"),
        "{}",
        p.summary
    );
    assert!(
        p.summary.contains("over the 3000-connection limit"),
        "{}",
        p.summary
    );
}

#[test]
fn extra_monitor_sets_are_extra_mongo_clients() {
    let mut id = 0;
    let mut conns = streaming_client("10.0.0.5", 50000, 1, &mut id);
    conns.extend(streaming_client("10.0.0.5", 51000, 1, &mut id));
    let a = run(conns, Options::default());
    let c = &a.clients[0];
    assert_eq!(c.mongo_clients, 2);
    assert_eq!(c.counts.total, 18);
    assert_eq!(c.expected.as_ref().unwrap().total, 18);
    assert!(
        c.verdict
            .starts_with("matches: (1 + 2) x 3 nodes x 2 MongoClients = 18"),
        "{}",
        c.verdict
    );
    assert!(c
        .advice
        .iter()
        .any(|a| a.contains("one MongoClient per process")));
}

#[test]
fn pool_growth_is_explained_with_its_peak() {
    let mut id = 0;
    let mut conns = streaming_client("10.0.0.5", 50000, 2, &mut id);
    for i in 0..3 {
        conns.push(
            conn(100 + i, &format!("10.0.0.5:{}", 52000 + i), NODES[0])
                .with_handshake("orders-api", "PyMongo", "4.20.0")
                .with_auth()
                .with_ops("find", 10),
        );
    }
    let a = run(conns, Options::default());
    let c = &a.clients[0];
    assert_eq!(c.expected.as_ref().unwrap().total, 12);
    assert_eq!(c.counts.total, 15);
    assert!(
        c.verdict
            .starts_with("exceeds: 15 connections vs (2 + 2) x 3 nodes = 12"),
        "{}",
        c.verdict
    );
    assert!(
        c.verdict
            .contains("5 pool connections open at once to 10.0.0.9:27017"),
        "{}",
        c.verdict
    );
}

#[test]
fn churn_is_counted_apart_from_concurrency() {
    let mut id = 0;
    let mut conns = streaming_client("10.0.0.5", 50000, 0, &mut id);
    // Three pool connections to one node, one after another.
    for i in 0..3 {
        let t = 1000.0 + 10.0 * i as f64;
        conns.push(
            conn(200 + i, &format!("10.0.0.5:{}", 53000 + i), NODES[0])
                .with_handshake("orders-api", "PyMongo", "4.20.0")
                .with_auth()
                .with_ops("find", 1)
                .lived(t, Some(t + 5.0)),
        );
    }
    let c = &run(
        conns,
        Options {
            min_pool_size: Some(0),
            ..Options::default()
        },
    )
    .clients[0];
    assert!(
        c.deviations.iter().any(|d| d.starts_with(
            "pool churn: 3 pool connections over the capture but at most 1 open at once"
        )),
        "{:?}",
        c.deviations
    );
}

#[test]
fn polling_client_formula_and_reason() {
    let mut conns = Vec::new();
    for (i, node) in NODES.iter().enumerate() {
        let mut m = conn(i as u64, &format!("10.0.0.6:{}", 40000 + i), node)
            .with_handshake("billing", "PyMongo", "4.0")
            .with_plain_hellos(3, 10.0);
        std::sync::Arc::make_mut(m.server_info.as_mut().unwrap()).max_wire_version = Some(8);
        conns.push(m);
        let mut pool = conn(10 + i as u64, &format!("10.0.0.6:{}", 41000 + i), node)
            .with_handshake("billing", "PyMongo", "4.0")
            .with_auth();
        std::sync::Arc::make_mut(pool.server_info.as_mut().unwrap()).max_wire_version = Some(8);
        conns.push(pool);
    }
    let c = &run(conns, Options::default()).clients[0];
    assert_eq!(c.mode, Mode::Polling);
    assert_eq!(
        c.verdict.split(';').next().unwrap(),
        "matches: (1 + 1) x 3 nodes = 6"
    );
    assert!(
        c.deviations.iter().any(|d| d.contains("older than 4.4")),
        "{:?}",
        c.deviations
    );
}

#[test]
fn connections_without_handshake_join_the_hosts_only_client() {
    let mut id = 0;
    let mut conns = streaming_client("10.0.0.5", 50000, 1, &mut id);
    conns.push(
        conn(99, "10.0.0.5:59999", NODES[0])
            .without_syn()
            .with_ops("find", 2),
    );
    let a = run(conns, Options::default());
    assert_eq!(a.clients.len(), 1);
    assert_eq!(a.clients[0].opened_before_capture, 1);
    assert_eq!(
        a.connections.last().unwrap().client_id,
        "10.0.0.5|orders-api|PyMongo 4.20.0"
    );
}

#[test]
fn growth_names_the_peak_of_operations_in_flight() {
    let mut id = 0;
    let mut conns = streaming_client("10.0.0.5", 50000, 1, &mut id);
    for i in 0..2 {
        conns.push(
            conn(300 + i, &format!("10.0.0.5:{}", 54000 + i), NODES[0])
                .with_handshake("orders-api", "PyMongo", "4.20.0")
                .with_ops("find", 3),
        );
    }
    let v = classify(&boxed(&conns), None);
    let mut peaks = InFlightPeaks::new();
    peaks.insert(
        (
            "10.0.0.5".parse().unwrap(),
            Some("orders-api".into()),
            NODES[0].parse().unwrap(),
        ),
        3,
    );
    let c = &attribute(
        boxed(&conns),
        v,
        Options::default(),
        &peaks,
        &Default::default(),
        &[],
    )
    .clients[0];
    assert!(
        c.verdict
            .contains("with up to 3 operations in flight at once"),
        "{}",
        c.verdict
    );
}

#[test]
fn folding_classified_connections_matches_folding_an_attribution() {
    // Two named clients on one host, plus a handshake-less connection on a host with a
    // single named client (it joins that client), plus one on a host of its own.
    let mut id = 0;
    let mut conns = streaming_client("10.0.0.5", 50000, 2, &mut id);
    conns.extend(streaming_client("10.0.0.6", 51000, 1, &mut id));
    conns.push(
        conn(900, "10.0.0.6:52000", NODES[0])
            .without_syn()
            .with_auth(),
    );
    conns.push(conn(901, "10.0.0.7:53000", NODES[1]).without_syn());
    let boxed_conns = boxed(&conns);
    let verdicts = classify(&boxed_conns, None);
    let ids: std::collections::HashSet<u64> = conns
        .iter()
        .map(|o| o.id)
        .filter(|id| id % 3 == 0 || *id >= 900)
        .collect();

    let mut light = Released::default();
    light.fold_classified(&boxed_conns, &verdicts, &ids);
    let attribution = attribute(
        boxed(&conns),
        verdicts,
        Options::default(),
        &Default::default(),
        &Default::default(),
        &[],
    );
    let mut full = Released::default();
    full.fold(&attribution, &ids);
    assert_eq!(light.connections, ids.len() as u64);
    assert_eq!(light, full);
}

#[test]
fn libmongoc_pool_below_a_given_min_pool_size_is_explained() {
    // A pooled libmongoc client with streaming monitors and one pool connection per node,
    // checked against minPoolSize 5: libmongoc never pre-opens them.
    let mut conns = Vec::new();
    let mut id = 0;
    for node in NODES {
        for _ in 0..3 {
            id += 1;
            conns.push(
                conn(id, &format!("10.0.0.8:{}", 40000 + id), node).with_handshake(
                    "inventory",
                    "mongoc",
                    "1.30.4",
                ),
            );
        }
        let n = conns.len();
        conns[n - 3] = conns[n - 3].clone().with_awaitable(3, true, 3);
        conns[n - 2] = conns[n - 2].clone().with_plain_hellos(3, 10.0);
        conns[n - 1] = conns[n - 1].clone().with_auth();
    }
    let a = run(
        conns,
        Options {
            min_pool_size: Some(5),
            ..Options::default()
        },
    );
    let c = &a.clients[0];
    assert_eq!(c.mode, Mode::Streaming);
    assert!(c.verdict.starts_with("below"), "{}", c.verdict);
    assert!(c.verdict.contains("libmongoc-based pool"), "{}", c.verdict);

    // The same numbers from PyMongo (which does pre-open minPoolSize) get no such excuse.
    let mut id = 0;
    let a = run(
        streaming_client("10.0.0.5", 50000, 1, &mut id),
        Options {
            min_pool_size: Some(5),
            ..Options::default()
        },
    );
    assert!(
        !a.clients[0].verdict.contains("libmongoc"),
        "{}",
        a.clients[0].verdict
    );
}

#[test]
fn paired_polling_monitors_of_an_unnamed_driver_may_be_one_go_client() {
    // Two polling monitors per node and no handshake (a cut capture, keyless TLS): two
    // MongoClients, or one Go driver 1.4 to 1.12 client with its RTT monitors.
    let polling = |handshake: bool| {
        let mut conns = Vec::new();
        for (i, node) in NODES.iter().enumerate() {
            for k in 0..2u64 {
                let id = i as u64 * 2 + k;
                let mut c = conn(id, &format!("10.0.0.6:{}", 40000 + id), node)
                    .without_syn()
                    .with_plain_hellos(4, 2.0);
                if handshake {
                    c = c.with_handshake("billing", "PyMongo", "4.20.0");
                }
                conns.push(c);
            }
        }
        run(conns, Options::default()).clients.remove(0)
    };
    let unnamed = polling(false);
    assert_eq!((unnamed.mode, unnamed.mongo_clients), (Mode::Polling, 2));
    assert!(
        unnamed
            .deviations
            .iter()
            .any(|d| d.contains("or 1 MongoClient of a driver that keeps an RTT connection")),
        "{:?}",
        unnamed.deviations
    );
    // A driver the handshake names as another is two MongoClients, said plainly.
    let named = polling(true);
    assert_eq!(named.mongo_clients, 2);
    assert!(!named.deviations.iter().any(|d| d.contains("Go driver")));
}
