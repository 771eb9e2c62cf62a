//! Any bytes as a capture file (pcap or pcapng): read every packet, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    conn_attrib::fuzzing::capture(data);
});
