//! The 16-byte standard message header and opcodes.
//!
//! A [`HeaderView`] only reads fields; [`Header::parse`] checks the length once, after
//! which no accessor can panic (the smoltcp `new_checked` pattern).

use super::error::WireError;

pub const HEADER_LEN: usize = 16;

mod field {
    use std::ops::Range;
    pub const MESSAGE_LENGTH: Range<usize> = 0..4;
    pub const REQUEST_ID: Range<usize> = 4..8;
    pub const RESPONSE_TO: Range<usize> = 8..12;
    pub const OP_CODE: Range<usize> = 12..16;
}

/// Opcodes; unknown values are kept as data.
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

impl From<i32> for OpCode {
    fn from(v: i32) -> Self {
        match v {
            1 => OpCode::Reply,
            2001 => OpCode::Update,
            2002 => OpCode::Insert,
            2004 => OpCode::Query,
            2005 => OpCode::GetMore,
            2006 => OpCode::Delete,
            2007 => OpCode::KillCursors,
            2010 => OpCode::Command,
            2011 => OpCode::CommandReply,
            2012 => OpCode::Compressed,
            2013 => OpCode::Msg,
            other => OpCode::Unknown(other),
        }
    }
}

impl From<OpCode> for i32 {
    fn from(v: OpCode) -> Self {
        match v {
            OpCode::Reply => 1,
            OpCode::Update => 2001,
            OpCode::Insert => 2002,
            OpCode::Query => 2004,
            OpCode::GetMore => 2005,
            OpCode::Delete => 2006,
            OpCode::KillCursors => 2007,
            OpCode::Command => 2010,
            OpCode::CommandReply => 2011,
            OpCode::Compressed => 2012,
            OpCode::Msg => 2013,
            OpCode::Unknown(v) => v,
        }
    }
}

impl OpCode {
    pub fn is_known(self) -> bool {
        !matches!(self, OpCode::Unknown(_))
    }
    pub fn name(self) -> &'static str {
        match self {
            OpCode::Reply => "OP_REPLY",
            OpCode::Update => "OP_UPDATE",
            OpCode::Insert => "OP_INSERT",
            OpCode::Query => "OP_QUERY",
            OpCode::GetMore => "OP_GET_MORE",
            OpCode::Delete => "OP_DELETE",
            OpCode::KillCursors => "OP_KILL_CURSORS",
            OpCode::Command => "OP_COMMAND",
            OpCode::CommandReply => "OP_COMMANDREPLY",
            OpCode::Compressed => "OP_COMPRESSED",
            OpCode::Msg => "OP_MSG",
            OpCode::Unknown(_) => "unknown opcode",
        }
    }
    /// The smallest well-formed message of this opcode, header included.
    pub fn min_len(self) -> usize {
        match self {
            // flagBits + section kind + the smallest document (5 bytes)
            OpCode::Msg => HEADER_LEN + 4 + 1 + 5,
            // flags, cursorID, startingFrom, numberReturned
            OpCode::Reply => HEADER_LEN + 20,
            // flags, a one-byte cstring, skip, return, document
            OpCode::Query => HEADER_LEN + 4 + 1 + 8 + 5,
            // originalOpcode, uncompressedSize, compressorId
            OpCode::Compressed => HEADER_LEN + 9,
            OpCode::CommandReply => HEADER_LEN + 10,
            OpCode::Command => HEADER_LEN + 2 + 10,
            _ => HEADER_LEN,
        }
    }
}

/// A read-only view over at least [`HEADER_LEN`] bytes.
#[derive(Clone, Copy, Debug)]
pub struct HeaderView<'a>(&'a [u8; HEADER_LEN]);

impl<'a> HeaderView<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<HeaderView<'a>, WireError> {
        buf.get(..HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .map(HeaderView)
            .ok_or_else(|| WireError::Incomplete {
                needed: HEADER_LEN.saturating_sub(buf.len()),
            })
    }
    fn i32_at(&self, range: std::ops::Range<usize>) -> i32 {
        let b = &self.0[range];
        i32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    pub fn message_length(&self) -> i32 {
        self.i32_at(field::MESSAGE_LENGTH)
    }
    pub fn request_id(&self) -> i32 {
        self.i32_at(field::REQUEST_ID)
    }
    pub fn response_to(&self) -> i32 {
        self.i32_at(field::RESPONSE_TO)
    }
    pub fn op_code(&self) -> OpCode {
        OpCode::from(self.i32_at(field::OP_CODE))
    }
}

/// A decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub message_length: u32,
    pub request_id: i32,
    pub response_to: i32,
    pub op_code: OpCode,
}

impl Header {
    /// Decode the first 16 bytes. A negative length is malformed; bounds are the caller's.
    pub fn parse(buf: &[u8]) -> Result<Header, WireError> {
        let view = HeaderView::new_checked(buf)?;
        let len = view.message_length();
        if len < HEADER_LEN as i32 {
            return Err(WireError::Malformed {
                offset: 0,
                what: "messageLength shorter than the header",
            });
        }
        Ok(Header {
            message_length: len as u32,
            request_id: view.request_id(),
            response_to: view.response_to(),
            op_code: view.op_code(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_HEADER: [u8; 16] = [
        0x2a, 0x01, 0, 0, // 298
        7, 0, 0, 0, // requestID 7
        0, 0, 0, 0, // responseTo 0
        0xdd, 0x07, 0, 0, // 2013
    ];

    #[test]
    fn deconstruct() {
        let h = Header::parse(&HELLO_HEADER).unwrap();
        assert_eq!(h.message_length, 298);
        assert_eq!(h.request_id, 7);
        assert_eq!(h.response_to, 0);
        assert_eq!(h.op_code, OpCode::Msg);
        assert_eq!(OpCode::from(2012), OpCode::Compressed);
        assert_eq!(i32::from(OpCode::Unknown(99)), 99);
        assert!(!OpCode::from(99).is_known());
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Header::parse(&HELLO_HEADER[..10]),
            Err(WireError::Incomplete { needed: 6 })
        );
    }

    #[test]
    fn impossible_len() {
        let mut h = HELLO_HEADER;
        h[0..4].copy_from_slice(&8i32.to_le_bytes());
        assert!(matches!(
            Header::parse(&h),
            Err(WireError::Malformed { .. })
        ));
        h[0..4].copy_from_slice(&(-5i32).to_le_bytes());
        assert!(matches!(
            Header::parse(&h),
            Err(WireError::Malformed { .. })
        ));
    }
}
