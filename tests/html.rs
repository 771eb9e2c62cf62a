//! `--format html` on real driver captures, rendered by a real browser (Debian's chromium,
//! headless): the page loads, its tables hold the JSON report's numbers, the timeline has
//! one lane per connection, and a screenshot is left for review in the target directory.
//! Without chromium the browser part is skipped with a printed reason; the page's
//! self-containment is checked either way.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const CASES: [&str; 5] = [
    "multi-client",
    "two-apps",
    "three-drivers",
    "pool-churn",
    "poll-mode",
];

fn run(case: &str, format: &str, out: &Path) {
    let capture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("testdata/lab/{case}/capture.pcap"));
    let status = Command::new(env!("CARGO_BIN_EXE_conn-attrib"))
        .arg(capture)
        .args(["--format", format, "--quiet", "-o"])
        .arg(out)
        .status()
        .unwrap();
    assert!(matches!(status.code(), Some(0 | 1)), "{case} {format}");
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(PathBuf::from)
}

fn headless(browser: &Path) -> Command {
    let mut c = Command::new(browser);
    // Root in a container: no sandbox; no GPU on the machine.
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
    ]);
    c
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The body rows of `<table id="…">` in a DOM dump, as cell texts.
fn table_rows(dom: &str, id: &str) -> Vec<Vec<String>> {
    let start = dom
        .find(&format!("<table id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no table {id}"));
    let table = &dom[start..start + dom[start..].find("</table>").unwrap()];
    let body = &table[table.find("<tbody>").unwrap()..];
    body.split("<tr>")
        .skip(1)
        .map(|row| {
            row.split("<td>")
                .skip(1)
                .map(|cell| unescape(&cell[..cell.find("</td>").unwrap()]))
                .collect()
        })
        .collect()
}

/// `data-*` attributes of every `<path class="ticks" …>` in a page, by client endpoint.
fn tick_lanes(page: &str) -> std::collections::HashMap<String, (u64, u64, u64)> {
    let attr = |tag: &str, name: &str| -> String {
        let start = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        tag[start..start + tag[start..].find('"').unwrap()].to_string()
    };
    page.split("<path class=\"ticks\"")
        .skip(1)
        .map(|rest| {
            let tag = &rest[..rest.find('>').unwrap()];
            let n = |name: &str| attr(tag, name).parse::<u64>().unwrap();
            let ticks = tag.matches('M').count() as u64;
            assert_eq!(ticks, n("data-ticks"), "{tag}");
            (
                unescape(&attr(tag, "data-client")),
                (n("data-ticks"), n("data-hellos"), n("data-every")),
            )
        })
        .collect()
}

/// Each lane's hello ticks against the lab's test server log (hellos and isMasters it
/// received per connection, counted by the server, not by conn-attrib): every hello sent
/// is a tick, and a streaming monitor's lane also ticks for each heartbeat the server
/// streamed. Polling monitors tick once per heartbeatFrequencyMS over the capture.
fn check_ticks(case: &str, page: &str, report: &Value) {
    let log_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("testdata/lab/{case}/server-connections.json"));
    let log: Value = serde_json::from_slice(&std::fs::read(log_path).unwrap()).unwrap();
    let lanes = tick_lanes(page);
    let classes: std::collections::HashMap<&str, &str> = report["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["client"].as_str().unwrap(), c["class"].as_str().unwrap()))
        .collect();
    let mut monitors = 0;
    for conn in log.as_array().unwrap() {
        let peer = conn["peer"].as_str().unwrap();
        let commands = &conn["commands"];
        let hellos = ["hello", "ismaster", "isMaster"]
            .iter()
            .map(|k| commands[k].as_u64().unwrap_or(0))
            .sum::<u64>();
        let class = classes[peer];
        let Some(&(ticks, seen, every)) = lanes.get(peer) else {
            assert_eq!(hellos, 0, "{case} {peer}: no ticks drawn");
            continue;
        };
        // Lab captures are short: nothing is thinned, every hello is drawn.
        assert_eq!((every, ticks), (1, seen), "{case} {peer}");
        if class == "streaming-monitor" {
            assert!(
                seen > hellos,
                "{case} {peer}: {seen} ticks, {hellos} hellos sent"
            );
        } else {
            assert_eq!(seen, hellos, "{case} {peer} ({class})");
        }
        if class == "polling-monitor" {
            monitors += 1;
            let span = conn["closed"].as_f64().unwrap() - conn["opened"].as_f64().unwrap();
            // heartbeatFrequencyMS=2000 in this case's URI (truth.json).
            let cadence = span / 2.0;
            assert!(
                (seen as f64 - cadence).abs() <= 1.5,
                "{case} {peer}: {seen} ticks over {span:.1} s"
            );
        }
    }
    if case == "poll-mode" {
        assert_eq!(monitors, 3, "one polling monitor per node");
        assert!(!page.contains("id=\"ticks-thinned\""));
    }
}

#[test]
fn html_is_self_contained_and_renders_the_report_numbers() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("html");
    std::fs::create_dir_all(&dir).unwrap();
    let browser = chromium();
    if browser.is_none() {
        eprintln!(
            "skipped the browser checks: chromium is not installed (apt-get install chromium)"
        );
    }
    for case in CASES {
        let (html, json) = (
            dir.join(format!("{case}.html")),
            dir.join(format!("{case}.json")),
        );
        run(case, "html", &html);
        run(case, "json", &json);
        let page = std::fs::read_to_string(&html).unwrap();
        let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        // Opens anywhere: no scripts, no fetched assets.
        for banned in ["<script", "http://", "https://", " src=", "url(", "<link"] {
            assert!(!page.contains(banned), "{case}: {banned}");
        }
        check_ticks(case, &page, &report);
        let Some(browser) = &browser else { continue };

        let out = headless(browser)
            .arg("--dump-dom")
            .arg(format!("file://{}", html.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dom = String::from_utf8(out.stdout).unwrap();

        let clients = report["clients"].as_array().unwrap();
        let rows = table_rows(&dom, "clients");
        assert_eq!(rows.len(), clients.len(), "{case}");
        let classes = [
            "streaming-monitor",
            "rtt-monitor",
            "polling-monitor",
            "pool",
            "single-threaded",
            "internal",
            "unknown",
        ];
        for (row, c) in rows.iter().zip(clients) {
            assert_eq!(row[0], c["host"].as_str().unwrap(), "{case}");
            assert_eq!(row[1], c["app_name"].as_str().unwrap_or("-"), "{case}");
            assert_eq!(row[4], c["mongo_clients"].to_string(), "{case}");
            for (i, class) in classes.iter().enumerate() {
                assert_eq!(row[5 + i], c["counts"][class].to_string(), "{case} {class}");
            }
            assert_eq!(row[12], c["counts"]["total"].to_string(), "{case}");
            let expected = c["expected"]["total"]
                .as_u64()
                .map_or("-".into(), |t| t.to_string());
            assert_eq!(row[13], expected, "{case}");
        }
        let nodes = report["nodes"].as_array().unwrap();
        let rows = table_rows(&dom, "nodes");
        assert_eq!(rows.len(), nodes.len(), "{case}");
        for (row, n) in rows.iter().zip(nodes) {
            assert_eq!(row[0], n["node"].as_str().unwrap(), "{case}");
            assert_eq!(row[2], n["counts"]["total"].to_string(), "{case}");
        }
        let connections = report["connections"].as_array().unwrap();
        assert_eq!(
            table_rows(&dom, "connections").len(),
            connections.len(),
            "{case}"
        );
        assert_eq!(
            dom.matches("class=\"lane\"").count(),
            connections.len(),
            "{case}"
        );
        for class in classes {
            let lanes = dom.matches(&format!("data-class=\"{class}\"")).count();
            let want = connections.iter().filter(|c| c["class"] == class).count();
            assert_eq!(lanes, want, "{case} {class} lanes");
        }
        // The browser keeps every lane's ticks.
        assert_eq!(
            dom.matches("<path class=\"ticks\"").count(),
            page.matches("<path class=\"ticks\"").count(),
            "{case}"
        );
        assert!(dom.contains(&format!(
            "<span id=\"connection-count\">{}</span>",
            connections.len()
        )));

        let shot = dir.join(format!("{case}.png"));
        let _ = std::fs::remove_file(&shot);
        let out = headless(browser)
            .arg(format!("--screenshot={}", shot.display()))
            .arg("--window-size=1300,1800")
            .arg(format!("file://{}", html.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{case}");
        let png = std::fs::read(&shot).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 20_000,
            "{case}: {} bytes",
            png.len()
        );
        eprintln!("screenshot for review: {}", shot.display());
    }
}
