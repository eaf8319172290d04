//! Storage group commit: messages per second made durable.
//!
//! The core appends every timeline event inside one transaction per batch
//! and acknowledges nothing until that transaction has committed, with
//! SQLite in WAL mode and `synchronous = FULL` (an fsync per commit). This
//! measures what that costs on this machine's disk: batches of 1, 16 and
//! 256 events of 200 bytes, each batch one `BEGIN IMMEDIATE … COMMIT`, into
//! the real schema opened by `sotto_server::store::open_writer`. The insert
//! is the core's own statement (`core/mod.rs`, `Core::append`), copied here
//! because the core is private. Throughput is events committed per second.
//!
//! The database lives under cargo's target tmp dir, on the same disk as the
//! build, never on tmpfs (where fsync costs nothing).
//!
//! Run with `cargo bench -p sotto-server --bench group_commit`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rusqlite::params;
use sotto_server::store::{self, LOBBY_ROOM};

/// Bytes of each stored event body, about a short chat message.
const EVENT_LEN: usize = 200;

fn group_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temp dir");
    let db = store::open_writer(&store::db_path(dir.path())).expect("opens the database");
    let body = vec![0xa5u8; EVENT_LEN];
    let mut seq: i64 = 0;

    let mut group = c.benchmark_group("group_commit_200B");
    group.sample_size(20);
    for batch in [1u64, 16, 256] {
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.iter(|| {
                db.execute_batch("BEGIN IMMEDIATE").expect("begins");
                {
                    let mut insert = db
                        .prepare_cached(
                            "INSERT INTO events (room_id, seq, ts, body) VALUES (?1, ?2, ?3, ?4)",
                        )
                        .expect("prepares");
                    for _ in 0..batch {
                        seq += 1;
                        insert
                            .execute(params![LOBBY_ROOM as i64, seq, 1_700_000_000_000i64, body])
                            .expect("inserts");
                    }
                }
                db.execute_batch("COMMIT").expect("commits");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, group_commit);
criterion_main!(benches);
