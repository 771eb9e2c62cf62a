//! Every public capture in ../shared/pcaps/public is read, and concrete facts about it are
//! asserted. Each fact was first established independently with tshark, e.g.
//!   tshark -r F -d tcp.port==27017,mongo -q -z conv,tcp
//!   tshark -r F -d tcp.port==27017,mongo -Y mongo -T fields -e tcp.srcport -e mongo.opcode
//!          -e mongo.full_collection_name -e mongo.element.name -e mongo.element.value.string
//! (the command and its output are summarised next to each test).

mod common;

use conn_attrib::observe::Observations;
use conn_attrib::{analyze_path, Analysis, AnalyzerConfig};

/// The analysis of a shared capture; `None` when ../shared is not beside the checkout.
fn run(name: &str) -> Option<Analysis> {
    run_with(name, AnalyzerConfig::default())
}

fn run_with(name: &str, config: AnalyzerConfig) -> Option<Analysis> {
    let path = common::shared_pcap(name)?;
    Some(analyze_path(path.to_str().unwrap(), config).expect("readable"))
}

fn only(a: &Analysis) -> &Observations {
    assert_eq!(a.connections.len(), 1, "{:#?}", a.connections);
    &a.connections[0]
}

fn legacy(o: &Observations, opcode: &str) -> u64 {
    o.legacy_opcodes
        .iter()
        .find(|c| &*c.name == opcode)
        .map_or(0, |c| c.count)
}

/// tshark: 1 conversation 10.50.1.138:43250 <-> 10.50.1.133:27017; OP_QUERY isMaster with
/// client {application: "MongoDB Shell", driver: "MongoDB Internal Client" 4.4.25} and
/// speculativeAuthenticate (SCRAM-SHA-256), OP_REPLY, then 28 OP_MSG: saslContinue x2,
/// whatsmyuri, buildinfo, getLog x2, isMaster(forShell) x3, buildInfo x2, getCmdLineOpts,
/// replSetGetStatus, endSessions.
#[test]
fn deepflow_shell_session() {
    let Some(a) = run("deepflow_mongo.pcap") else {
        return;
    };
    assert!(a.input.complete);
    assert_eq!(a.input.packets, 46);
    let o = only(&a);
    assert_eq!(o.client.to_string(), "10.50.1.138:43250");
    assert_eq!(o.server.to_string(), "10.50.1.133:27017");
    let hs = o.handshake.as_ref().expect("handshake");
    assert_eq!(hs.command, "isMaster");
    assert!(hs.legacy_op_query);
    assert_eq!(hs.app_name.as_deref(), Some("MongoDB Shell"));
    assert_eq!(hs.driver_name.as_deref(), Some("MongoDB Internal Client"));
    assert_eq!(hs.driver_version.as_deref(), Some("4.4.25"));
    assert!(hs.speculative_authenticate);
    assert_eq!(hs.sasl_supported_mechs.as_deref(), Some("admin.admin"));
    assert_eq!(o.hello.requests, 4, "handshake + 3 isMaster forShell");
    assert_eq!(o.hello.awaitable, 0);
    assert_eq!(o.client_traffic.messages, 15);
    assert_eq!(o.server_traffic.messages, 15);
    assert_eq!(o.command_count("getLog"), 2);
    assert_eq!(
        o.command_count("buildInfo") + o.command_count("buildinfo"),
        3
    );
    assert_eq!(o.command_count("endSessions"), 1);
    assert_eq!(
        o.command_count("saslContinue"),
        0,
        "authentication is not an operation"
    );
    let server = o.server_info.as_ref().expect("hello reply");
    assert!(server.topology_version, "4.4 replies carry topologyVersion");
}

/// The legacy `mongo` shell is built on the server's DBClientConnection and names its
/// driver as mongod does ("MongoDB Internal Client"), but with the application name
/// "MongoDB Shell" and no internalClient: a person's session. One connection that checks
/// (isMaster forShell before each prompt) between its commands: single-threaded, 1 x 1
/// node. The mongoreplay capture's shell (3.3) sends no isMaster after its handshake: not
/// internal either.
#[test]
fn the_legacy_mongo_shell_is_a_client_not_a_server() {
    use conn_attrib::attribute::Options;
    use conn_attrib::classify::Class;
    use conn_attrib::conclude;
    use conn_attrib::report::Meta;
    for (file, want) in [
        ("deepflow_mongo.pcap", Class::SingleThreaded),
        ("mongo-tools_mongoreplay_compressed.pcap", Class::Pool),
    ] {
        let Some(a) = run(file) else {
            return;
        };
        let report = conclude(a, Options::default(), Meta::default());
        let conns = &report.attribution.connections;
        assert_eq!(conns.len(), 1, "{file}");
        assert_eq!(
            conns[0].verdict.class, want,
            "{file}: {}",
            conns[0].verdict.evidence
        );
    }
}

/// tshark: one OP_MSG find from 10.187.237.132:48914 to port 3717 and its reply. No SYN,
/// and 3717 is not a MongoDB default port: the request/reply direction decides.
#[test]
fn deepflow_msg_on_a_custom_port_mid_stream() {
    let Some(a) = run("deepflow_mongo-msg.pcap") else {
        return;
    };
    let o = only(&a);
    assert_eq!(o.client.to_string(), "10.187.237.132:48914");
    assert_eq!(o.server.to_string(), "10.152.88.231:3717");
    assert!(!o.syn_seen);
    assert_eq!(o.command_count("find"), 1);
    assert_eq!(o.op_latency_ms.count, 1);
    assert!(o.handshake.is_none());
}

/// tshark: OP_QUERY whatsmyuri, getnonce, authenticate (MONGODB-CR), replSetGetStatus with
/// OP_REPLY each; 1 conversation 192.168.2.7:48879 -> 192.168.2.2:27017.
#[test]
fn john_mongodb_cr_authentication() {
    let Some(a) = run("john-samples_mongodb-sa-sa-1.pcap") else {
        return;
    };
    let o = only(&a);
    assert_eq!(o.client.to_string(), "192.168.2.7:48879");
    assert_eq!(o.client_traffic.messages, 4);
    assert_eq!(o.server_traffic.messages, 4);
    assert_eq!(o.auth.attempts, 1, "authenticate");
    assert_eq!(o.command_count("whatsmyuri"), 1);
    assert_eq!(o.command_count("replSetGetStatus"), 1);
    for f in [
        "john-samples_mongodb-longusername-longpassword-2.pcap",
        "john-samples_mongodb-sa-longpassword-2.pcap",
    ] {
        let Some(a) = run(f) else {
            return;
        };
        let o = only(&a);
        assert_eq!(
            (o.client_traffic.messages, o.server_traffic.messages),
            (3, 3),
            "{f}"
        );
    }
}

/// tshark: OP_QUERY isMaster offering compression ["snappy"], then 11 OP_COMPRESSED
/// (reply, whatsmyuri, buildinfo, insert, count, update … and replies).
#[test]
fn mongoreplay_compressed_messages_are_decompressed() {
    let Some(a) = run("mongo-tools_mongoreplay_compressed.pcap") else {
        return;
    };
    let o = only(&a);
    let hs = o.handshake.as_ref().expect("handshake");
    assert_eq!(hs.compression, vec!["snappy".to_string()]);
    assert_eq!(hs.driver_name.as_deref(), Some("MongoDB Internal Client"));
    assert_eq!(o.compression, Some("snappy"));
    assert_eq!(o.client_traffic.messages + o.server_traffic.messages, 12);
    assert_eq!(o.command_count("insert"), 1);
    assert_eq!(o.command_count("count"), 1);
    assert_eq!(o.command_count("update"), 1);
    assert_eq!(o.client_traffic.malformed + o.server_traffic.malformed, 0);
}

/// tshark (-d tcp.port==20000,mongo): BSD NULL link type; 12 OP_COMMAND (insert,
/// getlasterror, serverStatus …) and 12 OP_COMMANDREPLY between 127.0.0.1:56369 and :20000.
#[test]
fn op_command_on_null_link_type() {
    let mut config = AnalyzerConfig::default();
    config.observer.server_ports.push(20000);
    let Some(a) = run_with("mongo-tools_op_command_2inserts.pcap", config) else {
        return;
    };
    let o = only(&a);
    assert_eq!(o.client.to_string(), "127.0.0.1:56369");
    assert_eq!(o.server.to_string(), "127.0.0.1:20000");
    assert_eq!(o.client_traffic.messages, 12);
    assert_eq!(o.server_traffic.messages, 12);
    assert!(o.command_count("insert") >= 2);
    assert!(o.command_count("getlasterror") >= 1);
}

/// tshark: five handshakes or first commands, requests only: PyMongo 3.4.0 (ismaster),
/// getnonce, isMaster, MongoDB Shell 3.4.0, getnonce on port 30000; duplicated SYNs.
#[test]
fn ndpi_requests_only() {
    let mut c = AnalyzerConfig::default();
    c.observer.server_ports.push(30000);
    let Some(a) = run_with("nDPI_mongodb.pcap", c) else {
        return;
    };
    assert_eq!(a.connections.len(), 5);
    let drivers: Vec<_> = a
        .connections
        .iter()
        .filter_map(|o| o.handshake.as_ref().and_then(|h| h.driver_name.clone()))
        .collect();
    assert!(drivers.contains(&"PyMongo".to_string()), "{drivers:?}");
    assert!(
        drivers.contains(&"MongoDB Internal Client".to_string()),
        "{drivers:?}"
    );
    // getnonce opens MONGODB-CR authentication: it is not counted as an operation.
    let getnonce = a
        .connections
        .iter()
        .filter(|o| o.first_command.as_deref() == Some("getnonce"))
        .count();
    assert_eq!(getnonce, 2);
    assert!(a.connections.iter().all(|o| o.operations() == 0));
    assert!(a
        .connections
        .iter()
        .all(|o| o.syn_seen && o.server_traffic.messages == 0));
    assert!(a.connections.iter().any(|o| o.server.port() == 30000));
}

/// tshark: a TLS-like session on port 443 that nDPI once took for MongoDB. Not MongoDB:
/// no connection is reported, nothing is called a MongoDB message.
#[test]
fn ndpi_false_positive_is_not_mongodb() {
    let Some(a) = run("nDPI_mongo_false_positive.pcapng") else {
        return;
    };
    assert!(a.connections.is_empty(), "{:#?}", a.connections);
    assert_eq!(a.input.foreign_flows, 1);
    assert_eq!(a.input.packets, 26);
}

/// tshark: 1906 packets, one conversation 127.0.0.1:38709 -> :27017, legacy opcodes:
/// OP_INSERT 1235, OP_QUERY 11, OP_REPLY 12, OP_UPDATE 1, OP_GET_MORE 1, OP_DELETE 2,
/// OP_KILL_CURSORS 1.
#[test]
fn wireshark_legacy_opcodes() {
    let Some(a) = run("wireshark-wiki_SampleCaptures_mongodb.pcap") else {
        return;
    };
    assert_eq!(a.input.packets, 1906);
    let o = only(&a);
    assert_eq!(o.client.to_string(), "127.0.0.1:38709");
    assert_eq!(legacy(o, "OP_INSERT"), 1235);
    assert_eq!(legacy(o, "OP_UPDATE"), 1);
    assert_eq!(legacy(o, "OP_GET_MORE"), 1);
    assert_eq!(legacy(o, "OP_DELETE"), 2);
    assert_eq!(legacy(o, "OP_KILL_CURSORS"), 1);
    assert_eq!(o.server_traffic.messages, 12);
}
