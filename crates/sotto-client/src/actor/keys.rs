//! The actor's end-to-end side: taking in to-device messages (room keys,
//! key requests), decrypting room messages, holding those whose key is
//! missing and asking for it, starting Olm sessions (and replacing broken
//! ones), topping up one-time keys, and a device's removal.

use sotto_proto::{
    ClientFrame, DeviceId, EventBody, EventKind, Request, Response, RoomContent, RoomRef, Username,
};
use tokio::io::AsyncWrite;

use super::{Actor, Pending, Waiting, write_frame};
use crate::crypto::{HeldEvent, KeyAsk, lock};
use crate::event::ClientEvent;

/// Missing room keys remembered until their sender's device is known.
const MAX_UNASKED: usize = 256;

impl<W: AsyncWrite + Unpin + Send> Actor<W> {
    /// Takes this device's to-device messages in (room keys) and decrypts
    /// private and group messages in place. `Err` is what to show instead:
    /// a message that cannot be read is shown as such, never dropped.
    pub(super) async fn decrypt(&mut self, mut body: EventBody) -> Result<EventBody, ClientEvent> {
        let ts = body.ts;
        let EventKind::Room(event) = &mut body.kind else {
            // (Device lists are asked for on every send, so a
            // `DevicesChanged` notice needs nothing here.)
            match &body.kind {
                EventKind::KeyCount {
                    one_time_keys,
                    fallback_used,
                } => self.top_up_keys(*one_time_keys, *fallback_used).await,
                EventKind::DeviceRemoved { .. } => self.removed().await,
                _ => {}
            }
            return Ok(body);
        };
        if let RoomRef::Inbox { .. } = event.room {
            let RoomContent::Envelope { payload, device } = &event.content else {
                return Ok(body);
            };
            let result = lock(&self.crypto).receive_to_device(
                &event.sender,
                device,
                payload,
                crate::client::now_ms(),
            );
            return match result {
                Ok((warnings, got)) => {
                    for warning in warnings {
                        self.emit(ClientEvent::Security {
                            message: warning.to_string(),
                        })
                        .await;
                    }
                    let (sender, sender_device) = (got.sender.clone(), got.sender_device.clone());
                    self.after_to_device(got).await;
                    // The sender's device is known now: ask it for the keys
                    // still missing.
                    for ask in self.take_unasked(&sender, &sender_device) {
                        if !lock(&self.crypto)
                            .e2e
                            .has_room_key(ask.room_id, &ask.session_id)
                        {
                            self.request_key(ask).await;
                        }
                    }
                    Ok(body)
                }
                Err(refused) => {
                    let mut reason = format!("refused a key message: {}", refused.reason);
                    if let Some(recover) = refused.recover {
                        reason.push_str(&format!(
                            "; starting a new encrypted session with {}'s device {}",
                            event.sender, device
                        ));
                        self.recover_session(recover).await;
                    }
                    Err(ClientEvent::Undecodable {
                        from: event.sender.clone(),
                        reason,
                        ts,
                    })
                }
            };
        }
        let original = event.clone();
        let result = lock(&self.crypto).decrypt_event(event);
        match result {
            Ok(()) => Ok(body),
            Err(undecryptable) => {
                let from = event.sender.clone();
                if let Some(ask) = undecryptable.ask {
                    self.ask_for_key(ask, original, ts).await;
                }
                Err(ClientEvent::Undecodable {
                    from,
                    reason: undecryptable.reason,
                    ts,
                })
            }
        }
    }

    /// This device was removed from the account: its id is forgotten, so
    /// the next login from this data dir is a new device (with new keys;
    /// the local history stays, sealed as before). The server closes the
    /// connection next.
    async fn removed(&mut self) {
        self.shutdown_message = Some("this device was removed from your account".to_owned());
        let _ = crate::crypto::save(&self.crypto).await;
        let file = self.paths.device_file.clone();
        let _ = tokio::task::spawn_blocking(move || match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %file.display(), "cannot forget the device id: {e}"),
        })
        .await;
    }

    /// Holds a message whose room key is missing (in the local store, so
    /// it is shown when the key comes, even after a restart) and asks the
    /// sender's device for the key (once per session and connection).
    async fn ask_for_key(&mut self, ask: KeyAsk, event: sotto_proto::RoomEvent, ts: i64) {
        if !lock(&self.crypto).hold(&ask.session_id, &event, ts) {
            tracing::warn!(
                room = ask.room_id,
                "too many messages wait for one room key"
            );
        }
        self.request_key(ask).await;
    }

    /// Asks the sender's device for a missing room key (once per session
    /// and connection), starting an Olm session with it first if needed.
    async fn request_key(&mut self, ask: KeyAsk) {
        if self.asked.contains(&ask.session_id) {
            return;
        }
        let request = lock(&self.crypto).key_request(&ask);
        match request {
            Some(Ok(message)) => {
                self.asked.insert(ask.session_id.clone());
                self.send_quietly(vec![message]).await;
            }
            Some(Err(keys)) => {
                self.asked.insert(ask.session_id.clone());
                self.claim_session(keys, vec![ask], false).await;
            }
            // The sender's device is not known here yet (its keys may be on
            // their way): asked once it is.
            None => {
                if !self.unasked.contains(&ask) && self.unasked.len() < MAX_UNASKED {
                    self.unasked.push(ask);
                }
            }
        }
    }

    /// The missing keys that waited for `user`'s device `device` to be
    /// known.
    fn take_unasked(&mut self, user: &Username, device: &DeviceId) -> Vec<KeyAsk> {
        let (theirs, others) = std::mem::take(&mut self.unasked)
            .into_iter()
            .partition(|ask| ask.sender == *user && ask.sender_device == *device);
        self.unasked = others;
        theirs
    }

    /// Replaces a broken Olm session with a device: looks it up first if
    /// it is not pinned, then claims a key for a new session.
    async fn recover_session(&mut self, recover: Box<crate::crypto::Recover>) {
        match *recover {
            crate::crypto::Recover::Pinned(keys) => {
                tracing::info!(user = %keys.user, device = %keys.device, "replacing a broken Olm session");
                let asks = self.take_unasked(&keys.user, &keys.device);
                self.claim_session(keys, asks, true).await;
            }
            crate::crypto::Recover::Lookup {
                user,
                device,
                curve25519,
            } => {
                let query = Request::QueryKeys {
                    users: vec![user.clone()],
                };
                if let Some(id) = self.write_request(query).await {
                    self.pending
                        .insert(id, Pending::Lookup(Box::new((user, device, curve25519))));
                }
            }
        }
    }

    /// Claims a one-time key of `keys`' device to start an Olm session;
    /// `asks` (key requests) and `dummy` (announcing a replaced session)
    /// are sent on it once it exists. A claim already in flight for the
    /// device takes them along instead.
    async fn claim_session(
        &mut self,
        keys: sotto_proto::e2e::DeviceKeys,
        asks: Vec<KeyAsk>,
        dummy: bool,
    ) {
        for ask in &asks {
            self.asked.insert(ask.session_id.clone());
        }
        let device = (keys.user.clone(), keys.device.clone());
        if let Some(waiting) = self.claiming.get_mut(&device) {
            waiting.asks.extend(asks);
            waiting.dummy |= dummy;
            return;
        }
        let claim = Request::ClaimKeys {
            devices: vec![sotto_proto::DeviceRef {
                user: keys.user.clone(),
                device: keys.device.clone(),
            }],
        };
        if let Some(id) = self.write_request(claim).await {
            self.pending
                .insert(id, Pending::Claim(Box::new(device.clone())));
            self.claiming.insert(device, Waiting { keys, asks, dummy });
        }
    }

    /// Answers key requests, and shows held messages a new key unlocks.
    async fn after_to_device(&mut self, got: sotto_crypto::e2e::ToDevice) {
        match got.content {
            sotto_proto::e2e::ToDeviceContent::KeyRequest {
                room_id,
                session_id,
            } => {
                let answer =
                    lock(&self.crypto).answer_key_request(&got.sender_keys, room_id, &session_id);
                if let Some(message) = answer {
                    self.send_quietly(vec![message]).await;
                }
            }
            sotto_proto::e2e::ToDeviceContent::RoomKey {
                room_id,
                session_id,
                ..
            }
            | sotto_proto::e2e::ToDeviceContent::ForwardedRoomKey {
                room_id,
                session_id,
                ..
            } => {
                self.show_held(room_id, session_id).await;
            }
            sotto_proto::e2e::ToDeviceContent::Dummy => {}
        }
    }

    /// Shows the messages that waited for the room key of `session_id`,
    /// now that it came (those it still cannot decrypt wait on).
    async fn show_held(&mut self, room_id: u64, session_id: String) {
        if !lock(&self.crypto).has_held(room_id, &session_id) {
            return;
        }
        // The held messages may still be on their way to the store.
        let rows = match crate::crypto::save(&self.crypto).await {
            Ok(()) => {
                let session = session_id.clone();
                crate::crypto::read(&self.crypto, move |store| store.held_for(room_id, &session))
                    .await
            }
            Err(e) => Err(e),
        };
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                self.emit(ClientEvent::Security {
                    message: format!("cannot read messages that waited for a key: {e}"),
                })
                .await;
                return;
            }
        };
        for row in rows {
            let Ok(HeldEvent { ts, mut event }) = serde_json::from_slice(&row.event) else {
                lock(&self.crypto).unhold(row.room_id, row.seq, &session_id);
                continue;
            };
            let result = lock(&self.crypto).decrypt_event(&mut event);
            let shown = match result {
                Ok(()) => {
                    let body = EventBody {
                        ts,
                        kind: EventKind::Room(event),
                    };
                    self.show(body, true).await
                }
                // The key that came starts after this message: it waits
                // for an earlier one.
                Err(undecryptable) if undecryptable.ask.is_some() => continue,
                Err(undecryptable) => Some(ClientEvent::Undecodable {
                    from: event.sender.clone(),
                    reason: undecryptable.reason,
                    ts,
                }),
            };
            lock(&self.crypto).unhold(row.room_id, row.seq, &session_id);
            if let Some(event) = shown {
                self.emit(event).await;
            }
        }
    }

    /// Sends to-device messages; the reply needs no handling.
    async fn send_quietly(&mut self, messages: Vec<sotto_proto::ToDeviceMessage>) {
        if crate::crypto::save(&self.crypto).await.is_err() {
            return;
        }
        if let Some(id) = self.write_request(Request::SendToDevice { messages }).await {
            self.pending.insert(id, Pending::Quiet);
        }
    }

    /// Writes a request of the actor's own; its id, if it was written.
    async fn write_request(&mut self, request: Request) -> Option<u64> {
        let id = self.next_request;
        self.next_request += 1;
        let frame = ClientFrame::Request { id, request };
        write_frame(&mut self.writer, &mut self.wbuf, &frame)
            .await
            .is_ok()
            .then_some(id)
    }

    /// Replaces claimed one-time keys (and a used fallback key).
    async fn top_up_keys(&mut self, count: u32, fallback_used: bool) {
        let request = lock(&self.crypto).key_upload(Some(count), fallback_used);
        let Some(request) = request else {
            return;
        };
        if crate::crypto::save(&self.crypto).await.is_err() {
            return;
        }
        // Marked published when the reply arrives.
        let id = self.next_request;
        self.next_request += 1;
        let frame = ClientFrame::Request { id, request };
        if write_frame(&mut self.writer, &mut self.wbuf, &frame)
            .await
            .is_ok()
        {
            self.pending.insert(id, Pending::Keys);
        }
    }

    /// The reply to a request the actor sent for the end-to-end layer.
    pub(super) async fn handle_key_reply(
        &mut self,
        pending: Pending,
        result: Result<Response, sotto_proto::ErrorReply>,
    ) {
        match pending {
            Pending::Keys => match result {
                Ok(Response::KeyCount { .. }) => {
                    lock(&self.crypto).e2e.mark_keys_published();
                    let _ = crate::crypto::save(&self.crypto).await;
                }
                other => tracing::warn!("key top-up failed: {other:?}"),
            },
            Pending::Claim(device) => {
                let Some(waiting) = self.claiming.remove(&*device) else {
                    return;
                };
                let claimed = match result {
                    Ok(Response::Claimed { keys }) => keys.into_iter().next(),
                    _ => None,
                };
                let Some(claimed) = claimed else {
                    tracing::warn!(user = %device.0, device = %device.1, "no key to start a session with");
                    return;
                };
                let messages = lock(&self.crypto).start_session_and_send(
                    &waiting.keys,
                    &claimed.key,
                    waiting.dummy,
                    &waiting.asks,
                );
                match messages {
                    Ok(messages) if !messages.is_empty() => self.send_quietly(messages).await,
                    Ok(_) => {}
                    Err(e) => {
                        self.emit(ClientEvent::Security {
                            message: format!(
                                "cannot start an encrypted session with {}'s device {}: {e}",
                                device.0, device.1
                            ),
                        })
                        .await;
                    }
                }
            }
            Pending::Lookup(lookup) => {
                let (user, device, curve25519) = *lookup;
                let Ok(Response::Devices { devices }) = result else {
                    return;
                };
                let (keys, warnings) =
                    lock(&self.crypto).recovery_keys(&user, &device, &curve25519, &devices);
                for warning in warnings {
                    self.emit(ClientEvent::Security {
                        message: warning.to_string(),
                    })
                    .await;
                }
                if let Some(keys) = keys {
                    let asks = self.take_unasked(&user, &device);
                    self.claim_session(keys, asks, true).await;
                }
            }
            _ => {}
        }
    }
}
