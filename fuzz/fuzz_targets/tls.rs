//! Any bytes as the two directions of a TLS connection with a key log: record splitting,
//! hello parsing, key lookup, decryption.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    conn_attrib::fuzzing::tls(data);
});
