//! The `fanout`, `direct` and `login` scenarios: flags in, report out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sotto_proto::{DeviceId, GroupName};
use tokio::task::JoinSet;

use crate::cli::{Common, DirectArgs, FanoutArgs, LoginArgs, PacingArgs, Protocol, RoomArg};
use crate::engine::{self, LoadResult, LoadSpec, Pacing, Shape};
use crate::irc;
use crate::procfs::Sampler;
use crate::report::{Latencies, Report};
use crate::session::{Session, Target};
use crate::setup::{self, AccountSpec};
use crate::tls::Connector;

/// Longest a login may take in the `login` scenario.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(120);

/// Resolves `--server` (loopback only) and builds the connector.
pub fn connector(common: &Common) -> anyhow::Result<Connector> {
    Connector::new(crate::tls::resolve_all(
        &common.server,
        common.protocol == Protocol::Irc,
    )?)
}

/// Where accounts are cached for this server.
pub fn account_spec(common: &Common) -> AccountSpec {
    AccountSpec {
        state_dir: common
            .state_dir
            .clone()
            .unwrap_or_else(|| setup::default_state_dir(&common.server)),
        prefix: common.user_prefix.clone(),
        password: common.password.clone(),
    }
}

/// Window 8 unless a rate or window was given.
pub fn pacing(args: &PacingArgs) -> anyhow::Result<Pacing> {
    Ok(match (args.window, args.rate) {
        (_, Some(rate)) => {
            anyhow::ensure!(rate > 0.0, "--rate must be positive");
            Pacing::Rate(rate)
        }
        (Some(w), None) => {
            anyhow::ensure!(w > 0, "--window must be positive");
            Pacing::Window(w)
        }
        (None, None) => Pacing::Window(8),
    })
}

fn seconds(s: f64, name: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("bad --{name} {s}"))
}

/// Checks the message size for the protocol.
fn check_size(protocol: Protocol, size: usize) -> anyhow::Result<()> {
    let max = match protocol {
        Protocol::Sotto => sotto_proto::limits::MAX_TEXT_LEN,
        Protocol::Irc => irc::MAX_IRC_TEXT,
    };
    anyhow::ensure!(
        size <= max,
        "--size {size} exceeds {max} bytes for {protocol:?}"
    );
    Ok(())
}

/// A load spec from the common flags, with accounts for Sotto.
pub async fn base_spec(
    common: &Common,
    clients: usize,
    shape: Shape,
    pacing: Pacing,
    size: usize,
) -> anyhow::Result<(LoadSpec, Option<Duration>)> {
    let conn = connector(common)?;
    check_size(common.protocol, size)?;
    anyhow::ensure!(common.duration > 0.0, "--duration must be positive");
    let (accounts, setup_time) = match common.protocol {
        Protocol::Sotto => {
            let (accounts, took) =
                setup::ensure_accounts(&conn, &account_spec(common), clients).await?;
            (Some(Arc::new(accounts)), Some(took))
        }
        Protocol::Irc => (None, None),
    };
    Ok((
        LoadSpec {
            conn,
            accounts,
            prefix: common.user_prefix.clone(),
            clients,
            shape,
            pacing,
            size,
            warmup: seconds(common.warmup, "warmup")?,
            duration: seconds(common.duration, "duration")?,
            watched: common.watched(),
        },
        setup_time,
    ))
}

/// The room target for a fanout of `clients` (creating the group if needed).
pub async fn room_target(
    spec: &LoadSpec,
    room: RoomArg,
    group: &str,
) -> anyhow::Result<(Target, String)> {
    let Some(accounts) = &spec.accounts else {
        return Ok((Target::Irc(irc::CHANNEL.into()), irc::CHANNEL.into()));
    };
    match room {
        RoomArg::Lobby => Ok((Target::Lobby, "lobby".into())),
        RoomArg::Group => {
            let name = GroupName::parse(group)?;
            setup::ensure_group(&spec.conn, &name, &accounts[..spec.clients]).await?;
            Ok((Target::Group(name), format!("group {group}")))
        }
    }
}

/// Adds a load result's standard fields; JSON keys get `prefix`, labels
/// get `label` in front.
pub fn add_load(report: &mut Report, r: &LoadResult, prefix: &str, label: &str) {
    let mut add = |k: &str, l: &str, v: serde_json::Value| {
        report.add(&format!("{prefix}{k}"), &format!("{label}{l}"), v);
    };
    add("messages_sent", "messages sent", r.sent.into());
    add(
        "deliveries",
        "deliveries (measured window)",
        r.deliveries.into(),
    );
    add(
        "deliveries_per_s",
        "deliveries/s",
        ((r.deliveries_per_s() * 10.0).round() / 10.0).into(),
    );
    add("latency_us", "latency µs", r.latency.to_json());
    add("lost", "lost (after 5 s drain)", r.lost().into());
    add("duplicated", "duplicated", r.duplicated.into());
    add("send_errors", "send errors", r.send_errors.into());
    add(
        "clients_disconnected",
        "clients disconnected by the server",
        r.disconnected.into(),
    );
    add(
        "join_time_s",
        "join time s (connect+login+join)",
        ((r.join_time.as_secs_f64() * 1000.0).round() / 1000.0).into(),
    );
    report.add_usage(prefix, label, r.usage);
}

fn add_header(
    report: &mut Report,
    common: &Common,
    clients: usize,
    senders: usize,
    pacing: Pacing,
    size: usize,
) {
    report.add("clients", "clients", clients);
    report.add("senders", "senders", senders);
    match pacing {
        Pacing::Window(w) => report.add("window", "window per sender", w),
        Pacing::Rate(r) => report.add("rate", "offered msgs/s (total)", r),
    }
    report.add("size", "message bytes", size);
    report.add("duration_s", "measured s", common.duration);
    report.add("warmup_s", "warmup s", common.warmup);
}

fn add_setup(report: &mut Report, setup_time: Option<Duration>) {
    report.add_opt(
        "setup_time_s",
        "setup s (accounts, not measured)",
        setup_time.map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0),
    );
}

/// `fanout`.
pub async fn fanout(args: FanoutArgs) -> anyhow::Result<Report> {
    let common = &args.common;
    if args.e2e {
        anyhow::ensure!(
            args.room != Some(RoomArg::Lobby),
            "--e2e: the lobby is not end-to-end encrypted; use --room group"
        );
        let shape = crate::e2e::Shape::Group {
            clients: args.clients,
            senders: args.senders,
        };
        return crate::e2e::run(e2e_spec(common, shape, &args.pacing, args.size)?, "fanout").await;
    }
    let pacing = pacing(&args.pacing)?;
    let room = args.room.unwrap_or(RoomArg::Lobby);
    let shape = Shape::Room {
        target: Target::Lobby,
        senders: args.senders,
    };
    let (mut spec, setup_time) = base_spec(common, args.clients, shape, pacing, args.size).await?;
    let (target, room_name) = room_target(&spec, room, &format!("bench{}", args.clients)).await?;
    spec.shape = Shape::Room {
        target,
        senders: args.senders,
    };
    let result = engine::run(spec).await?;
    let mut report = Report::new("fanout", common.protocol.as_str(), &common.server);
    report.add("room", "room", room_name);
    add_header(
        &mut report,
        common,
        args.clients,
        args.senders,
        pacing,
        args.size,
    );
    add_setup(&mut report, setup_time);
    add_load(&mut report, &result, "", "");
    Ok(report)
}

/// `direct`.
pub async fn direct(args: DirectArgs) -> anyhow::Result<Report> {
    let common = &args.common;
    if args.e2e {
        let shape = crate::e2e::Shape::Pairs(args.pairs);
        return crate::e2e::run(e2e_spec(common, shape, &args.pacing, args.size)?, "direct").await;
    }
    let pacing = pacing(&args.pacing)?;
    let clients = args.pairs * 2;
    let (spec, setup_time) = base_spec(common, clients, Shape::Pairs, pacing, args.size).await?;
    let result = engine::run(spec).await?;
    let mut report = Report::new("direct", common.protocol.as_str(), &common.server);
    report.add("pairs", "pairs", args.pairs);
    add_header(&mut report, common, clients, clients, pacing, args.size);
    add_setup(&mut report, setup_time);
    report.add(
        "messages_per_s",
        "messages delivered/s",
        (result.deliveries_per_s() * 10.0).round() / 10.0,
    );
    add_load(&mut report, &result, "", "");
    Ok(report)
}

/// One login of the `login` scenario; returns its latency.
async fn one_login(
    conn: &Connector,
    common: &Common,
    spec: &AccountSpec,
    i: usize,
    run_id: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    match common.protocol {
        Protocol::Sotto => {
            let user = setup::username(&spec.prefix, i)?;
            // A new device every time: each login registers a device.
            let device = DeviceId::parse(&format!("bench-login-{run_id:x}-{i:05}"))?;
            let (session, result) =
                setup::password_login(conn, &user, &device, &spec.password).await?;
            let elapsed = started.elapsed();
            session.close().await;
            result.map_err(|code| anyhow::anyhow!("login of {user}: {}", code.as_str()))?;
            Ok(elapsed)
        }
        Protocol::Irc => {
            let nick = format!("{}{i:05}", spec.prefix);
            let mut session = Session::irc(conn.connect(None).await?, nick.clone());
            irc::register(&mut session, &nick).await?;
            let elapsed = started.elapsed();
            session.close().await;
            Ok(elapsed)
        }
    }
}

/// `login`.
pub async fn login(args: LoginArgs) -> anyhow::Result<Report> {
    let common = args.common.clone();
    let conn = Arc::new(connector(&common)?);
    let spec = Arc::new(account_spec(&common));
    let concurrency = args.concurrency.max(1);
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let latencies = Latencies::new()?;
    let common = Arc::new(common);
    let sampler = Sampler::start(&common.watched(), vec![None]);
    let started = Instant::now();
    let mut set = JoinSet::new();
    let mut next = 0;
    let mut ok = 0u64;
    let mut failed = 0u64;
    let mut first_error = None;
    loop {
        while set.len() < concurrency && next < args.clients {
            let (conn, common, spec) = (conn.clone(), common.clone(), spec.clone());
            let i = next;
            next += 1;
            set.spawn(async move {
                tokio::time::timeout(LOGIN_TIMEOUT, one_login(&conn, &common, &spec, i, run_id))
                    .await
                    .context("login timed out")?
            });
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        match joined.context("login task panicked")? {
            Ok(latency) => {
                ok += 1;
                latencies.record(0, &[latency.as_micros() as u64]);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(format!("{e:#}"));
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let usage = sampler.finish();
    let mut report = Report::new("login", common.protocol.as_str(), &common.server);
    if common.protocol == Protocol::Sotto {
        report.add(
            "note",
            "note",
            "password logins: Argon2id (19 MiB, t=2, p=1) dominates; the server hashes at most 4 at once",
        );
    } else {
        report.add("note", "note", "IRC: connect + TLS + NICK/USER until 001");
    }
    report.add("clients", "logins attempted", args.clients);
    report.add("concurrency", "concurrency", concurrency);
    report.add("logins_ok", "logins ok", ok);
    report.add("logins_failed", "logins failed", failed);
    report.add_opt("first_error", "first error", first_error);
    report.add("duration_s", "wall s", (elapsed * 1000.0).round() / 1000.0);
    report.add(
        "logins_per_s",
        "logins/s",
        (ok as f64 / elapsed * 10.0).round() / 10.0,
    );
    report.add_latency("latency_us", "login latency µs", latencies.summary());
    report.add_usage("", "", usage);
    Ok(report)
}

/// The `--e2e` run the flags describe.
fn e2e_spec(
    common: &Common,
    shape: crate::e2e::Shape,
    pacing: &crate::cli::PacingArgs,
    size: usize,
) -> anyhow::Result<crate::e2e::Spec> {
    anyhow::ensure!(
        matches!(common.protocol, Protocol::Sotto),
        "--e2e is for Sotto servers"
    );
    anyhow::ensure!(pacing.rate.is_none(), "--e2e paces by --window only");
    Ok(crate::e2e::Spec {
        server: common.server.clone(),
        prefix: common.user_prefix.clone(),
        password: common.password.clone(),
        state_dir: common
            .state_dir
            .clone()
            .unwrap_or_else(|| crate::setup::default_state_dir(&common.server)),
        shape,
        window: pacing.window.unwrap_or(8) as usize,
        size,
        warmup: Duration::from_secs_f64(common.warmup),
        duration: Duration::from_secs_f64(common.duration),
        watched: common.watched(),
    })
}
