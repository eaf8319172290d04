//! Request handlers of the core: validate against the directory, write in
//! the open transaction, queue replies and fanout.

use sotto_proto::limits::{MAX_GROUP_MEMBERS, MAX_PAYLOAD_LEN, MAX_TEXT_LEN};
use sotto_proto::{
    DeliveryNote, DeviceId, ErrorCode, ErrorReply, EventKind, GroupName, PresenceChange, Request,
    Response, RoomContent, RoomRef, Status, Username,
};

use super::state::{Member, Room, sorted_pair};
use super::{ConnId, Core, Effects, err, now_ms};
use crate::store::Writer as _;
use crate::store::{LOBBY_ROOM, NewRoom, RoomKind};

type Reply = Result<Response, ErrorReply>;

impl Core {
    /// Handles one request of a logged-in connection. The outer error is a
    /// storage failure (the batch is rejected); the inner one is the reply.
    pub(super) fn request(
        &mut self,
        conn_id: ConnId,
        user: i64,
        device: &DeviceId,
        request: Request,
        fx: &mut Effects,
    ) -> anyhow::Result<Reply> {
        if self.closing
            && !matches!(
                request,
                Request::Names | Request::GetStatus | Request::GroupList | Request::Ping
            )
        {
            return Ok(Err(err(
                ErrorCode::ShuttingDown,
                "the server is shutting down",
            )));
        }
        match request {
            Request::Login(_) | Request::LoginFinish { .. } => Ok(Err(err(
                ErrorCode::AlreadyLoggedIn,
                "this connection is already logged in",
            ))),
            // Password changes are handled by the connection task.
            Request::PasswordStart { .. } | Request::PasswordFinish { .. } => Ok(Err(err(
                ErrorCode::Internal,
                "password changes are not served here",
            ))),
            Request::Ping => Ok(Ok(Response::Pong)),
            Request::Names => Ok(Ok(Response::Names {
                users: self.names(sotto_proto::limits::MAX_LISTED_USERS),
                total: self.online_total(),
            })),
            Request::GetStatus => Ok(Ok(Response::Status {
                status: self.online.get(&user).map_or(Status::Normal, |o| o.status),
            })),
            Request::SetStatus { status } => Ok(self.set_status(user, status, fx)),
            Request::GroupList => Ok(Ok(Response::Groups {
                groups: self.dir.groups_of(user, usize::MAX),
                invitations: self.dir.invitations_of(user),
            })),
            // History is read by the connection task from the store.
            Request::History { .. } | Request::LobbySince { .. } => {
                Ok(Err(err(ErrorCode::Internal, "history is not served here")))
            }
            Request::SendLobby { text } => {
                check!(check_text(&text));
                check!(self.check_stored(user, LOBBY_ROOM, text.len()));
                let (seq, ts) = self.append(fx, LOBBY_ROOM, user, RoomContent::Text { text })?;
                Ok(Ok(Response::Sent {
                    room_id: LOBBY_ROOM,
                    seq,
                    ts,
                    note: None,
                }))
            }
            Request::SendDirect { to, payload } => {
                self.send_direct(conn_id, user, device, to, payload, fx)
            }
            Request::SendGroup { group, payload } => {
                check!(check_payload(&payload));
                let room_id = check!(self.member_group(&group, user));
                check!(self.check_stored(user, room_id, payload.len()));
                let content = RoomContent::Envelope {
                    device: device.clone(),
                    payload,
                };
                let (seq, ts) = self.append(fx, room_id, user, content)?;
                Ok(Ok(Response::Sent {
                    room_id,
                    seq,
                    ts,
                    note: None,
                }))
            }
            Request::GroupCreate { group, members } => self.group_create(user, group, members, fx),
            Request::GroupAdd { group, members } => self.group_add(user, group, members, fx),
            Request::GroupKick { group, members } => self.group_kick(user, group, members, fx),
            Request::GroupLeave { group } => self.group_leave(user, group, fx),
            Request::GroupAccept { group, room_id } => self.group_accept(user, group, room_id, fx),
            Request::GroupDecline { group } => self.group_decline(user, group, fx),
            Request::GroupDelete { group } => self.group_delete(user, group, fx),
            Request::UploadKeys {
                device_keys,
                one_time_keys,
                fallback_key,
            } => self.upload_keys(
                conn_id,
                device_keys.map(|k| *k),
                one_time_keys,
                fallback_key.map(|k| *k),
                fx,
            ),
            Request::QueryKeys { users } => Ok(self.query_keys(users)),
            Request::ClaimKeys { devices } => self.claim_keys(devices, fx),
            Request::SendToDevice { messages } => self.send_to_device(conn_id, messages, fx),
            Request::RemoveDevice { device } => self.remove_device(conn_id, device, fx),
            Request::Once { client_id, message } => {
                self.send_once(conn_id, user, device, client_id, message, fx)
            }
            Request::GroupInfo { group } => {
                let room_id = check!(self.member_group(&group, user));
                Ok(self.dir.group_info(room_id, usize::MAX).map_or_else(
                    || {
                        Err(err(
                            ErrorCode::UnknownGroup,
                            format!("no such group: {group}"),
                        ))
                    },
                    |info| Ok(Response::Group(info)),
                ))
            }
            Request::DirectRoom { with } => {
                let peer = check!(self.user_id(&with));
                if peer == user {
                    return Ok(Err(err(
                        ErrorCode::Invalid,
                        "you have no private room with yourself",
                    )));
                }
                Ok(Ok(Response::Room {
                    room_id: self.direct_room(user, peer)?,
                }))
            }
        }
    }

    fn set_status(&mut self, user: i64, status: Status, fx: &mut Effects) -> Reply {
        let Some(online) = self.online.get_mut(&user) else {
            return Err(err(ErrorCode::Internal, "not online"));
        };
        let previous = online.status;
        online.status = status;
        self.publish_presence(user, Some(status));
        if let Some(name) = self.dir.user_names.get(&user).cloned() {
            self.announce(
                fx,
                EventKind::Presence {
                    user: name,
                    change: PresenceChange::Status(status),
                },
                None,
            );
        }
        if previous == Status::Dnd && status != Status::Dnd {
            // Release the private messages held while in dnd.
            self.release_dnd(user, fx);
        }
        Ok(Response::Status { status })
    }

    pub(super) fn user_id(&self, name: &Username) -> Result<i64, ErrorReply> {
        self.dir
            .user_ids
            .get(name)
            .copied()
            .ok_or_else(|| err(ErrorCode::UnknownUser, format!("no such user: {name}")))
    }

    fn send_direct(
        &mut self,
        _conn_id: ConnId,
        user: i64,
        device: &DeviceId,
        to: Username,
        payload: Vec<u8>,
        fx: &mut Effects,
    ) -> anyhow::Result<Reply> {
        check!(check_payload(&payload));
        let peer = check!(self.user_id(&to));
        if peer == user {
            return Ok(Err(err(
                ErrorCode::Invalid,
                "you cannot send a private message to yourself",
            )));
        }
        let room_id = self.direct_room(user, peer)?;
        check!(self.check_stored(user, room_id, payload.len()));
        let content = RoomContent::Envelope {
            device: device.clone(),
            payload,
        };
        let (seq, ts) = self.append(fx, room_id, user, content)?;
        let note = match self.status_anywhere(peer) {
            None => Some(DeliveryNote::RecipientOffline),
            Some(Status::Dnd) => Some(DeliveryNote::RecipientDnd),
            Some(Status::Away) => Some(DeliveryNote::RecipientAway),
            Some(Status::Normal) => None,
        };
        Ok(Ok(Response::Sent {
            room_id,
            seq,
            ts,
            note,
        }))
    }

    /// Refuses a message of `len` bytes that would take the sender's or the
    /// room's stored bytes over their quota.
    pub(super) fn check_stored(&self, user: i64, room: u64, len: usize) -> Result<(), ErrorReply> {
        self.check_sender_stored(user, len)?;
        let stored = self.usage.room_bytes(room);
        if stored.saturating_add(len as u64) > self.quotas.stored_bytes_per_room {
            return Err(err(
                ErrorCode::QuotaExceeded,
                format!(
                    "this conversation holds {} on the server, the most it keeps for one \
                     conversation ({}); ask the server's operator (its retention options \
                     decide when older messages are deleted)",
                    mib(stored),
                    mib(self.quotas.stored_bytes_per_room)
                ),
            ));
        }
        Ok(())
    }

    /// Refuses `len` more bytes from a sender at its stored-bytes quota.
    pub(super) fn check_sender_stored(&self, user: i64, len: usize) -> Result<(), ErrorReply> {
        let mine = self.usage.sender_bytes(user);
        if mine.saturating_add(len as u64) > self.quotas.stored_bytes_per_user {
            return Err(err(
                ErrorCode::QuotaExceeded,
                format!(
                    "the server stores {} of messages and files you sent, the most it keeps \
                     for one user ({}); ask the server's operator (its retention options \
                     decide when older messages are deleted)",
                    mib(mine),
                    mib(self.quotas.stored_bytes_per_user)
                ),
            ));
        }
        Ok(())
    }

    /// The direct room of two users, created on first use.
    fn direct_room(&mut self, a: i64, b: i64) -> anyhow::Result<u64> {
        let key = (a.min(b), a.max(b));
        if let Some(room) = self.dir.directs.get(&key) {
            return Ok(*room);
        }
        let (name_a, name_b) = (self.name(key.0)?, self.name(key.1)?);
        let room_id = self.insert_room(RoomKind::Direct, None, None, Some(key))?;
        self.dir.directs.insert(key, room_id);
        self.dir.rooms.insert(
            room_id,
            Room::new(
                RoomKind::Direct,
                RoomRef::Direct {
                    users: sorted_pair(name_a, name_b),
                },
                None,
            ),
        );
        self.add_member(room_id, key.0, 0)?;
        self.add_member(room_id, key.1, 0)?;
        Ok(room_id)
    }

    /// A user's notices room, created on first use.
    pub(super) fn notices_room(&mut self, user: i64) -> anyhow::Result<u64> {
        if let Some(room) = self.dir.notices.get(&user) {
            return Ok(*room);
        }
        let name = self.name(user)?;
        let room_id = self.insert_room(RoomKind::Notices, None, Some(user), None)?;
        self.dir.notices.insert(user, room_id);
        self.dir.rooms.insert(
            room_id,
            Room::new(
                RoomKind::Notices,
                RoomRef::Notices { user: name },
                Some(user),
            ),
        );
        self.add_member(room_id, user, 0)?;
        Ok(room_id)
    }

    pub(super) fn name(&self, user: i64) -> anyhow::Result<Username> {
        self.dir
            .user_names
            .get(&user)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("unknown user id {user}"))
    }

    pub(super) fn insert_room(
        &mut self,
        kind: RoomKind,
        name: Option<&GroupName>,
        owner: Option<i64>,
        pair: Option<(i64, i64)>,
    ) -> anyhow::Result<u64> {
        // The store hands out room ids, never one twice (also after the
        // newest room was deleted): clients remember positions by room id,
        // and would take a new room's first events for ones they have.
        self.db.create_room(NewRoom {
            kind,
            name: name.map(GroupName::as_str),
            owner,
            pair,
            now: now_ms(),
        })
    }

    pub(super) fn add_member(
        &mut self,
        room_id: u64,
        user: i64,
        joined_seq: u64,
    ) -> anyhow::Result<()> {
        let room = self
            .dir
            .rooms
            .get_mut(&room_id)
            .ok_or_else(|| anyhow::anyhow!("unknown room"))?;
        let position = room.next_position;
        room.next_position += 1;
        self.db.add_member(room_id, user, joined_seq, position)?;
        room.members.insert(
            user,
            Member {
                joined_seq,
                position,
            },
        );
        self.dir.user_rooms.entry(user).or_default().insert(room_id);
        Ok(())
    }

    pub(super) fn remove_member(&mut self, room_id: u64, user: i64) -> anyhow::Result<()> {
        let devices = self
            .dir
            .user_devices
            .get(&user)
            .cloned()
            .unwrap_or_default();
        self.db.remove_member(room_id, user, &devices)?;
        self.dir.remove_member(room_id, user);
        Ok(())
    }

    /// A room the directory must have (its id came from the directory).
    pub(super) fn room(&self, room_id: u64) -> anyhow::Result<&super::state::Room> {
        self.dir
            .rooms
            .get(&room_id)
            .ok_or_else(|| anyhow::anyhow!("room {room_id} vanished from the directory"))
    }
}

/// Bytes in MiB, for messages.
pub(super) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub(super) fn too_large() -> ErrorReply {
    err(
        ErrorCode::GroupTooLarge,
        format!("a group has at most {MAX_GROUP_MEMBERS} members"),
    )
}

/// Refuses an empty or oversize message; `empty` says whether it has no content.
fn check_size(empty: bool, len: usize, limit: usize) -> Result<(), ErrorReply> {
    if empty {
        return Err(err(
            ErrorCode::EmptyMessage,
            "empty message: nothing to send",
        ));
    }
    if len > limit {
        return Err(err(
            ErrorCode::MessageTooLong,
            format!("message too long: {len} bytes, the limit is {limit}"),
        ));
    }
    Ok(())
}

fn check_text(text: &str) -> Result<(), ErrorReply> {
    check_size(text.trim().is_empty(), text.len(), MAX_TEXT_LEN)
}

fn check_payload(payload: &[u8]) -> Result<(), ErrorReply> {
    check_size(payload.is_empty(), payload.len(), MAX_PAYLOAD_LEN)
}
