//! Live mode: libpcap packets through the very same [`Analyzer`], with a report snapshot
//! every refresh and the socket owners read from /proc, until a stop flag, a duration, or
//! an error ends it. Memory stays bounded over hours: at each refresh, closed connections
//! beyond the newest `keep_closed` are folded into per-client counts ([`Released`]) and
//! their records released, so memory follows open connections, not time.
//!
//! With `--redact` every refresh, every metrics snapshot and the final report are
//! redacted with one [`Redactor`], so a pseudonym means the same host throughout a run.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::analyzer::Analysis;
use crate::attribute::cluster::MembershipInput;
use crate::attribute::Released;
use crate::capture::live::{default_filter, LiveSource, Poll};
use crate::capture::CaptureError;
use crate::metrics::server::Publisher;
use crate::metrics::{self, CaptureCounters, Tally};
use crate::observe::{Observations, Orientation};
use crate::process::SocketOwners;
use crate::report::{Meta, Redactor, Report};
use crate::{attribute, conclude_with_released, Analyzer, AnalyzerConfig};

pub struct LiveOptions {
    pub interface: String,
    /// BPF filter; the default covers 27017–27019 and every server port.
    pub filter: Option<String>,
    pub duration: Option<Duration>,
    pub refresh: Duration,
    pub write_pcap: Option<PathBuf>,
    /// Closed connections kept in full detail; older ones are folded into counts.
    pub keep_closed: usize,
    pub analyzer: AnalyzerConfig,
    pub attribute: attribute::Options,
    pub meta: Meta,
    /// The replica set's membership as the user gave it (`--members`, `--members-file`).
    pub membership: Option<MembershipInput>,
    /// Redact every report (refreshes and final) and the metrics' labels.
    pub redact: bool,
    /// Where to publish a metrics snapshot at each refresh (`--prometheus`).
    pub metrics: Option<Publisher>,
}

/// Capture until `stop` is set or the duration ends; `on_refresh` receives a report of
/// everything so far every `refresh` (redacted when asked). Returns the final report,
/// redacted when asked.
pub fn run(
    opts: LiveOptions,
    stop: &AtomicBool,
    mut on_refresh: impl FnMut(&Report),
) -> Result<Report, CaptureError> {
    let extra_ports: Vec<u16> = opts
        .analyzer
        .observer
        .server_ports
        .iter()
        .copied()
        .filter(|p| !(27017..=27019).contains(p))
        .collect();
    let filter = opts
        .filter
        .clone()
        .unwrap_or_else(|| default_filter(&extra_ports));
    let mut source = LiveSource::open(&opts.interface, &filter, opts.write_pcap.as_deref())?;
    let proc_root = Path::new("/proc");
    // Connections already open when capture starts are attributed from this snapshot.
    let mut owners = SocketOwners::snapshot(proc_root);
    let at_start = owners.clone();
    let start_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut analyzer = Analyzer::new(opts.analyzer.clone());
    let mut released = Released::default();
    let mut redactor = opts.redact.then(Redactor::default);
    let mut tally = Tally::default();
    if let Some(publisher) = &opts.metrics {
        publisher.publish(metrics::Snapshot::started(capture_counters(&mut source)));
    }
    let started = Instant::now();
    let mut last_refresh = Instant::now();
    let mut failure = None;
    while !stop.load(Ordering::Relaxed) && opts.duration.is_none_or(|d| started.elapsed() < d) {
        match source.poll() {
            Ok(Poll::Packet(packet)) => analyzer.packet(&packet),
            Ok(Poll::Idle) => {}
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        if last_refresh.elapsed() >= opts.refresh {
            last_refresh = Instant::now();
            owners.merge(SocketOwners::snapshot(proc_root));
            let snapshot = analyzer.snapshot_analysis();
            let timings = opts
                .metrics
                .is_some()
                .then(|| metrics::node_timings(&snapshot.nodes));
            let name = source_name(&source);
            let report = finish_report(snapshot, &released, &opts, &owners, &name);
            let shown = match redactor.as_mut() {
                Some(r) => Cow::Owned(report.clone().redacted_with(r)),
                None => Cow::Borrowed(&report),
            };
            on_refresh(&shown);
            if let (Some(publisher), Some(timings)) = (&opts.metrics, timings) {
                let nodes = timings
                    .into_iter()
                    .map(|(addr, t)| (node_label(addr, redactor.as_mut()), t))
                    .collect();
                let counters = capture_counters(&mut source);
                publisher.publish(tally.snapshot(&shown, nodes, counters));
            }
            drop(shown);
            let ids = release_closed(&mut analyzer, &mut released, &report, opts.keep_closed);
            tally.forget(&ids);
        }
    }
    if let Some(e) = &failure {
        analyzer.source_failed(e);
    }
    source.finish();
    owners.merge(SocketOwners::snapshot(proc_root));
    let stats = source.stats();
    let mut analysis = analyzer.finish();
    add_silent_preexisting(
        &mut analysis,
        &at_start,
        &opts.analyzer.observer.server_ports,
        start_secs,
    );
    analysis.input.bytes = stats.bytes;
    analysis.input.dropped = stats.dropped;
    analysis.input.received = stats.received;
    let report = finish_report(analysis, &released, &opts, &owners, &source_name(&source));
    Ok(match redactor.as_mut() {
        Some(r) => report.redacted_with(r),
        None => report,
    })
}

/// A node as the reports name it: `host:port`, or `host-N:port` when redacting.
fn node_label(addr: std::net::SocketAddr, redactor: Option<&mut Redactor>) -> String {
    match redactor {
        Some(r) => r.address(&addr.to_string()),
        None => addr.to_string(),
    }
}

fn capture_counters(source: &mut LiveSource) -> CaptureCounters {
    let stats = source.stats();
    CaptureCounters {
        interface: source.name().to_string(),
        packets: stats.packets,
        bytes: stats.bytes,
        pcap: source.pcap_counters(),
    }
}

/// Connections to MongoDB ports that were open when capture began (the /proc snapshot)
/// but sent nothing while it ran: without them the report would miss idle pool
/// connections. They are listed without traffic, opened before the capture.
fn add_silent_preexisting(
    analysis: &mut Analysis,
    at_start: &SocketOwners,
    ports: &[u16],
    start: f64,
) {
    let seen: std::collections::HashSet<_> = analysis
        .connections
        .iter()
        .flat_map(|o| [(o.client, o.server), (o.server, o.client)])
        .collect();
    let mut next_id = analysis
        .connections
        .iter()
        .map(|o| o.id + 1)
        .max()
        .unwrap_or(0);
    let first = analysis.input.first_ts.unwrap_or(start);
    for socket in at_start.to_ports(ports) {
        if seen.contains(&(socket.local, socket.remote)) {
            continue;
        }
        let mut obs = Observations::new(next_id, socket.local, socket.remote);
        next_id += 1;
        obs.orientation = Orientation::Port;
        obs.first_seen = first;
        obs.last_seen = first;
        analysis.connections.push(Box::new(obs));
    }
}

fn source_name(source: &LiveSource) -> String {
    format!("live:{}", source.name())
}

/// Fold the closed connections beyond the newest `keep` into `released`, with the class
/// and client `report` (a snapshot of everything the analyzer holds) gave them, and drop
/// their records from the analyzer. Returns the ids released.
pub fn release_closed(
    analyzer: &mut Analyzer,
    released: &mut Released,
    report: &Report,
    keep: usize,
) -> HashSet<u64> {
    let ids = analyzer.closed_beyond(keep);
    if !ids.is_empty() {
        released.fold(&report.attribution, &ids);
        analyzer.release(&ids);
    }
    ids
}

fn finish_report(
    mut analysis: Analysis,
    released: &Released,
    opts: &LiveOptions,
    owners: &SocketOwners,
    name: &str,
) -> Report {
    analysis.input.path = name.to_string();
    let pairs: Vec<_> = analysis
        .connections
        .iter()
        .map(|o| (o.client, o.server))
        .collect();
    let mut report = conclude_with_released(analysis, released, opts.attribute, opts.meta.clone());
    if let Some(given) = &opts.membership {
        report = report.with_membership(given);
    }
    let mut processes = HashMap::new();
    for (client, server) in pairs {
        if let Some(p) = owners.owner(client, server) {
            processes.insert(client, p.clone());
        }
    }
    report.with_processes(processes)
}
