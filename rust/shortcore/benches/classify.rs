//! Classification speed over a realistic mix: the project's labelled sample
//! (`tests/data/ua-sample.jsonl`: mostly people on phones, then bots and preview fetchers, a few
//! header and timing cases), each request classified in full (user agent parsed included).
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shortcore::classify::{Classifier, OwnedHeaders, Request};
use shortcore::parse_user_agent;

struct Case {
    ua: String,
    method: String,
    headers: OwnedHeaders,
    seconds_since_send: Option<f64>,
}

fn cases() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/ua-sample.jsonl");
    let text = std::fs::read_to_string(path).expect("tests/data/ua-sample.jsonl");
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let mut headers = OwnedHeaders::new();
            if let Some(map) = row["headers"].as_object() {
                for (name, value) in map {
                    headers.insert(name.as_bytes(), value.as_str().unwrap_or("").as_bytes());
                }
            }
            Case {
                ua: row["ua"].as_str().unwrap_or("").to_owned(),
                method: row["method"].as_str().unwrap_or("GET").to_owned(),
                headers,
                seconds_since_send: row["seconds_since_send"].as_f64(),
            }
        })
        .collect()
}

fn classify(c: &mut Criterion) {
    let cases = cases();
    let requests: Vec<Request<'_>> = cases
        .iter()
        .map(|case| Request {
            user_agent: Some(&case.ua),
            method: &case.method,
            headers: case.headers.borrowed(),
            seconds_since_send: case.seconds_since_send,
            ip: None,
        })
        .collect();
    let classifier = Classifier::default();

    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(requests.len() as u64));
    group.bench_function("mix", |b| {
        b.iter(|| {
            for request in &requests {
                black_box(classifier.classify(black_box(request)));
            }
        });
    });
    group.bench_function("parse_user_agent", |b| {
        b.iter(|| {
            for case in &cases {
                black_box(parse_user_agent(black_box(&case.ua)));
            }
        });
    });
    group.finish();

    let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) \
                  Version/18.1 Mobile/15E148 Safari/604.1";
    let mut single = c.benchmark_group("classify_one");
    single.throughput(Throughput::Elements(1));
    single.bench_function("iphone_safari", |b| {
        b.iter(|| classifier.classify(&Request::new(Some(black_box(iphone)))));
    });
    single.bench_function("python_requests", |b| {
        b.iter(|| classifier.classify(&Request::new(Some(black_box("python-requests/2.32.3")))));
    });
    single.finish();
}

criterion_group!(benches, classify);
criterion_main!(benches);
