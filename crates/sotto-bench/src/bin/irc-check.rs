//! `irc-check`: a second, independent IRC load generator, to cross-check
//! the IRC rows of `sotto-bench`.
//!
//! It shares no code with `sotto-bench` (its own TLS setup, line reading,
//! payload format, pacing, counting and CPU sampling) and is built the
//! plain way: per connection one reader task (`BufReader::read_until`)
//! and one writer task fed credits over a channel. If both tools report
//! the same rate for the same server, neither measured itself.
//!
//! ```text
//! irc-check direct --server 127.0.0.1:6697 --pairs 1000 --window 16 --server-pid N
//! irc-check fanout --clients 1000 --senders 10 --window 16 [--rate 200] [--stalled 1]
//! irc-check idle --clients 19000 --concurrency 512
//! ```
//!
//! It prints one JSON line: rates over the measured window, what was lost
//! (expected deliveries that never came, after up to 10 s of draining),
//! its own CPU and the server's (percent of one core, from `/proc`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsConnector;

const CHANNEL: &str = "#check";

#[derive(Debug, Clone)]
struct Args {
    mode: String,
    server: SocketAddr,
    server_pid: Option<u32>,
    clients: usize,
    senders: usize,
    window: usize,
    rate: Option<f64>,
    stalled: usize,
    size: usize,
    warmup: Duration,
    duration: Duration,
    concurrency: usize,
    prefix: String,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut it = std::env::args().skip(1);
    let mode = it
        .next()
        .context("usage: irc-check direct|fanout|idle [options]")?;
    let mut a = Args {
        mode,
        server: "127.0.0.1:6697".parse()?,
        server_pid: None,
        clients: 1000,
        senders: 10,
        window: 16,
        rate: None,
        stalled: 0,
        size: 100,
        warmup: Duration::from_secs(3),
        duration: Duration::from_secs(20),
        concurrency: 64,
        prefix: "q".into(),
    };
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--server" => a.server = value.parse()?,
            "--server-pid" => a.server_pid = Some(value.parse()?),
            "--clients" => a.clients = value.parse()?,
            "--pairs" => a.clients = 2 * value.parse::<usize>()?,
            "--senders" => a.senders = value.parse()?,
            "--window" => a.window = value.parse()?,
            "--rate" => a.rate = Some(value.parse()?),
            "--stalled" => a.stalled = value.parse()?,
            "--size" => a.size = value.parse()?,
            "--warmup" => a.warmup = Duration::from_secs_f64(value.parse()?),
            "--duration" => a.duration = Duration::from_secs_f64(value.parse()?),
            "--concurrency" => a.concurrency = value.parse()?,
            "--prefix" => a.prefix = value,
            other => bail!("unknown option {other}"),
        }
    }
    if a.mode == "direct" {
        a.senders = a.clients;
    }
    Ok(a)
}

/// Accepts any certificate (the bench servers are self-signed) but checks
/// the handshake signature as a real client does.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn connector() -> anyhow::Result<TlsConnector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

type Reader = BufReader<tokio::io::ReadHalf<tokio_rustls::client::TlsStream<TcpStream>>>;
type Writer = BufWriter<tokio::io::WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>>;

/// Connects, registers `nick` (and joins the channel): ready to chat.
async fn connect(
    tls: &TlsConnector,
    server: SocketAddr,
    nick: &str,
    join: bool,
) -> anyhow::Result<(Reader, Writer)> {
    let tcp = TcpStream::connect(server).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::IpAddress(server.ip().into());
    let stream = tls.connect(name, tcp).await?;
    let (r, w) = tokio::io::split(stream);
    let (mut r, mut w) = (BufReader::new(r), BufWriter::new(w));
    w.write_all(format!("NICK {nick}\r\nUSER {nick} 0 * :irc-check\r\n").as_bytes())
        .await?;
    w.flush().await?;
    wait_for(&mut r, &mut w, "001").await?;
    if join {
        w.write_all(format!("JOIN {CHANNEL}\r\n").as_bytes())
            .await?;
        w.flush().await?;
        wait_for(&mut r, &mut w, "366").await?;
    }
    Ok((r, w))
}

/// Reads lines (answering PING) until one whose command is `what`.
async fn wait_for(r: &mut Reader, w: &mut Writer, what: &str) -> anyhow::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).await? == 0 {
            bail!("server closed the connection waiting for {what}");
        }
        let text = String::from_utf8_lossy(&line);
        let mut words = text.split_whitespace();
        let mut command = words.next().unwrap_or("");
        if command.starts_with(':') {
            command = words.next().unwrap_or("");
        }
        match command {
            "PING" => {
                let token = text.trim_end().split_once(" ").map_or("", |(_, t)| t);
                w.write_all(format!("PONG {token}\r\n").as_bytes()).await?;
                w.flush().await?;
            }
            c if c == what => return Ok(()),
            "ERROR" | "433" | "432" | "465" | "471" | "473" | "474" => {
                bail!("refused: {}", text.trim_end())
            }
            _ => {}
        }
    }
}

/// CPU time (user + system) of a process, in clock ticks (1/100 s).
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Cpu {
    at: Instant,
    me: u64,
    server: Option<u64>,
}

impl Cpu {
    fn now(server: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            me: cpu_ticks("self").unwrap_or(0),
            server: server.and_then(|p| cpu_ticks(&p.to_string())),
        }
    }
    /// (own %, server %) of one core since `self`.
    fn since(&self, server: Option<u32>) -> (f64, Option<f64>) {
        let later = Cpu::now(server);
        let secs = later.at.duration_since(self.at).as_secs_f64();
        let pct = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / secs;
        (
            pct(self.me, later.me),
            self.server.zip(later.server).map(|(a, b)| pct(a, b)),
        )
    }
}

/// Counters shared by every connection.
#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    received: AtomicU64,
    gaps: AtomicU64,
    dups: AtomicU64,
    sending: AtomicBool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    match args.mode.as_str() {
        "direct" | "fanout" => chat(args).await,
        "idle" => idle(args).await,
        other => bail!("unknown mode {other}: direct, fanout or idle"),
    }
}

async fn connect_all(
    args: &Args,
    n: usize,
    join: bool,
) -> anyhow::Result<(Vec<(Reader, Writer)>, Vec<Duration>, Duration)> {
    let tls = connector()?;
    let gate = Arc::new(Semaphore::new(args.concurrency));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        let (tls, gate, server) = (tls.clone(), gate.clone(), args.server);
        let nick = format!("{}{i:05}", args.prefix);
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let t = Instant::now();
            let conn = connect(&tls, server, &nick, join).await?;
            anyhow::Ok((conn, t.elapsed()))
        }));
    }
    let mut conns = Vec::new();
    let mut times = Vec::new();
    for t in tasks {
        let (c, d) = t.await??;
        conns.push(c);
        times.push(d);
    }
    Ok((conns, times, started.elapsed()))
}

async fn chat(args: Args) -> anyhow::Result<()> {
    let direct = args.mode == "direct";
    let (conns, _, join_time) = connect_all(&args, args.clients, !direct).await?;
    // Stalled members join and never read again.
    let (stalled, _, _) = {
        let mut a = args.clone();
        a.prefix = format!("{}s", args.prefix);
        connect_all(&a, args.stalled, !direct).await?
    };
    let counts = Arc::new(Counts::default());
    counts.sending.store(true, Relaxed);
    let senders = args.senders.min(args.clients);
    let observer = |k: usize| if direct { k ^ 1 } else { args.clients - 1 };
    // Credits: the observer of sender k gives one back per message it gets.
    let mut credit_tx = Vec::new();
    let mut credit_rx = Vec::new();
    for _ in 0..senders {
        let (tx, rx) = mpsc::unbounded_channel::<()>();
        credit_tx.push(tx);
        credit_rx.push(Some(rx));
    }
    let credit_tx = Arc::new(credit_tx);
    let epoch = Instant::now();
    let mut handles = Vec::new();
    for (i, (mut r, mut w)) in conns.into_iter().enumerate() {
        let (reader_counts, credits) = (counts.clone(), credit_tx.clone());
        let observes: Vec<bool> = (0..senders).map(|k| observer(k) == i).collect();
        let windowed = args.rate.is_none();
        handles.push(tokio::spawn(async move {
            let counts = reader_counts;
            let mut last: HashMap<u32, u64> = HashMap::new();
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if line.starts_with(b"PING ") {
                    continue; // the writer half is the sender's; IRC servers tolerate a missed PONG for minutes
                }
                let Some(pos) = line.windows(3).position(|w| w == b" :X") else {
                    continue;
                };
                let body = &line[pos + 3..];
                let mut parts = body.split(|&b| b == b'/');
                let (Some(k), Some(seq)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let (Ok(k), Ok(seq)) = (
                    std::str::from_utf8(k).unwrap_or("").parse::<u32>(),
                    std::str::from_utf8(seq).unwrap_or("").parse::<u64>(),
                ) else {
                    continue;
                };
                let prev = last.entry(k).or_insert(0);
                if seq <= *prev {
                    counts.dups.fetch_add(1, Relaxed);
                    continue;
                }
                if seq > *prev + 1 {
                    counts.gaps.fetch_add(seq - *prev - 1, Relaxed);
                }
                *prev = seq;
                counts.received.fetch_add(1, Relaxed);
                if windowed && observes.get(k as usize).copied().unwrap_or(false) {
                    let _ = credits[k as usize].send(());
                }
            }
        }));
        if i >= senders {
            drop(w);
            continue;
        }
        let target = if direct {
            format!("{}{:05}", args.prefix, i ^ 1)
        } else {
            CHANNEL.to_owned()
        };
        let mut credits = credit_rx[i].take().context("credit channel")?;
        let (counts, size, window, rate) = (counts.clone(), args.size, args.window, args.rate);
        let per_sender = rate.map(|r| r / senders as f64);
        handles.push(tokio::spawn(async move {
            let mut seq = 0u64;
            let mut line = String::new();
            let write = |seq: u64, line: &mut String| {
                line.clear();
                use std::fmt::Write as _;
                let _ = write!(line, "PRIVMSG {target} :X{i}/{seq}/");
                while line.len() < size + 10 {
                    line.push('-');
                }
                line.push_str("\r\n");
            };
            let mut credit = window as u64;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            loop {
                if !counts.sending.load(Relaxed) {
                    break;
                }
                let n = match per_sender {
                    Some(r) => {
                        tick.tick().await;
                        let due = (epoch.elapsed().as_secs_f64() * r) as u64;
                        due.saturating_sub(seq)
                    }
                    None => {
                        if credit == 0 {
                            match tokio::time::timeout(Duration::from_millis(200), credits.recv())
                                .await
                            {
                                Ok(Some(())) => credit += 1,
                                Ok(None) => break,
                                Err(_) => continue,
                            }
                        }
                        while credits.try_recv().is_ok() {
                            credit += 1;
                        }
                        std::mem::take(&mut credit)
                    }
                };
                for _ in 0..n {
                    seq += 1;
                    write(seq, &mut line);
                    if w.write_all(line.as_bytes()).await.is_err() {
                        return;
                    }
                }
                if w.flush().await.is_err() {
                    return;
                }
                counts.sent.fetch_add(n, Relaxed);
            }
        }));
    }
    tokio::time::sleep(args.warmup).await;
    let (r0, s0) = (counts.received.load(Relaxed), counts.sent.load(Relaxed));
    let cpu = Cpu::now(args.server_pid);
    tokio::time::sleep(args.duration).await;
    let (r1, s1) = (counts.received.load(Relaxed), counts.sent.load(Relaxed));
    let (my_cpu, server_cpu) = cpu.since(args.server_pid);
    counts.sending.store(false, Relaxed);
    // Let writers see the flag, then drain.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let receivers = if direct {
        1
    } else {
        args.clients as u64 - 1 + args.stalled as u64
    };
    let live_receivers = if direct { 1 } else { args.clients as u64 - 1 };
    let expected = counts.sent.load(Relaxed) * live_receivers;
    let drain = Instant::now();
    while counts.received.load(Relaxed) < expected && drain.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = args.duration.as_secs_f64();
    let received = counts.received.load(Relaxed);
    let deliveries_per_s = (r1 - r0) as f64 / secs;
    println!(
        "{}",
        serde_json::json!({
            "tool": "irc-check",
            "mode": args.mode,
            "clients": args.clients,
            "senders": senders,
            "stalled": args.stalled,
            "receivers_per_message": receivers,
            "join_s": join_time.as_secs_f64(),
            "messages_per_s": (s1 - s0) as f64 / secs,
            "deliveries_per_s": deliveries_per_s,
            "sent": counts.sent.load(Relaxed),
            "lost": expected.saturating_sub(received),
            "gaps": counts.gaps.load(Relaxed),
            "dups": counts.dups.load(Relaxed),
            "check_cpu_pct": my_cpu,
            "server_cpu_pct": server_cpu,
            "check_cpu_us_per_delivery": my_cpu * 1e4 / deliveries_per_s.max(1.0),
        })
    );
    drop(stalled);
    for h in handles {
        h.abort();
    }
    Ok(())
}

async fn idle(args: Args) -> anyhow::Result<()> {
    let before = args.server_pid.and_then(rss_kib);
    let (conns, mut times, took) = connect_all(&args, args.clients, false).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = args.server_pid.and_then(rss_kib);
    times.sort();
    let pick = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    let per_conn = before
        .zip(after)
        .map(|(b, a)| a.saturating_sub(b) as f64 / args.clients as f64);
    println!(
        "{}",
        serde_json::json!({
            "tool": "irc-check",
            "mode": "idle",
            "clients": args.clients,
            "concurrency": args.concurrency,
            "connect_s": took.as_secs_f64(),
            "logins_per_s": args.clients as f64 / took.as_secs_f64(),
            "login_p50_ms": pick(0.5),
            "login_p99_ms": pick(0.99),
            "server_rss_kib_before": before,
            "server_rss_kib_after": after,
            "rss_per_conn_kib": per_conn,
        })
    );
    drop(conns);
    Ok(())
}
