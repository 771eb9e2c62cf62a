//! conn-attrib: attribute every MongoDB client connection in a packet capture to its
//! driver role (streaming monitor, RTT monitor, polling monitor, pool, single-threaded,
//! internal), group connections into clients, and check the drivers' connection formulas.
//!
//! The library is the pipeline, one module per stage, data flowing one way:
//! [`capture`] → [`net`] → [`tcp`] → ([`tls`]) → [`wire`] → [`observe`] → [`classify`] →
//! [`attribute`] → [`report`]. The [`analyzer::Analyzer`] drives stages 2–5 for any packet
//! source; [`classify`], [`attribute`] and [`report`] are pure functions over plain data.

pub mod analyzer;
pub mod attribute;
pub mod capture;
pub mod classify;
pub mod fuzzing;
pub mod live;
pub mod metrics;
pub mod net;
pub mod observe;
pub mod process;
pub mod report;
pub mod tcp;
pub mod tls;
pub mod warnings;
pub mod wire;

use std::net::IpAddr;

use rustc_hash::{FxHashMap, FxHashSet};

pub use analyzer::{
    analyze, analyze_pipelined, analyze_with_hook, Analysis, Analyzer, AnalyzerConfig, Held,
    Progress,
};

/// Stages 6–8 over an analysis: classify, attribute, and assemble the report.
pub fn conclude(
    analysis: analyzer::Analysis,
    opts: attribute::Options,
    meta: report::Meta,
) -> report::Report {
    conclude_with_released(analysis, &attribute::Released::default(), opts, meta)
}

/// [`conclude`], counting connections a long live capture already released from memory.
pub fn conclude_with_released(
    mut analysis: analyzer::Analysis,
    released: &attribute::Released,
    opts: attribute::Options,
    meta: report::Meta,
) -> report::Report {
    let attribution = attribution_of(&mut analysis, released, opts);
    analysis.input.released_connections = released.connections;
    report::Report::new(analysis, attribution, meta)
}

/// Stages 6 and 7: classify the analysis's connections, moved (not cloned: the
/// observations are the largest part of an analysis) into the attribution.
fn attribution_of(
    analysis: &mut analyzer::Analysis,
    released: &attribute::Released,
    opts: attribute::Options,
) -> attribute::Attribution {
    let verdicts = classify::classify(&analysis.connections, analysis.input.window());
    let connections = std::mem::take(&mut analysis.connections);
    let peaks = analysis.in_flight.peaks();
    attribute::attribute(connections, verdicts, opts, &peaks, released)
}

/// Read a capture file ("-" for stdin) and run the whole pipeline.
pub fn analyze_path(
    path: &str,
    config: AnalyzerConfig,
) -> Result<analyzer::Analysis, capture::CaptureError> {
    analyze_path_with_hook(path, config, &mut |_| {}, &mut |_| {})
}

/// Read a capture file, on two threads if `config` asks for it (see
/// [`analyzer::analyze_with_hook`] and [`analyzer::analyze_pipelined`]).
fn analyze_path_with_hook(
    path: &str,
    config: AnalyzerConfig,
    on_progress: &mut dyn FnMut(Progress),
    between: &mut dyn FnMut(&mut dyn Held),
) -> Result<analyzer::Analysis, capture::CaptureError> {
    let mut source = capture::FileSource::open(path)?;
    Ok(if config.pipelined {
        analyzer::analyze_pipelined(&mut source, config, on_progress, between)
    } else {
        analyzer::analyze_with_hook(&mut source, config, on_progress, between)
    })
}

/// [`analyze_path`] with progress reports (see [`analyzer::analyze_with_hook`]), holding at
/// most about `keep_closed` closed connections in full detail, as live mode does: memory
/// then follows the connections open at once, not the length of the capture. Older
/// closed connections are folded into their clients' counts with the class a conclusion
/// over everything held gave them; conclude with the returned [`attribute::Released`]
/// ([`conclude_with_released`]).
pub fn analyze_path_bounded(
    path: &str,
    config: AnalyzerConfig,
    keep_closed: usize,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<(analyzer::Analysis, attribute::Released), capture::CaptureError> {
    let mut released = attribute::Released::default();
    // A fold concludes everything held, so it waits until twice `keep_closed` are held:
    // each closed connection then takes part in at most two such conclusions.
    let fold_at = keep_closed.saturating_mul(2).max(1);
    let mut fold = |analyzer: &mut dyn Held| {
        if analyzer.closed_held() < fold_at {
            return;
        }
        let closed = analyzer.take_closed();
        let excess = closed.len().saturating_sub(keep_closed);
        let release: FxHashSet<u64> = closed[..excess].iter().map(|o| o.id).collect();
        // A connection's class and client depend on its client's other connections,
        // all from the same host (client keys and neighbourhoods start with the host):
        // only those hosts' connections need concluding; the rest stay as they are.
        let hosts: FxHashSet<IpAddr> = closed[..excess].iter().map(|o| o.client.ip()).collect();
        let (involved, mut kept): (Vec<_>, Vec<_>) = closed
            .into_iter()
            .enumerate()
            .partition(|(_, o)| hosts.contains(&o.client.ip()));
        let position: FxHashMap<u64, usize> = involved.iter().map(|(at, o)| (o.id, *at)).collect();
        let mut conns: Vec<Box<observe::Observations>> =
            involved.into_iter().map(|(_, o)| o).collect();
        conns.extend(
            analyzer.peek_open(&|info| info.endpoints.iter().any(|e| hosts.contains(&e.ip()))),
        );
        conns.sort_by_cached_key(|o| o.id);
        // Only classes and client keys are needed: no attribution or report is built.
        let verdicts = classify::classify(&conns, analyzer.window());
        released.fold_classified(&conns, &verdicts, &release);
        kept.extend(
            conns
                .into_iter()
                .filter(|o| !release.contains(&o.id))
                .filter_map(|o| position.get(&o.id).map(|&at| (at, o))),
        );
        kept.sort_unstable_by_key(|(at, _)| *at);
        analyzer.restore_closed(kept.into_iter().map(|(_, obs)| obs).collect());
    };
    let analysis = analyze_path_with_hook(path, config, on_progress, &mut fold)?;
    Ok((analysis, released))
}
