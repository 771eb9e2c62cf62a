//! In-order bytes of one direction → whole messages.
//!
//! The contract follows pcap-parser's streaming readers: the caller pushes bytes as they
//! come, the framer reports what they completed. A message lying wholly inside a push is
//! handed out as a sub-slice of that push (zero copy); only a message that spans pushes is
//! copied, into a buffer that never exceeds `max_buffered + HEADER_LEN`. A message larger
//! than that is reported by its first `prefix_len` bytes and skipped, never buffered whole.
//!
//! After a gap or at a mid-stream start the framer *hunts*: it scans for a plausible
//! header (sane length, known opcode, and a body that starts the way that opcode's body
//! must) and resumes there, counting the bytes it skipped.

use super::error::WireError;
use super::header::{HeaderView, OpCode, HEADER_LEN};
use super::message::MsgFlags;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FramerConfig {
    /// Largest messageLength accepted (the server's maxMessageSizeBytes is 48 MB).
    pub max_message_len: u32,
    /// A message longer than this is not buffered whole when it spans pushes.
    pub max_buffered: usize,
    /// Bytes kept of such a message (enough for its command name).
    pub prefix_len: usize,
}

impl Default for FramerConfig {
    fn default() -> Self {
        FramerConfig {
            max_message_len: super::DEFAULT_MAX_MESSAGE_LEN,
            max_buffered: 1 << 20,
            prefix_len: 16 << 10,
        }
    }
}

#[derive(Debug)]
pub enum FrameEvent<'a> {
    /// One whole message, header included.
    Message(&'a [u8]),
    /// The first bytes of a message longer than `max_buffered`; the rest is skipped.
    Truncated { prefix: &'a [u8], total_len: u32 },
    /// The first bytes of a message whose rest a gap left out (a snap length, lost
    /// packets): its length still tells where the next one starts.
    Cut { prefix: &'a [u8], total_len: u32 },
    /// Bytes skipped while hunting for a plausible header.
    Resynced { skipped: u64 },
    /// A header that made no sense where one was expected; the framer now hunts.
    Malformed {
        stream_offset: u64,
        error: WireError,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// A header is expected at the start of `buf` (or of the input when `buf` is empty).
    Sync,
    /// Collecting the prefix of an oversized message of `total` bytes.
    Prefix { total: u32 },
    /// Skipping the rest of an oversized (or partly lost) message.
    Skip { remaining: u64 },
    /// Looking for a plausible header; `buf` holds a short undecided tail.
    Hunt,
}

/// Bytes a plausibility check may need to see past a candidate's start.
const HUNT_WINDOW: usize = 160;

pub struct Framer {
    cfg: FramerConfig,
    buf: Vec<u8>,
    state: State,
    /// Stream bytes consumed so far.
    offset: u64,
    /// Bytes skipped in the current hunt.
    skipped: u64,
}

enum Plausible {
    Yes,
    No,
    NeedMore,
}

impl Framer {
    pub fn new(cfg: FramerConfig) -> Framer {
        Framer {
            cfg,
            buf: Vec::new(),
            state: State::Sync,
            offset: 0,
            skipped: 0,
        }
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Capacity kept for messages spanning pushes; a connection that once carried a large
    /// message gives the rest back, so memory follows what is buffered now, times open
    /// connections, not the largest message each connection ever saw.
    const KEEP_CAPACITY: usize = 16 << 10;

    fn release_idle_capacity(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > Self::KEEP_CAPACITY {
            self.buf = Vec::new();
        }
    }

    pub fn stream_offset(&self) -> u64 {
        self.offset
    }

    /// The stream starts mid-way: the first bytes may not be a header.
    pub fn hunt(&mut self) {
        self.buf.clear();
        self.state = State::Hunt;
    }

    /// `lost` bytes of the stream were not captured. When they fall inside the message
    /// being collected, what was collected is handed out as [`FrameEvent::Cut`] and its
    /// length tells where the next message starts, so no hunting is needed: a capture
    /// with a short snap length keeps every message's start, and so its command name.
    pub fn gap<F: FnMut(FrameEvent<'_>)>(&mut self, lost: u64, mut on_event: F) {
        self.offset += lost;
        match self.state {
            State::Skip { remaining } if lost < remaining => {
                self.state = State::Skip {
                    remaining: remaining - lost,
                };
            }
            State::Skip { remaining } if lost == remaining => self.state = State::Sync,
            State::Sync | State::Prefix { .. } if self.buf.len() >= HEADER_LEN => {
                let total = match self.state {
                    State::Prefix { total } => total as u64,
                    _ => HeaderView::new_checked(&self.buf)
                        .map(|h| h.message_length().max(0) as u64)
                        .unwrap_or(0),
                };
                let have = self.buf.len() as u64;
                // `buf` holds a message's start (whole ones were handed out already).
                if total > have {
                    let prefix_len = self.buf.len().min(self.cfg.prefix_len);
                    on_event(FrameEvent::Cut {
                        prefix: &self.buf[..prefix_len],
                        total_len: total as u32,
                    });
                }
                self.buf.clear();
                self.release_idle_capacity();
                self.state = match total.checked_sub(have + lost) {
                    Some(0) => State::Sync,
                    Some(remaining) => State::Skip { remaining },
                    None => State::Hunt,
                };
            }
            _ => self.hunt(),
        }
    }

    pub fn push<F: FnMut(FrameEvent<'_>)>(&mut self, data: &[u8], mut on_event: F) {
        let mut input = data;
        loop {
            match self.state {
                State::Skip { remaining } => {
                    let n = remaining.min(input.len() as u64) as usize;
                    input = &input[n..];
                    self.offset += n as u64;
                    if remaining == n as u64 {
                        self.state = State::Sync;
                    } else {
                        self.state = State::Skip {
                            remaining: remaining - n as u64,
                        };
                        return;
                    }
                }
                State::Prefix { total } => {
                    let want = self.cfg.prefix_len.min(total as usize);
                    let n = want.saturating_sub(self.buf.len()).min(input.len());
                    self.buf.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    self.offset += n as u64;
                    if self.buf.len() < want {
                        return;
                    }
                    on_event(FrameEvent::Truncated {
                        prefix: &self.buf[..want],
                        total_len: total,
                    });
                    // A hunting window may already hold more than the prefix.
                    let remaining = (total as u64).saturating_sub(self.buf.len() as u64);
                    self.buf.clear();
                    self.release_idle_capacity();
                    self.state = if remaining > 0 {
                        State::Skip { remaining }
                    } else {
                        State::Sync
                    };
                }
                State::Hunt => {
                    if !self.hunt_step(&mut input, &mut on_event) {
                        return;
                    }
                }
                State::Sync if self.buf.is_empty() => {
                    // The zero-copy path: whole messages straight from the input.
                    while input.len() >= HEADER_LEN {
                        let len = match self.check_header(input, &mut on_event) {
                            Some(len) => len,
                            None => break,
                        };
                        if len > self.cfg.max_buffered && input.len() < len {
                            self.state = State::Prefix { total: len as u32 };
                            break;
                        }
                        if input.len() < len {
                            break;
                        }
                        on_event(FrameEvent::Message(&input[..len]));
                        input = &input[len..];
                        self.offset += len as u64;
                    }
                    if self.state == State::Sync {
                        // A partial message: keep it for the next push.
                        self.buf.extend_from_slice(input);
                        self.offset += input.len() as u64;
                        return;
                    }
                }
                State::Sync => {
                    // A message started in an earlier push.
                    if self.buf.len() < HEADER_LEN {
                        let n = (HEADER_LEN - self.buf.len()).min(input.len());
                        self.buf.extend_from_slice(&input[..n]);
                        input = &input[n..];
                        self.offset += n as u64;
                        if self.buf.len() < HEADER_LEN {
                            return;
                        }
                    }
                    let held = std::mem::take(&mut self.buf);
                    let len = self.check_header(&held, &mut on_event);
                    self.buf = held;
                    let Some(len) = len else {
                        // Hunt from the byte after the bad header's start.
                        self.buf.drain(..1);
                        continue;
                    };
                    if len > self.cfg.max_buffered {
                        self.state = State::Prefix { total: len as u32 };
                        continue;
                    }
                    // After a hunt the buffer may already hold this message and more.
                    let n = len.saturating_sub(self.buf.len()).min(input.len());
                    self.buf.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    self.offset += n as u64;
                    if self.buf.len() < len {
                        return;
                    }
                    on_event(FrameEvent::Message(&self.buf[..len]));
                    self.buf.drain(..len);
                    self.release_idle_capacity();
                }
            }
        }
    }

    /// Validate the header at the start of `bytes` while in sync; on failure report it,
    /// switch to hunting and return `None`.
    fn check_header<F: FnMut(FrameEvent<'_>)>(
        &mut self,
        bytes: &[u8],
        on_event: &mut F,
    ) -> Option<usize> {
        let view = HeaderView::new_checked(bytes).ok()?;
        let len = view.message_length();
        let op = view.op_code();
        let error = if len < 0 || (len as usize) < op.min_len() {
            Some(WireError::Malformed {
                offset: 0,
                what: "messageLength shorter than the smallest message of its opcode",
            })
        } else if len as u64 > self.cfg.max_message_len as u64 {
            Some(WireError::TooLarge {
                length: len as u64,
                max: self.cfg.max_message_len as u64,
            })
        } else if !op.is_known() {
            Some(WireError::Malformed {
                offset: 12,
                what: "unknown opCode",
            })
        } else {
            None
        };
        match error {
            None => Some(len as usize),
            Some(error) => {
                on_event(FrameEvent::Malformed {
                    stream_offset: self.offset,
                    error,
                });
                self.state = State::Hunt;
                self.skipped = 0;
                None
            }
        }
    }

    /// One round of hunting. Returns false when the input is used up.
    fn hunt_step<F: FnMut(FrameEvent<'_>)>(&mut self, input: &mut &[u8], on_event: &mut F) -> bool {
        if !self.buf.is_empty() {
            // Join the undecided tail with a little more input, then decide.
            let n = (HUNT_WINDOW * 2)
                .saturating_sub(self.buf.len())
                .min(input.len());
            self.buf.extend_from_slice(&input[..n]);
            *input = &input[n..];
            self.offset += n as u64;
            let more_coming = !input.is_empty();
            for pos in 0..self.buf.len() {
                match self.plausible(&self.buf[pos..]) {
                    Plausible::Yes => {
                        self.buf.drain(..pos);
                        self.found(pos as u64, on_event);
                        return true;
                    }
                    Plausible::NeedMore => {
                        self.skipped += pos as u64;
                        self.buf.drain(..pos);
                        return more_coming;
                    }
                    Plausible::No => {}
                }
            }
            self.skipped += self.buf.len() as u64;
            self.buf.clear();
            return !input.is_empty();
        }
        for pos in 0..input.len() {
            match self.plausible(&input[pos..]) {
                Plausible::Yes => {
                    *input = &input[pos..];
                    self.offset += pos as u64;
                    self.found(pos as u64, on_event);
                    return true;
                }
                Plausible::NeedMore => {
                    self.skipped += pos as u64;
                    self.buf.extend_from_slice(&input[pos..]);
                    self.offset += input.len() as u64;
                    *input = &[];
                    return false;
                }
                Plausible::No => {}
            }
        }
        self.skipped += input.len() as u64;
        self.offset += input.len() as u64;
        *input = &[];
        false
    }

    fn found<F: FnMut(FrameEvent<'_>)>(&mut self, skipped_here: u64, on_event: &mut F) {
        let skipped = self.skipped + skipped_here;
        self.skipped = 0;
        self.state = State::Sync;
        if skipped > 0 {
            on_event(FrameEvent::Resynced { skipped });
        }
    }

    /// Could a message start here? Checks what each opcode's body must begin with.
    fn plausible(&self, b: &[u8]) -> Plausible {
        use Plausible::*;
        let Ok(view) = HeaderView::new_checked(b) else {
            return NeedMore;
        };
        let len = view.message_length();
        let op = view.op_code();
        if !op.is_known()
            || len < 0
            || (len as usize) < op.min_len()
            || len as u64 > self.cfg.max_message_len as u64
        {
            return No;
        }
        let len = len as usize;
        let i32_at = |at: usize| -> Option<i32> {
            b.get(at..at + 4)
                .map(|s| i32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        };
        let body = HEADER_LEN;
        match op {
            OpCode::Msg => {
                let (Some(flags), Some(&kind)) = (i32_at(body), b.get(body + 4)) else {
                    return NeedMore;
                };
                if MsgFlags(flags as u32).has_unknown_required_bits() || kind > 1 {
                    return No;
                }
                let Some(size) = i32_at(body + 5) else {
                    return NeedMore;
                };
                if size < 5 || size as usize > len - body - 5 {
                    return No;
                }
                if kind == 0 {
                    let Some(&t) = b.get(body + 9) else {
                        return NeedMore;
                    };
                    if !is_bson_type(t) {
                        return No;
                    }
                }
                Yes
            }
            OpCode::Reply => {
                let (Some(flags), Some(start), Some(n)) =
                    (i32_at(body), i32_at(body + 12), i32_at(body + 16))
                else {
                    return NeedMore;
                };
                if !(0..16).contains(&flags) || start < 0 || n < 0 || n as usize > len / 5 {
                    return No;
                }
                // The documents fill the rest exactly: none means a bare 36-byte reply,
                // and the first one fits. (A fake header claiming megabytes would
                // otherwise swallow the real messages after it.)
                const REPLY_FIXED: usize = HEADER_LEN + 20;
                if n == 0 {
                    return if len == REPLY_FIXED { Yes } else { No };
                }
                let Some(first) = i32_at(REPLY_FIXED) else {
                    return NeedMore;
                };
                if first < 5 || first as usize > len - REPLY_FIXED {
                    return No;
                }
                Yes
            }
            OpCode::Compressed => {
                let (Some(orig), Some(size), Some(&id)) =
                    (i32_at(body), i32_at(body + 4), b.get(body + 8))
                else {
                    return NeedMore;
                };
                let orig = OpCode::from(orig);
                if !orig.is_known()
                    || orig == OpCode::Compressed
                    || id > 3
                    || size < 5
                    || size as u64 > self.cfg.max_message_len as u64
                {
                    return No;
                }
                Yes
            }
            // Opcodes whose body starts with flags/zero then a C string: a namespace.
            OpCode::Query | OpCode::Insert | OpCode::Update | OpCode::Delete | OpCode::GetMore => {
                let Some(flags) = i32_at(body) else {
                    return NeedMore;
                };
                if op == OpCode::Query && !(0..256).contains(&flags)
                    || op != OpCode::Query && op != OpCode::Insert && flags != 0
                {
                    return No;
                }
                plausible_cstring(b, body + 4, true)
            }
            OpCode::Command => plausible_cstring(b, body, false),
            OpCode::KillCursors | OpCode::CommandReply => {
                let Some(first) = i32_at(body) else {
                    return NeedMore;
                };
                if first < 0 || first as usize > len {
                    return No;
                }
                Yes
            }
            OpCode::Unknown(_) => No,
        }
    }
}

/// A short, printable C string (a namespace like "db.coll" when `dotted`).
fn plausible_cstring(b: &[u8], at: usize, dotted: bool) -> Plausible {
    let Some(rest) = b.get(at..) else {
        return Plausible::NeedMore;
    };
    let limit = rest.len().min(128);
    match rest[..limit].iter().position(|&c| c == 0) {
        Some(0) => Plausible::No,
        Some(n) => {
            let s = &rest[..n];
            let printable = s.iter().all(|&c| (0x20..0x7f).contains(&c));
            if printable && (!dotted || s.contains(&b'.')) {
                Plausible::Yes
            } else {
                Plausible::No
            }
        }
        None if rest.len() < 128 && rest.iter().all(|&c| (0x20..0x7f).contains(&c)) => {
            Plausible::NeedMore
        }
        None => Plausible::No,
    }
}

/// BSON element type bytes (1–19, MinKey 0xff, MaxKey 0x7f).
fn is_bson_type(t: u8) -> bool {
    matches!(t, 1..=19 | 0x7f | 0xff)
}

#[cfg(test)]
mod tests;
