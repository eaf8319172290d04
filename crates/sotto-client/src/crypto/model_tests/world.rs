//! The model's world: each device's local store (what it committed,
//! nothing more) and the server (rooms, to-device queues, the key
//! directory, acknowledged positions, and what each connection has queued).

use std::collections::{BTreeMap, VecDeque};

use sotto_proto::e2e::{DeviceKeys, SignedOneTimeKey};
use sotto_proto::{
    DeviceId, ErrorCode, ErrorReply, Response, RoomContent, RoomEvent, RoomRef, Username,
};
use zeroize::Zeroizing;

use crate::crypto::Tag;
use crate::local_store::{Changes, HeldMeta, HeldRow, Loaded, RecordKey};

/// A device's local store: what it committed, nothing more.
#[derive(Debug, Default)]
pub(super) struct MemStore {
    pub(super) records: BTreeMap<(&'static str, Vec<u8>), Vec<u8>>,
    pub(super) positions: BTreeMap<u64, u64>,
    pub(super) held: BTreeMap<(u64, u64), HeldRow>,
}

pub(super) fn clone_row(row: &HeldRow) -> HeldRow {
    HeldRow {
        room_id: row.room_id,
        seq: row.seq,
        session_id: row.session_id.clone(),
        sender_user: row.sender_user.clone(),
        sender_device: row.sender_device.clone(),
        event: row.event.clone(),
    }
}

impl MemStore {
    pub(super) fn write(&mut self, changes: Changes) {
        if changes.clear_records {
            self.records.clear();
        }
        for (key, value) in changes.records {
            self.records.insert((key.kind, key.id), value.to_vec());
        }
        for (room, seq) in changes.positions {
            let at = self.positions.entry(room).or_default();
            *at = (*at).max(seq);
        }
        for row in changes.held {
            self.held.insert((row.room_id, row.seq), row);
        }
        for key in changes.unheld {
            self.held.remove(&key);
        }
    }

    pub(super) fn loaded(&self) -> Loaded {
        Loaded {
            records: self
                .records
                .iter()
                .map(|((kind, id), value)| {
                    (
                        RecordKey {
                            kind,
                            id: id.clone(),
                        },
                        Zeroizing::new(value.clone()),
                    )
                })
                .collect(),
            positions: self.positions.iter().map(|(r, s)| (*r, *s)).collect(),
            held: self
                .held
                .values()
                .map(|row| HeldMeta {
                    room_id: row.room_id,
                    seq: row.seq,
                    session_id: row.session_id.clone(),
                    sender_user: row.sender_user.clone(),
                    sender_device: row.sender_device.clone(),
                    size: row.event.len() + 40,
                })
                .collect(),
            legacy: None,
            offers: Vec::new(),
            next_offer: 1,
        }
    }

    pub(super) fn held_for(&self, room_id: u64, session_id: &str) -> Vec<HeldRow> {
        self.held
            .values()
            .filter(|row| row.room_id == room_id && row.session_id == session_id)
            .map(clone_row)
            .collect()
    }
}

pub(super) type DeviceKey = (Username, DeviceId);

#[derive(Debug)]
pub(super) struct ServerRoom {
    pub(super) reference: RoomRef,
    /// Members and the position after which they see events.
    pub(super) members: BTreeMap<Username, u64>,
    pub(super) last_seq: u64,
    /// Stored events by position (to-device queues are pruned once acked).
    pub(super) events: BTreeMap<u64, (i64, RoomEvent)>,
    /// For a to-device queue: its device.
    pub(super) inbox_of: Option<DeviceKey>,
}

#[derive(Debug, Default)]
pub(super) struct ServerDevice {
    pub(super) keys: Option<DeviceKeys>,
    pub(super) one_time_keys: VecDeque<SignedOneTimeKey>,
    pub(super) fallback: Option<SignedOneTimeKey>,
    pub(super) inbox: u64,
    /// Acknowledged positions the server holds in memory, and those it
    /// wrote to disk (a restart keeps only these).
    pub(super) acked: BTreeMap<u64, u64>,
    pub(super) flushed: BTreeMap<u64, u64>,
}

#[derive(Debug, Default)]
pub(super) struct Server {
    pub(super) rooms: BTreeMap<u64, ServerRoom>,
    pub(super) devices: BTreeMap<DeviceKey, ServerDevice>,
    pub(super) next_room: u64,
}

/// Something waiting on a connection for its device, in order.
#[derive(Debug)]
pub(super) enum Incoming {
    Event(i64, RoomEvent),
    Reply(Tag, Result<Response, ErrorReply>),
    KeyCount(u32, bool),
    /// The user's devices changed (keys published, or a device removed).
    DevicesChanged(Username),
}

pub(super) fn refused(message: &str) -> ErrorReply {
    ErrorReply {
        code: ErrorCode::Invalid,
        message: message.into(),
    }
}

impl Server {
    /// The digest of the members' devices with published keys, as the
    /// real server checks a private message's against.
    pub(super) fn device_digest(&self, is_member: impl Fn(&Username) -> bool) -> u64 {
        sotto_proto::e2e::device_digest(
            self.devices
                .iter()
                .filter(|(k, d)| is_member(&k.0) && d.keys.is_some())
                .map(|(k, _)| (k.0.as_str(), k.1.as_str())),
        )
    }

    pub(super) fn add_room(&mut self, reference: RoomRef, members: &[Username]) -> u64 {
        self.next_room += 1;
        let id = self.next_room;
        self.rooms.insert(
            id,
            ServerRoom {
                reference,
                members: members.iter().map(|m| (m.clone(), 0)).collect(),
                last_seq: 0,
                events: BTreeMap::new(),
                inbox_of: None,
            },
        );
        id
    }

    /// A device logs in for the first time: it starts at the end of every
    /// room its user is in (it could not read what came before anyway).
    pub(super) fn add_device(&mut self, key: DeviceKey) {
        let start: BTreeMap<u64, u64> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.inbox_of.is_none() && r.members.contains_key(&key.0))
            .map(|(id, r)| (*id, r.last_seq))
            .collect();
        let inbox = self.add_room(
            RoomRef::Inbox {
                device: key.1.clone(),
            },
            std::slice::from_ref(&key.0),
        );
        self.rooms.get_mut(&inbox).unwrap().inbox_of = Some(key.clone());
        self.devices.insert(
            key,
            ServerDevice {
                inbox,
                acked: start.clone(),
                flushed: start,
                ..ServerDevice::default()
            },
        );
    }

    /// Where `device` is up to in `room` (as the real server counts it):
    /// its acknowledgement, else the point its user joined.
    pub(super) fn cursor(&self, device: &DeviceKey, room_id: u64) -> u64 {
        let room = &self.rooms[&room_id];
        let joined = room.members.get(&device.0).copied().unwrap_or(0);
        let acked = self.devices[device]
            .acked
            .get(&room_id)
            .copied()
            .unwrap_or(0);
        acked.max(joined)
    }

    /// What a device gets when it connects: its to-device queue first,
    /// then every room it is in, from its cursor.
    pub(super) fn sync(&self, device: &DeviceKey) -> VecDeque<Incoming> {
        let inbox = self.devices[device].inbox;
        let mut rooms: Vec<u64> = self
            .rooms
            .iter()
            .filter(|(id, room)| {
                room.members.contains_key(&device.0)
                    && room.inbox_of.as_ref().is_none_or(|d| d == device)
                    && **id != inbox
            })
            .map(|(id, _)| *id)
            .collect();
        rooms.insert(0, inbox);
        let mut out = VecDeque::new();
        for room_id in rooms {
            let after = self.cursor(device, room_id);
            for (seq, (ts, event)) in &self.rooms[&room_id].events {
                if *seq > after {
                    out.push_back(Incoming::Event(*ts, event.clone()));
                }
            }
        }
        out
    }

    /// Appends an event; the devices to deliver it to (not `origin`).
    pub(super) fn append(
        &mut self,
        room_id: u64,
        sender: &DeviceKey,
        content: RoomContent,
        ts: i64,
    ) -> (RoomEvent, Vec<DeviceKey>) {
        let room = self.rooms.get_mut(&room_id).unwrap();
        room.last_seq += 1;
        let event = RoomEvent {
            room_id,
            room: room.reference.clone(),
            seq: room.last_seq,
            sender: sender.0.clone(),
            content,
        };
        room.events.insert(event.seq, (ts, event.clone()));
        let to: Vec<DeviceKey> = match &room.inbox_of {
            Some(device) => vec![device.clone()],
            None => self
                .devices
                .keys()
                .filter(|d| room.members.contains_key(&d.0) && *d != sender)
                .cloned()
                .collect(),
        };
        (event, to)
    }

    pub(super) fn flush(&mut self) {
        for device in self.devices.values_mut() {
            device.flushed = device.acked.clone();
            for (room, seq) in &device.flushed {
                if let Some(r) = self.rooms.get_mut(room)
                    && r.inbox_of.is_some()
                {
                    r.events.retain(|s, _| s > seq);
                }
            }
        }
    }
}
