//! Sending a private or group message, sans-IO: the members' devices from
//! the directory (checked against the pins, and only those the user's
//! trust allows), the room session prepared (rotated when it must be), Olm
//! sessions started with devices that need the room key, the key shared,
//! then the message encrypted. [`SendPlan`] says which request to make next
//! and takes its reply; the handle runs it against the server, the model
//! test against its model.
//!
//! What was shared is recorded before it is sent, and saved with the Olm
//! sessions that carry it: after a crash this device still knows which
//! devices hold each of its room sessions, and from which index (key
//! requests are answered from there), and it never reuses an Olm message
//! key.

use std::collections::{BTreeMap, BTreeSet};

use sotto_crypto::e2e::{E2eError, Prepared, Recipient};
use sotto_proto::e2e::{DeviceKeys, SignedOneTimeKey, ToDeviceContent};
use sotto_proto::limits::{MAX_KEY_CLAIM_DEVICES, MAX_KEY_QUERY_USERS, MAX_TO_DEVICE_MESSAGES};
use sotto_proto::{
    ClaimedKey, DeviceRef, MessageBody, Request, Response, ToDeviceMessage, Username,
};

use super::Crypto;
use crate::ClientError;

/// What the plan needs next.
#[derive(Debug)]
pub(crate) enum PlanStep {
    /// Make this request and pass its reply to [`SendPlan::next`].
    Ask(Request),
    /// Save everything changed, then make these requests (to-device
    /// messages carrying the room key; none when only the new session
    /// needs saving); each must answer `Done`, else call
    /// [`SendPlan::failed`]. Then call [`SendPlan::next`] without a reply.
    SaveThenSend(Vec<Request>),
    /// Send this envelope payload to the room.
    Payload(Vec<u8>),
}

/// One message on its way out.
#[derive(Debug)]
pub(crate) struct SendPlan {
    room_id: u64,
    members: Vec<Username>,
    body: Option<MessageBody>,
    stage: Stage,
    notices: Vec<String>,
    /// The devices that can read the message: the room session's holders.
    readers: Vec<Recipient>,
    /// Whether the members' device lists may come from, and go to, the
    /// cache ([`Crypto::device_lists`]).
    cached: bool,
    /// With the cache: the digest of the devices the message is encrypted
    /// for, which the server checks against its directory.
    digest: Option<u64>,
}

#[derive(Debug)]
enum Stage {
    /// Asking the directory for the devices of the members whose lists are
    /// not cached (`asking`), a chunk at a time.
    Query {
        asking: Vec<Username>,
        next: usize,
        listed: Vec<DeviceKeys>,
    },
    /// Claiming one-time keys of devices without an Olm session.
    Claim {
        share: Box<Share>,
        next: usize,
        claimed: Vec<ClaimedKey>,
    },
    /// Nothing asked yet.
    Start,
    /// The room key was shared: encrypt.
    Shared,
    Done,
}

#[derive(Debug)]
struct Share {
    recipients: BTreeMap<Recipient, DeviceKeys>,
    prepared: Prepared,
    need: Vec<DeviceRef>,
}

impl SendPlan {
    /// A message `body` to the room `room_id` whose members are `members`
    /// (this user included).
    pub fn new(room_id: u64, members: Vec<Username>, body: MessageBody) -> Self {
        Self {
            room_id,
            members,
            body: Some(body),
            stage: Stage::Start,
            notices: Vec::new(),
            readers: Vec::new(),
            cached: false,
            digest: None,
        }
    }

    /// What the server checks the devices against (`Message::Direct`'s
    /// `devices`): set once the device lists are known, with the cache.
    pub fn digest(&self) -> Option<u64> {
        self.digest
    }

    /// Uses and fills the device-list cache: only for a private room,
    /// whose two members share it for good, so the server tells this
    /// device whenever either one's devices change.
    pub fn with_cached_devices(mut self) -> Self {
        self.cached = true;
        self
    }

    /// What to show the sender (devices that cannot read it, and why).
    pub fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    /// The devices that hold the room key of the message (besides this one).
    #[cfg(test)]
    pub fn readers(&self) -> &[Recipient] {
        &self.readers
    }

    /// The next step, given the reply to the last [`PlanStep::Ask`].
    pub fn next(
        &mut self,
        crypto: &mut Crypto,
        mut reply: Option<Response>,
        now_ms: i64,
    ) -> Result<PlanStep, ClientError> {
        loop {
            match std::mem::replace(&mut self.stage, Stage::Done) {
                Stage::Start => {
                    take_reply(&mut reply, false)?;
                    // Cached lists are used as they are; the others are
                    // asked for.
                    let mut listed = Vec::new();
                    let mut asking = Vec::new();
                    for user in &self.members {
                        match crypto.device_lists.get(user).filter(|_| self.cached) {
                            Some(devices) => listed.extend(devices.iter().cloned()),
                            None => asking.push(user.clone()),
                        }
                    }
                    self.stage = Stage::Query {
                        asking,
                        next: 0,
                        listed,
                    };
                }
                Stage::Query {
                    asking,
                    next,
                    mut listed,
                } => {
                    match take_reply(&mut reply, next > 0)? {
                        Some(Response::Devices { devices }) => {
                            // The chunk just answered began at the last
                            // multiple of the chunk size below `next`.
                            let start = (next - 1) / MAX_KEY_QUERY_USERS * MAX_KEY_QUERY_USERS;
                            let chunk = asking.get(start..next).unwrap_or_default();
                            if self.cached {
                                crypto.remember_devices(chunk, &devices);
                            }
                            listed.extend(devices);
                        }
                        Some(other) => return Err(unexpected("query_keys", &other)),
                        None => {}
                    }
                    if next < asking.len() {
                        let end = (next + MAX_KEY_QUERY_USERS).min(asking.len());
                        let users = asking[next..end].to_vec();
                        self.stage = Stage::Query {
                            asking,
                            next: end,
                            listed,
                        };
                        return Ok(PlanStep::Ask(Request::QueryKeys { users }));
                    }
                    if self.cached {
                        self.digest = Some(sotto_proto::e2e::device_digest(
                            listed.iter().map(|d| (d.user.as_str(), d.device.as_str())),
                        ));
                    }
                    let share = self.prepare(crypto, &listed, now_ms)?;
                    self.stage = Stage::Claim {
                        share: Box::new(share),
                        next: 0,
                        claimed: Vec::new(),
                    };
                }
                Stage::Claim {
                    share,
                    next,
                    mut claimed,
                } => {
                    match take_reply(&mut reply, next > 0)? {
                        Some(Response::Claimed { keys }) => claimed.extend(keys),
                        Some(other) => return Err(unexpected("claim_keys", &other)),
                        None => {}
                    }
                    if next < share.need.len() {
                        let end = (next + MAX_KEY_CLAIM_DEVICES).min(share.need.len());
                        let devices = share.need[next..end].to_vec();
                        self.stage = Stage::Claim {
                            share,
                            next: end,
                            claimed,
                        };
                        return Ok(PlanStep::Ask(Request::ClaimKeys { devices }));
                    }
                    let requests = self.share(crypto, &share, &claimed);
                    self.stage = Stage::Shared;
                    // A new session (this device's own copy of its key) and
                    // the Olm sessions that carry the key are on disk
                    // before anything encrypted with them leaves.
                    if share.prepared.rotated || !requests.is_empty() {
                        return Ok(PlanStep::SaveThenSend(requests));
                    }
                }
                Stage::Shared => {
                    take_reply(&mut reply, false)?;
                    let body = self
                        .body
                        .take()
                        .ok_or_else(|| ClientError::Internal("a message sent twice".into()))?;
                    let (envelope, _) = crypto
                        .e2e
                        .encrypt_room(self.room_id, now_ms, body)
                        .map_err(encryption)?;
                    return envelope
                        .encode()
                        .map(PlanStep::Payload)
                        .map_err(|e| ClientError::Internal(e.to_string()));
                }
                Stage::Done => {
                    return Err(ClientError::Internal("a message sent twice".into()));
                }
            }
        }
    }

    /// The room key could not be sent: the room session is dropped, so the
    /// next message shares a new one.
    pub fn failed(&self, crypto: &mut Crypto) {
        crypto.e2e.discard_room_session(self.room_id);
    }

    /// Takes in the directory's devices and prepares the room session:
    /// who gets the key, who waits for the user's acceptance, and which
    /// devices need a one-time key claimed first.
    fn prepare(
        &mut self,
        crypto: &mut Crypto,
        listed: &[DeviceKeys],
        now_ms: i64,
    ) -> Result<Share, ClientError> {
        let mut recipients = BTreeMap::new();
        let mut waiting = Vec::new();
        let (me, this) = (crypto.e2e.user().clone(), crypto.e2e.device().clone());
        for user in &self.members {
            let theirs: Vec<DeviceKeys> =
                listed.iter().filter(|d| d.user == *user).cloned().collect();
            let observed = crypto.trust.observe(user, &theirs);
            for warning in observed.warnings {
                if let crate::trust::TrustWarning::NewDevice {
                    user,
                    device,
                    waits: true,
                    ..
                } = &warning
                {
                    crypto
                        .machine
                        .told_waiting
                        .insert((user.clone(), device.clone()));
                }
                self.notices.push(warning.to_string());
            }
            for keys in observed.usable {
                if keys.user == me && keys.device == this {
                    continue;
                }
                recipients.insert(recipient_of(&keys), keys);
            }
            waiting.extend(
                observed
                    .waiting
                    .into_iter()
                    .filter(|k| !(k.user == me && k.device == this)),
            );
        }
        let set: BTreeSet<Recipient> = recipients.keys().cloned().collect();
        let left_out: Vec<Recipient> = waiting.iter().map(recipient_of).collect();
        let prepared = crypto
            .e2e
            .prepare_room(
                self.room_id,
                &set,
                &left_out.iter().cloned().collect(),
                now_ms,
            )
            .map_err(encryption)?;
        crypto
            .e2e
            .mark_room_key_withheld(self.room_id, &prepared, &left_out);
        for keys in &waiting {
            if crypto
                .machine
                .told_waiting
                .insert((keys.user.clone(), keys.device.clone()))
            {
                self.notices.push(if keys.user == me {
                    format!(
                        "your device {} gets no key for this message until you accept it \
                         (@devices trust {})",
                        keys.device, keys.device
                    )
                } else {
                    format!(
                        "{}'s device {} gets no key for this message until you accept it: check \
                         its fingerprint with {} (@devices {}), then @devices {} trust {}",
                        keys.user, keys.device, keys.user, keys.user, keys.user, keys.device
                    )
                });
            }
        }
        let need = prepared
            .to_share
            .iter()
            .filter_map(|r| recipients.get(r))
            .filter(|keys| !crypto.e2e.has_olm_session(keys))
            .map(|keys| DeviceRef {
                user: keys.user.clone(),
                device: keys.device.clone(),
            })
            .collect();
        Ok(Share {
            recipients,
            prepared,
            need,
        })
    }

    /// Starts Olm sessions from `claimed` keys, encrypts the room key for
    /// every device that still needs it and records it as shared: the
    /// requests that carry it.
    fn share(
        &mut self,
        crypto: &mut Crypto,
        share: &Share,
        claimed: &[ClaimedKey],
    ) -> Vec<Request> {
        for claim in claimed {
            let Some(keys) = share
                .recipients
                .values()
                .find(|k| k.user == claim.user && k.device == claim.device)
            else {
                continue;
            };
            if let Err(e) = crypto.e2e.start_olm_session(keys, &claim.key) {
                self.notices.push(format!(
                    "{}'s device {} cannot read this message: {e}",
                    claim.user, claim.device
                ));
            }
        }
        let room_id = self.room_id;
        let prepared = &share.prepared;
        let mut messages = Vec::new();
        let mut shared = Vec::new();
        for recipient in &prepared.to_share {
            let Some(keys) = share.recipients.get(recipient) else {
                continue;
            };
            if !crypto.e2e.has_olm_session(keys) {
                self.notices.push(format!(
                    "{}'s device {} cannot read this message: the server had no key of it left \
                     to start an encrypted session with",
                    keys.user, keys.device
                ));
                continue;
            }
            match crypto
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
                Err(e) => self.notices.push(format!(
                    "{}'s device {} cannot read this message: {e}",
                    keys.user, keys.device
                )),
            }
        }
        crypto.e2e.mark_room_key_shared(room_id, prepared, &shared);
        let unreachable: BTreeSet<&Recipient> = prepared
            .to_share
            .iter()
            .filter(|r| !shared.contains(r))
            .collect();
        self.readers = share
            .recipients
            .keys()
            .filter(|r| !unreachable.contains(r))
            .cloned()
            .collect();
        messages
            .chunks(MAX_TO_DEVICE_MESSAGES)
            .map(|chunk| Request::SendToDevice {
                messages: chunk.to_vec(),
            })
            .collect()
    }
}

impl Crypto {
    /// Keeps the directory's answer for `users` (each user's devices, none
    /// for a user it listed nothing for) until the server says they changed.
    pub fn remember_devices(&mut self, users: &[Username], devices: &[DeviceKeys]) {
        for user in users {
            let theirs = devices.iter().filter(|d| d.user == *user).cloned();
            self.device_lists.insert(user.clone(), theirs.collect());
        }
    }

    /// `user`'s devices changed: the next message to a room with them asks
    /// the directory again.
    pub fn forget_devices(&mut self, user: &Username) {
        self.device_lists.remove(user);
    }

    /// The keys of this device's own sessions that left `keys`' device out
    /// (now that the user accepted it), each from where it was left out,
    /// as to-device contents; they count as shared with it from now on.
    pub fn withheld_keys_for(&mut self, keys: &DeviceKeys) -> Vec<ToDeviceContent> {
        self.e2e.withheld_keys_for(keys)
    }

    /// Encrypts `contents` for `keys`' device, starting an Olm session
    /// from `claimed` first if there is none: the request to send once the
    /// state is saved.
    pub fn seal_for(
        &mut self,
        keys: &DeviceKeys,
        claimed: Option<&SignedOneTimeKey>,
        contents: Vec<ToDeviceContent>,
    ) -> Result<Request, ClientError> {
        if let Some(key) = claimed {
            self.e2e.start_olm_session(keys, key).map_err(encryption)?;
        }
        let mut messages = Vec::new();
        for content in contents {
            let envelope = self
                .e2e
                .encrypt_to_device(keys, content)
                .map_err(encryption)?;
            messages.push(ToDeviceMessage {
                user: keys.user.clone(),
                device: keys.device.clone(),
                payload: envelope
                    .encode()
                    .map_err(|e| ClientError::Internal(e.to_string()))?,
            });
        }
        Ok(Request::SendToDevice { messages })
    }
}

/// The reply the plan waits for, if it asked for one.
fn take_reply(
    reply: &mut Option<Response>,
    expected: bool,
) -> Result<Option<Response>, ClientError> {
    match (reply.take(), expected) {
        (Some(reply), true) => Ok(Some(reply)),
        (None, false) => Ok(None),
        (Some(_), false) => Err(ClientError::Internal("a reply nothing asked for".into())),
        (None, true) => Err(ClientError::Internal("a reply is missing".into())),
    }
}

fn unexpected(request: &str, response: &Response) -> ClientError {
    ClientError::Protocol(format!("unexpected reply to {request}: {response:?}"))
}

fn encryption(e: E2eError) -> ClientError {
    ClientError::Encryption(e.to_string())
}

pub(super) fn recipient_of(keys: &DeviceKeys) -> Recipient {
    (keys.user.clone(), keys.device.clone(), keys.curve25519)
}
