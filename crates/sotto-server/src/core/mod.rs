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
    Ack, DeviceId, ErrorCode, ErrorReply, EventBody, EventKind, Request, Response, RoomContent,
    RoomEvent, SessionToken, SharedEvent, Status, Username,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::queue::QueueTx;
use crate::store::{LOBBY_ROOM, NewEvent, RoomKind, Writer};
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

    fn process(&mut self, batch: &mut Vec<Op>) {
        if self.stale {
            self.reload();
            if self.stale {
                self.refuse(batch);
                return;
            }
            tracing::info!("the database is back: serving again");
        }
        if self.cluster.is_some() {
            self.take_cluster_ops(batch);
            if batch.is_empty() {
                return;
            }
        }
        let mut fx = Effects::default();
        let ops = batch.len();
        let started = std::time::Instant::now();
        let mut applied = started;
        let result = self.db.begin().and_then(|()| {
            self.lock_and_catch_up()?;
            for op in batch.drain(..) {
                self.apply(op, &mut fx)?;
            }
            self.flush_cursors()?;
            self.apply_retention()?;
            let entry = self.seal_entry()?;
            applied = std::time::Instant::now();
            self.db.commit()?;
            Ok(entry)
        });
        match result {
            Ok(entry) => {
                if let Some((epoch, bytes)) = entry {
                    self.committed_entry(epoch, bytes);
                }
                let committed = std::time::Instant::now();
                let deliveries = fx.count;
                self.dispatch(fx);
                tracing::trace!(
                    ops,
                    deliveries,
                    apply_us = (applied - started).as_micros() as u64,
                    commit_us = (committed - applied).as_micros() as u64,
                    dispatch_us = committed.elapsed().as_micros() as u64,
                    "batch"
                );
            }
            Err(e) => {
                tracing::error!("commit failed, batch rejected: {e:#}");
                self.db.rollback();
                self.dirty_cursors.clear();
                self.reload();
                // Operations not reached (the transaction did not even
                // begin) are answered too.
                self.refuse(batch);
                // Deliveries are dropped; every request gets an error.
                for (conn, items) in fx.drain_by_conn() {
                    for item in items {
                        let Outbound::Reply(mut reply) = item else {
                            continue;
                        };
                        reply.result = Err(err(
                            ErrorCode::Internal,
                            "storage failed; nothing was saved, try again",
                        ));
                        if let Some(c) = self.conns.get(&conn) {
                            c.handle.send(Outbound::Reply(reply));
                        }
                    }
                }
                for conn_id in fx.attached.drain(..) {
                    self.detach(conn_id, &mut Effects::default());
                }
                for done in fx.completions {
                    done(false);
                }
            }
        }
        batch.clear();
    }

    /// Reloads the state from the database (after a failed commit, or a
    /// node that fell behind the change log).
    fn reload(&mut self) {
        match self.db.snapshot() {
            Ok(snapshot) => {
                self.dir = Directory::load(&snapshot);
                self.usage = usage::Usage::load(&snapshot);
                if let Some(cluster) = &mut self.cluster {
                    cluster.applied = snapshot.epoch;
                }
                self.stale = false;
            }
            Err(e) => {
                if !self.stale {
                    tracing::error!(
                        "cannot read the state from the database ({e:#}): requests are refused \
                         until it is reachable again"
                    );
                }
                self.stale = true;
            }
        }
    }

    /// While the database is unreachable: every request is answered with
    /// an error saying so, and nothing is applied; connections may still
    /// close and the server may still stop.
    fn refuse(&mut self, batch: &mut Vec<Op>) {
        let unavailable = || {
            err(
                ErrorCode::Internal,
                "the server cannot reach its database: nothing can be saved now; try again \
                 shortly",
            )
        };
        let mut fx = Effects::default();
        for op in batch.drain(..) {
            match op {
                Op::Register { reply, .. } => {
                    let _ = reply.send(Err(unavailable()));
                }
                Op::SetPassword { reply, .. } => {
                    let _ = reply.send(Err(unavailable()));
                }
                Op::Attach {
                    conn,
                    req_id,
                    reply,
                    ..
                } => {
                    if let Some(frame) = encode_reply(req_id, Err(unavailable())) {
                        conn.send(Outbound::Frame(frame));
                    }
                    let _ = reply.send(false);
                }
                Op::Request {
                    conn_id, req_id, ..
                } => fx.reply(conn_id, req_id, Err(unavailable())),
                op @ (Op::Detach { .. } | Op::Shutdown { .. }) => {
                    // Neither writes.
                    if let Err(e) = self.apply(op, &mut fx) {
                        tracing::error!("{e:#}");
                    }
                }
                // Delivered again later; the bus's entries are read from
                // the log once the database is back.
                Op::Acks { .. } | Op::Tick | Op::Entry(_) | Op::Presence(_) => {}
            }
        }
        self.dispatch(fx);
    }

    /// In a cluster: applies the bus's entries and presence notes, which
    /// need no transaction, and takes them out of the batch; a tick also
    /// says who is online here and takes silent nodes' users offline.
    fn take_cluster_ops(&mut self, batch: &mut Vec<Op>) {
        let mut entries = Vec::new();
        let mut notes = Vec::new();
        let mut ticked = false;
        batch.retain_mut(|op| match op {
            Op::Entry(bytes) => {
                entries.push(std::mem::take(bytes));
                false
            }
            Op::Presence(note) => {
                notes.push(note.clone());
                false
            }
            Op::Tick => {
                ticked = true;
                true
            }
            _ => true,
        });
        if !entries.is_empty() {
            self.apply_bus_entries(entries);
        }
        for note in notes {
            self.apply_presence(note);
        }
        if ticked {
            self.expire_nodes();
            self.publish_all_presence();
        }
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

    fn apply(&mut self, op: Op, fx: &mut Effects) -> anyhow::Result<()> {
        match op {
            Op::Register {
                name,
                record,
                reply,
            } => {
                let result = self.register(name, &record)?;
                fx.reply_once_committed(reply, result);
            }
            Op::SetPassword {
                user_id,
                record,
                reply,
            } => {
                let result = self.set_password(user_id, &record)?;
                fx.reply_once_committed(reply, result);
            }
            Op::Attach {
                conn,
                user_id,
                device,
                registered,
                session_token,
                token_hash,
                req_id,
                reply,
            } => {
                let login = AttachLogin {
                    user: user_id,
                    device,
                    registered,
                    session_token,
                    token_hash,
                    req_id,
                };
                let ok = self.attach(conn, login, fx)?;
                fx.completions.push(Box::new(move |committed| {
                    let _ = reply.send(ok && committed);
                }));
            }
            Op::Detach { conn_id } => self.detach(conn_id, fx),
            // Taken out of the batch before (`take_cluster_ops`).
            Op::Tick | Op::Entry(_) | Op::Presence(_) => {}
            Op::Acks { conn_id, acks } => {
                for ack in acks {
                    self.ack(conn_id, ack);
                }
            }
            Op::Request {
                conn_id,
                req_id,
                request,
            } => {
                let Some(conn) = self.conns.get(&conn_id) else {
                    return Ok(());
                };
                if conn.removed {
                    fx.reply(
                        conn_id,
                        req_id,
                        Err(err(ErrorCode::NotLoggedIn, "this device was removed")),
                    );
                    return Ok(());
                }
                let (user, device) = (conn.user, conn.device.clone());
                fx.current_conn = Some(conn_id);
                let result = self.request(conn_id, user, &device, request, fx);
                fx.current_conn = None;
                let result = result?;
                fx.reply(conn_id, req_id, result);
                for (conn, event) in std::mem::take(&mut fx.after_reply) {
                    fx.send(conn, Outbound::Event(event));
                    fx.send(conn, Outbound::Close);
                }
            }
            Op::Shutdown { reply } => {
                self.closing = true;
                let event = EventBody {
                    ts: now_ms(),
                    kind: EventKind::Shutdown {
                        message: "the server is shutting down".into(),
                    },
                };
                if let Ok(shared) = SharedEvent::encode(&event) {
                    for id in self.conns.keys() {
                        fx.send(*id, Outbound::Event(shared.clone()));
                        fx.send(*id, Outbound::Close);
                    }
                }
                fx.completions.push(Box::new(move |_| {
                    let _ = reply.send(());
                }));
            }
        }
        Ok(())
    }

    /// Appends an event to a room's timeline (in the open transaction) and
    /// queues its delivery to every online member.
    fn append(
        &mut self,
        fx: &mut Effects,
        room_id: u64,
        sender: i64,
        content: RoomContent,
    ) -> anyhow::Result<(u64, i64)> {
        let sender_name = self
            .dir
            .user_names
            .get(&sender)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("unknown sender {sender}"))?;
        let room = self
            .dir
            .rooms
            .get_mut(&room_id)
            .ok_or_else(|| anyhow::anyhow!("unknown room {room_id}"))?;
        let seq = room.last_seq + 1;
        let ts = now_ms();
        let body = EventBody {
            ts,
            kind: EventKind::Room(RoomEvent {
                room_id,
                room: room.reference.clone(),
                seq,
                sender: sender_name,
                content,
            }),
        };
        let shared = SharedEvent::encode(&body)?;
        self.db.insert_event(NewEvent {
            room_id,
            seq,
            ts,
            body: shared.as_bytes().as_ref(),
            sender,
        })?;
        room.last_seq = seq;
        self.usage
            .added(room_id, sender, seq, ts, shared.as_bytes().len() as u64);
        let origin = fx.current_conn;
        self.fan_out(fx, room_id, seq, sender, &shared, origin);
        // The sending device has its own message: move its cursor on if
        // it had everything before it. (Not for the lobby, which keeps no
        // positions, or a to-device queue, which only its own device reads.)
        let room = self.room(room_id)?;
        if room.kind != RoomKind::Lobby
            && room.device.is_none()
            && let Some(conn) = origin.and_then(|c| self.conns.get(&c))
        {
            let key = (conn.device_key, room_id);
            if self.dir.cursor(sender, conn.device_key, room_id) + 1 == seq {
                self.dir.cursors.insert(key, seq);
                self.dirty_cursors.insert(key, seq);
            }
        }
        Ok((seq, ts))
    }

    /// Queues a stored event for this node's connections that see it:
    /// everyone for the lobby, else the members' connections (direct
    /// messages held back from a member in dnd, a to-device queue's for
    /// its device only), but not `origin`'s, whose reply says it is stored.
    fn fan_out(
        &self,
        fx: &mut Effects,
        room_id: u64,
        seq: u64,
        sender: i64,
        shared: &SharedEvent,
        origin: Option<ConnId>,
    ) {
        let Some(room) = self.dir.rooms.get(&room_id) else {
            return;
        };
        if room.kind == RoomKind::Lobby {
            for id in self.conns.keys().filter(|id| Some(**id) != origin) {
                fx.send(*id, Outbound::Event(shared.clone()));
            }
            return;
        }
        for user in room.members.keys() {
            let Some(online) = self.online.get(user) else {
                continue;
            };
            if room.kind == RoomKind::Direct && online.status == Status::Dnd && *user != sender {
                continue;
            }
            let for_device = |c: &&ConnId| {
                room.device.is_none_or(|device| {
                    self.conns
                        .get(*c)
                        .is_some_and(|conn| conn.device_key == device)
                })
            };
            for conn in online
                .conns
                .iter()
                .filter(|c| Some(**c) != origin)
                .filter(for_device)
            {
                fx.send(
                    *conn,
                    Outbound::Room {
                        room_id,
                        seq,
                        event: shared.clone(),
                    },
                );
            }
        }
    }
}
