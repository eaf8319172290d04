//! The bus between the nodes of a cluster: NATS.
//!
//! One task per node connects to NATS, publishes what the core hands it
//! (change log entries after their commit, presence notes) and forwards
//! what the other nodes publish to the core. NATS delivers at most once:
//! what it loses (a restart, a slow subscriber) the core reads from the
//! change log in the database, so the bus is only ever the fast path.
//! Subjects are named after the cluster's server id, so clusters sharing
//! one NATS server do not hear each other.

use anyhow::Context;
use futures_util::StreamExt;
use sotto_proto::ServerId;
use sotto_proto::cluster::NodeNote;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::core::{Op, Outgoing};
use crate::limiter::LoginLimiter;

/// The subjects of one cluster.
struct Subjects {
    log: String,
    presence: String,
}

impl Subjects {
    fn new(server_id: &ServerId) -> Self {
        let id: String = server_id.0.iter().map(|b| format!("{b:02x}")).collect();
        Self {
            log: format!("sotto.{id}.log"),
            presence: format!("sotto.{id}.presence"),
        }
    }
}

/// Connects to NATS at `url` and subscribes; the task that then runs the
/// bus until `stop`.
pub(crate) async fn connect(
    url: &str,
    server_id: &ServerId,
    node: u64,
    core: mpsc::Sender<Op>,
    outbox: mpsc::Receiver<Outgoing>,
    limiter: LoginLimiter,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let subjects = Subjects::new(server_id);
    let client = async_nats::ConnectOptions::new()
        .name(format!("sotto node {node:016x}"))
        .retry_on_initial_connect()
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => {
                    tracing::warn!(
                        "lost the connection to NATS: other nodes' messages arrive from the \
                         database (up to a second late) until it is back"
                    );
                }
                async_nats::Event::Connected => tracing::info!("connected to NATS"),
                other => tracing::debug!("NATS: {other}"),
            }
        })
        .connect(url)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))?;
    let log = client.subscribe(subjects.log.clone()).await?;
    let presence = client.subscribe(subjects.presence.clone()).await?;
    let hello = NodeNote::Hello { node }.encode()?;
    client
        .publish(subjects.presence.clone(), hello.into())
        .await?;
    Ok(tokio::spawn(run(
        client, subjects, node, log, presence, core, outbox, limiter, stop,
    )))
}

#[allow(clippy::too_many_arguments)]
async fn run(
    client: async_nats::Client,
    subjects: Subjects,
    node: u64,
    mut log: async_nats::Subscriber,
    mut presence: async_nats::Subscriber,
    core: mpsc::Sender<Op>,
    mut outbox: mpsc::Receiver<Outgoing>,
    limiter: LoginLimiter,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            Some(message) = log.next() => {
                if core.send(Op::Entry(message.payload.to_vec())).await.is_err() {
                    break;
                }
            }
            Some(message) = presence.next() => {
                match NodeNote::decode(&message.payload) {
                    // Counted here, in the order notes arrive.
                    Ok(NodeNote::Login { node: from_node, origin, account, outcome })
                        if from_node != node =>
                    {
                        limiter.count_remote(origin, account.as_deref(), outcome);
                    }
                    Ok(note) if !from(&note, node) => {
                        if core.send(Op::Presence(note)).await.is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("unreadable presence note on the bus: {e}"),
                }
            }
            out = outbox.recv() => {
                let (subject, bytes) = match out {
                    Some(Outgoing::Entry(bytes)) => (&subjects.log, bytes),
                    Some(Outgoing::Presence(bytes)) => (&subjects.presence, bytes),
                    None => break,
                };
                if let Err(e) = client.publish(subject.clone(), bytes.into()).await {
                    tracing::debug!("cannot publish on the bus: {e}");
                }
            }
        }
    }
    // The others take this node's users offline at once (if the bus is
    // there to tell them: a stopping node does not wait for it).
    let goodbye = async {
        if let Ok(bye) = (NodeNote::Bye { node }).encode() {
            let _ = client.publish(subjects.presence.clone(), bye.into()).await;
        }
        let _ = client.flush().await;
    };
    if tokio::time::timeout(GOODBYE_TIMEOUT, goodbye)
        .await
        .is_err()
    {
        tracing::info!("NATS is gone: stopping without saying goodbye on the bus");
    }
}

/// How long a stopping node tries to say goodbye on the bus.
const GOODBYE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether `note` is this node's own.
fn from(note: &NodeNote, node: u64) -> bool {
    match note {
        NodeNote::User { node: n, .. }
        | NodeNote::All { node: n, .. }
        | NodeNote::Hello { node: n }
        | NodeNote::Bye { node: n }
        | NodeNote::Login { node: n, .. } => *n == node,
    }
}
