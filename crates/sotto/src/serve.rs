//! `sotto serve`: flags, config file and environment, signals, and the
//! `q` + Enter shutdown from standard input, around `sotto_server::run`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde::Deserialize;
use sotto_proto::Password;
use sotto_server::store::Database;
use sotto_server::{Config, Registration, TlsFiles};
use tokio::io::AsyncBufReadExt;

/// Flags of `sotto serve`. Each can also be set with a `SOTTO_*`
/// environment variable or in the TOML file given by `--config`; flags and
/// environment win over the file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file with any of: listen, data_dir, database, cluster,
    /// server_password_file,
    /// registration, cert, key, max_connections, requests_per_second,
    /// request_burst, outbound_buffer, presence_limit, max_devices,
    /// max_groups, max_inbox_bytes, max_registrations_per_hour,
    /// max_stored_bytes_per_user, max_stored_bytes_per_room,
    /// lobby_keep_messages, lobby_keep_days, room_keep_messages,
    /// room_keep_days, debug.
    #[arg(long, env = "SOTTO_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7443].
    #[arg(long, env = "SOTTO_LISTEN")]
    listen: Option<SocketAddr>,
    /// Where the database, certificate and key live [default: the platform
    /// data dir, e.g. ~/.local/share/sotto].
    #[arg(long, env = "SOTTO_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Where state is kept: `sqlite` (a file in the data dir, nothing to
    /// set up) or a PostgreSQL connection string such as
    /// postgres://sotto@localhost/sotto, shared by the nodes of a cluster
    /// [default: sqlite].
    #[arg(long, env = "SOTTO_DATABASE", value_parser = parse_database)]
    database: Option<Database>,
    /// Run as one node of a cluster: the NATS server the nodes talk
    /// through (nats://host:4222). Every node gives the same --database
    /// (PostgreSQL) and its own --data-dir.
    #[arg(long, env = "SOTTO_CLUSTER")]
    cluster: Option<String>,
    /// File holding a server password that clients must present.
    #[arg(long, env = "SOTTO_SERVER_PASSWORD_FILE")]
    server_password_file: Option<PathBuf>,
    /// Whether unknown usernames register on first login [default: open].
    #[arg(long, env = "SOTTO_REGISTRATION", value_enum)]
    registration: Option<RegistrationArg>,
    /// PEM certificate chain to use instead of the generated one (with --key).
    #[arg(long, env = "SOTTO_CERT", requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key for --cert.
    #[arg(long, env = "SOTTO_KEY", requires = "cert")]
    key: Option<PathBuf>,
    /// Most simultaneous connections [default: the open-file limit less 128].
    #[arg(long, env = "SOTTO_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Sustained requests per second allowed per connection [default: 1000].
    #[arg(long, env = "SOTTO_REQUESTS_PER_SECOND")]
    requests_per_second: Option<u32>,
    /// Requests a connection may burst above the sustained rate [default: 2000].
    #[arg(long, env = "SOTTO_REQUEST_BURST")]
    request_burst: Option<u32>,
    /// Bytes queued for one connection and not yet written before it
    /// counts as a slow consumer and is disconnected; its messages stay
    /// stored [default: 8388608, 8 MiB].
    #[arg(long, env = "SOTTO_OUTBOUND_BUFFER")]
    outbound_buffer: Option<usize>,
    /// Above this many users online, joins, leaves and status changes are
    /// not broadcast to everyone [default: 1000].
    #[arg(long, env = "SOTTO_PRESENCE_LIMIT")]
    presence_limit: Option<usize>,
    /// Devices one account may have [default: 10].
    #[arg(long, env = "SOTTO_MAX_DEVICES")]
    max_devices: Option<usize>,
    /// Groups one user may belong to [default: 100].
    #[arg(long, env = "SOTTO_MAX_GROUPS")]
    max_groups: Option<usize>,
    /// Bytes of to-device messages (room keys) waiting for one device
    /// [default: 16777216, 16 MiB].
    #[arg(long, env = "SOTTO_MAX_INBOX_BYTES")]
    max_inbox_bytes: Option<u64>,
    /// New accounts per client address (IPv6: per /64) per hour [default: 10].
    #[arg(long, env = "SOTTO_MAX_REGISTRATIONS_PER_HOUR")]
    max_registrations_per_hour: Option<u32>,
    /// Bytes of messages and files one user has sent that the server keeps
    /// [default: 1073741824, 1 GiB].
    #[arg(long, env = "SOTTO_MAX_STORED_BYTES_PER_USER")]
    max_stored_bytes_per_user: Option<u64>,
    /// Bytes one conversation (the lobby, a private room, a group) keeps
    /// [default: 1073741824, 1 GiB].
    #[arg(long, env = "SOTTO_MAX_STORED_BYTES_PER_ROOM")]
    max_stored_bytes_per_room: Option<u64>,
    /// Lobby messages kept, newest first; 0 keeps all [default: 10000].
    #[arg(long, env = "SOTTO_LOBBY_KEEP_MESSAGES")]
    lobby_keep_messages: Option<u64>,
    /// Days lobby messages are kept; 0 keeps them [default: 0].
    #[arg(long, env = "SOTTO_LOBBY_KEEP_DAYS")]
    lobby_keep_days: Option<u32>,
    /// Messages kept per private room and group; 0 keeps all [default: 0].
    #[arg(long, env = "SOTTO_ROOM_KEEP_MESSAGES")]
    room_keep_messages: Option<u64>,
    /// Days private and group messages are kept; 0 keeps them [default: 0].
    #[arg(long, env = "SOTTO_ROOM_KEEP_DAYS")]
    room_keep_days: Option<u32>,
    /// Verbose logs (never message contents or passwords).
    #[arg(long, env = "SOTTO_DEBUG")]
    debug: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RegistrationArg {
    Open,
    Closed,
}

/// The config file's contents.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database: Option<String>,
    cluster: Option<String>,
    server_password_file: Option<PathBuf>,
    registration: Option<RegistrationArg>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    max_connections: Option<usize>,
    requests_per_second: Option<u32>,
    request_burst: Option<u32>,
    outbound_buffer: Option<usize>,
    presence_limit: Option<usize>,
    max_devices: Option<usize>,
    max_groups: Option<usize>,
    max_inbox_bytes: Option<u64>,
    max_registrations_per_hour: Option<u32>,
    max_stored_bytes_per_user: Option<u64>,
    max_stored_bytes_per_room: Option<u64>,
    lobby_keep_messages: Option<u64>,
    lobby_keep_days: Option<u32>,
    room_keep_messages: Option<u64>,
    room_keep_days: Option<u32>,
    debug: Option<bool>,
}

fn parse_database(value: &str) -> Result<Database, String> {
    Database::parse(value)
}

/// Reads a one-line secret from a file (trailing newline removed).
pub fn read_secret_file(path: &Path) -> anyhow::Result<Password> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let line = text.lines().next().unwrap_or_default().to_owned();
    Password::new(line).with_context(|| format!("in {}", path.display()))
}

/// The platform data dir for `sub`, e.g. `~/.local/share/sotto`.
pub fn default_data_dir(sub: &str) -> anyhow::Result<PathBuf> {
    dirs::data_dir()
        .map(|d| d.join(sub))
        .context("no platform data directory; pass --data-dir")
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let debug = args.debug || file.debug.unwrap_or(false);
    crate::init_logging(debug, "info");

    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7443)));
    let data_dir = match args.data_dir.or(file.data_dir) {
        Some(dir) => dir,
        None => default_data_dir("sotto")?,
    };
    let mut config = Config::new(data_dir);
    config.database = match (args.database.clone(), file.database.as_deref()) {
        (Some(database), _) => database,
        (None, Some(value)) => Database::parse(value)
            .map_err(|e| anyhow::anyhow!("database in the config file: {e}"))?,
        (None, None) => Database::Sqlite,
    };
    config.cluster = args.cluster.clone().or(file.cluster.clone());
    if let Some(path) = args.server_password_file.or(file.server_password_file) {
        config.server_password = Some(read_secret_file(&path)?);
    }
    config.registration = match args.registration.or(file.registration) {
        Some(RegistrationArg::Closed) => Registration::Closed,
        _ => Registration::Open,
    };
    match (args.cert.or(file.cert), args.key.or(file.key)) {
        (Some(cert), Some(key)) => config.tls = Some(TlsFiles { cert, key }),
        (None, None) => {}
        _ => bail!("--cert and --key go together"),
    }
    if let Some(max) = args.max_connections.or(file.max_connections) {
        config.max_connections = max;
    }
    if let Some(rate) = args.requests_per_second.or(file.requests_per_second) {
        config.requests_per_second = rate;
    }
    if let Some(burst) = args.request_burst.or(file.request_burst) {
        config.request_burst = burst;
    }
    if let Some(bytes) = args.outbound_buffer.or(file.outbound_buffer) {
        config.outbound_buffer = bytes.max(1);
    }
    if let Some(limit) = args.presence_limit.or(file.presence_limit) {
        config.presence_limit = limit;
    }
    let quotas = &mut config.quotas;
    if let Some(n) = args.max_devices.or(file.max_devices) {
        quotas.devices_per_account = n.max(1);
    }
    if let Some(n) = args.max_groups.or(file.max_groups) {
        quotas.groups_per_user = n;
    }
    if let Some(n) = args.max_inbox_bytes.or(file.max_inbox_bytes) {
        quotas.inbox_bytes = n;
    }
    if let Some(n) = args
        .max_registrations_per_hour
        .or(file.max_registrations_per_hour)
    {
        quotas.registrations_per_hour = n;
    }
    if let Some(n) = args
        .max_stored_bytes_per_user
        .or(file.max_stored_bytes_per_user)
    {
        quotas.stored_bytes_per_user = n;
    }
    if let Some(n) = args
        .max_stored_bytes_per_room
        .or(file.max_stored_bytes_per_room)
    {
        quotas.stored_bytes_per_room = n;
    }
    let retention = &mut config.retention;
    if let Some(n) = args.lobby_keep_messages.or(file.lobby_keep_messages) {
        retention.lobby.messages = n;
    }
    if let Some(n) = args.lobby_keep_days.or(file.lobby_keep_days) {
        retention.lobby.days = n;
    }
    if let Some(n) = args.room_keep_messages.or(file.room_keep_messages) {
        retention.rooms.messages = n;
    }
    if let Some(n) = args.room_keep_days.or(file.room_keep_days) {
        retention.rooms.days = n;
    }

    // Each client is a file descriptor: use all the process may have, and
    // unless told otherwise accept as many clients as that allows (keeping
    // some descriptors for the database and the listener).
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::debug!("open file limit: {limit}");
            if args.max_connections.or(file.max_connections).is_none() {
                config.max_connections =
                    usize::try_from(limit.saturating_sub(RESERVED_FDS).max(64))
                        .unwrap_or(usize::MAX);
            }
        }
        Err(e) => tracing::warn!("cannot raise the open file limit: {e}"),
    }
    let identity = sotto_server::prepare_identity(&config).await?;
    let listener = bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    println!("Sotto server listening on {local} (TLS 1.3)");
    println!("Data dir: {}", config.data_dir.display());
    println!("Database: {}", config.database.describe(&config.data_dir));
    if let Some(cluster) = &config.cluster {
        println!("Cluster: a node, talking to the others through NATS at {cluster}");
    }
    println!("Certificate fingerprint: {}", identity.fingerprint);
    println!(
        "Clients can pin it with: sotto chat --server {local} --server-fingerprint {}",
        identity.fingerprint
    );
    println!("Type q and Enter (or press Ctrl-C) to stop.");
    sotto_server::run(listener, config, shutdown_signal()).await?;
    println!("Sotto server stopped.");
    Ok(())
}

/// Pending connections the kernel queues before `accept`: a burst of
/// thousands of clients connecting at once must not overflow it (the
/// default of 128 turns into SYN retries of 1, 3 and 7 seconds).
const LISTEN_BACKLOG: u32 = 4096;

/// File descriptors kept free for the database, its readers and the listener.
const RESERVED_FDS: u64 = 128;

fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Completes on SIGINT, SIGTERM, or `q`/`Q` typed on standard input.
async fn shutdown_signal() {
    let stdin_q = async {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(line)) if line.trim().eq_ignore_ascii_case("q") => return,
                Ok(Some(_)) => {}
                // No (more) standard input: only signals can stop us.
                Ok(None) | Err(_) => std::future::pending::<()>().await,
            }
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
        () = stdin_q => {}
    }
}
