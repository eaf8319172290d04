//! Envelope routing: the core applying and fanning out group messages.
//!
//! A group message is decoded by the sender's connection, then the core
//! thread checks membership, builds and encodes the event once, appends it
//! to the open transaction, commits, replies to the sender and `try_send`s
//! the shared event into the outgoing queue of every member connection.
//! This drives the real core (`sotto_server::bench_api::Router`) with a
//! sender and N other in-process member connections (N = 10 and 1000; the
//! sending connection gets no copy) whose queues are read by the benchmark
//! thread in place of writer tasks. Not included: TLS,
//! sockets, request decoding and per-connection framing (see the
//! `sotto-proto` codec benchmark for `write_event`).
//!
//! Each iteration sends a burst of 1 or 64 messages of 1 KiB and waits until
//! every recipient has received all of them; throughput is deliveries
//! (messages × N). The core commits each batch it picks up, so the
//! figure includes at least one commit per iteration. `routing` keeps the
//! database on tmpfs (`/dev/shm`, where fsync is free) to isolate the CPU
//! cost of routing; `routing_durable` keeps it on disk to show the same
//! work with a real fsync (the `group_commit` benchmark measures storage
//! alone).
//!
//! Run with `cargo bench -p sotto-server --bench routing`.

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sotto_server::bench_api::Router;

/// Payload bytes per message.
const PAYLOAD: usize = 1024;
/// Largest burst of messages per iteration.
const MAX_BURST: usize = 64;

fn tmpfs() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("a temp dir on tmpfs")
    } else {
        tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temp dir")
    }
}

fn bench_router(c: &mut Criterion, name: &str, dir: &Path, recipients: usize, bursts: &[usize]) {
    // Bytes for the setup's presence events plus one burst of messages
    // (the router credits back what it drains, as a writer would).
    let queue = 256 * (recipients + 64) + 2 * MAX_BURST * (PAYLOAD + 512);
    let mut router = Router::start(dir, recipients, queue).expect("starts the core");
    let mut group = c.benchmark_group(format!("{name}/recipients_{recipients}"));
    group.sample_size(20);
    for &burst in bursts {
        group.throughput(Throughput::Elements((burst * router.recipients()) as u64));
        group.bench_function(format!("burst_{burst}"), |b| {
            b.iter(|| router.send_group(burst, PAYLOAD).expect("routes"))
        });
    }
    group.finish();
}

fn routing(c: &mut Criterion) {
    for recipients in [10, 1000] {
        let dir = tmpfs();
        bench_router(c, "routing", dir.path(), recipients, &[1, MAX_BURST]);
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temp dir");
    bench_router(c, "routing_durable", dir.path(), 1000, &[1, MAX_BURST]);
}

criterion_group!(benches, routing);
criterion_main!(benches);
