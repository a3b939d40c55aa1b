//! Token encode and decode speed.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shortcore::TokenCodec;
use std::hint::black_box;

fn tokens(c: &mut Criterion) {
    let codec = TokenCodec::new(b"bench secret", 7).unwrap();
    let tokens: Vec<String> = (0..1024u64)
        .map(|s| codec.encode(s * 7919).unwrap().to_string())
        .collect();
    let mut group = c.benchmark_group("tokens");
    group.throughput(Throughput::Elements(1));
    let mut seq = 0u64;
    group.bench_function("encode", |b| {
        b.iter(|| {
            seq = (seq + 1) & 0xFFFF_FFFF;
            codec.encode(black_box(seq))
        });
    });
    let mut i = 0usize;
    group.bench_function("decode", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            codec.decode(black_box(&tokens[i]))
        });
    });
    group.bench_function("decode_reject", |b| b.iter(|| codec.decode(black_box("abc-def"))));
    group.finish();

    let mut batch = c.benchmark_group("tokens_batch");
    batch.throughput(Throughput::Elements(100_000));
    let mut out = Vec::with_capacity(100_000);
    batch.bench_function("encode_range_100k", |b| {
        b.iter(|| {
            out.clear();
            codec
                .encode_range_into(black_box(1_000_000), 100_000, &mut out)
                .unwrap();
        });
    });
    batch.finish();
}

criterion_group!(benches, tokens);
criterion_main!(benches);
