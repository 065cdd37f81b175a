//! Cost of verifying a model API key: cached (the request path) against uncached (a store
//! lookup per call), on a SQLite store. Besides criterion's report it prints p50 / p99 of the
//! cached path over 200 000 timed calls.
//!
//! Run: `cargo bench -p gateway-auth --bench verify`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use gateway_auth::{store, CreateToken, KeyVerifier, Management, VerifiedKey};

struct Setup {
    runtime: tokio::runtime::Runtime,
    cached: KeyVerifier,
    uncached: KeyVerifier,
    key: String,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let (store, key) = runtime.block_on(async {
        let store = store::open(&url).await.unwrap();
        let management = Management::new(store.clone());
        let project = management.create_project("bench").await.unwrap();
        for i in 0..1000 {
            let request = CreateToken {
                name: format!("k{i}"),
                ..CreateToken::default()
            };
            management
                .create_key(project.id, "eu01", request)
                .await
                .unwrap();
        }
        let request = CreateToken {
            name: "bench".into(),
            ..CreateToken::default()
        };
        let created = management
            .create_key(project.id, "eu01", request)
            .await
            .unwrap();
        (store, created.content.expose().to_owned())
    });
    Setup {
        cached: KeyVerifier::new(store.clone()),
        uncached: KeyVerifier::new(store as Arc<_>).with_max_age(Duration::ZERO),
        runtime,
        key,
        _dir: dir,
    }
}

/// Verifies without a scheduler round trip when the answer is ready at the first poll (a
/// cache hit), falling back to the runtime otherwise (a miss every `max_age`).
fn verify(s: &Setup, verifier: &KeyVerifier) -> VerifiedKey {
    let mut future = pin!(verifier.verify(&s.key));
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(result) => result.unwrap(),
        Poll::Pending => s.runtime.block_on(future).unwrap(),
    }
}

fn bench_verify(c: &mut Criterion) {
    let s = setup();
    let _context = s.runtime.enter();
    verify(&s, &s.cached);
    let mut group = c.benchmark_group("verify");
    group.bench_function("cached", |b| b.iter(|| verify(&s, &s.cached)));
    group.bench_function("uncached_sqlite", |b| b.iter(|| verify(&s, &s.uncached)));
    group.finish();
}

fn percentiles() {
    let s = setup();
    let _context = s.runtime.enter();
    let mut samples = Vec::with_capacity(200_000);
    for _ in 0..200_000 {
        let start = Instant::now();
        std::hint::black_box(verify(&s, &s.cached));
        samples.push(start.elapsed());
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "verify/cached over {} calls: p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
        samples.len(),
        at(0.50),
        at(0.99),
        at(0.999),
        samples[samples.len() - 1]
    );
}

criterion_group!(benches, bench_verify);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    percentiles();
}
