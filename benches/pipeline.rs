//! Criterion benchmarks, one per pipeline stage (capture read, slicing, reassembly,
//! framing, classification + attribution) and end to end, on one thread and on two,
//! over real captures.
//! Run `cargo bench --bench pipeline`; the side-by-side comparison with tshark on a large
//! generated capture is `scripts/bench/vs-tshark.sh`.

use std::hint::black_box;
use std::io::Cursor;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use conn_attrib::attribute::{attribute, Options};
use conn_attrib::capture::{FileSource, PacketSource, Timestamp};
use conn_attrib::classify::classify;
use conn_attrib::net::{self, Sliced};
use conn_attrib::tcp::{
    ConnHandler, ConnInfo, FlowTable, Side, StreamEvent, StreamStats, TableConfig,
};
use conn_attrib::wire::{FrameEvent, Framer, FramerConfig};
use conn_attrib::{analyze, analyze_pipelined, conclude, AnalyzerConfig};

/// The capture the benchmarks read: the lab's largest bundled case, else a public one.
fn capture() -> (String, Vec<u8>) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        root.join("testdata/lab/pool-growth/capture.pcap"),
        root.join("testdata/lab/streaming-default/capture.pcap"),
        root.join("../shared/pcaps/public/wireshark-wiki_SampleCaptures_mongodb.pcap"),
    ];
    let path = candidates
        .iter()
        .find(|p| p.exists())
        .expect("a capture to benchmark");
    (
        path.display().to_string(),
        std::fs::read(path).expect("readable"),
    )
}

fn source(bytes: &[u8]) -> FileSource {
    FileSource::from_reader("bench", Box::new(Cursor::new(bytes.to_vec()))).expect("capture")
}

fn stages(c: &mut Criterion) {
    let (name, bytes) = capture();
    eprintln!("benchmarking over {name} ({} bytes)", bytes.len());
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Bytes(bytes.len() as u64));

    group.bench_function("capture_read", |b| {
        b.iter(|| {
            let mut src = source(&bytes);
            let mut n = 0usize;
            while let Ok(Some(p)) = src.next_packet() {
                n += p.data.len();
            }
            black_box(n)
        })
    });

    // Slicing over packets read once up front.
    let mut packets = Vec::new();
    let mut src = source(&bytes);
    while let Ok(Some(p)) = src.next_packet() {
        packets.push((p.link, p.data.to_vec(), p.orig_len));
    }
    group.bench_function("slice", |b| {
        b.iter(|| {
            let mut payload = 0usize;
            for (link, data, orig) in &packets {
                if let Ok(Sliced::Tcp(seg)) = net::slice(*link, data, *orig) {
                    payload += seg.payload.len();
                }
            }
            black_box(payload)
        })
    });

    // Framing over the concatenated client→server payloads of the capture.
    let mut stream = Vec::new();
    for (link, data, orig) in &packets {
        if let Ok(Sliced::Tcp(seg)) = net::slice(*link, data, *orig) {
            if seg.dst.port == 27017 {
                stream.extend_from_slice(seg.payload);
            }
        }
    }
    group.bench_function("frame", |b| {
        b.iter(|| {
            let mut framer = Framer::new(FramerConfig::default());
            let mut messages = 0usize;
            framer.push(&stream, |e| {
                if matches!(e, FrameEvent::Message(_)) {
                    messages += 1;
                }
            });
            black_box(messages)
        })
    });

    // Reassembly alone: segments through the flow table into a handler that only counts.
    struct Count;
    impl ConnHandler for Count {
        type State = u64;
        fn open(&mut self, _: &ConnInfo) -> u64 {
            0
        }
        fn stream(&mut self, n: &mut u64, _: &ConnInfo, _: Side, _: Timestamp, e: StreamEvent<'_>) {
            if let StreamEvent::Data(d) = e {
                *n += d.len() as u64;
            }
        }
        fn close(&mut self, n: u64, _: &ConnInfo, _: [StreamStats; 2]) {
            black_box(n);
        }
    }
    group.bench_function("reassembly", |b| {
        b.iter(|| {
            let mut table = FlowTable::new(TableConfig::default());
            let mut handler = Count;
            for (i, (link, data, orig)) in packets.iter().enumerate() {
                if let Ok(Sliced::Tcp(seg)) = net::slice(*link, data, *orig) {
                    table.segment(Timestamp(i as i64), &seg, &mut handler);
                }
            }
            table.finish(&mut handler);
        })
    });

    // Classification and attribution over the capture's observations.
    let observed = analyze(&mut source(&bytes), AnalyzerConfig::default());
    let peaks = observed.in_flight.peaks();
    group.bench_function("classify_attribute", |b| {
        b.iter(|| {
            let verdicts = classify(&observed.connections, None);
            black_box(attribute(
                observed.connections.clone(),
                verdicts,
                Options::default(),
                &peaks,
                &Default::default(),
                &[],
            ))
        })
    });

    group.bench_function("end_to_end", |b| {
        b.iter(|| {
            let mut src = source(&bytes);
            let analysis = analyze(&mut src, AnalyzerConfig::default());
            black_box(conclude(analysis, Default::default(), Default::default()))
        })
    });

    // The same on two threads (`--threads 2`): reading and reassembly beside the observer.
    group.bench_function("end_to_end_two_threads", |b| {
        b.iter(|| {
            let mut src = source(&bytes);
            let analysis = analyze_pipelined(
                &mut src,
                AnalyzerConfig::default(),
                &mut |_| {},
                &mut |_| {},
            );
            black_box(conclude(analysis, Default::default(), Default::default()))
        })
    });
    group.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
