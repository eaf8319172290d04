//! The bus between the nodes of a cluster: NATS.
//!
//! One task per node connects to NATS, publishes what the core hands it
//! (change log entries after their commit, presence notes) and forwards
//! what the other nodes publish to the core. NATS delivers at most once:
//! what it loses (a restart, a slow subscriber) the core reads from the
//! change log in the database, so the bus is only ever the fast path.
//! Subjects are named after the cluster's server id, so clusters sharing
//! one NATS server do not hear each other.
//!
//! Every message is signed with the cluster's bus key (HMAC-SHA256 over
//! its subject and body), which the nodes read from the database: anyone
//! else who can reach the NATS server cannot make a node apply a change,
//! show a user online or count a login, only delay or drop messages (which
//! the change log makes up for).

use anyhow::Context;
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use sha2::Sha256;
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

/// Signs and checks bus messages with the cluster's key.
#[derive(Clone)]
pub(crate) struct Signer {
    key: [u8; 32],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

/// Bytes of a message's signature (it comes first).
const TAG_LEN: usize = 32;

impl Signer {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self, subject: &str, body: &[u8]) -> Hmac<Sha256> {
        // Any key length is accepted, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(&(subject.len() as u64).to_be_bytes());
        mac.update(subject.as_bytes());
        mac.update(body);
        mac
    }

    /// The message to publish: its signature, then `body`.
    pub fn seal(&self, subject: &str, body: &[u8]) -> Vec<u8> {
        let tag = self.mac(subject, body).finalize().into_bytes();
        let mut message = Vec::with_capacity(TAG_LEN + body.len());
        message.extend_from_slice(&tag);
        message.extend_from_slice(body);
        message
    }

    /// The body of a message signed with this key for `subject`, if it is.
    pub fn open<'a>(&self, subject: &str, message: &'a [u8]) -> Option<&'a [u8]> {
        let (tag, body) = message.split_at_checked(TAG_LEN)?;
        self.mac(subject, body).verify_slice(tag).ok()?;
        Some(body)
    }
}

/// Connects to NATS at `url` and subscribes; the task that then runs the
/// bus until `stop`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn connect(
    url: &str,
    server_id: &ServerId,
    key: [u8; 32],
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
    let signer = Signer::new(key);
    let hello = NodeNote::Hello { node }.encode()?;
    client
        .publish(
            subjects.presence.clone(),
            signer.seal(&subjects.presence, &hello).into(),
        )
        .await?;
    Ok(tokio::spawn(run(
        client, subjects, signer, node, log, presence, core, outbox, limiter, stop,
    )))
}

#[allow(clippy::too_many_arguments)]
async fn run(
    client: async_nats::Client,
    subjects: Subjects,
    signer: Signer,
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
                let Some(body) = signer.open(&subjects.log, &message.payload) else {
                    tracing::warn!("a log entry on the bus is not signed by this cluster: ignored");
                    continue;
                };
                if core.send(Op::Entry(body.to_vec())).await.is_err() {
                    break;
                }
            }
            Some(message) = presence.next() => {
                let Some(body) = signer.open(&subjects.presence, &message.payload) else {
                    tracing::warn!("a note on the bus is not signed by this cluster: ignored");
                    continue;
                };
                match NodeNote::decode(body) {
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
                let message = signer.seal(subject, &bytes);
                if let Err(e) = client.publish(subject.clone(), message.into()).await {
                    tracing::debug!("cannot publish on the bus: {e}");
                }
            }
        }
    }
    // The others take this node's users offline at once (if the bus is
    // there to tell them: a stopping node does not wait for it).
    let goodbye = async {
        if let Ok(bye) = (NodeNote::Bye { node }).encode() {
            let message = signer.seal(&subjects.presence, &bye);
            let _ = client
                .publish(subjects.presence.clone(), message.into())
                .await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_messages_signed_with_the_key_for_the_subject_are_opened() {
        let signer = Signer::new([7; 32]);
        let sealed = signer.seal("sotto.x.log", b"entry");
        assert_eq!(signer.open("sotto.x.log", &sealed), Some(&b"entry"[..]));
        // Another subject, another key, a changed byte, no signature.
        assert_eq!(signer.open("sotto.x.presence", &sealed), None);
        assert_eq!(Signer::new([8; 32]).open("sotto.x.log", &sealed), None);
        let mut changed = sealed.clone();
        if let Some(last) = changed.last_mut() {
            *last ^= 1;
        }
        assert_eq!(signer.open("sotto.x.log", &changed), None);
        assert_eq!(signer.open("sotto.x.log", b"entry"), None);
    }
}
