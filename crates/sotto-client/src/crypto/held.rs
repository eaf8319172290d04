//! Messages that arrived before their room key, kept (in the local store,
//! as the server encoded them) until the key comes.
//!
//! Anyone in a room can send messages under room keys that never come, so
//! what is held is bounded per sending device (as the server names it: it
//! authenticates devices) and in all: a message over its device's share is
//! shown as unreadable and not kept, and when all of it is used, the device
//! holding the most gives up its oldest first, so one sender's flood cannot
//! crowd out the others. Messages are held by (room, session, sending
//! device): only that device's key, or its word, can release them. Only an
//! index lives in memory; the messages themselves are read back from the
//! store when their key arrives.

use std::collections::{BTreeSet, HashMap};

use sotto_proto::{EventBody, EventKind, RoomEvent, SharedEvent};
use zeroize::Zeroizing;

use crate::local_store::{HeldMeta, HeldRow};
use crate::{MAX_HELD_BYTES, MAX_HELD_BYTES_PER_DEVICE, MAX_HELD_PER_DEVICE};

/// What sealing adds to a stored message (nonce and tag), counted in.
const SEAL_OVERHEAD: usize = 40;

/// A sending device, as the server names it: (user, device).
pub(crate) type SenderDevice = (String, String);

/// Why a message was not held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotHeld {
    /// Its sending device has too much waiting already.
    DeviceFull,
    /// Too much waits from all devices together.
    StoreFull,
}

#[derive(Debug, Clone)]
struct Entry {
    session_id: String,
    sender: SenderDevice,
    size: usize,
    /// When it was held, in order: the oldest goes first.
    order: u64,
}

/// A room session and the device whose messages under it wait.
pub(crate) type HeldKey = (u64, String, SenderDevice);

/// The index of held messages, and what changed since the last save.
#[derive(Debug, Default)]
pub(super) struct Held {
    /// By (room, position).
    entries: HashMap<(u64, u64), Entry>,
    /// The positions held per (room, session, sending device).
    by_session: HashMap<HeldKey, BTreeSet<u64>>,
    /// (messages, bytes) held per sending device.
    per_device: HashMap<SenderDevice, (usize, usize)>,
    total_bytes: usize,
    next_order: u64,
    added: Vec<HeldRow>,
    removed: Vec<(u64, u64)>,
}

impl Held {
    pub fn from_loaded(rows: Vec<HeldMeta>) -> Self {
        let mut held = Self::default();
        for row in rows {
            held.index(
                row.room_id,
                row.seq,
                Entry {
                    session_id: row.session_id,
                    sender: (row.sender_user, row.sender_device),
                    size: row.size,
                    // Stores keep no order: by room position.
                    order: 0,
                },
            );
        }
        held
    }

    fn index(&mut self, room_id: u64, seq: u64, mut entry: Entry) {
        self.next_order += 1;
        entry.order = self.next_order;
        let used = self.per_device.entry(entry.sender.clone()).or_default();
        used.0 += 1;
        used.1 += entry.size;
        self.total_bytes += entry.size;
        self.by_session
            .entry((room_id, entry.session_id.clone(), entry.sender.clone()))
            .or_default()
            .insert(seq);
        self.entries.insert((room_id, seq), entry);
    }

    /// Makes room for `size` bytes from `sender` by dropping the oldest
    /// message of the device holding the most, while that is another
    /// device holding more than `sender` would.
    fn make_room(&mut self, size: usize, sender: &SenderDevice) -> Result<(), NotHeld> {
        while self.total_bytes + size > MAX_HELD_BYTES {
            let mine = self.per_device.get(sender).map_or(0, |u| u.1) + size;
            let Some((biggest, used)) = self
                .per_device
                .iter()
                .max_by_key(|(_, u)| u.1)
                .map(|(d, u)| (d.clone(), u.1))
            else {
                return Err(NotHeld::StoreFull);
            };
            if biggest == *sender || used <= mine {
                return Err(NotHeld::StoreFull);
            }
            let Some(oldest) = self
                .entries
                .iter()
                .filter(|(_, e)| e.sender == biggest)
                .min_by_key(|((room, seq), e)| (e.order, *room, *seq))
                .map(|(key, _)| *key)
            else {
                return Err(NotHeld::StoreFull);
            };
            tracing::warn!(device = ?biggest, "too much waits for room keys: dropping its oldest");
            self.unhold(oldest.0, oldest.1);
        }
        Ok(())
    }

    /// Keeps `event` (which arrived at `ts`) until the key of `session_id`
    /// comes, within the bounds.
    pub fn hold(
        &mut self,
        event: &RoomEvent,
        ts: i64,
        session_id: &str,
        sender: SenderDevice,
    ) -> Result<(), NotHeld> {
        if self.entries.contains_key(&(event.room_id, event.seq)) {
            return Ok(());
        }
        let body = EventBody {
            ts,
            kind: EventKind::Room(event.clone()),
        };
        // An event the server sent us always encodes again.
        let bytes = SharedEvent::encode(&body)
            .map(|e| e.as_bytes().to_vec())
            .unwrap_or_default();
        let size = bytes.len() + SEAL_OVERHEAD;
        let (count, used) = self.per_device.get(&sender).copied().unwrap_or_default();
        if count >= MAX_HELD_PER_DEVICE || used + size > MAX_HELD_BYTES_PER_DEVICE {
            return Err(NotHeld::DeviceFull);
        }
        self.make_room(size, &sender)?;
        self.added.push(HeldRow {
            room_id: event.room_id,
            seq: event.seq,
            session_id: session_id.to_owned(),
            sender_user: sender.0.clone(),
            sender_device: sender.1.clone(),
            event: Zeroizing::new(bytes),
        });
        self.index(
            event.room_id,
            event.seq,
            Entry {
                session_id: session_id.to_owned(),
                sender,
                size,
                order: 0,
            },
        );
        Ok(())
    }

    /// Whether messages of `sender` wait for this room key.
    pub fn has(&self, key: &HeldKey) -> bool {
        self.by_session.contains_key(key)
    }

    /// Every room key messages wait for, with the device they came from.
    pub fn sessions(&self) -> Vec<HeldKey> {
        self.by_session.keys().cloned().collect()
    }

    /// How many messages wait for this room key.
    pub fn count(&self, key: &HeldKey) -> usize {
        self.by_session.get(key).map_or(0, BTreeSet::len)
    }

    /// Forgets every message held for this room key (it will never come).
    pub fn unhold_session(&mut self, key: &HeldKey) {
        let room_id = key.0;
        let seqs: Vec<u64> = self
            .by_session
            .get(key)
            .map(|held| held.iter().copied().collect())
            .unwrap_or_default();
        for seq in seqs {
            self.unhold(room_id, seq);
        }
    }

    /// A held message was handled (shown, or refused for good).
    pub fn unhold(&mut self, room_id: u64, seq: u64) {
        let Some(entry) = self.entries.remove(&(room_id, seq)) else {
            return;
        };
        let key = (room_id, entry.session_id, entry.sender.clone());
        if let Some(held) = self.by_session.get_mut(&key) {
            held.remove(&seq);
            if held.is_empty() {
                self.by_session.remove(&key);
            }
        }
        if let Some(used) = self.per_device.get_mut(&entry.sender) {
            used.0 = used.0.saturating_sub(1);
            used.1 = used.1.saturating_sub(entry.size);
            if used.0 == 0 {
                self.per_device.remove(&entry.sender);
            }
        }
        self.total_bytes = self.total_bytes.saturating_sub(entry.size);
        self.added
            .retain(|row| (row.room_id, row.seq) != (room_id, seq));
        self.removed.push((room_id, seq));
    }

    pub fn take_added(&mut self) -> Vec<HeldRow> {
        std::mem::take(&mut self.added)
    }

    pub fn take_removed(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.removed)
    }
}

/// A held message as it arrived: its server time and event. Stores of
/// layout version 1 kept it as JSON.
pub(super) fn decode(row: &HeldRow) -> Option<(i64, RoomEvent)> {
    #[derive(serde::Deserialize)]
    struct Version1 {
        ts: i64,
        event: RoomEvent,
    }
    let body = SharedEvent::from_encoded(bytes::Bytes::copy_from_slice(&row.event))
        .decode()
        .ok()
        .or_else(|| {
            serde_json::from_slice::<Version1>(&row.event)
                .ok()
                .map(|old| EventBody {
                    ts: old.ts,
                    kind: EventKind::Room(old.event),
                })
        })?;
    match body.kind {
        EventKind::Room(event) if event.room_id == row.room_id && event.seq == row.seq => {
            Some((body.ts, event))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sotto_proto::{DeviceId, RoomContent, RoomRef, Username};

    fn event(seq: u64, payload: usize) -> RoomEvent {
        RoomEvent {
            room_id: 5,
            room: RoomRef::Group {
                name: sotto_proto::GroupName::parse("g").unwrap(),
            },
            seq,
            sender: Username::parse("mallory").unwrap(),
            content: RoomContent::Envelope {
                device: DeviceId::parse("MALLORYDEV").unwrap(),
                payload: vec![7; payload],
            },
        }
    }

    fn mallory() -> SenderDevice {
        ("mallory".into(), "MALLORYDEV".into())
    }

    #[test]
    fn held_messages_are_bounded_per_device_and_stored_as_bytes() {
        let mut held = Held::default();
        // Eight 1 MiB messages under eight unknown sessions: about 8 MiB
        // held, not five times that.
        for seq in 1..=8 {
            held.hold(&event(seq, 1 << 20), 1, &format!("s{seq}"), mallory())
                .unwrap();
        }
        let added = held.take_added();
        let bytes: usize = added.iter().map(|r| r.event.len()).sum();
        assert!(bytes < 9 << 20, "{bytes}");
        let (ts, back) = decode(&added[0]).unwrap();
        assert_eq!((ts, back), (1, event(1, 1 << 20)));
        // The device's share runs out; others still have theirs.
        let mut n = 9;
        while held.hold(&event(n, 1 << 20), 1, "x", mallory()).is_ok() {
            n += 1;
        }
        assert!(n < 9 + 12, "{n}");
        assert_eq!(
            held.hold(&event(n, 1 << 20), 1, "x", mallory()),
            Err(NotHeld::DeviceFull)
        );
        let bob = ("bob".into(), "B".into());
        assert!(held.hold(&event(n + 1, 1 << 20), 1, "y", bob).is_ok());
        // Unholding gives the share back.
        held.unhold(5, 1);
        assert!(held.hold(&event(n, 1 << 20), 1, "x", mallory()).is_ok());
        // When all of it is used, the device holding the most gives way.
        let mut full = Held::default();
        let mut seq = 0;
        for device in ["m1", "m2", "m3", "m4"] {
            loop {
                seq += 1;
                let who = ("mallory".to_owned(), device.to_owned());
                if full.hold(&event(seq, 1 << 20), 1, "x", who).is_err() {
                    break;
                }
            }
        }
        assert!(full.total_bytes <= MAX_HELD_BYTES);
        let alice = ("alice".to_owned(), "A".to_owned());
        assert!(
            full.hold(&event(seq + 1, 1 << 20), 1, "y", alice.clone())
                .is_ok()
        );
        assert!(full.has(&(5, "y".to_owned(), alice)));
        // Count bound too.
        let mut many = Held::default();
        for seq in 0..MAX_HELD_PER_DEVICE as u64 {
            many.hold(&event(seq, 1), 1, "s", mallory()).unwrap();
        }
        assert_eq!(
            many.hold(&event(9999, 1), 1, "s", mallory()),
            Err(NotHeld::DeviceFull)
        );
    }
}
