//! The actor's end-to-end side: it hands to-device and room messages to
//! the device's end-to-end state (`crate::crypto`, sans-IO) and carries out
//! the [`Effect`]s that come back: requests (saving first where they carry
//! Olm ciphertext), notices, and held messages read back from the store
//! when their key comes. Plus key top-ups and this device's removal.

use std::collections::VecDeque;

use sotto_crypto::e2e::ReadMode;
use sotto_proto::{EventBody, EventKind, RoomRef};
use tokio::io::AsyncWrite;

use super::{Actor, Pending};
use crate::crypto::{Effect, lock};
use crate::event::ClientEvent;

impl<W: AsyncWrite + Unpin + Send> Actor<W> {
    /// Takes this device's to-device messages in (room keys) and decrypts
    /// private and group messages in place (`mode`: live, or again from
    /// history). `Err` is what to show instead: a message that cannot be
    /// read is shown as such, never dropped.
    pub(super) async fn decrypt(
        &mut self,
        mut body: EventBody,
        mode: ReadMode,
    ) -> Result<EventBody, ClientEvent> {
        let ts = body.ts;
        let EventKind::Room(event) = &mut body.kind else {
            match &body.kind {
                // The next message to a room with them asks the directory.
                EventKind::DevicesChanged { user } => lock(&self.crypto).forget_devices(user),
                EventKind::KeyCount {
                    one_time_keys,
                    fallback_used,
                } => {
                    let effects = lock(&self.crypto).on_key_count(*one_time_keys, *fallback_used);
                    self.run_effects(effects).await;
                }
                EventKind::DeviceRemoved { .. } => self.removed().await,
                _ => {}
            }
            return Ok(body);
        };
        if let RoomRef::Inbox { .. } = event.room {
            let effects = lock(&self.crypto).receive_to_device(event, ts, crate::client::now_ms());
            self.run_effects(effects).await;
            return Ok(body);
        }
        let (result, effects) = lock(&self.crypto).receive_room_event(event, ts, mode);
        self.run_effects(effects).await;
        result.map(|()| body)
    }

    /// Carries out what the end-to-end state asked for, in order (and what
    /// that asks for in turn).
    pub(super) async fn run_effects(&mut self, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Show(event) => self.emit(event).await,
                Effect::Request {
                    request,
                    tag,
                    save_first,
                } => {
                    // Nothing leaves that the store could forget; what
                    // cannot be saved now is asked for again on the next
                    // connection.
                    if save_first && crate::crypto::save(&self.crypto).await.is_err() {
                        continue;
                    }
                    if let Some(id) = self.write_request(request).await {
                        self.pending.insert(id, Pending::Crypto(tag));
                    }
                }
                Effect::Release { key, forwarded } => {
                    let (shown, more) = self.release(key, forwarded).await;
                    for (ts, event) in shown {
                        let body = EventBody {
                            ts,
                            kind: EventKind::Room(event),
                        };
                        if let Some(event) = self.show(body, true).await {
                            self.emit(event).await;
                        }
                    }
                    queue.extend(more);
                }
            }
        }
    }

    /// Reads the messages held for a room key that came and lets the
    /// end-to-end state decrypt them.
    async fn release(
        &mut self,
        key: crate::crypto::HeldKey,
        forwarded: bool,
    ) -> (Vec<(i64, sotto_proto::RoomEvent)>, Vec<Effect>) {
        // The held messages may still be on their way to the store.
        let (room_id, session_id) = (key.0, key.1.clone());
        let rows = match crate::crypto::save(&self.crypto).await {
            Ok(()) => {
                crate::crypto::read(&self.crypto, move |store| {
                    store.held_for(room_id, &session_id)
                })
                .await
            }
            Err(e) => Err(e),
        };
        match rows {
            Ok(rows) => lock(&self.crypto).release_held(&key, rows, forwarded),
            Err(e) => (
                Vec::new(),
                vec![Effect::Show(ClientEvent::Security {
                    message: format!("cannot read messages that waited for a key: {e}"),
                })],
            ),
        }
    }

    /// This device was removed from the account: its id is forgotten, so
    /// the next login from this data dir is a new device (with new keys;
    /// the local history stays, sealed as before). The server closes the
    /// connection next.
    async fn removed(&mut self) {
        self.shutdown_message = Some("this device was removed from your account".to_owned());
        self.removed = true;
        let _ = crate::crypto::save(&self.crypto).await;
        let file = self.paths.device_file.clone();
        let _ = tokio::task::spawn_blocking(move || match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %file.display(), "cannot forget the device id: {e}"),
        })
        .await;
    }
}
