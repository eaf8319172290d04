//! This device's end-to-end state, shared by the [`crate::Client`] handle
//! (which encrypts what it sends) and the actor (which decrypts what
//! arrives), kept in the local store (`local_store.rs`) with the decrypted
//! history, the positions reached and the messages waiting for a key.
//!
//! The state lock is a std mutex held only for CPU work, never across an
//! await: the handle's send path makes several requests whose replies the
//! actor delivers, and the actor needs the state to decrypt meanwhile. What
//! changed is gathered in memory and written by [`save`] in one transaction
//! on a blocking thread, under the store's own lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sotto_crypto::e2e::{E2e, E2eRecords, LegacyE2ePickle};
use sotto_proto::{DeviceId, RoomEvent, Username};
use zeroize::Zeroizing;

use crate::ClientError;
use crate::history::Entry;
use crate::local_store::kind::{ACCOUNT, INBOUND, OLM, TRUST};
use crate::local_store::{Changes, HeldRow, HistoryRow, LocalStore, RecordKey, StoreError};
use crate::trust::Trust;

mod ops;

pub(crate) use ops::{KeyAsk, Recover};

/// Messages kept per missing room key until it arrives.
pub(crate) const MAX_HELD_PER_SESSION: usize = 256;

/// A store written as one sealed file held this.
#[derive(Deserialize)]
struct LegacyStored {
    e2e: LegacyE2ePickle,
    trust: Trust,
}

/// A message waiting for its room key, as stored.
#[derive(Serialize, Deserialize)]
pub(crate) struct HeldEvent {
    pub ts: i64,
    pub event: RoomEvent,
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
    /// The positions of messages held per (room, session) until its key
    /// comes, as stored.
    held: HashMap<(u64, String), BTreeSet<u64>>,
    /// Private room ids by peer (they never change), for this session.
    pub direct_rooms: BTreeMap<Username, u64>,
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

fn json<T: Serialize>(value: &T) -> Zeroizing<Vec<u8>> {
    // The stored types are plain data (no maps with non-string keys), which
    // serde_json always serializes.
    Zeroizing::new(serde_json::to_vec(value).unwrap_or_default())
}

fn inbound_id(room_id: u64, session_id: &str) -> Vec<u8> {
    let mut id = room_id.to_be_bytes().to_vec();
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
        let mut records = E2eRecords::default();
        let mut trust = None;
        for (key, plain) in &loaded.records {
            match key.kind {
                ACCOUNT => {
                    records.account =
                        Some(serde_json::from_slice(plain).map_err(|e| corrupt("account", e))?);
                }
                OLM => records
                    .olm
                    .push(serde_json::from_slice(plain).map_err(|e| corrupt("Olm sessions", e))?),
                INBOUND => records
                    .inbound
                    .push(serde_json::from_slice(plain).map_err(|e| corrupt("room sessions", e))?),
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
        }
        Ok((
            Self {
                e2e: e2e.unwrap_or_else(|| E2e::new(user.clone(), device.clone())),
                trust: trust.unwrap_or_default(),
                pending,
                positions: loaded.positions,
                held: loaded.held,
                direct_rooms: BTreeMap::new(),
            },
            store,
        ))
    }

    /// What to write on the next save: everything changed since the last.
    fn take_changes(&mut self) -> Changes {
        let mut changes = std::mem::take(&mut self.pending);
        let E2eRecords {
            account,
            olm,
            inbound,
        } = self.e2e.take_changed();
        if let Some(account) = account {
            changes.records.push((
                RecordKey {
                    kind: ACCOUNT,
                    id: Vec::new(),
                },
                json(&account),
            ));
        }
        for peer in olm {
            changes.records.push((
                RecordKey {
                    kind: OLM,
                    id: peer.peer.to_vec(),
                },
                json(&peer),
            ));
        }
        for room in inbound {
            changes.records.push((
                RecordKey {
                    kind: INBOUND,
                    id: inbound_id(room.room_id, &room.session_id),
                },
                json(&room),
            ));
        }
        if self.trust.take_changed() {
            changes.records.push((
                RecordKey {
                    kind: TRUST,
                    id: Vec::new(),
                },
                json(&self.trust),
            ));
        }
        changes
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

    /// Keeps a decrypted message in the local history.
    pub fn record_history(&mut self, room_id: u64, seq: u64, ts: i64, entry: &Entry) {
        self.pending.history.push(HistoryRow {
            room_id,
            seq,
            ts,
            entry: json(entry),
        });
    }

    /// Keeps a message whose room key is missing until the key comes;
    /// `false` when too many already wait for that key.
    pub fn hold(&mut self, session_id: &str, event: &RoomEvent, ts: i64) -> bool {
        let held = self
            .held
            .entry((event.room_id, session_id.to_owned()))
            .or_default();
        if held.contains(&event.seq) {
            return true;
        }
        if held.len() >= MAX_HELD_PER_SESSION {
            return false;
        }
        held.insert(event.seq);
        self.pending.held.push(HeldRow {
            room_id: event.room_id,
            seq: event.seq,
            session_id: session_id.to_owned(),
            event: json(&HeldEvent {
                ts,
                event: event.clone(),
            }),
        });
        true
    }

    /// Whether messages wait for this room key.
    pub fn has_held(&self, room_id: u64, session_id: &str) -> bool {
        self.held.contains_key(&(room_id, session_id.to_owned()))
    }

    /// A held message was handled (shown, or refused for good).
    pub fn unhold(&mut self, room_id: u64, seq: u64, session_id: &str) {
        let key = (room_id, session_id.to_owned());
        if let Some(held) = self.held.get_mut(&key) {
            held.remove(&seq);
            if held.is_empty() {
                self.held.remove(&key);
            }
        }
        self.pending.unheld.push((room_id, seq));
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
        let mut state = lock(crypto);
        let newer = std::mem::take(&mut state.pending);
        state.pending = changes.then(newer);
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

/// Saves what is left and closes the store (after [`crate::Client::quit`]:
/// another connection may open it next).
pub(crate) async fn close(crypto: &SharedCrypto) -> Result<(), ClientError> {
    let saved = save(crypto).await;
    let _turn = crypto.saving.lock().await;
    let shared = crypto.clone();
    let _ = tokio::task::spawn_blocking(move || drop(lock_store(&shared).take())).await;
    saved
}
