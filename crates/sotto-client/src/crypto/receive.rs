//! Taking in what other devices sent: to-device messages from this
//! device's inbox (room keys, key requests and their answers) and private
//! and group messages (decrypted, or held until their room key comes).
//!
//! A to-device message is read only as the device the server delivered it
//! from: its keys are pinned from the directory's copy that comes with it
//! (never from the message itself), and the Olm plaintext must name exactly
//! that device. A key request is answered only for this device's own
//! sessions, only to a device the session was shared with (from the index
//! it was first sent) or to one of this account's devices the user
//! accepted; anyone else is told it was withheld, and why.

use sotto_crypto::e2e::{E2eError, NotForwarded, ReadMode, ToDevice};
use sotto_proto::e2e::{DeviceKeys, MegolmEnvelope, OlmEnvelope, ToDeviceContent, WithheldReason};
use sotto_proto::{RoomContent, RoomEvent, RoomRef};

use super::Crypto;
use super::held::HeldKey;
use super::held::NotHeld;
use super::machine::{Effect, KeyAsk, notice, sender_of};
use crate::local_store::HeldRow;
use crate::{ClientEvent, MAX_CLOCK_SKEW_MS};

/// Why a room message could not be read.
#[derive(Debug)]
struct Undecryptable {
    reason: String,
    /// The room key it needs, when that is what is missing.
    missing: Option<String>,
}

impl Crypto {
    /// A to-device message from this device's inbox (its position already
    /// counted as handled). What to do, including what to show.
    pub fn receive_to_device(&mut self, event: &RoomEvent, ts: i64, now_ms: i64) -> Vec<Effect> {
        let refuse = |reason: String| {
            Effect::Show(ClientEvent::Undecodable {
                from: event.sender.clone(),
                reason: format!("refused a key message: {reason}"),
                ts,
            })
        };
        let RoomContent::ToDevice {
            device,
            keys,
            payload,
        } = &event.content
        else {
            return vec![refuse(
                "it came without the directory's keys of its sender".into(),
            )];
        };
        if keys.user != event.sender || keys.device != *device {
            return vec![refuse(format!(
                "the server sent keys of {}/{} with a message from {}/{device}",
                keys.user, keys.device, event.sender
            ))];
        }
        // The directory's keys, pinned on first sight; a pin that differs
        // is a security event.
        let mut effects = match self.trust.observe_device(keys) {
            Ok(warnings) => warnings
                .into_iter()
                .map(|w| notice(w.to_string()))
                .collect::<Vec<_>>(),
            Err(warning) => {
                return vec![
                    notice(warning.to_string()),
                    refuse(format!(
                        "{}'s device {device} uses other keys than pinned",
                        event.sender
                    )),
                ];
            }
        };
        let envelope = match OlmEnvelope::decode(payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                effects.push(refuse(format!("malformed: {e}")));
                return effects;
            }
        };
        let keys: &DeviceKeys = keys;
        match self.e2e.decrypt_to_device(keys, &envelope) {
            Ok(got) => {
                effects.extend(self.after_to_device(keys, got));
                effects
            }
            // No session this device has can read it (it lost its state,
            // or the sender's is ahead): start a new one, unless one is on
            // its way already.
            Err(E2eError::Decrypt(reason)) => {
                let mut text = reason;
                if self.e2e.should_recover_session(&keys.curve25519, now_ms) {
                    text.push_str(&format!(
                        "; starting a new encrypted session with {}'s device {}",
                        keys.user, keys.device
                    ));
                    effects.push(refuse(text));
                    effects.extend(self.send_to(keys, Vec::new(), true));
                    effects.extend(self.ask_again_from(&keys.user, &keys.device));
                } else {
                    effects.push(refuse(text));
                }
                effects
            }
            Err(e) => {
                effects.push(refuse(e.to_string()));
                effects
            }
        }
    }

    /// Acts on a to-device message read from `keys`' device.
    fn after_to_device(&mut self, keys: &DeviceKeys, got: ToDevice) -> Vec<Effect> {
        let mut effects = self.ask_unasked_from(&keys.user, &keys.device);
        if got.new_session {
            // The sender made a new session: what it was asked before may
            // never have reached it readably.
            effects.extend(self.ask_again_from(&keys.user, &keys.device));
        }
        let forwarded = matches!(got.content, ToDeviceContent::ForwardedRoomKey { .. });
        match got.content {
            ToDeviceContent::RoomKey {
                room_id,
                session_id,
                ..
            }
            | ToDeviceContent::ForwardedRoomKey {
                room_id,
                session_id,
                ..
            } => {
                // Only messages of the device that sent the key.
                let key = (room_id, session_id, sender_of(&keys.user, &keys.device));
                if self.held.has(&key) {
                    effects.push(Effect::Release { key, forwarded });
                }
            }
            ToDeviceContent::KeyRequest {
                room_id,
                session_id,
            } => effects.extend(self.answer_key_request(keys, room_id, session_id)),
            ToDeviceContent::Withheld {
                room_id,
                session_id,
                reason,
            } => effects.extend(self.withheld(keys, room_id, session_id, reason)),
            ToDeviceContent::Dummy => {}
        }
        effects
    }

    /// Answers a key request from `from` for one of this device's own
    /// sessions: the key, or why not.
    fn answer_key_request(
        &mut self,
        from: &DeviceKeys,
        room_id: u64,
        session_id: String,
    ) -> Vec<Effect> {
        let own_accepted = self.trust.is_own_accepted(from);
        let refusal = match self
            .e2e
            .answer_key_request(room_id, &session_id, from, own_accepted)
        {
            Ok(content) => return self.send_to(from, vec![content], false),
            Err(NotForwarded::NotOurs) => return Vec::new(),
            Err(NotForwarded::Withheld) => WithheldReason::NotAccepted,
            Err(NotForwarded::NotShared) if from.user == *self.e2e.user() => {
                WithheldReason::NotAccepted
            }
            Err(NotForwarded::NotShared) => WithheldReason::NotShared,
        };
        let mut effects = Vec::new();
        let first_time = self
            .machine
            .told_asked
            .insert((from.user.clone(), from.device.clone()));
        if first_time && refusal == WithheldReason::NotShared {
            effects.push(notice(format!(
                "{}'s device {} asked for the key to a message this device sent that it was \
                 never sent (it was not in the room, or did not exist yet): it gets none",
                from.user, from.device
            )));
        }
        if first_time && refusal == WithheldReason::NotAccepted {
            let (list, how) = if from.user == *self.e2e.user() {
                (
                    "@devices".to_owned(),
                    format!("@devices trust {}", from.device),
                )
            } else {
                (
                    format!("@devices {}", from.user),
                    format!("@devices {} trust {}", from.user, from.device),
                )
            };
            effects.push(notice(format!(
                "{}'s device {} asked for the key to messages this device sent, and gets none \
                 until you accept it: check its fingerprint ({list}), then {how}",
                from.user, from.device
            )));
        }
        effects.extend(self.send_to(
            from,
            vec![ToDeviceContent::Withheld {
                room_id,
                session_id,
                reason: refusal,
            }],
            false,
        ));
        effects
    }

    /// The owner of a room key says it will not send it: tell the user
    /// once, and stop asking. A key never sent to this device will not
    /// come: its messages are not kept waiting (one that waits for the
    /// user's acceptance comes once accepted).
    fn withheld(
        &mut self,
        from: &DeviceKeys,
        room_id: u64,
        session_id: String,
        reason: WithheldReason,
    ) -> Vec<Effect> {
        // Only the device the held messages came from speaks for them.
        let key = (room_id, session_id, sender_of(&from.user, &from.device));
        if !self.held.has(&key) {
            return Vec::new();
        }
        if self.machine.withheld.insert(key.clone(), reason).is_some() {
            return Vec::new();
        }
        let count = self.held.count(&key);
        let when = match reason {
            WithheldReason::NotShared => {
                self.held.unhold_session(&key);
                ""
            }
            WithheldReason::NotAccepted => " yet",
        };
        vec![notice(format!(
            "{count} message(s) from {} cannot be read on this device{when}: {}",
            from.user,
            self.withheld_text(&from.user, reason)
        ))]
    }

    fn withheld_text(&self, sender: &sotto_proto::Username, reason: WithheldReason) -> String {
        let me = self.e2e.user();
        match reason {
            WithheldReason::NotAccepted if sender == me => format!(
                "your other device has not accepted this one; on it, type @devices trust {}",
                self.e2e.device()
            ),
            WithheldReason::NotAccepted => format!(
                "{sender} has not accepted this device yet; it is readable once they do \
                 (@devices {me} trust {})",
                self.e2e.device()
            ),
            WithheldReason::NotShared => format!(
                "{sender}'s device never sent this device its key (this device was not in \
                 the room, or did not exist yet, when it was sent)"
            ),
        }
    }

    /// A private or group message: decrypted in place (its envelope's
    /// payload becomes the encoded message body), or `Err` with what to
    /// show instead; a message whose room key is missing is held until it
    /// comes, and the key is asked for. `mode`: read live, or again from
    /// the server's history. And what else to do.
    pub fn receive_room_event(
        &mut self,
        event: &mut RoomEvent,
        ts: i64,
        mode: ReadMode,
    ) -> (Result<(), ClientEvent>, Vec<Effect>) {
        let from = event.sender.clone();
        let undecodable = |reason: String| ClientEvent::Undecodable {
            from: from.clone(),
            reason,
            ts,
        };
        let original = event.clone();
        match self.decrypt_event(event, mode) {
            Ok(sent_ts) => {
                let effects = match mode {
                    ReadMode::Live => self.read_notices(event, sent_ts, ts),
                    ReadMode::History => Vec::new(),
                };
                (Ok(()), effects)
            }
            Err(Undecryptable {
                reason,
                missing: Some(session_id),
            }) => {
                let sender_device = match &original.content {
                    RoomContent::Envelope { device, .. } => device.clone(),
                    _ => return (Err(undecodable(reason)), Vec::new()),
                };
                let key = (
                    original.room_id,
                    session_id.clone(),
                    sender_of(&original.sender, &sender_device),
                );
                let mut reason = match self.machine.withheld.get(&key) {
                    Some(why) => format!(
                        "cannot decrypt this message: {}",
                        self.withheld_text(&original.sender, *why)
                    ),
                    None => reason,
                };
                let sender = (
                    original.sender.as_str().to_owned(),
                    sender_device.as_str().to_owned(),
                );
                match self.held.hold(&original, ts, &session_id, sender) {
                    Ok(()) => {}
                    Err(NotHeld::DeviceFull) => reason.push_str(&format!(
                        "; too much from {}'s device already waits for keys, so this message \
                         is not kept",
                        original.sender
                    )),
                    Err(NotHeld::StoreFull) => reason.push_str(
                        "; too much already waits for keys on this device, so this message is \
                         not kept",
                    ),
                }
                let effects = self.ask_key(KeyAsk {
                    room_id: original.room_id,
                    session_id,
                    sender: original.sender.clone(),
                    sender_device,
                });
                (Err(undecodable(reason)), effects)
            }
            Err(Undecryptable { reason, .. }) => (Err(undecodable(reason)), Vec::new()),
        }
    }

    /// Messages that waited for a room key, read back from the store now
    /// that it came: those it decrypts, to show (with their server time),
    /// and what else to do. Those it still cannot decrypt (the key that
    /// came starts later) wait on, unless the key was the owner's answer to
    /// a request (`forwarded`): the owner forwards from the first message
    /// this device was meant to read, so those before it never will be,
    /// and the user is told so once.
    pub fn release_held(
        &mut self,
        key: &HeldKey,
        rows: Vec<HeldRow>,
        forwarded: bool,
    ) -> (Vec<(i64, RoomEvent)>, Vec<Effect>) {
        let mut shown = Vec::new();
        let mut effects = Vec::new();
        let mut never = 0;
        let mut from = None;
        let of_sender = |row: &HeldRow| {
            (row.sender_user.as_str(), row.sender_device.as_str())
                == (key.2.0.as_str(), key.2.1.as_str())
        };
        for row in rows.into_iter().filter(of_sender) {
            let Some((ts, mut event)) = super::held::decode(&row) else {
                self.held.unhold(row.room_id, row.seq);
                continue;
            };
            match self.decrypt_event(&mut event, ReadMode::Live) {
                Ok(sent_ts) => {
                    effects.extend(self.read_notices(&event, sent_ts, ts));
                    shown.push((ts, event));
                }
                Err(Undecryptable {
                    missing: Some(_), ..
                }) if !forwarded => continue,
                Err(Undecryptable {
                    missing: Some(_), ..
                }) => {
                    never += 1;
                    from = Some(event.sender.clone());
                }
                Err(Undecryptable { reason, .. }) => {
                    effects.push(Effect::Show(ClientEvent::Undecodable {
                        from: event.sender.clone(),
                        reason,
                        ts,
                    }));
                }
            }
            self.held.unhold(row.room_id, row.seq);
        }
        if let Some(sender) = from {
            effects.push(notice(format!(
                "{never} message(s) from {sender} cannot be read on this device: {}",
                self.withheld_text(&sender, WithheldReason::NotShared)
            )));
        }
        (shown, effects)
    }

    /// What to tell the user before showing a message read live: that the
    /// sender's clock is far from the server's, or that it comes from a
    /// device the user has not accepted (of a verified contact, or of this
    /// account: it may not be theirs).
    fn read_notices(&mut self, event: &RoomEvent, sent_ts: Option<i64>, ts: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        let sender = &event.sender;
        let skew = sent_ts.map_or(0, |sent| sent.saturating_sub(ts));
        if skew.saturating_abs() > MAX_CLOCK_SKEW_MS {
            effects.push(notice(format!(
                "the next message from {sender} says it was written {} minutes {} the server \
                 stored it: either clock may be wrong, or it was not sent when the server says",
                skew.saturating_abs() / 60_000,
                if skew < 0 { "before" } else { "after" },
            )));
        }
        if let RoomContent::Envelope { device, .. } = &event.content
            && self.trust.waits(sender, device)
            && self
                .machine
                .told_unaccepted
                .insert((sender.clone(), device.clone()))
        {
            effects.push(notice(if sender == self.e2e.user() {
                format!(
                    "the next message comes from your device {device}, which you have not \
                     accepted on this device: if it is not yours, @devices remove {device}"
                )
            } else {
                format!(
                    "messages from {sender}'s device {device}, which you have not accepted, are \
                     shown, but it may not be {sender}'s: check its fingerprint with {sender} \
                     (@devices {sender}), then @devices {sender} trust {device}"
                )
            }));
        }
        effects
    }

    /// Decrypts a private or group room event in place; the sender's time
    /// inside, for an envelope. Other events are left as they are.
    fn decrypt_event(
        &mut self,
        event: &mut RoomEvent,
        mode: ReadMode,
    ) -> Result<Option<i64>, Undecryptable> {
        let refused = |reason: String| Undecryptable {
            reason,
            missing: None,
        };
        if !matches!(event.room, RoomRef::Direct { .. } | RoomRef::Group { .. }) {
            return Ok(None);
        }
        let RoomContent::Envelope { payload, device } = &mut event.content else {
            return Ok(None);
        };
        let envelope = MegolmEnvelope::decode(payload)
            .map_err(|_| refused("the message is not end-to-end encrypted; refused".into()))?;
        let read = self
            .e2e
            .decrypt_room(event.room_id, &event.sender, device, &envelope, mode)
            .map_err(|e| match e {
                E2eError::MissingRoomKey { session_id } => Undecryptable {
                    reason: format!(
                        "cannot decrypt this message yet: this device has no room key for it \
                         (it was sent before this device could receive keys, or the key is \
                         still on its way); asked {}'s device for it, and it is shown here \
                         when the key comes",
                        event.sender
                    ),
                    missing: Some(session_id),
                },
                other => refused(other.to_string()),
            })?;
        // The sender, the sending device and the room were checked against
        // the delivery.
        let plain = read.plaintext;
        *payload = plain
            .body
            .encode()
            .map_err(|e| refused(format!("cannot re-encode the decrypted message: {e}")))?;
        Ok(Some(plain.ts))
    }
}
