//! What the end-to-end state asks of its driver ([`Effect`]s), and what it
//! keeps waiting for replies and for other devices: one-time key claims to
//! start Olm sessions, directory lookups of devices not pinned yet, and key
//! requests for held messages.
//!
//! Nothing here is stored: a new connection (after a restart, say) starts
//! with nothing in flight, and [`Crypto::connected`] asks again for every
//! room key that messages still wait for. Beyond that, a key is asked for
//! again whenever something new could bring it: a new Olm session with its
//! sender's device (the earlier request may have been unreadable there), or
//! the sender's device being looked up. Nothing is retried on a timer.

use std::collections::{HashMap, HashSet};

use sotto_proto::e2e::{DeviceKeys, ToDeviceContent, WithheldReason};
use sotto_proto::{DeviceId, DeviceRef, ErrorReply, Request, Response, ToDeviceMessage, Username};

use super::Crypto;
use super::held::HeldKey;
use crate::ClientEvent;

/// Something the driver must do, in order.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Send `request`; its reply goes to [`Crypto::on_reply`] with `tag`.
    /// With `save_first`, everything changed so far must be committed
    /// before it leaves: it carries Olm ciphertext (a sent message whose
    /// session state was lost would break the session), or publishes keys
    /// the account must not forget.
    Request {
        request: Request,
        tag: Tag,
        save_first: bool,
    },
    /// Tell the user.
    Show(ClientEvent),
    /// A room key came that messages of its device wait for: read them
    /// from the store (after saving, so the newest are there) and hand
    /// them to [`Crypto::release_held`]. `forwarded`: the owner's answer to
    /// a key request.
    Release { key: HeldKey, forwarded: bool },
}

/// What a reply is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tag {
    /// Nothing to do with it (to-device messages sent).
    Quiet,
    /// A key upload: mark the keys published.
    Keys,
    /// A one-time key claimed to start a session with this device.
    Claim(Box<(Username, DeviceId)>),
    /// The directory's devices of this user, to pin the one a key request
    /// must go to.
    Lookup(Username),
}

/// A missing room key and whom to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyAsk {
    pub room_id: u64,
    pub session_id: String,
    pub sender: Username,
    pub sender_device: DeviceId,
}

impl KeyAsk {
    /// The held messages it is asked for.
    pub fn key(&self) -> HeldKey {
        (
            self.room_id,
            self.session_id.clone(),
            sender_of(&self.sender, &self.sender_device),
        )
    }
}

/// A device as the held index names it.
pub(super) fn sender_of(user: &Username, device: &DeviceId) -> super::held::SenderDevice {
    (user.as_str().to_owned(), device.as_str().to_owned())
}

/// What waits for a new Olm session with a device.
#[derive(Debug)]
struct Claim {
    keys: DeviceKeys,
    contents: Vec<ToDeviceContent>,
    /// Announce the new session (it replaces a broken one) even if nothing
    /// else goes on it.
    dummy: bool,
}

/// Missing keys waiting for their sender's device to be known, at most.
const MAX_UNASKED: usize = 256;

#[derive(Debug, Default)]
pub(super) struct Waiting {
    /// Devices a one-time key is being claimed for (one claim per device
    /// at a time), and what to send on the session.
    claiming: HashMap<(Username, DeviceId), Claim>,
    /// Key requests whose sender's device is not pinned yet.
    unasked: Vec<KeyAsk>,
    /// Users being looked up in the directory.
    looking_up: HashSet<Username>,
    /// Room keys asked for on this connection, and of which device.
    asked: HashSet<HeldKey>,
    /// Room keys their owner said it will not send, and why.
    pub withheld: HashMap<HeldKey, WithheldReason>,
    /// Devices the user was told get no keys until accepted (once a run).
    pub told_waiting: HashSet<(Username, DeviceId)>,
    /// Devices the user was told asked for keys they do not get (once a
    /// run).
    pub told_asked: HashSet<(Username, DeviceId)>,
    /// Devices not accepted whose messages the user was told of (once a
    /// run).
    pub told_unaccepted: HashSet<(Username, DeviceId)>,
}

impl Crypto {
    /// A new connection: nothing sent on an earlier one is in flight any
    /// more. Asks again for every room key that messages wait for.
    pub fn connected(&mut self) -> Vec<Effect> {
        self.machine = Waiting {
            told_waiting: std::mem::take(&mut self.machine.told_waiting),
            told_asked: std::mem::take(&mut self.machine.told_asked),
            told_unaccepted: std::mem::take(&mut self.machine.told_unaccepted),
            ..Waiting::default()
        };
        let mut effects = Vec::new();
        for (room_id, session_id, (user, device)) in self.held.sessions() {
            let (Ok(sender), Ok(sender_device)) =
                (Username::parse(&user), DeviceId::parse(&device))
            else {
                continue;
            };
            effects.extend(self.ask_key(KeyAsk {
                room_id,
                session_id,
                sender,
                sender_device,
            }));
        }
        effects
    }

    /// Asks the sender's device for a missing room key (once per
    /// connection), starting an Olm session with it first if needed, or
    /// looking the device up if it is not pinned yet.
    pub(super) fn ask_key(&mut self, ask: KeyAsk) -> Vec<Effect> {
        let key = ask.key();
        if self.machine.asked.contains(&key) || self.machine.withheld.contains_key(&key) {
            return Vec::new();
        }
        let Some(keys) = self.trust.pinned(&ask.sender, &ask.sender_device).cloned() else {
            if !self.machine.unasked.contains(&ask) && self.machine.unasked.len() < MAX_UNASKED {
                self.machine.unasked.push(ask.clone());
            }
            if !self.machine.looking_up.insert(ask.sender.clone()) {
                return Vec::new();
            }
            return vec![Effect::Request {
                request: Request::QueryKeys {
                    users: vec![ask.sender.clone()],
                },
                tag: Tag::Lookup(ask.sender),
                save_first: false,
            }];
        };
        self.machine.asked.insert(key);
        let content = ToDeviceContent::KeyRequest {
            room_id: ask.room_id,
            session_id: ask.session_id,
        };
        self.send_to(&keys, vec![content], false)
    }

    /// After a message from `user`'s device `device` was read on a new
    /// Olm session: ask it again for the keys messages from it wait for
    /// (an earlier request may have been unreadable there).
    pub(super) fn ask_again_from(&mut self, user: &Username, device: &DeviceId) -> Vec<Effect> {
        let mut effects = Vec::new();
        for key in self.held.sessions() {
            let (room_id, session_id, (u, d)) = key.clone();
            if u != user.as_str() || d != device.as_str() {
                continue;
            }
            self.machine.asked.remove(&key);
            effects.extend(self.ask_key(KeyAsk {
                room_id,
                session_id,
                sender: user.clone(),
                sender_device: device.clone(),
            }));
        }
        effects
    }

    /// Asks for the keys that waited for `user`'s device `device` to be
    /// pinned (it just was).
    pub(super) fn ask_unasked_from(&mut self, user: &Username, device: &DeviceId) -> Vec<Effect> {
        let (theirs, others): (Vec<KeyAsk>, Vec<KeyAsk>) =
            std::mem::take(&mut self.machine.unasked)
                .into_iter()
                .partition(|ask| ask.sender == *user && ask.sender_device == *device);
        self.machine.unasked = others;
        theirs
            .into_iter()
            .flat_map(|ask| self.ask_key(ask))
            .collect()
    }

    /// Sends `contents` to one device over Olm: now, if there is a session
    /// with it, or once a claimed key started one (`dummy`: announce a new
    /// session that replaces a broken one even with nothing else to say).
    pub(super) fn send_to(
        &mut self,
        keys: &DeviceKeys,
        contents: Vec<ToDeviceContent>,
        dummy: bool,
    ) -> Vec<Effect> {
        let device = (keys.user.clone(), keys.device.clone());
        if let Some(claim) = self.machine.claiming.get_mut(&device) {
            claim.contents.extend(contents);
            claim.dummy |= dummy;
            return Vec::new();
        }
        if !dummy && self.e2e.has_olm_session(keys) {
            return self.encrypt_to(keys, contents);
        }
        self.machine.claiming.insert(
            device.clone(),
            Claim {
                keys: keys.clone(),
                contents,
                dummy,
            },
        );
        vec![Effect::Request {
            request: Request::ClaimKeys {
                devices: vec![DeviceRef {
                    user: device.0.clone(),
                    device: device.1.clone(),
                }],
            },
            tag: Tag::Claim(Box::new(device)),
            save_first: false,
        }]
    }

    /// Encrypts `contents` for one device on the newest Olm session with
    /// it: one request, to send once the session's state is saved.
    fn encrypt_to(&mut self, keys: &DeviceKeys, contents: Vec<ToDeviceContent>) -> Vec<Effect> {
        let mut messages = Vec::new();
        let mut effects = Vec::new();
        for content in contents {
            match self
                .e2e
                .encrypt_to_device(keys, content)
                .map_err(|e| e.to_string())
                .and_then(|env| env.encode().map_err(|e| e.to_string()))
            {
                Ok(payload) => messages.push(ToDeviceMessage {
                    user: keys.user.clone(),
                    device: keys.device.clone(),
                    payload,
                }),
                Err(e) => effects.push(notice(format!(
                    "cannot encrypt to {}'s device {}: {e}",
                    keys.user, keys.device
                ))),
            }
        }
        if !messages.is_empty() {
            effects.push(Effect::Request {
                request: Request::SendToDevice { messages },
                tag: Tag::Quiet,
                save_first: true,
            });
        }
        effects
    }

    /// The reply to a request an [`Effect`] asked for.
    pub fn on_reply(&mut self, tag: Tag, result: Result<Response, ErrorReply>) -> Vec<Effect> {
        match tag {
            Tag::Quiet => {
                if let Err(e) = result {
                    tracing::debug!("to-device message refused: {e}");
                }
                Vec::new()
            }
            Tag::Keys => {
                match result {
                    Ok(Response::KeyCount { .. }) => self.e2e.mark_keys_published(),
                    other => tracing::warn!("key upload failed: {other:?}"),
                }
                Vec::new()
            }
            Tag::Claim(device) => {
                let Some(claim) = self.machine.claiming.remove(&*device) else {
                    return Vec::new();
                };
                let claimed = match result {
                    Ok(Response::Claimed { keys }) => keys.into_iter().next(),
                    _ => None,
                };
                let Some(claimed) = claimed else {
                    return vec![notice(format!(
                        "cannot start an encrypted session with {}'s device {}: the server \
                         has no key of it left",
                        device.0, device.1
                    ))];
                };
                if let Err(e) = self.e2e.start_olm_session(&claim.keys, &claimed.key) {
                    return vec![notice(format!(
                        "cannot start an encrypted session with {}'s device {}: {e}",
                        device.0, device.1
                    ))];
                }
                let mut contents = claim.contents;
                if contents.is_empty() && claim.dummy {
                    contents.push(ToDeviceContent::Dummy);
                }
                if contents.is_empty() {
                    return Vec::new();
                }
                self.encrypt_to(&claim.keys, contents)
            }
            Tag::Lookup(user) => {
                self.machine.looking_up.remove(&user);
                let Ok(Response::Devices { devices }) = result else {
                    return Vec::new();
                };
                let observed = self.trust.observe(&user, &devices);
                let mut effects: Vec<Effect> = observed
                    .warnings
                    .iter()
                    .map(|w| notice(w.to_string()))
                    .collect();
                let (theirs, others) = std::mem::take(&mut self.machine.unasked)
                    .into_iter()
                    .partition(|ask| ask.sender == user);
                self.machine.unasked = others;
                for ask in theirs {
                    if self.trust.pinned(&ask.sender, &ask.sender_device).is_some() {
                        effects.extend(self.ask_key(ask));
                    }
                }
                effects
            }
        }
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
        Some(Request::UploadKeys {
            device_keys: None,
            one_time_keys: upload.one_time_keys,
            fallback_key: upload.fallback_key.map(Box::new),
        })
    }

    /// The server says how many one-time keys it still holds for this
    /// device: top them up (and replace a handed-out fallback key).
    pub fn on_key_count(&mut self, count: u32, fallback_used: bool) -> Vec<Effect> {
        self.key_upload(Some(count), fallback_used)
            .map(|request| Effect::Request {
                request,
                tag: Tag::Keys,
                save_first: true,
            })
            .into_iter()
            .collect()
    }
}

/// A security notice for the user.
pub(super) fn notice(message: String) -> Effect {
    Effect::Show(ClientEvent::Security { message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_used_fallback_key_is_replaced_once_until_the_replacement_is_published() {
        let fallback_of = |request: Option<Request>| match request {
            Some(Request::UploadKeys { fallback_key, .. }) => fallback_key.map(|k| *k),
            _ => None,
        };
        let mut crypto = Crypto::from_loaded(
            crate::local_store::Loaded::default(),
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
