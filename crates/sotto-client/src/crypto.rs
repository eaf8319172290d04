//! This device's end-to-end state, shared by the [`crate::Client`] handle
//! (which encrypts what it sends) and the actor (which decrypts what
//! arrives), kept in the local store (`local_store.rs`) with the decrypted
//! history, the positions reached and the messages waiting for a key.
//!
//! [`Crypto`] is sans-IO: what it decides is returned as [`Effect`]s
//! (requests to send, some only after a save; events to show; held
//! messages to read back) that the actor carries out, and the send path is
//! a [`SendPlan`] the handle steps through. The model test
//! (`crypto/model_tests/`) drives the very same code against an
//! in-memory server and store, with restarts and kills.
//!
//! Module map: `held.rs` messages waiting for a room key (bounded per
//! sending device), `receive.rs` to-device messages and room messages,
//! `machine.rs` the effects and what waits for replies (claims, lookups,
//! key requests), `send.rs` preparing, sharing and encrypting a message.
//!
//! The state lock is a std mutex held only for CPU work, never across an
//! await: the handle's send path makes several requests whose replies the
//! actor delivers, and the actor needs the state to decrypt meanwhile. What
//! changed is gathered in memory and written by [`save`] in one transaction
//! on a blocking thread, under the store's own lock.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sotto_crypto::e2e::{E2e, E2eRecords, LegacyE2ePickle};
use sotto_proto::{DeviceId, Username};
use zeroize::Zeroizing;

use crate::ClientError;
use crate::history::Entry;
use crate::local_store::kind::{ACCOUNT, INBOUND, OLM, REPLAY, TRUST};
use crate::local_store::{Changes, HistoryRow, Loaded, LocalStore, RecordKey, StoreError};
use crate::trust::Trust;

mod held;
mod machine;
#[cfg(test)]
mod model_tests;
mod receive;
mod send;

pub(crate) use held::HeldKey;
pub(crate) use machine::{Effect, Tag};
pub(crate) use send::{PlanStep, SendPlan};

/// A store written as one sealed file held this.
#[derive(Deserialize)]
struct LegacyStored {
    e2e: LegacyE2ePickle,
    trust: Trust,
}

/// The end-to-end state of this device.
#[derive(Debug)]
pub(crate) struct Crypto {
    pub e2e: E2e,
    pub trust: Trust,
    /// Writes waiting for the next [`save`] (the end-to-end records are
    /// taken from `e2e` then).
    pending: Changes,
    /// The highest event handled per room, as saved with what it changed.
    positions: HashMap<u64, u64>,
    /// Messages waiting for a room key.
    held: held::Held,
    /// What waits for replies and for other devices (claims, lookups, key
    /// requests); not stored.
    machine: machine::Waiting,
    /// Private room ids by peer (they never change), for this session.
    pub direct_rooms: BTreeMap<Username, u64>,
    /// Users' device lists as the directory last gave them, so a
    /// steady-state send needs no lookup: a user's list is dropped when
    /// the server says it changed (`DevicesChanged`, sent to everyone who
    /// shares a room with them) and all of them on reconnecting (notices
    /// sent while offline are not kept).
    pub device_lists: HashMap<Username, Vec<sotto_proto::e2e::DeviceKeys>>,
    /// Received files waiting for the user's answer.
    pub offers: crate::offers::Offers,
}

/// The state shared by the handle and the actor.
pub(crate) type SharedCrypto = Arc<Shared>;

#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<Crypto>,
    /// The database; used on blocking threads only. `None` once closed.
    store: Mutex<Option<LocalStore>>,
    /// Saves happen one at a time, in order, so a later one never lands
    /// before an earlier one.
    saving: tokio::sync::Mutex<()>,
}

pub(crate) fn shared(crypto: Crypto, store: LocalStore) -> SharedCrypto {
    Arc::new(Shared {
        state: Mutex::new(crypto),
        store: Mutex::new(Some(store)),
        saving: tokio::sync::Mutex::new(()),
    })
}

/// Locks the state; a panic while it was held leaves it usable.
pub(crate) fn lock(crypto: &SharedCrypto) -> MutexGuard<'_, Crypto> {
    crypto.state.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock_store(crypto: &Shared) -> MutexGuard<'_, Option<LocalStore>> {
    crypto.store.lock().unwrap_or_else(|e| e.into_inner())
}

fn store_error(e: StoreError) -> ClientError {
    ClientError::LocalStore(e.to_string())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::LocalStore(format!("the local store's {what} is unreadable: {e}"))
}

pub(crate) fn json<T: Serialize>(value: &T) -> Zeroizing<Vec<u8>> {
    // The stored types are plain data (no maps with non-string keys), which
    // serde_json always serializes.
    Zeroizing::new(serde_json::to_vec(value).unwrap_or_default())
}

/// A room session's record id: room, sender's key, session id (a session
/// id names no sender by itself: see `sotto_crypto::e2e::megolm`).
fn session_record_id(room_id: u64, sender_key: &[u8; 32], session_id: &str) -> Vec<u8> {
    let mut id = room_id.to_be_bytes().to_vec();
    id.extend_from_slice(sender_key);
    id.extend_from_slice(session_id.as_bytes());
    id
}

impl Crypto {
    /// Unlocks the store at `path` with the account password and reads the
    /// state; a new store, or one of another device (its device file was
    /// replaced), starts a fresh device identity.
    pub fn open(
        path: &Path,
        password: &str,
        user: &Username,
        device: &DeviceId,
    ) -> Result<(Self, LocalStore), ClientError> {
        let (store, loaded) = LocalStore::open(path, password).map_err(|e| {
            ClientError::LocalStore(format!(
                "{e} ({}; it holds this device's keys: with the right password it opens again)",
                path.display()
            ))
        })?;
        Ok((Self::from_loaded(loaded, user, device)?, store))
    }

    /// Opens the local store of a remembered device with its device key.
    pub fn open_remembered(
        path: &Path,
        key: &sotto_crypto::at_rest::DeviceKey,
        user: &Username,
        device: &DeviceId,
    ) -> Result<(Self, LocalStore), ClientError> {
        let (store, loaded) = LocalStore::open_remembered(path, key).map_err(|e| match e {
            crate::local_store::StoreError::PasswordNeeded => ClientError::PasswordNeeded(
                "this device's saved sign-in no longer opens its local store".into(),
            ),
            e => ClientError::LocalStore(format!("{e} ({})", path.display())),
        })?;
        Ok((Self::from_loaded(loaded, user, device)?, store))
    }

    /// The state from what a store held (an empty [`Loaded`] for a new
    /// device).
    pub fn from_loaded(
        loaded: Loaded,
        user: &Username,
        device: &DeviceId,
    ) -> Result<Self, ClientError> {
        let mut records = E2eRecords::default();
        let mut trust = None;
        // Room session records under ids without their sender's key (stores
        // of layout version 1): rewritten under the new ids.
        let mut renamed = Vec::new();
        for (key, plain) in &loaded.records {
            match key.kind {
                ACCOUNT => {
                    records.account =
                        Some(serde_json::from_slice(plain).map_err(|e| corrupt("account", e))?);
                }
                OLM => records
                    .olm
                    .push(serde_json::from_slice(plain).map_err(|e| corrupt("Olm sessions", e))?),
                INBOUND => {
                    let room: sotto_crypto::e2e::InboundPickle =
                        serde_json::from_slice(plain).map_err(|e| corrupt("room sessions", e))?;
                    let id = session_record_id(room.room_id, &room.sender_key(), &room.session_id);
                    if key.id != id {
                        renamed.push(key.clone());
                    }
                    records.inbound.push(room);
                }
                REPLAY => {
                    let window: sotto_crypto::e2e::ReplayPickle =
                        serde_json::from_slice(plain).map_err(|e| corrupt("replay windows", e))?;
                    let id =
                        session_record_id(window.room_id, &window.sender_key, &window.session_id);
                    if key.id != id {
                        renamed.push(key.clone());
                    }
                    records.replay.push(window);
                }
                TRUST => {
                    trust = Some(serde_json::from_slice(plain).map_err(|e| corrupt("pins", e))?);
                }
                _ => {}
            }
        }
        let mut e2e = if records.account.is_some() {
            Some(E2e::from_records(records).map_err(|e| corrupt("state", e))?)
        } else if let Some(legacy) = &loaded.legacy {
            let legacy: LegacyStored =
                serde_json::from_slice(legacy).map_err(|e| corrupt("old store file", e))?;
            let mut pins = legacy.trust;
            pins.mark_changed();
            trust = Some(pins);
            Some(E2e::from_legacy(legacy.e2e))
        } else {
            None
        };
        let mut pending = Changes::default();
        if e2e
            .as_ref()
            .is_some_and(|e2e| e2e.user() != user || e2e.device() != device)
        {
            // Another device's state: its sessions are no use to this one.
            pending.clear_records = true;
            e2e = None;
            trust = None;
        }
        let mut e2e = e2e.unwrap_or_else(|| E2e::new(user.clone(), device.clone()));
        if !renamed.is_empty() && !pending.clear_records {
            e2e.mark_rooms_changed();
            pending.forget = renamed;
        }
        let mut trust: Trust = trust.unwrap_or_default();
        trust.set_me(&e2e.device_keys());
        Ok(Self {
            e2e,
            trust,
            pending,
            positions: loaded.positions,
            held: held::Held::from_loaded(loaded.held),
            machine: machine::Waiting::default(),
            direct_rooms: BTreeMap::new(),
            device_lists: HashMap::new(),
            offers: crate::offers::Offers::from_loaded(loaded.offers, loaded.next_offer),
        })
    }

    /// What to write on the next save: everything changed since the last.
    pub fn take_changes(&mut self) -> Changes {
        let mut changes = std::mem::take(&mut self.pending);
        let E2eRecords {
            account,
            olm,
            inbound,
            replay,
        } = self.e2e.take_changed();
        let mut put =
            |kind, id: Vec<u8>, value| changes.records.push((RecordKey { kind, id }, value));
        if let Some(account) = account {
            put(ACCOUNT, Vec::new(), json(&account));
        }
        for peer in olm {
            put(OLM, peer.peer.to_vec(), json(&peer));
        }
        for room in inbound {
            put(
                INBOUND,
                session_record_id(room.room_id, &room.sender_key(), &room.session_id),
                json(&room),
            );
        }
        for window in replay {
            put(
                REPLAY,
                session_record_id(window.room_id, &window.sender_key, &window.session_id),
                json(&window),
            );
        }
        if self.trust.take_changed() {
            put(TRUST, Vec::new(), json(&self.trust));
        }
        changes.held.append(&mut self.held.take_added());
        changes.unheld.append(&mut self.held.take_removed());
        changes
    }

    /// Puts changes that could not be written back, ahead of anything
    /// newer, for the next save.
    fn restore_changes(&mut self, changes: Changes) {
        let newer = std::mem::take(&mut self.pending);
        self.pending = changes.then(newer);
    }

    /// The highest event handled in `room_id`, if any was.
    pub fn position(&self, room_id: u64) -> Option<u64> {
        self.positions.get(&room_id).copied()
    }

    /// Counts everything in `room_id` up to `seq` as handled (saved with
    /// the next save), `seq` 0 included: "seen, and it was empty".
    pub fn set_position(&mut self, room_id: u64, seq: u64) {
        let at = self.positions.entry(room_id).or_default();
        *at = (*at).max(seq);
        let at = *at;
        self.pending.positions.push((room_id, at));
    }

    /// Whether the event at (`room_id`, `seq`) is new to this device; if
    /// so it counts as handled from now on (saved with what it changes).
    /// Each room's events arrive in order, so one position per room is
    /// enough to recognize a redelivery, also after a restart.
    pub fn first_time(&mut self, room_id: u64, seq: u64) -> bool {
        let at = self.positions.entry(room_id).or_default();
        if seq <= *at {
            return false;
        }
        *at = seq;
        self.pending.positions.push((room_id, seq));
        true
    }

    /// Keeps a received file until the user answers (see
    /// [`crate::offers`]): what it is waiting as, or why it is not kept.
    pub fn offer_file(
        &mut self,
        file: crate::offers::Received<'_>,
        data: Zeroizing<Vec<u8>>,
    ) -> Result<crate::local_store::Offer, String> {
        let row = self.offers.add(file, data)?;
        let offer = row.offer.clone();
        self.pending.offers.push(row);
        Ok(offer)
    }

    /// Forgets an answered file (from the store at the next save).
    pub fn answer_file(&mut self, id: u64) -> Option<crate::local_store::Offer> {
        let offer = self.offers.remove(id)?;
        self.pending.unoffered.push(id);
        Some(offer)
    }

    /// Keeps a decrypted message in the local history.
    pub fn record_history(&mut self, room_id: u64, seq: u64, ts: i64, entry: &Entry) {
        self.pending.history.push(HistoryRow {
            room_id,
            seq,
            ts,
            entry: json(entry),
        });
    }
}

/// Writes what changed since the last save, in one transaction, off the
/// async threads. If the write fails the changes stay queued, ahead of
/// anything newer, for the next save.
pub(crate) async fn save(crypto: &SharedCrypto) -> Result<(), ClientError> {
    let _turn = crypto.saving.lock().await;
    let changes = lock(crypto).take_changes();
    if changes.is_empty() {
        return Ok(());
    }
    let shared = crypto.clone();
    let written = tokio::task::spawn_blocking(move || {
        let result = match lock_store(&shared).as_mut() {
            Some(store) => store.write(&changes).map_err(store_error),
            None => Err(store_error(StoreError::Closed)),
        };
        result.map_err(|e| Box::new((e, changes)))
    })
    .await
    .map_err(|e| ClientError::Internal(format!("saving the local store: {e}")))?;
    if let Err(failed) = written {
        let (error, changes) = *failed;
        lock(crypto).restore_changes(changes);
        return Err(error);
    }
    Ok(())
}

/// Reads from the store on a blocking thread.
pub(crate) async fn read<T: Send + 'static>(
    crypto: &SharedCrypto,
    f: impl FnOnce(&LocalStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ClientError> {
    let shared = crypto.clone();
    tokio::task::spawn_blocking(move || match lock_store(&shared).as_ref() {
        Some(store) => f(store).map_err(store_error),
        None => Err(store_error(StoreError::Closed)),
    })
    .await
    .map_err(|e| ClientError::Internal(format!("reading the local store: {e}")))?
}

/// Changes the store itself (not the end-to-end state) on a blocking
/// thread, between saves.
pub(crate) async fn with_store<T: Send + 'static>(
    crypto: &SharedCrypto,
    f: impl FnOnce(&mut LocalStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ClientError> {
    let _turn = crypto.saving.lock().await;
    let shared = crypto.clone();
    tokio::task::spawn_blocking(move || match lock_store(&shared).as_mut() {
        Some(store) => f(store).map_err(store_error),
        None => Err(store_error(StoreError::Closed)),
    })
    .await
    .map_err(|e| ClientError::Internal(format!("changing the local store: {e}")))?
}

/// Saves what is left and closes the store (after [`crate::Client::quit`]:
/// another connection may open it next).
pub(crate) async fn close(crypto: &SharedCrypto) -> Result<(), ClientError> {
    let saved = save(crypto).await;
    let _turn = crypto.saving.lock().await;
    let shared = crypto.clone();
    let _ = tokio::task::spawn_blocking(move || drop(lock_store(&shared).take())).await;
    saved
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn room_sessions_stored_without_their_senders_key_move_to_the_new_ids() {
        let (alice, bob) = (
            Username::parse("alice").unwrap(),
            Username::parse("bob").unwrap(),
        );
        let bob_device = DeviceId::parse("bobdevice1").unwrap();
        let mut sender = E2e::new(alice, DeviceId::parse("alicedevice1").unwrap());
        let mut receiver = E2e::new(bob.clone(), bob_device.clone());
        let upload = receiver.keys_to_upload(0);
        receiver.mark_keys_published();
        let keys = receiver.device_keys();
        sender
            .start_olm_session(&keys, &upload.one_time_keys[0])
            .unwrap();
        let recipient = (keys.user.clone(), keys.device.clone(), keys.curve25519);
        let prepared = sender
            .prepare_room(3, &BTreeSet::from([recipient]), &BTreeSet::new(), 0)
            .unwrap();
        let olm = sender.room_key_for(3, &prepared, &keys).unwrap();
        receiver
            .decrypt_to_device(&sender.device_keys(), &olm)
            .unwrap();
        // What a layout 1 store held: the session under (room, session id).
        let records = receiver.records();
        let mut old_id = 3u64.to_be_bytes().to_vec();
        old_id.extend_from_slice(prepared.session_id.as_bytes());
        let old = RecordKey {
            kind: INBOUND,
            id: old_id,
        };
        let loaded = Loaded {
            records: vec![
                (
                    RecordKey {
                        kind: ACCOUNT,
                        id: Vec::new(),
                    },
                    json(records.account.as_ref().unwrap()),
                ),
                (old.clone(), json(&records.inbound[0])),
            ],
            ..Loaded::default()
        };
        let mut crypto = Crypto::from_loaded(loaded, &bob, &bob_device).unwrap();
        let changes = crypto.take_changes();
        assert_eq!(changes.forget, vec![old]);
        let new_id = session_record_id(3, &sender.identity().curve25519, &prepared.session_id);
        assert!(
            changes
                .records
                .iter()
                .any(|(key, _)| key.kind == INBOUND && key.id == new_id)
        );
        assert!(crypto.e2e.has_room_key(3, &prepared.session_id));
    }
}
