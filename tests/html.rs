//! `--format html` on real driver captures, rendered by a real browser (Debian's chromium,
//! headless): the page loads, its tables hold the JSON report's numbers, the timeline has
//! one lane per connection, and a screenshot is left for review in the target directory.
//! Without chromium the browser part is skipped with a printed reason; the page's
//! self-containment is checked either way.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const CASES: [&str; 4] = ["multi-client", "two-apps", "three-drivers", "pool-churn"];

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
