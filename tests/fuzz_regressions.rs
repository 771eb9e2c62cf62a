//! The fuzz targets' entry points over their seed corpora and every minimised crasher kept
//! in fuzz/regressions/<target>/: what once crashed must keep passing in the normal suite.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in [
        root.join("seeds").join(target),
        root.join("regressions").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let data = std::fs::read(entry.path()).unwrap();
            run(&data);
            n += 1;
        }
    }
    n
}

#[test]
fn capture_inputs_do_not_panic() {
    assert!(replay("capture", conn_attrib::fuzzing::capture) > 0);
}

#[test]
fn pipeline_inputs_do_not_panic() {
    assert!(replay("pipeline", conn_attrib::fuzzing::pipeline) > 0);
}

#[test]
fn wire_inputs_do_not_panic() {
    assert!(replay("wire", conn_attrib::fuzzing::wire) > 0);
}

#[test]
fn tls_inputs_do_not_panic() {
    assert!(replay("tls", conn_attrib::fuzzing::tls) > 0);
}

#[test]
fn empty_and_tiny_inputs_do_not_panic() {
    for data in [
        &b""[..],
        b"\xd4\xc3\xb2\xa1",
        b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00",
    ] {
        conn_attrib::fuzzing::capture(data);
        conn_attrib::fuzzing::pipeline(data);
        conn_attrib::fuzzing::wire(data);
        conn_attrib::fuzzing::tls(data);
    }
}
