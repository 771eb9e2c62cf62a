//! The `conn-attrib` binary: parse flags, run the library's pipeline, print, exit.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use conn_attrib::attribute::cluster::MembershipInput;
use conn_attrib::attribute::Options;
use conn_attrib::live::{self, LiveOptions};
use conn_attrib::metrics::server::MetricsServer;
use conn_attrib::observe::KeyLogConfig;
use conn_attrib::report::{merge, Format, Meta, Report};
use conn_attrib::tls::keylog::KeyStore;
use conn_attrib::{analyze_path_bounded, conclude_with_released, AnalyzerConfig, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const EXIT_HELP: &str = "\
Exit status:
  0  the capture was read completely and analysed without warnings
  1  analysed, with warnings (truncated file, undecodable traffic, …): the report says which
  2  unusable input or usage error (cannot open, not a pcap/pcapng file, bad flags)";

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    Text,
    Json,
    Markdown,
    Html,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Text => Format::Text,
            FormatArg::Json => Format::Json,
            FormatArg::Markdown => Format::Markdown,
            FormatArg::Html => Format::Html,
        }
    }
}

/// Why does my MongoDB cluster have so many connections, and who opened them?
///
/// Reads a packet capture, rebuilds every TCP stream, decodes the MongoDB wire protocol,
/// names each client connection's role (streaming monitor, RTT monitor, polling monitor,
/// pool, single-threaded, internal), groups connections by client and checks them against
/// the drivers' connection formulas. `conn-attrib live` does the same on a running host.
#[derive(Debug, Parser)]
#[command(
    name = "conn-attrib",
    version,
    after_help = EXIT_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Capture file (pcap or pcapng), or "-" to read from standard input
    /// (e.g. `tcpdump -w - port 27017 | conn-attrib -`).
    #[arg(required = true)]
    capture: Option<String>,

    /// Report format: a readable text summary, the JSON contract `conn-attrib/1`,
    /// Markdown for a support ticket, or one self-contained HTML page with a connection
    /// timeline.
    #[arg(short, long, value_enum, default_value = "text")]
    format: FormatArg,

    /// Closed connections kept in full detail for the report. Beyond that, older closed
    /// connections are folded into their clients' counts (they still count in totals,
    /// modes and formulas, but are not listed one by one), so memory follows the
    /// connections open at once rather than the length of the capture.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    keep_closed: usize,

    /// Threads to analyse with. With 2, one reads the capture and reassembles TCP while
    /// another decodes MongoDB messages (and a helper classifies what --keep-closed folds
    /// away); the report is the same as with 1. More than 2 is taken as 2. Default: 2 when
    /// this process may use two cores.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,

    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Capture live on this host (libpcap), show a table of clients every --refresh
    /// seconds, name the process that owns each connection, and write the report on
    /// Ctrl-C, SIGTERM or at the end of --duration.
    Live(Box<LiveArgs>),
    /// Combine JSON reports (conn-attrib/1) from many app hosts or time windows into one
    /// fleet report: per application across hosts, per cluster node against
    /// --max-connections, and a projection at --instances N. A client present in several
    /// reports is counted once, from the report where it held the most connections.
    Merge(MergeArgs),
}

#[derive(Debug, clap::Args)]
struct MergeArgs {
    /// JSON reports written by `conn-attrib --format json`.
    #[arg(required = true, value_name = "REPORT.json")]
    reports: Vec<String>,

    /// Fleet report format; JSON is the contract `conn-attrib-fleet/1`.
    #[arg(short, long, value_enum, default_value = "text")]
    format: FormatArg,

    /// Write the fleet report to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<String>,

    /// Project every application to N instances (of its largest observed instance).
    #[arg(long, value_name = "N")]
    instances: Option<u32>,

    /// Each cluster node's connection limit, to compare totals and projections against.
    #[arg(long, value_name = "M")]
    max_connections: Option<u64>,
}

#[derive(Debug, clap::Args)]
struct LiveArgs {
    /// Interface to capture on; "any" captures on all of them.
    #[arg(short, long, default_value = "any")]
    interface: String,

    /// BPF capture filter (default: TCP to or from 27017–27019 and every --server-port).
    #[arg(short = 'f', long = "filter", value_name = "BPF")]
    filter: Option<String>,

    /// Stop after this many seconds (default: until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "S")]
    duration: Option<f64>,

    /// Seconds between refreshes of the live table.
    #[arg(long, value_name = "S", default_value_t = 2.0)]
    refresh: f64,

    /// Final report format.
    #[arg(long, value_enum, default_value = "text")]
    format: FormatArg,

    /// Also save the captured packets to FILE (pcap), to attach beside the report.
    #[arg(long, value_name = "FILE")]
    write_pcap: Option<String>,

    /// Closed connections kept in full detail for the report; older closed ones are
    /// folded into their clients' counts so memory stays bounded over hours.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    keep_closed: usize,

    /// Serve live metrics for Prometheus at http://ADDR/metrics while capturing:
    /// connections by client, app, driver, class and node, opens and closes, heartbeat
    /// and round-trip histograms, libpcap drops; refreshed every --refresh seconds.
    /// ADDR is HOST:PORT (127.0.0.1:9464; port 0 picks a free one), or :PORT for every
    /// interface. With --redact the labels are redacted too.
    #[arg(long, value_name = "ADDR")]
    prometheus: Option<String>,

    #[command(flatten)]
    common: Common,
}

/// Flags shared by offline and live analysis.
#[derive(Debug, clap::Args)]
struct Common {
    /// Write the report to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<String>,

    /// A port MongoDB servers listen on, besides 27017–27019; repeat for several. Used to
    /// tell the server side of connections whose start was not captured.
    #[arg(long = "server-port", value_name = "PORT")]
    server_ports: Vec<u16>,

    /// The application's minPoolSize, for the formula check (otherwise estimated from the
    /// capture).
    #[arg(long, value_name = "N")]
    min_pool_size: Option<u32>,

    /// The application's connection string; minPoolSize is read from it. Credentials in it
    /// are ignored and never printed.
    #[arg(long, value_name = "URI")]
    uri: Option<String>,

    /// Project every client to N application instances (e.g. concurrent functions).
    #[arg(long, value_name = "N")]
    instances: Option<u32>,

    /// The server's connection limit, to compare projections against.
    #[arg(long, value_name = "M")]
    max_connections: Option<u64>,

    /// Cap on out-of-order bytes buffered per TCP direction.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    max_stream_buffer: usize,

    /// Cap on out-of-order bytes buffered across all connections.
    #[arg(long, value_name = "BYTES", default_value_t = 256 << 20)]
    max_total_buffer: usize,

    /// Replace host addresses, host names, appNames, replica set and process names with
    /// pseudonyms (host-1, app-1, …) and drop document values, so the report can be
    /// handed to someone outside the organisation.
    #[arg(long)]
    redact: bool,

    /// The replica set's current members (host:port, as its config names them): stale
    /// hosts are judged against this instead of the membership hello replies announce.
    #[arg(long, value_name = "HOST:PORT,...", conflicts_with = "members_file")]
    members: Option<String>,

    /// The replica set's config or status as JSON, for the same purpose: e.g.
    /// `mongosh --quiet --eval 'JSON.stringify(rs.conf())' > conf.json`.
    #[arg(long, value_name = "FILE")]
    members_file: Option<String>,

    /// Do not repeat warnings on standard error (they stay in the report).
    #[arg(short, long)]
    quiet: bool,

    /// Decrypt TLS connections with this key log (the SSLKEYLOGFILE format written by
    /// Node's --tls-keylog, OpenSSL/BoringSSL keylog callbacks, Go's KeyLogWriter, Java
    /// agents): TLS 1.3 and TLS 1.2 with AES-GCM or ChaCha20-Poly1305. Decrypted
    /// connections are analysed like plaintext ones; the others stay unknown. In live
    /// mode the file is re-read while sessions are missing from it, since the application
    /// appends as it connects. Keys are never printed.
    #[arg(long, value_name = "FILE")]
    keylog: Option<PathBuf>,
}

/// minPoolSize from a connection string's options (case-insensitive, as drivers parse it).
fn min_pool_size_from_uri(uri: &str) -> Result<Option<u32>, String> {
    let Some((_, query)) = uri.split_once('?') else {
        return Ok(None);
    };
    for pair in query.split('&') {
        if let Some((k, v)) = pair.split_once('=') {
            if k.eq_ignore_ascii_case("minPoolSize") {
                return v
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("minPoolSize={v} in --uri is not a number"));
            }
        }
    }
    Ok(None)
}

impl Common {
    fn analyzer_config(&self, follow: bool) -> AnalyzerConfig {
        let mut config = AnalyzerConfig::default();
        config.observer.server_ports.extend(&self.server_ports);
        config.table.stream.max_early_bytes = self.max_stream_buffer;
        config.table.max_total_buffered = self.max_total_buffer;
        config.observer.keylog = self
            .keylog
            .clone()
            .map(|path| KeyLogConfig { path, follow });
        config
    }

    /// An offline key log must be readable before the analysis starts (a live one may
    /// appear later).
    fn check_keylog(&self) -> Result<(), String> {
        match &self.keylog {
            Some(path) => KeyStore::open(path, false)
                .map(|_| ())
                .map_err(|e| format!("cannot read the key log {}: {e}", path.display())),
            None => Ok(()),
        }
    }

    fn membership(&self) -> Result<Option<MembershipInput>, String> {
        if let Some(list) = &self.members {
            return MembershipInput::from_list(list).map(Some);
        }
        if let Some(path) = &self.members_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --members-file {path}: {e}"))?;
            return MembershipInput::from_json(&text).map(Some);
        }
        Ok(None)
    }

    /// The report, judged against the membership the user gave, if any.
    fn apply_membership(&self, report: Report) -> Result<Report, String> {
        Ok(match self.membership()? {
            Some(given) => report.with_membership(&given),
            None => report,
        })
    }

    fn options(&self) -> Result<Options, String> {
        let min_pool_size = match (self.min_pool_size, self.uri.as_deref()) {
            (Some(n), _) => Some(n),
            (None, Some(uri)) => min_pool_size_from_uri(uri)?,
            (None, None) => None,
        };
        Ok(Options {
            min_pool_size,
            instances: self.instances,
            max_connections: self.max_connections,
        })
    }
}

fn meta() -> Meta {
    Meta {
        tool: "conn-attrib".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        command_line: redacted_command_line(),
    }
}

/// Print warnings, write the report; the exit status says whether there were warnings.
fn deliver(report: Report, format: Format, common: &Common) -> Result<u8, String> {
    // Live mode redacts its own final report, with the pseudonyms its metrics used.
    let report = if common.redact && !report.is_redacted() {
        report.redacted()
    } else {
        report
    };
    if !common.quiet {
        for w in &report.warnings {
            eprintln!("conn-attrib: warning: {}", w.message);
        }
    }
    let written = match &common.output {
        Some(path) => std::fs::File::create(path)
            .and_then(|f| {
                let mut w = io::BufWriter::new(f);
                report.write(format, &mut w)?;
                w.flush()
            })
            .map_err(|e| format!("cannot write {path}: {e}")),
        None => {
            let mut out = io::BufWriter::new(io::stdout().lock());
            match report.write(format, &mut out).and_then(|_| out.flush()) {
                // A closed pipe (`| head`) is not an error for the user.
                Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                    Err(format!("cannot write the report: {e}"))
                }
                _ => Ok(()),
            }
        }
    };
    written?;
    let status = if report.warnings.is_empty() { 0 } else { 1 };
    // The process ends right after: freeing tens of thousands of connection records one
    // by one took 5% of a run and gives nothing back.
    std::mem::forget(report);
    Ok(status)
}

fn run(cli: Cli) -> Result<u8, String> {
    match cli.command {
        Some(Command::Live(args)) => run_live(*args),
        Some(Command::Merge(args)) => run_merge(args),
        None => {
            let capture = cli
                .capture
                .expect("clap requires a capture without a subcommand");
            cli.common.check_keylog()?;
            let mut config = cli.common.analyzer_config(false);
            // available_parallelism follows the CPU affinity mask: under `taskset -c 0`
            // the default is one thread.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            config.pipelined = cli.threads.map_or(cores >= 2, |n| n >= 2);
            let mut display = ProgressDisplay::for_capture(&capture, cli.common.quiet);
            let (analysis, released) =
                analyze_path_bounded(&capture, config, cli.keep_closed, &mut |p| {
                    if let Some(d) = display.as_mut() {
                        d.update(p)
                    }
                })
                .map_err(|e| e.to_string())?;
            let report = cli.common.apply_membership(conclude_with_released(
                analysis,
                &released,
                cli.common.options()?,
                meta(),
            ))?;
            deliver(report, cli.format.into(), &cli.common)
        }
    }
}

/// The offline progress bar on standard error: bytes of the file, packets, connections,
/// rate and time left. Only for a terminal: a redirected stderr gets nothing.
struct ProgressDisplay {
    bar: ProgressBar,
    last_draw: std::time::Instant,
}

/// How often the bar is refreshed: often enough to look alive, rarely enough to cost
/// nothing beside the analysis.
const PROGRESS_REFRESH: Duration = Duration::from_millis(100);

impl ProgressDisplay {
    fn for_capture(path: &str, quiet: bool) -> Option<ProgressDisplay> {
        if quiet || !io::stderr().is_terminal() {
            return None;
        }
        // A file's size is known; standard input's is not (a spinner with counts then).
        let total = (path != "-")
            .then(|| std::fs::metadata(path).ok())
            .flatten()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        let target = ProgressDrawTarget::stderr_with_hz(10);
        let (bar, template) = match total {
            Some(len) => (
                ProgressBar::with_draw_target(Some(len), target),
                "{bar:30} {bytes}/{total_bytes} {msg} {bytes_per_sec}, {eta} left",
            ),
            None => (
                ProgressBar::with_draw_target(None, target),
                "{spinner} {bytes} {msg} {bytes_per_sec}",
            ),
        };
        bar.set_style(ProgressStyle::with_template(template).ok()?);
        Some(ProgressDisplay {
            bar,
            last_draw: std::time::Instant::now() - PROGRESS_REFRESH,
        })
    }

    fn update(&mut self, p: Progress) {
        if p.done {
            self.bar.finish_and_clear();
            return;
        }
        if self.last_draw.elapsed() < PROGRESS_REFRESH {
            return;
        }
        self.last_draw = std::time::Instant::now();
        self.bar.set_message(format!(
            "· {} packets · {} connections ·",
            p.packets, p.connections
        ));
        self.bar.set_position(p.bytes);
    }
}

fn run_live(args: LiveArgs) -> Result<u8, String> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("cannot handle signals: {e}"))?;
    }
    let seconds = |s: f64, what: &str| -> Result<Duration, String> {
        Duration::try_from_secs_f64(s)
            .map_err(|_| format!("--{what} {s} is not a number of seconds"))
    };
    // Checked before capturing; live mode applies it to every report it makes.
    let membership = args.common.membership()?;
    // Before any capture: a bad or busy address is a usage error, not a failed run.
    let metrics = args
        .prometheus
        .as_deref()
        .map(MetricsServer::bind)
        .transpose()?;
    if let Some(server) = &metrics {
        eprintln!(
            "conn-attrib: serving Prometheus metrics on http://{}/metrics",
            server.local_addr()
        );
    }
    let opts = LiveOptions {
        interface: args.interface.clone(),
        filter: args.filter.clone(),
        duration: args.duration.map(|d| seconds(d, "duration")).transpose()?,
        refresh: seconds(args.refresh.max(0.2), "refresh")?,
        write_pcap: args.write_pcap.as_ref().map(PathBuf::from),
        keep_closed: args.keep_closed,
        analyzer: args.common.analyzer_config(true),
        attribute: args.common.options()?,
        meta: meta(),
        membership,
        redact: args.common.redact,
        metrics: metrics.as_ref().map(MetricsServer::publisher),
    };
    let tty = io::stderr().is_terminal();
    let report = live::run(opts, &stop, |snapshot| {
        if tty {
            // Redraw the live table in place (redacted with --redact: screens get shared).
            let table = snapshot.render(Format::Text);
            let head: String = table.split("\nNODES").next().unwrap_or("").to_string();
            eprint!("\x1b[2J\x1b[H{head}\n(Ctrl-C writes the final report)\n");
        } else {
            eprintln!(
                "conn-attrib: {} packets, {} connections, {} clients so far",
                snapshot.input.packets,
                snapshot.attribution.connections.len(),
                snapshot.attribution.clients.len()
            );
        }
    })
    .map_err(|e| e.to_string())?;
    if let Some(server) = metrics {
        server.shutdown();
    }
    if let (Some(received), Some(dropped)) = (report.input.received, report.input.dropped) {
        eprintln!("conn-attrib: libpcap received {received} packets, dropped {dropped}");
    }
    deliver(report, args.format.into(), &args.common)
}

fn run_merge(args: MergeArgs) -> Result<u8, String> {
    let reports = args
        .reports
        .iter()
        .map(|path| merge::load(path).map(|r| (path.clone(), r)))
        .collect::<Result<Vec<_>, String>>()?;
    let fleet = merge::merge(
        &reports,
        merge::MergeOptions {
            instances: args.instances,
            max_connections: args.max_connections,
        },
    );
    let text = match Format::from(args.format) {
        Format::Text => fleet.to_text(),
        Format::Json => fleet.to_json(),
        Format::Markdown => fleet.to_markdown(),
        Format::Html => {
            return Err(
                "merge writes text, json or markdown; --format html is for capture reports".into(),
            )
        }
    };
    write_out(args.output.as_deref(), text.as_bytes())?;
    Ok(0)
}

/// Write `bytes` to FILE or standard output (a closed pipe is not an error).
fn write_out(path: Option<&str>, bytes: &[u8]) -> Result<(), String> {
    match path {
        Some(path) => std::fs::write(path, bytes).map_err(|e| format!("cannot write {path}: {e}")),
        None => match io::stdout().lock().write_all(bytes) {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                Err(format!("cannot write the report: {e}"))
            }
            _ => Ok(()),
        },
    }
}

/// The command line for reports, with any connection string's credentials removed.
fn redacted_command_line() -> String {
    std::env::args()
        .map(|a| match (a.find("://"), a.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}***{}", &a[..scheme + 3], &a[at..])
            }
            _ => a,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("conn-attrib: {message}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn each_flag_parses() {
        let cli = Cli::try_parse_from([
            "conn-attrib",
            "x.pcap",
            "-f",
            "json",
            "-o",
            "out.json",
            "--server-port",
            "30000",
            "--server-port",
            "30001",
            "--min-pool-size",
            "5",
            "--instances",
            "150",
            "--max-connections",
            "3000",
            "--max-stream-buffer",
            "1024",
            "--max-total-buffer",
            "4096",
            "--members",
            "db1:27017,db2:27017",
            "-q",
            "--redact",
            "--keylog",
            "keys.log",
        ])
        .unwrap();
        assert_eq!(cli.capture.as_deref(), Some("x.pcap"));
        assert!(matches!(cli.format, FormatArg::Json));
        let c = &cli.common;
        assert_eq!(c.output.as_deref(), Some("out.json"));
        assert_eq!(c.server_ports, vec![30000, 30001]);
        assert_eq!(c.min_pool_size, Some(5));
        assert_eq!(c.instances, Some(150));
        assert_eq!(c.max_connections, Some(3000));
        assert_eq!(c.max_stream_buffer, 1024);
        assert_eq!(c.max_total_buffer, 4096);
        assert_eq!(c.members.as_deref(), Some("db1:27017,db2:27017"));
        assert_eq!(c.membership().unwrap().unwrap().hosts.len(), 2);
        assert!(c.quiet);
        assert!(c.redact);
        assert_eq!(c.keylog.as_deref(), Some(std::path::Path::new("keys.log")));
        let offline = c.analyzer_config(false).observer.keylog.unwrap();
        assert!(!offline.follow);
        assert!(c.check_keylog().is_err(), "keys.log does not exist");
        assert!(Cli::try_parse_from(["conn-attrib", "x", "-f", "xml"]).is_err());
    }

    #[test]
    fn live_flags_parse() {
        let cli = Cli::try_parse_from([
            "conn-attrib",
            "live",
            "-i",
            "lo",
            "-f",
            "tcp port 27017",
            "--server-port",
            "30000",
            "--duration",
            "5",
            "--refresh",
            "1",
            "--format",
            "json",
            "-o",
            "r.json",
            "--write-pcap",
            "c.pcap",
            "--min-pool-size",
            "2",
            "--keylog",
            "app-keys.log",
        ])
        .unwrap();
        let Some(Command::Live(a)) = cli.command else {
            panic!("live")
        };
        assert_eq!(a.interface, "lo");
        assert_eq!(a.filter.as_deref(), Some("tcp port 27017"));
        assert_eq!(a.duration, Some(5.0));
        assert_eq!(a.refresh, 1.0);
        assert!(matches!(a.format, FormatArg::Json));
        assert_eq!(a.write_pcap.as_deref(), Some("c.pcap"));
        assert_eq!(a.common.server_ports, vec![30000]);
        assert_eq!(a.common.output.as_deref(), Some("r.json"));
        assert_eq!(a.common.min_pool_size, Some(2));
        // Live mode follows the key log as the application appends to it.
        assert!(
            a.common
                .analyzer_config(true)
                .observer
                .keylog
                .unwrap()
                .follow
        );
        // A capture path is required without a subcommand.
        assert!(Cli::try_parse_from(["conn-attrib"]).is_err());
    }

    #[test]
    fn merge_flags_parse() {
        let cli = Cli::try_parse_from([
            "conn-attrib",
            "merge",
            "a.json",
            "b.json",
            "-f",
            "markdown",
            "--instances",
            "50",
            "--max-connections",
            "3000",
            "-o",
            "fleet.md",
        ])
        .unwrap();
        let Some(Command::Merge(m)) = cli.command else {
            panic!("merge")
        };
        assert_eq!(m.reports, vec!["a.json", "b.json"]);
        assert!(matches!(m.format, FormatArg::Markdown));
        assert_eq!(m.instances, Some(50));
        assert_eq!(m.max_connections, Some(3000));
        assert_eq!(m.output.as_deref(), Some("fleet.md"));
        assert!(Cli::try_parse_from(["conn-attrib", "merge"]).is_err());
    }

    #[test]
    fn uri_min_pool_size() {
        assert_eq!(
            min_pool_size_from_uri("mongodb://u:p@h/?minPoolSize=5&appName=a"),
            Ok(Some(5))
        );
        assert_eq!(
            min_pool_size_from_uri("mongodb://h/?minpoolsize=2"),
            Ok(Some(2))
        );
        assert_eq!(min_pool_size_from_uri("mongodb://h/"), Ok(None));
        assert!(min_pool_size_from_uri("mongodb://h/?minPoolSize=x").is_err());
    }
}
