//! `--e2e`: private and group messages through `sotto-client` itself, the
//! library every front end uses: Olm sessions, Megolm room keys,
//! encryption and decryption, the sealed local store, the device-list
//! cache. The raw scenarios send opaque bytes the server cannot tell from
//! ciphertext; these measure what a real client costs.
//!
//! All clients live in this process, so its CPU is the clients' CPU:
//! reported per client and per message. Accounts, devices and local stores
//! are kept in the state dir, so only the first run registers (Argon2id
//! and OPAQUE per account).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::Context as _;
use sotto_client::{Client, ClientEvent, ConnectOptions, Events, Secret, TrustPolicy};
use sotto_proto::{GroupName, Password, Username};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::payload::{Payload, now_ns};
use crate::procfs::{Sampler, Watched};
use crate::report::{Latencies, Report};

/// Who talks to whom.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// Clients `2k` and `2k+1` send each other private messages.
    Pairs(usize),
    /// Everyone in one new group; clients `0..senders` send to it.
    Group { clients: usize, senders: usize },
}

/// One `--e2e` run.
#[derive(Debug, Clone)]
pub struct Spec {
    pub server: String,
    pub prefix: String,
    pub password: String,
    pub state_dir: PathBuf,
    pub shape: Shape,
    /// Private messages each sender keeps in flight (group messages are
    /// sent one after another: each asks for the members first).
    pub window: usize,
    pub size: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub watched: Watched,
}

impl Spec {
    fn clients(&self) -> usize {
        match self.shape {
            Shape::Pairs(pairs) => 2 * pairs,
            Shape::Group { clients, .. } => clients,
        }
    }

    fn senders(&self) -> usize {
        match self.shape {
            Shape::Pairs(pairs) => 2 * pairs,
            Shape::Group { senders, .. } => senders,
        }
    }

    fn receivers_per_message(&self) -> u64 {
        match self.shape {
            Shape::Pairs(_) => 1,
            Shape::Group { clients, .. } => clients as u64 - 1,
        }
    }

    fn user(&self, i: usize) -> anyhow::Result<Username> {
        Ok(Username::parse(&format!("{}e{i:04}", self.prefix))?)
    }
}

/// Counters the clients share.
#[derive(Debug, Default)]
struct Counts {
    sent: AtomicU64,
    send_errors: AtomicU64,
    /// Deliveries read (decrypted) inside the measured window.
    window: AtomicU64,
    /// Distinct deliveries over the whole run.
    unique: AtomicU64,
    /// Messages that could not be decrypted.
    unreadable: AtomicU64,
    sending: AtomicBool,
    measuring: AtomicBool,
}

async fn connect(spec: &Spec, i: usize) -> anyhow::Result<(Client, Events)> {
    let user = spec.user(i)?;
    let data_dir = spec.state_dir.join("e2e").join(user.as_str());
    std::fs::create_dir_all(&data_dir)?;
    let options = ConnectOptions {
        server: spec.server.clone(),
        user: user.clone(),
        secret: Secret::Password(Password::new(spec.password.clone())?),
        server_password: None,
        data_dir,
        trust: TrustPolicy::TrustNew,
        register_only: false,
        sign_in_only: false,
    };
    sotto_client::connect(options)
        .await
        .with_context(|| format!("connecting {user}"))
}

/// Runs one `--e2e` load and reports it.
pub async fn run(spec: Spec, scenario: &str) -> anyhow::Result<Report> {
    let clients = spec.clients();
    let senders = spec.senders();
    anyhow::ensure!(
        clients >= 2 && senders <= clients,
        "need 2+ clients and no more senders"
    );
    let started = Instant::now();
    let mut connected = Vec::with_capacity(clients);
    for i in 0..clients {
        connected.push(connect(&spec, i).await?);
    }
    let group = match spec.shape {
        Shape::Pairs(_) => None,
        Shape::Group { .. } => Some(make_group(&spec, &connected).await?),
    };
    let join_time = started.elapsed();
    eprintln!(
        "{clients} clients signed in in {:.2} s; running",
        join_time.as_secs_f64()
    );
    let counts = Arc::new(Counts::default());
    counts.sending.store(true, Relaxed);
    let latencies = Latencies::new()?;
    let spec = Arc::new(spec);
    let mut tasks = JoinSet::new();
    let mut handles = Vec::new();
    for (i, (client, events)) in connected.into_iter().enumerate() {
        handles.push(client.clone());
        let (spec2, counts2, latencies2) = (spec.clone(), counts.clone(), latencies.clone());
        tasks.spawn(receive(spec2, i, events, counts2, latencies2));
        if i < senders {
            let (spec, counts, group) = (spec.clone(), counts.clone(), group.clone());
            tasks.spawn(async move {
                send(spec, i, client, group, counts).await;
            });
        }
    }
    tokio::time::sleep(spec.warmup).await;
    let sent_before = counts.sent.load(Relaxed);
    counts.measuring.store(true, Relaxed);
    let sampler = Sampler::start(&spec.watched, vec![None]);
    tokio::time::sleep(spec.duration).await;
    let usage = sampler.finish();
    counts.measuring.store(false, Relaxed);
    let sent_measured = counts.sent.load(Relaxed) - sent_before;
    counts.sending.store(false, Relaxed);
    // Senders finish what is in flight; then the deliveries drain.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let expected = counts.sent.load(Relaxed) * spec.receivers_per_message();
    let drain = Instant::now();
    while counts.unique.load(Relaxed) < expected && drain.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for client in handles {
        let _ = client.quit().await;
    }
    tasks.abort_all();
    let secs = spec.duration.as_secs_f64();
    let deliveries = counts.window.load(Relaxed);
    let messages_per_s = sent_measured as f64 / secs;
    let deliveries_per_s = deliveries as f64 / secs;
    let mut report = Report::new(scenario, "sotto-e2e", &spec.server);
    report.add("clients", "clients (sotto-client, one process)", clients);
    report.add("senders", "senders", senders);
    report.add(
        "window",
        "private messages in flight per sender",
        spec.window,
    );
    report.add("size", "message bytes (plaintext)", spec.size);
    report.add(
        "join_time_s",
        "sign-in time s",
        round(join_time.as_secs_f64(), 3),
    );
    report.add(
        "messages_sent",
        "encrypted messages sent",
        counts.sent.load(Relaxed),
    );
    report.add(
        "messages_per_s",
        "encrypted messages sent/s",
        round(messages_per_s, 1),
    );
    report.add(
        "messages_per_s_per_sender",
        "encrypted messages sent/s per sender",
        round(messages_per_s / senders as f64, 1),
    );
    report.add(
        "deliveries_per_s",
        "deliveries decrypted/s",
        round(deliveries_per_s, 1),
    );
    report.add(
        "latency_us",
        "latency µs (send to decrypted)",
        latencies.summary().to_json(),
    );
    report.add(
        "lost",
        "lost (after 10 s drain)",
        expected.saturating_sub(counts.unique.load(Relaxed)),
    );
    report.add(
        "unreadable",
        "messages that could not be decrypted",
        counts.unreadable.load(Relaxed),
    );
    report.add(
        "send_errors",
        "send errors",
        counts.send_errors.load(Relaxed),
    );
    if let Some(cpu) = usage.bench_cpu_pct {
        // CPU % of one core = 10,000 µs per second per 100%.
        let us = |rate: f64| (rate > 0.0).then(|| round(cpu * 1e4 / rate, 2));
        report.add_opt(
            "client_cpu_us_per_message",
            "client CPU µs per message (encrypt, send, and its deliveries' decrypt)",
            us(messages_per_s),
        );
        report.add_opt(
            "client_cpu_us_per_delivery",
            "client CPU µs per delivery",
            us(deliveries_per_s),
        );
    }
    report.add_usage("", "", usage);
    Ok(report)
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// A new group (one per run) with every client in it.
async fn make_group(spec: &Spec, clients: &[(Client, Events)]) -> anyhow::Result<GroupName> {
    let stamp = now_ns() % 1_000_000;
    let name = GroupName::parse(&format!("e2e{stamp}"))?;
    let members = (1..clients.len())
        .map(|i| spec.user(i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    clients[0].0.group_create(name.clone(), members).await?;
    for (client, _) in &clients[1..] {
        client.group_accept(name.clone()).await?;
    }
    Ok(name)
}

/// Client `i` sends until told to stop.
async fn send(
    spec: Arc<Spec>,
    i: usize,
    client: Client,
    group: Option<GroupName>,
    counts: Arc<Counts>,
) {
    let mut seq = 0u64;
    let mut text = || {
        seq += 1;
        Payload {
            sender: i as u32,
            seq,
            sent_ns: now_ns(),
        }
        .encode(spec.size)
    };
    match group {
        None => {
            let Ok(peer) = spec.user(i ^ 1) else { return };
            let mut in_flight = std::collections::VecDeque::new();
            while counts.sending.load(Relaxed) {
                while in_flight.len() < spec.window.max(1) {
                    match client.start_private(peer.clone(), &text()).await {
                        Ok(pending) => in_flight.push_back(pending),
                        Err(_) => {
                            counts.send_errors.fetch_add(1, Relaxed);
                            break;
                        }
                    }
                }
                let Some(pending) = in_flight.pop_front() else {
                    return;
                };
                count(&counts, pending.await.is_ok());
            }
            for pending in in_flight {
                count(&counts, pending.await.is_ok());
            }
        }
        Some(group) => {
            while counts.sending.load(Relaxed) {
                let result = client.send_group(group.clone(), &text()).await;
                count(&counts, result.is_ok());
            }
        }
    }
}

fn count(counts: &Counts, ok: bool) {
    if ok {
        counts.sent.fetch_add(1, Relaxed);
    } else {
        counts.send_errors.fetch_add(1, Relaxed);
    }
}

/// Client `i` reads (decrypts) until its task is stopped.
async fn receive(
    spec: Arc<Spec>,
    i: usize,
    mut events: Events,
    counts: Arc<Counts>,
    latencies: Arc<Latencies>,
) {
    let mut seen: HashMap<u32, u64> = HashMap::new();
    let mut lat = Vec::new();
    while let Some(event) = events.next().await {
        let text = match event {
            ClientEvent::Private { text, .. } | ClientEvent::Group { text, .. } => text,
            ClientEvent::Undecodable { .. } => {
                counts.unreadable.fetch_add(1, Relaxed);
                continue;
            }
            ClientEvent::Disconnected { .. } => break,
            _ => continue,
        };
        let Some(p) = Payload::decode(text.as_bytes()) else {
            continue;
        };
        if p.sender as usize == i || spec.senders() <= p.sender as usize {
            continue;
        }
        let max = seen.entry(p.sender).or_insert(0);
        if p.seq <= *max {
            continue;
        }
        *max = p.seq;
        counts.unique.fetch_add(1, Relaxed);
        if counts.measuring.load(Relaxed) {
            counts.window.fetch_add(1, Relaxed);
            lat.push(now_ns().saturating_sub(p.sent_ns) / 1000);
            if lat.len() >= 64 {
                latencies.record(i, &lat);
                lat.clear();
            }
        }
    }
    latencies.record(i, &lat);
}
