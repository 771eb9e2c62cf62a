//! Errors of the wire stage. "Need more bytes", "too large" and "malformed" stay apart:
//! the framer waits on the first, skips on the second and resynchronises on the third.

use super::message::Compressor;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("need {needed} more bytes")]
    Incomplete { needed: usize },
    #[error("length {length} exceeds the {max}-byte limit")]
    TooLarge { length: u64, max: u64 },
    #[error("malformed at byte {offset}: {what}")]
    Malformed { offset: usize, what: &'static str },
    #[error("{compressor:?} decompression failed: {reason}")]
    Decompress {
        compressor: Compressor,
        reason: String,
    },
    #[error("unknown compressor id {0}")]
    UnknownCompressor(u8),
    #[error("invalid BSON at byte {offset}: {reason}")]
    Bson { offset: usize, reason: String },
}
