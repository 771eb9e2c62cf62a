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
mod fold;
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
    let verdicts = classify::classify_after(
        &analysis.connections,
        analysis.input.window(),
        &released.prior(),
    );
    let connections = std::mem::take(&mut analysis.connections);
    let peaks = analysis.in_flight.peaks();
    let failovers = primary_changes(&analysis.nodes);
    attribute::attribute(connections, verdicts, opts, &peaks, released, &failovers)
}

/// Each node's steps into and out of the primary role, from its hello replies.
fn primary_changes(nodes: &observe::NodeStats) -> Vec<attribute::PrimaryChange> {
    let mut changes = Vec::new();
    for (node, life) in &nodes.life {
        for (from, to) in life.role_changes() {
            if from.is_primary() != to.is_primary() {
                changes.push(attribute::PrimaryChange {
                    node: *node,
                    set_name: from.set_name.clone().or_else(|| to.set_name.clone()),
                });
            }
        }
    }
    changes
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
    let pipelined = config.pipelined;
    let run = |mut folder: fold::Folder| {
        let mut analysis =
            analyze_path_with_hook(path, config, on_progress, &mut |held| folder.hook(held))?;
        let released = folder.finish(&mut analysis);
        Ok((analysis, released))
    };
    if !pipelined {
        return run(fold::Folder::in_place(keep_closed));
    }
    // Two threads for the analysis, and the folds' classifying on a third that runs while
    // the reading one waits for the observer.
    std::thread::scope(|scope| run(fold::Folder::threaded(scope, keep_closed)))
}
