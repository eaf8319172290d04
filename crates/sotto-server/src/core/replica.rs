//! The core as one replica of a cluster's state.
//!
//! Every write the core makes goes through the [`Recorder`]: in a cluster
//! it keeps each one as a [`Change`], and the batch's changes become the
//! change log's next entry, committed with the batch. Every other node
//! applies that entry ([`Core::apply_entry`]) to its own directory, exactly
//! as reloading the state from the database would, and delivers the new
//! events and device changes to its own connections. Outside a cluster the
//! recorder only passes writes through.

use sotto_proto::cluster::{Change, LogEntry};
use sotto_proto::{EventKind, SharedEvent};

use super::keys::encode_event;
use super::{Core, Effects, Outbound};
use crate::store::{NewEvent, NewRoom, RoomRow, SentOnce, Snapshot, Writer};

/// The core's writer: passes every write on, and in a cluster keeps it.
pub(crate) struct Recorder {
    inner: Box<dyn Writer>,
    /// The open batch's changes, in a cluster.
    log: Option<Vec<Change>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("recording", &self.log.is_some())
            .finish_non_exhaustive()
    }
}

impl Recorder {
    pub fn new(inner: Box<dyn Writer>, clustered: bool) -> Self {
        Self {
            inner,
            log: clustered.then(Vec::new),
        }
    }

    /// Keeps a change (in a cluster).
    pub fn note(&mut self, change: Change) {
        if let Some(log) = &mut self.log {
            log.push(change);
        }
    }

    /// The open batch's changes.
    pub fn take_log(&mut self) -> Vec<Change> {
        self.log.as_mut().map(std::mem::take).unwrap_or_default()
    }
}

impl Writer for Recorder {
    fn begin(&mut self) -> anyhow::Result<()> {
        if let Some(log) = &mut self.log {
            log.clear();
        }
        self.inner.begin()
    }

    fn commit(&mut self) -> anyhow::Result<()> {
        self.inner.commit()
    }

    fn rollback(&mut self) {
        if let Some(log) = &mut self.log {
            log.clear();
        }
        self.inner.rollback();
    }

    fn snapshot(&mut self) -> anyhow::Result<Snapshot> {
        self.inner.snapshot()
    }

    fn create_user(&mut self, name: &str, record: &[u8], now: i64) -> anyhow::Result<i64> {
        let id = self.inner.create_user(name, record, now)?;
        self.note(Change::UserCreated {
            id,
            name: name.to_owned(),
        });
        Ok(id)
    }

    fn set_password(&mut self, user: i64, record: &[u8]) -> anyhow::Result<bool> {
        self.inner.set_password(user, record)
    }

    fn create_device(&mut self, user: i64, device: &str, now: i64) -> anyhow::Result<i64> {
        let id = self.inner.create_device(user, device, now)?;
        self.note(Change::DeviceCreated {
            id,
            user,
            device: device.to_owned(),
        });
        Ok(id)
    }

    fn set_token_hash(&mut self, device_key: i64, hash: &[u8; 32]) -> anyhow::Result<()> {
        self.inner.set_token_hash(device_key, hash)
    }

    /// Not kept: the core notes which device removed it.
    fn delete_device(&mut self, device_key: i64) -> anyhow::Result<()> {
        self.inner.delete_device(device_key)
    }

    fn create_room(&mut self, room: NewRoom<'_>) -> anyhow::Result<u64> {
        let id = self.inner.create_room(room)?;
        self.note(Change::RoomCreated {
            id,
            kind: room.kind as i64,
            name: room.name.map(str::to_owned),
            owner: room.owner,
            user_a: room.pair.map(|p| p.0),
            user_b: room.pair.map(|p| p.1),
        });
        Ok(id)
    }

    fn delete_room(&mut self, room: u64) -> anyhow::Result<()> {
        self.inner.delete_room(room)?;
        self.note(Change::RoomDeleted { id: room });
        Ok(())
    }

    fn set_owner(&mut self, room: u64, owner: i64) -> anyhow::Result<()> {
        self.inner.set_owner(room, owner)?;
        self.note(Change::OwnerSet { room, owner });
        Ok(())
    }

    fn add_member(
        &mut self,
        room: u64,
        user: i64,
        joined_seq: u64,
        position: i64,
    ) -> anyhow::Result<()> {
        self.inner.add_member(room, user, joined_seq, position)?;
        self.note(Change::MemberAdded {
            room,
            user,
            joined_seq,
            position,
        });
        Ok(())
    }

    fn remove_member(&mut self, room: u64, user: i64, devices: &[i64]) -> anyhow::Result<()> {
        self.inner.remove_member(room, user, devices)?;
        self.note(Change::MemberRemoved { room, user });
        Ok(())
    }

    fn add_invitation(&mut self, room: u64, user: i64, by: i64, ts: i64) -> anyhow::Result<()> {
        self.inner.add_invitation(room, user, by, ts)?;
        self.note(Change::Invited { room, user, by, ts });
        Ok(())
    }

    fn delete_invitation(&mut self, room: u64, user: i64) -> anyhow::Result<()> {
        self.inner.delete_invitation(room, user)?;
        self.note(Change::InvitationGone { room, user });
        Ok(())
    }

    fn insert_event(&mut self, event: NewEvent<'_>) -> anyhow::Result<()> {
        self.inner.insert_event(event)?;
        self.note(Change::Event {
            room: event.room_id,
            seq: event.seq,
            ts: event.ts,
            sender: event.sender,
            body: event.body.to_vec(),
        });
        Ok(())
    }

    fn set_cursor(&mut self, device_key: i64, room: u64, seq: u64) -> anyhow::Result<()> {
        self.inner.set_cursor(device_key, room, seq)?;
        self.note(Change::CursorSet {
            device: device_key,
            room,
            seq,
        });
        Ok(())
    }

    fn event_bytes(&mut self, room: u64, up_to: u64) -> anyhow::Result<Vec<(Option<i64>, u64)>> {
        self.inner.event_bytes(room, up_to)
    }

    /// Not kept: `Usage::prune` notes what a deletion freed.
    fn delete_events(&mut self, room: u64, up_to: u64) -> anyhow::Result<()> {
        self.inner.delete_events(room, up_to)
    }

    fn oldest_event(&mut self, room: u64) -> anyhow::Result<Option<(u64, i64)>> {
        self.inner.oldest_event(room)
    }

    fn last_before(
        &mut self,
        room: u64,
        from: u64,
        to: u64,
        cutoff: i64,
    ) -> anyhow::Result<Option<u64>> {
        self.inner.last_before(room, from, to, cutoff)
    }

    fn publish_keys(&mut self, device_key: i64, body: &[u8]) -> anyhow::Result<()> {
        self.inner.publish_keys(device_key, body)?;
        self.note(Change::KeysPublished {
            device: device_key,
            body: body.to_vec(),
        });
        Ok(())
    }

    fn add_one_time_key(
        &mut self,
        device_key: i64,
        key_id: &str,
        body: &[u8],
    ) -> anyhow::Result<bool> {
        let added = self.inner.add_one_time_key(device_key, key_id, body)?;
        if added {
            self.note(Change::OneTimeKeyAdded { device: device_key });
        }
        Ok(added)
    }

    fn set_fallback_key(&mut self, device_key: i64, body: &[u8]) -> anyhow::Result<()> {
        self.inner.set_fallback_key(device_key, body)?;
        self.note(Change::FallbackKeySet { device: device_key });
        Ok(())
    }

    fn take_one_time_key(&mut self, device_key: i64) -> anyhow::Result<Option<Vec<u8>>> {
        let key = self.inner.take_one_time_key(device_key)?;
        if key.is_some() {
            self.note(Change::OneTimeKeyTaken { device: device_key });
        }
        Ok(key)
    }

    fn use_fallback_key(&mut self, device_key: i64) -> anyhow::Result<Option<Vec<u8>>> {
        let key = self.inner.use_fallback_key(device_key)?;
        if key.is_some() {
            self.note(Change::FallbackKeyUsed { device: device_key });
        }
        Ok(key)
    }

    fn record_sent_once(
        &mut self,
        user: i64,
        client_id: u64,
        sent: SentOnce,
        evicted: Option<u64>,
    ) -> anyhow::Result<()> {
        self.inner
            .record_sent_once(user, client_id, sent, evicted)?;
        self.note(Change::SentOnce {
            user,
            client_id,
            room: sent.room_id,
            seq: sent.seq,
            ts: sent.ts,
        });
        Ok(())
    }

    fn lock_log(&mut self, after: u64) -> anyhow::Result<Vec<Vec<u8>>> {
        self.inner.lock_log(after)
    }

    fn read_log(&mut self, after: u64) -> anyhow::Result<Option<Vec<Vec<u8>>>> {
        self.inner.read_log(after)
    }

    fn append_log(&mut self, epoch: u64, entry: &[u8], keep: u64) -> anyhow::Result<()> {
        self.inner.append_log(epoch, entry, keep)
    }
}

impl Core {
    /// Applies an entry another node committed: to the directory, as
    /// reloading the state would, and to this node's connections (new
    /// events, device and key changes).
    pub(super) fn apply_entry(&mut self, entry: &LogEntry, fx: &mut Effects) {
        for change in &entry.changes {
            self.apply_change(change, fx);
        }
    }

    fn apply_change(&mut self, change: &Change, fx: &mut Effects) {
        let dir = &mut self.dir;
        match change {
            Change::UserCreated { id, name } => dir.add_user(*id, name),
            Change::DeviceCreated { id, user, device } => dir.add_device(*id, *user, device),
            Change::DeviceDeleted { id, by } => {
                let Some(user) = dir.device_user(*id) else {
                    return;
                };
                if let Some(inbox) = dir.inboxes.get(id).copied() {
                    dir.remove_room(inbox);
                }
                dir.remove_device(user, *id);
                self.dirty_cursors.retain(|(d, _), _| d != id);
                // Its connections here are told, then closed.
                let by = sotto_proto::DeviceId::parse(by).ok();
                let conns: Vec<_> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.device_key == *id)
                    .map(|(conn_id, _)| *conn_id)
                    .collect();
                for conn_id in conns {
                    let Some(conn) = self.conns.get_mut(&conn_id) else {
                        continue;
                    };
                    conn.removed = true;
                    let by = by.clone().unwrap_or_else(|| conn.device.clone());
                    if let Some(shared) = encode_event(EventKind::DeviceRemoved { by }) {
                        fx.send(conn_id, Outbound::Event(shared));
                    }
                    fx.send(conn_id, Outbound::Close);
                }
                if let Ok(name) = self.name(user) {
                    self.notify_devices_changed(user, &name, fx);
                }
            }
            Change::RoomCreated {
                id,
                kind,
                name,
                owner,
                user_a,
                user_b,
            } => dir.add_room(&RoomRow {
                id: *id,
                kind: *kind,
                name: name.clone(),
                owner: *owner,
                user_a: *user_a,
                user_b: *user_b,
            }),
            Change::RoomDeleted { id } => {
                dir.remove_room(*id);
                self.dirty_cursors.retain(|(_, room), _| room != id);
            }
            Change::OwnerSet { room, owner } => {
                if let Some(room) = dir.rooms.get_mut(room) {
                    room.owner = Some(*owner);
                }
            }
            Change::MemberAdded {
                room,
                user,
                joined_seq,
                position,
            } => dir.add_member(*room, *user, *joined_seq, *position),
            Change::MemberRemoved { room, user } => dir.remove_member(*room, *user),
            Change::Invited { room, user, by, ts } => dir.add_invitation(*room, *user, *by, *ts),
            Change::InvitationGone { room, user } => dir.remove_invitation(*room, *user),
            Change::Event {
                room,
                seq,
                ts,
                sender,
                body,
            } => {
                let Some(stored) = dir.rooms.get_mut(room) else {
                    return;
                };
                stored.last_seq = stored.last_seq.max(*seq);
                self.usage
                    .added(*room, *sender, *seq, *ts, body.len() as u64);
                let shared = SharedEvent::from_encoded(bytes::Bytes::from(body.clone()));
                self.fan_out(fx, *room, *seq, *sender, &shared, None);
            }
            Change::CursorSet { device, room, seq } => {
                dir.cursors.insert((*device, *room), *seq);
            }
            Change::EventsDeleted {
                room,
                freed,
                oldest,
                ..
            } => self.usage.forget(*room, freed, *oldest),
            Change::KeysPublished { device, body } => {
                match sotto_proto::e2e::DeviceKeys::decode(body) {
                    Ok(keys) => {
                        dir.published_keys.insert(*device, keys);
                    }
                    Err(e) => tracing::error!(device, "unreadable published keys: {e}"),
                }
                if let Some(user) = self.dir.device_user(*device)
                    && let Ok(name) = self.name(user)
                {
                    self.notify_devices_changed(user, &name, fx);
                }
            }
            Change::OneTimeKeyAdded { device } => {
                dir.key_state.entry(*device).or_default().one_time_keys += 1;
            }
            Change::OneTimeKeyTaken { device } | Change::FallbackKeyUsed { device } => {
                let state = dir.key_state.entry(*device).or_default();
                if matches!(change, Change::OneTimeKeyTaken { .. }) {
                    state.one_time_keys = state.one_time_keys.saturating_sub(1);
                } else {
                    state.fallback_used = true;
                }
                let state = *state;
                if let Some(user) = self.dir.device_user(*device) {
                    self.notify_device(
                        user,
                        *device,
                        EventKind::KeyCount {
                            one_time_keys: state.one_time_keys,
                            fallback_used: state.fallback_used,
                        },
                        fx,
                    );
                }
            }
            Change::FallbackKeySet { device } => {
                let state = dir.key_state.entry(*device).or_default();
                state.has_fallback = true;
                state.fallback_used = false;
            }
            Change::SentOnce {
                user,
                client_id,
                room,
                seq,
                ts,
            } => {
                dir.sent_once.remember(
                    *user,
                    *client_id,
                    SentOnce {
                        room_id: *room,
                        seq: *seq,
                        ts: *ts,
                    },
                );
            }
        }
    }
}
