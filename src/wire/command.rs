//! What a hello/isMaster request and a hello reply say, read lazily from the raw document.
//!
//! Drivers differ in BSON types (e.g. `maxAwaitTimeMS` as int32 or int64, `ok` as double
//! or int32, legacy `isMaster: 1` vs `hello: true`), so every number accepts any numeric
//! type and every flag accepts a boolean or a number.

use bson::RawBsonRef;

use super::elements::{Doc, Element};

use super::header::OpCode;
use super::message::{Body, Message};

/// `hello`, and the legacy `isMaster` / `ismaster` spellings.
pub fn is_hello_name(name: &str) -> bool {
    matches!(name, "hello" | "isMaster" | "ismaster")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopologyVersion {
    pub process_id: [u8; 12],
    pub counter: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientMetadata<'a> {
    pub app_name: Option<&'a str>,
    pub driver_name: Option<&'a str>,
    pub driver_version: Option<&'a str>,
    pub os_type: Option<&'a str>,
    pub os_name: Option<&'a str>,
    pub platform: Option<&'a str>,
    /// `client.env.name`: the FaaS or container environment (e.g. "aws.lambda").
    pub env_name: Option<&'a str>,
}

#[derive(Clone, Copy, Debug)]
pub struct HelloRequest<'a> {
    /// The command as spelled: "hello", "isMaster" or "ismaster".
    pub command: &'a str,
    pub legacy_op_query: bool,
    pub hello_ok: bool,
    pub topology_version: Option<TopologyVersion>,
    pub max_await_time_ms: Option<i64>,
    pub load_balanced: bool,
    pub compression: Option<Doc<'a>>,
    pub sasl_supported_mechs: Option<&'a str>,
    pub speculative_authenticate: bool,
    pub internal_client: bool,
    /// The `client` document as sent; [`HelloRequest::client_metadata`] reads it. Left
    /// unread here: a driver sends the same one on every connection, so its reader
    /// recognises most by their bytes (`observe`'s handshake memo).
    pub client: Option<Doc<'a>>,
}

impl<'a> HelloRequest<'a> {
    /// A `command` (hello, isMaster…) over OP_MSG with none of the optional fields.
    pub fn named(command: &'a str) -> HelloRequest<'a> {
        HelloRequest {
            command,
            legacy_op_query: false,
            hello_ok: false,
            topology_version: None,
            max_await_time_ms: None,
            load_balanced: false,
            compression: None,
            sasl_supported_mechs: None,
            speculative_authenticate: false,
            internal_client: false,
            client: None,
        }
    }

    /// The streaming protocol's awaitable hello (server-monitoring spec): it carries the
    /// server's last topologyVersion and how long the server may hold the reply.
    pub fn is_awaitable(&self) -> bool {
        self.topology_version.is_some() && self.max_await_time_ms.is_some()
    }
    /// The handshake's `client` metadata (the handshake spec's driver, OS, platform…).
    pub fn client_metadata(&self) -> Option<ClientMetadata<'a>> {
        self.client.map(client_metadata)
    }
    pub fn compressors(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.compression.into_iter().flat_map(Doc::strings)
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct HelloReply<'a> {
    pub ok: Option<f64>,
    pub errmsg: Option<&'a str>,
    pub is_writable_primary: Option<bool>,
    pub secondary: Option<bool>,
    pub arbiter_only: Option<bool>,
    /// `isreplicaset`: a replica-set member without a valid config (removed, or not yet
    /// initiated) says so instead of naming a set.
    pub is_replica_set: bool,
    pub hidden: Option<bool>,
    pub set_name: Option<&'a str>,
    pub set_version: Option<i64>,
    pub me: Option<&'a str>,
    pub primary: Option<&'a str>,
    pub hosts: Option<Doc<'a>>,
    pub passives: Option<Doc<'a>>,
    pub arbiters: Option<Doc<'a>>,
    pub topology_version: Option<TopologyVersion>,
    pub max_wire_version: Option<i32>,
    pub min_wire_version: Option<i32>,
    pub service_id: bool,
    pub is_mongos: bool,
    pub hello_ok: bool,
    pub compression: Option<Doc<'a>>,
}

fn topology_version(v: &Element<'_>) -> Option<TopologyVersion> {
    let doc = v.doc()?;
    let process_id = doc.get("processId")?.object_id().unwrap_or([0; 12]);
    let counter = doc.get("counter")?.number()? as i64;
    Some(TopologyVersion {
        process_id,
        counter,
    })
}

/// One walk of the `client` document and one of each subdocument read (a lookup per
/// field walked them eleven times: 2% of the bench capture's instructions). The first
/// element of a name counts, as with [`Doc::get`].
fn client_metadata<'a>(doc: Doc<'a>) -> ClientMetadata<'a> {
    let [application, driver, os, platform, env] = first_elements(
        Some(doc),
        ["application", "driver", "os", "platform", "env"],
    );
    let sub = |e: Option<Element<'a>>| e.and_then(|e| e.doc());
    let [app_name] = first_strings(sub(application), ["name"]);
    let [driver_name, driver_version] = first_strings(sub(driver), ["name", "version"]);
    let [os_type, os_name] = first_strings(sub(os), ["type", "name"]);
    let [env_name] = first_strings(sub(env), ["name"]);
    ClientMetadata {
        app_name,
        driver_name,
        driver_version,
        os_type,
        os_name,
        platform: platform.and_then(|e| e.str()),
        env_name,
    }
}

/// The first element named each of `keys` in `doc`, in one walk.
fn first_elements<'a, const N: usize>(
    doc: Option<Doc<'a>>,
    keys: [&str; N],
) -> [Option<Element<'a>>; N] {
    let mut found: [Option<Element<'a>>; N] = [None; N];
    for element in doc.into_iter().flat_map(Doc::elements) {
        if let Some(i) = keys.iter().position(|k| k.as_bytes() == element.key) {
            found[i].get_or_insert(element);
        }
    }
    found
}

/// The string values of `keys` in `doc` ([`first_elements`]).
fn first_strings<'a, const N: usize>(
    doc: Option<Doc<'a>>,
    keys: [&str; N],
) -> [Option<&'a str>; N] {
    first_elements(doc, keys).map(|e| e.and_then(|e| e.str()))
}

/// Read a request as hello/isMaster; `None` when it is another command.
pub fn hello_request<'a>(msg: &Message<'a>) -> Option<HelloRequest<'a>> {
    if !msg.is_request() {
        return None;
    }
    let command = msg.command_name().filter(|n| is_hello_name(n))?;
    Some(hello_request_named(msg, command))
}

/// [`hello_request`] of a request already known to be the hello `command`
/// ([`Message::command_name`]), so that its name is not read twice.
pub fn hello_request_named<'a>(msg: &Message<'a>, command: &'a str) -> HelloRequest<'a> {
    let mut req = HelloRequest {
        legacy_op_query: matches!(msg.body, Body::Query { .. })
            || msg.header.op_code == OpCode::Query,
        ..HelloRequest::named(command)
    };
    let Some(doc) = msg.fields() else {
        return req;
    };
    // Of a hello cut short (a snap length), the fields that were captured: the command
    // name, topologyVersion and maxAwaitTimeMS come first in every driver's hello.
    for value in doc.elements() {
        match value.key {
            b"helloOk" => req.hello_ok = value.truthy().unwrap_or(false),
            b"topologyVersion" => req.topology_version = topology_version(&value),
            b"maxAwaitTimeMS" => req.max_await_time_ms = value.number().map(|n| n as i64),
            b"loadBalanced" => req.load_balanced = value.truthy().unwrap_or(false),
            b"compression" => req.compression = value.array(),
            b"saslSupportedMechs" => req.sasl_supported_mechs = value.str(),
            b"speculativeAuthenticate" => req.speculative_authenticate = true,
            b"internalClient" => req.internal_client = true,
            b"client" => req.client = value.doc(),
            _ => {}
        }
    }
    req
}

/// Read any reply document as a hello reply; fields that are absent stay `None`.
pub fn hello_reply<'a>(msg: &Message<'a>) -> Option<HelloReply<'a>> {
    if !msg.is_reply() {
        return None;
    }
    let doc = msg.fields()?;
    let mut r = HelloReply::default();
    for value in doc.elements() {
        match value.key {
            b"ok" => r.ok = value.number(),
            b"errmsg" => r.errmsg = value.str(),
            b"isWritablePrimary" | b"ismaster" | b"isMaster" => {
                r.is_writable_primary = value.truthy()
            }
            b"secondary" => r.secondary = value.truthy(),
            b"arbiterOnly" => r.arbiter_only = value.truthy(),
            b"isreplicaset" => r.is_replica_set = value.truthy() == Some(true),
            b"hidden" => r.hidden = value.truthy(),
            b"setName" => r.set_name = value.str(),
            b"setVersion" => r.set_version = value.number().map(|n| n as i64),
            b"me" => r.me = value.str(),
            b"primary" => r.primary = value.str(),
            b"hosts" => r.hosts = value.array(),
            b"passives" => r.passives = value.array(),
            b"arbiters" => r.arbiters = value.array(),
            b"topologyVersion" => r.topology_version = topology_version(&value),
            b"maxWireVersion" => r.max_wire_version = value.number().map(|n| n as i32),
            b"minWireVersion" => r.min_wire_version = value.number().map(|n| n as i32),
            b"serviceId" => r.service_id = true,
            b"msg" => r.is_mongos = value.str() == Some("isdbgrid"),
            b"helloOk" => r.hello_ok = value.truthy().unwrap_or(false),
            b"compression" => r.compression = value.array(),
            _ => {}
        }
    }
    Some(r)
}

/// What a hello reply after the first ones is read for, in one walk without the whole
/// [`hello_reply`] and its host lists: whether it announces a newer replica-set config
/// (`setVersion`) or another role (a stepdown, an election).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplyState {
    pub set_version: Option<i64>,
    pub is_writable_primary: Option<bool>,
    pub secondary: Option<bool>,
}

pub fn reply_state(msg: &Message<'_>) -> ReplyState {
    let mut state = ReplyState::default();
    let Some(fields) = msg.fields().filter(|_| msg.is_reply()) else {
        return state;
    };
    // A replica-set member's reply names all three among its first fields (topology,
    // hosts, setName, …), before lastWrite, the limits and $clusterTime: this glance runs
    // on every heartbeat reply, so it stops once it has them.
    let mut seen = 0u8;
    for e in fields.elements() {
        seen |= match e.key {
            b"setVersion" => {
                state.set_version = e.number().map(|n| n as i64);
                1
            }
            b"isWritablePrimary" | b"ismaster" => {
                state.is_writable_primary = e.truthy();
                2
            }
            b"secondary" => {
                state.secondary = e.truthy();
                4
            }
            _ => continue,
        };
        if seen == 7 {
            break;
        }
    }
    state
}

/// The `ok` of a reply; for OP_REPLY the QueryFailure flag also counts as failure.
pub fn reply_ok(msg: &Message<'_>) -> Option<bool> {
    if let Body::Reply { flags, .. } = msg.body {
        if flags & 0b10 != 0 {
            return Some(false);
        }
    }
    msg.fields()?.get("ok")?.number().map(|n| n == 1.0)
}

/// What a server-to-server request says, for the few commands whose arguments tell a
/// replication role apart (read from the server's own request builders, mongodb/mongo):
/// - the oplog fetcher tails the sync source's oplog: `find: "oplog.rs"` on `local` with
///   `tailable: true, awaitData: true` (and, before 4.4, `oplogReplay`), plus `term` from a
///   replica-set member (src/mongo/db/repl/oplog_fetcher.cpp, `makeFindCommandObject`),
///   then `getMore` on `oplog.rs` carrying `term`/`lastKnownCommittedOpTime`;
/// - `replSetHeartbeat` names its sender in `from` (host:port as in the replica-set config;
///   src/mongo/db/repl/repl_set_heartbeat_args_v1.cpp);
/// - `dropConnections` lists `hostAndPort` strings (src/mongo/db/commands/
///   drop_connections_command.cpp; admin only, `dropConnections` action on the cluster).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterRequest<'a> {
    /// A tailable, awaitData cursor on `local.oplog.rs` (find or getMore); `term` says the
    /// request carried replication fields only a member's oplog fetcher sends.
    OplogTail {
        term: bool,
    },
    Heartbeat {
        from: Option<&'a str>,
    },
    /// Each `hostAndPort` element as sent: a string, or `None` for any other BSON type.
    DropConnections {
        targets: Vec<Option<&'a str>>,
    },
}

/// Read a request as one of the [`ClusterRequest`]s; `None` for anything else.
pub fn cluster_request<'a>(msg: &Message<'a>, name: Option<&str>) -> Option<ClusterRequest<'a>> {
    let name = name.unwrap_or("");
    if !matches!(
        name,
        "find" | "getMore" | "replSetHeartbeat" | "dropConnections"
    ) {
        // Legacy OP_QUERY tailing of local.oplog.rs (servers before 3.2): flags
        // TailableCursor (bit 1) and AwaitData (bit 5).
        if let Body::Query {
            full_collection_name: "local.oplog.rs",
            flags,
            ..
        } = msg.body
        {
            if flags & 0b10 != 0 && flags & 0b10_0000 != 0 {
                return Some(ClusterRequest::OplogTail { term: false });
            }
        }
        return None;
    }
    let doc = msg.command_doc()?;
    match name {
        "find" | "getMore" => {
            // Most commands are finds and getMores, so the hand-written walk (not
            // `RawDocument::get_str`), the collection before the database, and its name
            // compared as bytes (most are not "oplog.rs": no UTF-8 check needed).
            let fields = Doc::of(doc);
            let coll = fields.get(if name == "find" { "find" } else { "collection" });
            if coll.and_then(|c| c.str_bytes()) != Some(b"oplog.rs")
                || msg.database() != Some("local")
            {
                return None;
            }
            let flag = |k: &str| fields.get(k).and_then(|e| e.truthy()) == Some(true);
            if name == "find" && !(flag("tailable") && flag("awaitData")) {
                return None;
            }
            let term =
                fields.get("term").is_some() || fields.get("lastKnownCommittedOpTime").is_some();
            Some(ClusterRequest::OplogTail { term })
        }
        "replSetHeartbeat" => Some(ClusterRequest::Heartbeat {
            from: doc.get_str("from").ok().filter(|s| !s.is_empty()),
        }),
        _ => {
            let targets = match doc.get("hostAndPort").ok().flatten() {
                Some(RawBsonRef::Array(a)) => a
                    .into_iter()
                    .map(|v| v.ok().and_then(|v| v.as_str()))
                    .collect(),
                Some(RawBsonRef::String(s)) => vec![Some(s)],
                _ => Vec::new(),
            };
            Some(ClusterRequest::DropConnections { targets })
        }
    }
}

/// The `errmsg` of a reply.
pub fn reply_errmsg<'a>(msg: &Message<'a>) -> Option<&'a str> {
    msg.command_doc()?.get_str("errmsg").ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::parse_message;
    use crate::wire::test_util::{op_msg, op_query, op_reply};
    use bson::rawdoc;

    #[test]
    fn reply_state_reads_the_role_fields_wherever_they_are() {
        let glance = |doc: &bson::RawDocument| {
            let bytes = op_msg(9, 5, 0, doc);
            let mut scratch = crate::wire::Scratch::default();
            reply_state(&parse_message(&bytes, &mut scratch, 48_000_000).unwrap())
        };
        // A member's reply: all three early, then fields the glance need not read.
        let member = glance(&rawdoc! {
            "topologyVersion": { "counter": 0i64 },
            "hosts": ["a:27017", "b:27017"],
            "setName": "rs0",
            "setVersion": 4i32,
            "isWritablePrimary": false,
            "secondary": true,
            "lastWrite": { "majorityWriteDate": bson::DateTime::from_millis(0) },
            "maxBsonObjectSize": 16_777_216i32,
            "ok": 1.0,
        });
        assert_eq!(member.set_version, Some(4));
        assert_eq!(member.is_writable_primary, Some(false));
        assert_eq!(member.secondary, Some(true));
        // A legacy isMaster reply from a member, the fields in another order.
        let legacy = glance(
            &rawdoc! { "ismaster": true, "secondary": false, "ok": 1.0, "setVersion": 7i64 },
        );
        assert_eq!(legacy.set_version, Some(7));
        assert_eq!(legacy.is_writable_primary, Some(true));
        assert_eq!(legacy.secondary, Some(false));
        // mongos: no replica-set fields, so the whole reply is walked.
        let mongos = glance(&rawdoc! { "isWritablePrimary": true, "msg": "isdbgrid", "ok": 1.0 });
        assert_eq!(mongos.is_writable_primary, Some(true));
        assert_eq!((mongos.set_version, mongos.secondary), (None, None));
    }

    #[test]
    fn streaming_monitor_hello() {
        let doc = rawdoc! {
            "hello": 1i32,
            "topologyVersion": { "processId": bson::oid::ObjectId::from_bytes([7; 12]), "counter": 3i64 },
            "maxAwaitTimeMS": 10000i32,
            "$db": "admin",
        };
        let bytes = op_msg(5, 0, 1 << 16, &doc);
        let mut scratch = crate::wire::Scratch::default();
        let m = parse_message(&bytes, &mut scratch, 48_000_000).unwrap();
        let h = hello_request(&m).unwrap();
        assert!(h.is_awaitable());
        assert_eq!(h.max_await_time_ms, Some(10_000));
        assert_eq!(h.topology_version.unwrap().counter, 3);
        assert!(!h.legacy_op_query);
        assert!(matches!(m.body, Body::Msg { flags, .. } if flags.exhaust_allowed()));
    }

    #[test]
    fn handshake_metadata_and_legacy_op_query() {
        let doc = rawdoc! {
            "isMaster": 1i32,
            "helloOk": true,
            "client": {
                "application": { "name": "orders-api" },
                "driver": { "name": "nodejs", "version": "6.10.0" },
                "os": { "type": "Linux", "name": "linux" },
                "platform": "Node.js v20",
                "env": { "name": "aws.lambda" },
            },
            "compression": ["zstd", "snappy"],
            "loadBalanced": true,
            "saslSupportedMechs": "admin.lab",
            "speculativeAuthenticate": { "saslStart": 1i32 },
        };
        let bytes = op_query(1, "admin.$cmd", &doc);
        let mut scratch = crate::wire::Scratch::default();
        let m = parse_message(&bytes, &mut scratch, 48_000_000).unwrap();
        let h = hello_request(&m).unwrap();
        assert_eq!(h.command, "isMaster");
        assert!(h.legacy_op_query && h.hello_ok && h.load_balanced && h.speculative_authenticate);
        assert!(!h.is_awaitable());
        let c = h.client_metadata().unwrap();
        assert_eq!(c.app_name, Some("orders-api"));
        assert_eq!(
            (c.driver_name, c.driver_version),
            (Some("nodejs"), Some("6.10.0"))
        );
        assert_eq!(c.platform, Some("Node.js v20"));
        assert_eq!(c.env_name, Some("aws.lambda"));
        assert_eq!(h.compressors().collect::<Vec<_>>(), vec!["zstd", "snappy"]);
        assert_eq!(h.sasl_supported_mechs, Some("admin.lab"));
    }

    #[test]
    fn cluster_requests_as_servers_send_them() {
        let mut scratch = crate::wire::Scratch::default();
        let mut read = |doc: bson::RawDocumentBuf| {
            let bytes = op_msg(7, 0, 0, &doc);
            let m = parse_message(&bytes, &mut scratch, 48_000_000).unwrap();
            format!("{:?}", cluster_request(&m, m.command_name()))
        };
        let is = |expected: Option<ClusterRequest<'_>>| format!("{expected:?}");
        // OplogFetcher's initial find (oplog_fetcher.cpp makeFindCommandObject).
        let find = rawdoc! {
            "find": "oplog.rs", "filter": { "ts": { "$gte": bson::Timestamp { time: 1, increment: 1 } } },
            "tailable": true, "oplogReplay": true, "awaitData": true, "maxTimeMS": 60000i64,
            "term": 3i64, "$db": "local",
        };
        assert_eq!(
            read(find),
            is(Some(ClusterRequest::OplogTail { term: true }))
        );
        let get_more = rawdoc! { "getMore": 42i64, "collection": "oplog.rs", "maxTimeMS": 5000i64, "$db": "local" };
        assert_eq!(
            read(get_more),
            is(Some(ClusterRequest::OplogTail { term: false }))
        );
        // Not tailable, or another collection: an ordinary read.
        assert_eq!(
            read(rawdoc! { "find": "oplog.rs", "$db": "local" }),
            is(None)
        );
        assert_eq!(
            read(rawdoc! { "find": "orders", "tailable": true, "awaitData": true, "$db": "local" }),
            is(None)
        );
        let hb = rawdoc! { "replSetHeartbeat": "rs0", "configVersion": 2i32, "from": "db1:27017", "fromId": 0i32, "term": 3i64, "$db": "admin" };
        assert_eq!(
            read(hb),
            is(Some(ClusterRequest::Heartbeat {
                from: Some("db1:27017")
            }))
        );
        let drop = rawdoc! { "dropConnections": 1i32, "hostAndPort": ["db3:27017", "db4", 5i32], "$db": "admin" };
        assert_eq!(
            read(drop),
            is(Some(ClusterRequest::DropConnections {
                targets: vec![Some("db3:27017"), Some("db4"), None]
            }))
        );
        assert_eq!(read(rawdoc! { "ping": 1i32, "$db": "admin" }), is(None));
    }

    #[test]
    fn hello_reply_fields() {
        let doc = rawdoc! {
            "ismaster": true,
            "msg": "isdbgrid",
            "setName": "rs0",
            "hosts": ["a:27017", "b:27017", 5i32],
            "me": "a:27017",
            "topologyVersion": { "processId": bson::oid::ObjectId::from_bytes([1; 12]), "counter": 0i64 },
            "maxWireVersion": 21i64,
            "serviceId": bson::oid::ObjectId::from_bytes([2; 12]),
            "ok": 1.0,
        };
        let bytes = op_msg(9, 5, 0, &doc);
        let mut scratch = crate::wire::Scratch::default();
        let m = parse_message(&bytes, &mut scratch, 48_000_000).unwrap();
        let r = hello_reply(&m).unwrap();
        assert_eq!(r.is_writable_primary, Some(true));
        assert!(r.is_mongos && r.service_id);
        assert_eq!(r.set_name, Some("rs0"));
        assert_eq!(
            r.hosts.unwrap().strings().collect::<Vec<_>>(),
            vec!["a:27017", "b:27017"]
        );
        assert_eq!(r.max_wire_version, Some(21));
        assert!(r.topology_version.is_some());
        assert_eq!(reply_ok(&m), Some(true));
        // OP_REPLY to a legacy isMaster.
        let bytes = op_reply(
            3,
            1,
            &rawdoc! { "ismaster": 1i32, "maxWireVersion": 8i32, "ok": 1i32 },
        );
        let m = parse_message(&bytes, &mut scratch, 48_000_000).unwrap();
        let r = hello_reply(&m).unwrap();
        assert_eq!(
            (r.is_writable_primary, r.max_wire_version, r.ok),
            (Some(true), Some(8), Some(1.0))
        );
        assert!(r.topology_version.is_none());
    }
}
