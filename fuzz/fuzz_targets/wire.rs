//! Any bytes as one direction of a MongoDB stream: framing, message parsing, BSON reading.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    conn_attrib::fuzzing::wire(data);
});
