//! Any bytes as a sequence of TCP segments of a few flows: slicing, reassembly, framing,
//! observation, classification and every report format, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    conn_attrib::fuzzing::pipeline(data);
});
