//! What a hello/isMaster request and a hello reply say, read lazily from the raw document.
//!
//! Drivers differ in BSON types (e.g. `maxAwaitTimeMS` as int32 or int64, `ok` as double
//! or int32, legacy `isMaster: 1` vs `hello: true`), so every number accepts any numeric
//! type and every flag accepts a boolean or a number.

use bson::{RawArray, RawBsonRef, RawDocument};

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
    pub compression: Option<&'a RawArray>,
    pub sasl_supported_mechs: Option<&'a str>,
    pub speculative_authenticate: bool,
    pub internal_client: bool,
    pub client: Option<ClientMetadata<'a>>,
}

impl<'a> HelloRequest<'a> {
    /// The streaming protocol's awaitable hello (server-monitoring spec): it carries the
    /// server's last topologyVersion and how long the server may hold the reply.
    pub fn is_awaitable(&self) -> bool {
        self.topology_version.is_some() && self.max_await_time_ms.is_some()
    }
    pub fn compressors(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.compression.into_iter().flat_map(str_array)
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct HelloReply<'a> {
    pub ok: Option<f64>,
    pub errmsg: Option<&'a str>,
    pub is_writable_primary: Option<bool>,
    pub secondary: Option<bool>,
    pub arbiter_only: Option<bool>,
    pub hidden: Option<bool>,
    pub set_name: Option<&'a str>,
    pub set_version: Option<i64>,
    pub me: Option<&'a str>,
    pub primary: Option<&'a str>,
    pub hosts: Option<&'a RawArray>,
    pub passives: Option<&'a RawArray>,
    pub arbiters: Option<&'a RawArray>,
    pub topology_version: Option<TopologyVersion>,
    pub max_wire_version: Option<i32>,
    pub min_wire_version: Option<i32>,
    pub service_id: bool,
    pub is_mongos: bool,
    pub hello_ok: bool,
    pub compression: Option<&'a RawArray>,
}

fn number(v: RawBsonRef<'_>) -> Option<f64> {
    match v {
        RawBsonRef::Int32(i) => Some(i as f64),
        RawBsonRef::Int64(i) => Some(i as f64),
        RawBsonRef::Double(d) => Some(d),
        RawBsonRef::Decimal128(_) => None,
        _ => None,
    }
}

fn truthy(v: RawBsonRef<'_>) -> Option<bool> {
    match v {
        RawBsonRef::Boolean(b) => Some(b),
        other => number(other).map(|n| n != 0.0),
    }
}

fn topology_version(v: RawBsonRef<'_>) -> Option<TopologyVersion> {
    let doc = v.as_document()?;
    let process_id = match doc.get("processId").ok()?? {
        RawBsonRef::ObjectId(oid) => oid.bytes(),
        _ => [0; 12],
    };
    let counter = doc.get("counter").ok()?.and_then(number)? as i64;
    Some(TopologyVersion {
        process_id,
        counter,
    })
}

fn text<'a>(d: Option<&'a RawDocument>, key: &str) -> Option<&'a str> {
    d.and_then(|d| d.get_str(key).ok())
}

fn client_metadata(doc: &RawDocument) -> ClientMetadata<'_> {
    let sub = |key: &str| doc.get_document(key).ok();
    let driver = sub("driver");
    let os = sub("os");
    ClientMetadata {
        app_name: text(sub("application"), "name"),
        driver_name: text(driver, "name"),
        driver_version: text(driver, "version"),
        os_type: text(os, "type"),
        os_name: text(os, "name"),
        platform: doc.get_str("platform").ok(),
        env_name: text(sub("env"), "name"),
    }
}

/// Read a request as hello/isMaster; `None` when it is another command.
pub fn hello_request<'a>(msg: &Message<'a>) -> Option<HelloRequest<'a>> {
    if !msg.is_request() {
        return None;
    }
    let command = msg.command_name().filter(|n| is_hello_name(n))?;
    let mut req = HelloRequest {
        command,
        legacy_op_query: matches!(msg.body, Body::Query { .. })
            || msg.header.op_code == OpCode::Query,
        hello_ok: false,
        topology_version: None,
        max_await_time_ms: None,
        load_balanced: false,
        compression: None,
        sasl_supported_mechs: None,
        speculative_authenticate: false,
        internal_client: false,
        client: None,
    };
    let Some(doc) = msg.command_doc() else {
        // An oversized hello (never seen in practice): the name is all there is.
        return Some(req);
    };
    for element in doc.iter() {
        let Ok((key, value)) = element else { break };
        match key.as_str() {
            "helloOk" => req.hello_ok = truthy(value).unwrap_or(false),
            "topologyVersion" => req.topology_version = topology_version(value),
            "maxAwaitTimeMS" => req.max_await_time_ms = number(value).map(|n| n as i64),
            "loadBalanced" => req.load_balanced = truthy(value).unwrap_or(false),
            "compression" => req.compression = value.as_array(),
            "saslSupportedMechs" => req.sasl_supported_mechs = value.as_str(),
            "speculativeAuthenticate" => req.speculative_authenticate = true,
            "internalClient" => req.internal_client = true,
            "client" => req.client = value.as_document().map(client_metadata),
            _ => {}
        }
    }
    Some(req)
}

/// Read any reply document as a hello reply; fields that are absent stay `None`.
pub fn hello_reply<'a>(msg: &Message<'a>) -> Option<HelloReply<'a>> {
    if !msg.is_reply() {
        return None;
    }
    let doc = msg.command_doc()?;
    let mut r = HelloReply::default();
    for element in doc.iter() {
        let Ok((key, value)) = element else { break };
        match key.as_str() {
            "ok" => r.ok = number(value),
            "errmsg" => r.errmsg = value.as_str(),
            "isWritablePrimary" | "ismaster" | "isMaster" => r.is_writable_primary = truthy(value),
            "secondary" => r.secondary = truthy(value),
            "arbiterOnly" => r.arbiter_only = truthy(value),
            "hidden" => r.hidden = truthy(value),
            "setName" => r.set_name = value.as_str(),
            "setVersion" => r.set_version = number(value).map(|n| n as i64),
            "me" => r.me = value.as_str(),
            "primary" => r.primary = value.as_str(),
            "hosts" => r.hosts = value.as_array(),
            "passives" => r.passives = value.as_array(),
            "arbiters" => r.arbiters = value.as_array(),
            "topologyVersion" => r.topology_version = topology_version(value),
            "maxWireVersion" => r.max_wire_version = number(value).map(|n| n as i32),
            "minWireVersion" => r.min_wire_version = number(value).map(|n| n as i32),
            "serviceId" => r.service_id = true,
            "msg" => r.is_mongos = value.as_str() == Some("isdbgrid"),
            "helloOk" => r.hello_ok = truthy(value).unwrap_or(false),
            "compression" => r.compression = value.as_array(),
            _ => {}
        }
    }
    Some(r)
}

/// The `ok` of a reply; for OP_REPLY the QueryFailure flag also counts as failure.
pub fn reply_ok(msg: &Message<'_>) -> Option<bool> {
    if let Body::Reply { flags, .. } = msg.body {
        if flags & 0b10 != 0 {
            return Some(false);
        }
    }
    let doc = msg.command_doc()?;
    doc.get("ok").ok()?.and_then(number).map(|n| n == 1.0)
}

/// The string elements of an array, skipping anything else.
pub fn str_array(a: &RawArray) -> impl Iterator<Item = &str> {
    a.into_iter()
        .filter_map(|v| v.ok().and_then(|v| v.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::parse_message;
    use crate::wire::test_util::{op_msg, op_query, op_reply};
    use bson::rawdoc;

    #[test]
    fn streaming_monitor_hello() {
        let doc = rawdoc! {
            "hello": 1i32,
            "topologyVersion": { "processId": bson::oid::ObjectId::from_bytes([7; 12]), "counter": 3i64 },
            "maxAwaitTimeMS": 10000i32,
            "$db": "admin",
        };
        let bytes = op_msg(5, 0, 1 << 16, &doc);
        let mut scratch = Vec::new();
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
        let mut scratch = Vec::new();
        let m = parse_message(&bytes, &mut scratch, 48_000_000).unwrap();
        let h = hello_request(&m).unwrap();
        assert_eq!(h.command, "isMaster");
        assert!(h.legacy_op_query && h.hello_ok && h.load_balanced && h.speculative_authenticate);
        assert!(!h.is_awaitable());
        let c = h.client.unwrap();
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
        let mut scratch = Vec::new();
        let m = parse_message(&bytes, &mut scratch, 48_000_000).unwrap();
        let r = hello_reply(&m).unwrap();
        assert_eq!(r.is_writable_primary, Some(true));
        assert!(r.is_mongos && r.service_id);
        assert_eq!(r.set_name, Some("rs0"));
        assert_eq!(
            str_array(r.hosts.unwrap()).collect::<Vec<_>>(),
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
