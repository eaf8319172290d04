//! Storage group commit: messages per second made durable.
//!
//! The core appends every timeline event inside one transaction per batch
//! and acknowledges nothing until that transaction has committed. This
//! measures what that costs: batches of 1, 16 and 256 events of 200 bytes,
//! each batch one transaction through the store's own `Writer` (the calls
//! the core makes, `Writer::insert_event` between `begin` and `commit`).
//! Throughput is events committed per second.
//!
//! - SQLite (always): WAL mode and `synchronous = FULL` (an fsync per
//!   commit). The database lives under cargo's target tmp dir, on the same
//!   disk as the build, never on tmpfs (where fsync costs nothing).
//! - PostgreSQL (when `SOTTO_BENCH_POSTGRES` holds a connection string):
//!   a new schema on that server; a batch is one pipeline and one commit.
//!
//! Run with `cargo bench -p sotto-server --bench group_commit`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sotto_server::store::{self, Database, LOBBY_ROOM, NewEvent, Writer};

/// Bytes of each stored event body, about a short chat message.
const EVENT_LEN: usize = 200;

fn measure(c: &mut Criterion, name: &str, db: &mut dyn Writer) {
    let body = vec![0xa5u8; EVENT_LEN];
    let mut seq = 0u64;
    let mut group = c.benchmark_group(name);
    group.sample_size(20);
    for batch in [1u64, 16, 256] {
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.iter(|| {
                db.begin().expect("begins");
                for _ in 0..batch {
                    seq += 1;
                    db.insert_event(NewEvent {
                        room_id: LOBBY_ROOM,
                        seq,
                        ts: 1_700_000_000_000,
                        body: &body,
                        sender: 1,
                    })
                    .expect("inserts");
                }
                db.commit().expect("commits");
            })
        });
    }
    group.finish();
}

fn group_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temp dir");
    let mut sqlite =
        store::sqlite::SqliteWriter::open(&store::db_path(dir.path())).expect("opens the database");
    measure(c, "group_commit_200B", &mut sqlite);

    if let Ok(base) = std::env::var("SOTTO_BENCH_POSTGRES") {
        let schema = format!("bench{:08x}", std::process::id());
        let url = format!("{base} options='-csearch_path={schema}'");
        let rt = tokio::runtime::Runtime::new().expect("a runtime");
        let mut opened = rt
            .block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(&base, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("CREATE SCHEMA {schema}"))
                    .await?;
                store::open(&Database::Postgres(url), dir.path(), false).await
            })
            .expect("opens the PostgreSQL database");
        measure(c, "group_commit_200B_postgres", opened.writer.as_mut());
    }
}

criterion_group!(benches, group_commit);
criterion_main!(benches);
