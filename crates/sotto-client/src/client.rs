//! The [`Client`] handle and the [`Events`] stream.
//!
//! Work that is slow or touches the file system happens here, on the
//! caller's task, not in the actor: validating and expanding text, sealing
//! and opening (Argon2id, on a blocking thread), reading files to send. The
//! actor only moves frames, so one slow call never stalls event delivery.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use sotto_crypto::{Fingerprint, Passphrase, SealError};
use sotto_proto::limits::{MAX_FILE_LEN, MAX_FILE_NAME_LEN, MAX_TEXT_LEN};
use sotto_proto::{
    DeliveryNote, ErrorCode, FileBody, GroupInfo, GroupName, LoggedIn, Message, MessageBody,
    Request, Response, Status, UserPresence, Username,
};
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use crate::actor::{Op, StoredSealed};
use crate::crypto::{PlanStep, SendPlan, SharedCrypto, lock};
use crate::history::Entry;
use crate::trust::DeviceInfo;
use crate::{ClientError, ClientEvent, REQUEST_TIMEOUT};

/// Who or what a message goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    User(Username),
    Group(GroupName),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::User(user) => write!(f, "{user}"),
            Target::Group(group) => write!(f, "group {group}"),
        }
    }
}

/// Where the server stored a sent message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentInfo {
    pub room_id: u64,
    pub seq: u64,
    /// Server time, milliseconds since the Unix epoch.
    pub ts: i64,
    /// Something to tell the sender (recipient offline, dnd, away).
    pub note: Option<DeliveryNote>,
}

/// A contact's safety number and whether they are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub user: Username,
    /// 12 groups of 5 digits.
    pub safety_number: String,
    pub verified: bool,
}

/// A sealed message, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedSecret {
    /// The local id it was announced with.
    pub id: u64,
    pub from: Username,
    pub group: Option<GroupName>,
    pub ts: i64,
    pub text: String,
}

/// What the connection established, shared by every clone of the handle.
#[derive(Debug)]
pub(crate) struct Connection {
    pub logged_in: LoggedIn,
    /// Normalized `host:port`.
    pub server: String,
    pub fingerprint: Fingerprint,
    /// The server's software name and version from its hello.
    pub server_software: String,
    /// The server's id from its hello (bound into OPAQUE logins).
    pub server_id: sotto_proto::ServerId,
    /// Where this device's key is kept while it is remembered.
    pub remember_file: std::path::PathBuf,
}

/// A handle to a logged-in connection. Cheap to clone; every clone talks
/// to the same background task. Methods fail with
/// [`ClientError::Disconnected`] once the connection is gone.
#[derive(Debug, Clone)]
pub struct Client {
    /// Commands to the actor (bounded).
    ops: mpsc::Sender<Op>,
    /// The login result, immutable for the connection's life.
    session: Arc<Connection>,
    /// This device's end-to-end state (shared with the actor).
    crypto: SharedCrypto,
    /// One encrypted send at a time: each prepares, shares and uses a room
    /// session over several requests.
    send_lock: Arc<tokio::sync::Mutex<()>>,
}

impl Client {
    pub(crate) fn new(ops: mpsc::Sender<Op>, session: Connection, crypto: SharedCrypto) -> Self {
        Self {
            ops,
            session: Arc::new(session),
            crypto,
            send_lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Publishes this device's keys (first login) and tops up its one-time
    /// keys in the server's key directory.
    pub(crate) async fn publish_keys(&self) -> Result<(), ClientError> {
        let _guard = self.send_lock.lock().await;
        let (mut count, mut fallback_used) = (None, false);
        // The first round publishes the identity keys and learns how many
        // one-time keys the server holds; the next tops up what is missing.
        for _ in 0..3 {
            let Some(request) = lock(&self.crypto).key_upload(count, fallback_used) else {
                break;
            };
            self.save().await?;
            match self.request(request).await? {
                Response::KeyCount {
                    one_time_keys,
                    fallback_used: used,
                } => {
                    lock(&self.crypto).e2e.mark_keys_published();
                    count = Some(one_time_keys);
                    fallback_used = used;
                }
                other => return Err(unexpected("upload_keys", &other)),
            }
        }
        self.save().await
    }

    /// Encrypts `body` for everyone in the room of `to` and sends it:
    /// learns the room, the members' devices (checked against pinned keys),
    /// starts Olm sessions with devices that need the room key, shares it,
    /// then sends the Megolm ciphertext.
    async fn send_encrypted(
        &self,
        to: Target,
        body: MessageBody,
        file: Option<&Path>,
    ) -> Result<SentInfo, ClientError> {
        self.start_encrypted(to, body, file).await?.await
    }

    /// [`Client::send_encrypted`] up to the point where the message is
    /// queued for the server, in order; the returned future waits for the
    /// server's reply. Callers may start the next message before the reply.
    ///
    /// A private message the server refuses because the devices changed
    /// after it was encrypted (a cached list raced a device being added or
    /// removed) is encrypted again for the devices listed now and sent
    /// again, up to [`DEVICE_RACE_RETRIES`] times. (Files are not kept
    /// for that: the refusal is shown, and sending again works.)
    async fn start_encrypted(
        &self,
        to: Target,
        body: MessageBody,
        file: Option<&Path>,
    ) -> Result<PendingSend, ClientError> {
        let retry = match (&to, &body) {
            (Target::User(_), MessageBody::Text { .. } | MessageBody::Sealed(_)) => {
                Some(body.clone())
            }
            _ => None,
        };
        let pending = self.queue_encrypted(to.clone(), body, file).await?;
        let Some(body) = retry else {
            return Ok(pending);
        };
        let client = self.clone();
        Ok(Box::pin(async move {
            let mut result = pending.await;
            for _ in 0..DEVICE_RACE_RETRIES {
                let Err(ClientError::Server(reply)) = &result else {
                    break;
                };
                if reply.code != ErrorCode::DevicesChanged {
                    break;
                }
                if let Target::User(peer) = &to {
                    let mut crypto = lock(&client.crypto);
                    crypto.forget_devices(peer);
                    crypto.forget_devices(client.user());
                }
                result = match client.queue_encrypted(to.clone(), body.clone(), None).await {
                    Ok(pending) => pending.await,
                    Err(e) => Err(e),
                };
            }
            result
        }))
    }

    /// Plans, encrypts and queues one message (see [`Client::start_encrypted`]).
    async fn queue_encrypted(
        &self,
        to: Target,
        body: MessageBody,
        file: Option<&Path>,
    ) -> Result<PendingSend, ClientError> {
        let guard = self.send_lock.lock().await;
        let me = self.user().clone();
        let entry = Entry::sent(&me, &to, &body, file);
        let (room_id, members) = match &to {
            Target::User(peer) => {
                let known = lock(&self.crypto).direct_rooms.get(peer).copied();
                let room_id = match known {
                    Some(room_id) => room_id,
                    None => match self
                        .request(Request::DirectRoom { with: peer.clone() })
                        .await?
                    {
                        Response::Room { room_id } => {
                            lock(&self.crypto)
                                .direct_rooms
                                .insert(peer.clone(), room_id);
                            room_id
                        }
                        other => return Err(unexpected("direct_room", &other)),
                    },
                };
                (room_id, vec![me.clone(), peer.clone()])
            }
            Target::Group(name) => {
                let group = match self
                    .request(Request::GroupInfo {
                        group: name.clone(),
                    })
                    .await?
                {
                    Response::Group(info) => info,
                    other => return Err(unexpected("group_info", &other)),
                };
                let mut members = group.members;
                if !members.contains(&me) {
                    members.push(me.clone());
                }
                (group.room_id, members)
            }
        };
        // A private message's device lists come from the cache when the
        // server has not said they changed since (`Crypto::device_lists`):
        // a steady-state private message is one request. (A group's
        // members change, and the server tells about device changes only
        // those who share a room with the user, so groups ask each time.)
        let mut plan = SendPlan::new(room_id, members, body);
        if matches!(to, Target::User(_)) {
            plan = plan.with_cached_devices();
        }
        let mut reply = None;
        let payload = loop {
            let step = plan.next(&mut lock(&self.crypto), reply.take(), now_ms());
            for notice in plan.take_notices() {
                self.notice(notice).await;
            }
            match step? {
                PlanStep::Ask(request) => reply = Some(self.request(request).await?),
                PlanStep::SaveThenSend(requests) => {
                    if let Err(e) = self.save().await {
                        plan.failed(&mut lock(&self.crypto));
                        return Err(e);
                    }
                    for request in requests {
                        match self.request(request).await {
                            Ok(Response::Done) => {}
                            // Devices whose queues are full: they ask for the
                            // key when they are back; the message still goes.
                            Ok(Response::ToDeviceSent { refused }) => {
                                for d in refused {
                                    self.notice(format!(
                                        "{}'s device {} has too many messages waiting on the \
                                         server (away for long?): it gets the key to this \
                                         conversation when it asks, once it is back",
                                        d.user, d.device
                                    ))
                                    .await;
                                }
                            }
                            sent => {
                                plan.failed(&mut lock(&self.crypto));
                                return Err(match sent {
                                    Err(e) => e,
                                    Ok(other) => unexpected("send_to_device", &other),
                                });
                            }
                        }
                    }
                }
                PlanStep::Payload(payload) => break payload,
            }
        };
        // Queued before the next send is prepared, so messages leave in
        // the order they were encrypted; the reply is waited for without
        // the lock, so sends pipeline.
        let reply = self.queue_payload(to, payload, entry, plan.digest()).await;
        drop(guard);
        reply
    }

    /// Refreshes `users`' devices from the directory through trust on first
    /// use; shows the warnings.
    async fn refresh_devices(&self, users: &[Username]) -> Result<(), ClientError> {
        let devices = match self
            .request(Request::QueryKeys {
                users: users.to_vec(),
            })
            .await?
        {
            Response::Devices { devices } => devices,
            other => return Err(unexpected("query_keys", &other)),
        };
        let warnings = {
            let mut crypto = lock(&self.crypto);
            // Fresher than what a send cached: the next send asks again.
            for user in users {
                crypto.forget_devices(user);
            }
            let mut warnings = Vec::new();
            for user in users {
                let theirs: Vec<_> = devices
                    .iter()
                    .filter(|d| d.user == *user)
                    .cloned()
                    .collect();
                warnings.append(&mut crypto.trust.observe(user, &theirs).warnings);
            }
            warnings
        };
        for warning in warnings {
            self.notice(warning.to_string()).await;
        }
        self.save().await
    }

    /// `user`'s devices (this account's when `None`), as pinned, with
    /// fingerprints, whether they get keys and whether they are verified.
    pub async fn devices(&self, user: Option<Username>) -> Result<Vec<DeviceInfo>, ClientError> {
        let user = user.unwrap_or_else(|| self.user().clone());
        self.refresh_devices(std::slice::from_ref(&user)).await?;
        let crypto = lock(&self.crypto);
        let mut devices = crypto.trust.devices(&user);
        if user == *self.user() {
            let me = crypto.e2e.device();
            if let Some(this) = devices.iter_mut().find(|d| d.device == *me) {
                this.this_device = true;
            }
        }
        Ok(devices)
    }

    /// Accepts `device` of `user` (this account when `None`; else a
    /// contact the user verified), after the user compared its
    /// fingerprint: it gets room keys from now on, and the keys of this
    /// device's messages it was left out of since it appeared.
    pub async fn trust_device(
        &self,
        user: Option<Username>,
        device: &sotto_proto::DeviceId,
    ) -> Result<DeviceInfo, ClientError> {
        let user = user.unwrap_or_else(|| self.user().clone());
        self.refresh_devices(std::slice::from_ref(&user)).await?;
        let keys = lock(&self.crypto).trust.accept(&user, device)?;
        self.forward_withheld(&keys).await?;
        lock(&self.crypto)
            .trust
            .devices(&user)
            .into_iter()
            .find(|d| d.device == *device)
            .ok_or_else(|| ClientError::Internal("an accepted device vanished".into()))
    }

    /// Sends a device the user just accepted the keys of this device's
    /// room sessions it was left out of, from where it was left out.
    async fn forward_withheld(
        &self,
        keys: &sotto_proto::e2e::DeviceKeys,
    ) -> Result<(), ClientError> {
        let _guard = self.send_lock.lock().await;
        let (contents, has_session) = {
            let mut crypto = lock(&self.crypto);
            (
                crypto.withheld_keys_for(keys),
                crypto.e2e.has_olm_session(keys),
            )
        };
        if contents.is_empty() {
            return self.save().await;
        }
        let claimed = if has_session {
            None
        } else {
            match self
                .request(Request::ClaimKeys {
                    devices: vec![sotto_proto::DeviceRef {
                        user: keys.user.clone(),
                        device: keys.device.clone(),
                    }],
                })
                .await?
            {
                Response::Claimed { keys: claimed } => Some(
                    claimed
                        .into_iter()
                        .next()
                        .ok_or_else(|| {
                            ClientError::Encryption(format!(
                                "{}'s device {} has no key left to start an encrypted session with; it can ask for the keys itself",
                                keys.user, keys.device
                            ))
                        })?
                        .key,
                ),
                other => return Err(unexpected("claim_keys", &other)),
            }
        };
        let request = lock(&self.crypto).seal_for(keys, claimed.as_ref(), contents)?;
        self.save().await?;
        match self.request(request).await? {
            // A full queue: the device asks for the keys when it is back.
            Response::ToDeviceSent { .. } => Ok(()),
            other => done(other, "send_to_device"),
        }
    }

    /// Removes `device`, one of this account's devices (a lost phone): the
    /// server forgets its keys and signs it out, and contacts' next
    /// messages start room sessions it gets no key for. Removing this very
    /// device signs it out too, and the next login from this data dir is a
    /// new device.
    pub async fn remove_device(&self, device: &sotto_proto::DeviceId) -> Result<(), ClientError> {
        done(
            self.request(Request::RemoveDevice {
                device: device.clone(),
            })
            .await?,
            "remove_device",
        )
    }

    /// The safety number of this account (its accepted devices) and
    /// `user` (all their devices): the same on both sides when neither has
    /// a device the other does not know. Compare it out of band, then
    /// [`Client::confirm_verified`] with it.
    pub async fn safety_number(&self, user: &Username) -> Result<Verification, ClientError> {
        let me = self.user().clone();
        if *user == me {
            return Err(ClientError::Encryption(
                "verify someone else: your own devices are listed by @devices".into(),
            ));
        }
        self.refresh_devices(&[me, user.clone()]).await?;
        let crypto = lock(&self.crypto);
        let number = crypto.trust.safety_number(user)?;
        Ok(Verification {
            user: user.clone(),
            safety_number: number,
            verified: crypto.trust.is_verified(user),
        })
    }

    /// Marks `user` verified with the devices pinned for them now, if
    /// `compared` is the safety number those keys give (the one the user
    /// compared); devices of theirs that waited get the keys they were
    /// left out of. Later devices wait for acceptance.
    pub async fn confirm_verified(
        &self,
        user: &Username,
        compared: &str,
    ) -> Result<Verification, ClientError> {
        let shown = self.safety_number(user).await?;
        let accepted = lock(&self.crypto).trust.verify(user, compared)?;
        for keys in &accepted {
            self.forward_withheld(keys).await?;
        }
        self.save().await?;
        Ok(Verification {
            verified: true,
            ..shown
        })
    }

    /// Forgets every key pinned for `user`, so their devices are pinned
    /// afresh (unverified) from the directory: only after checking with
    /// them that their keys really changed.
    pub async fn reset_verification(&self, user: &Username) -> Result<(), ClientError> {
        lock(&self.crypto).trust.reset(user)?;
        self.refresh_devices(std::slice::from_ref(user)).await
    }

    /// Commits what the end-to-end state changed (before anything
    /// encrypted with it leaves). The actor does it, between two events: a
    /// save from here could otherwise catch the actor half way through one
    /// (its position counted, its history entry not written yet), and a
    /// crash right after would lose that message.
    pub(super) async fn save(&self) -> Result<(), ClientError> {
        self.call(|reply| Op::Save { reply }).await
    }

    /// Shows a security notice to the user (through the event stream).
    async fn notice(&self, message: String) {
        let _ = self
            .ops
            .send(Op::Emit(ClientEvent::Security { message }))
            .await;
    }

    /// The login result: user, device id, whether the account was just
    /// registered, who was online and this user's groups at login.
    pub fn session(&self) -> &LoggedIn {
        &self.session.logged_in
    }

    /// The logged-in user.
    pub fn user(&self) -> &Username {
        &self.session.logged_in.user
    }

    /// The server as `host:port`.
    pub fn server(&self) -> &str {
        &self.session.server
    }

    /// The server certificate's fingerprint (as pinned).
    pub fn server_fingerprint(&self) -> Fingerprint {
        self.session.fingerprint
    }

    /// The server's software name and version.
    pub fn server_software(&self) -> &str {
        &self.session.server_software
    }

    /// Whether the background task is still running.
    pub fn is_connected(&self) -> bool {
        !self.ops.is_closed()
    }

    pub(super) async fn call<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> Op,
    ) -> Result<T, ClientError> {
        wait_reply(self.enqueue(op).await?).await
    }

    /// Hands `op` to the actor (operations are carried out in the order
    /// they were queued); the receiver gets its result.
    async fn enqueue<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> Op,
    ) -> Result<oneshot::Receiver<Result<T, ClientError>>, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.ops
            .send(op(tx))
            .await
            .map_err(|_| ClientError::Disconnected)?;
        Ok(rx)
    }

    async fn request(&self, request: Request) -> Result<Response, ClientError> {
        self.call(|reply| Op::Request { request, reply }).await
    }

    /// Sends an encrypted message; the actor keeps `entry` in the local
    /// history once the server has stored it, saved with the batch the
    /// reply came in (the room session itself is not saved: each room
    /// starts a new one after a restart).
    async fn queue_payload(
        &self,
        to: Target,
        payload: Vec<u8>,
        entry: Entry,
        devices: Option<u64>,
    ) -> Result<PendingSend, ClientError> {
        let request = once(match to {
            Target::User(to) => Message::Direct {
                to,
                payload,
                devices,
            },
            Target::Group(group) => Message::Group { group, payload },
        });
        let entry = Box::new(entry);
        let rx = self
            .enqueue(|reply| Op::Send {
                request,
                entry,
                reply,
            })
            .await?;
        Ok(Box::pin(async move { sent(wait_reply(rx).await?) }))
    }

    /// Sends text to the lobby.
    pub async fn send_lobby(&self, text: &str) -> Result<SentInfo, ClientError> {
        let text = prepare_text(text)?;
        sent(self.request(once(Message::Lobby { text })).await?)
    }

    /// Sends a private message.
    pub async fn send_private(&self, to: Username, text: &str) -> Result<SentInfo, ClientError> {
        self.start_private(to, text).await?.await
    }

    /// Encrypts and queues a private message; the returned future waits
    /// for the server's reply. Messages started one after another are
    /// stored in that order, and the next may be started before the
    /// reply (line mode pipelines piped input this way).
    pub async fn start_private(
        &self,
        to: Username,
        text: &str,
    ) -> Result<PendingSend, ClientError> {
        let body = MessageBody::Text {
            text: prepare_text(text)?,
        };
        self.start_encrypted(Target::User(to), body, None).await
    }

    /// Sends a message to a group.
    pub async fn send_group(&self, group: GroupName, text: &str) -> Result<SentInfo, ClientError> {
        let body = MessageBody::Text {
            text: prepare_text(text)?,
        };
        self.send_encrypted(Target::Group(group), body, None).await
    }

    /// Seals `text` with `passphrase` and sends it. The recipient sees a
    /// numbered sealed message and needs the passphrase to open it.
    pub async fn send_secret(
        &self,
        to: Target,
        passphrase: Passphrase,
        text: &str,
    ) -> Result<SentInfo, ClientError> {
        let text = Zeroizing::new(prepare_text(text)?);
        // Argon2id takes tens of milliseconds and 19 MiB: not on an async thread.
        let sealed =
            tokio::task::spawn_blocking(move || sotto_crypto::seal(&passphrase, text.as_bytes()))
                .await
                .map_err(|e| ClientError::Internal(format!("sealing failed: {e}")))?;
        self.send_encrypted(to, MessageBody::Sealed(sealed), None)
            .await
    }

    /// Sends a file of at most [`MAX_FILE_LEN`] bytes.
    pub async fn send_file(&self, to: Target, path: &Path) -> Result<SentInfo, ClientError> {
        let read_error = |source| ClientError::ReadFile {
            path: path.to_owned(),
            source,
        };
        let meta = tokio::fs::metadata(path).await.map_err(read_error)?;
        if !meta.is_file() {
            return Err(read_error(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        let too_large = |size| ClientError::FileTooLarge {
            path: path.to_owned(),
            size,
        };
        if meta.len() > MAX_FILE_LEN as u64 {
            return Err(too_large(meta.len()));
        }
        let data = tokio::fs::read(path).await.map_err(read_error)?;
        // The file may have grown since the metadata was read.
        if data.len() > MAX_FILE_LEN {
            return Err(too_large(data.len() as u64));
        }
        let body = MessageBody::File(FileBody {
            name: file_name(path),
            data,
        });
        self.send_encrypted(to, body, Some(path)).await
    }

    /// Users online and their status (the first
    /// [`sotto_proto::limits::MAX_LISTED_USERS`] by name), and how many are
    /// online in all.
    pub async fn names(&self) -> Result<(Vec<UserPresence>, u32), ClientError> {
        match self.request(Request::Names).await? {
            Response::Names { users, total } => Ok((users, total)),
            other => Err(unexpected("names", &other)),
        }
    }

    /// This user's status.
    pub async fn status(&self) -> Result<Status, ClientError> {
        match self.request(Request::GetStatus).await? {
            Response::Status { status } => Ok(status),
            other => Err(unexpected("status", &other)),
        }
    }

    /// Changes this user's status.
    pub async fn set_status(&self, status: Status) -> Result<(), ClientError> {
        match self.request(Request::SetStatus { status }).await? {
            Response::Done | Response::Status { .. } => Ok(()),
            other => Err(unexpected("set_status", &other)),
        }
    }

    /// The last `n` events this user can see, oldest first, decoded like live
    /// events (this device's own messages included). Sealed messages get new
    /// local ids so they can be opened; files are saved once per session.
    pub async fn history(&self, n: u32) -> Result<Vec<ClientEvent>, ClientError> {
        self.history_before(None, n).await
    }

    /// Like [`Client::history`], the `n` events before `before` (a page
    /// further back, for a front end scrolling up).
    pub async fn history_before(
        &self,
        before: Option<sotto_proto::HistoryCursor>,
        n: u32,
    ) -> Result<Vec<ClientEvent>, ClientError> {
        self.call(|reply| Op::History {
            limit: n,
            before,
            reply,
        })
        .await
    }

    /// Opens sealed message `id`. A wrong passphrase is
    /// [`ClientError::WrongKey`] and the message stays available to retry.
    pub async fn open_sealed(
        &self,
        id: u64,
        passphrase: Passphrase,
    ) -> Result<OpenedSecret, ClientError> {
        let StoredSealed {
            from,
            group,
            ts,
            sealed,
        } = self.call(|reply| Op::GetSealed { id, reply }).await?;
        let opened = tokio::task::spawn_blocking(move || sotto_crypto::open(&passphrase, &sealed))
            .await
            .map_err(|e| ClientError::Internal(format!("opening failed: {e}")))?;
        let plain = match opened {
            Ok(plain) => plain,
            Err(SealError::WrongKey) => return Err(ClientError::WrongKey),
            Err(e) => return Err(ClientError::Sealed(e.to_string())),
        };
        let text = std::str::from_utf8(&plain)
            .map_err(|_| ClientError::Sealed("the sealed message is not text".into()))?;
        Ok(OpenedSecret {
            id,
            from,
            group,
            ts,
            text: crate::sanitize::text(text),
        })
    }

    /// Checks that the server answers.
    pub async fn ping(&self) -> Result<(), ClientError> {
        match self.request(Request::Ping).await? {
            Response::Pong => Ok(()),
            other => Err(unexpected("ping", &other)),
        }
    }

    /// Closes the connection cleanly (TLS close_notify). Pending requests
    /// fail with [`ClientError::Disconnected`]; the event stream then ends.
    /// Quitting an already closed connection succeeds.
    pub async fn quit(&self) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        if self.ops.send(Op::Quit { reply: tx }).await.is_ok() {
            let _ = rx.await;
        }
        // Keep what changed since the last save (pinned keys, sessions),
        // and let another connection open the store.
        let _ = crate::crypto::close(&self.crypto).await;
        Ok(())
    }
}

/// The stream of [`ClientEvent`]s of one connection. Ends (`None`) after
/// [`ClientEvent::Disconnected`], or after [`Client::quit`].
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<ClientEvent>,
}

impl Events {
    pub(crate) fn new(rx: mpsc::Receiver<ClientEvent>) -> Self {
        Self { rx }
    }

    /// The next event, or `None` once the connection is gone and every
    /// event has been read.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        self.rx.recv().await
    }

    /// An event if one is waiting, without waiting (for UI ticks).
    pub fn try_next(&mut self) -> Option<ClientEvent> {
        self.rx.try_recv().ok()
    }
}

/// A message request the server stores at most once: if the connection
/// drops before the reply, the actor sends it again under the same id.
fn once(message: Message) -> Request {
    Request::Once {
        client_id: rand::random(),
        message,
    }
}

/// Expands shortcodes and checks the text is sendable.
pub(crate) fn prepare_text(text: &str) -> Result<String, ClientError> {
    let text = crate::emoji::expand_shortcodes(text);
    if text.trim().is_empty() {
        return Err(ClientError::EmptyMessage);
    }
    if text.len() > MAX_TEXT_LEN {
        return Err(ClientError::MessageTooLong { len: text.len() });
    }
    Ok(text)
}

/// The base name sent with a file, within [`MAX_FILE_NAME_LEN`] bytes.
fn file_name(path: &Path) -> String {
    let mut name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    if name.len() > MAX_FILE_NAME_LEN {
        let mut end = MAX_FILE_NAME_LEN;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

/// Milliseconds since the Unix epoch, by this machine's clock.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn unexpected(request: &str, response: &Response) -> ClientError {
    let kind = match response {
        Response::LoggedIn(_) => "LoggedIn",
        Response::Sent { .. } => "Sent",
        Response::Done => "Done",
        Response::ToDeviceSent { .. } => "ToDeviceSent",
        Response::Names { .. } => "Names",
        Response::Status { .. } => "Status",
        Response::Group(_) => "Group",
        Response::Groups { .. } => "Groups",
        Response::History { .. } => "History",
        Response::LobbySince { .. } => "LobbySince",
        Response::Pong => "Pong",
        Response::KeyCount { .. } => "KeyCount",
        Response::Devices { .. } => "Devices",
        Response::Claimed { .. } => "Claimed",
        Response::Room { .. } => "Room",
        Response::Challenge { .. } => "Challenge",
        Response::PasswordChallenge { .. } => "PasswordChallenge",
    };
    ClientError::Protocol(format!("unexpected {kind} reply to {request}"))
}

/// How often a private message refused for changed devices is encrypted
/// again (each time after the directory was asked again).
const DEVICE_RACE_RETRIES: usize = 3;

/// A message queued for the server: resolves to where it was stored.
pub type PendingSend =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<SentInfo, ClientError>> + Send>>;

/// Waits (at most [`REQUEST_TIMEOUT`]) for the actor's answer.
async fn wait_reply<T>(rx: oneshot::Receiver<Result<T, ClientError>>) -> Result<T, ClientError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
        Err(_) => Err(ClientError::Timeout("a reply")),
        // The actor stopped without answering.
        Ok(Err(_)) => Err(ClientError::Disconnected),
        Ok(Ok(result)) => result,
    }
}

fn sent(response: Response) -> Result<SentInfo, ClientError> {
    match response {
        Response::Sent {
            room_id,
            seq,
            ts,
            note,
        } => Ok(SentInfo {
            room_id,
            seq,
            ts,
            note,
        }),
        other => Err(unexpected("send", &other)),
    }
}

pub(super) fn group(response: Response) -> Result<GroupInfo, ClientError> {
    match response {
        Response::Group(info) => Ok(info),
        other => Err(unexpected("group request", &other)),
    }
}

pub(super) fn done(response: Response, request: &str) -> Result<(), ClientError> {
    match response {
        Response::Done => Ok(()),
        other => Err(unexpected(request, &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_expanded_and_checked() {
        assert_eq!(prepare_text("hi :smile:").unwrap(), "hi 😄");
        assert!(matches!(prepare_text(""), Err(ClientError::EmptyMessage)));
        assert!(matches!(
            prepare_text("  \t "),
            Err(ClientError::EmptyMessage)
        ));
        assert!(prepare_text(&"a".repeat(MAX_TEXT_LEN)).is_ok());
        assert!(matches!(
            prepare_text(&"a".repeat(MAX_TEXT_LEN + 1)),
            Err(ClientError::MessageTooLong { len }) if len == MAX_TEXT_LEN + 1
        ));
        // The limit applies to the text as sent, after expansion.
        let shrinks = format!("{}:smile:", "a".repeat(MAX_TEXT_LEN - 4));
        assert!(shrinks.len() > MAX_TEXT_LEN);
        assert!(prepare_text(&shrinks).is_ok());
    }

    #[test]
    fn file_names_are_base_names() {
        assert_eq!(file_name(Path::new("/tmp/dir/report.pdf")), "report.pdf");
        let long = format!("/tmp/{}", "é".repeat(300));
        assert!(file_name(Path::new(&long)).len() <= MAX_FILE_NAME_LEN);
    }
}

mod groups;
mod offers;
mod password;
mod remember;
