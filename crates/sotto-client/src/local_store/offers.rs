//! Received files waiting for the user's `@accept ID` or `@reject ID`. A
//! file is written to `downloads/` only once accepted; until then it waits
//! here, sealed like everything else in the store, within the bounds below
//! (a file beyond them is not kept, and the user is told).

use rusqlite::{Transaction, params};
use serde::{Deserialize, Serialize};
use sotto_proto::{GroupName, Username};
use zeroize::Zeroizing;

use sotto_crypto::at_rest::StoreKey;

use super::{Changes, Loaded, LocalStore, StoreError, int, uint};

/// Files waiting for an answer, at most.
pub const MAX_OFFERS: usize = 100;
/// Of those, from any one sender.
pub const MAX_OFFERS_PER_SENDER: usize = 20;
/// Bytes of files waiting for an answer, at most.
pub const MAX_OFFERED_BYTES: u64 = 100 * 1024 * 1024;
/// Bytes of files from one sender waiting for an answer, at most: one
/// contact cannot fill the space for everyone else's.
pub const MAX_OFFERED_BYTES_PER_SENDER: u64 = 25 * 1024 * 1024;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS offers (
    id INTEGER PRIMARY KEY,
    room_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    size INTEGER NOT NULL,
    -- Sealed: the offer's details (sender, group, name) and the file.
    meta BLOB NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (room_id, seq)
);
";

/// A received file waiting for an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// What the user types: `@accept ID`. Never reused by this store.
    pub id: u64,
    pub room_id: u64,
    pub seq: u64,
    pub ts: i64,
    pub from: Username,
    pub group: Option<GroupName>,
    /// The sender's name for it, made safe to save.
    pub name: String,
    pub size: u64,
}

/// A file to keep until it is answered.
#[derive(Debug)]
pub struct OfferRow {
    pub offer: Offer,
    pub data: Zeroizing<Vec<u8>>,
}

fn meta_context(id: u64) -> Vec<u8> {
    format!("offers/{id}/meta").into_bytes()
}

fn data_context(id: u64) -> Vec<u8> {
    format!("offers/{id}/data").into_bytes()
}

impl LocalStore {
    pub(super) fn load_offers(&self, loaded: &mut Loaded) -> Result<(), StoreError> {
        let db = self.db();
        let mut query = self
            .conn
            .prepare("SELECT id, meta FROM offers ORDER BY id")
            .map_err(&db)?;
        let rows = query
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .map_err(&db)?;
        for row in rows {
            let (id, sealed) = row.map_err(&db)?;
            let plain = self.key.open_record(&meta_context(uint(id)), &sealed)?;
            let offer: Offer = serde_json::from_slice(&plain)
                .map_err(|e| StoreError::Corrupt(format!("a waiting file: {e}")))?;
            loaded.offers.push(offer);
        }
        let next: Option<i64> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE name = 'next_offer'",
                [],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .ok()
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(i64::from_be_bytes);
        loaded.next_offer = next
            .map_or(1, uint)
            .max(loaded.offers.iter().map(|o| o.id + 1).max().unwrap_or(1));
        Ok(())
    }

    /// The contents of a waiting file.
    pub fn offer_data(&self, id: u64) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let db = self.db();
        let sealed: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT data FROM offers WHERE id = ?1", [int(id)], |r| {
                r.get(0)
            })
            .map_or_else(
                |e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                },
                |v| Ok(Some(v)),
            )
            .map_err(&db)?;
        sealed
            .map(|s| self.key.open_record(&data_context(id), &s))
            .transpose()
            .map_err(StoreError::from)
    }
}

/// Writes the offers of `changes` in the open transaction.
pub(super) fn write(
    tx: &Transaction<'_>,
    key: &StoreKey,
    changes: &Changes,
) -> Result<(), rusqlite::Error> {
    let mut put = tx.prepare_cached(
        "INSERT OR REPLACE INTO offers (id, room_id, seq, size, meta, data) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut next = None;
    for row in &changes.offers {
        let offer = &row.offer;
        let meta = crate::crypto::json(offer);
        put.execute(params![
            int(offer.id),
            int(offer.room_id),
            int(offer.seq),
            int(offer.size),
            key.seal_record(&meta_context(offer.id), &meta),
            key.seal_record(&data_context(offer.id), &row.data),
        ])?;
        next = next.max(Some(offer.id + 1));
    }
    // Ids are never handed out twice, also once their files are gone.
    if let Some(next) = next {
        tx.execute(
            "INSERT INTO meta (name, value) VALUES ('next_offer', ?1) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            [int(next).to_be_bytes().to_vec()],
        )?;
    }
    let mut forget = tx.prepare_cached("DELETE FROM offers WHERE id = ?1")?;
    for id in &changes.unoffered {
        forget.execute([int(*id)])?;
    }
    Ok(())
}

/// Re-seals every waiting file under `next` (a password change), in the
/// open transaction.
pub(super) fn reseal(
    tx: &Transaction<'_>,
    old: &StoreKey,
    next: &StoreKey,
) -> Result<(), super::account::ResealError> {
    let id = |key: &[rusqlite::types::Value]| match key.first() {
        Some(rusqlite::types::Value::Integer(id)) => uint(*id),
        _ => 0,
    };
    super::account::reseal_rows(
        tx,
        old,
        next,
        "SELECT id, meta FROM offers",
        "UPDATE offers SET meta = ?1 WHERE id = ?2",
        |key| meta_context(id(key)),
    )?;
    super::account::reseal_rows(
        tx,
        old,
        next,
        "SELECT id, data FROM offers",
        "UPDATE offers SET data = ?1 WHERE id = ?2",
        |key| data_context(id(key)),
    )
}
