//! The `slow-consumer` scenario: does one member that never reads slow a
//! room down, and does it lose anything?
//!
//! The fanout runs twice: a baseline in group `bench<N>`, then in group
//! `slow<N>`, which has one extra member (user N) that logs in with a 4 KiB
//! socket receive buffer, reads its backlog and then never reads again.
//! Afterwards the bench checks whether the server disconnected it (end of
//! stream or reset on its socket), logs it in again with its token on the
//! same device, reads until `CaughtUp` and checks that every message sent to
//! the group during the run is there. With `--protocol irc` the stalled
//! client is a registered nick in `#bench`; IRC stores nothing, so there is
//! no loss check.

use std::time::Duration;

use anyhow::Context as _;
use sotto_proto::{Credential, GroupName};
use tokio::time::Instant;

use crate::cli::{FanoutArgs, Protocol, RoomArg};
use crate::engine::{self, Shape};
use crate::irc;
use crate::report::Report;
use crate::scenarios::{add_load, base_spec, pacing, room_target};
use crate::session::{Incoming, Session, Target};
use crate::setup::{self, Account};

/// Receive buffer of the stalled client's socket.
const STALLED_RCVBUF: u32 = 4096;

/// How long to wait for more bytes on the stalled socket before deciding
/// the server kept it open.
const EOF_IDLE: Duration = Duration::from_secs(3);

/// Longest time spent reading what the stalled socket still holds.
const EOF_LIMIT: Duration = Duration::from_secs(30);

/// Longest time to read the stalled client's backlog at its next login.
const BACKLOG_LIMIT: Duration = Duration::from_secs(180);

/// Reads the stalled socket until the server's end of stream (or reset):
/// `true` if the server had disconnected it.
async fn was_disconnected(mut session: Session) -> bool {
    let limit = Instant::now() + EOF_LIMIT;
    while Instant::now() < limit {
        match tokio::time::timeout(EOF_IDLE, session.read_some()).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            // Quiet for a while without closing: still connected.
            Err(_) => break,
        }
    }
    session.close().await;
    false
}

/// Logs the stalled account in again and counts the messages of this run
/// found in its backlog and those missing from it.
async fn backlog_loss(
    spec: &engine::LoadSpec,
    account: &Account,
    sent_per_sender: &[u64],
) -> anyhow::Result<(u64, u64)> {
    let (mut session, result) = setup::login(
        &spec.conn,
        &account.user,
        &account.device,
        Credential::Token(account.token.clone()),
    )
    .await?;
    result.map_err(|c| anyhow::anyhow!("stalled client re-login: {}", c.as_str()))?;
    let mut got: Vec<Vec<bool>> = sent_per_sender
        .iter()
        .map(|&n| vec![false; n as usize])
        .collect();
    let deadline = Instant::now() + BACKLOG_LIMIT;
    session
        .read_until(
            deadline,
            |i| *i == Incoming::CaughtUp,
            |item| {
                if let Incoming::Message(p) = item
                    && let Some(slot) = got
                        .get_mut(p.sender as usize)
                        .and_then(|v| v.get_mut((p.seq as usize).wrapping_sub(1)))
                {
                    *slot = true;
                }
            },
        )
        .await
        .context("reading the stalled client's backlog")?;
    session.close().await;
    let missing = got.iter().flatten().filter(|&&b| !b).count() as u64;
    let total: u64 = sent_per_sender.iter().sum();
    Ok((total - missing, missing))
}

/// `slow-consumer`.
pub async fn slow_consumer(args: FanoutArgs) -> anyhow::Result<Report> {
    let common = &args.common;
    let pacing = pacing(&args.pacing)?;
    let room = args.room.unwrap_or(RoomArg::Group);
    let n = args.clients;
    let shape = Shape::Room {
        target: Target::Lobby,
        senders: args.senders,
    };
    // Accounts 0..N are the room; account N is the stalled member.
    let (mut spec, setup_time) = base_spec(common, n + 1, shape, pacing, args.size).await?;
    spec.clients = n;

    eprintln!("baseline run (no stalled member)");
    let (target, room_name) = room_target(&spec, room, &format!("bench{n}")).await?;
    spec.shape = Shape::Room {
        target,
        senders: args.senders,
    };
    let baseline = engine::run(spec.clone()).await?;

    eprintln!("run with a stalled member");
    let stalled_account = spec.accounts.as_ref().and_then(|a| a.get(n)).cloned();
    let stalled_target = match (&stalled_account, room) {
        (Some(_), RoomArg::Group) => {
            let name = GroupName::parse(&format!("slow{n}"))?;
            let members = spec.accounts.as_ref().context("sotto has accounts")?;
            setup::ensure_group(&spec.conn, &name, &members[..=n]).await?;
            Target::Group(name)
        }
        (Some(_), RoomArg::Lobby) => Target::Lobby,
        (None, _) => Target::Irc(irc::CHANNEL.into()),
    };
    let stream = spec.conn.connect(Some(STALLED_RCVBUF)).await?;
    let stalled = match &stalled_account {
        Some(account) => {
            let mut session = Session::sotto(stream);
            session.sotto_hello().await?;
            session
                .sotto_login(
                    &account.user,
                    &account.device,
                    Credential::Token(account.token.clone()),
                )
                .await?
                .map_err(|e| anyhow::anyhow!("stalled client login: {}", e.code.as_str()))?;
            let deadline = Instant::now() + Duration::from_secs(60);
            // Reading the old backlog acknowledges it, so the loss check
            // below sees only this run's messages.
            session
                .read_until(deadline, |i| *i == Incoming::CaughtUp, |_| {})
                .await?;
            session
        }
        None => {
            let nick = format!("{}{n:05}", common.user_prefix);
            let mut session = Session::irc(stream, nick.clone());
            irc::register(&mut session, &nick).await?;
            irc::join(&mut session).await?;
            session
        }
    };
    spec.shape = Shape::Room {
        target: stalled_target.clone(),
        senders: args.senders,
    };
    let with_stalled = engine::run(spec.clone()).await?;
    let disconnected = was_disconnected(stalled).await;
    let (stalled_backlog, stalled_lost) = match (&stalled_account, &stalled_target) {
        (Some(account), Target::Group(_)) => {
            let (got, lost) = backlog_loss(&spec, account, &with_stalled.sent_per_sender).await?;
            (Some(got), Some(lost))
        }
        _ => (None, None),
    };

    let mut report = Report::new("slow-consumer", common.protocol.as_str(), &common.server);
    report.add("room", "room", room_name);
    report.add("clients", "clients (+1 stalled)", n);
    report.add("senders", "senders", args.senders);
    report.add("size", "message bytes", args.size);
    report.add("duration_s", "measured s (each run)", common.duration);
    report.add_opt(
        "setup_time_s",
        "setup s (accounts, not measured)",
        setup_time.map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0),
    );
    add_load(&mut report, &baseline, "baseline_", "baseline: ");
    report.add(
        "stalled_room",
        "with stalled: room",
        match &stalled_target {
            Target::Group(g) => format!("group {g}"),
            Target::Lobby => "lobby".into(),
            Target::Direct(_) | Target::Irc(_) => irc::CHANNEL.into(),
        },
    );
    add_load(&mut report, &with_stalled, "", "with stalled: ");
    let ratio = with_stalled.deliveries_per_s() / baseline.deliveries_per_s().max(1e-9);
    report.add(
        "ratio",
        "deliveries/s with stalled ÷ baseline",
        (ratio * 1000.0).round() / 1000.0,
    );
    report.add(
        "stalled_disconnected",
        "stalled client disconnected by server",
        disconnected,
    );
    report.add_opt(
        "stalled_backlog",
        "stalled client's run messages in its re-login backlog",
        stalled_backlog,
    );
    report.add_opt(
        "stalled_lost",
        "stalled client's messages missing at re-login",
        stalled_lost,
    );
    if common.protocol == Protocol::Irc {
        report.add("note", "note", "IRC stores nothing: no loss check");
    }
    Ok(report)
}
