//! HTML: one self-contained page to hand to someone who does not run the tool. No scripts,
//! no external assets (styles inline, charts as inline SVG), so it opens anywhere, from a
//! ticket attachment or offline, and reads the same with JavaScript off.
//!
//! Besides the tables of the other printers it draws a connection timeline: one lane per
//! connection, grouped by client and node, coloured by class, with its open (SYN) and
//! close (FIN/RST) marked and a tick for each hello sent and heartbeat streamed.
//! Observations keep at most [`MAX_HELLO_TICKS`] hello times per connection, evenly
//! thinned beyond that; the page says which lanes were thinned.

use std::fmt::Write;

use super::text::{driver_label, duration, expected_label};
use super::{client_notes, connection_rows, node_rows, Report, CONNECTION_HEADER, NODE_HEADER};
use crate::attribute::{Attributed, Client};
use crate::classify::Class;
use crate::observe::{Bins, MAX_HELLO_TICKS};

/// Lanes drawn at most: past this the page would be too big to open; the JSON report has
/// every connection.
const MAX_LANES: usize = 2000;
/// Rows of the connection table at most, for the same reason.
const MAX_CONNECTION_ROWS: usize = 5000;

fn colour(class: Class) -> &'static str {
    match class {
        Class::StreamingMonitor => "#1f77b4",
        Class::RttMonitor => "#17becf",
        Class::PollingMonitor => "#9467bd",
        Class::Pool => "#2ca02c",
        Class::SingleThreaded => "#ff7f0e",
        Class::Internal => "#7f7f7f",
        Class::Unknown => "#d62728",
    }
}

/// Text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn html_table(id: &str, header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("<table id=\"{id}\">\n<thead><tr>");
    for h in header {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em;color:#222;max-width:1400px}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right}
.summary{font-size:1.1em}.verdict{margin:.4em 0}.note{color:#555;margin-left:1.5em}
.matches{color:#1a7f37}.exceeds{color:#b35900}.below{color:#8250df}
.legend span{display:inline-block;margin-right:1em}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
.charts{display:flex;flex-wrap:wrap;gap:1.5em}.chart{font-size:12px}
svg text{font:11px system-ui,sans-serif;fill:#333}
code{background:#f5f5f5;padding:0 3px}
.warn{color:#b35900}
";

pub fn to_html(report: &Report) -> String {
    let mut out = String::new();
    let input = &report.input;
    let conns = &report.attribution.connections;
    let clients = &report.attribution.clients;
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>MongoDB connection attribution: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(&input.path)
    );
    out.push_str("<h1>MongoDB connection attribution</h1>\n");
    let _ = writeln!(
        out,
        "<p class=\"summary\" id=\"summary\">Capture <code>{}</code>: {} packets, {:.1} MB over {:.1} s{}. \
         <strong><span id=\"connection-count\">{}</span> connections</strong> from \
         <span id=\"client-count\">{}</span> client{} to <span id=\"node-count\">{}</span> node{}.</p>",
        esc(&input.path),
        input.packets,
        input.bytes as f64 / 1e6,
        duration(report),
        if input.complete {
            ""
        } else {
            " (incomplete capture, see warnings)"
        },
        conns.len(),
        clients.len(),
        plural(clients.len()),
        report.nodes.len(),
        plural(report.nodes.len()),
    );
    if let Some(line) = super::tls_line(report) {
        let _ = writeln!(out, "<p id=\"tls\">{}.</p>", esc(&line));
    }
    if let (Some(received), Some(dropped)) = (input.received, input.dropped) {
        let _ = writeln!(
            out,
            "<p>Live capture: libpcap received {received} packets and dropped {dropped}.</p>"
        );
    }

    out.push_str("<h2>Clients</h2>\n");
    let mut header = vec!["host", "app", "driver", "mode", "MongoClients"];
    header.extend(Class::ALL.iter().map(|c| c.name()));
    header.extend(["total", "expected"]);
    let rows: Vec<Vec<String>> = clients
        .iter()
        .map(|c| {
            let mut row = vec![
                c.host.clone(),
                c.app_name.clone().unwrap_or_else(|| "-".into()),
                driver_label(c),
                c.mode.name().into(),
                c.mongo_clients.to_string(),
            ];
            row.extend(Class::ALL.iter().map(|&k| c.counts.get(k).to_string()));
            row.push(c.counts.total.to_string());
            row.push(expected_label(c));
            row
        })
        .collect();
    out.push_str(&html_table("clients", &header, &rows));

    out.push_str("<h2>Formula checks</h2>\n<div id=\"verdicts\">\n");
    for c in clients {
        let kind = c.verdict.split(':').next().unwrap_or("");
        let _ = writeln!(
            out,
            "<p class=\"verdict\"><strong>{} {}</strong> ({}): <span class=\"{}\">{}</span></p>",
            esc(&c.host),
            esc(c.app_name.as_deref().unwrap_or("-")),
            esc(&driver_label(c)),
            esc(kind),
            esc(&c.verdict)
        );
        for line in client_notes(report, c) {
            let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(&line));
        }
    }
    out.push_str("</div>\n");

    out.push_str("<h2>Nodes</h2>\n");
    out.push_str(&html_table("nodes", &NODE_HEADER, &node_rows(report)));
    out.push_str("<div class=\"charts\">\n");
    for n in &report.nodes {
        for (title, bins, unit) in [
            ("heartbeat interval", &n.heartbeat_bins, "s"),
            ("hello round trip", &n.hello_rtt_bins, "ms"),
        ] {
            if let Some(b) = bins {
                out.push_str(&chart(&format!("{} {title}", n.node), b, unit));
            }
        }
    }
    out.push_str("</div>\n");

    out.push_str("<h2>Connection timeline</h2>\n");
    out.push_str(&timeline(report));

    if !report.warnings.is_empty() {
        out.push_str("<h2>Warnings</h2>\n<ul id=\"warnings\">\n");
        for w in &report.warnings {
            let _ = writeln!(
                out,
                "<li class=\"warn\"><code>{}</code> {}</li>",
                esc(&w.kind),
                esc(&w.message)
            );
        }
        out.push_str("</ul>\n");
    }

    out.push_str("<h2>Connections</h2>\n<details><summary>All connections</summary>\n");
    let total = report.attribution.connections.len();
    if total > MAX_CONNECTION_ROWS {
        let _ = writeln!(
            out,
            "<p>The first {MAX_CONNECTION_ROWS} of {total} connections; the JSON report has all of them.</p>",
        );
    }
    let rows: Vec<Vec<String>> = connection_rows(report, false)
        .take(MAX_CONNECTION_ROWS)
        .map(Vec::from)
        .collect();
    out.push_str(&html_table("connections", &CONNECTION_HEADER, &rows));
    out.push_str("</details>\n");

    let _ = write!(
        out,
        "<hr><p><small>{} {} · <code>{}</code></small></p>\n</body>\n</html>\n",
        esc(&report.meta.tool),
        esc(&report.meta.version),
        esc(&report.meta.command_line)
    );
    out
}

/// A small bar chart of binned values.
fn chart(title: &str, b: &Bins, unit: &str) -> String {
    let (w, h, pad) = (240.0, 70.0, 14.0);
    let max = b.counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let bar = w / b.counts.len() as f64;
    let total: u64 = b.counts.iter().sum();
    let mut s = format!(
        "<figure class=\"chart\"><svg width=\"{w}\" height=\"{}\" role=\"img\" aria-label=\"{}\">",
        h + pad,
        esc(title)
    );
    for (i, &c) in b.counts.iter().enumerate() {
        let bh = c as f64 / max * h;
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#1f77b4\"><title>{c}</title></rect>",
            i as f64 * bar,
            h - bh,
            (bar - 1.0).max(1.0),
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"0\" y=\"{}\">{}</text><text x=\"{w}\" y=\"{}\" text-anchor=\"end\">{}</text></svg>\
         <figcaption>{} ({total} samples)</figcaption></figure>",
        h + pad - 2.0,
        esc(&format!("{:.2} {unit}", b.lo)),
        h + pad - 2.0,
        esc(&format!("{:.2} {unit}", b.hi)),
        esc(title)
    );
    s
}

/// One lane per connection, grouped by client, then node, then opening time.
fn timeline(report: &Report) -> String {
    let conns = &report.attribution.connections;
    let (Some(t0), Some(t1)) = (report.input.first_ts, report.input.last_ts) else {
        return "<p>No timestamps in the capture.</p>\n".into();
    };
    let span = (t1 - t0).max(1e-3);
    let client_order = |c: &Attributed| -> usize {
        report
            .attribution
            .clients
            .iter()
            .position(|k: &Client| k.id == c.client_id)
            .unwrap_or(usize::MAX)
    };
    let mut order: Vec<(usize, &Attributed)> = conns.iter().map(|c| (client_order(c), c)).collect();
    order.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then(a.1.obs.server.cmp(&b.1.obs.server))
            .then(a.1.obs.first_seen.total_cmp(&b.1.obs.first_seen))
    });
    let mut out = String::new();
    if order.len() > MAX_LANES {
        let _ = writeln!(
            out,
            "<p>The first {MAX_LANES} of {} connections are drawn.</p>",
            order.len()
        );
        order.truncate(MAX_LANES);
    }
    out.push_str("<p class=\"legend\">");
    for class in Class::ALL {
        let _ = write!(
            out,
            "<span><i style=\"background:{}\"></i>{}</span>",
            colour(class),
            class.name()
        );
    }
    out.push_str(
        "<span>| open (SYN) &nbsp;× close (FIN/RST) &nbsp;white ticks: hellos sent and heartbeats streamed</span></p>\n",
    );

    let (label_w, plot_w, lane_h, group_h, axis_h) = (260.0, 900.0, 9.0, 18.0, 24.0);
    let x = |t: f64| label_w + (t - t0) / span * plot_w;
    let mut body = String::new();
    let mut y = axis_h;
    let mut last_client: Option<&str> = None;
    let mut last_node = None;
    let mut thinned = 0;
    for (_, c) in &order {
        let obs = &c.obs;
        if last_client != Some(c.client_id.as_str()) {
            last_client = Some(&c.client_id);
            last_node = None;
            y += 6.0;
            let label = report
                .attribution
                .clients
                .iter()
                .find(|k| k.id == c.client_id)
                .map(|k| {
                    format!(
                        "{} {} ({})",
                        k.host,
                        k.app_name.as_deref().unwrap_or("-"),
                        driver_label(k)
                    )
                })
                .unwrap_or_else(|| c.client_id.clone());
            let _ = write!(
                body,
                "<text class=\"client\" x=\"2\" y=\"{:.1}\" font-weight=\"bold\">{}</text>",
                y + 12.0,
                esc(&label)
            );
            y += group_h;
        }
        if last_node != Some(obs.server) {
            last_node = Some(obs.server);
            let _ = write!(
                body,
                "<text x=\"14\" y=\"{:.1}\">→ {}</text>",
                y + lane_h - 1.0,
                esc(&report.endpoint(obs.server))
            );
        }
        let start = obs.opened.unwrap_or(obs.first_seen).max(t0);
        let end = obs.closed.unwrap_or(t1).min(t1).max(start);
        let (x0, x1) = (x(start), x(end));
        let _ = write!(
            body,
            "<rect class=\"lane\" data-class=\"{}\" x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"{}><title>{} → {}: {} ({})</title></rect>",
            c.verdict.class.name(),
            (x1 - x0).max(1.5),
            lane_h - 2.0,
            colour(c.verdict.class),
            if obs.syn_seen { "" } else { " fill-opacity=\"0.55\"" },
            esc(&report.endpoint(obs.client)),
            esc(&report.endpoint(obs.server)),
            c.verdict.class.name(),
            esc(&c.verdict.evidence)
        );
        let ticks = &obs.hello_ticks;
        if !ticks.offsets_ms().is_empty() {
            let mut d = String::new();
            let mut drawn = 0;
            for ms in ticks.offsets_ms() {
                let t = obs.first_seen + f64::from(*ms) / 1000.0;
                if (t0..=t1).contains(&t) {
                    drawn += 1;
                    let _ = write!(d, "M{:.1} {:.1}v{:.1}", x(t), y + 1.0, lane_h - 4.0);
                }
            }
            if ticks.every() > 1 {
                thinned += 1;
            }
            let _ = write!(
                body,
                "<path class=\"ticks\" data-client=\"{}\" data-server=\"{}\" data-ticks=\"{drawn}\" data-hellos=\"{}\" data-every=\"{}\" d=\"{d}\" stroke=\"#fff\" stroke-width=\"1\"><title>{}</title></path>",
                esc(&report.endpoint(obs.client)),
                esc(&report.endpoint(obs.server)),
                ticks.seen(),
                ticks.every(),
                if ticks.every() > 1 {
                    format!("{} hellos; every {}th drawn", ticks.seen(), ticks.every())
                } else {
                    format!("{} hellos", ticks.seen())
                }
            );
        }
        if obs.opened.is_some() {
            let _ = write!(
                body,
                "<line class=\"open\" x1=\"{x0:.1}\" x2=\"{x0:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#000\" stroke-width=\"1.5\"/>",
                y - 1.0,
                y + lane_h - 1.0
            );
        }
        if obs.closed.is_some() {
            let _ = write!(
                body,
                "<text class=\"close\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">×</text>",
                x1 + 1.0,
                y + lane_h - 1.5
            );
        }
        y += lane_h;
    }
    let height = y + 8.0;
    let width = label_w + plot_w + 20.0;
    let _ = write!(
        out,
        "<svg id=\"timeline\" width=\"{width}\" height=\"{height:.0}\" role=\"img\" aria-label=\"connection timeline\">"
    );
    // Time axis: about eight ticks at a round step.
    let step = nice_step(span / 8.0);
    let mut t = 0.0;
    while t <= span + 1e-9 {
        let tx = x(t0 + t);
        let _ = write!(
            out,
            "<line x1=\"{tx:.1}\" x2=\"{tx:.1}\" y1=\"{axis:.1}\" y2=\"{height:.0}\" stroke=\"#eee\"/>\
             <text x=\"{tx:.1}\" y=\"14\" text-anchor=\"middle\">{} s</text>",
            trim_float(t),
            axis = axis_h - 6.0,
        );
        t += step;
    }
    out.push_str(&body);
    out.push_str("</svg>\n");
    if thinned > 0 {
        let _ = writeln!(
            out,
            "<p class=\"note\" id=\"ticks-thinned\">{thinned} connection{} sent more than {MAX_HELLO_TICKS} hellos: at most {MAX_HELLO_TICKS} are kept per connection, evenly spread, so {} every 2nd, 4th… hello (hover a lane's ticks to see how many).</p>",
            plural(thinned),
            if thinned == 1 { "its lane shows" } else { "their lanes show" }
        );
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn nice_step(raw: f64) -> f64 {
    let mag = 10f64.powf(raw.max(1e-6).log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_steps() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(0.07), 0.1);
        assert_eq!(nice_step(30.0), 50.0);
        assert_eq!(trim_float(2.500), "2.5");
    }
}
