//! The Sotto server library.
//!
//! The server is a router of opaque envelopes plus a directory (users,
//! devices, groups, presence) and a durable store. [`run`] serves a bound
//! listener until the `shutdown` future completes; the `sotto` binary adds
//! flags, signals and logging around it.
//!
//! Shape: an accept loop (bounded by a semaphore) spawns one task per
//! connection (`conn.rs`), which reads frames and forwards operations to the
//! core thread (`core/`), the only writer of state and storage. The core
//! commits in batches and fans committed events out to the connections'
//! queues (bounded in bytes, `queue.rs`); each connection's writer task
//! drains its queue.

// Anything a peer sends is untrusted: no panics outside tests.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod auth;
/// For the benchmarks in `benches/` only; not part of the API.
#[doc(hidden)]
pub mod bench_api;
mod bus;
mod conn;
mod core;
mod limiter;
/// The login limits (see `limiter.rs` and docs/SECURITY.md).
pub mod limits {
    pub use crate::limiter::{
        FIRST_DELAY, FORGET_AFTER, FREE_ACCOUNT_FAILURES, FREE_ADDRESS_FAILURES,
        FREE_SERVER_PASSWORD_FAILURES, MAX_DELAY,
    };
}
mod login;
mod queue;
pub mod store;
pub mod tls;
mod writer;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::Context;
use sotto_proto::Password;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use sotto_crypto::Fingerprint;
pub use tls::{Identity, TlsFiles};

/// Whether unknown usernames are registered on first login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Registration {
    /// A new username registers on first login.
    #[default]
    Open,
    /// Only existing accounts may log in.
    Closed,
}

/// Bounds on what one user can make the server (and other users' devices)
/// store. Going past one is refused with `quota_exceeded`, naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    /// Devices one account may have (`--max-devices`): each is a key
    /// bundle in the directory and one more Olm message per message sent
    /// to the account.
    pub devices_per_account: usize,
    /// Groups one user may belong to, owner or member (`--max-groups`).
    pub groups_per_user: usize,
    /// Bytes of to-device payloads in one request.
    pub to_device_request_bytes: usize,
    /// Bytes waiting, not yet acknowledged, in one device's to-device
    /// queue (`--max-inbox-bytes`).
    pub inbox_bytes: u64,
    /// New accounts per address (an IPv6 /64) per hour
    /// (`--max-registrations-per-hour`).
    pub registrations_per_hour: u32,
    /// Bytes of events one user has sent that the server still stores, in
    /// every room and to-device queue (`--max-stored-bytes-per-user`).
    pub stored_bytes_per_user: u64,
    /// Bytes of events one room (the lobby, a private room, a group) holds
    /// (`--max-stored-bytes-per-room`).
    pub stored_bytes_per_room: u64,
    /// Bytes of notices (invitations, removals, deletions) waiting for one
    /// user's devices: an invitation that would go over is refused. Notices
    /// are deleted once every device of the user has them.
    pub notices_bytes: u64,
}

/// How long events of one kind of room are kept: older than `days`, or
/// beyond the newest `messages`, they are deleted (0: no such limit). A
/// room's newest event is always kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Keep {
    pub days: u32,
    pub messages: u64,
}

/// The retention policy: the lobby, and private and group rooms. (Devices'
/// to-device queues are emptied as they are read, and bounded by
/// [`Quotas::inbox_bytes`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// How often the policy is applied (and once at start); default a
    /// second. Each pass deletes at most 20,000 events per room, so a
    /// large backlog is worked off over several passes without stalling
    /// the core.
    pub interval: std::time::Duration,
    /// Default: the newest 10,000 messages (`--lobby-keep-messages`,
    /// `--lobby-keep-days`).
    pub lobby: Keep,
    /// Default: everything (`--room-keep-messages`, `--room-keep-days`),
    /// within [`Quotas::stored_bytes_per_room`].
    pub rooms: Keep,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            interval: std::time::Duration::from_secs(1),
            lobby: Keep {
                days: 0,
                messages: 10_000,
            },
            rooms: Keep::default(),
        }
    }
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            devices_per_account: 10,
            groups_per_user: 100,
            to_device_request_bytes: 1024 * 1024,
            inbox_bytes: 16 * 1024 * 1024,
            registrations_per_hour: 10,
            stored_bytes_per_user: 1 << 30,
            stored_bytes_per_room: 1 << 30,
            notices_bytes: 1 << 20,
        }
    }
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Certificate and key live here, and the SQLite database.
    pub data_dir: PathBuf,
    /// Where state is stored: SQLite in the data dir (the default) or
    /// PostgreSQL (`--database postgres://...`).
    pub database: store::Database,
    /// The NATS server of this node's cluster (`--cluster nats://...`):
    /// several nodes on one PostgreSQL database serve the same users.
    pub cluster: Option<String>,
    /// If set, clients must present it before logging in.
    pub server_password: Option<Password>,
    pub registration: Registration,
    /// Operator-provided certificate and key; `None` generates a
    /// self-signed pair in the data dir on first start.
    pub tls: Option<TlsFiles>,
    /// Most simultaneous connections; further clients wait to be accepted.
    pub max_connections: usize,
    /// Bytes queued for one connection and not yet written before it
    /// counts as a slow consumer and is disconnected (it catches up from the
    /// store when it returns). One entry of any size (a file) always fits
    /// into an empty queue.
    pub outbound_buffer: usize,
    /// Sustained requests per second allowed per connection.
    pub requests_per_second: u32,
    /// Requests a connection may send in a burst above the sustained rate.
    pub request_burst: u32,
    /// Above this many users online, joins, leaves and status changes are
    /// no longer broadcast to everyone (each would cost one delivery per
    /// connection); `Names` still lists who is online.
    pub presence_limit: usize,
    /// What one user can make the server and others store.
    pub quotas: Quotas,
    /// How long lobby and room events are kept.
    pub retention: Retention,
    /// Tests only: set it to make the core thread panic at its next batch.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub crash_core: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Config {
    /// Defaults for a data dir.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            database: store::Database::Sqlite,
            cluster: None,
            server_password: None,
            registration: Registration::Open,
            tls: None,
            max_connections: 16_384,
            outbound_buffer: 8 * 1024 * 1024,
            requests_per_second: 1000,
            request_burst: 2000,
            presence_limit: 1000,
            quotas: Quotas::default(),
            retention: Retention::default(),
            #[cfg(feature = "fault-injection")]
            crash_core: Default::default(),
        }
    }

    fn tls_files(&self) -> TlsFiles {
        self.tls
            .clone()
            .unwrap_or_else(|| TlsFiles::in_data_dir(&self.data_dir))
    }
}

/// Creates the data dir and, unless the operator gave a certificate, a
/// self-signed one; loads the TLS identity. Idempotent: [`run`] calls it
/// too, and the binary calls it first to print the fingerprint.
pub fn prepare(config: &Config) -> anyhow::Result<Identity> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700));
    }
    let files = config.tls_files();
    if config.tls.is_none() && tls::ensure_self_signed(&files)? {
        tracing::info!(
            "generated a self-signed certificate in {}",
            config.data_dir.display()
        );
    }
    tls::load(&files)
}

/// [`prepare`], and on PostgreSQL without an operator certificate, the
/// certificate every server on that database shares (the first one's), so
/// a client that trusts one node of a cluster trusts them all.
pub async fn prepare_identity(config: &Config) -> anyhow::Result<Identity> {
    let identity = prepare(config)?;
    let (store::Database::Postgres(url), None) = (&config.database, &config.tls) else {
        return Ok(identity);
    };
    let files = config.tls_files();
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    };
    let (cert, key) =
        store::postgres::shared_certificate(url, &read(&files.cert)?, &read(&files.key)?)
            .await
            .context("sharing the certificate through the database")?;
    tls::adopt(&files, &cert, &key)?;
    tls::load(&files)
}

/// Serves `listener` until `shutdown` completes, then shuts down
/// gracefully: stops accepting, tells every client, finishes in-flight
/// commits, closes connections, and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    if config.cluster.is_some() && config.database == store::Database::Sqlite {
        anyhow::bail!(
            "a cluster keeps its state in PostgreSQL: give --database postgres://... with --cluster"
        );
    }
    let identity = prepare_identity(&config).await?;
    let _lock = store::lock_data_dir(&config.data_dir)?;
    let store::Opened {
        writer,
        reads,
        server_id,
        opaque,
        bus_key,
    } = store::open(&config.database, &config.data_dir, config.cluster.is_some())
        .await
        .with_context(|| format!("opening {}", config.database.describe(&config.data_dir)))?;
    // Loaded on a blocking thread: an engine may block on the runtime.
    let (presence_limit, quotas, retention) = (
        config.presence_limit,
        config.quotas.clone(),
        config.retention,
    );
    // In a cluster: this node's id, and the queue of what it publishes.
    let node: u64 = rand::random();
    let (outbox_tx, outbox_rx) = mpsc::channel(65_536);
    let limiter = limiter::LoginLimiter::default();
    if config.cluster.is_some() {
        limiter.join_bus(node, outbox_tx.clone());
    }
    let clustered = config.cluster.is_some().then_some((node, outbox_tx));
    #[allow(unused_mut)]
    let mut core = tokio::task::spawn_blocking(move || {
        core::Core::new(writer, presence_limit, quotas, retention, clustered)
    })
    .await?
    .context("loading state")?;
    #[cfg(feature = "fault-injection")]
    {
        core.crash = config.crash_core.clone();
    }
    let (core_tx, core_rx) = mpsc::channel(65_536);
    // The core is the only writer: if it stops before the shutdown, the
    // server stops too, at once, rather than serving half alive.
    let (core_ended_tx, mut core_ended) = oneshot::channel::<String>();
    let core_thread = std::thread::Builder::new()
        .name("sotto-core".into())
        .spawn(move || {
            let ended =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| core.run(core_rx)));
            let why = match ended {
                Ok(()) => "it stopped".to_owned(),
                Err(panic) => panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "it panicked".to_owned()),
            };
            let _ = core_ended_tx.send(why);
        })
        .context("starting the core thread")?;

    let bus_stop = CancellationToken::new();
    let bus = match &config.cluster {
        Some(url) => {
            tracing::info!(
                node = format!("{node:016x}"),
                "joining the cluster on {url}"
            );
            Some(
                bus::connect(
                    url,
                    &server_id,
                    bus_key.context("a cluster needs PostgreSQL")?,
                    node,
                    core_tx.clone(),
                    outbox_rx,
                    limiter.clone(),
                    bus_stop.clone(),
                )
                .await?,
            )
        }
        None => None,
    };

    let ticker = tokio::spawn({
        let core = core_tx.clone();
        async move {
            let mut interval = tokio::time::interval(core::CURSOR_FLUSH_INTERVAL);
            loop {
                interval.tick().await;
                if core.send(core::Op::Tick).await.is_err() {
                    break;
                }
            }
        }
    });
    let shared = Arc::new(conn::Shared {
        core: core_tx.clone(),
        store: reads,
        hasher: auth::Hasher::default(),
        limiter,
        opaque,
        config: config.clone(),
        server_id,
        next_conn: AtomicU64::new(1),
    });
    let acceptor = TlsAcceptor::from(identity.config);
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();

    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(1);
    // The core gone, nothing more can be stored: every connection is cut
    // (clients reconnect elsewhere or later) and `run` fails at once.
    let died = |why| {
        stop.cancel();
        bus_stop.cancel();
        ticker.abort();
        core_died(why)
    };
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            why = &mut core_ended => return Err(died(why)),
            permit = limit.clone().acquire_owned() => permit?,
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            why = &mut core_ended => return Err(died(why)),
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(1);
                let (shared, acceptor, stop) = (shared.clone(), acceptor.clone(), stop.clone());
                tracker.spawn(async move {
                    conn::serve(stream, peer, acceptor, shared, stop).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, then retry.
                tracing::warn!("accept failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }

    tracing::info!("shutting down");
    drop(listener);
    // The core first commits everything queued before this point, tells
    // every client, and queues `Close` behind the goodbye; only then do the
    // readers stop (and detach).
    let (done_tx, done_rx) = oneshot::channel();
    if core_tx
        .send(core::Op::Shutdown { reply: done_tx })
        .await
        .is_ok()
    {
        let _ = done_rx.await;
    }
    stop.cancel();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
    ticker.abort();
    let _ = ticker.await;
    // The bus says goodbye (the other nodes take this node's users
    // offline) and lets go of the core.
    bus_stop.cancel();
    if let Some(bus) = bus {
        let _ = bus.await;
    }
    drop(shared);
    drop(core_tx);
    tokio::task::spawn_blocking(move || core_thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the core thread panicked"))?;
    tracing::info!("stopped");
    Ok(())
}

/// The error `run` returns when the core thread stopped under it.
fn core_died(why: Result<String, oneshot::error::RecvError>) -> anyhow::Error {
    let why = why.unwrap_or_else(|_| "it vanished".to_owned());
    tracing::error!("the core thread stopped ({why}): the server stops");
    anyhow::anyhow!("the core thread stopped ({why}); nothing acknowledged was lost")
}
