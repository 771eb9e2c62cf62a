//! Message builders for the wire stage's unit tests.

use bson::RawDocument;

fn header(len: usize, request_id: i32, response_to: i32, op: i32) -> Vec<u8> {
    let mut m = Vec::with_capacity(len);
    m.extend((len as i32).to_le_bytes());
    m.extend(request_id.to_le_bytes());
    m.extend(response_to.to_le_bytes());
    m.extend(op.to_le_bytes());
    m
}

pub fn op_msg(request_id: i32, response_to: i32, flags: u32, doc: &RawDocument) -> Vec<u8> {
    let body = doc.as_bytes();
    let mut m = header(16 + 5 + body.len(), request_id, response_to, 2013);
    m.extend(flags.to_le_bytes());
    m.push(0);
    m.extend_from_slice(body);
    m
}

pub fn op_query(request_id: i32, ns: &str, doc: &RawDocument) -> Vec<u8> {
    let body = doc.as_bytes();
    let mut m = header(16 + 4 + ns.len() + 1 + 8 + body.len(), request_id, 0, 2004);
    m.extend(0i32.to_le_bytes());
    m.extend_from_slice(ns.as_bytes());
    m.push(0);
    m.extend(0i32.to_le_bytes());
    m.extend((-1i32).to_le_bytes());
    m.extend_from_slice(body);
    m
}

pub fn op_reply(request_id: i32, response_to: i32, doc: &RawDocument) -> Vec<u8> {
    let body = doc.as_bytes();
    let mut m = header(16 + 20 + body.len(), request_id, response_to, 1);
    m.extend(8i32.to_le_bytes()); // AwaitCapable
    m.extend(0i64.to_le_bytes());
    m.extend(0i32.to_le_bytes());
    m.extend(1i32.to_le_bytes());
    m.extend_from_slice(body);
    m
}

pub fn op_compressed(inner: &[u8], compressor: u8, compressed: &[u8]) -> Vec<u8> {
    let mut m = header(16 + 9 + compressed.len(), 77, 0, 2012);
    m.extend_from_slice(&inner[12..16]);
    m.extend(((inner.len() - 16) as i32).to_le_bytes());
    m.push(compressor);
    m.extend_from_slice(compressed);
    m
}
