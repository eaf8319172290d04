//! The `idle` scenario: many logged-in idle connections, and what each one
//! costs the server in RSS.
//!
//! File descriptors are capped at 20,000 per process here, so the
//! connections are spread over worker processes: the bench re-executes
//! itself with the hidden `idle-worker` subcommand, once per process. Each
//! worker raises its open-file soft limit to the hard limit, opens its share
//! (Sotto: token logins read until `CaughtUp`; IRC: registered nicks),
//! prints `ready` and keeps reading (presence events, `PING`s) until its
//! stdin closes or its hold limit passes. The parent times how long all
//! workers take to be ready and compares the server's RSS before and after.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use sotto_proto::Credential;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cli::{IdleArgs, IdleWorkerArgs, Protocol};
use crate::irc;
use crate::procfs::Sampler;
use crate::report::Report;
use crate::scenarios::{account_spec, connector};
use crate::session::{Incoming, STEP_TIMEOUT, Session};
use crate::setup::{self, AccountSpec};
use crate::tls::Connector;

/// Connections per worker process by default (below the 20,000 fd cap).
const PER_PROCESS: usize = 9000;

/// Longest time for every worker to be ready.
const READY_LIMIT: Duration = Duration::from_secs(600);

/// Extra seconds a worker may hold beyond warmup + duration before it
/// exits by itself (in case the parent died).
const HOLD_SLACK_S: f64 = 300.0;

/// Settling time after all connections are up, before "after" RSS.
const SETTLE: Duration = Duration::from_secs(1);

/// `idle`.
pub async fn idle(args: IdleArgs) -> anyhow::Result<Report> {
    let common = &args.common;
    let conn = connector(common)?;
    let spec = account_spec(common);
    let c = args.connections;
    anyhow::ensure!(c > 0, "--connections must be positive");
    let processes = args
        .processes
        .unwrap_or(c.div_ceil(PER_PROCESS))
        .clamp(1, c);
    let setup_time = match common.protocol {
        Protocol::Sotto => Some(setup::ensure_accounts(&conn, &spec, c).await?.1),
        Protocol::Irc => None,
    };
    let before = common.watched().server_rss_kb();
    let exe = std::env::current_exe().context("finding the bench's own executable")?;
    let max_hold = common.warmup + common.duration + HOLD_SLACK_S;
    let started = Instant::now();
    let mut children: Vec<Child> = Vec::new();
    let (ready_tx, mut ready_rx) = mpsc::channel::<anyhow::Result<()>>(processes);
    let per = c.div_ceil(processes);
    for p in 0..processes {
        let first = p * per;
        let count = per.min(c - first.min(c));
        if count == 0 {
            continue;
        }
        let mut child = Command::new(&exe)
            .arg("idle-worker")
            .args(["--protocol", common.protocol.as_str()])
            .args(["--server", &common.server])
            .arg("--state-dir")
            .arg(&spec.state_dir)
            .args(["--user-prefix", &common.user_prefix])
            .args(["--first", &first.to_string()])
            .args(["--count", &count.to_string()])
            .args(["--max-hold", &max_hold.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting an idle worker")?;
        let stdout = child.stdout.take().context("worker stdout is piped")?;
        let tx = ready_tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let result = match lines.next_line().await {
                Ok(Some(line)) if line == "ready" => Ok(()),
                Ok(Some(line)) => Err(anyhow::anyhow!("idle worker {p}: {line}")),
                Ok(None) => Err(anyhow::anyhow!("idle worker {p} exited")),
                Err(e) => Err(anyhow::anyhow!("idle worker {p}: {e}")),
            };
            let _ = tx.send(result).await;
        });
        children.push(child);
    }
    drop(ready_tx);
    let mut bench_pids = vec![None];
    bench_pids.extend(children.iter().map(|c| c.id()));
    let connect_sampler = Sampler::start(&common.watched(), bench_pids.clone());
    let deadline = started + READY_LIMIT;
    for _ in 0..children.len() {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => return Err(e),
            Ok(None) => bail!("idle workers ended early"),
            Err(_) => bail!("idle workers not ready within {READY_LIMIT:?}"),
        }
    }
    let connect_time = started.elapsed();
    let connect_usage = connect_sampler.finish();
    eprintln!(
        "{c} idle connections in {:.2} s over {} processes; holding",
        connect_time.as_secs_f64(),
        children.len()
    );
    tokio::time::sleep(SETTLE).await;
    let sampler = Sampler::start(&common.watched(), bench_pids);
    let hold = Duration::try_from_secs_f64(common.warmup + common.duration)
        .context("bad --warmup/--duration")?;
    tokio::time::sleep(hold).await;
    let after = common.watched().server_rss_kb();
    let usage = sampler.finish();
    for child in &mut children {
        // Closing stdin tells the worker to disconnect and exit.
        drop(child.stdin.take());
    }
    for child in &mut children {
        if tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }

    let mut report = Report::new("idle", common.protocol.as_str(), &common.server);
    report.add("connections", "idle connections", c);
    report.add("clients", "clients", c);
    report.add("processes", "bench worker processes", children.len());
    report.add_opt(
        "setup_time_s",
        "setup s (accounts, not measured)",
        setup_time.map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0),
    );
    report.add(
        "connect_time_s",
        "time to establish all s",
        (connect_time.as_secs_f64() * 1000.0).round() / 1000.0,
    );
    report.add_opt("server_rss_kb_before", "server RSS before (KiB)", before);
    report.add_opt("server_rss_kb_after", "server RSS after (KiB)", after);
    let per_conn = match (before, after) {
        (Some(b), Some(a)) => Some(((a as f64 - b as f64) / c as f64 * 100.0).round() / 100.0),
        _ => None,
    };
    report.add_opt(
        "rss_per_conn_kb",
        "server RSS per connection (KiB)",
        per_conn,
    );
    report.add_usage("connect_", "while connecting: ", connect_usage);
    report.add("duration_s", "held s", common.warmup + common.duration);
    report.add_usage("", "while idle: ", usage);
    Ok(report)
}

/// Opens one idle connection and joins (Sotto: caught up; IRC: registered).
async fn open_one(
    conn: &Connector,
    args: &IdleWorkerArgs,
    account: Option<&setup::Account>,
    i: usize,
) -> anyhow::Result<Session> {
    let stream = conn.connect(None).await?;
    match account {
        Some(account) => {
            let mut session = Session::sotto(stream);
            session.sotto_hello().await?;
            let token = Credential::Token(account.token.clone());
            session
                .sotto_login(&account.user, &account.device, token)
                .await?
                .map_err(|e| anyhow::anyhow!("login of {}: {}", account.user, e.code.as_str()))?;
            let deadline = Instant::now() + STEP_TIMEOUT;
            session
                .read_until(deadline, |i| *i == Incoming::CaughtUp, |_| {})
                .await?;
            Ok(session)
        }
        None => {
            let nick = format!("{}{i:05}", args.user_prefix);
            let mut session = Session::irc(stream, nick.clone());
            irc::register(&mut session, &nick).await?;
            Ok(session)
        }
    }
}

/// Keeps a connection open, reading (and answering PINGs) until stopped.
async fn hold(mut session: Session, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut items = Vec::new();
    loop {
        tokio::select! {
            n = session.read_some() => {
                if n? == 0 {
                    bail!("server closed an idle connection");
                }
                session.parse(&mut items)?;
                items.clear();
                session.flush().await?;
            }
            _ = stop.changed() => break,
        }
    }
    session.close().await;
    Ok(())
}

/// `idle-worker`: opens `count` connections from user `first`, prints
/// `ready` (or `error ...`), holds them until stdin closes.
pub async fn worker(args: IdleWorkerArgs) -> anyhow::Result<()> {
    match worker_inner(&args).await {
        Ok(()) => Ok(()),
        Err(e) => {
            println!("error {e:#}");
            Err(e)
        }
    }
}

async fn worker_inner(args: &IdleWorkerArgs) -> anyhow::Result<()> {
    let limit = rlimit::increase_nofile_limit(u64::MAX).context("raising RLIMIT_NOFILE")?;
    anyhow::ensure!(
        limit as usize > args.count + 64,
        "open-file limit {limit} is too low for {} connections; use more --processes",
        args.count
    );
    let conn = Arc::new(Connector::new(crate::tls::resolve_all(
        &args.server,
        args.protocol == Protocol::Irc,
    )?)?);
    let accounts = match args.protocol {
        Protocol::Sotto => {
            let spec = AccountSpec {
                state_dir: args.state_dir.clone(),
                prefix: args.user_prefix.clone(),
                password: String::new(),
            };
            Some(Arc::new(setup::cached_accounts(
                &spec, args.first, args.count,
            )?))
        }
        Protocol::Irc => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let (up_tx, mut up_rx) = mpsc::channel::<anyhow::Result<()>>(256);
    let gate = Arc::new(Semaphore::new(crate::tls::connect_concurrency(
        args.protocol == Protocol::Irc,
    )));
    let args = Arc::new(args.clone());
    let mut set = JoinSet::new();
    for k in 0..args.count {
        let (conn, args, accounts, gate, up, stop) = (
            conn.clone(),
            args.clone(),
            accounts.clone(),
            gate.clone(),
            up_tx.clone(),
            stop_rx.clone(),
        );
        set.spawn(async move {
            let opened = {
                let _permit = gate.acquire().await;
                let account = accounts.as_ref().and_then(|a| a.get(k));
                open_one(&conn, &args, account, args.first + k).await
            };
            match opened {
                Ok(session) => {
                    let _ = up.send(Ok(())).await;
                    hold(session, stop).await
                }
                Err(e) => {
                    let _ = up.send(Err(e)).await;
                    Ok(())
                }
            }
        });
    }
    drop(up_tx);
    let deadline = Instant::now() + READY_LIMIT;
    for _ in 0..args.count {
        match tokio::time::timeout_at(deadline, up_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => return Err(e),
            Ok(None) | Err(_) => bail!("connections not up in time"),
        }
    }
    println!("ready");
    // Hold until the parent closes stdin, or the hold limit.
    let max_hold = Duration::try_from_secs_f64(args.max_hold).context("bad --max-hold")?;
    let mut stdin = tokio::io::stdin();
    let mut byte = [0u8; 64];
    let _ = tokio::time::timeout(max_hold, async {
        while let Ok(n) = stdin.read(&mut byte).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        while set.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}
