//! TEMPORARY signature stub of the wire stage, replaced by the real module on merge.
#![allow(dead_code, unused_variables)]
use bson::{RawArray, RawDocument};

pub const HEADER_LEN: usize = 16;
pub const DEFAULT_MAX_MESSAGE_LEN: u32 = 48_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    Reply,
    Update,
    Insert,
    Query,
    GetMore,
    Delete,
    KillCursors,
    Command,
    CommandReply,
    Compressed,
    Msg,
    Unknown(i32),
}
impl OpCode {
    pub fn is_known(self) -> bool {
        true
    }
    pub fn name(self) -> &'static str {
        "OP_MSG"
    }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub message_length: u32,
    pub request_id: i32,
    pub response_to: i32,
    pub op_code: OpCode,
}
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("x")]
    Incomplete { needed: usize },
}
#[derive(Clone, Debug)]
pub struct FramerConfig {
    pub max_message_len: u32,
    pub max_buffered: usize,
    pub prefix_len: usize,
}
impl Default for FramerConfig {
    fn default() -> Self {
        FramerConfig {
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            max_buffered: 1 << 20,
            prefix_len: 16384,
        }
    }
}
pub enum FrameEvent<'a> {
    Message(&'a [u8]),
    Truncated {
        prefix: &'a [u8],
        total_len: u32,
    },
    Resynced {
        skipped: u64,
    },
    Malformed {
        stream_offset: u64,
        error: WireError,
    },
}
pub struct Framer;
impl Framer {
    pub fn new(cfg: FramerConfig) -> Framer {
        Framer
    }
    pub fn push<F: FnMut(FrameEvent<'_>)>(&mut self, data: &[u8], on_event: F) {}
    pub fn gap(&mut self, lost: u64) {}
    pub fn hunt(&mut self) {}
    pub fn buffered(&self) -> usize {
        0
    }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compressor {
    Noop,
    Snappy,
    Zlib,
    Zstd,
}
impl Compressor {
    pub fn name(self) -> &'static str {
        "snappy"
    }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsgFlags(u32);
impl MsgFlags {
    pub fn checksum_present(self) -> bool {
        false
    }
    pub fn more_to_come(self) -> bool {
        false
    }
    pub fn exhaust_allowed(self) -> bool {
        false
    }
    pub fn bits(self) -> u32 {
        0
    }
}
pub struct Message<'a> {
    pub header: Header,
    pub compressor: Option<Compressor>,
    pub body: Body<'a>,
}
pub enum Body<'a> {
    Msg {
        flags: MsgFlags,
        command: Option<&'a RawDocument>,
        sequences: u16,
    },
    Query {
        flags: u32,
        full_collection_name: &'a str,
        number_to_skip: i32,
        number_to_return: i32,
        query: &'a RawDocument,
    },
    Reply {
        flags: u32,
        cursor_id: i64,
        starting_from: i32,
        number_returned: i32,
        first: Option<&'a RawDocument>,
    },
    Command {
        database: &'a str,
        command_name: &'a str,
        command: &'a RawDocument,
    },
    CommandReply {
        reply: &'a RawDocument,
    },
    Partial {
        first_key: Option<&'a str>,
    },
    Legacy,
    Unknown,
}
pub fn parse_message<'a>(
    bytes: &'a [u8],
    scratch: &'a mut Vec<u8>,
    max_len: u32,
) -> Result<Message<'a>, WireError> {
    todo!()
}
pub fn parse_prefix(prefix: &[u8], total_len: u32) -> Result<Message<'_>, WireError> {
    todo!()
}
impl<'a> Message<'a> {
    pub fn is_request(&self) -> bool {
        true
    }
    pub fn is_reply(&self) -> bool {
        true
    }
    pub fn command_name(&self) -> Option<&'a str> {
        None
    }
    pub fn command_doc(&self) -> Option<&'a RawDocument> {
        None
    }
    pub fn database(&self) -> Option<&'a str> {
        None
    }
}
pub fn is_hello_name(name: &str) -> bool {
    true
}
pub struct TopologyVersion {
    pub process_id: [u8; 12],
    pub counter: i64,
}
pub struct ClientMetadata<'a> {
    pub app_name: Option<&'a str>,
    pub driver_name: Option<&'a str>,
    pub driver_version: Option<&'a str>,
    pub os_type: Option<&'a str>,
    pub os_name: Option<&'a str>,
    pub platform: Option<&'a str>,
    pub env_name: Option<&'a str>,
}
pub struct HelloRequest<'a> {
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
    pub fn is_awaitable(&self) -> bool {
        true
    }
    pub fn compressors(&self) -> impl Iterator<Item = &'a str> + '_ {
        std::iter::empty()
    }
}
pub fn hello_request<'a>(msg: &Message<'a>) -> Option<HelloRequest<'a>> {
    None
}
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
pub fn hello_reply<'a>(msg: &Message<'a>) -> Option<HelloReply<'a>> {
    None
}
pub fn reply_ok(msg: &Message<'_>) -> Option<bool> {
    None
}
pub fn str_array(a: &RawArray) -> impl Iterator<Item = &str> {
    std::iter::empty()
}
