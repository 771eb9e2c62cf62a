//! The analysis on two threads (`--threads 2`): reading, slicing and reassembly (stages
//! 1–3) on one, the observer (stages 4–5) and the caller's hook on the other. The front
//! thread's flow table hands its calls (open, bytes, touched, close) to a [`Forwarder`],
//! which records them in batches; the observer thread replays each batch, in order, into
//! the [`Observer`]. The observer therefore sees exactly the calls it would have seen on
//! one thread, in the same order, and so does the hook: the analysis is the same, byte for
//! byte. Only the wall time differs.
//!
//! A pipeline rather than a split of the flows among workers: classification and the
//! in-flight counts are per client host and the fold's result depends on which
//! connections were held when it ran, so workers owning disjoint flows would have to meet
//! at every hook to stay deterministic. Two stages in a row need no such meeting; more
//! threads than two would have nothing to do.

use std::sync::mpsc::{self, Receiver, SyncSender};

use super::{
    finish_analysis, read_source, with_source, Analysis, AnalyzerConfig, Front, FrontEnd, Held,
    Progress, Step,
};
use crate::capture::{PacketSource, Timestamp};
use crate::classify::Window;
use crate::observe::{ConnState, Observations, Observer};
use crate::tcp::{Close, ConnHandler, ConnInfo, Side, StreamEvent, StreamStats, TableConfig};

/// A batch is handed over once it holds this many calls or this many payload bytes: large
/// enough that the hand-over costs nothing per packet, small enough that the batches in
/// flight ([`BATCHES_IN_FLIGHT`] plus the two being filled and replayed) stay a few MB.
const BATCH_CALLS: usize = 4096;
const BATCH_BYTES: usize = 512 << 10;
/// Filled batches waiting for the observer; the front thread blocks beyond that, so a
/// slower observer bounds memory instead of letting batches pile up.
const BATCHES_IN_FLIGHT: usize = 2;

/// An open connection's place in the observer thread's table, reused once it closes.
type Slot = u32;

/// One recorded call of the flow table on its handler, or a point of the read loop. Kept
/// small (the batch's other arrays hold the large parts, in call order): most packets
/// make one or two of these.
enum Call {
    /// The connection's info is the batch's next in `infos`.
    Open(Slot),
    /// The info's changing part, sent whenever it differs from what was sent last.
    Touched {
        slot: Slot,
        last_seen: Timestamp,
        close: Option<Close>,
        answered: bool,
        closing_since: Option<Timestamp>,
    },
    Stream {
        slot: Slot,
        side: Side,
        ts: Timestamp,
        event: Recorded,
    },
    /// The info and stream figures are the batch's next in `infos` and `closes`.
    Close(Slot),
    Hook(Option<Window>),
    Progress(Progress),
}

/// A [`StreamEvent`] whose bytes were copied into the batch.
enum Recorded {
    MidStreamStart,
    /// `batch.bytes[start..end]`.
    Data {
        start: u32,
        end: u32,
    },
    Gap(u64),
}

#[derive(Default)]
struct Batch {
    calls: Vec<Call>,
    bytes: Vec<u8>,
    infos: Vec<ConnInfo>,
    closes: Vec<[StreamStats; 2]>,
}

impl Batch {
    fn clear(&mut self) {
        self.calls.clear();
        self.bytes.clear();
        self.infos.clear();
        self.closes.clear();
    }
}

/// The front thread's handler: records calls into the current batch and sends full
/// batches on. Emptied batches come back to be filled again, so a long run allocates
/// only the first few.
struct Forwarder {
    batch: Batch,
    to_observer: SyncSender<Batch>,
    emptied: Receiver<Batch>,
    free_slots: Vec<Slot>,
    /// By slot: the info's changing part as last sent.
    sent: Vec<Changing>,
    /// The observer thread is gone (it can only have panicked): batches are dropped.
    observer_gone: bool,
}

impl Forwarder {
    /// Record a call (after whatever it refers to in the batch's other arrays), and send
    /// the batch on if it is full: even one packet's calls, or the end of input flushing
    /// every connection, never grow a batch far past its bounds.
    fn push(&mut self, call: Call) {
        self.batch.calls.push(call);
        if self.batch.calls.len() >= BATCH_CALLS || self.batch.bytes.len() >= BATCH_BYTES {
            self.send();
        }
    }

    fn send(&mut self) {
        let next = self.emptied.try_recv().unwrap_or_default();
        let full = std::mem::replace(&mut self.batch, next);
        if self.observer_gone || self.to_observer.send(full).is_err() {
            self.observer_gone = true;
            self.batch.clear();
        }
    }

    /// Keep the observer's copy of the connection's info up to date.
    fn update(&mut self, slot: Slot, info: &ConnInfo) {
        let now = changing(info);
        let sent = &mut self.sent[slot as usize];
        if *sent != now {
            *sent = now;
            self.push(Call::Touched {
                slot,
                last_seen: info.last_seen,
                close: info.close,
                answered: info.answered,
                closing_since: info.closing_since,
            });
        }
    }
}

/// The part of a connection's info that changes after it opens.
type Changing = (Timestamp, Option<Close>, bool, Option<Timestamp>);

fn changing(info: &ConnInfo) -> Changing {
    (
        info.last_seen,
        info.close,
        info.answered,
        info.closing_since,
    )
}

impl ConnHandler for Forwarder {
    type State = Slot;

    fn open(&mut self, info: &ConnInfo) -> Slot {
        let now = changing(info);
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.sent[slot as usize] = now;
                slot
            }
            None => {
                self.sent.push(now);
                (self.sent.len() - 1) as Slot
            }
        };
        self.batch.infos.push(*info);
        self.push(Call::Open(slot));
        slot
    }

    fn stream(
        &mut self,
        slot: &mut Slot,
        info: &ConnInfo,
        side: Side,
        ts: Timestamp,
        event: StreamEvent<'_>,
    ) {
        self.update(*slot, info);
        let event = match event {
            StreamEvent::MidStreamStart => Recorded::MidStreamStart,
            StreamEvent::Data(data) => {
                let bytes = &mut self.batch.bytes;
                let start = bytes.len() as u32;
                bytes.extend_from_slice(data);
                Recorded::Data {
                    start,
                    end: bytes.len() as u32,
                }
            }
            StreamEvent::Gap(n) => Recorded::Gap(n),
        };
        self.push(Call::Stream {
            slot: *slot,
            side,
            ts,
            event,
        });
    }

    fn touched(&mut self, slot: &mut Slot, info: &ConnInfo) {
        self.update(*slot, info);
    }

    fn close(&mut self, slot: Slot, info: &ConnInfo, stats: [StreamStats; 2]) {
        self.batch.infos.push(*info);
        self.batch.closes.push(stats);
        self.push(Call::Close(slot));
        self.free_slots.push(slot);
    }
}

/// An open connection as the observer thread holds it: its state, and the flow table's
/// latest info about it (for [`Held::peek_open`]).
struct Open {
    info: ConnInfo,
    state: ConnState,
}

/// The observer thread's side: what [`super::Analyzer`] holds of the observer, with the
/// open connections by slot instead of in the flow table.
struct Back {
    observer: Observer,
    open: Vec<Option<Open>>,
    window: Option<Window>,
}

impl Back {
    fn replay(
        &mut self,
        batch: &Batch,
        on_progress: &mut dyn FnMut(Progress),
        between: &mut dyn FnMut(&mut dyn Held),
    ) {
        let mut infos = batch.infos.iter();
        let mut closes = batch.closes.iter();
        for call in &batch.calls {
            match *call {
                Call::Open(slot) => {
                    let info = *infos.next().expect("an info per open");
                    let state = self.observer.open(&info);
                    let at = slot as usize;
                    if at >= self.open.len() {
                        // Grown by a quarter, not doubled: slots are 136 bytes, and a
                        // doubled table was ~2 MB of empty ones at 17,000 open.
                        let more = (at + 1 - self.open.len()).max(self.open.len() / 4);
                        self.open.reserve_exact(more);
                        self.open.resize_with(at + 1, || None);
                    }
                    self.open[at] = Some(Open { info, state });
                }
                Call::Touched {
                    slot,
                    last_seen,
                    close,
                    answered,
                    closing_since,
                } => {
                    let info = &mut slot_of(&mut self.open, slot).info;
                    info.last_seen = last_seen;
                    info.close = close;
                    info.answered = answered;
                    info.closing_since = closing_since;
                }
                Call::Stream {
                    slot,
                    side,
                    ts,
                    ref event,
                } => {
                    let event = match *event {
                        Recorded::MidStreamStart => StreamEvent::MidStreamStart,
                        Recorded::Data { start, end } => {
                            StreamEvent::Data(&batch.bytes[start as usize..end as usize])
                        }
                        Recorded::Gap(n) => StreamEvent::Gap(n),
                    };
                    let open = slot_of(&mut self.open, slot);
                    self.observer
                        .stream(&mut open.state, &open.info, side, ts, event);
                }
                Call::Close(slot) => {
                    let info = infos.next().expect("an info per close");
                    let stats = *closes.next().expect("figures per close");
                    let open = self.open[slot as usize].take().expect("opened before");
                    self.observer.close(open.state, info, stats);
                }
                Call::Hook(window) => {
                    self.window = window;
                    between(self);
                }
                Call::Progress(progress) => on_progress(progress),
            }
        }
    }
}

fn slot_of(open: &mut [Option<Open>], slot: Slot) -> &mut Open {
    open[slot as usize].as_mut().expect("opened before")
}

impl Held for Back {
    fn closed(&self) -> &[Box<Observations>] {
        &self.observer.finished
    }

    fn closed_mut(&mut self) -> &mut Vec<Box<Observations>> {
        &mut self.observer.finished
    }

    fn peek_open(&self, wanted: &dyn Fn(&ConnInfo) -> bool) -> Vec<Box<Observations>> {
        self.open
            .iter()
            .flatten()
            .filter(|open| wanted(&open.info))
            .filter_map(|open| self.observer.peek(&open.state, &open.info).map(Box::new))
            .collect()
    }

    fn window(&self) -> Option<Window> {
        self.window
    }
}

/// [`super::analyze_with_hook`] on two threads, with the same result; on this thread
/// alone if no second one can be started.
pub fn analyze_pipelined(
    source: &mut (dyn PacketSource + Send),
    config: AnalyzerConfig,
    on_progress: &mut dyn FnMut(Progress),
    between: &mut dyn FnMut(&mut dyn Held),
) -> Analysis {
    let (to_observer, filled) = mpsc::sync_channel::<Batch>(BATCHES_IN_FLIGHT);
    let (give_back, emptied) = mpsc::channel::<Batch>();
    let table = config.table;
    let pipelined = std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("conn-attrib read".into())
            .spawn_scoped(scope, || {
                read_and_forward(source, table, to_observer, emptied)
            })
            .ok()?;
        let mut back = Back {
            observer: Observer::new(config.observer.clone()),
            open: Vec::new(),
            window: None,
        };
        for mut batch in filled.iter() {
            back.replay(&batch, on_progress, between);
            batch.clear();
            // The reader may have finished: then the batch is simply dropped.
            let _ = give_back.send(batch);
        }
        match reader.join() {
            Ok(end) => Some((end, back.observer)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    match pipelined {
        Some((front, observer)) => with_source(finish_analysis(front, observer), source),
        // No second thread to be had (a process limit): nothing was read yet.
        None => super::analyze_with_hook(source, config, on_progress, between),
    }
}

/// The reading thread: stages 1–3, their calls recorded and sent on in batches.
fn read_and_forward(
    source: &mut (dyn PacketSource + Send),
    table: TableConfig,
    to_observer: SyncSender<Batch>,
    emptied: Receiver<Batch>,
) -> FrontEnd {
    let mut front = Front::new(table);
    let mut forwarder = Forwarder {
        batch: Batch::default(),
        to_observer,
        emptied,
        free_slots: Vec::new(),
        sent: Vec::new(),
        observer_gone: false,
    };
    read_source(source, |step| match step {
        Step::Packet(packet) => front.packet(packet, &mut forwarder),
        Step::Hook => forwarder.push(Call::Hook(front.input.window())),
        Step::Progress(stats, done) => forwarder.push(Call::Progress(Progress::of(
            stats,
            front.table.stats.connections,
            done,
        ))),
        Step::Failed(err) => front.source_failed(err),
    });
    front.source_notes(source.take_notes());
    let end = front.finish(&mut forwarder);
    forwarder.send();
    // Dropping the forwarder's sender ends the observer's loop.
    end
}
