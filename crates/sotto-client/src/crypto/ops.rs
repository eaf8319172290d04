//! What the handle and the actor ask of this device's end-to-end state:
//! publishing keys, preparing and sharing room sessions, encrypting,
//! taking in to-device messages (and deciding when an Olm session must be
//! replaced), decrypting room messages, and key requests.

use std::collections::{BTreeMap, BTreeSet};

use sotto_crypto::e2e::{E2eError, Prepared, Recipient};
use sotto_proto::e2e::{DeviceKeys, MegolmEnvelope, OlmEnvelope, ToDeviceContent};
use sotto_proto::{
    DeviceId, DeviceRef, MessageBody, Request, RoomContent, RoomEvent, RoomRef, ToDeviceMessage,
    Username,
};

use super::Crypto;
use crate::ClientError;
use crate::trust::TrustWarning;

impl Crypto {
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
        (messages, shared, problems)
    }

    pub fn mark_shared(&mut self, room_id: u64, prepared: &Prepared, shared: &[Recipient]) {
        self.e2e
            .mark_room_key_shared(room_id, &prepared.session_id, shared);
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
        envelope
            .encode()
            .map_err(|e| ClientError::Internal(e.to_string()))
    }

    /// A to-device message from this device's inbox, sent (the server
    /// says) by `sender`'s device `device`: checks and pins the sender's
    /// keys (trust on first use) and stores a room key it carries.
    /// Warnings to show, or why it was refused and whether to replace the
    /// Olm session with the sender.
    pub fn receive_to_device(
        &mut self,
        sender: &Username,
        device: &DeviceId,
        payload: &[u8],
        now_ms: i64,
    ) -> Result<(Vec<TrustWarning>, sotto_crypto::e2e::ToDevice), Refused> {
        let envelope = OlmEnvelope::decode(payload).map_err(|e| Refused {
            reason: format!("malformed: {e}"),
            recover: None,
        })?;
        let mut warnings = Vec::new();
        let trust = &mut self.trust;
        let result = self.e2e.decrypt_to_device_with(&envelope, |keys| {
            let (usable, warned) = trust.observe_device(keys);
            warnings = warned;
            if usable {
                Ok(())
            } else {
                Err(E2eError::Mismatch(format!(
                    "{}'s device {} uses keys other than the ones pinned for it",
                    keys.user, keys.device
                )))
            }
        });
        result.map(|got| (warnings, got)).map_err(|e| {
            let recover = match e {
                // No session this device has can read it (this device lost
                // its state, or the sender's is ahead): a new one is needed.
                E2eError::Decrypt(_) => self.recovery(sender, device, &envelope, now_ms),
                _ => None,
            };
            Refused {
                reason: e.to_string(),
                recover,
            }
        })
    }

    /// Whether to start a new Olm session with the device that sent an
    /// unreadable message: only if its key is the one pinned for it (or
    /// none is pinned yet), at most once an hour per device.
    fn recovery(
        &mut self,
        sender: &Username,
        device: &DeviceId,
        envelope: &OlmEnvelope,
        now_ms: i64,
    ) -> Option<Box<Recover>> {
        let pinned = self.trust.pinned(sender, device).cloned();
        if pinned
            .as_ref()
            .is_some_and(|keys| keys.curve25519 != envelope.sender_key)
        {
            return None;
        }
        if !self
            .e2e
            .should_recover_session(&envelope.sender_key, now_ms)
        {
            return None;
        }
        Some(
            match pinned {
                Some(keys) => Recover::Pinned(keys),
                None => Recover::Lookup {
                    user: sender.clone(),
                    device: device.clone(),
                    curve25519: envelope.sender_key,
                },
            }
            .into(),
        )
    }

    /// Looks up a device for a session recovery in the directory's listing
    /// of its user (pinning it on first sight): its keys, if they are the
    /// ones the unreadable message came from.
    pub fn recovery_keys(
        &mut self,
        user: &Username,
        device: &DeviceId,
        curve25519: &sotto_proto::e2e::PublicKey,
        listed: &[DeviceKeys],
    ) -> (Option<DeviceKeys>, Vec<TrustWarning>) {
        let (usable, warnings) = self.trust.observe(user, listed);
        let keys = usable
            .into_iter()
            .find(|k| k.device == *device && k.curve25519 == *curve25519);
        (keys, warnings)
    }

    /// Starts an Olm session with `keys` from a claimed key, and builds
    /// what to send on it: a `Dummy` when it replaces a broken session (so
    /// the other side learns of it), and the key requests waiting for it.
    pub fn start_session_and_send(
        &mut self,
        keys: &DeviceKeys,
        claimed: &sotto_proto::e2e::SignedOneTimeKey,
        dummy: bool,
        asks: &[KeyAsk],
    ) -> Result<Vec<ToDeviceMessage>, String> {
        self.e2e
            .start_olm_session(keys, claimed)
            .map_err(|e| e.to_string())?;
        let mut messages = Vec::new();
        let mut contents: Vec<ToDeviceContent> = asks
            .iter()
            .map(|ask| ToDeviceContent::KeyRequest {
                room_id: ask.room_id,
                session_id: ask.session_id.clone(),
            })
            .collect();
        if dummy && contents.is_empty() {
            contents.push(ToDeviceContent::Dummy);
        }
        for content in contents {
            let envelope = self
                .e2e
                .encrypt_to_device(keys, content)
                .map_err(|e| e.to_string())?;
            messages.push(ToDeviceMessage {
                user: keys.user.clone(),
                device: keys.device.clone(),
                payload: envelope.encode().map_err(|e| e.to_string())?,
            });
        }
        Ok(messages)
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
        let RoomContent::Envelope { payload, device } = &mut event.content else {
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
        // The sender and room were checked against the delivery; so is the
        // device the server says sent it.
        if plain.sender_device != *device {
            return Err((
                format!(
                    "rejected: the server says {}'s device {device} sent this message, \
                     but it was sent from device {}",
                    event.sender, plain.sender_device
                ),
                None,
            ));
        }
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
        Some(Ok(ToDeviceMessage {
            user: keys.user.clone(),
            device: keys.device.clone(),
            payload: envelope.encode().ok()?,
        }))
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
        Some(ToDeviceMessage {
            user: from.user.clone(),
            device: from.device.clone(),
            payload: envelope.encode().ok()?,
        })
    }
}

/// A to-device message this device refused.
#[derive(Debug)]
pub(crate) struct Refused {
    pub reason: String,
    /// The Olm session with the sender is broken: start a new one.
    pub recover: Option<Box<Recover>>,
}

/// The device to start a new Olm session with.
#[derive(Debug, Clone)]
pub(crate) enum Recover {
    /// Its keys are pinned.
    Pinned(DeviceKeys),
    /// Not pinned yet (this device lost its state): look it up in the
    /// directory, and use it only if it has this key.
    Lookup {
        user: Username,
        device: DeviceId,
        curve25519: sotto_proto::e2e::PublicKey,
    },
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
        let (mut crypto, _store) = Crypto::open(
            &dir.path().join("store.db"),
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
