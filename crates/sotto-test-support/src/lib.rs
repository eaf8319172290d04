//! Helpers for Sotto's integration tests: a real server on `127.0.0.1:0`
//! with a temporary data dir, and real clients (real TLS, real login) with
//! their own temporary data dirs.
//!
//! Timeouts here only turn a hang into a failure with a message; no test
//! asserts how fast anything is.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sotto_client::{Client, ClientError, ClientEvent, ConnectOptions, Events, Secret, TrustPolicy};
use sotto_crypto::Fingerprint;
use sotto_proto::{Password, Username};
use sotto_server::Config;
use sotto_server::store::Database;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long to wait for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A server running in this process.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    pub fingerprint: Fingerprint,
    pub config: Config,
    /// Kept so the directory lives as long as the server.
    _dir: Option<TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts a server with default settings.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `adjust` has changed its config.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        init_logs();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::new(dir.path().join("server"));
        if let Some(url) = test_database().await {
            config.database = Database::Postgres(url);
        }
        // Tests register many accounts from one address; the quota has a
        // test of its own.
        config.quotas.registrations_per_hour = 10_000;
        adjust(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut server = Self::launch(listener, config).await;
        server._dir = Some(dir);
        server
    }

    async fn launch(listener: TcpListener, config: Config) -> Self {
        let identity = sotto_server::prepare_identity(&config)
            .await
            .expect("prepare server");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let run_config = config.clone();
        let task = tokio::spawn(async move {
            sotto_server::run(listener, run_config, async {
                let _ = stopped.await;
            })
            .await
        });
        Self {
            addr,
            fingerprint: identity.fingerprint,
            config,
            _dir: None,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The server's database, to look into or change while it is stopped.
    pub fn db(&self) -> TestDb {
        TestDb {
            database: self.config.database.clone(),
            path: sotto_server::store::db_path(&self.config.data_dir),
        }
    }

    /// Shuts the server down gracefully and waits for it.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("server stops in time")
                .expect("server task")
                .expect("server exits cleanly");
        }
    }

    /// Makes the core thread panic at its next batch (the next request or
    /// tick that reaches it).
    pub fn crash_core(&self) {
        self.config
            .crash_core
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Waits for `run` to end on its own: its result.
    pub async fn ended(&mut self) -> anyhow::Result<()> {
        let task = self.task.take().expect("the server is running");
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("the server ends in time")
            .expect("server task")
    }

    /// Stops the server and starts it again on the same address and data dir.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = bind_again(self.addr).await;
        let dir = self._dir.take();
        *self = Self::launch(listener, self.config.clone()).await;
        self._dir = dir;
    }

    /// Stops the server and starts it again on the same data dir but
    /// another port.
    pub async fn restart_elsewhere(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let dir = self._dir.take();
        *self = Self::launch(listener, self.config.clone()).await;
        self._dir = dir;
    }

    /// Connects a new client (a new device) as `name` with password `pw-NAME`.
    pub async fn client(&self, name: &str) -> TestClient {
        TestClient::connect(self, name)
            .await
            .expect("client connects")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// With `SOTTO_TEST_LOG` set (a filter such as `sotto_server=debug`), the
/// servers' logs go to the test's output.
fn init_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("SOTTO_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// Binds `addr` again, retrying while the old socket lingers.
async fn bind_again(addr: SocketAddr) -> TcpListener {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(e) if tokio::time::Instant::now() > deadline => panic!("cannot rebind {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A client's local store database in its data dir.
pub fn store_db(data_dir: &Path) -> PathBuf {
    std::fs::read_dir(data_dir.join("stores"))
        .expect("a stores dir")
        .map(|e| e.expect("a dir entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "db"))
        .expect("a store database")
}

/// The Megolm sessions a client's device holds room keys for, read from its
/// local store with its password (after the client quit).
pub fn room_sessions(data_dir: &Path, password: &str) -> std::collections::BTreeSet<String> {
    let (_, loaded) = sotto_client::local_store::LocalStore::open(&store_db(data_dir), password)
        .expect("the store opens");
    loaded
        .records
        .iter()
        .filter(|(key, _)| key.kind == "inbound")
        // The id: room (8 bytes), sender's key (32), session id.
        .map(|(key, _)| String::from_utf8_lossy(&key.id[40..]).into_owned())
        .collect()
}

/// Options for connecting a test client.
pub fn options(server: SocketAddr, name: &str, password: &str, data_dir: &Path) -> ConnectOptions {
    ConnectOptions {
        server: server.to_string(),
        user: Username::parse(name).expect("valid name"),
        secret: Secret::Password(Password::new(password.to_owned()).expect("valid password")),
        server_password: None,
        data_dir: data_dir.to_owned(),
        trust: TrustPolicy::TrustNew,
        register_only: false,
        sign_in_only: false,
    }
}

/// A connected client with its own data dir.
#[derive(Debug)]
pub struct TestClient {
    pub name: String,
    pub client: Client,
    pub events: Events,
    /// The client's data dir (its device id, known servers, downloads).
    pub dir: TempDir,
}

impl TestClient {
    /// Connects as `name` (password `pw-NAME`) with a fresh data dir.
    pub async fn connect(server: &TestServer, name: &str) -> Result<Self, ClientError> {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::connect_in(server.addr, name, dir).await
    }

    /// Connects as `name` using an existing data dir (same device).
    pub async fn connect_in(
        addr: SocketAddr,
        name: &str,
        dir: TempDir,
    ) -> Result<Self, ClientError> {
        let opts = options(addr, name, &format!("pw-{name}"), dir.path());
        let (client, events) = sotto_client::connect(opts).await?;
        Ok(Self {
            name: name.to_owned(),
            client,
            events,
            dir,
        })
    }

    /// Disconnects and connects again as the same device.
    pub async fn reconnect(self, addr: SocketAddr) -> Self {
        let _ = self.client.quit().await;
        let name = self.name.clone();
        drop(self.events);
        Self::connect_in(addr, &name, self.dir)
            .await
            .expect("reconnect")
    }

    /// Waits for the first event `matches` accepts, skipping others.
    pub async fn expect<T>(
        &mut self,
        what: &str,
        mut matches: impl FnMut(&ClientEvent) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.next())
                .await
                .unwrap_or_else(|_| panic!("{}: timed out waiting for {what}", self.name))
                .unwrap_or_else(|| {
                    panic!("{}: event stream ended while waiting for {what}", self.name)
                });
            if let Some(found) = matches(&event) {
                return found;
            }
        }
    }

    /// Waits for the invitation to `group` and accepts it.
    pub async fn accept_invitation(&mut self, group: &str) -> sotto_proto::GroupInfo {
        self.expect(&format!("an invitation to {group}"), |e| match e {
            ClientEvent::Invited { group: g, .. } if g.as_str() == group => Some(()),
            _ => None,
        })
        .await;
        self.client
            .group_accept(sotto_proto::GroupName::parse(group).expect("valid group name"))
            .await
            .expect("joined")
    }

    /// Waits for a security notice containing `text`; returns all of it.
    pub async fn expect_notice(&mut self, text: &str) -> String {
        self.expect(&format!("a notice with {text:?}"), |e| match e {
            ClientEvent::Security { message } if message.contains(text) => Some(message.clone()),
            _ => None,
        })
        .await
    }

    /// Compares the safety number with `user` (as if out of band) and
    /// confirms it.
    pub async fn verify(&self, user: &str) {
        let user = Username::parse(user).expect("valid name");
        let number = self.client.safety_number(&user).await.expect("a number");
        self.client
            .confirm_verified(&user, &number.safety_number)
            .await
            .expect("verified");
    }

    /// Waits for a private message and returns (from, text).
    pub async fn expect_private(&mut self) -> (String, String) {
        self.expect("a private message", |e| match e {
            ClientEvent::Private { from, text, .. } => Some((from.to_string(), text.clone())),
            _ => None,
        })
        .await
    }

    /// Waits for a group message and returns (group, from, text).
    pub async fn expect_group(&mut self) -> (String, String, String) {
        self.expect("a group message", |e| match e {
            ClientEvent::Group {
                group, from, text, ..
            } => Some((group.to_string(), from.to_string(), text.clone())),
            _ => None,
        })
        .await
    }

    /// Waits for a lobby message and returns (from, text).
    pub async fn expect_lobby(&mut self) -> (String, String) {
        self.expect("a lobby message", |e| match e {
            ClientEvent::Lobby { from, text, .. } => Some((from.to_string(), text.clone())),
            _ => None,
        })
        .await
    }

    /// Collects every event that arrives within `window` (for checking that
    /// something did *not* arrive, after a later marker event proved order).
    pub async fn drain_for(&mut self, window: Duration) -> Vec<ClientEvent> {
        let mut out = Vec::new();
        while let Ok(Some(event)) = tokio::time::timeout(window, self.events.next()).await {
            out.push(event);
        }
        out
    }
}

/// A client that has logged out but keeps its data dir (its device).
#[derive(Debug)]
pub struct OfflineClient {
    pub name: String,
    pub dir: TempDir,
}

impl OfflineClient {
    /// Logs in again as the same device.
    pub async fn connect(self, addr: SocketAddr) -> TestClient {
        TestClient::connect_in(addr, &self.name, self.dir)
            .await
            .expect("reconnect")
    }
}

impl TestClient {
    /// Logs out, keeping the device for a later [`OfflineClient::connect`].
    pub async fn reconnect_later(self) -> OfflineClient {
        let _ = self.client.quit().await;
        OfflineClient {
            name: self.name,
            dir: self.dir,
        }
    }
}

mod cluster;
mod db;
mod services;

pub use cluster::{TEST_NATS_ENV, TEST_POSTGRES_ENV, TestCluster};
pub use db::{TEST_DATABASE_ENV, TestDb, test_database, test_database_for};
pub use services::{PrivateNats, PrivatePostgres};
