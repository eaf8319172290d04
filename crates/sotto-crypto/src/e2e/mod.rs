//! End-to-end encryption with [vodozemac] (Olm and Megolm), following the
//! Matrix design, sans-IO.
//!
//! - Every device has an [`account::DeviceAccount`]: Curve25519 and Ed25519
//!   identity keys, plus signed one-time and fallback keys it uploads to the
//!   server's key directory.
//! - Devices talk pairwise over Olm ([`olm::OlmSessions`]): that channel
//!   carries room keys and key requests ([`ToDeviceContent`]).
//! - A room (a private conversation is a two-person room) is encrypted with
//!   Megolm ([`megolm::RoomSessions`]): each sender's outbound session is
//!   shared over Olm with every device of every member, and replaced after
//!   100 messages, after a week, or when a device it was shared with is no
//!   longer a recipient.
//! - [`E2e`] ties them together for one device: what a client calls, and
//!   what it stores ([`E2eRecords`]: the account, each peer's Olm sessions
//!   and each inbound room session as separate records, so a save writes
//!   only what changed).
//!
//! The caller (the client) supplies what needs I/O: other devices' keys from
//! the directory (pinned on first sight), claimed one-time keys, and
//! delivery of the envelopes this module produces.

pub mod account;
pub mod megolm;
pub mod olm;
pub mod outbound;
pub mod replay;
pub mod safety;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use serde::Deserialize;
use sotto_proto::e2e::{
    DeviceKeys, MegolmEnvelope, OlmEnvelope, PublicKey, RoomPlaintext, SignedOneTimeKey,
    ToDeviceContent, ToDevicePlaintext,
};
use sotto_proto::{DeviceId, MessageBody, Username};

pub use account::{DeviceAccount, IdentityKeys, KeyUpload, verify_device_keys};
pub use megolm::{
    Decrypted, InboundPickle, KeySender, NotForwarded, Prepared, ReadMode, Recipient, ReplayPickle,
    message_id,
};
pub use olm::OlmPeerPickle;
pub use safety::safety_number;

/// Why an end-to-end operation failed. Each is shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum E2eError {
    #[error("the {what} of {user}'s device {device} carry an invalid signature")]
    BadSignature {
        what: &'static str,
        user: Username,
        device: DeviceId,
    },
    #[error("malformed encrypted data: {0}")]
    Malformed(String),
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
    #[error("no room key for this message yet (session {session_id})")]
    MissingRoomKey { session_id: String },
    #[error("rejected a replayed message")]
    Replay,
    #[error("rejected: {0}")]
    Mismatch(String),
    #[error("no encrypted session with that device yet")]
    NoSession,
}

/// One device's end-to-end state.
#[derive(Debug)]
pub struct E2e {
    account: DeviceAccount,
    /// The account changed since [`E2e::take_changed`] (keys generated,
    /// published or used up).
    account_changed: bool,
    olm: olm::OlmSessions,
    rooms: megolm::RoomSessions,
}

/// [`E2e`] as records for the client to store (encrypted at rest by the
/// client): all of them ([`E2e::records`]) or the ones changed since the
/// last save ([`E2e::take_changed`]). A record replaces the stored one with
/// the same key (the account; a peer's Curve25519 key; a room and session id).
#[derive(Debug, Default)]
pub struct E2eRecords {
    pub account: Option<account::DeviceAccountPickle>,
    pub olm: Vec<OlmPeerPickle>,
    pub inbound: Vec<InboundPickle>,
    /// Each inbound session's replay window (a record of its own, small
    /// and of fixed size, rewritten as messages are read).
    pub replay: Vec<ReplayPickle>,
}

impl E2eRecords {
    pub fn is_empty(&self) -> bool {
        self.account.is_none()
            && self.olm.is_empty()
            && self.inbound.is_empty()
            && self.replay.is_empty()
    }
}

/// The whole state as one value, as stores written before [`E2eRecords`]
/// held it; read once to move such a store over.
#[derive(Deserialize)]
pub struct LegacyE2ePickle {
    account: account::DeviceAccountPickle,
    olm: olm::LegacyOlmSessionsPickle,
    rooms: LegacyRooms,
}

#[derive(Deserialize)]
struct LegacyRooms {
    /// Outbound sessions are not carried over: each room starts a new one.
    #[allow(dead_code)]
    outbound: serde::de::IgnoredAny,
    inbound: Vec<(
        u64,
        String,
        vodozemac::megolm::InboundGroupSessionPickle,
        KeySender,
    )>,
    seen: Vec<(String, u32, u64)>,
}

impl std::fmt::Debug for LegacyE2ePickle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyE2ePickle").finish_non_exhaustive()
    }
}

/// A decrypted to-device message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToDevice {
    pub sender: Username,
    pub sender_device: DeviceId,
    /// The sender's self-signed keys, as checked.
    pub sender_keys: DeviceKeys,
    pub content: ToDeviceContent,
    /// It started a new Olm session (the sender made one: after losing its
    /// state, say).
    pub new_session: bool,
}

impl E2e {
    /// A new device with fresh identity keys.
    pub fn new(user: Username, device: DeviceId) -> Self {
        Self {
            account: DeviceAccount::new(user, device),
            account_changed: true,
            olm: olm::OlmSessions::default(),
            rooms: megolm::RoomSessions::default(),
        }
    }

    pub fn user(&self) -> &Username {
        self.account.user()
    }

    pub fn device(&self) -> &DeviceId {
        self.account.device()
    }

    pub fn identity(&self) -> IdentityKeys {
        self.account.identity()
    }

    /// This device's self-signed keys for the directory.
    pub fn device_keys(&self) -> DeviceKeys {
        self.account.device_keys()
    }

    /// One-time and fallback keys to upload; see
    /// [`DeviceAccount::keys_to_upload`].
    pub fn keys_to_upload(&mut self, server_count: usize) -> KeyUpload {
        self.account_changed = true;
        self.account.keys_to_upload(server_count)
    }

    /// Call after the upload succeeded.
    pub fn mark_keys_published(&mut self) {
        self.account_changed = true;
        self.account.mark_published();
    }

    /// Call when the server reports the fallback key was handed out.
    pub fn rotate_fallback_key(&mut self) {
        self.account_changed = true;
        self.account.rotate_fallback_key();
    }

    pub fn has_olm_session(&self, peer: &DeviceKeys) -> bool {
        self.olm.has_session(&peer.curve25519)
    }

    /// Starts an Olm session with `peer` from a key claimed for it.
    pub fn start_olm_session(
        &mut self,
        peer: &DeviceKeys,
        key: &SignedOneTimeKey,
    ) -> Result<(), E2eError> {
        if peer.user == *self.user() && peer.device == *self.device() {
            return Err(E2eError::Mismatch("a device cannot talk to itself".into()));
        }
        self.olm.start(&self.account, peer, key)
    }

    /// Whether to replace a broken Olm session with `peer` now (claim a new
    /// key, start a session and send [`ToDeviceContent::Dummy`]); at most
    /// once an hour per device.
    pub fn should_recover_session(&mut self, peer: &PublicKey, now_ms: i64) -> bool {
        self.olm.should_recover(peer, now_ms)
    }

    /// Encrypts `content` for one device, naming both ends inside.
    pub fn encrypt_to_device(
        &mut self,
        peer: &DeviceKeys,
        content: ToDeviceContent,
    ) -> Result<OlmEnvelope, E2eError> {
        let plaintext = ToDevicePlaintext {
            sender: self.user().clone(),
            sender_device: self.device().clone(),
            sender_keys: self.device_keys(),
            recipient: peer.user.clone(),
            recipient_device: peer.device.clone(),
            recipient_ed25519: peer.ed25519,
            content,
        };
        let bytes = plaintext
            .encode()
            .map_err(|e| E2eError::Malformed(e.to_string()))?;
        self.olm.encrypt(&self.account, &peer.curve25519, &bytes)
    }

    /// Encrypts any bytes as a to-device message to `peer`, as a hostile
    /// peer could (the tests of what a client refuses use it); clients
    /// use [`E2e::encrypt_to_device`].
    #[doc(hidden)]
    pub fn encrypt_raw_to_device(
        &mut self,
        peer: &DeviceKeys,
        plaintext: &[u8],
    ) -> Result<OlmEnvelope, E2eError> {
        self.olm.encrypt(&self.account, &peer.curve25519, plaintext)
    }

    /// Decrypts a to-device message from `sender`: the device the server
    /// delivered it from, with the keys pinned for it (which the client
    /// checked against the directory). The message must come from that
    /// device's Olm key, and name exactly that device (and its keys) as
    /// its sender and this device as its recipient, or it is refused:
    /// nobody can pass a message off as another device's. A room key it
    /// carries is stored only then.
    pub fn decrypt_to_device(
        &mut self,
        sender: &DeviceKeys,
        envelope: &OlmEnvelope,
    ) -> Result<ToDevice, E2eError> {
        if envelope.sender_key != sender.curve25519 {
            return Err(E2eError::Mismatch(format!(
                "a to-device message from {}/{} came from another device's key",
                sender.user, sender.device
            )));
        }
        let (bytes, used_one_time_key) = self.olm.decrypt(&mut self.account, envelope)?;
        self.account_changed |= used_one_time_key;
        let plaintext = ToDevicePlaintext::decode(&bytes)
            .map_err(|e| E2eError::Malformed(format!("to-device plaintext: {e}")))?;
        let keys = &plaintext.sender_keys;
        if keys != sender
            || plaintext.sender != sender.user
            || plaintext.sender_device != sender.device
        {
            return Err(E2eError::Mismatch(format!(
                "a to-device message from {}/{} names {}/{} as its sender",
                sender.user, sender.device, plaintext.sender, plaintext.sender_device
            )));
        }
        let me = self.identity();
        if plaintext.recipient != *self.user()
            || plaintext.recipient_device != *self.device()
            || plaintext.recipient_ed25519 != me.ed25519
        {
            return Err(E2eError::Mismatch(format!(
                "a to-device message from {}/{} was meant for {}/{}",
                plaintext.sender,
                plaintext.sender_device,
                plaintext.recipient,
                plaintext.recipient_device
            )));
        }
        match &plaintext.content {
            ToDeviceContent::RoomKey {
                room_id,
                session_id,
                session_key,
            } => self
                .rooms
                .add_room_key(KeySender::of(keys), *room_id, session_id, session_key)?,
            ToDeviceContent::ForwardedRoomKey {
                room_id,
                session_id,
                exported_key,
            } => self.rooms.add_forwarded_key(
                KeySender::of(keys),
                *room_id,
                session_id,
                exported_key,
            )?,
            ToDeviceContent::KeyRequest { .. }
            | ToDeviceContent::Withheld { .. }
            | ToDeviceContent::Dummy => {}
        }
        Ok(ToDevice {
            sender: plaintext.sender.clone(),
            sender_device: plaintext.sender_device.clone(),
            sender_keys: plaintext.sender_keys.clone(),
            content: plaintext.content,
            new_session: used_one_time_key,
        })
    }

    /// Gets the room's outbound session ready for `recipients`; see
    /// [`megolm::RoomSessions::prepare`]. The room key must reach
    /// `to_share` (with [`E2e::room_key_for`]) before the message is sent.
    /// A rotated session's key is also kept locally, so this device's own
    /// messages decrypt from the local store and history.
    pub fn prepare_room(
        &mut self,
        room_id: u64,
        recipients: &BTreeSet<Recipient>,
        waiting: &BTreeSet<Recipient>,
        now_ms: i64,
    ) -> Result<Prepared, E2eError> {
        let prepared = self.rooms.prepare(room_id, recipients, waiting, now_ms);
        if prepared.rotated {
            let me = KeySender {
                user: self.user().clone(),
                device: self.device().clone(),
                curve25519: self.identity().curve25519,
            };
            self.rooms
                .add_room_key(me, room_id, &prepared.session_id, &prepared.session_key)?;
        }
        Ok(prepared)
    }

    /// The Olm message carrying a prepared room key to one device.
    pub fn room_key_for(
        &mut self,
        room_id: u64,
        prepared: &Prepared,
        peer: &DeviceKeys,
    ) -> Result<OlmEnvelope, E2eError> {
        self.encrypt_to_device(
            peer,
            ToDeviceContent::RoomKey {
                room_id,
                session_id: prepared.session_id.clone(),
                session_key: prepared.session_key.clone(),
            },
        )
    }

    /// Records that the room key of `prepared` was sent to these devices
    /// (from its index on).
    pub fn mark_room_key_shared(
        &mut self,
        room_id: u64,
        prepared: &Prepared,
        devices: &[Recipient],
    ) {
        let me = self.identity().curve25519;
        self.rooms
            .mark_shared(room_id, &prepared.session_id, devices, prepared.index, &me);
    }

    /// Records that these devices were left out of `prepared`'s session
    /// (the user has not accepted them): they get its key from this index
    /// once accepted ([`E2e::withheld_keys_for`]).
    pub fn mark_room_key_withheld(
        &mut self,
        room_id: u64,
        prepared: &Prepared,
        devices: &[Recipient],
    ) {
        let me = self.identity().curve25519;
        self.rooms
            .mark_withheld(room_id, &prepared.session_id, devices, prepared.index, &me);
    }

    /// Forces a new room session on the next message (say, after a
    /// membership change the caller learned of).
    pub fn discard_room_session(&mut self, room_id: u64) {
        self.rooms.discard_outbound(room_id);
    }

    /// Encrypts a message for a prepared room. Sender, room, time and a
    /// message id bound to the message's place in the session
    /// ([`message_id`]) travel inside; the id is returned.
    pub fn encrypt_room(
        &mut self,
        room_id: u64,
        ts: i64,
        body: MessageBody,
    ) -> Result<(MegolmEnvelope, [u8; 16]), E2eError> {
        let plaintext = RoomPlaintext {
            sender: self.user().clone(),
            sender_device: self.device().clone(),
            room_id,
            msg_id: [0; 16],
            ts,
            body,
        };
        self.rooms.encrypt(self.identity().curve25519, plaintext)
    }

    /// Decrypts a room message delivered in `room_id` and said by the
    /// server to be from `server_sender`'s device `server_device`; see
    /// [`megolm::RoomSessions::decrypt`].
    pub fn decrypt_room(
        &mut self,
        room_id: u64,
        server_sender: &Username,
        server_device: &DeviceId,
        envelope: &MegolmEnvelope,
        mode: ReadMode,
    ) -> Result<Decrypted, E2eError> {
        self.rooms
            .decrypt(room_id, server_sender, server_device, envelope, mode)
    }

    /// The answer to a key request from `requester` for one of this
    /// device's own room sessions: the key from the index `requester` was
    /// first sent, or from the first index for one of this user's own
    /// devices that the user accepted (`own_accepted`); otherwise why not.
    pub fn answer_key_request(
        &mut self,
        room_id: u64,
        session_id: &str,
        requester: &DeviceKeys,
        own_accepted: bool,
    ) -> Result<ToDeviceContent, NotForwarded> {
        let me = self.identity().curve25519;
        let exported = self.rooms.export_for(
            room_id,
            session_id,
            &me,
            &recipient_of(requester),
            own_accepted,
        )?;
        Ok(ToDeviceContent::ForwardedRoomKey {
            room_id,
            session_id: session_id.to_owned(),
            exported_key: exported,
        })
    }

    /// The keys of this device's own sessions that left `device` out,
    /// each from the first index it missed, now that the user accepted it;
    /// they count as shared with it from then on.
    pub fn withheld_keys_for(&mut self, device: &DeviceKeys) -> Vec<ToDeviceContent> {
        let me = self.identity().curve25519;
        let recipient = recipient_of(device);
        let mut out = Vec::new();
        for (room_id, session_id, index) in self.rooms.withheld_from(&recipient) {
            if let Some(exported) = self.rooms.export_own_at(room_id, &session_id, &me, index) {
                self.rooms.mark_shared(
                    room_id,
                    &session_id,
                    std::slice::from_ref(&recipient),
                    index,
                    &me,
                );
                out.push(ToDeviceContent::ForwardedRoomKey {
                    room_id,
                    session_id,
                    exported_key: exported,
                });
            }
        }
        out
    }

    pub fn has_room_key(&self, room_id: u64, session_id: &str) -> bool {
        self.rooms.has_room_key(room_id, session_id)
    }

    /// Counts every room session record as changed, to store them all
    /// again (under new ids, say).
    pub fn mark_rooms_changed(&mut self) {
        self.rooms.mark_all_changed();
    }

    /// Every record of the state, to store.
    pub fn records(&self) -> E2eRecords {
        let (inbound, replay) = self.rooms.pickle_all();
        E2eRecords {
            account: Some(self.account.pickle()),
            olm: self.olm.pickle_all(),
            inbound,
            replay,
        }
    }

    /// The records changed since the last call (or since this state was
    /// created or restored), to store.
    pub fn take_changed(&mut self) -> E2eRecords {
        let (inbound, replay) = self.rooms.take_changed();
        E2eRecords {
            account: std::mem::take(&mut self.account_changed).then(|| self.account.pickle()),
            olm: self.olm.take_changed(),
            inbound,
            replay,
        }
    }

    /// The state from stored records. Room outbound sessions are never
    /// stored: each room starts a new one, so a message index is never
    /// reused from a copy that is behind what was sent.
    pub fn from_records(records: E2eRecords) -> Result<Self, E2eError> {
        let account = records
            .account
            .ok_or_else(|| E2eError::Malformed("the stored state has no account".into()))?;
        Ok(Self {
            account: DeviceAccount::from_pickle(account),
            account_changed: false,
            olm: olm::OlmSessions::from_pickles(records.olm),
            rooms: megolm::RoomSessions::from_pickles(records.inbound, records.replay),
        })
    }

    /// The state of a store written as one value; every record counts as
    /// changed, so the next save writes it all in the new form.
    pub fn from_legacy(pickle: LegacyE2ePickle) -> Self {
        Self {
            account: DeviceAccount::from_pickle(pickle.account),
            account_changed: true,
            olm: olm::OlmSessions::from_legacy(pickle.olm),
            rooms: megolm::RoomSessions::from_legacy(pickle.rooms.inbound, pickle.rooms.seen),
        }
    }
}

fn recipient_of(keys: &DeviceKeys) -> Recipient {
    (keys.user.clone(), keys.device.clone(), keys.curve25519)
}
