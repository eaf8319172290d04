//! The background task that owns a logged-in connection.
//!
//! Two tasks per connection: the reader task splits frames off the TLS read
//! half and passes them on in batches (one batch per drained read buffer);
//! the actor owns the write half and the pending-request map. The actor
//! acknowledges, once per room, the highest event it handed to the front
//! end, after saving what those events changed (room keys, sessions,
//! history, positions) in one transaction, and at most every
//! [`ACK_INTERVAL`]: a burst of messages costs one save and one ack per room
//! rather than one per message, while a lone message is acknowledged at once.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use bytes::BytesMut;
use sotto_proto::{
    Ack, ClientFrame, DeviceId, EventBody, GroupName, Request, Response, SealedBox, ServerFrame,
    Username,
};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::crypto::{SharedCrypto, Tag, lock};
use crate::event::{ClientEvent, Decoded, Me, Position, decode};
use crate::history::Entry;
use crate::{ClientError, HANDSHAKE_TIMEOUT, MAX_PENDING_REQUESTS, MAX_SEALED_KEPT};
use sotto_proto::limits::ACK_INTERVAL;

/// Own lobby messages remembered so they are not shown back.
const MAX_OWN_LOBBY: usize = 1024;
/// Quiet for this long, the actor pings the server.
pub(crate) const PING_AFTER: std::time::Duration = std::time::Duration::from_secs(30);
/// A ping unanswered (nothing at all heard) for this long: the connection
/// is dead, and the actor reconnects.
pub(crate) const PING_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Where the actor keeps what it saves outside the local store.
#[derive(Debug)]
pub(crate) struct Paths {
    /// Received files.
    pub downloads: PathBuf,
    /// This device's id: forgotten when the device is removed from the
    /// account, so the next login is a new device.
    pub device_file: PathBuf,
}

pub(crate) use io::{Upload, read_frames, write_frame, write_frame_reporting};

/// A reply channel for a request.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

/// What the handle asks of the actor.
#[derive(Debug)]
pub(crate) enum Op {
    /// Send a request; the raw response comes back.
    Request {
        request: Request,
        reply: Reply<Response>,
    },
    /// Send a message; once the server stored it, keep `entry` in the
    /// local history.
    Send {
        request: Request,
        entry: Box<Entry>,
        reply: Reply<Response>,
    },
    /// Fetch history (older than `before`, if given) and decode it like
    /// live events.
    History {
        limit: u32,
        before: Option<sotto_proto::HistoryCursor>,
        reply: Reply<Vec<ClientEvent>>,
    },
    /// A copy of a kept sealed message, to open outside the actor.
    GetSealed { id: u64, reply: Reply<StoredSealed> },
    /// Commit what the end-to-end state changed, between two events.
    Save { reply: Reply<()> },
    /// Close the connection (TLS close_notify) and stop.
    Quit { reply: oneshot::Sender<()> },
    /// Show an event from the handle (a security notice).
    Emit(ClientEvent),
    /// Save a waiting file (`@accept ID`): its name, path and size.
    AcceptFile {
        id: u64,
        reply: Reply<(String, PathBuf, u64)>,
    },
    /// Discard a waiting file (`@reject ID`).
    RejectFile {
        id: u64,
        reply: Reply<crate::local_store::Offer>,
    },
}

/// A sealed message kept until the user opens it.
#[derive(Debug, Clone)]
pub(crate) struct StoredSealed {
    pub from: Username,
    pub group: Option<GroupName>,
    pub ts: i64,
    pub sealed: SealedBox,
}

/// A request waiting for its reply.
#[derive(Debug)]
enum Pending {
    Response(Reply<Response>),
    /// A message sent: its history entry, kept once it is stored.
    Sent(Reply<Response>, Box<Entry>),
    /// History from the server, to merge with the local history.
    History(Box<history::HistoryRead>),
    /// A request the end-to-end state asked for; the reply goes back to it.
    Crypto(Tag),
    /// Joining a group a verified contact invited this user to.
    AutoJoin(GroupName),
    /// Setting the user's status again on a new connection.
    Restore,
    /// A keepalive ping.
    Ping,
    /// The lobby messages missed since the last connection; `baseline`:
    /// this device never saw the lobby, only its newest position is wanted.
    LobbyCatchUp {
        baseline: bool,
    },
}

impl Pending {
    fn fail(self, error: ClientError) {
        // The caller may have given up (timeout); nobody to tell then.
        match self {
            Pending::Response(tx) | Pending::Sent(tx, _) => {
                let _ = tx.send(Err(error));
            }
            Pending::History(read) => {
                let _ = read.reply.send(Err(error));
            }
            Pending::Crypto(_)
            | Pending::AutoJoin(_)
            | Pending::Restore
            | Pending::Ping
            | Pending::LobbyCatchUp { .. } => {}
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Pending::Response(tx) | Pending::Sent(tx, _) => tx.is_closed(),
            Pending::History(read) => read.reply.is_closed(),
            Pending::Crypto(_)
            | Pending::AutoJoin(_)
            | Pending::Restore
            | Pending::Ping
            | Pending::LobbyCatchUp { .. } => false,
        }
    }
}

/// What the reader task passes on: the frames of one read, or why it stopped.
pub(crate) type Batch = Result<Vec<ServerFrame>, String>;

/// The actor's state.
#[derive(Debug)]
pub(crate) struct Actor<W> {
    /// Who is logged in: to recognize echoes and the other party of a direct room.
    me: Username,
    /// This device: echoes from it are not shown again.
    device: DeviceId,
    /// Where received files and the device id are kept.
    paths: Paths,
    /// The connection's write half; only the actor writes.
    writer: W,
    /// Reused encoding buffer.
    wbuf: BytesMut,
    /// Commands from the [`crate::Client`] handles.
    ops: mpsc::Receiver<Op>,
    /// Frames from the reader task.
    frames: mpsc::Receiver<Batch>,
    /// Events for the front end.
    events: mpsc::Sender<ClientEvent>,
    /// The reader task, stopped when the actor stops.
    reader: Option<JoinHandle<()>>,
    /// Requests awaiting replies, by request id.
    pending: HashMap<u64, Pending>,
    /// The next request id (the login used 1).
    next_request: u64,
    /// The last per-connection event sequence number, to notice gaps.
    conn_seq: u64,
    /// While the lobby messages missed since the last connection are
    /// asked for: the live lobby events that came meanwhile, shown after them.
    lobby_catch_up: Option<Vec<EventBody>>,
    /// Sealed messages by local id, oldest first.
    sealed: BTreeMap<u64, StoredSealed>,
    /// The next local id for a sealed message.
    next_sealed: u64,
    /// The local id of each kept sealed message, by room position: the same
    /// message keeps its number, live and in every `@history`.
    sealed_at: HashMap<(u64, u64), u64>,
    /// Files already saved, by (room, seq), so history does not save them twice.
    saved: HashMap<(u64, u64), (String, PathBuf, u64)>,
    /// The server's shutdown message, or the notice that this device was
    /// removed: the reason of the disconnection that follows.
    shutdown_message: Option<String>,
    /// This device's end-to-end state (shared with the handle).
    crypto: SharedCrypto,
    /// The highest handled event per room, not acknowledged yet.
    unacked: BTreeMap<u64, u64>,
    /// When acknowledgements were last sent.
    acked_at: tokio::time::Instant,
    /// When to send the acknowledgements held back (at most one save and
    /// ack per [`ACK_INTERVAL`]).
    ack_due: Option<tokio::time::Instant>,
    /// How to connect again when the connection drops (`None`: the
    /// session ends with it).
    redial: Option<std::sync::Arc<dyn crate::reconnect::Redial<W>>>,
    /// Messages in flight sent with [`Request::Once`], by request id: sent
    /// again on the next connection if the reply never came (the server
    /// stores each once).
    resend: HashMap<u64, Request>,
    /// This device was removed from the account: no reconnecting.
    removed: bool,
    /// Commands held while reconnecting that a connection which broke
    /// again did not get to send: the next one does.
    carried: std::collections::VecDeque<Op>,
    /// When a frame last came in, and whether the server was pinged since:
    /// a connection that died silently (a laptop asleep, a NAT that
    /// forgot it) is noticed within [`PING_AFTER`] + [`PING_PATIENCE`].
    heard_at: tokio::time::Instant,
    pinged: bool,
    /// Lobby positions of this device's own lobby messages (the lobby
    /// names no sending device): not shown again when a catch-up or a
    /// redelivery brings them back. The newest [`MAX_OWN_LOBBY`].
    own_lobby: std::collections::BTreeSet<u64>,
    /// Bytes of the live lobby events held during a lobby catch-up, and
    /// when the catch-up was asked for.
    lobby_held_bytes: usize,
    lobby_asked_at: tokio::time::Instant,
    /// The status the user last set, set again on a new connection (the
    /// server starts every connection at normal).
    status: sotto_proto::Status,
}

/// How a connection's loop ended.
enum Ended {
    /// The user quit, or every handle is gone.
    Quit,
    /// The connection dropped, for this reason.
    Lost(String),
}

impl<W: AsyncWrite + Unpin + Send> Actor<W> {
    /// Builds an actor for a freshly logged-in connection.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: Username,
        device: DeviceId,
        paths: Paths,
        writer: W,
        ops: mpsc::Receiver<Op>,
        frames: mpsc::Receiver<Batch>,
        events: mpsc::Sender<ClientEvent>,
        reader: Option<JoinHandle<()>>,
        crypto: SharedCrypto,
    ) -> Self {
        Self {
            me,
            device,
            paths,
            writer,
            wbuf: BytesMut::new(),
            ops,
            frames,
            events,
            reader,
            pending: HashMap::new(),
            next_request: 2,
            conn_seq: 0,
            lobby_catch_up: None,
            sealed: BTreeMap::new(),
            next_sealed: 1,
            sealed_at: HashMap::new(),
            saved: HashMap::new(),
            shutdown_message: None,
            crypto,
            unacked: BTreeMap::new(),
            acked_at: tokio::time::Instant::now()
                .checked_sub(ACK_INTERVAL)
                .unwrap_or_else(tokio::time::Instant::now),
            ack_due: None,
            redial: None,
            resend: HashMap::new(),
            removed: false,
            status: sotto_proto::Status::Normal,
            carried: std::collections::VecDeque::new(),
            heard_at: tokio::time::Instant::now(),
            pinged: false,
            own_lobby: std::collections::BTreeSet::new(),
            lobby_held_bytes: 0,
            lobby_asked_at: tokio::time::Instant::now(),
        }
    }

    /// Connects again through `redial` whenever the connection drops.
    pub fn reconnecting_with(
        mut self,
        redial: std::sync::Arc<dyn crate::reconnect::Redial<W>>,
    ) -> Self {
        self.redial = Some(redial);
        self
    }

    /// Runs until the user quits or every handle is dropped, connecting
    /// again whenever the connection drops (with a [`Self::reconnecting_with`]),
    /// or until the connection ends.
    pub async fn run(mut self) {
        self.on_connected().await;
        loop {
            let reason = match self.serve().await {
                Ended::Quit => return,
                Ended::Lost(reason) => reason,
            };
            let redial = match &self.redial {
                Some(redial) if !self.removed => redial.clone(),
                _ => return self.disconnected(reason).await,
            };
            match self.reconnect(redial.as_ref(), reason).await {
                redial::Outcome::Connected => {}
                redial::Outcome::Quit => return,
                redial::Outcome::Fatal(reason) => return self.disconnected(reason).await,
            }
        }
    }

    /// A new connection: ask again for every room key messages wait for,
    /// and for the lobby messages missed.
    async fn on_connected(&mut self) {
        let effects = lock(&self.crypto).connected();
        self.run_effects(effects).await;
        self.catch_up_lobby().await;
    }

    /// Serves one connection until it drops or the user quits.
    async fn serve(&mut self) -> Ended {
        self.heard_at = tokio::time::Instant::now();
        self.pinged = false;
        let reason = loop {
            let quiet_until = self.heard_at
                + if self.pinged {
                    PING_AFTER + PING_PATIENCE
                } else {
                    PING_AFTER
                };
            tokio::select! {
                op = self.ops.recv() => match op {
                    Some(Op::Quit { reply }) => {
                        self.close().await;
                        let _ = reply.send(());
                        return Ended::Quit;
                    }
                    // Every handle is gone: nobody can use the connection.
                    None => {
                        self.close().await;
                        return Ended::Quit;
                    }
                    Some(op) => {
                        if let Err(e) = self.handle_op(op).await {
                            break e.to_string();
                        }
                    }
                },
                () = tokio::time::sleep_until(quiet_until) => {
                    if self.pinged {
                        break format!(
                            "the server stopped answering (nothing heard for {} s)",
                            (PING_AFTER + PING_PATIENCE).as_secs()
                        );
                    }
                    match self.write_request(Request::Ping).await {
                        Some(id) => {
                            self.pending.insert(id, Pending::Ping);
                            self.pinged = true;
                        }
                        None => break "the connection broke".to_owned(),
                    }
                }
                batch = self.frames.recv() => match batch {
                    Some(Ok(frames)) => {
                        self.heard_at = tokio::time::Instant::now();
                        self.pinged = false;
                        if let Err(e) = self.handle_batch(frames).await {
                            break e.to_string();
                        }
                    }
                    Some(Err(reason)) => break reason,
                    None => break "the connection closed".to_owned(),
                },
                () = sleep_until(self.ack_due), if self.ack_due.is_some() => {
                    if let Err(e) = self.acknowledge().await {
                        break e.to_string();
                    }
                }
            }
        };
        Ended::Lost(reason)
    }

    /// Sends close_notify and stops the reader, acknowledging what was
    /// handled first.
    async fn close(&mut self) {
        let _ = self.acknowledge().await;
        let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.writer.shutdown()).await;
        self.stop();
    }

    /// Fails what is pending and stops the reader.
    fn stop(&mut self) {
        for (_, pending) in self.pending.drain() {
            pending.fail(ClientError::Disconnected);
        }
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
    }

    async fn disconnected(&mut self, reason: String) {
        // Nothing can be acknowledged now, but what was handled is kept, so
        // the server's resending is recognized and not shown twice.
        if let Err(e) = crate::crypto::save(&self.crypto).await {
            tracing::warn!("saving the local store at disconnection: {e}");
        }
        let reason = self.shutdown_message.take().unwrap_or(reason);
        tracing::info!(%reason, "disconnected");
        self.stop();
        self.emit(ClientEvent::Disconnected { reason }).await;
    }

    async fn emit(&mut self, event: ClientEvent) {
        // A front end that dropped its `Events` does not want events.
        let _ = self.events.send(event.sanitized()).await;
    }

    /// Handles one command; an error means the connection is unusable.
    async fn handle_op(&mut self, op: Op) -> Result<(), ClientError> {
        let (request, pending) = match op {
            Op::Request { request, reply } => (request, Pending::Response(reply)),
            Op::Send {
                request,
                entry,
                reply,
            } => (request, Pending::Sent(reply, entry)),
            Op::History {
                limit,
                before,
                reply,
            } => (
                Request::History { limit, before },
                Pending::History(Box::new(history::HistoryRead::new(reply, limit, before))),
            ),
            Op::GetSealed { id, reply } => {
                let found = self
                    .sealed
                    .get(&id)
                    .cloned()
                    .ok_or(ClientError::NoSuchSealed(id));
                let _ = reply.send(found);
                return Ok(());
            }
            Op::Emit(event) => {
                self.emit(event).await;
                return Ok(());
            }
            Op::Save { reply } => {
                let _ = reply.send(crate::crypto::save(&self.crypto).await);
                return Ok(());
            }
            Op::AcceptFile { id, reply } => {
                let _ = reply.send(self.accept_file(id).await);
                return Ok(());
            }
            Op::RejectFile { id, reply } => {
                let _ = reply.send(self.reject_file(id).await);
                return Ok(());
            }
            // Handled by `run`.
            Op::Quit { reply } => {
                let _ = reply.send(());
                return Ok(());
            }
        };
        if self.pending.len() >= MAX_PENDING_REQUESTS {
            // Forget requests whose callers gave up before refusing new ones.
            self.pending.retain(|_, p| !p.is_closed());
            if self.pending.len() >= MAX_PENDING_REQUESTS {
                pending.fail(ClientError::Busy);
                return Ok(());
            }
        }
        let id = self.next_request;
        self.next_request += 1;
        let once = matches!(request, Request::Once { .. }).then(|| request.clone());
        if let Request::SetStatus { status } = &request {
            self.status = *status;
        }
        let frame = ClientFrame::Request { id, request };
        let upload = match &pending {
            Pending::Sent(_, entry) => match entry.as_ref() {
                Entry::File { name, .. } => Some(Upload {
                    events: &self.events,
                    id,
                    name: name.clone(),
                }),
                _ => None,
            },
            _ => None,
        };
        let written = write_frame_reporting(&mut self.writer, &mut self.wbuf, &frame, upload).await;
        match written {
            Ok(()) => {
                self.pending.insert(id, pending);
                if let Some(request) = once {
                    self.resend.insert(id, request);
                }
                Ok(())
            }
            // A value that cannot be encoded fails only its own request.
            Err(ClientError::Internal(e)) => {
                pending.fail(ClientError::Internal(e));
                Ok(())
            }
            // The connection broke: a message goes again on the next one.
            Err(e) => {
                match once {
                    Some(request) if self.redial.is_some() => {
                        self.pending.insert(id, pending);
                        self.resend.insert(id, request);
                    }
                    _ => pending.fail(ClientError::Disconnected),
                }
                Err(e)
            }
        }
    }

    /// Handles the frames of one read, then acknowledges what it handled
    /// (now, or within [`ACK_INTERVAL`] of the last acknowledgement).
    async fn handle_batch(&mut self, frames: Vec<ServerFrame>) -> Result<(), ClientError> {
        for frame in frames {
            match frame {
                ServerFrame::Reply { id, result } => self.handle_reply(id, result).await,
                ServerFrame::Event { seq, body } => {
                    if seq != self.conn_seq + 1 {
                        tracing::warn!(
                            expected = self.conn_seq + 1,
                            got = seq,
                            "event sequence gap"
                        );
                    }
                    self.conn_seq = seq;
                    if let Some(pos) = self.handle_event(body).await
                        && pos.ackable
                    {
                        let highest = self.unacked.entry(pos.room_id).or_default();
                        *highest = (*highest).max(pos.seq);
                    }
                }
                ServerFrame::HelloReply(_) => {
                    tracing::warn!("unexpected hello reply after login; ignored");
                }
            }
        }
        if self.unacked.is_empty() || self.ack_due.is_some() {
            return Ok(());
        }
        let due = self.acked_at + ACK_INTERVAL;
        if tokio::time::Instant::now() >= due {
            self.acknowledge().await
        } else {
            self.ack_due = Some(due);
            Ok(())
        }
    }

    /// Saves what the handled events changed (sessions, room keys,
    /// history, positions), then acknowledges them: the server may forget
    /// them only once they are on disk here. A failed save acknowledges
    /// nothing (the server resends) and is tried again later.
    async fn acknowledge(&mut self) -> Result<(), ClientError> {
        self.ack_due = None;
        if self.unacked.is_empty() {
            return Ok(());
        }
        if let Err(e) = crate::crypto::save(&self.crypto).await {
            self.emit(ClientEvent::Security {
                message: format!("{e}; not acknowledging, the server will resend"),
            })
            .await;
            self.ack_due = Some(tokio::time::Instant::now() + ACK_INTERVAL);
            return Ok(());
        }
        for (room_id, seq) in std::mem::take(&mut self.unacked) {
            let frame = ClientFrame::Ack(Ack { room_id, seq });
            write_frame(&mut self.writer, &mut self.wbuf, &frame).await?;
        }
        self.acked_at = tokio::time::Instant::now();
        Ok(())
    }

    /// Shows one live event; returns its room position if it should be acked.
    async fn handle_event(&mut self, body: EventBody) -> Option<Position> {
        let position = Position::of(&body);
        if let Some(pos) = position {
            if !pos.ackable && self.lobby_catch_up.is_some() {
                // Shown after the older ones being fetched.
                match self.hold_lobby_event(body) {
                    None => return None,
                    // Too many, or no answer: they are shown now.
                    Some(body) => {
                        self.give_up_lobby_catch_up().await;
                        return Box::pin(self.handle_event(body)).await;
                    }
                }
            }
            // Every room's position, the lobby's included, is kept with the
            // end-to-end state, across restarts.
            let first = lock(&self.crypto).first_time(pos.room_id, pos.seq);
            if first && !pos.ackable && self.own_lobby.remove(&pos.seq) {
                // This device's own lobby line, shown when it was sent.
                return None;
            }
            if !first {
                tracing::debug!(room = pos.room_id, seq = pos.seq, "duplicate event dropped");
                // Already shown; acking again is harmless and cumulative.
                return position;
            }
        }
        let body = match self.decrypt(body, sotto_crypto::e2e::ReadMode::Live).await {
            Ok(body) => body,
            Err(event) => {
                self.emit(event).await;
                return position;
            }
        };
        if let Some(mut event) = self.show(body, true).await {
            if let ClientEvent::Shutdown { .. } = &event {
                // The event shows the server's words; the disconnection
                // that follows need not repeat them.
                self.shutdown_message = Some("the server shut down".to_owned());
            }
            if let ClientEvent::Invited {
                group,
                by,
                auto_join,
                room_id,
            } = &mut event
            {
                *auto_join = self.auto_join(group, by, *room_id).await;
            }
            self.emit(event).await;
        }
        position
    }

    /// Accepts an invitation from a verified contact by itself, if the
    /// user allowed it (`@auto groups on`): whether it asked to join.
    async fn auto_join(&mut self, group: &GroupName, by: &Username, room_id: u64) -> bool {
        let allowed = {
            let crypto = lock(&self.crypto);
            crypto.trust.auto_accept().groups && crypto.trust.is_verified(by)
        };
        if !allowed {
            return false;
        }
        let request = Request::GroupAccept {
            group: group.clone(),
            room_id: Some(room_id),
        };
        match self.write_request(request).await {
            Some(id) => {
                self.pending.insert(id, Pending::AutoJoin(group.clone()));
                true
            }
            None => false,
        }
    }

    /// Decodes a (decrypted) event to show: numbers a sealed message or
    /// saves a file, and keeps a private or group message in the local
    /// history. `None` for a hidden echo of this device's own message
    /// (`hide_own_echo`: live events; history shows them).
    async fn show(&mut self, body: EventBody, hide_own_echo: bool) -> Option<ClientEvent> {
        let (ts, position) = (body.ts, Position::of(&body));
        let me = Me {
            user: &self.me,
            device: &self.device,
            hide_own_echo,
        };
        let decoded = decode(me, body);
        let (event, entry) = self.finish_event(decoded, position).await?;
        if let (Some(pos), Some(entry)) = (position, entry.or_else(|| Entry::of(&event))) {
            lock(&self.crypto).record_history(pos.room_id, pos.seq, ts, &entry);
        }
        Some(event)
    }

    /// [`Actor::show`] without the history: the event, and the history
    /// entry if it cannot be made from the event (a sealed message's box).
    async fn finish_event(
        &mut self,
        decoded: Decoded,
        position: Option<Position>,
    ) -> Option<(ClientEvent, Option<Entry>)> {
        match decoded {
            Decoded::Ready(event) => Some((event, None)),
            Decoded::OwnEcho | Decoded::KeyNotice => None,
            Decoded::Sealed {
                from,
                group,
                ts,
                sealed,
            } => {
                let entry = Entry::Sealed {
                    from: from.clone(),
                    group: group.clone(),
                    sealed: sealed.clone(),
                };
                let id = self.keep_sealed(
                    StoredSealed {
                        from: from.clone(),
                        group: group.clone(),
                        ts,
                        sealed,
                    },
                    position.map(|p| (p.room_id, p.seq)),
                );
                Some((
                    ClientEvent::Sealed {
                        id,
                        from,
                        group,
                        ts,
                    },
                    Some(entry),
                ))
            }
            Decoded::File {
                from,
                device,
                group,
                ts,
                file,
            } => Some((
                self.receive_file(from, &device, group, ts, file, position)
                    .await,
                None,
            )),
        }
    }

    /// Keeps a sealed message to open later: its local id (the one it had
    /// already, for a message at a position seen before).
    fn keep_sealed(&mut self, stored: StoredSealed, at: Option<(u64, u64)>) -> u64 {
        if let Some(id) = at.and_then(|at| self.sealed_at.get(&at).copied())
            && self.sealed.contains_key(&id)
        {
            return id;
        }
        let id = self.next_sealed;
        self.next_sealed += 1;
        self.sealed.insert(id, stored);
        if let Some(at) = at {
            self.sealed_at.insert(at, id);
        }
        while self.sealed.len() > MAX_SEALED_KEPT {
            if let Some((gone, _)) = self.sealed.pop_first() {
                self.sealed_at.retain(|_, id| *id != gone);
            }
        }
        id
    }

    async fn handle_reply(&mut self, id: u64, result: Result<Response, sotto_proto::ErrorReply>) {
        self.resend.remove(&id);
        if let Ok(Response::Sent { room_id, seq, .. }) = &result
            && *room_id == sotto_proto::LOBBY_ROOM_ID
        {
            self.own_lobby.insert(*seq);
            while self.own_lobby.len() > MAX_OWN_LOBBY {
                self.own_lobby.pop_first();
            }
        }
        let Some(pending) = self.pending.remove(&id) else {
            tracing::warn!(id, "reply to an unknown request; ignored");
            return;
        };
        match pending {
            Pending::Response(tx) => {
                let _ = tx.send(result.map_err(ClientError::Server));
            }
            Pending::Sent(tx, entry) => {
                if let Ok(Response::Sent {
                    room_id, seq, ts, ..
                }) = &result
                {
                    lock(&self.crypto).record_history(*room_id, *seq, *ts, &entry);
                }
                let _ = tx.send(result.map_err(ClientError::Server));
            }
            Pending::History(mut read) => {
                let (events, more) = match result {
                    Ok(Response::History {
                        events,
                        more,
                        pruned_before,
                    }) => {
                        read.pruned_before = read.pruned_before.max(pruned_before);
                        (events, more)
                    }
                    Ok(_) => {
                        return Pending::History(read).fail(ClientError::Protocol(
                            "the server answered a history request with something else".to_owned(),
                        ));
                    }
                    Err(e) => return Pending::History(read).fail(ClientError::Server(e)),
                };
                if let Err(e) = self.history_page(&mut read, events).await {
                    return Pending::History(read).fail(e);
                }
                // Older events that did not fit in that reply: the next page.
                if let Some(before) = more
                    && read.remaining() > 0
                {
                    let request = Request::History {
                        limit: read.remaining(),
                        before: Some(before),
                    };
                    match self.write_request(request).await {
                        Some(id) => {
                            self.pending.insert(id, Pending::History(read));
                        }
                        None => Pending::History(read).fail(ClientError::Disconnected),
                    }
                    return;
                }
                self.history_finish(*read).await;
            }
            Pending::Crypto(tag) => {
                let effects = lock(&self.crypto).on_reply(tag, result);
                self.run_effects(effects).await;
            }
            Pending::AutoJoin(group) => {
                let event = match result {
                    Ok(_) => ClientEvent::MemberJoined {
                        group,
                        user: self.me.clone(),
                    },
                    Err(e) => ClientEvent::Security {
                        message: format!("could not join group {group} by itself: {}", e.message),
                    },
                };
                self.emit(event).await;
            }
            Pending::Restore => {
                if let Err(e) = result {
                    tracing::warn!("could not set the status again: {}", e.message);
                }
            }
            Pending::LobbyCatchUp { baseline } => self.lobby_caught_up(baseline, result).await,
            Pending::Ping => {}
        }
    }

    /// Writes a request of the actor's own; its id, if it was written.
    async fn write_request(&mut self, request: Request) -> Option<u64> {
        let id = self.next_request;
        self.next_request += 1;
        let frame = ClientFrame::Request { id, request };
        write_frame(&mut self.writer, &mut self.wbuf, &frame)
            .await
            .is_ok()
            .then_some(id)
    }
}

/// Sleeps until `at` (never, for `None`: the caller guards on it).
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

mod history;
mod io;
mod keys;
mod lobby;
mod offers;
mod redial;
#[cfg(test)]
mod tests;
