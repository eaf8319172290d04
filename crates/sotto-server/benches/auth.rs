//! Argon2id password hashing as the login path does it.
//!
//! Every password login verifies an Argon2id hash (19 MiB, 2 iterations,
//! 1 lane), and every registration computes one. That cost is deliberate
//! (it is what makes a stolen database slow to crack) and it bounds
//! password logins per second, so it is measured through the server's own
//! `Hasher` (exposed via `sotto_server::bench_api`): the same parameters,
//! the same hop onto tokio's blocking pool, the same concurrency limit.
//!
//! - `hash` and `verify`: one operation at a time, the latency one login
//!   adds.
//! - `verify_concurrent`: `MAX_CONCURRENT_HASHES` verifications at once, as
//!   in a login storm; its throughput is the ceiling on password logins per
//!   second on this machine (token logins skip Argon2id).
//!
//! Run with `cargo bench -p sotto-server --bench auth`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sotto_server::bench_api::{Hasher, MAX_CONCURRENT_HASHES};
use zeroize::Zeroizing;

fn password() -> Zeroizing<String> {
    Zeroizing::new("correct horse battery staple".to_owned())
}

fn argon2id(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let hasher = Hasher::default();
    let stored = rt.block_on(hasher.hash(password())).expect("hashes");

    let mut group = c.benchmark_group("login_argon2id");
    // Each iteration takes tens of milliseconds: fewer samples keep a run
    // short while still giving a stable mean.
    group.sample_size(20);

    group.throughput(Throughput::Elements(1));
    group.bench_function("hash", |b| {
        b.iter(|| rt.block_on(hasher.hash(password())).expect("hashes"))
    });
    group.bench_function("verify", |b| {
        b.iter(|| {
            let ok = rt
                .block_on(hasher.verify(password(), black_box(stored.clone())))
                .expect("verifies");
            assert!(ok);
        })
    });

    group.throughput(Throughput::Elements(MAX_CONCURRENT_HASHES as u64));
    group.bench_function(format!("verify_concurrent/{MAX_CONCURRENT_HASHES}"), |b| {
        b.iter(|| {
            rt.block_on(async {
                let checks = (0..MAX_CONCURRENT_HASHES).map(|_| {
                    let (hasher, stored) = (hasher.clone(), stored.clone());
                    tokio::spawn(async move { hasher.verify(password(), stored).await })
                });
                for check in checks.collect::<Vec<_>>() {
                    assert!(check.await.expect("joins").expect("verifies"));
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, argon2id);
criterion_main!(benches);
