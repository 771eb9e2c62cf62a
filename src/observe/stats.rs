//! Small numeric summaries: per connection a bounded [`Summary`], per server node
//! hdrhistograms ([`NodeStats`]) for heartbeat cadence, hello round trips and operation
//! latency. Both have a fixed size however long the capture is.

use std::net::SocketAddr;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Samples kept per summary for medians; the first ones are representative enough for
/// a cadence, and the bound keeps a busy connection's record small.
const SAMPLES: usize = 32;

/// Count, min, max, mean and a median from the first few samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub sum: f64,
    #[serde(skip)]
    samples: Vec<f32>,
}

impl Summary {
    /// Count, min, max and sum only: a fixed size, nothing allocated.
    pub fn add(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = Some(self.min.map_or(value, |m| m.min(value)));
        self.max = Some(self.max.map_or(value, |m| m.max(value)));
    }
    /// As [`Summary::add`], and keep the first samples for [`Summary::median`]: only for the
    /// series whose median classification reads (hello cadence).
    pub fn add_sample(&mut self, value: f64) {
        self.add(value);
        if self.samples.len() < SAMPLES {
            self.samples.push(value as f32);
        }
    }
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
    pub fn median(&self) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        let mut s = self.samples.clone();
        s.sort_by(|a, b| a.total_cmp(b));
        Some(s[s.len() / 2] as f64)
    }
}

/// p50/p99/max of a histogram, in the histogram's unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Clone, Debug)]
pub struct NodeHistograms {
    /// Seconds between consecutive hello replies on monitoring connections, in ms.
    pub heartbeat_ms: Histogram<u64>,
    /// Round trip of non-awaitable hellos, µs.
    pub hello_rtt_us: Histogram<u64>,
    /// Round trip of operations, µs.
    pub op_latency_us: Histogram<u64>,
}

impl Default for NodeHistograms {
    fn default() -> Self {
        let h = || Histogram::new(2).expect("2 significant figures is valid");
        NodeHistograms {
            heartbeat_ms: h(),
            hello_rtt_us: h(),
            op_latency_us: h(),
        }
    }
}

/// A histogram cut into equal-width bins between its smallest and largest value, for
/// small charts in reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Bins {
    pub lo: f64,
    pub hi: f64,
    pub counts: Vec<u64>,
}

fn bins(h: &Histogram<u64>, scale: f64, n: usize) -> Option<Bins> {
    if h.is_empty() {
        return None;
    }
    let (lo, hi) = (h.min() as f64 / scale, h.max() as f64 / scale);
    let mut counts = vec![0u64; n];
    let width = (hi - lo) / n as f64;
    for v in h.iter_recorded() {
        let x = v.value_iterated_to() as f64 / scale;
        let i = if width > 0.0 {
            (((x - lo) / width) as usize).min(n - 1)
        } else {
            0
        };
        counts[i] += v.count_at_value();
    }
    Some(Bins { lo, hi, counts })
}

/// Bins per chart: enough to show a shape, few enough to stay a thumbnail.
const CHART_BINS: usize = 16;

fn percentiles(h: &Histogram<u64>, scale: f64) -> Option<Percentiles> {
    (!h.is_empty()).then(|| Percentiles {
        count: h.len(),
        p50: h.value_at_quantile(0.5) as f64 / scale,
        p99: h.value_at_quantile(0.99) as f64 / scale,
        max: h.max() as f64 / scale,
    })
}

impl NodeHistograms {
    /// Heartbeat interval in seconds.
    pub fn heartbeat(&self) -> Option<Percentiles> {
        percentiles(&self.heartbeat_ms, 1000.0)
    }
    /// Heartbeat intervals in seconds, binned.
    pub fn heartbeat_bins(&self) -> Option<Bins> {
        bins(&self.heartbeat_ms, 1000.0, CHART_BINS)
    }
    /// Hello round trips in milliseconds, binned.
    pub fn hello_rtt_bins(&self) -> Option<Bins> {
        bins(&self.hello_rtt_us, 1000.0, CHART_BINS)
    }
    /// Hello round trip in milliseconds.
    pub fn hello_rtt(&self) -> Option<Percentiles> {
        percentiles(&self.hello_rtt_us, 1000.0)
    }
    /// Operation latency in milliseconds.
    pub fn op_latency(&self) -> Option<Percentiles> {
        percentiles(&self.op_latency_us, 1000.0)
    }
}

/// Histograms per server endpoint.
#[derive(Clone, Debug, Default)]
pub struct NodeStats {
    /// FxHash: looked up for every hello and operation reply.
    pub nodes: rustc_hash::FxHashMap<SocketAddr, NodeHistograms>,
}

impl NodeStats {
    fn node(&mut self, server: SocketAddr) -> &mut NodeHistograms {
        self.nodes.entry(server).or_default()
    }
    // `record` (not `saturating_record`) so the auto-resizing histograms grow to the value;
    // it can only fail beyond u64, which a float-to-int cast cannot produce.
    pub fn heartbeat(&mut self, server: SocketAddr, secs: f64) {
        let _ = self
            .node(server)
            .heartbeat_ms
            .record((secs * 1000.0) as u64);
    }
    pub fn hello_rtt(&mut self, server: SocketAddr, ms: f64) {
        let _ = self.node(server).hello_rtt_us.record((ms * 1000.0) as u64);
    }
    pub fn op_latency(&mut self, server: SocketAddr, ms: f64) {
        let _ = self.node(server).op_latency_us.record((ms * 1000.0) as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_percentiles() {
        let mut s = Summary::default();
        for v in [3.0, 1.0, 2.0] {
            s.add_sample(v);
        }
        assert_eq!(s.count, 3);
        assert_eq!(s.median(), Some(2.0));
        assert_eq!(s.min, Some(1.0));
        assert_eq!(s.max, Some(3.0));
        let mut n = NodeStats::default();
        let addr: SocketAddr = "10.0.0.9:27017".parse().unwrap();
        for _ in 0..99 {
            n.op_latency(addr, 1.0);
        }
        n.op_latency(addr, 100.0);
        let p = n.nodes[&addr].op_latency().unwrap();
        assert_eq!(p.count, 100);
        assert!((p.p50 - 1.0).abs() < 0.05, "{p:?}");
        assert!((p.max - 100.0).abs() < 1.0, "{p:?}");
    }
}
