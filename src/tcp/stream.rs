//! One direction of a TCP connection: segments in, in-order bytes and gaps out.
//!
//! A segment is in order (deliver, then drain what was waiting), old (a retransmission or
//! duplicate: drop), partly old (deliver the new part), or early (keep a copy, bounded).
//! Copies are only made for early segments; in-order data is passed through as the
//! packet's own slice. When the early buffer would exceed its cap, or the peer acknowledges
//! bytes the capture never showed, the missing range is declared a gap and delivery goes on
//! after it: a capture that lost packets degrades to a counted gap, never to a stall.

use super::seq::SeqNumber;

/// What one direction hands to the next stage.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    /// The first bytes of a direction whose start (SYN) was not captured: the next stage
    /// must not assume they begin a message.
    MidStreamStart,
    Data(&'a [u8]),
    /// `n` bytes of the stream are missing from the capture.
    Gap(u64),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Payload bytes delivered in order.
    pub bytes: u64,
    pub segments: u64,
    /// Segments dropped as retransmissions or duplicates.
    pub retransmissions: u64,
    pub out_of_order: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Times the early-segment buffer hit its cap (per stream or table-wide) and what it
    /// held was given up as a gap.
    pub cap_hits: u64,
}

#[derive(Debug)]
struct Early {
    seq: SeqNumber,
    data: Vec<u8>,
    /// Bytes after `data` that the snap length cut off.
    missing_tail: u32,
}

#[derive(Debug, Default)]
pub struct HalfStream {
    /// The next sequence number we expect; `None` until the first segment fixes it.
    next: Option<SeqNumber>,
    early: Vec<Early>,
    early_bytes: usize,
    pub stats: StreamStats,
}

/// Limits for one direction's early-segment buffer.
#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    pub max_early_bytes: usize,
    pub max_early_segments: usize,
}

impl HalfStream {
    /// A SYN fixes the initial sequence number: data starts right after it.
    pub fn syn(&mut self, isn: u32) {
        if self.next.is_none() {
            self.next = Some(SeqNumber(isn).wrapping_add(1));
        }
    }

    /// A FIN at `fin_seq` occupies one sequence number: step over it once the data before
    /// it is in, so the peer's ACK of the FIN is not mistaken for a missing byte.
    pub fn fin(&mut self, fin_seq: u32) {
        if self.next == Some(SeqNumber(fin_seq)) {
            self.next = Some(SeqNumber(fin_seq).wrapping_add(1));
        }
    }

    pub fn buffered(&self) -> usize {
        self.early_bytes
    }

    /// Feed one segment's payload. `budget` is the table-wide allowance for early bytes;
    /// it is debited for what this direction buffers and credited when it drains.
    ///
    /// Half of all segments are bare ACKs: that test is inlined into the caller, whatever
    /// the compiler decides for the rest (left out of line, it cost ~1% of a run).
    #[inline]
    pub fn segment<F: FnMut(StreamEvent<'_>)>(
        &mut self,
        seq: u32,
        payload: &[u8],
        missing_tail: u32,
        limits: StreamLimits,
        budget: &mut usize,
        emit: F,
    ) {
        if payload.is_empty() && missing_tail == 0 {
            return;
        }
        self.data_segment(seq, payload, missing_tail, limits, budget, emit);
    }

    fn data_segment<F: FnMut(StreamEvent<'_>)>(
        &mut self,
        seq: u32,
        payload: &[u8],
        missing_tail: u32,
        limits: StreamLimits,
        budget: &mut usize,
        mut emit: F,
    ) {
        let len = payload.len() as u32 + missing_tail;
        self.stats.segments += 1;
        let seq = SeqNumber(seq);
        let next = match self.next {
            Some(next) => next,
            None => {
                emit(StreamEvent::MidStreamStart);
                self.next = Some(seq);
                seq
            }
        };
        let offset = seq.diff(next);
        if offset > 0 {
            self.keep_early(seq, payload, missing_tail, limits, budget, &mut emit);
            return;
        }
        let already = (-offset) as u64;
        if already >= len as u64 {
            self.stats.retransmissions += 1;
            return;
        }
        // Deliver the part we have not seen yet.
        self.deliver(payload, missing_tail, already as usize, &mut emit);
        self.drain(budget, &mut emit);
    }

    /// The peer acknowledged up to `ack`: it received every byte before it. Bytes we
    /// never saw below `ack` are lost from the capture, not from the connection.
    ///
    /// Nearly every ACK acknowledges bytes already seen: that test is inlined.
    #[inline]
    pub fn acknowledged<F: FnMut(StreamEvent<'_>)>(
        &mut self,
        ack: u32,
        budget: &mut usize,
        emit: F,
    ) {
        let Some(next) = self.next else { return };
        let ack = SeqNumber(ack);
        let missing = ack.diff(next);
        // Only trust a modest jump: a wildly different ack is a port-reuse or garbage.
        if missing <= 0 || missing >= (1 << 30) {
            return;
        }
        self.skip_unseen(ack, budget, emit);
    }

    /// Bytes below `ack` the capture never showed: skipped as gaps, while buffered
    /// segments below the ack are still delivered.
    fn skip_unseen<F: FnMut(StreamEvent<'_>)>(
        &mut self,
        ack: SeqNumber,
        budget: &mut usize,
        mut emit: F,
    ) {
        loop {
            self.drain(budget, &mut emit);
            let next = self.next.expect("set above");
            if ack.diff(next) <= 0 {
                return;
            }
            let target = match self.early.get(self.earliest()) {
                Some(e) if e.seq < ack => e.seq,
                _ => ack,
            };
            self.skip_to(target, &mut emit);
        }
    }

    /// End of the connection (or of the capture): deliver whatever is buffered, with gaps.
    pub fn flush<F: FnMut(StreamEvent<'_>)>(&mut self, budget: &mut usize, mut emit: F) {
        while !self.early.is_empty() {
            let first = self.earliest();
            let seq = self.early[first].seq;
            self.skip_to(seq, &mut emit);
            self.drain(budget, &mut emit);
        }
    }

    fn deliver<F: FnMut(StreamEvent<'_>)>(
        &mut self,
        payload: &[u8],
        missing_tail: u32,
        skip: usize,
        emit: &mut F,
    ) {
        let next = self.next.expect("deliver follows next");
        let mut advanced = 0u32;
        if skip < payload.len() {
            let fresh = &payload[skip..];
            self.stats.bytes += fresh.len() as u64;
            emit(StreamEvent::Data(fresh));
            advanced += fresh.len() as u32;
        }
        let tail_skip = skip.saturating_sub(payload.len()) as u32;
        let tail = missing_tail.saturating_sub(tail_skip);
        if tail > 0 {
            self.note_gap(tail as u64);
            emit(StreamEvent::Gap(tail as u64));
            advanced += tail;
        }
        self.next = Some(next.wrapping_add(advanced));
    }

    fn keep_early<F: FnMut(StreamEvent<'_>)>(
        &mut self,
        seq: SeqNumber,
        payload: &[u8],
        missing_tail: u32,
        limits: StreamLimits,
        budget: &mut usize,
        emit: &mut F,
    ) {
        self.stats.out_of_order += 1;
        if self
            .early
            .iter()
            .any(|e| e.seq == seq && e.data.len() >= payload.len())
        {
            self.stats.retransmissions += 1;
            return;
        }
        let over_stream = self.early_bytes + payload.len() > limits.max_early_bytes
            || self.early.len() >= limits.max_early_segments;
        if over_stream || payload.len() > *budget {
            self.stats.cap_hits += 1;
            // Waiting longer cannot be afforded: whatever precedes the earliest buffered
            // segment is declared lost, and what is buffered goes out now.
            self.flush(budget, &mut *emit);
            self.skip_to(seq, emit);
            self.deliver(payload, missing_tail, 0, emit);
            return;
        }
        *budget -= payload.len();
        self.early_bytes += payload.len();
        self.early.push(Early {
            seq,
            data: payload.to_vec(),
            missing_tail,
        });
    }

    /// Deliver buffered segments that have become in order.
    fn drain<F: FnMut(StreamEvent<'_>)>(&mut self, budget: &mut usize, emit: &mut F) {
        while !self.early.is_empty() {
            let next = self.next.expect("drain follows next");
            let first = self.earliest();
            if self.early[first].seq.diff(next) > 0 {
                return;
            }
            let early = self.early.swap_remove(first);
            self.early_bytes -= early.data.len();
            *budget += early.data.len();
            let already = (-early.seq.diff(next)) as u64;
            let len = early.data.len() as u64 + early.missing_tail as u64;
            if already >= len {
                self.stats.retransmissions += 1;
                continue;
            }
            self.deliver(&early.data, early.missing_tail, already as usize, emit);
        }
    }

    fn skip_to<F: FnMut(StreamEvent<'_>)>(&mut self, to: SeqNumber, emit: &mut F) {
        let Some(next) = self.next else { return };
        let missing = to.diff(next);
        if missing > 0 {
            self.note_gap(missing as u64);
            emit(StreamEvent::Gap(missing as u64));
            self.next = Some(to);
        }
    }

    fn earliest(&self) -> usize {
        let mut best = 0;
        for (i, e) in self.early.iter().enumerate() {
            if e.seq < self.early[best].seq {
                best = i;
            }
        }
        best
    }

    fn note_gap(&mut self, bytes: u64) {
        self.stats.gaps += 1;
        self.stats.gap_bytes += bytes;
    }

    /// Where the stream will resume; for port-reuse detection.
    pub fn next_seq(&self) -> Option<u32> {
        self.next.map(|s| s.0)
    }

    /// Release buffered bytes back to the table's budget (the connection is going away).
    pub fn release(&mut self, budget: &mut usize) {
        *budget += self.early_bytes;
        self.early_bytes = 0;
        self.early.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: StreamLimits = StreamLimits {
        max_early_bytes: 1 << 16,
        max_early_segments: 16,
    };

    #[derive(Default)]
    struct Out {
        bytes: Vec<u8>,
        gaps: Vec<u64>,
        mid: bool,
    }

    fn feed(s: &mut HalfStream, out: &mut Out, seq: u32, data: &[u8]) {
        let mut budget = 1 << 20;
        s.segment(seq, data, 0, LIMITS, &mut budget, |e| match e {
            StreamEvent::Data(d) => out.bytes.extend_from_slice(d),
            StreamEvent::Gap(n) => out.gaps.push(n),
            StreamEvent::MidStreamStart => out.mid = true,
        });
    }

    #[test]
    fn in_order_out_of_order_and_duplicates() {
        let mut s = HalfStream::default();
        let mut out = Out::default();
        s.syn(99);
        feed(&mut s, &mut out, 100, b"abc");
        feed(&mut s, &mut out, 106, b"ghi"); // early
        feed(&mut s, &mut out, 100, b"abc"); // duplicate
        feed(&mut s, &mut out, 103, b"def"); // fills the hole
        feed(&mut s, &mut out, 104, b"efgh"); // overlaps old data only
        feed(&mut s, &mut out, 108, b"ijkl"); // partly new
        assert_eq!(out.bytes, b"abcdefghijkl");
        assert!(out.gaps.is_empty());
        assert!(!out.mid);
        assert_eq!(s.stats.retransmissions, 2);
    }

    #[test]
    fn mid_stream_start_and_ack_gap() {
        let mut s = HalfStream::default();
        let mut out = Out::default();
        feed(&mut s, &mut out, 5000, b"xy");
        assert!(out.mid);
        feed(&mut s, &mut out, 5010, b"zz"); // early; 8 bytes never captured
        let mut budget = 1 << 20;
        s.acknowledged(5012, &mut budget, |e| match e {
            StreamEvent::Data(d) => out.bytes.extend_from_slice(d),
            StreamEvent::Gap(n) => out.gaps.push(n),
            StreamEvent::MidStreamStart => {}
        });
        assert_eq!(out.bytes, b"xyzz");
        assert_eq!(out.gaps, vec![8]);
    }

    #[test]
    fn buffer_cap_turns_into_gap() {
        let mut s = HalfStream::default();
        let mut out = Out::default();
        s.syn(0);
        let limits = StreamLimits {
            max_early_bytes: 10,
            max_early_segments: 16,
        };
        let mut budget = 1 << 20;
        let mut sink = |e: StreamEvent<'_>| match e {
            StreamEvent::Data(d) => out.bytes.extend_from_slice(d),
            StreamEvent::Gap(n) => out.gaps.push(n),
            StreamEvent::MidStreamStart => {}
        };
        s.segment(11, b"aaaa", 0, limits, &mut budget, &mut sink);
        s.segment(15, b"bbbb", 0, limits, &mut budget, &mut sink);
        s.segment(19, b"cccc", 0, limits, &mut budget, &mut sink); // over the cap
        assert_eq!(out.bytes, b"aaaabbbbcccc");
        assert_eq!(out.gaps, vec![10]);
        assert_eq!(s.buffered(), 0);
        assert_eq!(budget, 1 << 20);
    }

    #[test]
    fn wraps_around_zero() {
        let mut s = HalfStream::default();
        let mut out = Out::default();
        s.syn(0xffff_fffd);
        feed(&mut s, &mut out, 0xffff_fffe, b"ab");
        feed(&mut s, &mut out, 0x0000_0001, b"d");
        feed(&mut s, &mut out, 0x0000_0000, b"c");
        assert_eq!(out.bytes, b"abcd");
    }

    #[test]
    fn missing_tail_is_a_gap() {
        let mut s = HalfStream::default();
        let mut out = Out::default();
        s.syn(0);
        let mut budget = 1 << 20;
        s.segment(1, b"ab", 3, LIMITS, &mut budget, |e| match e {
            StreamEvent::Data(d) => out.bytes.extend_from_slice(d),
            StreamEvent::Gap(n) => out.gaps.push(n),
            StreamEvent::MidStreamStart => {}
        });
        feed(&mut s, &mut out, 6, b"z");
        assert_eq!(out.bytes, b"abz");
        assert_eq!(out.gaps, vec![3]);
    }
}
