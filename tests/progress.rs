//! The offline progress bar: drawn on a terminal's stderr, absent otherwise and with
//! `--quiet`. A terminal is provided by util-linux `script` (a pseudo-terminal).

use std::path::PathBuf;
use std::process::Command;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_conn-attrib")
}

fn capture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/lab/pool-growth/capture.pcap")
}

/// What the program writes to a terminal, or `None` when `script` is missing.
fn on_a_terminal(extra: &str) -> Option<String> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux `script` is not installed (no pseudo-terminal)");
        return None;
    }
    let cmd = format!("{} {} -o /dev/null {extra}", bin(), capture().display());
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_terminal_gets_the_bar_with_file_size_packets_and_connections() {
    let Some(tty) = on_a_terminal("") else { return };
    let size = std::fs::metadata(capture()).unwrap().len() as f64 / (1024.0 * 1024.0);
    assert!(tty.contains(&format!("{size:.2} MiB")), "{tty:?}");
    assert!(
        tty.contains(" packets · ") && tty.contains(" connections"),
        "{tty:?}"
    );
    // Cleared at the end: after the last drawing, the line is erased.
    let last = tty.rfind("connections").unwrap();
    assert!(tty[last..].contains("\x1b[2K"), "{tty:?}");
}

#[test]
fn quiet_or_a_redirected_stderr_get_nothing() {
    if let Some(tty) = on_a_terminal("--quiet") {
        assert!(!tty.contains("packets"), "{tty:?}");
    }
    let out = Command::new(bin())
        .arg(capture())
        .args(["-o", "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
