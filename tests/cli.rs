//! The binary end to end: formats, output file, stdin, exit codes, messages.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_conn-attrib"))
}

#[test]
fn clean_capture_exits_zero_with_a_text_report() {
    let out = bin().arg(shared!("deepflow_mongo.pcap")).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("CLIENTS") && text.contains("10.50.1.138"),
        "{text}"
    );
}

#[test]
fn json_to_a_file_follows_the_schema() {
    let dir = std::env::temp_dir().join(format!("conn-attrib-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("r.json");
    let out = bin()
        .arg(shared!("deepflow_mongo.pcap"))
        .args(["--format", "json", "-o"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(v["schema"], "conn-attrib/1");
    assert_eq!(v["connections"][0]["server"], "10.50.1.133:27017");
    assert_eq!(v["clients"][0]["app_name"], "MongoDB Shell");
}

#[test]
fn reads_standard_input() {
    let bytes = std::fs::read(shared!("mongo-tools_mongoreplay_compressed.pcap")).unwrap();
    let mut child = bin()
        .args(["-", "--format", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["input"]["path"], "-");
    assert_eq!(v["connections"].as_array().unwrap().len(), 1);
}

#[test]
fn warnings_exit_one_and_unusable_input_exits_two() {
    let dir = std::env::temp_dir().join(format!("conn-attrib-cli2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut bytes = std::fs::read(shared!("deepflow_mongo.pcap")).unwrap();
    bytes.truncate(bytes.len() - 20);
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &bytes).unwrap();
    let out = bin().arg(&cut).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning") && err.contains("cut.pcap"), "{err}");

    let junk = dir.join("junk.pcap");
    std::fs::write(&junk, b"definitely not a capture").unwrap();
    let out = bin().arg(&junk).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither a pcap nor a pcapng"));

    let out = bin().arg(dir.join("missing.pcap")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open"));

    let out = bin()
        .arg("x.pcap")
        .args(["--format", "xml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_documents_exit_codes() {
    let out = bin().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("Exit status") && help.contains("unusable input"),
        "{help}"
    );
}

#[test]
fn markdown_names_tool_and_command_line_without_credentials() {
    let out = bin()
        .arg(shared!("deepflow_mongo.pcap"))
        .args([
            "--format",
            "markdown",
            "--uri",
            "mongodb://alice:secret@db.example/?minPoolSize=2",
        ])
        .output()
        .unwrap();
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(md.starts_with("# MongoDB connection attribution"));
    assert!(md.contains("conn-attrib"));
    assert!(!md.contains("secret") && !md.contains("alice"), "{md}");
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    // `conn-attrib … -f json | head`: the closed pipe must not print an error.
    let lab = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/lab/pool-churn/capture.pcap"
    );
    let mut child = bin()
        .args([lab, "-f", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(first.starts_with(b"{"), "{first:?}");
    assert!(!stderr.contains("cannot write"), "{stderr}");
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{:?}",
        out.status
    );
}

#[test]
fn threads_two_and_one_write_the_same_report() {
    // The text report does not print the command line; the exit code says the same too.
    let capture = "testdata/lab/pool-churn/capture.pcap";
    let run = |threads: &str| {
        let out = bin()
            .args([capture, "--keep-closed", "2", "--threads", threads])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let one = run("1");
    assert!(
        one.1.contains("released from memory"),
        "folds ran: {}",
        one.1
    );
    assert_eq!(run("2"), one);
    let out = bin().args([capture, "--threads", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "0 threads is refused");
}
