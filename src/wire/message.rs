//! One whole message → a typed, borrowed view.
//!
//! Bodies are sliced by hand rather than with nom: each opcode is a fixed sequence of
//! little-endian integers, C strings and length-prefixed BSON documents, and a small
//! [`Cursor`] with checked reads states that more plainly than combinators would. BSON
//! documents are handed out as `bson::RawDocument` borrowed from the message (or from the
//! decompression scratch buffer): nothing is deserialised until a caller asks for a field.

use bson::RawDocument;
use miniz_oxide::inflate::core::DecompressorOxide;

use super::elements::Doc;
use super::error::WireError;
use super::header::{Header, OpCode, HEADER_LEN};

/// Compression algorithms of OP_COMPRESSED (compressorId).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compressor {
    Noop,
    Snappy,
    Zlib,
    Zstd,
}

impl Compressor {
    pub fn from_id(id: u8) -> Result<Compressor, WireError> {
        match id {
            0 => Ok(Compressor::Noop),
            1 => Ok(Compressor::Snappy),
            2 => Ok(Compressor::Zlib),
            3 => Ok(Compressor::Zstd),
            other => Err(WireError::UnknownCompressor(other)),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Compressor::Noop => "noop",
            Compressor::Snappy => "snappy",
            Compressor::Zlib => "zlib",
            Compressor::Zstd => "zstd",
        }
    }
}

/// OP_MSG flagBits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsgFlags(pub u32);

impl MsgFlags {
    const CHECKSUM_PRESENT: u32 = 1 << 0;
    const MORE_TO_COME: u32 = 1 << 1;
    const EXHAUST_ALLOWED: u32 = 1 << 16;
    /// Bits 0–15 are "required": a receiver must reject bits it does not know.
    const REQUIRED_UNKNOWN: u32 = 0xffff & !(Self::CHECKSUM_PRESENT | Self::MORE_TO_COME);

    pub fn checksum_present(self) -> bool {
        self.0 & Self::CHECKSUM_PRESENT != 0
    }
    pub fn more_to_come(self) -> bool {
        self.0 & Self::MORE_TO_COME != 0
    }
    pub fn exhaust_allowed(self) -> bool {
        self.0 & Self::EXHAUST_ALLOWED != 0
    }
    pub fn has_unknown_required_bits(self) -> bool {
        self.0 & Self::REQUIRED_UNKNOWN != 0
    }
    pub fn bits(self) -> u32 {
        self.0
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Body<'a> {
    Msg {
        flags: MsgFlags,
        /// The kind-0 section: the command or reply document.
        command: Option<&'a RawDocument>,
        /// Kind-1 document sequences.
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
    /// OP_COMMAND (MongoDB 3.2–3.6 internal protocol).
    Command {
        database: &'a str,
        command_name: &'a str,
        command: &'a RawDocument,
    },
    CommandReply {
        reply: &'a RawDocument,
    },
    /// Only the start of the message was read: an oversized one, or one whose end a gap
    /// left out (a snap length, lost packets). Its command name, OP_MSG flags and those
    /// elements of its command document that were captured, when it reaches that far.
    Partial {
        first_key: Option<&'a str>,
        flags: Option<MsgFlags>,
        doc: Option<Doc<'a>>,
    },
    /// OP_INSERT/UPDATE/DELETE/GET_MORE/KILL_CURSORS: recognised, counted, not decoded.
    Legacy,
    /// An OP_COMPRESSED message left compressed ([`parse_unread`]): its header is known
    /// (the original opcode, `responseTo`), its contents were not needed.
    Compressed,
    Unknown,
}

#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    /// The message's own header; for OP_COMPRESSED, `op_code` is the original opcode.
    pub header: Header,
    pub compressor: Option<Compressor>,
    pub body: Body<'a>,
    /// Who sent it, when the connection says (see [`Message::sent_by`]).
    sender: Option<Sender>,
}

/// Which end of a connection sent a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    Client,
    Server,
}

/// Checked little-endian reads over a byte slice; every read fails instead of panicking.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Added to `pos` in error offsets (the body's place in the whole message).
    base: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8], base: usize) -> Cursor<'a> {
        Cursor { buf, pos: 0, base }
    }
    fn malformed(&self, what: &'static str) -> WireError {
        WireError::Malformed {
            offset: self.base + self.pos,
            what,
        }
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.malformed(what)),
        }
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, WireError> {
        let b = self.take(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, WireError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }
    fn cstr(&mut self, what: &'static str) -> Result<&'a str, WireError> {
        let rest = &self.buf[self.pos..];
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(self.malformed(what))?;
        let s = std::str::from_utf8(&rest[..nul]).map_err(|_| self.malformed(what))?;
        self.pos += nul + 1;
        Ok(s)
    }
    /// A length-prefixed BSON document, borrowed.
    fn document(&mut self, what: &'static str) -> Result<&'a RawDocument, WireError> {
        let start = self.pos;
        let len = self.i32(what)?;
        if len < 5 {
            return Err(self.malformed(what));
        }
        self.pos = start;
        let bytes = self.take(len as usize, what).map_err(|_| WireError::Bson {
            offset: self.base + start,
            reason: format!("{what}: document length {len} runs past the message"),
        })?;
        RawDocument::from_bytes(bytes).map_err(|e| WireError::Bson {
            offset: self.base + start,
            reason: format!("{what}: {e}"),
        })
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// What decompressing OP_COMPRESSED needs, kept by the caller and reused by every
/// message: the output buffer, and the zlib and zstd decompressors' state, each made on
/// its first message and reset for every later one. A new zlib inflater per message was
/// 2.8% of a run on the benchmark capture's zlib-compressed traffic (flate2's, then: ~43 KB
/// of state to allocate and set up, plus a 32 KB read buffer); a zstd context and its
/// 128 KB read buffer are larger still.
#[derive(Default)]
pub struct Scratch {
    out: Vec<u8>,
    zlib: Option<Box<DecompressorOxide>>,
    zstd: Option<zstd::zstd_safe::DCtx<'static>>,
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch")
            .field("out_capacity", &self.out.capacity())
            .field("zlib", &self.zlib.is_some())
            .field("zstd", &self.zstd.is_some())
            .finish()
    }
}

/// Parse one whole message (`bytes.len()` is its messageLength). OP_COMPRESSED is
/// decompressed into `scratch`, which is cleared and reused; its size is checked against
/// `max_len` before anything is allocated.
pub fn parse_message<'a>(
    bytes: &'a [u8],
    scratch: &'a mut Scratch,
    max_len: u32,
) -> Result<Message<'a>, WireError> {
    let header = whole_header(bytes)?;
    let body = &bytes[HEADER_LEN..];
    if header.op_code != OpCode::Compressed {
        return Ok(Message {
            header,
            compressor: None,
            body: parse_body(header, body, HEADER_LEN)?,
            sender: None,
        });
    }
    let envelope = Envelope::parse(header, body, max_len)?;
    decompress(
        envelope.compressor,
        envelope.compressed,
        envelope.inner.message_length as usize - HEADER_LEN,
        scratch,
    )?;
    Ok(Message {
        header: envelope.inner,
        compressor: Some(envelope.compressor),
        body: parse_body(envelope.inner, &scratch.out, HEADER_LEN)?,
        sender: None,
    })
}

/// An OP_COMPRESSED message's header, with its body left compressed ([`Body::Compressed`]):
/// for a message whose contents no reader needs, such as the reply to an operation,
/// inflating it would be most of what it costs. Everything but the decompression is
/// checked as [`parse_message`] checks it.
pub fn parse_unread(bytes: &[u8], max_len: u32) -> Result<Message<'_>, WireError> {
    let header = whole_header(bytes)?;
    if header.op_code != OpCode::Compressed {
        return Err(WireError::Malformed {
            offset: 0,
            what: "not an OP_COMPRESSED message",
        });
    }
    let envelope = Envelope::parse(header, &bytes[HEADER_LEN..], max_len)?;
    Ok(Message {
        header: envelope.inner,
        compressor: Some(envelope.compressor),
        body: Body::Compressed,
        sender: None,
    })
}

/// The header of a whole message: its messageLength must be the message's size.
fn whole_header(bytes: &[u8]) -> Result<Header, WireError> {
    let header = Header::parse(bytes)?;
    if header.message_length as usize != bytes.len() {
        return Err(WireError::Malformed {
            offset: 0,
            what: "messageLength differs from the message's size",
        });
    }
    Ok(header)
}

/// OP_COMPRESSED's own fields: the original opcode, the uncompressed size (checked against
/// `max_len` before anything is allocated), the compressor, and the compressed bytes.
struct Envelope<'a> {
    /// The original message's header: its opcode and length.
    inner: Header,
    compressor: Compressor,
    compressed: &'a [u8],
}

impl<'a> Envelope<'a> {
    fn parse(header: Header, body: &'a [u8], max_len: u32) -> Result<Envelope<'a>, WireError> {
        let mut cur = Cursor::new(body, HEADER_LEN);
        let original = OpCode::from(cur.i32("originalOpcode")?);
        let size = cur.i32("uncompressedSize")?;
        let compressor = Compressor::from_id(cur.u8("compressorId")?)?;
        if size < 0 || size as u64 + HEADER_LEN as u64 > max_len as u64 {
            return Err(WireError::TooLarge {
                length: size.max(0) as u64,
                max: max_len as u64,
            });
        }
        if original == OpCode::Compressed {
            return Err(cur.malformed("OP_COMPRESSED wrapping OP_COMPRESSED"));
        }
        Ok(Envelope {
            inner: Header {
                message_length: HEADER_LEN as u32 + size as u32,
                op_code: original,
                ..header
            },
            compressor,
            compressed: &body[cur.pos..],
        })
    }
}

fn decompress(
    compressor: Compressor,
    input: &[u8],
    size: usize,
    scratch: &mut Scratch,
) -> Result<(), WireError> {
    use std::io::Read;
    let out = &mut scratch.out;
    out.clear();
    let fail = |reason: String| WireError::Decompress { compressor, reason };
    match compressor {
        Compressor::Noop => out.extend_from_slice(input),
        Compressor::Snappy => {
            let claimed = snap::raw::decompress_len(input).map_err(|e| fail(e.to_string()))?;
            if claimed != size {
                return Err(fail(format!(
                    "snappy length {claimed} differs from uncompressedSize {size}"
                )));
            }
            out.resize(size, 0);
            snap::raw::Decoder::new()
                .decompress(input, out)
                .map_err(|e| fail(e.to_string()))?;
        }
        Compressor::Zlib => {
            let decompressor = scratch.zlib.get_or_insert_with(Box::default);
            inflate(decompressor, input, size + 1, out).map_err(|e| fail(e.into()))?;
        }
        Compressor::Zstd => {
            let context = scratch
                .zstd
                .get_or_insert_with(zstd::zstd_safe::DCtx::create);
            out.reserve(size);
            // A fresh context per message made no other setting: the default parameters,
            // no dictionary. `with_context` resets the session.
            zstd::stream::read::Decoder::with_context(input, context)
                .take(size as u64 + 1)
                .read_to_end(out)
                .map_err(|e| fail(e.to_string()))?;
        }
    }
    if out.len() != size {
        return Err(fail(format!(
            "{} bytes after decompression, uncompressedSize says {size}",
            out.len()
        )));
    }
    Ok(())
}

/// Inflate the zlib stream `input` into `out`, at most `cap` bytes: what
/// `flate2::read::ZlibDecoder::new(input).take(cap).read_to_end(out)` does, on a reused
/// decompressor: the same bytes, and the same errors (a stream that ends early is
/// incomplete; any other failure, a wrong checksum included, corrupt) except that a stream
/// damaged inside may fail at another point, so with another of those reasons.
///
/// miniz_oxide's core inflater rather than flate2's stream: given the whole output as one
/// buffer, it reads back-references from the output itself, where the stream keeps a
/// 32 KB window that it zeroes on every reset: a 32 KB memset per message, which flushed
/// the L1 cache each time. The output grows as it fills (doubling, up to `cap`) rather
/// than being zeroed whole up front: `cap` is the message's claimed size, up to tens of MB
/// for a garbage header whose stream inflates to a few bytes.
fn inflate(
    decompressor: &mut DecompressorOxide,
    input: &[u8],
    cap: usize,
    out: &mut Vec<u8>,
) -> Result<(), &'static str> {
    use miniz_oxide::inflate::core::{decompress, inflate_flags::*};
    use miniz_oxide::inflate::TINFLStatus;
    const FIRST: usize = 4 * 1024;
    const FLAGS: u32 = TINFL_FLAG_PARSE_ZLIB_HEADER
        | TINFL_FLAG_COMPUTE_ADLER32
        | TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    decompressor.init();
    out.clear();
    out.resize(FIRST.min(cap), 0);
    let (mut pos, mut len) = (0, 0);
    let result = loop {
        let (status, read, written) = decompress(decompressor, &input[pos..], out, len, FLAGS);
        pos += read;
        len += written;
        match status {
            TINFLStatus::Done => break Ok(()),
            TINFLStatus::HasMoreOutput if len >= cap => break Ok(()),
            TINFLStatus::HasMoreOutput => out.resize(len.saturating_mul(2).min(cap), 0),
            TINFLStatus::FailedCannotMakeProgress | TINFLStatus::NeedsMoreInput => {
                break Err("incomplete deflate stream")
            }
            _ => break Err("corrupt deflate stream"),
        }
    };
    out.truncate(len);
    result
}

fn parse_body(header: Header, body: &[u8], base: usize) -> Result<Body<'_>, WireError> {
    let mut cur = Cursor::new(body, base);
    Ok(match header.op_code {
        OpCode::Msg => {
            let flags = MsgFlags(cur.i32("flagBits")? as u32);
            if flags.has_unknown_required_bits() {
                return Err(cur.malformed("OP_MSG sets an unknown required flag bit"));
            }
            let end = if flags.checksum_present() {
                body.len()
                    .checked_sub(4)
                    .ok_or(cur.malformed("checksum flag without a checksum"))?
            } else {
                body.len()
            };
            let mut sections = Cursor::new(&body[..end], base);
            sections.pos = cur.pos;
            let (mut command, mut sequences) = (None, 0u16);
            while sections.remaining() > 0 {
                match sections.u8("section kind")? {
                    0 => {
                        let doc = sections.document("kind-0 section")?;
                        if command.is_some() {
                            return Err(sections.malformed("two kind-0 sections"));
                        }
                        command = Some(doc);
                    }
                    1 => {
                        let size = sections.i32("document sequence size")?;
                        if size < 4 {
                            return Err(sections.malformed("document sequence size"));
                        }
                        sections.take(size as usize - 4, "document sequence")?;
                        sequences = sequences.saturating_add(1);
                    }
                    _ => return Err(sections.malformed("unknown section kind")),
                }
            }
            Body::Msg {
                flags,
                command,
                sequences,
            }
        }
        OpCode::Query => Body::Query {
            flags: cur.i32("flags")? as u32,
            full_collection_name: cur.cstr("fullCollectionName")?,
            number_to_skip: cur.i32("numberToSkip")?,
            number_to_return: cur.i32("numberToReturn")?,
            query: cur.document("query")?,
        },
        OpCode::Reply => {
            let flags = cur.i32("responseFlags")? as u32;
            let cursor_id = cur.i64("cursorID")?;
            let starting_from = cur.i32("startingFrom")?;
            let number_returned = cur.i32("numberReturned")?;
            let first = if number_returned > 0 && cur.remaining() > 0 {
                Some(cur.document("reply document")?)
            } else {
                None
            };
            Body::Reply {
                flags,
                cursor_id,
                starting_from,
                number_returned,
                first,
            }
        }
        OpCode::Command => Body::Command {
            database: cur.cstr("database")?,
            command_name: cur.cstr("commandName")?,
            command: cur.document("commandArgs")?,
        },
        OpCode::CommandReply => Body::CommandReply {
            reply: cur.document("commandReply")?,
        },
        OpCode::Insert
        | OpCode::Update
        | OpCode::Delete
        | OpCode::GetMore
        | OpCode::KillCursors => Body::Legacy,
        OpCode::Compressed => return Err(cur.malformed("nested OP_COMPRESSED")),
        OpCode::Unknown(_) => Body::Unknown,
    })
}

/// The start of a message too large to buffer whole: its header and, when the prefix
/// reaches that far, the first key of its command document.
pub fn parse_prefix(prefix: &[u8], total_len: u32) -> Result<Message<'_>, WireError> {
    let mut header = Header::parse(prefix)?;
    header.message_length = total_len;
    let mut cur = Cursor::new(&prefix[HEADER_LEN..], HEADER_LEN);
    let doc_start = match header.op_code {
        OpCode::Msg => {
            let flags = MsgFlags(cur.i32("flagBits")? as u32);
            match cur.u8("section kind")? {
                0 => Some(cur.pos),
                // A kind-1 section first: the command document follows the sequence.
                1 => {
                    let size = cur.i32("document sequence size")?;
                    cur.pos = cur.pos.saturating_add(size.max(4) as usize - 4);
                    if cur.u8("section kind").ok() == Some(0) {
                        Some(cur.pos)
                    } else {
                        None
                    }
                }
                _ => None,
            }
            .map(|p| (p, Some(flags)))
        }
        OpCode::Query => {
            cur.i32("flags")?;
            cur.cstr("fullCollectionName")?;
            cur.take(8, "skip and return")?;
            Some((cur.pos, None))
        }
        OpCode::Command => {
            cur.cstr("database")?;
            let name = cur.cstr("commandName")?;
            return Ok(Message {
                header,
                compressor: None,
                body: Body::Partial {
                    first_key: Some(name),
                    flags: None,
                    doc: None,
                },
                sender: None,
            });
        }
        OpCode::Reply => {
            cur.take(
                20,
                "responseFlags, cursorID, startingFrom and numberReturned",
            )?;
            Some((cur.pos, None))
        }
        _ => None,
    };
    let doc_bytes = doc_start.and_then(|(pos, _)| cur.buf.get(pos..));
    let first_key = doc_bytes.and_then(first_key_raw);
    let body = match (header.op_code, doc_start) {
        (
            OpCode::Insert
            | OpCode::Update
            | OpCode::Delete
            | OpCode::GetMore
            | OpCode::KillCursors,
            _,
        ) => Body::Legacy,
        _ => Body::Partial {
            first_key,
            flags: doc_start.and_then(|(_, flags)| flags),
            doc: doc_bytes.map(Doc::truncated),
        },
    };
    Ok(Message {
        header,
        compressor: None,
        body,
        sender: None,
    })
}

/// The name of a BSON document's first element, read from possibly incomplete bytes:
/// int32 length, type byte, then the NUL-terminated name.
fn first_key_raw(doc: &[u8]) -> Option<&str> {
    let name = doc.get(5..)?;
    let nul = name.iter().position(|&b| b == 0)?;
    if doc[4] == 0 {
        return None;
    }
    std::str::from_utf8(&name[..nul]).ok()
}

fn first_key(doc: &RawDocument) -> Option<&str> {
    Doc::of(doc).first_key()
}

/// Legacy OP_QUERY commands may wrap the command in `$query` (or `query`) when they carry
/// read preferences.
fn unwrap_query(doc: &RawDocument) -> &RawDocument {
    match doc.iter().next() {
        Some(Ok((k, v))) if k.as_str() == "$query" || k.as_str() == "query" => {
            v.as_document().unwrap_or(doc)
        }
        _ => doc,
    }
}

impl<'a> Message<'a> {
    /// The same message, known to come from `sender`. OP_MSG is used both ways, and
    /// `responseTo` alone cannot always tell: a driver may number its first request 0
    /// (the Rust driver's counter starts there), and the reply then answers "0".
    pub fn sent_by(self, sender: Sender) -> Message<'a> {
        Message {
            sender: Some(sender),
            ..self
        }
    }

    /// Sent by a client: OP_QUERY, OP_COMMAND, legacy writes, or OP_MSG from the client
    /// side (when the sender is not known: OP_MSG not answering anything, `responseTo == 0`).
    pub fn is_request(&self) -> bool {
        match self.header.op_code {
            OpCode::Query
            | OpCode::Command
            | OpCode::Insert
            | OpCode::Update
            | OpCode::Delete
            | OpCode::GetMore
            | OpCode::KillCursors => true,
            OpCode::Msg => match self.sender {
                Some(sender) => sender == Sender::Client,
                None => self.header.response_to == 0,
            },
            _ => false,
        }
    }

    /// Sent by a server: OP_REPLY, OP_COMMANDREPLY, or OP_MSG from the server side (when
    /// the sender is not known: OP_MSG answering a request; exhaust replies answer the
    /// previous reply).
    pub fn is_reply(&self) -> bool {
        match self.header.op_code {
            OpCode::Reply | OpCode::CommandReply => true,
            OpCode::Msg => match self.sender {
                Some(sender) => sender == Sender::Server,
                None => self.header.response_to != 0,
            },
            _ => false,
        }
    }

    /// The command document of a request, or the reply document of a reply.
    pub fn command_doc(&self) -> Option<&'a RawDocument> {
        match self.body {
            Body::Msg { command, .. } => command,
            Body::Query {
                full_collection_name,
                query,
                ..
            } if full_collection_name.ends_with(".$cmd") => Some(unwrap_query(query)),
            Body::Command { command, .. } => Some(command),
            Body::CommandReply { reply } => Some(reply),
            Body::Reply { first, .. } => first,
            _ => None,
        }
    }

    /// Only the message's start was read ([`Body::Partial`]).
    pub fn is_partial(&self) -> bool {
        matches!(self.body, Body::Partial { .. })
    }

    /// OP_MSG flagBits, from the whole message or its captured start.
    pub fn msg_flags(&self) -> Option<MsgFlags> {
        match self.body {
            Body::Msg { flags, .. } => Some(flags),
            Body::Partial { flags, .. } => flags,
            _ => None,
        }
    }

    /// The command (or reply) document's elements: the whole document, or, of a message
    /// only whose start was read, the elements that were captured.
    pub fn fields(&self) -> Option<Doc<'a>> {
        match self.body {
            Body::Partial { doc, .. } => doc,
            _ => self.command_doc().map(Doc::of),
        }
    }

    /// The command a request runs: the first key of its command document.
    pub fn command_name(&self) -> Option<&'a str> {
        match self.body {
            Body::Command { command_name, .. } => Some(command_name),
            Body::Partial { first_key, .. } if self.is_request() => first_key,
            Body::Msg { command, .. } if self.is_request() => command.and_then(first_key),
            Body::Query { .. } => self.command_doc().and_then(first_key),
            _ => None,
        }
    }

    pub fn database(&self) -> Option<&'a str> {
        match self.body {
            Body::Msg { command, .. } => command.and_then(|d| Doc::of(d).get_str("$db")),
            Body::Query {
                full_collection_name,
                ..
            } => full_collection_name.strip_suffix(".$cmd"),
            Body::Command { database, .. } => Some(database),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
