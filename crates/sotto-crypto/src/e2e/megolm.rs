//! Megolm room sessions: one outbound session per room this device sends
//! in, shared over Olm with every device of every member; inbound sessions
//! for every sender's room keys, with replay protection.
//!
//! Inbound sessions are stored one record each ([`InboundPickle`]), and
//! their replay windows as records of their own ([`ReplayPickle`], a few
//! dozen bytes however many messages were read), so reading a message
//! rewrites a small record of fixed size, never one that grows. Only the
//! records that changed are handed out to be saved
//! ([`RoomSessions::take_changed`]). Outbound sessions are never stored:
//! after a restart each room starts a new one, so a message index can never
//! be reused from a stale copy.
//!
//! For this device's own sessions the inbound copy also remembers which
//! devices were sent the key and from which index (a key request from one
//! of them is answered from that index, never earlier), and which devices
//! were left out and from which index (they get the key from there once the
//! user accepts them).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sotto_proto::e2e::{MegolmEnvelope, PublicKey, RoomPlaintext};
use sotto_proto::{DeviceId, Username};
use vodozemac::megolm::{
    ExportedSessionKey, InboundGroupSession, InboundGroupSessionPickle, MegolmMessage,
    SessionConfig, SessionKey,
};

use super::E2eError;
pub use super::outbound::{OutboundRoom, Prepared};
pub use super::replay::{REPLAY_WINDOW, ReplayWindow, message_id};

/// Messages sent on one outbound session before it is replaced.
pub const ROTATE_AFTER_MESSAGES: u32 = 100;
/// Age after which an outbound session is replaced.
pub const ROTATE_AFTER_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// A device that may read a room's messages: who it belongs to and its
/// Curve25519 key (which identifies its Olm sessions).
pub type Recipient = (Username, DeviceId, PublicKey);

/// Where an inbound room key came from, as proven by the Olm session it
/// arrived on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySender {
    pub user: Username,
    pub device: DeviceId,
    /// Curve25519 key of the Olm session the key arrived on.
    pub curve25519: PublicKey,
}

impl KeySender {
    /// The device these (checked) keys belong to.
    pub fn of(keys: &sotto_proto::e2e::DeviceKeys) -> Self {
        Self {
            user: keys.user.clone(),
            device: keys.device.clone(),
            curve25519: keys.curve25519,
        }
    }
}

struct InboundRoom {
    session: InboundGroupSession,
    sender: KeySender,
    /// For this device's own sessions: every device the key was sent to,
    /// with the first index it could read (key requests are answered from
    /// there).
    shared_with: BTreeMap<Recipient, u32>,
    /// For this device's own sessions: devices that were left out (not
    /// accepted by the user), with the first index they missed.
    withheld: BTreeMap<Recipient, u32>,
    replay: ReplayWindow,
}

impl std::fmt::Debug for InboundRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundRoom")
            .field("session_id", &self.session.session_id())
            .field("sender", &self.sender)
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

/// Whether a room message is read live (replays refused and recorded) or
/// again from the server's history (shown as it is: it was read before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    Live,
    History,
}

/// Why a key request for one of this device's own sessions is not
/// answered with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotForwarded {
    /// Not a session this device created (or one it does not have).
    NotOurs,
    /// The requester was left out of it because the user has not accepted
    /// that device.
    Withheld,
    /// The requester was never sent the key (it was not in the room).
    NotShared,
}

/// An inbound session's place: (room, session id, the Curve25519 key of
/// the device it came from). A session id is public (every message names
/// it), and an exported key is not signed, so a device could send a key
/// for another device's session id: it is kept under its own key, where
/// the other device's messages never look.
type InboundId = (u64, String, PublicKey);

/// Every room session this device knows.
#[derive(Debug, Default)]
pub struct RoomSessions {
    outbound: HashMap<u64, OutboundRoom>,
    inbound: HashMap<InboundId, InboundRoom>,
    /// Inbound sessions changed since [`RoomSessions::take_changed`].
    changed: HashSet<InboundId>,
    /// Replay windows changed since then.
    changed_replay: HashSet<InboundId>,
}

/// One inbound room session as stored.
#[derive(Serialize, Deserialize)]
pub struct InboundPickle {
    pub room_id: u64,
    pub session_id: String,
    session: InboundGroupSessionPickle,
    sender: KeySender,
    /// Written by clients before replay windows were records of their own:
    /// read once into the window.
    #[serde(default, skip_serializing)]
    seen: Vec<(u32, u64)>,
    #[serde(default)]
    shared_with: Vec<(Recipient, u32)>,
    #[serde(default)]
    withheld: Vec<(Recipient, u32)>,
}

impl InboundPickle {
    /// The Curve25519 key of the device the session came from.
    pub fn sender_key(&self) -> PublicKey {
        self.sender.curve25519
    }
}

impl std::fmt::Debug for InboundPickle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundPickle")
            .field("room_id", &self.room_id)
            .field("session_id", &self.session_id)
            .field("sender", &self.sender)
            .finish_non_exhaustive()
    }
}

/// The replay window of one inbound session as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayPickle {
    pub room_id: u64,
    pub session_id: String,
    /// The Curve25519 key of the session's sender.
    pub sender_key: PublicKey,
    pub window: ReplayWindow,
}

/// A decrypted room message with its place in its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    pub plaintext: RoomPlaintext,
    pub index: u32,
}

impl RoomSessions {
    /// Gets the room's outbound session ready for a message to
    /// `recipients` (every device of every member, including this
    /// account's other devices, but not this device): rotates it if it has
    /// expired, and lists the devices that still need its key.
    pub fn prepare(
        &mut self,
        room_id: u64,
        recipients: &BTreeSet<Recipient>,
        waiting: &BTreeSet<Recipient>,
        now_ms: i64,
    ) -> Prepared {
        let current = self
            .outbound
            .remove(&room_id)
            .filter(|room| !room.expired(now_ms, recipients, waiting));
        let rotated = current.is_none();
        let room = self
            .outbound
            .entry(room_id)
            .or_insert(current.unwrap_or_else(|| OutboundRoom::new(now_ms)));
        Prepared {
            session_id: room.session_id(),
            to_share: recipients.difference(&room.shared_with).cloned().collect(),
            session_key: room.session.session_key().to_bytes(),
            index: room.session.message_index(),
            rotated,
        }
    }

    /// The room key of `session_id` was sent to these devices, from
    /// `index` on.
    pub fn mark_shared(
        &mut self,
        room_id: u64,
        session_id: &str,
        devices: &[Recipient],
        index: u32,
        me: &PublicKey,
    ) {
        if let Some(room) = self.outbound.get_mut(&room_id)
            && room.session_id() == session_id
        {
            room.shared_with.extend(devices.iter().cloned());
            room.withheld.retain(|d| !devices.contains(d));
        }
        let id = (room_id, session_id.to_owned(), *me);
        if let Some(own) = self.inbound.get_mut(&id) {
            for device in devices {
                own.shared_with.entry(device.clone()).or_insert(index);
                own.withheld.remove(device);
            }
            self.changed.insert(id);
        }
    }

    /// These devices were left out of `session_id` from `index` on (the
    /// user has not accepted them).
    pub fn mark_withheld(
        &mut self,
        room_id: u64,
        session_id: &str,
        devices: &[Recipient],
        index: u32,
        me: &PublicKey,
    ) {
        if let Some(room) = self.outbound.get_mut(&room_id)
            && room.session_id() == session_id
        {
            room.withheld.extend(devices.iter().cloned());
        }
        let id = (room_id, session_id.to_owned(), *me);
        if let Some(own) = self.inbound.get_mut(&id) {
            let mut changed = false;
            for device in devices {
                if !own.shared_with.contains_key(device) && !own.withheld.contains_key(device) {
                    own.withheld.insert(device.clone(), index);
                    changed = true;
                }
            }
            if changed {
                self.changed.insert(id);
            }
        }
    }

    /// Forces a new outbound session for the room on the next message.
    pub fn discard_outbound(&mut self, room_id: u64) {
        self.outbound.remove(&room_id);
    }

    /// Encrypts a room message on the room's outbound session, which
    /// [`RoomSessions::prepare`] must have set up. `plaintext`'s message id
    /// is set to the one its place in the session gives ([`message_id`]).
    pub fn encrypt(
        &mut self,
        sender_key: PublicKey,
        mut plaintext: RoomPlaintext,
    ) -> Result<(MegolmEnvelope, [u8; 16]), E2eError> {
        let room = self
            .outbound
            .get_mut(&plaintext.room_id)
            .ok_or(E2eError::NoSession)?;
        let session_id = room.session_id();
        plaintext.msg_id = message_id(&session_id, room.session.message_index());
        let bytes = plaintext
            .encode()
            .map_err(|e| E2eError::Malformed(e.to_string()))?;
        let message = room.session.encrypt(&bytes);
        room.sent += 1;
        Ok((
            MegolmEnvelope {
                sender_key,
                session_id,
                ciphertext: message.to_bytes(),
            },
            plaintext.msg_id,
        ))
    }

    /// Stores a room key that arrived over an Olm session with `sender`.
    /// The session id must match the key. A key already known is kept if
    /// it reaches further back; a key claiming a session that another
    /// device already sent is refused.
    pub fn add_room_key(
        &mut self,
        sender: KeySender,
        room_id: u64,
        session_id: &str,
        session_key: &[u8],
    ) -> Result<(), E2eError> {
        let key = SessionKey::from_bytes(session_key)
            .map_err(|e| E2eError::Malformed(format!("room key: {e}")))?;
        let session = InboundGroupSession::new(&key, SessionConfig::version_1());
        self.insert_inbound(sender, room_id, session_id, session)
    }

    /// Stores a forwarded room key (the answer to a key request) that
    /// arrived over an Olm session with `sender`, which must own the
    /// session: only owners answer requests.
    pub fn add_forwarded_key(
        &mut self,
        sender: KeySender,
        room_id: u64,
        session_id: &str,
        exported_key: &[u8],
    ) -> Result<(), E2eError> {
        let key = ExportedSessionKey::from_bytes(exported_key)
            .map_err(|e| E2eError::Malformed(format!("forwarded room key: {e}")))?;
        let session = InboundGroupSession::import(&key, SessionConfig::version_1());
        self.insert_inbound(sender, room_id, session_id, session)
    }

    /// The key of this device's own session `session_id` for `requester`:
    /// from the index the requester was first sent (or, for one of this
    /// user's own devices the user accepted, `own_accepted`, from the
    /// first), or why not.
    pub fn export_for(
        &mut self,
        room_id: u64,
        session_id: &str,
        me: &PublicKey,
        requester: &Recipient,
        own_accepted: bool,
    ) -> Result<Vec<u8>, NotForwarded> {
        let room = self
            .inbound
            .get_mut(&(room_id, session_id.to_owned(), *me))
            .ok_or(NotForwarded::NotOurs)?;
        let index = if own_accepted {
            room.session.first_known_index()
        } else if let Some(index) = room.shared_with.get(requester) {
            *index
        } else if room.withheld.contains_key(requester) {
            return Err(NotForwarded::Withheld);
        } else {
            return Err(NotForwarded::NotShared);
        };
        room.session
            .export_at(index)
            .map(|key| key.to_bytes())
            .ok_or(NotForwarded::NotShared)
    }

    /// This device's own session's key from `index` on.
    pub fn export_own_at(
        &mut self,
        room_id: u64,
        session_id: &str,
        me: &PublicKey,
        index: u32,
    ) -> Option<Vec<u8>> {
        let room = self
            .inbound
            .get_mut(&(room_id, session_id.to_owned(), *me))?;
        room.session.export_at(index).map(|key| key.to_bytes())
    }

    /// This device's own sessions that left `device` out: (room, session
    /// id, the first index it missed).
    pub fn withheld_from(&self, device: &Recipient) -> Vec<(u64, String, u32)> {
        self.inbound
            .iter()
            .filter_map(|((room_id, session_id, _), room)| {
                room.withheld
                    .get(device)
                    .map(|index| (*room_id, session_id.clone(), *index))
            })
            .collect()
    }

    fn insert_inbound(
        &mut self,
        sender: KeySender,
        room_id: u64,
        session_id: &str,
        mut session: InboundGroupSession,
    ) -> Result<(), E2eError> {
        if session.session_id() != session_id {
            return Err(E2eError::Malformed(
                "room key does not match its session id".into(),
            ));
        }
        let id = (room_id, session_id.to_owned(), sender.curve25519);
        if let Some(existing) = self.inbound.get_mut(&id) {
            if existing.sender != sender {
                return Err(E2eError::Mismatch(format!(
                    "{}/{} sent a room key that {}/{} already sent",
                    sender.user, sender.device, existing.sender.user, existing.sender.device
                )));
            }
            if let Some(merged) = existing.session.merge(&mut session) {
                existing.session = merged;
                self.changed.insert(id);
            }
            return Ok(());
        }
        self.inbound.insert(
            id.clone(),
            InboundRoom {
                session,
                sender,
                shared_with: BTreeMap::new(),
                withheld: BTreeMap::new(),
                replay: ReplayWindow::default(),
            },
        );
        self.changed.insert(id);
        Ok(())
    }

    /// Whether a key for `session_id` in `room_id` is known, from any
    /// device.
    pub fn has_room_key(&self, room_id: u64, session_id: &str) -> bool {
        self.inbound
            .keys()
            .any(|(room, session, _)| *room == room_id && session == session_id)
    }

    /// Decrypts a room message that the server delivered in `room_id`,
    /// said to be from `server_sender`'s device `server_device`. Checks that the room key came from
    /// the device the plaintext names, that the plaintext's room and sender
    /// match the delivery, that its message id is the one its place in the
    /// session gives, and (read live) that it was not read before.
    pub fn decrypt(
        &mut self,
        room_id: u64,
        server_sender: &Username,
        server_device: &DeviceId,
        envelope: &MegolmEnvelope,
        mode: ReadMode,
    ) -> Result<Decrypted, E2eError> {
        let id = (room_id, envelope.session_id.clone(), envelope.sender_key);
        let room = self
            .inbound
            .get_mut(&id)
            .ok_or_else(|| E2eError::MissingRoomKey {
                session_id: envelope.session_id.clone(),
            })?;
        let message = MegolmMessage::from_bytes(&envelope.ciphertext)
            .map_err(|e| E2eError::Malformed(format!("Megolm message: {e}")))?;
        let decrypted = room.session.decrypt(&message).map_err(|e| match e {
            // The key this device has starts after this message (it joined
            // later): as good as missing; the owner can forward an earlier one.
            vodozemac::megolm::DecryptionError::UnknownMessageIndex(..) => {
                E2eError::MissingRoomKey {
                    session_id: envelope.session_id.clone(),
                }
            }
            other => E2eError::Decrypt(format!("room message: {other}")),
        })?;
        let plaintext = RoomPlaintext::decode(&decrypted.plaintext)
            .map_err(|e| E2eError::Malformed(format!("room plaintext: {e}")))?;
        let sender = &room.sender;
        if envelope.sender_key != sender.curve25519
            || plaintext.sender != sender.user
            || plaintext.sender_device != sender.device
        {
            return Err(E2eError::Mismatch(format!(
                "message claims to be from {}/{} but its room key came from {}/{}",
                plaintext.sender, plaintext.sender_device, sender.user, sender.device
            )));
        }
        if plaintext.room_id != room_id {
            return Err(E2eError::Mismatch(
                "message was encrypted for another room".into(),
            ));
        }
        if &plaintext.sender != server_sender {
            return Err(E2eError::Mismatch(format!(
                "server says {server_sender} sent a message signed by {}",
                plaintext.sender
            )));
        }
        if &plaintext.sender_device != server_device {
            return Err(E2eError::Mismatch(format!(
                "the server says {server_sender}'s device {server_device} sent this message, \
                 but it was sent from device {}",
                plaintext.sender_device
            )));
        }
        let index = decrypted.message_index;
        if plaintext.msg_id != message_id(&envelope.session_id, index) {
            return Err(E2eError::Mismatch(
                "the message id inside does not match the message's place in its session".into(),
            ));
        }
        if mode == ReadMode::Live {
            if room.replay.seen(index) {
                return Err(E2eError::Replay);
            }
            room.replay.mark(index);
            self.changed_replay.insert(id);
        }
        Ok(Decrypted { plaintext, index })
    }

    /// The records changed since the last call, to store: inbound
    /// sessions and replay windows.
    pub fn take_changed(&mut self) -> (Vec<InboundPickle>, Vec<ReplayPickle>) {
        let changed = std::mem::take(&mut self.changed);
        let replay = std::mem::take(&mut self.changed_replay);
        (
            changed
                .into_iter()
                .filter_map(|id| self.pickle_one(&id))
                .collect(),
            replay
                .into_iter()
                .filter_map(|id| self.replay_one(&id))
                .collect(),
        )
    }

    /// Counts every inbound session and replay window as changed (to
    /// store them all again).
    pub fn mark_all_changed(&mut self) {
        self.changed = self.inbound.keys().cloned().collect();
        self.changed_replay = self.changed.clone();
    }

    /// Every inbound session and replay window, to store.
    pub fn pickle_all(&self) -> (Vec<InboundPickle>, Vec<ReplayPickle>) {
        (
            self.inbound
                .keys()
                .filter_map(|id| self.pickle_one(id))
                .collect(),
            self.inbound
                .keys()
                .filter_map(|id| self.replay_one(id))
                .collect(),
        )
    }

    fn pickle_one(&self, id: &InboundId) -> Option<InboundPickle> {
        let room = self.inbound.get(id)?;
        Some(InboundPickle {
            room_id: id.0,
            session_id: id.1.clone(),
            session: room.session.pickle(),
            sender: room.sender.clone(),
            seen: Vec::new(),
            shared_with: room
                .shared_with
                .iter()
                .map(|(d, i)| (d.clone(), *i))
                .collect(),
            withheld: room.withheld.iter().map(|(d, i)| (d.clone(), *i)).collect(),
        })
    }

    fn replay_one(&self, id: &InboundId) -> Option<ReplayPickle> {
        let room = self.inbound.get(id)?;
        Some(ReplayPickle {
            room_id: id.0,
            session_id: id.1.clone(),
            sender_key: id.2,
            window: room.replay.clone(),
        })
    }

    /// Inbound sessions and replay windows as stored; no outbound session
    /// (each room starts a new one).
    pub fn from_pickles(
        pickles: impl IntoIterator<Item = InboundPickle>,
        replay: impl IntoIterator<Item = ReplayPickle>,
    ) -> Self {
        let mut sessions = Self::default();
        for p in pickles {
            let id = (p.room_id, p.session_id, p.sender.curve25519);
            let mut window = ReplayWindow::default();
            if !p.seen.is_empty() {
                // An older record: its replay memory moves into a window
                // of its own, written on the next save.
                for (index, _) in p.seen {
                    window.mark(index);
                }
                sessions.changed_replay.insert(id.clone());
            }
            sessions.inbound.insert(
                id,
                InboundRoom {
                    session: InboundGroupSession::from_pickle(p.session),
                    sender: p.sender,
                    shared_with: p.shared_with.into_iter().collect(),
                    withheld: p.withheld.into_iter().collect(),
                    replay: window,
                },
            );
        }
        for r in replay {
            if let Some(room) = sessions
                .inbound
                .get_mut(&(r.room_id, r.session_id, r.sender_key))
            {
                room.replay = r.window;
            }
        }
        sessions
    }

    /// The inbound sessions of a store written before sessions were
    /// stored one by one: (room, session id, session, sender) and the
    /// replay memory as (session id, index, position).
    pub(crate) fn from_legacy(
        inbound: Vec<(u64, String, InboundGroupSessionPickle, KeySender)>,
        seen: Vec<(String, u32, u64)>,
    ) -> Self {
        let mut by_session: HashMap<String, Vec<(u32, u64)>> = HashMap::new();
        for (session_id, index, seq) in seen {
            by_session.entry(session_id).or_default().push((index, seq));
        }
        let mut sessions = Self::from_pickles(
            inbound
                .into_iter()
                .map(|(room_id, session_id, session, sender)| InboundPickle {
                    seen: by_session.remove(&session_id).unwrap_or_default(),
                    room_id,
                    session_id,
                    session,
                    sender,
                    shared_with: Vec::new(),
                    withheld: Vec::new(),
                }),
            [],
        );
        sessions.changed = sessions.inbound.keys().cloned().collect();
        sessions.changed_replay = sessions.changed.clone();
        sessions
    }
}

#[cfg(test)]
impl RoomSessions {
    /// The room's outbound session itself, to forge with.
    pub(crate) fn outbound_session_for_tests(
        &mut self,
        room_id: u64,
    ) -> &mut vodozemac::megolm::GroupSession {
        &mut self.outbound.get_mut(&room_id).unwrap().session
    }
}
