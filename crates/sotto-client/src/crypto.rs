//! This device's end-to-end state, shared by the [`crate::Client`] handle
//! (which encrypts what it sends) and the actor (which decrypts what
//! arrives), kept in the sealed local store.
//!
//! The lock is a std mutex held only for CPU work, never across an await:
//! the handle's send path makes several requests whose replies the actor
//! delivers, and the actor needs the state to decrypt meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sotto_crypto::e2e::{E2e, E2eError, E2ePickle, Prepared, Recipient};
use sotto_proto::e2e::{DeviceKeys, MegolmEnvelope, OlmEnvelope, ToDeviceContent};
use sotto_proto::{
    DeviceId, DeviceRef, MessageBody, Request, RoomContent, RoomEvent, RoomRef, ToDeviceMessage,
    Username,
};

use crate::ClientError;
use crate::local_store::{LocalStore, StoreError};
use crate::trust::{Trust, TrustWarning};

/// How long room-message bookkeeping may wait to be saved.
const LAZY_SAVE: std::time::Duration = std::time::Duration::from_secs(2);

/// What the local store holds.
#[derive(Serialize, Deserialize)]
struct Stored {
    e2e: E2ePickle,
    trust: Trust,
}

/// The end-to-end state of this device.
#[derive(Debug)]
pub(crate) struct Crypto {
    pub e2e: E2e,
    pub trust: Trust,
    store: LocalStore,
    path: PathBuf,
    /// Changed since the last save.
    dirty: bool,
    /// Changed in a way that must reach the disk before the server may
    /// forget what caused it (an Olm message: its ratchet moved).
    urgent: bool,
    /// When the state was last written.
    saved_at: std::time::Instant,
    /// Private room ids by peer (they never change), for this session.
    pub direct_rooms: BTreeMap<Username, u64>,
}

/// The state shared by the handle and the actor.
pub(crate) type SharedCrypto = Arc<Shared>;

#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<Crypto>,
    /// Saves happen one at a time, each writing the state as of its turn,
    /// so an older snapshot never lands after a newer one.
    saving: tokio::sync::Mutex<()>,
}

pub(crate) fn shared(crypto: Crypto) -> SharedCrypto {
    Arc::new(Shared {
        state: Mutex::new(crypto),
        saving: tokio::sync::Mutex::new(()),
    })
}

/// Locks the state; a panic while it was held leaves it usable.
pub(crate) fn lock(crypto: &SharedCrypto) -> MutexGuard<'_, Crypto> {
    crypto.state.lock().unwrap_or_else(|e| e.into_inner())
}

fn store_error(e: StoreError) -> ClientError {
    ClientError::LocalStore(e.to_string())
}

impl Crypto {
    /// Unlocks the store at `path` with the account password; a new store,
    /// or one of another device (its device file was replaced), starts a
    /// fresh device identity.
    pub fn open(
        path: &Path,
        password: &str,
        user: &Username,
        device: &DeviceId,
    ) -> Result<Self, ClientError> {
        let (store, stored) = LocalStore::open::<Stored>(path, password).map_err(|e| {
            ClientError::LocalStore(format!(
                "{e} ({}; it holds this device's keys: with the right password it opens again)",
                path.display()
            ))
        })?;
        let (e2e, trust) = match stored {
            Some(stored) => {
                let mut e2e = E2e::from_pickle(stored.e2e);
                // Room sessions are not saved after every message: start new
                // ones rather than risk reusing a message index.
                e2e.discard_room_sessions();
                if e2e.user() == user && e2e.device() == device {
                    (e2e, stored.trust)
                } else {
                    (E2e::new(user.clone(), device.clone()), stored.trust)
                }
            }
            None => (E2e::new(user.clone(), device.clone()), Trust::default()),
        };
        Ok(Self {
            e2e,
            trust,
            store,
            path: path.to_owned(),
            dirty: true,
            urgent: true,
            saved_at: std::time::Instant::now(),
            direct_rooms: BTreeMap::new(),
        })
    }

    /// The sealed bytes of the current state if it changed since the last
    /// save; write them with [`write`] (outside the lock).
    pub fn snapshot(&mut self) -> Result<Option<(PathBuf, Vec<u8>)>, ClientError> {
        if !self.dirty {
            return Ok(None);
        }
        let stored = Stored {
            e2e: self.e2e.pickle(),
            trust: self.trust.clone(),
        };
        let bytes = self.store.seal(&stored).map_err(store_error)?;
        self.dirty = false;
        self.urgent = false;
        self.saved_at = std::time::Instant::now();
        Ok(Some((self.path.clone(), bytes)))
    }

    /// Marks the state changed (saved on the next [`save`]).
    pub fn touch(&mut self) {
        self.dirty = true;
        self.urgent = true;
    }

    /// Whether to save before acknowledging: always after an Olm message,
    /// else at most every [`LAZY_SAVE`] (room messages only add to the
    /// replay memory).
    pub fn save_due(&self) -> bool {
        self.urgent || (self.dirty && self.saved_at.elapsed() >= LAZY_SAVE)
    }

    /// The request that publishes this device's keys and tops up one-time
    /// keys, given the server's count (`None`: not known yet).
    pub fn key_upload(
        &mut self,
        server_count: Option<u32>,
        fallback_used: bool,
    ) -> Option<Request> {
        let Some(count) = server_count else {
            // First learn what the server holds (publishing the identity
            // keys, which it accepts again unchanged): topping up blindly
            // at every connect would pile up keys.
            return Some(Request::UploadKeys {
                device_keys: Some(Box::new(self.e2e.device_keys())),
                one_time_keys: Vec::new(),
                fallback_key: None,
            });
        };
        let count = count as usize;
        let mut upload = self.e2e.keys_to_upload(count);
        // Replace a used fallback key once: a replacement still waiting to
        // be published (several claims reported before it was) is enough.
        if fallback_used && upload.fallback_key.is_none() {
            self.e2e.rotate_fallback_key();
            upload = self.e2e.keys_to_upload(count);
        }
        if upload.is_empty() {
            return None;
        }
        self.dirty = true;
        Some(Request::UploadKeys {
            device_keys: None,
            one_time_keys: upload.one_time_keys,
            fallback_key: upload.fallback_key.map(Box::new),
        })
    }

    /// Takes in the directory's devices of `users`; returns the recipient
    /// devices of a room with them (not this device), and warnings.
    pub fn recipients(
        &mut self,
        users: &[Username],
        listed: &[DeviceKeys],
    ) -> (BTreeMap<Recipient, DeviceKeys>, Vec<TrustWarning>) {
        let mut recipients = BTreeMap::new();
        let mut warnings = Vec::new();
        for user in users {
            let theirs: Vec<DeviceKeys> =
                listed.iter().filter(|d| d.user == *user).cloned().collect();
            let (usable, mut warned) = self.trust.observe(user, &theirs);
            warnings.append(&mut warned);
            for keys in usable {
                if keys.user == *self.e2e.user() && keys.device == *self.e2e.device() {
                    continue;
                }
                recipients.insert(
                    (keys.user.clone(), keys.device.clone(), keys.curve25519),
                    keys,
                );
            }
        }
        self.dirty = true;
        (recipients, warnings)
    }

    /// Prepares the room's session; the devices among `to_share` that need
    /// an Olm session first.
    pub fn prepare(
        &mut self,
        room_id: u64,
        recipients: &BTreeMap<Recipient, DeviceKeys>,
        now_ms: i64,
    ) -> Result<(Prepared, Vec<DeviceRef>), ClientError> {
        let set: BTreeSet<Recipient> = recipients.keys().cloned().collect();
        let prepared = self
            .e2e
            .prepare_room(room_id, &set, now_ms)
            .map_err(e2e_error)?;
        let need = prepared
            .to_share
            .iter()
            .filter_map(|r| recipients.get(r))
            .filter(|keys| !self.e2e.has_olm_session(keys))
            .map(|keys| DeviceRef {
                user: keys.user.clone(),
                device: keys.device.clone(),
            })
            .collect();
        self.dirty = true;
        Ok((prepared, need))
    }

    /// The to-device messages carrying the room key to the devices that
    /// still need it (after starting Olm sessions from `claimed` keys), and
    /// who they are for.
    pub fn room_key_messages(
        &mut self,
        room_id: u64,
        prepared: &Prepared,
        recipients: &BTreeMap<Recipient, DeviceKeys>,
        claimed: &[sotto_proto::ClaimedKey],
    ) -> (Vec<ToDeviceMessage>, Vec<Recipient>, Vec<String>) {
        let mut problems = Vec::new();
        for claim in claimed {
            let Some(keys) = recipients
                .values()
                .find(|k| k.user == claim.user && k.device == claim.device)
            else {
                continue;
            };
            if let Err(e) = self.e2e.start_olm_session(keys, &claim.key) {
                problems.push(format!("{}/{}: {e}", claim.user, claim.device));
            }
        }
        let mut messages = Vec::new();
        let mut shared = Vec::new();
        for recipient in &prepared.to_share {
            let Some(keys) = recipients.get(recipient) else {
                continue;
            };
            if !self.e2e.has_olm_session(keys) {
                // No key could be claimed: the device gets nothing and
                // cannot read this message.
                continue;
            }
            match self
                .e2e
                .room_key_for(room_id, prepared, keys)
                .and_then(|env| env.encode().map_err(|e| E2eError::Malformed(e.to_string())))
            {
                Ok(payload) => {
                    messages.push(ToDeviceMessage {
                        user: keys.user.clone(),
                        device: keys.device.clone(),
                        payload,
                    });
                    shared.push(recipient.clone());
                }
                Err(e) => problems.push(format!("{}/{}: {e}", keys.user, keys.device)),
            }
        }
        self.dirty = true;
        (messages, shared, problems)
    }

    pub fn mark_shared(&mut self, room_id: u64, prepared: &Prepared, shared: &[Recipient]) {
        self.e2e
            .mark_room_key_shared(room_id, &prepared.session_id, shared);
        self.dirty = true;
    }

    /// Encrypts a message body for a prepared room: the envelope payload.
    pub fn encrypt(
        &mut self,
        room_id: u64,
        body: MessageBody,
        now_ms: i64,
    ) -> Result<Vec<u8>, ClientError> {
        let envelope = self
            .e2e
            .encrypt_room(room_id, rand::random(), now_ms, body)
            .map_err(e2e_error)?;
        self.dirty = true;
        envelope
            .encode()
            .map_err(|e| ClientError::Internal(e.to_string()))
    }

    /// A to-device message from this device's inbox: checks and pins the
    /// sender's keys (trust on first use) and stores a room key it carries.
    /// Warnings to show, or why it was refused.
    pub fn receive_to_device(
        &mut self,
        payload: &[u8],
    ) -> Result<(Vec<TrustWarning>, sotto_crypto::e2e::ToDevice), String> {
        let envelope = OlmEnvelope::decode(payload).map_err(|e| format!("malformed: {e}"))?;
        let mut warnings = Vec::new();
        let trust = &mut self.trust;
        let result = self.e2e.decrypt_to_device_with(&envelope, |keys| {
            let (usable, warned) = trust.observe(&keys.user, std::slice::from_ref(keys));
            warnings = warned;
            if usable.contains(keys) {
                Ok(())
            } else {
                Err(E2eError::Mismatch(format!(
                    "{}'s device {} uses keys other than the ones pinned for it",
                    keys.user, keys.device
                )))
            }
        });
        self.dirty = true;
        self.urgent = true;
        result.map(|got| (warnings, got)).map_err(|e| e.to_string())
    }

    /// Decrypts a private or group room event in place: its envelope's
    /// payload becomes the encoded message body. `Err` says why it could
    /// not be read, and which key to ask for if one is missing.
    pub fn decrypt_event(&mut self, event: &mut RoomEvent) -> Result<(), Undecryptable> {
        let sender_device = match &event.content {
            RoomContent::Envelope { device, .. } => device.clone(),
            _ => return Ok(()),
        };
        let room_id = event.room_id;
        self.decrypt_in_place(event)
            .map_err(|(reason, session_id)| Undecryptable {
                reason,
                ask: session_id.map(|session_id| KeyAsk {
                    room_id,
                    session_id,
                    sender: event.sender.clone(),
                    sender_device,
                }),
            })
    }

    fn decrypt_in_place(&mut self, event: &mut RoomEvent) -> Result<(), (String, Option<String>)> {
        let RoomContent::Envelope { payload, .. } = &mut event.content else {
            return Ok(());
        };
        if !matches!(event.room, RoomRef::Direct { .. } | RoomRef::Group { .. }) {
            return Ok(());
        }
        let envelope = MegolmEnvelope::decode(payload).map_err(|_| {
            (
                "the message is not end-to-end encrypted; refused".to_owned(),
                None,
            )
        })?;
        let plain = self
            .e2e
            .decrypt_room(event.room_id, event.seq, &event.sender, &envelope)
            .map_err(|e| match e {
                E2eError::MissingRoomKey { session_id } => (
                    format!(
                        "cannot decrypt this message yet: this device has no room key for it \
                         (it was sent before this device could receive keys, or the key is \
                         still on its way); asked {}'s device for it",
                        event.sender
                    ),
                    Some(session_id),
                ),
                other => (other.to_string(), None),
            })?;
        self.dirty = true;
        *payload = plain
            .body
            .encode()
            .map_err(|e| (format!("cannot re-encode the decrypted message: {e}"), None))?;
        Ok(())
    }

    /// The to-device request for a missing room key, if the sender's device
    /// is pinned: ready to send when there is an Olm session with it, or
    /// the device to claim a key for first.
    pub fn key_request(&mut self, ask: &KeyAsk) -> Option<Result<ToDeviceMessage, DeviceKeys>> {
        let keys = self.trust.pinned(&ask.sender, &ask.sender_device)?.clone();
        if !self.e2e.has_olm_session(&keys) {
            return Some(Err(keys));
        }
        let content = ToDeviceContent::KeyRequest {
            room_id: ask.room_id,
            session_id: ask.session_id.clone(),
        };
        let envelope = self.e2e.encrypt_to_device(&keys, content).ok()?;
        self.urgent = true;
        self.dirty = true;
        Some(Ok(ToDeviceMessage {
            user: keys.user.clone(),
            device: keys.device.clone(),
            payload: envelope.encode().ok()?,
        }))
    }

    /// Starts an Olm session from a claimed key and builds the key request.
    pub fn key_request_after_claim(
        &mut self,
        keys: &DeviceKeys,
        claimed: &sotto_proto::e2e::SignedOneTimeKey,
        ask: &KeyAsk,
    ) -> Option<ToDeviceMessage> {
        self.e2e.start_olm_session(keys, claimed).ok()?;
        self.key_request(ask)?.ok()
    }

    /// Answers a key request from `from` (checked over Olm): only for this
    /// device's own sessions, and only to this account's devices, verified
    /// contacts, or devices the key was originally sent to.
    pub fn answer_key_request(
        &mut self,
        from: &DeviceKeys,
        room_id: u64,
        session_id: &str,
    ) -> Option<ToDeviceMessage> {
        let allowed = from.user == *self.e2e.user()
            || self.trust.is_verified(&from.user)
            || self.e2e.was_shared_with(room_id, session_id, from);
        if !allowed {
            return None;
        }
        let content = self.e2e.answer_key_request(room_id, session_id)?;
        let envelope = self.e2e.encrypt_to_device(from, content).ok()?;
        self.urgent = true;
        self.dirty = true;
        Some(ToDeviceMessage {
            user: from.user.clone(),
            device: from.device.clone(),
            payload: envelope.encode().ok()?,
        })
    }
}

/// A room message this device could not decrypt.
#[derive(Debug, Clone)]
pub(crate) struct Undecryptable {
    pub reason: String,
    /// The key to ask its sender for, when one is missing.
    pub ask: Option<KeyAsk>,
}

/// A missing room key and whom to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyAsk {
    pub room_id: u64,
    pub session_id: String,
    pub sender: Username,
    pub sender_device: DeviceId,
}

impl Crypto {}

/// Writes a snapshot (blocking I/O).
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    crate::known_servers::write_atomically(path, bytes)
        .map_err(|e| ClientError::LocalStore(format!("{}: {e}", path.display())))
}

/// Saves the state if it changed, off the async threads.
pub(crate) async fn save(crypto: &SharedCrypto) -> Result<(), ClientError> {
    let _turn = crypto.saving.lock().await;
    let snapshot = lock(crypto).snapshot()?;
    if let Some((path, bytes)) = snapshot {
        tokio::task::spawn_blocking(move || write(&path, &bytes))
            .await
            .map_err(|e| ClientError::Internal(format!("saving the local store: {e}")))??;
    }
    Ok(())
}

fn e2e_error(e: E2eError) -> ClientError {
    ClientError::Encryption(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fallback_of(request: Option<Request>) -> Option<sotto_proto::e2e::SignedOneTimeKey> {
        match request {
            Some(Request::UploadKeys { fallback_key, .. }) => fallback_key.map(|k| *k),
            _ => None,
        }
    }

    #[test]
    fn a_used_fallback_key_is_replaced_once_until_the_replacement_is_published() {
        let dir = tempfile::tempdir().unwrap();
        let mut crypto = Crypto::open(
            &dir.path().join("store"),
            "pw",
            &Username::parse("bob").unwrap(),
            &DeviceId::parse("bobdevice1").unwrap(),
        )
        .unwrap();
        assert!(fallback_of(crypto.key_upload(None, false)).is_none());
        let first = fallback_of(crypto.key_upload(Some(0), false)).unwrap();
        crypto.e2e.mark_keys_published();
        assert!(crypto.key_upload(Some(50), false).is_none());
        // Two claims of the fallback reported before the upload went out.
        let replacement = fallback_of(crypto.key_upload(Some(50), true)).unwrap();
        let again = fallback_of(crypto.key_upload(Some(50), true)).unwrap();
        assert_ne!(replacement.key, first.key);
        assert_eq!(again.key, replacement.key, "not rotated twice");
    }
}
