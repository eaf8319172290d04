//! The key directory: devices' published identity keys, one-time keys
//! handed out once each, and fallback keys. The server checks shapes and
//! ownership only; clients verify every signature themselves, so a server
//! that lies about keys is caught by the clients, not trusted by them.

use rustc_hash::FxHashMap;
use sotto_proto::e2e::{DeviceKeys, SignedOneTimeKey};
use sotto_proto::limits::{
    MAX_KEY_CLAIM_DEVICES, MAX_KEY_QUERY_USERS, MAX_KEYS_PER_UPLOAD, MAX_STORED_ONE_TIME_KEYS,
    MAX_TO_DEVICE_MESSAGES, MAX_TO_DEVICE_PAYLOAD,
};
use sotto_proto::{
    ClaimedKey, DeviceId, DeviceRef, ErrorCode, ErrorReply, EventBody, EventKind, Response,
    RoomContent, RoomRef, SharedEvent, ToDeviceMessage, Username,
};

use super::state::Room;
use super::{ConnId, Core, Effects, Outbound, err, now_ms};
use crate::store::RoomKind;
use crate::store::Writer as _;

type Reply = Result<Response, ErrorReply>;

/// Per-device key state the core keeps in memory.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyState {
    pub one_time_keys: u32,
    pub has_fallback: bool,
    pub fallback_used: bool,
}

/// A device's inbox is shared out: one sender may fill this fraction of it.
const INBOX_SHARES: u64 = 4;

impl Core {
    /// The user, device row id and device id logged in on `conn_id`.
    fn logged_in_device(&self, conn_id: ConnId) -> Option<(i64, i64, DeviceId)> {
        self.conns
            .get(&conn_id)
            .map(|c| (c.user, c.device_key, c.device.clone()))
    }

    fn key_count(&self, device_key: i64) -> Response {
        let state = self
            .dir
            .key_state
            .get(&device_key)
            .copied()
            .unwrap_or_default();
        Response::KeyCount {
            one_time_keys: state.one_time_keys,
            fallback_used: state.fallback_used,
        }
    }

    /// `UploadKeys` from the device logged in on `conn_id`.
    pub(super) fn upload_keys(
        &mut self,
        conn_id: ConnId,
        device_keys: Option<DeviceKeys>,
        one_time_keys: Vec<SignedOneTimeKey>,
        fallback_key: Option<SignedOneTimeKey>,
        fx: &mut Effects,
    ) -> anyhow::Result<Reply> {
        let Some((user, device_key, device)) = self.logged_in_device(conn_id) else {
            return Ok(Err(err(ErrorCode::Internal, "connection vanished")));
        };
        let name = self.name(user)?;
        if one_time_keys.len() > MAX_KEYS_PER_UPLOAD {
            return Ok(Err(err(
                ErrorCode::Invalid,
                format!("at most {MAX_KEYS_PER_UPLOAD} one-time keys per upload"),
            )));
        }
        if one_time_keys.iter().any(|k| k.fallback)
            || fallback_key.as_ref().is_some_and(|k| !k.fallback)
        {
            return Ok(Err(err(
                ErrorCode::Invalid,
                "one-time keys and the fallback key are marked the wrong way round",
            )));
        }
        if let Some(keys) = device_keys {
            if keys.user != name || keys.device != device {
                return Ok(Err(err(
                    ErrorCode::Invalid,
                    "device keys must name this account and this device",
                )));
            }
            match self.dir.published_keys.get(&device_key) {
                Some(existing) if *existing == keys => {}
                Some(_) => {
                    return Ok(Err(err(
                        ErrorCode::Invalid,
                        "this device's identity keys are published and cannot change; \
                         a new identity needs a new device id",
                    )));
                }
                None => {
                    let body = keys.encode()?;
                    self.db.publish_keys(device_key, &body)?;
                    self.dir.published_keys.insert(device_key, keys);
                    self.devices_changed(user, &name, fx);
                }
            }
        }
        if !self.dir.published_keys.contains_key(&device_key)
            && (!one_time_keys.is_empty() || fallback_key.is_some())
        {
            return Ok(Err(err(
                ErrorCode::Invalid,
                "publish this device's identity keys before its one-time keys",
            )));
        }
        let mut state = self
            .dir
            .key_state
            .get(&device_key)
            .copied()
            .unwrap_or_default();
        if state.one_time_keys as usize + one_time_keys.len() > MAX_STORED_ONE_TIME_KEYS {
            return Ok(Err(err(
                ErrorCode::Invalid,
                format!(
                    "the directory keeps at most {MAX_STORED_ONE_TIME_KEYS} one-time keys per device; \
                     it has {}",
                    state.one_time_keys
                ),
            )));
        }
        for key in &one_time_keys {
            if self
                .db
                .add_one_time_key(device_key, &key.key_id, &key.encode()?)?
            {
                state.one_time_keys += 1;
            }
        }
        if let Some(key) = fallback_key {
            self.db.set_fallback_key(device_key, &key.encode()?)?;
            state.has_fallback = true;
            state.fallback_used = false;
        }
        self.dir.key_state.insert(device_key, state);
        Ok(Ok(self.key_count(device_key)))
    }

    /// `QueryKeys`: every published device of each user.
    pub(super) fn query_keys(&self, users: Vec<Username>) -> Reply {
        if users.len() > MAX_KEY_QUERY_USERS {
            return Err(err(
                ErrorCode::Invalid,
                format!("at most {MAX_KEY_QUERY_USERS} users per key query"),
            ));
        }
        let mut devices = Vec::new();
        for name in users {
            let Some(user) = self.dir.user_ids.get(&name) else {
                return Err(err(
                    ErrorCode::UnknownUser,
                    format!("no user named '{name}'"),
                ));
            };
            for device_key in self.dir.user_devices.get(user).into_iter().flatten() {
                if let Some(keys) = self.dir.published_keys.get(device_key) {
                    devices.push(keys.clone());
                }
            }
        }
        Ok(Response::Devices { devices })
    }

    /// [`sotto_proto::e2e::device_digest`] of these users' devices with
    /// published keys (what `QueryKeys` lists for them).
    pub(super) fn device_digest(&self, users: &[i64]) -> u64 {
        sotto_proto::e2e::device_digest(
            users
                .iter()
                .flat_map(|user| self.dir.user_devices.get(user).into_iter().flatten())
                .filter_map(|device_key| self.dir.published_keys.get(device_key))
                .map(|keys| (keys.user.as_str(), keys.device.as_str())),
        )
    }

    /// `ClaimKeys`: one key per device, a one-time key while any is left,
    /// else the fallback key. The owner's connections are told the new
    /// count so they can top up.
    pub(super) fn claim_keys(
        &mut self,
        devices: Vec<DeviceRef>,
        fx: &mut Effects,
    ) -> anyhow::Result<Reply> {
        if devices.len() > MAX_KEY_CLAIM_DEVICES {
            return Ok(Err(err(
                ErrorCode::Invalid,
                format!("at most {MAX_KEY_CLAIM_DEVICES} devices per claim"),
            )));
        }
        let mut keys = Vec::new();
        for DeviceRef { user: name, device } in devices {
            let Some(user) = self.dir.user_ids.get(&name).copied() else {
                continue;
            };
            let Some(device_key) = self.dir.device_keys.get(&(user, device.clone())).copied()
            else {
                continue;
            };
            let mut state = self
                .dir
                .key_state
                .get(&device_key)
                .copied()
                .unwrap_or_default();
            let claimed = if state.one_time_keys > 0 {
                match self.db.take_one_time_key(device_key)? {
                    Some(body) => {
                        state.one_time_keys -= 1;
                        Some(body)
                    }
                    None => {
                        state.one_time_keys = 0;
                        None
                    }
                }
            } else {
                None
            };
            let claimed = match claimed {
                Some(body) => Some(body),
                None if state.has_fallback => {
                    let body = self.db.use_fallback_key(device_key)?;
                    if body.is_some() {
                        state.fallback_used = true;
                    }
                    body
                }
                None => None,
            };
            self.dir.key_state.insert(device_key, state);
            let Some(body) = claimed else { continue };
            let key = SignedOneTimeKey::decode(&body)?;
            keys.push(ClaimedKey {
                user: name,
                device,
                key,
            });
            self.notify_device(
                user,
                device_key,
                EventKind::KeyCount {
                    one_time_keys: state.one_time_keys,
                    fallback_used: state.fallback_used,
                },
                fx,
            );
        }
        Ok(Ok(Response::Claimed { keys }))
    }

    /// `SendToDevice`: appends each payload to its device's queue (a room
    /// only that device reads), after checking every target exists.
    pub(super) fn send_to_device(
        &mut self,
        conn_id: ConnId,
        messages: Vec<ToDeviceMessage>,
        fx: &mut Effects,
    ) -> anyhow::Result<Reply> {
        let Some((user, device_key, device)) = self.logged_in_device(conn_id) else {
            return Ok(Err(err(ErrorCode::Internal, "connection vanished")));
        };
        if messages.is_empty() {
            return Ok(Err(err(
                ErrorCode::EmptyMessage,
                "no to-device messages to send",
            )));
        }
        // Recipients check the keys inside the Olm plaintext against the
        // directory's: a device sends only once it has published them.
        let Some(sender_keys) = self.dir.published_keys.get(&device_key).cloned() else {
            return Ok(Err(err(
                ErrorCode::Invalid,
                "publish this device's keys (UploadKeys) before sending to-device messages",
            )));
        };
        let sender_keys = Box::new(sender_keys);
        if messages.len() > MAX_TO_DEVICE_MESSAGES {
            return Ok(Err(err(
                ErrorCode::Invalid,
                format!("at most {MAX_TO_DEVICE_MESSAGES} to-device messages per request"),
            )));
        }
        let total: usize = messages.iter().map(|m| m.payload.len()).sum();
        if total > self.quotas.to_device_request_bytes {
            return Ok(Err(err(
                ErrorCode::QuotaExceeded,
                format!(
                    "at most {} bytes of to-device messages per request",
                    self.quotas.to_device_request_bytes
                ),
            )));
        }
        if let Err(e) = self.check_sender_stored(user, total) {
            return Ok(Err(e));
        }
        let mut targets = Vec::with_capacity(messages.len());
        let mut refused = Vec::new();
        // Bytes this request adds to each queue.
        let mut adding: FxHashMap<i64, u64> = FxHashMap::default();
        for message in &messages {
            if message.payload.is_empty() {
                return Ok(Err(err(ErrorCode::EmptyMessage, "empty to-device payload")));
            }
            if message.payload.len() > MAX_TO_DEVICE_PAYLOAD {
                return Ok(Err(err(
                    ErrorCode::MessageTooLong,
                    format!("a to-device payload may be at most {MAX_TO_DEVICE_PAYLOAD} bytes"),
                )));
            }
            let Some(target_user) = self.dir.user_ids.get(&message.user).copied() else {
                return Ok(Err(err(
                    ErrorCode::UnknownUser,
                    format!("no user named '{}'", message.user),
                )));
            };
            let Some(target) = self
                .dir
                .device_keys
                .get(&(target_user, message.device.clone()))
                .copied()
            else {
                return Ok(Err(err(
                    ErrorCode::UnknownUser,
                    format!("{} has no device '{}'", message.user, message.device),
                )));
            };
            if target == device_key {
                return Ok(Err(err(
                    ErrorCode::Invalid,
                    "a device cannot send to-device messages to itself",
                )));
            }
            let inbox = self.dir.inboxes.get(&target).copied();
            let queued = inbox.map_or(0, |room| self.usage.room_bytes(room));
            let mine = inbox.map_or(0, |room| self.usage.share(room, user));
            let added = adding.entry(target).or_insert(0);
            let len = message.payload.len() as u64;
            // A device's inbox holds at most `inbox_bytes`, and one sender
            // at most a share of it, so nobody can fill it for everyone else.
            // A message over either is left out and named in the reply: the
            // rest still go (one device long away must not stop a room's
            // key sharing), and that device asks for what it missed when it
            // comes back.
            let share = self.quotas.inbox_bytes / INBOX_SHARES;
            if mine + *added + len > share || queued + *added + len > self.quotas.inbox_bytes {
                refused.push(DeviceRef {
                    user: message.user.clone(),
                    device: message.device.clone(),
                });
                targets.push(None);
                continue;
            }
            *added += len;
            targets.push(Some((target_user, target)));
        }
        for (target, message) in targets.into_iter().zip(messages) {
            let Some((target_user, target)) = target else {
                continue;
            };
            let room_id = self.inbox_room(target_user, target)?;
            self.append(
                fx,
                room_id,
                user,
                RoomContent::ToDevice {
                    device: device.clone(),
                    keys: sender_keys.clone(),
                    payload: message.payload,
                },
            )?;
        }
        if refused.is_empty() {
            Ok(Ok(Response::Done))
        } else {
            Ok(Ok(Response::ToDeviceSent { refused }))
        }
    }

    /// A device's to-device queue, created on first use.
    fn inbox_room(&mut self, user: i64, device_key: i64) -> anyhow::Result<u64> {
        if let Some(room) = self.dir.inboxes.get(&device_key) {
            return Ok(*room);
        }
        let device = self
            .dir
            .device_names
            .get(&device_key)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("unknown device row {device_key}"))?;
        let room_id = self.insert_room(
            RoomKind::Inbox,
            None,
            Some(user),
            Some((device_key, device_key)),
        )?;
        let mut room = Room::new(RoomKind::Inbox, RoomRef::Inbox { device }, Some(user));
        room.device = Some(device_key);
        self.dir.rooms.insert(room_id, room);
        self.dir.inboxes.insert(device_key, room_id);
        self.add_member(room_id, user, 0)?;
        Ok(room_id)
    }

    /// Tells `user` and everyone sharing a room with them (not the lobby)
    /// that `user` has a new device, or one fewer.
    pub(super) fn devices_changed(&self, user: i64, name: &Username, fx: &mut Effects) {
        self.notify_devices_changed(user, name, fx);
    }

    /// Tells this node's connections of `user` and of everyone sharing a
    /// room with them that `user`'s devices changed.
    pub(super) fn notify_devices_changed(&self, user: i64, name: &Username, fx: &mut Effects) {
        let mut audience = std::collections::BTreeSet::from([user]);
        for room_id in self.dir.user_rooms.get(&user).into_iter().flatten() {
            if let Some(room) = self.dir.rooms.get(room_id) {
                audience.extend(room.members.keys().copied());
            }
        }
        let Some(shared) = encode_event(EventKind::DevicesChanged { user: name.clone() }) else {
            return;
        };
        for member in audience {
            for conn in self.online.get(&member).into_iter().flat_map(|o| &o.conns) {
                fx.send(*conn, Outbound::Event(shared.clone()));
            }
        }
    }

    /// Sends an unstored event to the connections of one device.
    pub(super) fn notify_device(
        &self,
        user: i64,
        device_key: i64,
        kind: EventKind,
        fx: &mut Effects,
    ) {
        let Some(shared) = encode_event(kind) else {
            return;
        };
        for conn_id in self.online.get(&user).into_iter().flat_map(|o| &o.conns) {
            if self
                .conns
                .get(conn_id)
                .is_some_and(|c| c.device_key == device_key)
            {
                fx.send(*conn_id, Outbound::Event(shared.clone()));
            }
        }
    }
}

pub(super) fn encode_event(kind: EventKind) -> Option<SharedEvent> {
    SharedEvent::encode(&EventBody { ts: now_ms(), kind })
        .map_err(|e| tracing::error!("cannot encode event: {e}"))
        .ok()
}
