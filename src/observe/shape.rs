//! Record shapes of a TLS connection that no key decrypts: application-data records
//! (direction, length, time) grouped into *flights*, summarised in a fixed-size state.
//!
//! A flight is a run of records in one direction; a pause longer than [`FLIGHT_GAP_NS`]
//! inside a run starts a new flight, which is how a server-pushed reply (exhaust:
//! `moreToCome`) shows: a server flight with no client flight since the previous server
//! flight. When the TLS handshake was captured, the first client flight is the MongoDB
//! handshake `hello` and the first server flight its reply: they are kept apart as the
//! *opening*, and everything after is the connection's steady behaviour.
//!
//! Nothing is stored per record or per flight: counters, min/max, a running mean and
//! variance (Welford), and a small fixed set of distinct flight sizes. [`ShapeTracker`] is
//! `Copy`, so a live snapshot reads it without disturbing it.

use serde::Serialize;

use crate::capture::Timestamp;
use crate::tcp::Side;

/// Records of one direction closer together than this belong to one flight: a MongoDB
/// message is written at once, its records leave back to back; a heartbeat's pushed replies
/// are at least minHeartbeatFrequencyMS (500 ms) apart.
pub const FLIGHT_GAP_NS: u64 = 100_000_000;
/// A request that follows the previous flight within this, answered within this, right
/// after the opening, is an early round trip: SASL conversation or first operations.
const EARLY_NS: u64 = 250_000_000;
/// Distinct flight sizes remembered per direction.
const DISTINCT: usize = 8;

/// Running count, mean, spread, min and max (Welford), in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spread {
    pub count: u32,
    mean: f64,
    m2: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn add(&mut self, x: f64) {
        self.count += 1;
        if self.count == 1 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        let d = x - self.mean;
        self.mean += d / self.count as f64;
        self.m2 += d * (x - self.mean);
    }
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then_some(self.mean)
    }
    /// Standard deviation (population); 0 for a single value.
    pub fn sd(&self) -> Option<f64> {
        (self.count > 0).then(|| (self.m2 / self.count as f64).max(0.0).sqrt())
    }
    /// Spread relative to the mean: small for a cadence.
    pub fn cv(&self) -> Option<f64> {
        match (self.mean(), self.sd()) {
            (Some(m), Some(sd)) if m > 0.0 => Some(sd / m),
            _ => None,
        }
    }
}

impl Serialize for Spread {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Spread", 5)?;
        st.serialize_field("count", &self.count)?;
        st.serialize_field("mean", &self.mean())?;
        st.serialize_field("sd", &self.sd())?;
        st.serialize_field("min", &(self.count > 0).then_some(self.min))?;
        st.serialize_field("max", &(self.count > 0).then_some(self.max))?;
        st.end()
    }
}

/// One direction's steady flights (the opening excluded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct FlightStats {
    pub flights: u32,
    /// Flights that follow a flight of the same direction, none of the other in between:
    /// for the server, replies pushed without a request.
    pub pushed: u32,
    pub records: u64,
    pub bytes: u64,
    /// Smallest and largest flight, in record bytes.
    pub min_bytes: u64,
    pub max_bytes: u64,
    /// Distinct flight sizes, counted up to 8 (`more_sizes` when there were more).
    pub distinct_sizes: u8,
    pub more_sizes: bool,
    /// From the end of the other direction's flight to the start of this one (seconds):
    /// for the server, response latency.
    pub latency: Spread,
    /// Between the starts of consecutive flights of this direction (seconds); not across
    /// a gap, which may have swallowed flights between them.
    pub interval: Spread,
    /// Gaps in this direction that may have swallowed whole records: as many flights of
    /// the other direction may look pushed, their request or reply lost.
    pub gaps: u32,
    #[serde(skip)]
    sizes: [u32; DISTINCT],
    #[serde(skip)]
    last_start: Option<Timestamp>,
}

impl FlightStats {
    fn add(&mut self, f: &Flight, prev: Option<(Side, Timestamp)>) {
        self.flights += 1;
        self.records += f.records as u64;
        self.bytes += f.bytes;
        if self.flights == 1 {
            self.min_bytes = f.bytes;
            self.max_bytes = f.bytes;
        } else {
            self.min_bytes = self.min_bytes.min(f.bytes);
            self.max_bytes = self.max_bytes.max(f.bytes);
        }
        let size = f.bytes.min(u32::MAX as u64) as u32;
        let known = &self.sizes[..self.distinct_sizes as usize];
        if !known.contains(&size) {
            if (self.distinct_sizes as usize) < DISTINCT {
                self.sizes[self.distinct_sizes as usize] = size;
                self.distinct_sizes += 1;
            } else {
                self.more_sizes = true;
            }
        }
        match prev {
            Some((side, _)) if side == f.side => self.pushed += 1,
            Some((_, end)) => self.latency.add(secs(f.start, end)),
            None => {}
        }
        if let Some(last) = self.last_start {
            self.interval.add(secs(f.start, last));
        }
        self.last_start = Some(f.start);
    }

    /// Flight sizes vary by no more than `tolerance` of the largest (and at least 8 bytes):
    /// the same message each time, as a monitor's hello and its reply.
    pub fn near_constant(&self, tolerance: f64) -> bool {
        self.flights > 0
            && (self.max_bytes - self.min_bytes) as f64
                <= (self.max_bytes as f64 * tolerance).max(8.0)
    }
}

fn secs(later: Timestamp, earlier: Timestamp) -> f64 {
    later.nanos_since(earlier) as f64 / 1e9
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Flight {
    side: Side,
    start: Timestamp,
    end: Timestamp,
    bytes: u64,
    records: u32,
}

/// The MongoDB handshake as record shapes: the client's first flight and the reply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Opening {
    pub hello_bytes: u64,
    pub reply_bytes: u64,
    /// When the reply ended (epoch seconds); null while it has not come.
    pub reply_end: Option<f64>,
}

/// What the classifier reads: the shape in client/server terms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Shape {
    /// Null when the TLS handshake was not captured (the first flights are not known to
    /// be the MongoDB handshake).
    pub opening: Option<Opening>,
    pub client: FlightStats,
    pub server: FlightStats,
    /// Quick request/response pairs right after the opening (SASL or first operations).
    pub early_round_trips: u32,
    /// Each direction's flights after those early pairs: what a monitor's cadence shows
    /// when its handshake is followed by quick commands (the Java driver 3.x's buildinfo
    /// and getlasterror, libmongoc's first check).
    #[serde(skip)]
    pub steady_client: FlightStats,
    #[serde(skip)]
    pub steady_server: FlightStats,
    /// Seconds from the opening reply to the client's next flight.
    pub first_request_after: Option<f64>,
    /// Which side sent the last flight, and when it ended (epoch seconds).
    pub last_from_client: Option<bool>,
    pub last_flight_end: Option<f64>,
    /// TLS 1.3 NewSessionTicket records told apart from replies.
    pub tickets: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum Phase {
    /// The client is not known (handshake not captured): no opening.
    #[default]
    NoOpening,
    AwaitHello,
    AwaitReply,
    Steady,
}

/// Per-connection state; fed once per segment with that segment's application records.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShapeTracker {
    client: Option<Side>,
    phase: Phase,
    open: Option<Flight>,
    /// The last closed flight: its side and end.
    prev: Option<(Side, Timestamp)>,
    opening: Opening,
    sides: [FlightStats; 2],
    early_open: bool,
    early_request: Option<Timestamp>,
    early_round_trips: u32,
    /// Flights after the early pairs, per side ([`Shape::steady_client`]).
    steady: [FlightStats; 2],
    first_request_after: Option<f64>,
    opening_end: Option<Timestamp>,
}

impl ShapeTracker {
    /// `client`: the side that sent the ClientHello, when it was captured.
    pub fn new(client: Option<Side>) -> ShapeTracker {
        ShapeTracker {
            client,
            phase: if client.is_some() {
                Phase::AwaitHello
            } else {
                Phase::NoOpening
            },
            ..ShapeTracker::default()
        }
    }

    /// `side`'s direction lost bytes that may have held whole records (a capture gap).
    pub fn lost(&mut self, side: Side) {
        for stats in [
            &mut self.sides[side.index()],
            &mut self.steady[side.index()],
        ] {
            stats.gaps += 1;
            stats.last_start = None;
        }
    }

    /// `records` application-data records of `bytes` from `side` at `ts`.
    pub fn add(&mut self, side: Side, ts: Timestamp, records: u32, bytes: u64) {
        if records == 0 {
            return;
        }
        match &mut self.open {
            Some(f) if f.side == side && ts.nanos_since(f.end) <= FLIGHT_GAP_NS => {
                f.end = ts;
                f.bytes += bytes;
                f.records += records;
                return;
            }
            _ => {}
        }
        if let Some(done) = self.open.take() {
            self.close(done);
        }
        self.open = Some(Flight {
            side,
            start: ts,
            end: ts,
            bytes,
            records,
        });
    }

    fn close(&mut self, f: Flight) {
        let from_client = Some(f.side) == self.client;
        match self.phase {
            Phase::AwaitHello if from_client => {
                self.opening.hello_bytes = f.bytes;
                self.phase = Phase::AwaitReply;
                self.prev = Some((f.side, f.end));
                return;
            }
            Phase::AwaitReply if !from_client => {
                self.opening.reply_bytes = f.bytes;
                self.opening.reply_end = Some(f.end.as_secs_f64());
                self.opening_end = Some(f.end);
                self.phase = Phase::Steady;
                self.early_open = true;
                self.prev = Some((f.side, f.end));
                return;
            }
            _ => {}
        }
        if from_client {
            if let (None, Some(end)) = (self.first_request_after, self.opening_end) {
                self.first_request_after = Some(secs(f.start, end));
            }
        }
        let mut early = false;
        if self.early_open {
            let prev_end = self.prev.map_or(f.start, |(_, end)| end);
            let quick = f.start.nanos_since(prev_end) <= EARLY_NS;
            match (from_client, self.early_request) {
                (true, None) if quick => {
                    self.early_request = Some(f.start);
                    early = true;
                }
                (false, Some(_)) if quick => {
                    self.early_round_trips += 1;
                    self.early_request = None;
                    early = true;
                }
                _ => self.early_open = false,
            }
        }
        self.sides[f.side.index()].add(&f, self.prev);
        if !early {
            self.steady[f.side.index()].add(&f, self.prev);
        }
        self.prev = Some((f.side, f.end));
    }

    /// The shape so far, the open flight included, with `client` as the client side.
    pub fn shape(&self, client: Side, tickets: u32) -> Shape {
        let mut t = *self;
        if t.client.is_none() {
            t.client = Some(client);
        }
        if let Some(open) = t.open.take() {
            t.close(open);
        }
        let client = t.client.unwrap_or(client);
        Shape {
            opening: (t.phase != Phase::NoOpening).then_some(t.opening),
            client: t.sides[client.index()],
            server: t.sides[client.other().index()],
            early_round_trips: t.early_round_trips,
            steady_client: t.steady[client.index()],
            steady_server: t.steady[client.other().index()],
            first_request_after: t.first_request_after,
            last_from_client: t.prev.map(|(side, _)| side == client),
            last_flight_end: t.prev.map(|(_, end)| end.as_secs_f64()),
            tickets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: Side = Side::A;
    const S: Side = Side::B;

    fn at(secs: f64) -> Timestamp {
        Timestamp((secs * 1e9) as i64)
    }

    #[test]
    fn exhaust_pushes_are_server_flights_without_requests() {
        let mut t = ShapeTracker::new(Some(C));
        t.add(C, at(0.0), 1, 382); // handshake hello
        t.add(S, at(0.01), 1, 515); // its reply
        t.add(C, at(0.012), 1, 171); // awaitable hello, right away
        for beat in 1..=4 {
            t.add(S, at(2.0 * beat as f64), 1, 524);
        }
        let s = t.shape(C, 2);
        let o = s.opening.unwrap();
        assert_eq!((o.hello_bytes, o.reply_bytes), (382, 515));
        assert_eq!(s.client.flights, 1);
        assert_eq!((s.server.flights, s.server.pushed), (4, 3));
        // The first reply answered the awaitable hello after ~2 s.
        assert!((s.server.latency.mean().unwrap() - 1.988).abs() < 1e-6);
        assert!((s.server.interval.mean().unwrap() - 2.0).abs() < 1e-9);
        assert!(s.server.interval.cv().unwrap() < 1e-9);
        assert_eq!(
            s.early_round_trips, 0,
            "the awaitable hello is not answered quickly"
        );
        assert_eq!(s.last_from_client, Some(false));
        assert_eq!(s.tickets, 2);
    }

    #[test]
    fn records_close_together_are_one_flight_and_sizes_are_summarised() {
        let mut t = ShapeTracker::new(None);
        // A request, then a reply in three records over 2 ms, on a 0.5 s cadence with
        // alternating sizes.
        for i in 0..10 {
            let base = i as f64 * 0.5;
            t.add(C, at(base), 1, if i % 2 == 0 { 198 } else { 147 });
            t.add(S, at(base + 0.001), 2, 1000);
            t.add(S, at(base + 0.003), 1, 62 + i);
        }
        let s = t.shape(C, 0);
        assert!(s.opening.is_none());
        assert_eq!(s.client.flights, 10);
        assert_eq!(s.server.flights, 10);
        assert_eq!(s.server.records, 30);
        assert_eq!(s.server.pushed, 0);
        assert_eq!((s.client.min_bytes, s.client.max_bytes), (147, 198));
        assert_eq!(s.client.distinct_sizes, 2);
        assert_eq!(s.server.distinct_sizes, 8);
        assert!(s.server.more_sizes);
        assert!(!s.client.near_constant(0.05));
        assert!((s.server.latency.mean().unwrap() - 0.001).abs() < 1e-6);
    }

    #[test]
    fn early_round_trips_count_the_quick_pairs_after_the_opening() {
        let mut t = ShapeTracker::new(Some(C));
        t.add(C, at(0.0), 1, 400);
        t.add(S, at(0.01), 3, 900); // tickets + reply
        for k in 0..2 {
            // saslContinue and its reply
            let base = 0.02 + k as f64 * 0.01;
            t.add(C, at(base), 1, 200);
            t.add(S, at(base + 0.002), 1, 180);
        }
        t.add(C, at(5.0), 1, 100); // much later: not early
        t.add(S, at(5.001), 1, 100);
        let s = t.shape(C, 0);
        assert_eq!(s.early_round_trips, 2);
        assert!((s.first_request_after.unwrap() - 0.01).abs() < 1e-9);
        // A snapshot does not disturb the tracker.
        assert_eq!(t.shape(C, 0), s);
    }
}
