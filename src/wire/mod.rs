//! Stage 4, frames: in-order bytes of a direction → MongoDB messages.
//!
//! - [`header`]: the 16-byte header and opcodes (checked view, unknown opcodes as data);
//! - [`frame`]: the [`Framer`], which cuts a byte stream into messages without copying
//!   the ones that lie inside one push, and resynchronises after gaps;
//! - [`message`]: one message → a typed view (OP_MSG, OP_QUERY, OP_REPLY, OP_COMMAND,
//!   OP_COMPRESSED decompressed with the snappy/zlib/zstd crates, legacy opcodes);
//! - [`command`]: hello/isMaster requests and replies, read lazily from raw BSON;
//! - [`elements`]: the byte-level BSON element walk those readers use on the hot path.

pub mod command;
pub mod elements;
mod error;
pub mod frame;
pub mod header;
pub mod message;
#[cfg(test)]
pub(crate) mod test_util;

pub use command::{
    cluster_request, hello_reply, hello_request, hello_request_named, is_hello_name, reply_errmsg,
    reply_ok, reply_state, ClientMetadata, ClusterRequest, HelloReply, HelloRequest, ReplyState,
    TopologyVersion,
};
pub use elements::Doc;
pub use error::WireError;
pub use frame::{FrameEvent, Framer, FramerConfig};
pub use header::{Header, HeaderView, OpCode, HEADER_LEN};
pub use message::{
    parse_message, parse_prefix, parse_unread, Body, Compressor, Message, MsgFlags, Scratch, Sender,
};

/// The server's maxMessageSizeBytes: no valid message is longer.
pub const DEFAULT_MAX_MESSAGE_LEN: u32 = 48_000_000;
