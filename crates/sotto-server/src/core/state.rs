//! The core's in-memory directory: users, devices, rooms, memberships,
//! delivery cursors. Loaded from the database at start (and reloaded if a
//! commit ever fails), then kept in step with every committed write.

use std::collections::HashMap;

use rustc_hash::{FxHashMap, FxHashSet};

use sotto_proto::{DeviceId, GroupInfo, GroupName, RoomRef, Username};

use crate::store::{LOBBY_ROOM, RoomKind, RoomRow, Snapshot};

/// One member of a room.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Member {
    /// The member sees events after this sequence number.
    pub joined_seq: u64,
    /// Join order, for listing members and choosing the next owner.
    pub position: i64,
}

/// A room and who is in it.
#[derive(Debug)]
pub(crate) struct Room {
    pub kind: RoomKind,
    /// The room as clients name it; copied into every event.
    pub reference: RoomRef,
    /// Group owner (groups only).
    pub owner: Option<i64>,
    /// Members by user id (empty for the lobby, which everyone sees).
    pub members: FxHashMap<i64, Member>,
    /// (Groups) users invited and not yet joined: who invited them, when.
    pub invited: FxHashMap<i64, (i64, i64)>,
    /// Sequence number of the newest event; the next one gets `last_seq + 1`.
    pub last_seq: u64,
    /// Next join position to hand out.
    pub next_position: i64,
    /// For a device's to-device queue: the device row id; its events go to
    /// that device only.
    pub device: Option<i64>,
}

impl Room {
    /// An empty room.
    pub fn new(kind: RoomKind, reference: RoomRef, owner: Option<i64>) -> Self {
        Self {
            kind,
            reference,
            owner,
            members: FxHashMap::default(),
            invited: FxHashMap::default(),
            last_seq: 0,
            next_position: 0,
            device: None,
        }
    }

    /// Member ids in join order.
    pub fn members_in_order(&self) -> Vec<i64> {
        self.first_members(usize::MAX)
    }

    /// The first `limit` member ids in join order, without sorting them all.
    pub fn first_members(&self, limit: usize) -> Vec<i64> {
        let mut members: Vec<(i64, i64)> = self
            .members
            .iter()
            .map(|(id, m)| (m.position, *id))
            .collect();
        if limit < members.len() {
            members.select_nth_unstable(limit);
            members.truncate(limit);
        }
        members.sort_unstable();
        members.into_iter().map(|(_, id)| id).collect()
    }
}

/// Everything the core knows that lives in the database.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    pub user_names: FxHashMap<i64, Username>,
    pub user_ids: HashMap<Username, i64>,
    /// Device row ids by (user, device id).
    pub device_keys: HashMap<(i64, DeviceId), i64>,
    /// Device row ids of each user.
    pub user_devices: FxHashMap<i64, Vec<i64>>,
    pub rooms: FxHashMap<u64, Room>,
    pub groups: HashMap<GroupName, u64>,
    /// Direct rooms by (lower user id, higher user id).
    pub directs: FxHashMap<(i64, i64), u64>,
    /// Each user's notices room.
    pub notices: FxHashMap<i64, u64>,
    /// Each device's to-device queue room, by device row id.
    pub inboxes: FxHashMap<i64, u64>,
    /// Device ids by device row id.
    pub device_names: FxHashMap<i64, DeviceId>,
    /// Rooms (other than the lobby) each user belongs to.
    pub user_rooms: FxHashMap<i64, FxHashSet<u64>>,
    /// Groups each user is invited to and has not answered.
    pub invitations: FxHashMap<i64, FxHashSet<u64>>,
    /// Acknowledged position per (device row id, room).
    pub cursors: FxHashMap<(i64, u64), u64>,
    /// Published identity keys by device row id.
    pub published_keys: FxHashMap<i64, sotto_proto::e2e::DeviceKeys>,
    /// One-time and fallback key counts by device row id.
    pub key_state: FxHashMap<i64, super::keys::KeyState>,
    /// The last ids of messages each account sent once.
    pub sent_once: super::once::SentIds,
}

impl Directory {
    /// Builds the directory from what the database holds.
    pub fn load(db: &Snapshot) -> Self {
        let mut dir = Directory {
            sent_once: super::once::SentIds::load(&db.sent_once),
            ..Directory::default()
        };
        for (id, name) in &db.users {
            dir.add_user(*id, name);
        }
        for (key, user, device) in &db.devices {
            dir.add_device(*key, *user, device);
        }
        for row in &db.rooms {
            dir.add_room(row);
        }
        for &(room_id, user, joined_seq, position) in &db.members {
            dir.add_member(room_id, user, joined_seq, position);
        }
        for &(room_id, user, by, ts) in &db.invitations {
            dir.add_invitation(room_id, user, by, ts);
        }
        // A room's newest position is its newest event, or for a to-device
        // queue whose delivered events were pruned, the cursor that was
        // written in the same transaction as the prune: positions are never
        // handed out twice, or a client would take a new message for one
        // it already has.
        for &(room_id, last) in &db.last_seqs {
            if let Some(room) = dir.rooms.get_mut(&room_id) {
                room.last_seq = room.last_seq.max(last);
            }
        }
        for &(device, room, seq) in &db.cursors {
            dir.cursors.insert((device, room), seq);
        }
        for (device, body) in &db.published_keys {
            match sotto_proto::e2e::DeviceKeys::decode(body) {
                Ok(keys) => {
                    dir.published_keys.insert(*device, keys);
                }
                Err(e) => tracing::error!(device, "unreadable published keys: {e}"),
            }
        }
        for &(device, count) in &db.one_time_keys {
            dir.key_state.entry(device).or_default().one_time_keys = count;
        }
        for &(device, used) in &db.fallback_keys {
            let state = dir.key_state.entry(device).or_default();
            state.has_fallback = true;
            state.fallback_used = used;
        }
        dir.rooms
            .entry(LOBBY_ROOM)
            .or_insert_with(|| Room::new(RoomKind::Lobby, RoomRef::Lobby, None));
        dir
    }

    pub fn add_user(&mut self, id: i64, name: &str) {
        match Username::parse(name) {
            Ok(name) => {
                self.user_ids.insert(name.clone(), id);
                self.user_names.insert(id, name);
            }
            Err(e) => tracing::warn!(id, "skipping stored user with invalid name: {e}"),
        }
    }

    pub fn add_device(&mut self, key: i64, user: i64, device: &str) {
        if let Ok(device) = DeviceId::parse(device) {
            self.device_names.insert(key, device.clone());
            self.device_keys.insert((user, device), key);
            self.user_devices.entry(user).or_default().push(key);
        }
    }

    /// The user a device row belongs to.
    pub fn device_user(&self, key: i64) -> Option<i64> {
        let device = self.device_names.get(&key)?;
        self.user_devices
            .iter()
            .find(|(user, keys)| {
                keys.contains(&key) && self.device_keys.contains_key(&(**user, device.clone()))
            })
            .map(|(user, _)| *user)
    }

    /// Forgets a device: its names, positions and keys.
    pub fn remove_device(&mut self, user: i64, key: i64) {
        if let Some(device) = self.device_names.remove(&key) {
            self.device_keys.remove(&(user, device));
        }
        if let Some(devices) = self.user_devices.get_mut(&user) {
            devices.retain(|d| *d != key);
        }
        self.cursors.retain(|(d, _), _| *d != key);
        self.published_keys.remove(&key);
        self.key_state.remove(&key);
    }

    /// Adds a room as stored (skipped if it names what does not exist).
    pub fn add_room(&mut self, row: &RoomRow) {
        let RoomRow {
            id,
            kind,
            ref name,
            owner,
            user_a: a,
            user_b: b,
        } = *row;
        let Some(kind) = RoomKind::from_i64(kind) else {
            return;
        };
        let name_of = |id: Option<i64>| id.and_then(|id| self.user_names.get(&id).cloned());
        let reference = match kind {
            RoomKind::Lobby => RoomRef::Lobby,
            RoomKind::Direct => match (name_of(a), name_of(b), a, b) {
                (Some(na), Some(nb), Some(a), Some(b)) => {
                    self.directs.insert((a.min(b), a.max(b)), id);
                    RoomRef::Direct {
                        users: sorted_pair(na, nb),
                    }
                }
                _ => return,
            },
            RoomKind::Group => match name.as_deref().map(GroupName::parse) {
                Some(Ok(name)) => {
                    self.groups.insert(name.clone(), id);
                    RoomRef::Group { name }
                }
                _ => return,
            },
            RoomKind::Notices => match (name_of(owner), owner) {
                (Some(user), Some(owner)) => {
                    self.notices.insert(owner, id);
                    RoomRef::Notices { user }
                }
                _ => return,
            },
            RoomKind::Inbox => match a.and_then(|a| self.device_names.get(&a).cloned()) {
                Some(device) => RoomRef::Inbox { device },
                None => return,
            },
        };
        let mut room = Room::new(kind, reference, owner);
        if kind == RoomKind::Inbox {
            room.device = a;
            if let Some(device) = a {
                self.inboxes.insert(device, id);
            }
        }
        self.rooms.insert(id, room);
    }

    /// Forgets a room: its members' and invitees' links to it, positions in
    /// it, and its name.
    pub fn remove_room(&mut self, room_id: u64) {
        let Some(room) = self.rooms.remove(&room_id) else {
            return;
        };
        for member in room.members.keys() {
            if let Some(rooms) = self.user_rooms.get_mut(member) {
                rooms.remove(&room_id);
            }
        }
        for invitee in room.invited.keys() {
            if let Some(rooms) = self.invitations.get_mut(invitee) {
                rooms.remove(&room_id);
            }
        }
        match &room.reference {
            RoomRef::Group { name } => {
                self.groups.remove(name);
            }
            RoomRef::Inbox { .. } => {
                if let Some(device) = room.device {
                    self.inboxes.remove(&device);
                }
            }
            _ => {}
        }
        self.cursors.retain(|(_, room), _| *room != room_id);
    }

    pub fn add_member(&mut self, room_id: u64, user: i64, joined_seq: u64, position: i64) {
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.members.insert(
                user,
                Member {
                    joined_seq,
                    position,
                },
            );
            room.next_position = room.next_position.max(position + 1);
            self.user_rooms.entry(user).or_default().insert(room_id);
        }
    }

    /// Removes a member and its devices' positions in the room.
    pub fn remove_member(&mut self, room_id: u64, user: i64) {
        for device in self.user_devices.get(&user).into_iter().flatten() {
            self.cursors.remove(&(*device, room_id));
        }
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.members.remove(&user);
        }
        if let Some(rooms) = self.user_rooms.get_mut(&user) {
            rooms.remove(&room_id);
        }
    }

    pub fn add_invitation(&mut self, room_id: u64, user: i64, by: i64, ts: i64) {
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.invited.insert(user, (by, ts));
            self.invitations.entry(user).or_default().insert(room_id);
        }
    }

    pub fn remove_invitation(&mut self, room_id: u64, user: i64) {
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.invited.remove(&user);
        }
        if let Some(rooms) = self.invitations.get_mut(&user) {
            rooms.remove(&room_id);
            if rooms.is_empty() {
                self.invitations.remove(&user);
            }
        }
    }

    /// The position up to which `device` of `user` has everything in `room`:
    /// its own acknowledgement, else the point the user joined. (A new
    /// device starts at the end of every room its user is in: see
    /// `Core::attach`.)
    pub fn cursor(&self, user: i64, device: i64, room_id: u64) -> u64 {
        let joined = self
            .rooms
            .get(&room_id)
            .and_then(|r| r.members.get(&user))
            .map_or(0, |m| m.joined_seq);
        self.cursors
            .get(&(device, room_id))
            .map_or(joined, |seq| (*seq).max(joined))
    }

    /// A group as its members see it, listing at most `limit` members.
    pub fn group_info(&self, room_id: u64, limit: usize) -> Option<GroupInfo> {
        let room = self.rooms.get(&room_id)?;
        let RoomRef::Group { name } = &room.reference else {
            return None;
        };
        let owner = self.user_names.get(&room.owner?)?.clone();
        Some(GroupInfo {
            name: name.clone(),
            room_id,
            owner,
            members: room
                .first_members(limit)
                .into_iter()
                .filter_map(|id| self.user_names.get(&id).cloned())
                .collect(),
            member_count: u32::try_from(room.members.len()).unwrap_or(u32::MAX),
            invited: {
                let mut invited: Vec<Username> = room
                    .invited
                    .keys()
                    .filter_map(|id| self.user_names.get(id).cloned())
                    .collect();
                invited.sort();
                invited.truncate(limit);
                invited
            },
        })
    }

    /// The invitations waiting for `user`'s answer, oldest first.
    pub fn invitations_of(&self, user: i64) -> Vec<sotto_proto::Invitation> {
        let mut out: Vec<sotto_proto::Invitation> = self
            .invitations
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|room_id| {
                let room = self.rooms.get(room_id)?;
                let RoomRef::Group { name } = &room.reference else {
                    return None;
                };
                let (by, ts) = room.invited.get(&user)?;
                Some(sotto_proto::Invitation {
                    group: name.clone(),
                    by: self.user_names.get(by)?.clone(),
                    ts: *ts,
                })
            })
            .collect();
        out.sort_by_key(|i| i.ts);
        out
    }

    /// The groups `user` belongs to, by name, each listing at most `limit` members.
    pub fn groups_of(&self, user: i64, limit: usize) -> Vec<GroupInfo> {
        let mut groups: Vec<GroupInfo> = self
            .user_rooms
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|room| self.group_info(*room, limit))
            .collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        groups
    }
}

/// Orders two names so a direct room has one spelling.
pub(crate) fn sorted_pair(a: Username, b: Username) -> (Username, Username) {
    if a <= b { (a, b) } else { (b, a) }
}
