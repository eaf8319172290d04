//! Sessions in the core: registering accounts, attaching and detaching
//! connections (presence), acknowledgements, and who is online.

use sotto_proto::{
    Ack, ErrorCode, ErrorReply, EventBody, EventKind, PresenceChange, Response, SharedEvent,
    Status, Username,
};

use super::{
    AttachLogin, Conn, ConnHandle, ConnId, Core, Effects, Online, Outbound, SyncRange,
    encode_reply, err, now_ms, state,
};
use crate::store::RoomKind;
use crate::store::Writer as _;
use sotto_proto::limits::MAX_LISTED_MEMBERS;

impl Core {
    pub(super) fn register(
        &mut self,
        name: Username,
        record: &[u8],
    ) -> anyhow::Result<Result<i64, ErrorReply>> {
        if self.closing {
            return Ok(Err(err(
                ErrorCode::ShuttingDown,
                "the server is shutting down",
            )));
        }
        if self.dir.user_ids.contains_key(&name) {
            return Ok(Err(err(
                ErrorCode::UsernameTaken,
                format!("the name '{name}' is taken; choose another"),
            )));
        }
        let id = self.db.create_user(name.as_str(), record, now_ms())?;
        self.dir.user_ids.insert(name.clone(), id);
        self.dir.user_names.insert(id, name);
        Ok(Ok(id))
    }

    /// A new OPAQUE record for an account; an old password hash is dropped.
    pub(super) fn set_password(
        &mut self,
        user_id: i64,
        record: &[u8],
    ) -> anyhow::Result<Result<(), ErrorReply>> {
        if self.closing {
            return Ok(Err(err(
                ErrorCode::ShuttingDown,
                "the server is shutting down",
            )));
        }
        Ok(if self.db.set_password(user_id, record)? {
            Ok(())
        } else {
            Err(err(ErrorCode::UnknownUser, "the account no longer exists"))
        })
    }

    pub(super) fn attach(
        &mut self,
        conn: ConnHandle,
        login: AttachLogin,
        fx: &mut Effects,
    ) -> anyhow::Result<bool> {
        let AttachLogin {
            user,
            device,
            registered,
            session_token,
            token_hash,
            req_id,
        } = login;
        let refusal = match self.dir.user_names.get(&user) {
            _ if self.closing => Some(err(ErrorCode::ShuttingDown, "the server is shutting down")),
            None => Some(err(ErrorCode::Internal, "the account vanished; try again")),
            Some(_) => None,
        };
        if let Some(refusal) = refusal {
            // Not registered, so answered directly; nothing to commit.
            if let Some(frame) = encode_reply(req_id, Err(refusal)) {
                conn.send(Outbound::Frame(frame));
            }
            return Ok(false);
        }
        let name = self.name(user)?;
        let device_key = match self.dir.device_keys.get(&(user, device.clone())) {
            Some(key) => *key,
            // A session token whose device was removed (after the token
            // was checked): the device is not brought back.
            None if token_hash.is_none() => {
                let refusal = err(
                    ErrorCode::WrongPassword,
                    "this device was removed from the account; log in with your password",
                );
                if let Some(frame) = encode_reply(req_id, Err(refusal)) {
                    conn.send(Outbound::Frame(frame));
                }
                return Ok(false);
            }
            None if self.dir.user_devices.get(&user).map_or(0, Vec::len)
                >= self.quotas.devices_per_account =>
            {
                let refusal = err(
                    ErrorCode::QuotaExceeded,
                    format!(
                        "{name} already has {} devices, the most this server allows: \
                         remove one from another device with @devices remove ID",
                        self.quotas.devices_per_account
                    ),
                );
                if let Some(frame) = encode_reply(req_id, Err(refusal)) {
                    conn.send(Outbound::Frame(frame));
                }
                return Ok(false);
            }
            None => {
                let key = self.db.create_device(user, device.as_str(), now_ms())?;
                self.dir.device_keys.insert((user, device.clone()), key);
                self.dir.device_names.insert(key, device.clone());
                self.dir.user_devices.entry(user).or_default().push(key);
                // A new device starts at the end of every room: it has no
                // keys for what came before. (Without a position of its
                // own, a device would otherwise miss what its user's other
                // devices read while it was away.)
                // Written with the device, in the same transaction.
                for room_id in self.dir.user_rooms.get(&user).into_iter().flatten() {
                    if let Some(room) = self.dir.rooms.get(room_id) {
                        self.db.set_cursor(key, *room_id, room.last_seq)?;
                        self.dir.cursors.insert((key, *room_id), room.last_seq);
                    }
                }
                key
            }
        };
        if let Some(hash) = token_hash {
            self.db.set_token_hash(device_key, &hash)?;
        }
        let conn_id = conn.id;
        self.conns.insert(
            conn_id,
            Conn {
                user,
                device_key,
                device: device.clone(),
                handle: conn,
                removed: false,
            },
        );
        fx.attached.push(conn_id);
        // Online elsewhere in the cluster: the same status here.
        let elsewhere = self.status_anywhere(user);
        let online = self.online.entry(user).or_insert_with(|| Online {
            status: elsewhere.unwrap_or(Status::Normal),
            conns: Vec::new(),
        });
        online.conns.push(conn_id);
        let status = online.status;
        if online.conns.len() == 1 {
            self.publish_presence(user, Some(status));
        }
        if elsewhere.is_none() {
            self.online_names.insert(name.clone());
            self.announce(
                fx,
                EventKind::Presence {
                    user: name.clone(),
                    change: PresenceChange::Online(status),
                },
                Some(conn_id),
            );
        }
        fx.reply(
            conn_id,
            req_id,
            Ok(Response::LoggedIn(sotto_proto::LoggedIn {
                user: name,
                device_id: device,
                registered,
                online: self.names(MAX_LISTED_MEMBERS),
                online_total: self.online_total(),
                groups: self.dir.groups_of(user, MAX_LISTED_MEMBERS),
                session_token,
            })),
        );
        let ranges = self.sync_ranges(user, device_key, status == Status::Dnd, |_| true);
        fx.send(
            conn_id,
            Outbound::Sync {
                ranges,
                caught_up: true,
            },
        );
        Ok(true)
    }

    /// Ranges of stored events `device` has not acknowledged, for the rooms
    /// `filter` selects; direct rooms are held back while in dnd.
    pub(super) fn sync_ranges(
        &self,
        user: i64,
        device_key: i64,
        dnd: bool,
        filter: impl Fn(&state::Room) -> bool,
    ) -> Vec<SyncRange> {
        let mut ranges: Vec<SyncRange> = self
            .dir
            .user_rooms
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|room_id| {
                let room = self.dir.rooms.get(room_id)?;
                if (dnd && room.kind == RoomKind::Direct)
                    || room.device.is_some_and(|d| d != device_key)
                    || !filter(room)
                {
                    return None;
                }
                let after = self.dir.cursor(user, device_key, *room_id);
                (room.last_seq > after).then_some(SyncRange {
                    room_id: *room_id,
                    after,
                    up_to: room.last_seq,
                })
            })
            .collect();
        // This device's to-device queue first: it carries the room keys the
        // messages in the other rooms need.
        let inbox = self.dir.inboxes.get(&device_key).copied();
        ranges.sort_by_key(|r| (Some(r.room_id) != inbox, r.room_id));
        ranges
    }

    pub(super) fn detach(&mut self, conn_id: ConnId, fx: &mut Effects) {
        let Some(conn) = self.conns.remove(&conn_id) else {
            return;
        };
        let Some(online) = self.online.get_mut(&conn.user) else {
            return;
        };
        online.conns.retain(|c| *c != conn_id);
        if online.conns.is_empty() {
            self.online.remove(&conn.user);
            self.publish_presence(conn.user, None);
            if self.status_anywhere(conn.user).is_some() {
                // Still online on another node.
                return;
            }
            if let Some(name) = self.dir.user_names.get(&conn.user).cloned() {
                self.online_names.remove(&name);
                self.announce(
                    fx,
                    EventKind::Presence {
                        user: name,
                        change: PresenceChange::Offline,
                    },
                    None,
                );
            }
        }
    }

    pub(super) fn ack(&mut self, conn_id: ConnId, ack: Ack) {
        let Some(conn) = self.conns.get(&conn_id).filter(|c| !c.removed) else {
            return;
        };
        let is_member = self
            .dir
            .user_rooms
            .get(&conn.user)
            .is_some_and(|rooms| rooms.contains(&ack.room_id));
        let Some(room) = self.dir.rooms.get(&ack.room_id).filter(|_| is_member) else {
            return;
        };
        let seq = ack.seq.min(room.last_seq);
        let key = (conn.device_key, ack.room_id);
        if self
            .dir
            .cursors
            .get(&key)
            .is_none_or(|current| seq > *current)
        {
            self.dir.cursors.insert(key, seq);
            self.dirty_cursors.insert(key, seq);
        }
    }

    /// Online users and their status, by name.
    /// The first `limit` online users by name, with their status.
    pub(super) fn names(&self, limit: usize) -> Vec<sotto_proto::UserPresence> {
        self.online_names
            .iter()
            .take(limit)
            .filter_map(|name| {
                let id = self.dir.user_ids.get(name)?;
                Some(sotto_proto::UserPresence {
                    user: name.clone(),
                    status: self.status_anywhere(*id)?,
                })
            })
            .collect()
    }

    /// How many users are online (on any node).
    pub(super) fn online_total(&self) -> u32 {
        u32::try_from(self.online_names.len()).unwrap_or(u32::MAX)
    }

    /// Broadcasts a presence change while few enough users are online.
    pub(super) fn announce(&self, fx: &mut Effects, kind: EventKind, except: Option<ConnId>) {
        if self.online_names.len() <= self.presence_limit {
            self.broadcast(fx, kind, except);
        }
    }

    /// Sends a non-stored event to every connection but `except`.
    pub(super) fn broadcast(&self, fx: &mut Effects, kind: EventKind, except: Option<ConnId>) {
        let body = EventBody { ts: now_ms(), kind };
        match SharedEvent::encode(&body) {
            Ok(shared) => {
                for id in self.conns.keys().filter(|id| Some(**id) != except) {
                    fx.send(*id, Outbound::Event(shared.clone()));
                }
            }
            Err(e) => tracing::error!("cannot encode event: {e}"),
        }
    }
}
