//! Megolm room sessions: one outbound session per room this device sends
//! in, shared over Olm with every device of every member; inbound sessions
//! for every sender's room keys, with replay protection.
//!
//! Inbound sessions are stored one record each ([`InboundPickle`]), and
//! only the ones that changed are handed out to be saved
//! ([`RoomSessions::take_changed`]): a long-lived device does not rewrite
//! every session it ever received for each new message. Outbound sessions
//! are never stored: after a restart each room starts a new one, so a
//! message index can never be reused from a stale copy.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sotto_proto::e2e::{MegolmEnvelope, PublicKey, RoomPlaintext};
use sotto_proto::{DeviceId, Username};
use vodozemac::megolm::{
    ExportedSessionKey, GroupSession, InboundGroupSession, InboundGroupSessionPickle,
    MegolmMessage, SessionConfig, SessionKey,
};

use super::E2eError;

/// Messages sent on one outbound session before it is replaced.
pub const ROTATE_AFTER_MESSAGES: u32 = 100;
/// Age after which an outbound session is replaced.
pub const ROTATE_AFTER_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// A device that may read a room's messages: who it belongs to and its
/// Curve25519 key (which identifies its Olm sessions).
pub type Recipient = (Username, DeviceId, PublicKey);

/// This device's sending session in one room.
pub struct OutboundRoom {
    session: GroupSession,
    created_ms: i64,
    sent: u32,
    /// Devices the room key has been sent to.
    shared_with: BTreeSet<Recipient>,
}

impl std::fmt::Debug for OutboundRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundRoom")
            .field("session_id", &self.session_id())
            .field("created_ms", &self.created_ms)
            .field("sent", &self.sent)
            .field("shared_with", &self.shared_with.len())
            .finish_non_exhaustive()
    }
}

impl OutboundRoom {
    fn new(now_ms: i64) -> Self {
        Self {
            session: GroupSession::new(SessionConfig::version_1()),
            created_ms: now_ms,
            sent: 0,
            shared_with: BTreeSet::new(),
        }
    }

    pub fn session_id(&self) -> String {
        self.session.session_id()
    }

    /// Whether this session may not be used again: too many messages, too
    /// old, or a device it was shared with is no longer a recipient (a
    /// member left or was removed, or removed a device).
    pub fn expired(&self, now_ms: i64, recipients: &BTreeSet<Recipient>) -> bool {
        self.sent >= ROTATE_AFTER_MESSAGES
            || now_ms - self.created_ms >= ROTATE_AFTER_MS
            || !self.shared_with.is_subset(recipients)
    }
}

/// What must happen before a room message can be sent.
#[derive(Debug)]
pub struct Prepared {
    /// The outbound session's id.
    pub session_id: String,
    /// Devices that still need the room key (over Olm), with the key.
    pub to_share: Vec<Recipient>,
    /// The key to send them (at the session's current index).
    pub session_key: Vec<u8>,
    /// Whether the session is new (the old one was rotated or there was none).
    pub rotated: bool,
}

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
    /// (message index, room position) of every message decrypted with this
    /// session, by index: the same ciphertext at another position is a
    /// replay.
    seen: Vec<(u32, u64)>,
    /// For this device's own sessions: every device the key was sent to
    /// (the original recipients, whose key requests are answered).
    shared_with: BTreeSet<Recipient>,
}

impl std::fmt::Debug for InboundRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundRoom")
            .field("session_id", &self.session.session_id())
            .field("sender", &self.sender)
            .field("seen", &self.seen.len())
            .finish_non_exhaustive()
    }
}

/// Every room session this device knows.
#[derive(Debug, Default)]
pub struct RoomSessions {
    outbound: HashMap<u64, OutboundRoom>,
    /// By (room, session id).
    inbound: HashMap<(u64, String), InboundRoom>,
    /// Inbound sessions changed since [`RoomSessions::take_changed`].
    changed: HashSet<(u64, String)>,
}

/// One inbound room session as stored.
#[derive(Serialize, Deserialize)]
pub struct InboundPickle {
    pub room_id: u64,
    pub session_id: String,
    session: InboundGroupSessionPickle,
    sender: KeySender,
    seen: Vec<(u32, u64)>,
    shared_with: Vec<Recipient>,
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

impl RoomSessions {
    /// Gets the room's outbound session ready for a message to
    /// `recipients` (every device of every member, including this
    /// account's other devices, but not this device): rotates it if it has
    /// expired, and lists the devices that still need its key.
    pub fn prepare(
        &mut self,
        room_id: u64,
        recipients: &BTreeSet<Recipient>,
        now_ms: i64,
    ) -> Prepared {
        let rotated = match self.outbound.get(&room_id) {
            Some(room) if !room.expired(now_ms, recipients) => false,
            _ => {
                self.outbound.insert(room_id, OutboundRoom::new(now_ms));
                true
            }
        };
        let room = &self.outbound[&room_id];
        Prepared {
            session_id: room.session_id(),
            to_share: recipients.difference(&room.shared_with).cloned().collect(),
            session_key: room.session.session_key().to_bytes(),
            rotated,
        }
    }

    /// The room key of `session_id` reached these devices (the Olm
    /// messages carrying it were sent).
    pub fn mark_shared(&mut self, room_id: u64, session_id: &str, devices: &[Recipient]) {
        if let Some(room) = self.outbound.get_mut(&room_id)
            && room.session_id() == session_id
        {
            room.shared_with.extend(devices.iter().cloned());
        }
        let id = (room_id, session_id.to_owned());
        if let Some(own) = self.inbound.get_mut(&id) {
            own.shared_with.extend(devices.iter().cloned());
            self.changed.insert(id);
        }
    }

    /// Forces a new outbound session for the room on the next message.
    pub fn discard_outbound(&mut self, room_id: u64) {
        self.outbound.remove(&room_id);
    }

    /// Encrypts a room message on the room's outbound session, which
    /// [`RoomSessions::prepare`] must have set up.
    pub fn encrypt(
        &mut self,
        sender_key: PublicKey,
        plaintext: &RoomPlaintext,
    ) -> Result<MegolmEnvelope, E2eError> {
        let room = self
            .outbound
            .get_mut(&plaintext.room_id)
            .ok_or(E2eError::NoSession)?;
        let bytes = plaintext
            .encode()
            .map_err(|e| E2eError::Malformed(e.to_string()))?;
        let message = room.session.encrypt(&bytes);
        room.sent += 1;
        Ok(MegolmEnvelope {
            sender_key,
            session_id: room.session_id(),
            ciphertext: message.to_bytes(),
        })
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

    /// This device's own session's key from the first index it has, to
    /// answer a key request; `None` for a session it did not create.
    pub fn export_own(&self, room_id: u64, session_id: &str, me: &PublicKey) -> Option<Vec<u8>> {
        let room = self.inbound.get(&(room_id, session_id.to_owned()))?;
        (room.sender.curve25519 == *me)
            .then(|| room.session.export_at_first_known_index().to_bytes())
    }

    /// Whether the key of this device's session `session_id` was sent to
    /// `recipient` (current and earlier sessions alike).
    pub fn was_shared_with(&self, room_id: u64, session_id: &str, recipient: &Recipient) -> bool {
        self.inbound
            .get(&(room_id, session_id.to_owned()))
            .is_some_and(|room| room.shared_with.contains(recipient))
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
        let id = (room_id, session_id.to_owned());
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
                seen: Vec::new(),
                shared_with: BTreeSet::new(),
            },
        );
        self.changed.insert(id);
        Ok(())
    }

    /// Whether the key for `session_id` in `room_id` is known.
    pub fn has_room_key(&self, room_id: u64, session_id: &str) -> bool {
        self.inbound.contains_key(&(room_id, session_id.to_owned()))
    }

    /// Decrypts a room message that the server delivered in `room_id` at
    /// position `seq`, said to be from `server_sender`. Checks that the
    /// room key came from the device the plaintext names, that the
    /// plaintext's room and sender match the delivery, and that this
    /// ciphertext was not seen at another position before.
    pub fn decrypt(
        &mut self,
        room_id: u64,
        seq: u64,
        server_sender: &Username,
        envelope: &MegolmEnvelope,
    ) -> Result<RoomPlaintext, E2eError> {
        let id = (room_id, envelope.session_id.clone());
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
        let index = decrypted.message_index;
        match room.seen.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(at) if room.seen[at].1 != seq => return Err(E2eError::Replay),
            Ok(_) => {}
            Err(at) => {
                room.seen.insert(at, (index, seq));
                self.changed.insert(id);
            }
        }
        Ok(plaintext)
    }

    /// The inbound sessions changed since the last call, to store.
    pub fn take_changed(&mut self) -> Vec<InboundPickle> {
        let changed = std::mem::take(&mut self.changed);
        changed
            .into_iter()
            .filter_map(|id| self.pickle_one(&id))
            .collect()
    }

    /// Every inbound session, to store.
    pub fn pickle_all(&self) -> Vec<InboundPickle> {
        self.inbound
            .keys()
            .filter_map(|id| self.pickle_one(id))
            .collect()
    }

    fn pickle_one(&self, id: &(u64, String)) -> Option<InboundPickle> {
        let room = self.inbound.get(id)?;
        Some(InboundPickle {
            room_id: id.0,
            session_id: id.1.clone(),
            session: room.session.pickle(),
            sender: room.sender.clone(),
            seen: room.seen.clone(),
            shared_with: room.shared_with.iter().cloned().collect(),
        })
    }

    /// Inbound sessions as stored; no outbound session (each room starts a
    /// new one).
    pub fn from_pickles(pickles: impl IntoIterator<Item = InboundPickle>) -> Self {
        let inbound = pickles
            .into_iter()
            .map(|p| {
                let mut seen = p.seen;
                seen.sort_unstable();
                seen.dedup_by_key(|(i, _)| *i);
                (
                    (p.room_id, p.session_id),
                    InboundRoom {
                        session: InboundGroupSession::from_pickle(p.session),
                        sender: p.sender,
                        seen,
                        shared_with: p.shared_with.into_iter().collect(),
                    },
                )
            })
            .collect();
        Self {
            outbound: HashMap::new(),
            inbound,
            changed: HashSet::new(),
        }
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
        let mut sessions = Self::from_pickles(inbound.into_iter().map(
            |(room_id, session_id, session, sender)| InboundPickle {
                seen: by_session.remove(&session_id).unwrap_or_default(),
                room_id,
                session_id,
                session,
                sender,
                shared_with: Vec::new(),
            },
        ));
        sessions.changed = sessions.inbound.keys().cloned().collect();
        sessions
    }
}
