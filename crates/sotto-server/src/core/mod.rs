//! The core: one thread that owns every write.
//!
//! All state changes (accounts, devices, rooms, memberships, messages,
//! cursors, presence) are operations sent to this thread. It takes whatever
//! operations are queued (up to [`MAX_BATCH`]), applies them to its
//! in-memory [`Directory`] and to one SQLite transaction, commits once, and
//! only then sends the replies and fans the new events out. That is group
//! commit: one fsync covers the whole batch, and nothing is acknowledged or
//! delivered before it is durable.
//!
//! Owning presence and connections here too means no locks anywhere on the
//! message path: the fanout reads the same state the writes just changed.
//! Delivery pushes each connection's share of a batch into its queue as one
//! entry, so a writer wakes once per batch. The queues are bounded in bytes;
//! a connection over its budget is disconnected (its messages stay stored and
//! are delivered at its next login), so one slow reader never slows a room.

/// Unwraps a validation result, or makes its error the request's reply.
macro_rules! check {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(e) => return Ok(Err(e)),
        }
    };
}

mod apply;
mod batch;
mod cluster;
mod devices;
mod groups;
mod handlers;
mod keys;
mod once;
mod replica;
mod sessions;
mod state;
mod usage;

use rustc_hash::FxHashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use sotto_proto::{
    Ack, DeviceId, ErrorCode, ErrorReply, Request, Response, SessionToken, SharedEvent, Status,
    Username,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::queue::QueueTx;
use crate::store::{LOBBY_ROOM, Writer};
pub(crate) use cluster::Outgoing;
use replica::Recorder;
pub(crate) use state::Directory;

/// Most operations applied in one transaction.
const MAX_BATCH: usize = 4096;

/// How often acknowledged positions are written. They change with every
/// delivery, so writing them per batch would double the write load; losing
/// the last interval in a crash only means those events are delivered again
/// (clients de-duplicate by room position).
pub(crate) const CURSOR_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Unwritten cursor updates that force a write before the interval is up.
pub(crate) const MAX_DIRTY_CURSORS: usize = 65_536;

/// Identifies one connection for the lifetime of the server.
pub(crate) type ConnId = u64;

/// What a connection's writer task is asked to send.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A fully encoded frame (a reply).
    Frame(Bytes),
    /// A reply to a request of a committed batch, encoded by the writer
    /// (off the core thread). A stored message's reply also tells the
    /// writer that this connection has its own message at that position.
    Reply(Box<PendingReply>),
    /// An event not tied to a stored position (presence, lobby, shutdown):
    /// framed with the connection's next sequence number.
    Event(SharedEvent),
    /// A stored room event; skipped if already delivered on this
    /// connection, preceded by any missing ones read from the store.
    Room {
        room_id: u64,
        seq: u64,
        event: SharedEvent,
    },
    /// Send stored events of these ranges, then `CaughtUp` if asked.
    Sync {
        ranges: Vec<SyncRange>,
        caught_up: bool,
    },
    /// Flush and close.
    Close,
    /// Several of the above for one connection from one committed batch,
    /// queued as one entry so the writer wakes once and writes them with
    /// few TLS records and system calls.
    Batch(Vec<Outbound>),
}

/// A reply waiting for its batch to commit.
#[derive(Debug)]
pub(crate) struct PendingReply {
    pub id: u64,
    pub result: Result<Response, ErrorReply>,
}

impl PendingReply {
    /// The room position a successful send stored (not for the lobby,
    /// which keeps no per-connection positions).
    pub fn stored(&self) -> Option<(u64, u64)> {
        match &self.result {
            Ok(Response::Sent { room_id, seq, .. }) if *room_id != LOBBY_ROOM => {
                Some((*room_id, *seq))
            }
            _ => None,
        }
    }
}

/// Events `after < seq <= up_to` of a room to send from the store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SyncRange {
    pub room_id: u64,
    pub after: u64,
    pub up_to: u64,
}

/// The core's handle on a connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnHandle {
    pub id: ConnId,
    /// The connection writer's queue, bounded in bytes.
    pub tx: QueueTx,
    /// Cancelled to disconnect it (slow consumer, shutdown).
    pub cancel: CancellationToken,
}

impl ConnHandle {
    /// Queues `out` for the writer. A connection that has fallen too far
    /// behind (its queue is over budget) is a slow consumer: it is
    /// disconnected, and catches up from the store when it returns.
    pub fn send(&self, out: Outbound) {
        if self.tx.push(out).is_err() && !self.cancel.is_cancelled() {
            tracing::info!(
                conn = self.id,
                "outgoing queue full: disconnecting slow client"
            );
            self.cancel.cancel();
        }
    }
}

/// An operation for the core thread.
#[derive(Debug)]
pub(crate) enum Op {
    /// Create an account with its OPAQUE registration record.
    Register {
        name: Username,
        record: Vec<u8>,
        reply: oneshot::Sender<Result<i64, ErrorReply>>,
    },
    /// Replace an account's OPAQUE record (a password change, or an
    /// account moving over from its old hash, which is forgotten).
    SetPassword {
        user_id: i64,
        record: Vec<u8>,
        reply: oneshot::Sender<Result<(), ErrorReply>>,
    },
    /// Log a connection in: register it, reply `LoggedIn` to `req_id`, then
    /// queue the backlog of everything the device has not acknowledged.
    Attach {
        conn: ConnHandle,
        user_id: i64,
        device: DeviceId,
        registered: bool,
        /// Returned in `LoggedIn`.
        session_token: SessionToken,
        /// Set on password logins: the new token's SHA-256, which replaces
        /// the device's previous one.
        token_hash: Option<[u8; 32]>,
        req_id: u64,
        reply: oneshot::Sender<bool>,
    },
    /// A connection closed.
    Detach { conn_id: ConnId },
    /// A request from a logged-in connection.
    Request {
        conn_id: ConnId,
        req_id: u64,
        request: Request,
    },
    /// Delivery acknowledgements of one connection.
    Acks { conn_id: ConnId, acks: Vec<Ack> },
    /// Tell every connection the server is stopping, then close them.
    Shutdown { reply: oneshot::Sender<()> },
    /// Sent periodically so acknowledgements are written even when idle.
    Tick,
    /// A change log entry another node published (in a cluster).
    Entry(Vec<u8>),
    /// A presence note from another node (in a cluster).
    Presence(sotto_proto::cluster::NodeNote),
}

/// What an `Attach` carries about the login.
#[derive(Debug)]
struct AttachLogin {
    user: i64,
    device: DeviceId,
    registered: bool,
    session_token: SessionToken,
    token_hash: Option<[u8; 32]>,
    req_id: u64,
}

/// A logged-in connection.
#[derive(Debug)]
struct Conn {
    user: i64,
    device_key: i64,
    device: DeviceId,
    handle: ConnHandle,
    /// Its device was removed: it is being closed, and may do nothing more.
    removed: bool,
}

/// A user with at least one connection.
#[derive(Debug)]
struct Online {
    status: Status,
    conns: Vec<ConnId>,
}

/// What a batch does once (and only if) it commits.
#[derive(Default)]
struct Effects {
    /// Deliveries and replies per connection, each in the order the batch
    /// produced them, so a connection sees events and replies in the order
    /// they happened.
    items: FxHashMap<ConnId, Vec<Outbound>>,
    /// Connections in the order the batch first addressed them.
    order: Vec<ConnId>,
    /// How many items in all.
    count: usize,
    /// Completions for callers waiting on a oneshot; called with `true`
    /// after a commit, `false` if the batch failed.
    completions: Vec<Box<dyn FnOnce(bool) + Send>>,
    /// The connection whose request is being applied: its own messages are
    /// not echoed back to it (its reply says they are stored).
    current_conn: Option<ConnId>,
    /// Connections registered by this batch, unregistered again if it fails.
    attached: Vec<ConnId>,
    /// An event, then `Close`, for the connection whose request is being
    /// applied, once its reply is queued (a device that removed itself).
    after_reply: Vec<(ConnId, SharedEvent)>,
}

impl Effects {
    /// Sends `result` to `reply` once the batch is committed, or a storage
    /// error if the commit fails.
    fn reply_once_committed<T: Send + 'static>(
        &mut self,
        reply: oneshot::Sender<Result<T, ErrorReply>>,
        result: Result<T, ErrorReply>,
    ) {
        self.completions.push(Box::new(move |ok| {
            let _ = reply.send(if ok {
                result
            } else {
                Err(err(ErrorCode::Internal, "storage failed; try again"))
            });
        }));
    }

    fn send(&mut self, conn: ConnId, item: Outbound) {
        self.count += 1;
        self.items
            .entry(conn)
            .or_insert_with(|| {
                self.order.push(conn);
                Vec::new()
            })
            .push(item);
    }

    fn reply(&mut self, conn: ConnId, id: u64, result: Result<Response, ErrorReply>) {
        self.send(conn, Outbound::Reply(Box::new(PendingReply { id, result })));
    }

    /// Each connection's items, in the order connections were addressed.
    fn drain_by_conn(&mut self) -> impl Iterator<Item = (ConnId, Vec<Outbound>)> + '_ {
        self.count = 0;
        let items = &mut self.items;
        self.order
            .drain(..)
            .filter_map(move |conn| Some((conn, items.remove(&conn)?)))
    }
}

/// The core thread's state.
pub(crate) struct Core {
    /// The only access to storage that writes.
    db: Recorder,
    /// This node's cluster, if it is in one.
    cluster: Option<cluster::Cluster>,
    #[cfg(feature = "fault-injection")]
    pub(crate) crash: std::sync::Arc<std::sync::atomic::AtomicBool>,
    dir: Directory,
    conns: FxHashMap<ConnId, Conn>,
    online: FxHashMap<i64, Online>,
    /// Names of online users, sorted, for listing the first few cheaply.
    online_names: std::collections::BTreeSet<Username>,
    /// Above this many users online, presence changes are not broadcast:
    /// each would cost one delivery per connection.
    presence_limit: usize,
    /// Cursor updates not yet written.
    dirty_cursors: FxHashMap<(i64, u64), u64>,
    /// When cursors were last written.
    cursors_flushed: std::time::Instant,
    /// Set by `Shutdown`: further writes are refused.
    closing: bool,
    /// A commit failed and the state could not be read again (the
    /// database is unreachable): nothing is applied until it is.
    stale: bool,
    quotas: crate::Quotas,
    retention: crate::Retention,
    /// Bytes stored by room and by sender.
    usage: usage::Usage,
    /// When the retention policy was last applied.
    retention_applied: Option<std::time::Instant>,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn encode_reply(id: u64, result: Result<Response, ErrorReply>) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    match sotto_proto::frame::encode_reply(&mut buf, id, result) {
        Ok(()) => Some(buf.freeze()),
        // Answered with an error instead.
        Err(e) => {
            tracing::error!("cannot encode reply {id} (answered with an error): {e}");
            (!buf.is_empty()).then(|| buf.freeze())
        }
    }
}

fn err(code: ErrorCode, message: impl Into<String>) -> ErrorReply {
    ErrorReply::new(code, message)
}

impl Core {
    /// Loads state from `db`.
    pub fn new(
        db: Box<dyn Writer>,
        presence_limit: usize,
        quotas: crate::Quotas,
        retention: crate::Retention,
        cluster: Option<(u64, mpsc::Sender<Outgoing>)>,
    ) -> anyhow::Result<Self> {
        let mut db = Recorder::new(db, cluster.is_some());
        let snapshot = db.snapshot()?;
        let dir = Directory::load(&snapshot);
        let usage = usage::Usage::load(&snapshot);
        let cluster =
            cluster.map(|(node, outbox)| cluster::Cluster::new(node, snapshot.epoch, outbox));
        Ok(Self {
            db,
            cluster,
            dir,
            conns: FxHashMap::default(),
            online: FxHashMap::default(),
            online_names: std::collections::BTreeSet::new(),
            presence_limit,
            dirty_cursors: FxHashMap::default(),
            cursors_flushed: std::time::Instant::now(),
            closing: false,
            stale: false,
            quotas,
            retention,
            usage,
            retention_applied: None,
            #[cfg(feature = "fault-injection")]
            crash: Default::default(),
        })
    }

    /// Runs until every sender of `rx` is gone.
    pub fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            #[cfg(feature = "fault-injection")]
            #[allow(clippy::panic)]
            if self.crash.swap(false, std::sync::atomic::Ordering::SeqCst) {
                panic!("fault injected by a test");
            }
            self.process(&mut batch);
        }
        tracing::debug!("core stopped");
    }

    /// Sends replies and events of a committed batch: each connection gets
    /// its share as one queue entry, so its writer wakes once per batch
    /// rather than once per message.
    fn dispatch(&mut self, mut fx: Effects) {
        for done in std::mem::take(&mut fx.completions) {
            done(true);
        }
        for (conn, mut items) in fx.drain_by_conn() {
            let out = match (items.pop(), items.is_empty()) {
                (None, _) => continue,
                (Some(one), true) => one,
                (Some(last), false) => {
                    items.push(last);
                    Outbound::Batch(items)
                }
            };
            self.deliver(conn, out);
        }
    }

    fn deliver(&self, conn_id: ConnId, out: Outbound) {
        if let Some(conn) = self.conns.get(&conn_id) {
            conn.handle.send(out);
        }
    }
}
