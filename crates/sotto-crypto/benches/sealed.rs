//! Sealed-message (`@secret`) micro-benchmarks at the production cost.
//!
//! `seal` and `open` are dominated by the Argon2id key derivation (19 MiB,
//! 2 iterations, 1 lane), which is deliberately expensive: that cost is what
//! makes a guessed passphrase slow to test. These benchmarks report the time
//! one operation takes at exactly the parameters `seal` uses, so the figure
//! is what a user waits when sending or opening an `@secret` message, and
//! the wrong-key case shows that a failed open costs the same (the AEAD
//! check comes only after the full derivation).
//!
//! Run with `cargo bench -p sotto-crypto --bench sealed`.

// A benchmark's inputs are built here, not received from a peer: failing
// loudly on a bug in the setup is the right behaviour.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sotto_crypto::sealed::{M_COST_KIB, T_COST};
use sotto_crypto::{Passphrase, SealError, open, seal};

/// A short chat message.
const MESSAGE: &[u8] = b"meet at the usual place at noon, bring the keys";

fn sealed(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("sealed_argon2id_m{M_COST_KIB}KiB_t{T_COST}"));
    // Each iteration takes tens of milliseconds: fewer samples keep a run
    // short while still giving a stable mean.
    group.sample_size(20);
    group.throughput(Throughput::Elements(1));

    let key = Passphrase::new("correct horse battery staple").expect("non-empty");
    let wrong = Passphrase::new("correct horse battery stapler").expect("non-empty");

    group.bench_function("seal", |b| b.iter(|| seal(black_box(&key), MESSAGE)));

    let sealed = seal(&key, MESSAGE);
    group.bench_function("open", |b| {
        b.iter(|| open(black_box(&key), black_box(&sealed)).expect("right key opens"))
    });
    group.bench_function("open_wrong_key", |b| {
        b.iter(|| {
            let result = open(black_box(&wrong), black_box(&sealed));
            assert_eq!(result.err(), Some(SealError::WrongKey));
        })
    });
    group.finish();
}

criterion_group!(benches, sealed);
criterion_main!(benches);
