//! What the local store keeps about the account itself: the device's
//! session token (so that the next start logs in without the password
//! going anywhere), whether the account logs in with OPAQUE here, and a
//! password change in progress.
//!
//! A password change re-seals every row under a key from the new
//! password. It is crash-safe: before the server is asked, the new key's
//! header and check are stored beside the current ones (`next_*`), with the
//! current key sealed under the new one. If the client stops before the
//! change is finished, the next start opens the store with either
//! password, learns from the server (an OPAQUE login) which one is now
//! right, and finishes or forgets the change.

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sotto_crypto::at_rest::{DeviceKey, StoreKey};
use zeroize::Zeroizing;

use super::{CHECK, LocalStore, StoreError};

/// What the store says about logging in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// This device's session token, from the last login.
    pub token: Option<String>,
    /// The account logs in with OPAQUE on this server: never send the
    /// password itself, whatever the server asks.
    pub opaque: bool,
}

/// Which password opened a store with a password change in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// The password the store was sealed with.
    Current,
    /// The password of the interrupted change.
    Next,
}

const SESSION: &[u8] = b"meta/session";

impl LocalStore {
    /// The stored session, if any.
    pub fn session(&self) -> Result<Session, StoreError> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT value FROM meta WHERE name = 'session'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.db())?;
        let Some(sealed) = sealed else {
            return Ok(Session::default());
        };
        let plain = self.key.open_record(SESSION, &sealed)?;
        serde_json::from_slice(&plain)
            .map_err(|e| StoreError::Corrupt(format!("the session record: {e}")))
    }

    /// Replaces the stored session.
    pub fn set_session(&mut self, session: &Session) -> Result<(), StoreError> {
        let plain = Zeroizing::new(
            serde_json::to_vec(session).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        );
        let sealed = self.key.seal_record(SESSION, &plain);
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('session', ?1)",
                [sealed],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// Lets `device` open the store without the password (its copy of the
    /// store key replaces any earlier one).
    pub fn remember(&mut self, device: &DeviceKey) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('remembered', ?1)",
                [device.wrap(&self.key)],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// Only the password opens the store from now on.
    pub fn forget_remembered(&mut self) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM meta WHERE name = 'remembered'", [])
            .map_err(self.db())?;
        Ok(())
    }

    /// A password change in progress, and which password opened the store.
    pub fn pending_change(&self) -> Option<Opened> {
        self.pending
    }

    /// Begins a password change: the new key is stored beside the current
    /// one (see the module comment); nothing is re-sealed yet.
    pub fn begin_change(&mut self, new_password: &str) -> Result<(), StoreError> {
        let next = StoreKey::create(new_password);
        let tx = self.conn.transaction().map_err(|source| StoreError::Db {
            path: self.path.clone(),
            source,
        })?;
        for (name, value) in [
            ("next_header", next.header().to_vec()),
            ("next_check", next.seal_record(b"meta/check", CHECK)),
            ("next_wrapped", next.wrap(&self.key)),
        ] {
            tx.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)",
                params![name, value],
            )
            .map_err(|source| StoreError::Db {
                path: self.path.clone(),
                source,
            })?;
        }
        tx.commit().map_err(self.db())?;
        self.next = Some(next);
        self.pending = Some(Opened::Current);
        Ok(())
    }

    /// Forgets a password change (the server kept the current password).
    pub fn abandon_change(&mut self) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM meta WHERE name IN ('next_header', 'next_check', 'next_wrapped')",
                [],
            )
            .map_err(self.db())?;
        self.next = None;
        self.pending = None;
        Ok(())
    }

    /// Finishes a password change (the server has the new password): every
    /// sealed row is re-sealed under the new key, in one transaction.
    pub fn finish_change(&mut self) -> Result<(), StoreError> {
        let Some(next) = self.next.take() else {
            return Err(StoreError::Corrupt(
                "no password change is in progress".into(),
            ));
        };
        let path = self.path.clone();
        let db = |source| StoreError::Db {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(db)?;
        {
            let (old, next) = (&self.key, &next);
            reseal_rows(
                &tx,
                old,
                next,
                "SELECT kind, id, value FROM records",
                "UPDATE records SET value = ?1 WHERE kind = ?2 AND id = ?3",
                |key| {
                    let mut context = format!("records/{}/", text(&key[0])).into_bytes();
                    context.extend_from_slice(&blob(&key[1]));
                    context
                },
            )?;
            reseal_rows(
                &tx,
                old,
                next,
                "SELECT room_id, seq, value FROM history",
                "UPDATE history SET value = ?1 WHERE room_id = ?2 AND seq = ?3",
                |key| format!("history/{}/{}", int(&key[0]), int(&key[1])).into_bytes(),
            )?;
            reseal_rows(
                &tx,
                old,
                next,
                "SELECT room_id, seq, session_id, value FROM held",
                "UPDATE held SET value = ?1 WHERE room_id = ?2 AND seq = ?3 AND session_id = ?4",
                |key| {
                    format!("held/{}/{}/{}", int(&key[0]), int(&key[1]), text(&key[2])).into_bytes()
                },
            )?;
            super::offers::reseal(&tx, old, next)?;
            let session: Option<Vec<u8>> = tx
                .query_row("SELECT value FROM meta WHERE name = 'session'", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(db)?;
            if let Some(sealed) = session {
                let plain = self.key.open_record(SESSION, &sealed)?;
                tx.execute(
                    "UPDATE meta SET value = ?1 WHERE name = 'session'",
                    [next.seal_record(SESSION, &plain)],
                )
                .map_err(db)?;
            }
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE name = 'header'",
                [next.header()],
            )
            .map_err(db)?;
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE name = 'check'",
                [next.seal_record(b"meta/check", CHECK)],
            )
            .map_err(db)?;
            // A remembered device key wrapped the old key: the device
            // is remembered again under the new one, if at all.
            tx.execute(
                "DELETE FROM meta WHERE name IN ('next_header', 'next_check', 'next_wrapped', \
                 'remembered')",
                [],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        self.key = next;
        self.pending = None;
        Ok(())
    }
}

/// For a store whose current password did not open it: the keys of an
/// interrupted password change, if `password` is its new one (the current
/// key, unwrapped, and the new key).
pub(super) fn open_next(
    conn: &rusqlite::Connection,
    password: &str,
) -> Result<Option<(StoreKey, StoreKey)>, StoreError> {
    let get = |name: &str| -> rusqlite::Result<Option<Vec<u8>>> {
        conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()
    };
    let db = |source| StoreError::Db {
        path: std::path::PathBuf::new(),
        source,
    };
    let (Some(header), Some(check), Some(wrapped)) = (
        get("next_header").map_err(db)?,
        get("next_check").map_err(db)?,
        get("next_wrapped").map_err(db)?,
    ) else {
        return Ok(None);
    };
    let next = StoreKey::unlock(password, &header)?;
    if next.open_record(b"meta/check", &check).is_err() {
        return Ok(None);
    }
    let current = next.unwrap_key(&wrapped)?;
    Ok(Some((current, next)))
}

/// The store key unwrapped by a remembered device key: `Err` inside
/// when the store was not remembered or the key is not the one.
pub(super) fn remembered_key(
    conn: &rusqlite::Connection,
    device: &DeviceKey,
) -> Result<Result<StoreKey, StoreError>, rusqlite::Error> {
    let wrapped: Option<Vec<u8>> = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'remembered'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(wrapped
        .and_then(|wrapped| device.unwrap(&wrapped).ok())
        .ok_or(StoreError::PasswordNeeded))
}

/// Whether a store has a password change in progress.
pub(super) fn has_next(conn: &rusqlite::Connection) -> Result<bool, rusqlite::Error> {
    conn.query_row("SELECT 1 FROM meta WHERE name = 'next_header'", [], |_| {
        Ok(())
    })
    .optional()
    .map(|found| found.is_some())
}

/// Re-seals one column of a table under `next`, in the open transaction:
/// `select` yields the key columns and then the sealed value; `update`
/// sets `?1` to the value sealed anew where the key columns are `?2`,
/// `?3`, ...; `context` names a row from its key columns (what it was
/// sealed with).
pub(super) fn reseal_rows(
    tx: &rusqlite::Transaction<'_>,
    old: &StoreKey,
    next: &StoreKey,
    select: &str,
    update: &str,
    context: impl Fn(&[Value]) -> Vec<u8>,
) -> Result<(), ResealError> {
    let mut rows: Vec<(Vec<Value>, Vec<u8>)> = Vec::new();
    {
        let mut stmt = tx.prepare(select)?;
        let columns = stmt.column_count();
        let found = stmt.query_map([], |r| {
            let key = (0..columns - 1)
                .map(|i| r.get::<_, Value>(i))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((key, r.get::<_, Vec<u8>>(columns - 1)?))
        })?;
        for row in found {
            rows.push(row?);
        }
    }
    let mut stmt = tx.prepare(update)?;
    for (key, sealed) in rows {
        let context = context(&key);
        let plain = old.open_record(&context, &sealed)?;
        let mut values = vec![Value::Blob(next.seal_record(&context, &plain))];
        values.extend(key);
        stmt.execute(rusqlite::params_from_iter(values))?;
    }
    Ok(())
}

/// Why re-sealing failed: the database, or a row that does not open.
#[derive(Debug)]
pub(super) enum ResealError {
    Db(rusqlite::Error),
    Locked(sotto_crypto::at_rest::AtRestError),
}

impl From<rusqlite::Error> for ResealError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(e)
    }
}

impl From<ResealError> for StoreError {
    fn from(e: ResealError) -> Self {
        match e {
            ResealError::Db(e) => StoreError::Corrupt(format!("re-sealing: {e}")),
            ResealError::Locked(e) => StoreError::Locked(e),
        }
    }
}

impl From<sotto_crypto::at_rest::AtRestError> for ResealError {
    fn from(e: sotto_crypto::at_rest::AtRestError) -> Self {
        Self::Locked(e)
    }
}

fn int(value: &Value) -> i64 {
    match value {
        Value::Integer(n) => *n,
        _ => 0,
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::Text(t) => t.clone(),
        _ => String::new(),
    }
}

fn blob(value: &Value) -> Vec<u8> {
    match value {
        Value::Blob(b) => b.clone(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Changes, RecordKey, kind};
    use super::*;

    fn store_with_a_record(path: &std::path::Path) {
        let (mut store, _) = LocalStore::open(path, "old").unwrap();
        let mut changes = Changes::default();
        changes.records.push((
            RecordKey {
                kind: kind::ACCOUNT,
                id: Vec::new(),
            },
            Zeroizing::new(b"the account".to_vec()),
        ));
        store.write(&changes).unwrap();
        store
            .set_session(&Session {
                token: Some("t".into()),
                opaque: true,
            })
            .unwrap();
    }

    #[test]
    fn an_interrupted_change_opens_with_either_password_and_is_settled_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        store_with_a_record(&path);
        // Interrupted before the server heard of it.
        LocalStore::open(&path, "old")
            .unwrap()
            .0
            .begin_change("new")
            .unwrap();
        let (mut store, loaded) = LocalStore::open(&path, "old").unwrap();
        assert_eq!(store.pending_change(), Some(Opened::Current));
        assert_eq!(loaded.records.len(), 1);
        store.abandon_change().unwrap();
        drop(store);
        assert!(LocalStore::open(&path, "new").is_err());
        assert_eq!(
            LocalStore::open(&path, "old").unwrap().0.pending_change(),
            None
        );

        // Interrupted after: the new password opens it, and finishing
        // re-seals everything.
        LocalStore::open(&path, "old")
            .unwrap()
            .0
            .begin_change("new")
            .unwrap();
        let (mut store, loaded) = LocalStore::open(&path, "new").unwrap();
        assert_eq!(store.pending_change(), Some(Opened::Next));
        assert_eq!(loaded.records[0].1.as_slice(), b"the account");
        store.finish_change().unwrap();
        drop(store);
        assert!(LocalStore::open(&path, "old").is_err());
        let (store, loaded) = LocalStore::open(&path, "new").unwrap();
        assert_eq!(store.pending_change(), None);
        assert_eq!(loaded.records[0].1.as_slice(), b"the account");
        assert_eq!(store.session().unwrap().token.as_deref(), Some("t"));
    }

    #[test]
    fn a_finished_change_reseals_every_table() {
        use super::super::{HeldRow, HistoryRow, Offer, OfferRow};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        store_with_a_record(&path);
        let (mut store, _) = LocalStore::open(&path, "old").unwrap();
        let mut changes = Changes::default();
        changes.history.push(HistoryRow {
            room_id: 3,
            seq: 4,
            ts: 5,
            entry: Zeroizing::new(b"a message".to_vec()),
        });
        changes.held.push(HeldRow {
            room_id: 3,
            seq: 6,
            session_id: "s1".into(),
            sender_user: "bob".into(),
            sender_device: "BOBDEVICE1".into(),
            event: Zeroizing::new(b"held".to_vec()),
        });
        changes.offers.push(OfferRow {
            offer: Offer {
                id: 1,
                room_id: 3,
                seq: 7,
                ts: 8,
                from: sotto_proto::Username::parse("bob").unwrap(),
                group: None,
                name: "a.txt".into(),
                size: 4,
            },
            data: Zeroizing::new(b"file".to_vec()),
        });
        store.write(&changes).unwrap();
        store.begin_change("new").unwrap();
        store.finish_change().unwrap();
        drop(store);
        let (store, loaded) = LocalStore::open(&path, "new").unwrap();
        assert_eq!(loaded.records[0].1.as_slice(), b"the account");
        assert_eq!(
            store.history_at(&[(3, 4)]).unwrap()[0].entry.as_slice(),
            b"a message"
        );
        assert_eq!(
            store.held_for(3, "s1").unwrap()[0].event.as_slice(),
            b"held"
        );
        assert_eq!(loaded.offers[0].name, "a.txt");
        assert_eq!(store.offer_data(1).unwrap().unwrap().as_slice(), b"file");
    }

    #[test]
    fn a_wrong_password_opens_nothing_even_during_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        store_with_a_record(&path);
        LocalStore::open(&path, "old")
            .unwrap()
            .0
            .begin_change("new")
            .unwrap();
        assert!(LocalStore::open(&path, "neither").is_err());
    }
}
