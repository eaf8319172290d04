//! The message-load engine behind `fanout`, `direct` and `slow-consumer`.
//!
//! Every simulated client is one task owning its session. Phases: all
//! clients connect, log in and join (timed: the join time); the coordinator
//! then broadcasts a start time `t0`; senders send from `t0` until
//! `t0 + warmup + duration`, each keeping a window of messages in flight or
//! pacing to a share of a fixed rate; receivers count deliveries and record
//! latencies of those received inside the measured window
//! `[t0 + warmup, t0 + warmup + duration]`. After sending stops, the
//! coordinator waits (at most [`DRAIN_LIMIT`]) until every expected delivery
//! arrived, then stops every client; what is still missing is lost.
//!
//! Duplicates are found per (receiver, sender): each sender numbers its
//! messages from 1 and the server keeps one sender's messages in order, so a
//! number not above the highest seen is a duplicate.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context as _, bail};
use sotto_proto::Credential;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::irc;
use crate::payload::{Payload, now_ns};
use crate::procfs::{Sampler, Usage};
use crate::report::{Latencies, LatencySummary};
use crate::session::{Incoming, STEP_TIMEOUT, Session, Target};
use crate::setup::Account;
use crate::tls::Connector;

/// Longest wait for missing deliveries after sending stops.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Longest time for all clients to join.
const JOIN_LIMIT: Duration = Duration::from_secs(300);

/// Largest burst a rate-paced sender writes per tick.
const MAX_BURST: u64 = 1000;

/// How senders pace.
#[derive(Debug, Clone, Copy)]
pub enum Pacing {
    /// Messages in flight per sender.
    Window(u32),
    /// Total offered messages per second over all senders.
    Rate(f64),
}

/// Who talks to whom.
#[derive(Debug, Clone)]
pub enum Shape {
    /// Everyone in one room; clients `0..senders` send to `target`.
    Room { target: Target, senders: usize },
    /// Clients `2k` and `2k+1` send each other private messages.
    Pairs,
}

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Server connector.
    pub conn: Connector,
    /// Sotto accounts (client `i` is account `i`); `None` for IRC, whose
    /// clients register nicks `<prefix><index>`.
    pub accounts: Option<Arc<Vec<Account>>>,
    /// IRC nick prefix.
    pub prefix: String,
    /// Number of clients.
    pub clients: usize,
    pub shape: Shape,
    pub pacing: Pacing,
    /// Message size, bytes.
    pub size: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Server pid for /proc sampling.
    pub watched: crate::procfs::Watched,
}

impl LoadSpec {
    fn senders(&self) -> usize {
        match &self.shape {
            Shape::Room { senders, .. } => *senders,
            Shape::Pairs => self.clients,
        }
    }

    /// Receivers of each message (the sender's own echo excluded).
    fn receivers_per_message(&self) -> u64 {
        match &self.shape {
            Shape::Room { .. } => self.clients as u64 - 1,
            Shape::Pairs => 1,
        }
    }

    /// The client whose receipt of sender `k`'s message frees a window
    /// slot (IRC has no reply to wait for).
    fn observer_of(&self, k: usize) -> usize {
        match &self.shape {
            Shape::Room { .. } => self.clients - 1,
            Shape::Pairs => k ^ 1,
        }
    }

    fn irc_nick(&self, i: usize) -> String {
        format!("{}{i:05}", self.prefix)
    }
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Time for every client to connect, log in and join.
    pub join_time: Duration,
    /// Messages sent (Sotto: acknowledged by the server).
    pub sent: u64,
    /// The same per sender (sender `k` sent numbers `1..=sent_per_sender[k]`).
    pub sent_per_sender: Vec<u64>,
    /// Messages the server refused.
    pub send_errors: u64,
    /// Deliveries received inside the measured window.
    pub deliveries: u64,
    /// Distinct deliveries over the whole run.
    pub unique: u64,
    /// Deliveries expected over the whole run.
    pub expected: u64,
    pub duplicated: u64,
    /// Clients the server disconnected during the run.
    pub disconnected: u64,
    pub latency: LatencySummary,
    pub usage: Usage,
    /// Seconds of the measured window.
    pub duration_s: f64,
}

impl LoadResult {
    /// Deliveries per second over the measured window.
    pub fn deliveries_per_s(&self) -> f64 {
        self.deliveries as f64 / self.duration_s
    }

    /// Expected deliveries that never arrived.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.unique)
    }
}

/// State shared by the coordinator and the clients.
#[derive(Debug)]
struct Shared {
    spec: LoadSpec,
    /// Accepted messages per sender.
    sent: Vec<AtomicU64>,
    send_errors: AtomicU64,
    /// Senders that stopped and have no message in flight.
    senders_done: AtomicUsize,
    /// Distinct deliveries so far (for the drain).
    unique: AtomicU64,
    latencies: Arc<Latencies>,
    /// IRC window: free slots per sender, released by the observer.
    windows: Vec<Semaphore>,
}

/// What one client counted.
#[derive(Debug, Default)]
struct Tally {
    window: u64,
    unique: u64,
    dups: u64,
    /// The server closed this client's connection during the run.
    disconnected: bool,
}

/// The coordinator's broadcast: `None` until start, then `Some(t0_ns)`;
/// `stop` ends every client.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Joining,
    Run { t0_ns: u64 },
    Stop,
}

/// Runs one load and measures it.
pub async fn run(spec: LoadSpec) -> anyhow::Result<LoadResult> {
    let senders = spec.senders();
    anyhow::ensure!(spec.clients >= 2, "need at least 2 clients");
    anyhow::ensure!(senders <= spec.clients, "more senders than clients");
    if let (Pacing::Window(_), Shape::Room { .. }, None) =
        (spec.pacing, &spec.shape, &spec.accounts)
    {
        anyhow::ensure!(
            spec.clients > senders,
            "IRC --window needs a non-sending observer client: use fewer senders than clients"
        );
    }
    let window = match spec.pacing {
        Pacing::Window(w) => w as usize,
        Pacing::Rate(_) => 0,
    };
    let shared = Arc::new(Shared {
        sent: (0..senders).map(|_| AtomicU64::new(0)).collect(),
        send_errors: AtomicU64::new(0),
        senders_done: AtomicUsize::new(0),
        unique: AtomicU64::new(0),
        latencies: Latencies::new()?,
        windows: (0..senders).map(|_| Semaphore::new(window)).collect(),
        spec,
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Joining);
    let (joined_tx, mut joined_rx) = mpsc::channel::<anyhow::Result<()>>(64);
    let gate = Arc::new(Semaphore::new(crate::tls::connect_concurrency(
        shared.spec.accounts.is_none(),
    )));
    let mut set = JoinSet::new();
    let join_started = Instant::now();
    for i in 0..shared.spec.clients {
        let (shared, phase, joined, gate) = (
            shared.clone(),
            phase_rx.clone(),
            joined_tx.clone(),
            gate.clone(),
        );
        set.spawn(async move {
            let session = {
                let _permit = gate.acquire().await;
                join(&shared, i).await
            };
            let session = match session {
                Ok(s) => {
                    let _ = joined.send(Ok(())).await;
                    s
                }
                Err(e) => {
                    let _ = joined.send(Err(e.context(format!("client {i}")))).await;
                    return Ok(Tally::default());
                }
            };
            client(shared, i, session, phase).await
        });
    }
    drop(joined_tx);
    let deadline = join_started + JOIN_LIMIT;
    for n in 0..shared.spec.clients {
        match tokio::time::timeout_at(deadline, joined_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => return Err(e),
            Ok(None) => bail!("clients ended before joining"),
            Err(_) => bail!("only {n} of {} clients joined in time", shared.spec.clients),
        }
    }
    let join_time = join_started.elapsed();
    eprintln!(
        "{} clients joined in {:.2} s; running",
        shared.spec.clients,
        join_time.as_secs_f64()
    );

    let spec = &shared.spec;
    let t0 = Instant::now();
    let t0_ns = now_ns();
    let _ = phase_tx.send(Phase::Run { t0_ns });
    tokio::time::sleep_until(t0 + spec.warmup).await;
    let sampler = Sampler::start(&spec.watched, vec![None]);
    tokio::time::sleep_until(t0 + spec.warmup + spec.duration).await;
    let usage = sampler.finish();
    // Senders finish what they have in flight.
    let done_by = Instant::now() + STEP_TIMEOUT;
    while shared.senders_done.load(Relaxed) < senders && Instant::now() < done_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent_per_sender: Vec<u64> = shared.sent.iter().map(|s| s.load(Relaxed)).collect();
    let sent: u64 = sent_per_sender.iter().sum();
    let expected = sent * spec.receivers_per_message();
    let drain_by = Instant::now() + DRAIN_LIMIT;
    while shared.unique.load(Relaxed) < expected && Instant::now() < drain_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = phase_tx.send(Phase::Stop);
    let mut total = Tally::default();
    let mut disconnected = 0;
    while let Some(joined) = tokio::time::timeout(STEP_TIMEOUT, set.join_next())
        .await
        .context("clients did not stop")?
    {
        let t = joined.context("client task panicked")??;
        total.window += t.window;
        total.unique += t.unique;
        total.dups += t.dups;
        disconnected += u64::from(t.disconnected);
    }
    Ok(LoadResult {
        join_time,
        sent,
        sent_per_sender,
        send_errors: shared.send_errors.load(Relaxed),
        deliveries: total.window,
        unique: total.unique,
        expected,
        duplicated: total.dups,
        disconnected,
        latency: shared.latencies.summary(),
        usage,
        duration_s: spec.duration.as_secs_f64(),
    })
}

/// Connects client `i`, logs in and joins the room.
async fn join(shared: &Shared, i: usize) -> anyhow::Result<Session> {
    let spec = &shared.spec;
    let stream = spec.conn.connect(None).await?;
    match &spec.accounts {
        Some(accounts) => {
            let account = accounts.get(i).context("no account for client")?;
            let mut session = Session::sotto(stream);
            session.sotto_hello().await?;
            let token = Credential::Token(account.token.clone());
            if let Err(e) = session
                .sotto_login(&account.user, &account.device, token)
                .await?
            {
                bail!(
                    "token login of {} refused ({}); delete the bench state dir and retry",
                    account.user,
                    e.code.as_str()
                );
            }
            let deadline = Instant::now() + STEP_TIMEOUT;
            session
                .read_until(deadline, |i| *i == Incoming::CaughtUp, |_| {})
                .await?;
            Ok(session)
        }
        None => {
            let nick = spec.irc_nick(i);
            let mut session = Session::irc(stream, nick.clone());
            irc::register(&mut session, &nick).await?;
            if matches!(spec.shape, Shape::Room { .. }) {
                irc::join(&mut session).await?;
            }
            Ok(session)
        }
    }
}

/// What client `i` sends to, if it sends.
fn target_of(spec: &LoadSpec, i: usize) -> Option<Target> {
    match &spec.shape {
        Shape::Room { target, senders } => (i < *senders).then(|| target.clone()),
        Shape::Pairs => Some(match &spec.accounts {
            Some(accounts) => Target::Direct(accounts.get(i ^ 1)?.user.clone()),
            None => Target::Irc(spec.irc_nick(i ^ 1)),
        }),
    }
}

/// Client `i`'s measured life: send (if a sender) and receive until stopped.
async fn client(
    shared: Arc<Shared>,
    i: usize,
    mut session: Session,
    mut phase: watch::Receiver<Phase>,
) -> anyhow::Result<Tally> {
    let spec = &shared.spec;
    // Messages that arrive before this client sees the start (a faster
    // partner may already be sending) are kept and counted below.
    let mut early = Vec::new();
    let t0_ns = loop {
        match *phase.borrow_and_update() {
            Phase::Run { t0_ns } => break t0_ns,
            Phase::Stop => return Ok(Tally::default()),
            Phase::Joining => {}
        }
        // Read while waiting so pings and presence do not pile up.
        let mut items = Vec::new();
        tokio::select! {
            changed = phase.changed() => changed.context("coordinator gone")?,
            n = session.read_some() => {
                if n? == 0 { bail!("server closed the connection of client {i}"); }
                session.parse(&mut items)?;
                early.extend(items.into_iter().filter(|item| matches!(item, Incoming::Message(_))));
                session.flush().await?;
            }
        }
    };
    let start_ns = t0_ns + spec.warmup.as_nanos() as u64;
    let end_ns = start_ns + spec.duration.as_nanos() as u64;
    let send_end = Instant::now() + Duration::from_nanos(end_ns.saturating_sub(now_ns()));
    let target = target_of(spec, i);
    let sotto = spec.accounts.is_some();
    let senders = spec.senders();
    // Per-sender share of the rate; a tick sends what is due.
    let rate = match spec.pacing {
        Pacing::Rate(r) if target.is_some() => Some(r / senders as f64),
        _ => None,
    };
    let window = match spec.pacing {
        Pacing::Window(w) if target.is_some() => w as u64,
        _ => 0,
    };
    let irc_window = !sotto && window > 0;
    let mut ticker = tokio::time::interval(Duration::from_millis(2));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    // ngIRCd leaves TLS input it has already received unprocessed until more
    // bytes arrive on the socket, so a sender waiting on a full window could
    // stall: nudge it with a PING while the window stays full.
    let mut keepalive = tokio::time::interval(IRC_KEEPALIVE);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut last_progress = Instant::now();
    let mut sending = target.is_some();
    let mut seq = 0u64;
    let mut inflight = 0u64;
    let mut done_reported = target.is_none();
    let mut seen: HashMap<u32, u64> = HashMap::new();
    let debug = std::env::var_os("SOTTO_BENCH_DEBUG").is_some();
    let mut tally = Tally::default();
    // Early messages count as delivered (they are outside the measured
    // window, so they carry no latency sample).
    for item in early {
        let Incoming::Message(p) = item else { continue };
        if p.sender as usize == i {
            continue;
        }
        let max = seen.entry(p.sender).or_insert(0);
        if p.seq > *max {
            *max = p.seq;
            tally.unique += 1;
            shared.unique.fetch_add(1, Relaxed);
            if irc_window_observer(spec, !sotto, i, p.sender as usize) {
                shared.windows[p.sender as usize].add_permits(1);
            }
        } else {
            tally.dups += 1;
        }
    }
    let mut items = Vec::new();
    let mut lat = Vec::new();
    let run_started = Instant::now();
    let send = |session: &mut Session, seq: &mut u64| -> anyhow::Result<()> {
        *seq += 1;
        let p = Payload {
            sender: i as u32,
            seq: *seq,
            sent_ns: now_ns(),
        };
        if let Some(target) = &target {
            session.queue_message(target, p.encode(spec.size))?;
        }
        Ok(())
    };
    // Sotto window: fill the window before the first read.
    if sotto && window > 0 && sending {
        while inflight < window {
            send(&mut session, &mut seq)?;
            inflight += 1;
        }
        session.flush().await?;
    }
    loop {
        let now = Instant::now();
        if sending && now >= send_end {
            sending = false;
            if !sotto {
                shared.sent[i].store(seq, Relaxed);
            }
        }
        if !sending && !done_reported && (!sotto || inflight == 0) {
            done_reported = true;
            shared.senders_done.fetch_add(1, Relaxed);
        }
        let window_sem = shared.windows.get(i).filter(|_| irc_window && sending);
        tokio::select! {
            n = session.read_some() => {
                if !matches!(n, Ok(n) if n > 0) {
                    // Disconnected (e.g. as a slow consumer): count it, and
                    // let the run go on without this client.
                    tally.disconnected = true;
                    if !done_reported {
                        if !sotto {
                            shared.sent[i].store(seq, Relaxed);
                        }
                        shared.senders_done.fetch_add(1, Relaxed);
                    }
                    return Ok(tally);
                }
                session.parse(&mut items)?;
                let recv_ns = now_ns();
                let in_window = (start_ns..=end_ns).contains(&recv_ns);
                let mut new = 0;
                for item in items.drain(..) {
                    match item {
                        Incoming::Message(p) if p.sender as usize != i => {
                            let max = seen.entry(p.sender).or_insert(0);
                            if p.seq > *max + 1 && debug {
                                eprintln!("client {i}: from {} got {} after {}", p.sender, p.seq, *max);
                            }
                            if p.seq > *max {
                                *max = p.seq;
                                new += 1;
                                if in_window {
                                    tally.window += 1;
                                    lat.push(recv_ns.saturating_sub(p.sent_ns) / 1000);
                                }
                                if irc_window_observer(spec, !sotto, i, p.sender as usize) {
                                    shared.windows[p.sender as usize].add_permits(1);
                                }
                            } else {
                                tally.dups += 1;
                            }
                        }
                        Incoming::Replied { ok, .. } if sotto && inflight > 0 => {
                            inflight -= 1;
                            if ok {
                                shared.sent[i].fetch_add(1, Relaxed);
                            } else {
                                shared.send_errors.fetch_add(1, Relaxed);
                            }
                        }
                        _ => {}
                    }
                }
                tally.unique += new;
                shared.unique.fetch_add(new, Relaxed);
                shared.latencies.record(i, &lat);
                lat.clear();
                if sotto && window > 0 && sending {
                    while inflight < window {
                        send(&mut session, &mut seq)?;
                        inflight += 1;
                    }
                }
                session.flush().await?;
            }
            permit = async { window_sem?.acquire().await.ok() }, if window_sem.is_some() => {
                if let Some(permit) = permit {
                    permit.forget();
                    last_progress = Instant::now();
                    send(&mut session, &mut seq)?;
                    while let Some(sem) = window_sem {
                        match sem.try_acquire() {
                            Ok(p) => { p.forget(); send(&mut session, &mut seq)?; }
                            Err(_) => break,
                        }
                    }
                    session.flush().await?;
                }
            }
            _ = ticker.tick(), if sending && rate.is_some() => {
                let r = rate.unwrap_or(0.0);
                let due = (run_started.elapsed().as_secs_f64() * r) as u64;
                let burst = due.saturating_sub(seq).min(MAX_BURST);
                for _ in 0..burst {
                    send(&mut session, &mut seq)?;
                }
                if sotto {
                    inflight += burst;
                }
                session.flush().await?;
            }
            _ = keepalive.tick(), if window_sem.is_some() => {
                // Only a window that made no progress for a while: a PING
                // per full window would double the server's work and the
                // bench's (each is a TLS record and a reply).
                if window_sem.is_some_and(|sem| sem.available_permits() == 0)
                    && last_progress.elapsed() >= IRC_STALL
                {
                    session.queue_raw(b"PING :keepalive\r\n");
                    session.flush().await?;
                    last_progress = Instant::now();
                }
            }
            _ = tokio::time::sleep_until(send_end), if sending => {}
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow() == Phase::Stop {
                    break;
                }
            }
        }
    }
    session.close().await;
    if std::env::var_os("SOTTO_BENCH_DEBUG").is_some() {
        for (sender, max) in &seen {
            let sent = shared
                .sent
                .get(*sender as usize)
                .map_or(0, |s| s.load(Relaxed));
            if *max < sent {
                eprintln!("client {i}: from {sender} saw up to {max} of {sent} accepted");
            }
        }
    }
    Ok(tally)
}

/// How often a blocked IRC window sender checks whether to nudge the server.
const IRC_KEEPALIVE: Duration = Duration::from_millis(100);

/// How long an IRC window must stay full, with no slot freed, before its
/// sender nudges the server with a PING.
const IRC_STALL: Duration = Duration::from_millis(250);

/// Whether client `i` releases window slots of `sender` (IRC window mode).
fn irc_window_observer(spec: &LoadSpec, irc: bool, i: usize, sender: usize) -> bool {
    irc && matches!(spec.pacing, Pacing::Window(_))
        && sender < spec.senders()
        && spec.observer_of(sender) == i
}
