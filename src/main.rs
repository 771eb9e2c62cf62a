//! The `conn-attrib` binary: parse flags, run the library's pipeline, print, exit.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

use conn_attrib::attribute::Options;
use conn_attrib::report::{Format, Meta};
use conn_attrib::{analyze_path, conclude, AnalyzerConfig};

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
}

/// Why does my MongoDB cluster have so many connections, and who opened them?
///
/// Reads a packet capture, rebuilds every TCP stream, decodes the MongoDB wire protocol,
/// names each client connection's role (streaming monitor, RTT monitor, polling monitor,
/// pool, single-threaded, internal), groups connections by client and checks them against
/// the drivers' connection formulas.
#[derive(Debug, Parser)]
#[command(name = "conn-attrib", version, after_help = EXIT_HELP)]
struct Cli {
    /// Capture file (pcap or pcapng), or "-" to read from standard input
    /// (e.g. `tcpdump -w - port 27017 | conn-attrib -`).
    capture: String,

    /// Report format: a readable text summary, the JSON contract `conn-attrib/1`, or
    /// Markdown for a support ticket.
    #[arg(short, long, value_enum, default_value = "text")]
    format: FormatArg,

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

    /// Do not repeat warnings on standard error (they stay in the report).
    #[arg(short, long)]
    quiet: bool,
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

fn run(cli: Cli) -> Result<u8, String> {
    let mut config = AnalyzerConfig::default();
    config.observer.server_ports.extend(&cli.server_ports);
    config.table.stream.max_early_bytes = cli.max_stream_buffer;
    config.table.max_total_buffered = cli.max_total_buffer;
    let min_pool_size = match (cli.min_pool_size, cli.uri.as_deref()) {
        (Some(n), _) => Some(n),
        (None, Some(uri)) => min_pool_size_from_uri(uri)?,
        (None, None) => None,
    };

    let analysis = analyze_path(&cli.capture, config).map_err(|e| e.to_string())?;
    if !cli.quiet {
        for w in &analysis.warnings {
            eprintln!("conn-attrib: warning: {}", w.message);
        }
    }
    let warned = !analysis.warnings.is_empty();
    let meta = Meta {
        tool: "conn-attrib".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        command_line: redacted_command_line(),
    };
    let opts = Options {
        min_pool_size,
        instances: cli.instances,
        max_connections: cli.max_connections,
    };
    let report = conclude(analysis, opts, meta);
    let format = match cli.format {
        FormatArg::Text => Format::Text,
        FormatArg::Json => Format::Json,
        FormatArg::Markdown => Format::Markdown,
    };
    let written = match &cli.output {
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
    Ok(if warned { 1 } else { 0 })
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
            "-q",
        ])
        .unwrap();
        assert_eq!(cli.capture, "x.pcap");
        assert!(matches!(cli.format, FormatArg::Json));
        assert_eq!(cli.output.as_deref(), Some("out.json"));
        assert_eq!(cli.server_ports, vec![30000, 30001]);
        assert_eq!(cli.min_pool_size, Some(5));
        assert_eq!(cli.instances, Some(150));
        assert_eq!(cli.max_connections, Some(3000));
        assert_eq!(cli.max_stream_buffer, 1024);
        assert_eq!(cli.max_total_buffer, 4096);
        assert!(cli.quiet);
        assert!(Cli::try_parse_from(["conn-attrib", "x", "-f", "xml"]).is_err());
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
