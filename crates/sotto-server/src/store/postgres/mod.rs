//! The shared engine: PostgreSQL (`--database postgres://...`).
//!
//! The core thread's [`PgWriter`] holds the writes of a batch and sends
//! them, in order, as one pipeline: the whole batch and its `COMMIT` cost
//! about one round trip, as SQLite's group commit costs one fsync. A read
//! inside the batch (claiming a one-time key, a new row's id) sends what is
//! held first. `synchronous_commit` stays on: a commit is durable before
//! anything of its batch is acknowledged.
//!
//! Connection tasks read through [`PgReads`], a few connections of their
//! own with prepared statements. A connection that broke (the database
//! restarted) is opened again at its next use.

mod reads;
mod schema;
mod writer;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::Context as _;
use futures_util::task::noop_waker_ref;
use sotto_crypto::opaque::ServerKeys;
use sotto_proto::ServerId;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};

use super::{Opened, Reads};
pub use reads::PgReads;
pub use writer::PgWriter;

/// A parameter of a held statement.
type Param = Box<dyn ToSql + Sync + Send>;

/// One request of a [`pipeline`].
type PgFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, tokio_postgres::Error>> + Send + 'a>>;

/// Opens a connection and drives it on the current runtime.
pub(crate) async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("database connection ended: {e}");
        }
    });
    Ok(client)
}

/// Opens the database: the schema (created or checked), the facts kept
/// with it, the writer and the readers.
pub async fn open(url: &str, clustered: bool) -> anyhow::Result<Opened> {
    let mut client = connect(url).await?;
    let (server_id, opaque, bus_key) = prepare(&mut client).await?;
    take_server_lock(&client, clustered).await?;
    let reads = PgReads::open(url).await?;
    let writer = PgWriter::new(
        client,
        url.to_owned(),
        clustered,
        tokio::runtime::Handle::current(),
    );
    Ok(Opened {
        writer: Box::new(writer),
        reads: Reads::Postgres(reads),
        server_id,
        opaque,
        bus_key: Some(bus_key),
    })
}

/// The certificate and key every server on this database uses: the
/// first server's, kept in `meta` (given `cert` and `key` are this
/// server's own, used if there are none yet).
pub async fn shared_certificate(
    url: &str,
    cert: &str,
    key: &str,
) -> anyhow::Result<(String, String)> {
    let mut client = connect(url).await?;
    prepare(&mut client).await?;
    let tx = client.transaction().await?;
    for (name, value) in [("tls_cert", cert), ("tls_key", key)] {
        tx.execute(
            "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&name, &value.as_bytes()],
        )
        .await?;
    }
    let rows = tx
        .query(
            "SELECT name, value FROM meta WHERE name IN ('tls_cert', 'tls_key') ORDER BY name",
            &[],
        )
        .await?;
    tx.commit().await?;
    let text = |i: usize| -> anyhow::Result<String> {
        let row = rows.get(i).context("the shared certificate is missing")?;
        Ok(String::from_utf8(row.get::<_, Vec<u8>>(1))?)
    };
    Ok((text(0)?, text(1)?))
}

/// Creates or checks the schema, and reads (making them the first time)
/// the server id, the login keys and the bus key: one of each for every
/// node of a cluster.
async fn prepare(client: &mut Client) -> anyhow::Result<(ServerId, ServerKeys, [u8; 32])> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
        &[&schema::SCHEMA_LOCK],
    )
    .await?;
    let version: Option<i64> = match tx
        .query_opt("SELECT to_regclass('meta') IS NOT NULL", &[])
        .await?
        .map(|r| r.get::<_, bool>(0))
    {
        Some(true) => tx
            .query_opt("SELECT value FROM meta WHERE name = 'schema_version'", &[])
            .await?
            .and_then(|r| <[u8; 8]>::try_from(r.get::<_, &[u8]>(0)).ok())
            .map(i64::from_be_bytes),
        _ => None,
    };
    if let Some(version) = version
        && version > schema::SCHEMA_VERSION
    {
        anyhow::bail!(
            "the database has schema version {version}, newer than this server's {}: upgrade \
             the server",
            schema::SCHEMA_VERSION
        );
    }
    // (No notices for the tables that are there already.)
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await?;
    tx.batch_execute(schema::SCHEMA).await?;
    tx.execute(
        "INSERT INTO meta (name, value) VALUES ('schema_version', $1) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        &[&schema::SCHEMA_VERSION.to_be_bytes().as_slice()],
    )
    .await?;
    let id: [u8; 16] = rand::random();
    tx.execute(
        "INSERT INTO meta (name, value) VALUES ('server_id', $1) ON CONFLICT DO NOTHING",
        &[&id.as_slice()],
    )
    .await?;
    let stored = tx
        .query_one("SELECT value FROM meta WHERE name = 'server_id'", &[])
        .await?;
    let server_id = <[u8; 16]>::try_from(stored.get::<_, &[u8]>(0))
        .map(ServerId)
        .map_err(|_| anyhow::anyhow!("the stored server id is not 16 bytes"))?;
    let keys = ServerKeys::generate();
    tx.execute(
        "INSERT INTO meta (name, value) VALUES ('opaque_keys', $1) ON CONFLICT DO NOTHING",
        &[&keys.to_bytes().as_slice()],
    )
    .await?;
    let stored = tx
        .query_one("SELECT value FROM meta WHERE name = 'opaque_keys'", &[])
        .await?;
    let opaque = ServerKeys::from_bytes(stored.get::<_, &[u8]>(0))
        .map_err(|e| anyhow::anyhow!("the stored OPAQUE keys: {e}"))?;
    let key: [u8; 32] = rand::random();
    tx.execute(
        "INSERT INTO meta (name, value) VALUES ('bus_key', $1) ON CONFLICT DO NOTHING",
        &[&key.as_slice()],
    )
    .await?;
    let stored = tx
        .query_one("SELECT value FROM meta WHERE name = 'bus_key'", &[])
        .await?;
    let bus_key = <[u8; 32]>::try_from(stored.get::<_, &[u8]>(0))
        .map_err(|_| anyhow::anyhow!("the stored bus key is not 32 bytes"))?;
    tx.commit().await?;
    Ok((server_id, opaque, bus_key))
}

/// Tries to take the server lock for this many tenths of a second.
const SERVER_LOCK_TRIES: u32 = 50;

/// Takes, for the life of the writer's connection, the lock that says who
/// uses this database: one server alone (exclusive), or the nodes of a
/// cluster (shared). A second server without `--cluster`, or a cluster
/// node beside a server alone, is refused: they would hand out the same
/// positions twice.
pub(super) async fn take_server_lock(client: &Client, clustered: bool) -> anyhow::Result<()> {
    let sql = if clustered {
        "SELECT pg_try_advisory_lock_shared($1, hashtext(current_schema()))"
    } else {
        "SELECT pg_try_advisory_lock($1, hashtext(current_schema()))"
    };
    // A server that just stopped may still be letting go of it.
    for _ in 0..SERVER_LOCK_TRIES {
        let taken: bool = client.query_one(sql, &[&schema::SERVER_LOCK]).await?.get(0);
        if taken {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if clustered {
        anyhow::bail!(
            "a Sotto server that is not part of a cluster uses this database: stop it, or \
             start it with --cluster too"
        )
    }
    anyhow::bail!(
        "another Sotto server uses this database: stop it, or run both as nodes of a cluster \
         (--cluster nats://...)"
    )
}

/// Runs `futures` as one pipeline: each is polled once, in order, so its
/// request is sent before the next one's; then each is awaited in order
/// (PostgreSQL answers in order). The first error is returned.
async fn pipeline<T>(futures: Vec<PgFuture<'_, T>>) -> Result<Vec<T>, tokio_postgres::Error> {
    let mut started = Vec::with_capacity(futures.len());
    {
        let mut cx = Context::from_waker(noop_waker_ref());
        for mut future in futures {
            match future.as_mut().poll(&mut cx) {
                Poll::Ready(result) => started.push(Err(result)),
                Poll::Pending => started.push(Ok(future)),
            }
        }
    }
    let mut results = Vec::with_capacity(started.len());
    let mut first_error = None;
    for entry in started {
        let result = match entry {
            Ok(future) => future.await,
            Err(result) => result,
        };
        match result {
            Ok(value) => results.push(value),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(results),
    }
}

fn seq(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn bytes(value: &[u8]) -> Param {
    Box::new(value.to_vec())
}
