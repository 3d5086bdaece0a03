//! Benchmark of the capture hot path: decode + flow-table ingest over the
//! synthetic mixed capture, one core. Owns no daemon code; prints packets/s.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use netmon_testkit::synth::{self, Frame, SynthConfig};
use netmon_wire::decode::{decode, LinkType};
use netmon_wire::flows::{FlowDelta, FlowTable, LocalSet};

/// One replay of the capture as a capture thread would run it: decode, ingest,
/// and one drain (a tick) at the end. Time advances 1 ms per 1000 packets.
fn replay(
    frames: &[Frame],
    table: &mut FlowTable,
    local: &LocalSet,
    out: &mut Vec<FlowDelta>,
    t0: i64,
) -> u64 {
    let mut ok = 0u64;
    for (i, (frame, orig)) in frames.iter().enumerate() {
        if let Ok(meta) = decode(LinkType::Ethernet, frame, *orig) {
            table.ingest(&meta, local, t0 + (i / 1000) as i64);
            ok += 1;
        }
    }
    out.clear();
    table.drain(out);
    ok
}

fn bench(c: &mut Criterion) {
    let frames = synth::capture(&SynthConfig::default());
    let local = LocalSet::new(synth::local_addrs());
    let mut table = FlowTable::new(16_384);
    let mut out = Vec::with_capacity(32_768);

    // Warm up (the table fills), then a plain timed figure besides criterion's.
    let mut t0 = 0i64;
    replay(&frames, &mut table, &local, &mut out, t0);
    let passes = 5;
    let start = Instant::now();
    let mut decoded = 0;
    for _ in 0..passes {
        t0 += 1_000;
        decoded += replay(&frames, &mut table, &local, &mut out, t0);
    }
    let secs = start.elapsed().as_secs_f64();
    let pps = (passes * frames.len()) as f64 / secs;
    println!(
        "decode+ingest: {:.2} M packets/s ({} frames x {passes} passes, {decoded} decoded, {} flows, {} deltas per drain)",
        pps / 1e6,
        frames.len(),
        table.len(),
        out.len()
    );

    let mut g = c.benchmark_group("decode_flows");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.sample_size(10);
    g.measurement_time(std::time::Duration::from_secs(10));
    g.bench_function("decode_only", |b| {
        b.iter(|| {
            let mut bytes = 0u64;
            for (frame, orig) in &frames {
                if let Ok(m) = decode(LinkType::Ethernet, black_box(frame), *orig) {
                    bytes += u64::from(m.l3_len);
                }
            }
            black_box(bytes)
        })
    });
    g.bench_function("decode_and_ingest", |b| {
        b.iter(|| {
            t0 += 1_000;
            black_box(replay(&frames, &mut table, &local, &mut out, t0))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
