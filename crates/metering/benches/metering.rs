//! What metering adds to one request, in process: the path `gateway-api`'s `Accounting::admit`
//! → `Ticket::close` takes through this crate (the project's quota from the [`LimitPolicy`],
//! [`LocalLimiter`] admission, the price from the [`PriceSheet`], a [`UsageRecord`] appended
//! to the [`UsageJournal`], settling the reservation), as a whole and part by part, with
//! 1,000 projects taken round-robin (so 1,000 live buckets), and once with 5,000 (more than
//! the limiter keeps before it prunes).
//!
//! Besides criterion's means it prints p50 / p99 / p99.9 of 100,000 timed requests, in one
//! tokio task and spread over 8 concurrent tasks (contention on the limiter's and the
//! journal's mutexes), each once with the journal flushed between rounds (outside the timed
//! requests) and once with the journal's writer running beside them, as in the gateway; and
//! once more in one task with 5,000 projects.
//!
//! The usage store is SQLite in a temporary directory. Moving records into it is not part of
//! a request: criterion's cases flush the journal after each sample, outside the time they
//! report, so its in-memory list stays bounded.
//!
//! Run: `cargo bench -p gateway-metering --bench metering`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use criterion::{criterion_group, Criterion};
use gateway_core::ServicePlan;
use gateway_metering::journal::UsageJournal;
use gateway_metering::limit::bucket_key;
use gateway_metering::{
    LimitOverride, LimitPolicy, LocalLimiter, Outcome, PerMinute, Price, PriceSheet, Quota,
    RateLimiter, Requester, TokenCounts, UsageRecord,
};
use rust_decimal::Decimal;
use uuid::Uuid;

/// The model every request names.
const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";
/// Its plan.
const PLAN: ServicePlan = ServicePlan::Plus;
/// Prompt tokens and `max_tokens` of each request: what admission reserves.
const PROMPT: u64 = 200;
const MAX_TOKENS: u64 = 256;
/// What each request really used: what settling counts.
const USED: TokenCounts = TokenCounts {
    input: PROMPT,
    cached_input: 0,
    output: 120,
    exact: true,
};
/// Requests timed for the percentiles, per measurement.
const TIMED: usize = 100_000;
/// Requests per round of the percentile loops (the journal is flushed between rounds).
const ROUND: usize = 10_000;

/// Everything one request goes through, as the gateway wires it.
struct Setup {
    runtime: tokio::runtime::Runtime,
    policy: LimitPolicy,
    prices: PriceSheet,
    limiter: LocalLimiter,
    journal: Arc<UsageJournal>,
    /// Project id and key id of each project, taken round-robin.
    projects: Vec<(Uuid, Uuid)>,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// A fresh limiter, journal and SQLite store for `projects` projects.
    fn new(projects: usize) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.db").display()
        );
        let journal = runtime.block_on(async {
            let store = gateway_metering::store::open(&url).await.unwrap();
            UsageJournal::open(&dir.path().join("journal"), store)
                .await
                .unwrap()
        });
        let projects: Vec<(Uuid, Uuid)> = (0..projects)
            .map(|_| (Uuid::new_v4(), Uuid::new_v4()))
            .collect();
        Self {
            runtime,
            policy: policy(&projects),
            prices: prices(),
            limiter: LocalLimiter::new(),
            journal: Arc::new(journal),
            projects,
            _dir: dir,
        }
    }

    /// The ids of request number `n`.
    fn requester(&self, n: usize) -> Requester {
        let (project_id, key_id) = self.projects[n % self.projects.len()];
        Requester {
            project_id,
            key_id,
            model: MODEL.to_owned(),
            request_id: format!("req-{n:016x}"),
        }
    }

    /// `Accounting::budget` and `Accounting::reservation`: the bucket key, the quota and the
    /// tokens to reserve.
    fn budget(&self, project: Uuid) -> (String, Quota, u64) {
        let quota = self.policy.quota(project, MODEL, PLAN);
        let reserve = self
            .policy
            .weighted_tokens(PROMPT, MAX_TOKENS)
            .min(quota.tokens.capacity());
        (bucket_key(project, MODEL), quota, reserve)
    }

    /// `Accounting::price_now` and the record `Ticket::close` writes.
    fn record(&self, requester: Requester, now: DateTime<Utc>) -> UsageRecord {
        let price = self.prices.at(PLAN, now).cloned().unwrap();
        UsageRecord::new(requester, now, &price, USED, Outcome::Complete)
    }

    /// One request's metering: admission, then (once the answer is complete) the record and
    /// settling. The gateway settles in a spawned task; here it is awaited in place, which
    /// counts the same work.
    async fn request(&self, n: usize) {
        let requester = self.requester(n);
        let (key, quota, reserve) = self.budget(requester.project_id);
        let admission = self.limiter.admit(&key, quota, reserve).await.unwrap();
        assert!(admission.admitted, "the bench's limits admit every request");
        let record = self.record(requester, Utc::now());
        self.journal.append(&record).unwrap();
        let used = self.policy.weighted_tokens(USED.input, USED.output);
        self.limiter
            .settle(&key, quota, reserve, used)
            .await
            .unwrap();
    }
}

/// The default burst and output weight, with limits so high that every request is admitted
/// (a refused request would skip the record and settling); every tenth project has an
/// override, so both lookups of [`LimitPolicy::quota`] run.
fn policy(projects: &[(Uuid, Uuid)]) -> LimitPolicy {
    let plenty = PerMinute {
        requests: 1_000_000_000,
        tokens: 1_000_000_000_000,
    };
    let plans = HashMap::from([
        (ServicePlan::Base, plenty),
        (ServicePlan::Plus, plenty),
        (ServicePlan::Premium, plenty),
    ]);
    let policy = LimitPolicy::new(plans, 10, 5);
    let overrides = projects
        .iter()
        .step_by(10)
        .map(|&(project_id, _)| LimitOverride {
            project_id,
            model: None,
            requests_per_minute: plenty.requests,
            tokens_per_minute: plenty.tokens,
            updated_at: Utc::now(),
        })
        .collect();
    policy.set_overrides(overrides);
    policy
}

/// The gateway's default prices, and a later price for each plan (so the lookup passes it).
fn prices() -> PriceSheet {
    let price = |plan, from: &str, input, output| Price {
        plan,
        effective_from: from.parse().unwrap(),
        currency: "EUR".to_owned(),
        input_per_million: Decimal::new(input, 2),
        cached_input_per_million: Decimal::new(input, 2),
        output_per_million: Decimal::new(output, 2),
    };
    PriceSheet::new(vec![
        price(ServicePlan::Base, "2026-01-01T00:00:00Z", 45, 65),
        price(ServicePlan::Plus, "2026-01-01T00:00:00Z", 90, 130),
        price(ServicePlan::Premium, "2026-01-01T00:00:00Z", 180, 260),
        price(ServicePlan::Base, "2099-01-01T00:00:00Z", 50, 70),
        price(ServicePlan::Plus, "2099-01-01T00:00:00Z", 100, 140),
        price(ServicePlan::Premium, "2099-01-01T00:00:00Z", 200, 280),
    ])
    .unwrap()
}

/// Times `iters` runs of `step` (given the run's number) in one `block_on`, then flushes the
/// journal outside the time returned.
fn timed<F: std::future::Future<Output = ()>>(
    s: &Setup,
    iters: u64,
    step: impl Fn(usize) -> F,
) -> Duration {
    s.runtime.block_on(async {
        let start = Instant::now();
        for n in 0..iters as usize {
            step(n).await;
        }
        let elapsed = start.elapsed();
        s.journal.flush().await.unwrap();
        elapsed
    })
}

fn bench_metering(c: &mut Criterion) {
    let setup = Setup::new(1_000);
    let s = &setup;
    let mut group = c.benchmark_group("metering");
    group.bench_function("request (admit + record + append + settle)", |b| {
        b.iter_custom(|iters| timed(s, iters, |n| s.request(n)))
    });
    group.bench_function("admit (quota + key + LocalLimiter::admit)", |b| {
        b.iter_custom(|iters| {
            timed(s, iters, |n| async move {
                let (key, quota, reserve) = s.budget(s.projects[n % s.projects.len()].0);
                black_box(s.limiter.admit(&key, quota, reserve).await.unwrap());
            })
        })
    });
    group.bench_function("record (PriceSheet::at + UsageRecord::new)", |b| {
        b.iter_custom(|iters| {
            let requesters: Vec<Requester> = (0..iters as usize).map(|n| s.requester(n)).collect();
            let mut records = Vec::with_capacity(requesters.len());
            let start = Instant::now();
            for requester in requesters {
                records.push(s.record(requester, Utc::now()));
            }
            let elapsed = start.elapsed();
            black_box(records);
            elapsed
        })
    });
    group.bench_function("append (UsageJournal::append)", |b| {
        b.iter_custom(|iters| {
            let records: Vec<UsageRecord> = (0..iters as usize)
                .map(|n| s.record(s.requester(n), Utc::now()))
                .collect();
            timed(s, iters, |n| {
                s.journal.append(&records[n]).unwrap();
                std::future::ready(())
            })
        })
    });
    group.bench_function("settle (quota + key + LocalLimiter::settle)", |b| {
        let used = s.policy.weighted_tokens(USED.input, USED.output);
        b.iter_custom(|iters| {
            timed(s, iters, |n| async move {
                let (key, quota, reserve) = s.budget(s.projects[n % s.projects.len()].0);
                s.limiter.settle(&key, quota, reserve, used).await.unwrap();
            })
        })
    });
    group.finish();
    drop(setup);

    let many = &Setup::new(5_000);
    let mut group = c.benchmark_group("metering_5000_projects");
    group.bench_function("request (admit + record + append + settle)", |b| {
        b.iter_custom(|iters| timed(many, iters, |n| many.request(n)))
    });
    group.finish();
}

/// Times [`TIMED`] requests of `projects` projects spread over `tasks` concurrent tokio
/// tasks, in rounds of [`ROUND`]; flushes the journal between rounds, or runs its writer
/// beside them when `writer`. Prints p50, p99, p99.9 and the maximum, and how fast the
/// flushes moved records into SQLite.
fn percentiles(projects: usize, tasks: usize, writer: bool) {
    let s = Arc::new(Setup::new(projects));
    let writer_task = writer.then(|| s.runtime.spawn(Arc::clone(&s.journal).run_writer()));
    let mut samples: Vec<Duration> = Vec::with_capacity(TIMED);
    let mut flushes: Vec<Duration> = Vec::new();
    let mut next = 0;
    while samples.len() < TIMED {
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let shared = Arc::clone(&s);
                let first = next + task;
                s.runtime.spawn(async move {
                    let s = shared;
                    let mut times = Vec::with_capacity(ROUND / tasks);
                    for n in (first..first + ROUND).step_by(tasks) {
                        let start = Instant::now();
                        s.request(n).await;
                        times.push(start.elapsed());
                    }
                    times
                })
            })
            .collect();
        s.runtime.block_on(async {
            for handle in handles {
                samples.extend(handle.await.unwrap());
            }
            if !writer {
                let start = Instant::now();
                let moved = s.journal.flush().await.unwrap();
                flushes.push(start.elapsed());
                assert_eq!(moved, ROUND as u64, "each record reaches the store once");
            }
        });
        next += ROUND;
    }
    if let Some(task) = writer_task {
        task.abort();
    }
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 * q) as usize).min(samples.len() - 1);
        samples[index].as_secs_f64() * 1e6
    };
    let journal = if writer {
        "journal writer running"
    } else {
        "journal flushed between rounds"
    };
    println!(
        "metering/request, {projects} projects, {tasks} task(s), {journal}, {} requests: \
         p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs, max {:.2} µs",
        samples.len(),
        at(0.50),
        at(0.99),
        at(0.999),
        at(1.0),
    );
    if let (Some(fastest), Some(slowest)) = (flushes.iter().min(), flushes.iter().max()) {
        let rate = |flush: &Duration| ROUND as f64 / flush.as_secs_f64();
        println!(
            "    journal flush of {ROUND} records into SQLite: {:.0}–{:.0} ms \
             ({:.0}–{:.0} records/s)",
            fastest.as_secs_f64() * 1e3,
            slowest.as_secs_f64() * 1e3,
            rate(slowest),
            rate(fastest),
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_metering
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    for tasks in [1, 8] {
        for writer in [false, true] {
            percentiles(1_000, tasks, writer);
        }
    }
    percentiles(5_000, 1, false);
}
