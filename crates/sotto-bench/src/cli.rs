//! Command-line flags. `bench/compare.sh` depends on these names exactly.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Load generator for Sotto (and, for comparison, IRC servers).
///
/// Every scenario is bounded in time and connection count and only talks to
/// loopback servers. The bench accepts any server certificate (it measures,
/// it does not authenticate) but still verifies TLS 1.3 handshake
/// signatures. The bench and the server share this machine's 2 cores, so
/// every table reports the bench's own CPU next to the server's.
#[derive(Debug, Parser)]
#[command(name = "sotto-bench", version)]
pub struct Cli {
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// N clients in one room, S of them sending; deliveries/s and latency.
    Fanout(FanoutArgs),
    /// N pairs of clients sending private messages to each other.
    Direct(DirectArgs),
    /// Many logged-in idle connections; server RSS per connection. Open
    /// files are capped at 20,000 per process here, so connections are
    /// spread over worker processes (the bench re-executes itself).
    Idle(IdleArgs),
    /// Password logins (new device each) as fast as possible.
    Login(LoginArgs),
    /// Fanout without and with one member that never reads.
    SlowConsumer(FanoutArgs),
    /// Internal: one worker process of `idle`.
    #[command(hide = true)]
    IdleWorker(IdleWorkerArgs),
}

/// The protocol spoken to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    Sotto,
    Irc,
}

impl Protocol {
    /// The lower-case name, as in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Sotto => "sotto",
            Protocol::Irc => "irc",
        }
    }
}

/// Flags every scenario takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Protocol of the server under test.
    #[arg(long, value_enum, default_value = "sotto")]
    pub protocol: Protocol,
    /// Server address, HOST:PORT on loopback [port default: 7443 for Sotto,
    /// 6697 (TLS) for IRC]; for a Sotto cluster, its nodes separated by
    /// commas (clients are spread over them in turn).
    #[arg(long)]
    pub server: String,
    /// The server's pid, to sample its CPU and RSS from /proc; a cluster's
    /// nodes' pids separated by commas (summed).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// A cluster's database processes (every `postgres` process), whose
    /// CPU is reported apart.
    #[arg(long, value_delimiter = ',')]
    pub db_pid: Vec<u32>,
    /// A cluster's bus process (`nats-server`), whose CPU is reported apart.
    #[arg(long, value_delimiter = ',')]
    pub bus_pid: Vec<u32>,
    /// Measured seconds (after the warmup).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Warmup seconds before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Also print one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
    /// Where bench accounts and session tokens are cached
    /// [default: target/bench-state/<host_port>/].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Prefix of bench usernames / IRC nicks (user 42 is `<prefix>00042`).
    #[arg(long, default_value = "b")]
    pub user_prefix: String,
    /// Password of the bench users (Sotto).
    #[arg(long, default_value = "bench-password")]
    pub password: String,
}

impl Common {
    /// The processes to sample besides the bench.
    pub fn watched(&self) -> crate::procfs::Watched {
        crate::procfs::Watched {
            server: self.server_pid.clone(),
            db: self.db_pid.clone(),
            bus: self.bus_pid.clone(),
        }
    }
}

/// How senders pace their messages.
#[derive(Debug, Clone, Args)]
#[group(multiple = false)]
pub struct PacingArgs {
    /// Messages each sender keeps in flight (Sotto: until the server's
    /// reply; IRC: until another client received it). Default 8.
    #[arg(long)]
    pub window: Option<u32>,
    /// Fixed total offered rate, messages per second over all senders.
    #[arg(long)]
    pub rate: Option<f64>,
}

/// Flags of `fanout` and `slow-consumer`.
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Clients in the room.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// How many of them send.
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    #[command(flatten)]
    pub pacing: PacingArgs,
    /// The room: the lobby or a group (`bench<N>`); IRC always uses #bench
    /// [default: lobby for fanout, group for slow-consumer].
    #[arg(long, value_enum)]
    pub room: Option<RoomArg>,
    /// Message size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Through `sotto-client` with real end-to-end encryption (a group;
    /// use tens of clients, each a full client with its local store).
    #[arg(long)]
    pub e2e: bool,
}

/// Which Sotto room `fanout` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoomArg {
    Lobby,
    Group,
}

/// Flags of `direct`.
#[derive(Debug, Clone, Args)]
pub struct DirectArgs {
    #[command(flatten)]
    pub common: Common,
    /// Number of pairs (2N clients).
    #[arg(long, default_value_t = 1000)]
    pub pairs: usize,
    #[command(flatten)]
    pub pacing: PacingArgs,
    /// Message size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Through `sotto-client` with real end-to-end encryption (Olm,
    /// Megolm, local store); use tens of pairs, not thousands.
    #[arg(long)]
    pub e2e: bool,
}

/// Flags of `idle`.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Idle connections to open.
    #[arg(long, default_value_t = 19_000)]
    pub connections: usize,
    /// Worker processes [default: ceil(connections / 9000)].
    #[arg(long)]
    pub processes: Option<usize>,
}

/// Flags of `login`.
#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub common: Common,
    /// Logins to perform.
    #[arg(long, default_value_t = 200)]
    pub clients: usize,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
}

/// Flags of the hidden `idle-worker`.
#[derive(Debug, Clone, Args)]
pub struct IdleWorkerArgs {
    #[arg(long, value_enum)]
    pub protocol: Protocol,
    #[arg(long)]
    pub server: String,
    /// The accounts file to read tokens from (Sotto).
    #[arg(long)]
    pub state_dir: PathBuf,
    #[arg(long)]
    pub user_prefix: String,
    /// First user index.
    #[arg(long)]
    pub first: usize,
    /// Number of connections.
    #[arg(long)]
    pub count: usize,
    /// Longest time to hold the connections before exiting by itself.
    #[arg(long)]
    pub max_hold: f64,
}
