//! The embedded engine: one SQLite database in WAL mode, in the data dir.
//!
//! The core thread writes through the one writable connection
//! ([`SqliteWriter`]), each statement at once inside the batch's
//! transaction. Connection tasks read through a small [`ReadPool`] on
//! tokio's blocking threads; WAL lets those reads run alongside the writer
//! and see only committed data.

mod reads;
mod schema;

use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};
use sotto_crypto::opaque::ServerKeys;
use sotto_proto::ServerId;

use super::{NewEvent, NewRoom, Opened, Reads, RoomRow, SentOnce, Snapshot, Writer};
pub use reads::{ReadPool, device_token_hash, events_range, find_user, history, lobby_since};

/// Path of the database inside the data dir.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("sotto.db")
}

/// Opens the database at `path`: the writer, the readers, and the facts
/// kept with it.
pub fn open(path: &Path) -> anyhow::Result<Opened> {
    let mut writer =
        SqliteWriter::open(path).with_context(|| format!("opening {}", path.display()))?;
    let server_id = server_id(&writer.db).context("reading the server id")?;
    let opaque = opaque_keys(&writer.db).context("reading the login keys")?;
    writer.next_room_id = next_room_id(&writer.db)?;
    Ok(Opened {
        writer: Box::new(writer),
        reads: Reads::Sqlite(ReadPool::new(path.to_path_buf())),
        server_id,
        opaque,
        bus_key: None,
    })
}

/// The core's connection.
#[derive(Debug)]
pub struct SqliteWriter {
    db: Connection,
    /// The id the next room gets: above every id ever handed out.
    next_room_id: u64,
}

impl SqliteWriter {
    /// Opens (creating if needed) the database for the single writer.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let db = schema::open_writer(path)?;
        let next_room_id = next_room_id(&db)?;
        Ok(Self { db, next_room_id })
    }

    /// A writer on a database of its own in memory (for unit tests).
    #[cfg(test)]
    pub fn in_memory() -> Self {
        let db = Connection::open_in_memory().expect("in-memory database");
        db.execute_batch(schema::SCHEMA).expect("schema");
        Self {
            db,
            next_room_id: 2,
        }
    }
}

/// Above every room id ever handed out: the newest room, or a deleted
/// newer one remembered in `meta`.
fn next_room_id(db: &Connection) -> rusqlite::Result<u64> {
    let newest: Option<i64> = db.query_row("SELECT MAX(id) FROM rooms", [], |r| r.get(0))?;
    let handed_out: Option<i64> = db
        .query_row(
            "SELECT value FROM meta WHERE name = 'last_room_id'",
            [],
            |r| r.get::<_, Vec<u8>>(0),
        )
        .optional()?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(i64::from_be_bytes);
    Ok(newest.unwrap_or(0).max(handed_out.unwrap_or(0)).max(0) as u64 + 1)
}

/// The server's OPAQUE keys (OPRF seed and key-exchange key pair), made
/// the first time and kept with the database.
fn opaque_keys(conn: &Connection) -> anyhow::Result<ServerKeys> {
    let stored: Option<Vec<u8>> = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'opaque_keys'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(bytes) = stored {
        return ServerKeys::from_bytes(&bytes)
            .map_err(|e| anyhow::anyhow!("the stored OPAQUE keys: {e}"));
    }
    let keys = ServerKeys::generate();
    conn.execute(
        "INSERT INTO meta (name, value) VALUES ('opaque_keys', ?1)",
        [keys.to_bytes().as_slice()],
    )?;
    Ok(keys)
}

/// This server's identity, made (16 random bytes) the first time the
/// database is opened and kept with it: the same whatever address or port
/// clients use, so they keep one device and one local store per server.
fn server_id(conn: &Connection) -> rusqlite::Result<ServerId> {
    let stored: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM meta WHERE name = 'server_id'", [], |r| {
            r.get(0)
        })
        .optional()?;
    if let Some(id) = stored.and_then(|v| <[u8; 16]>::try_from(v.as_slice()).ok()) {
        return Ok(ServerId(id));
    }
    let id: [u8; 16] = rand::random();
    conn.execute(
        "INSERT OR REPLACE INTO meta (name, value) VALUES ('server_id', ?1)",
        [id.as_slice()],
    )?;
    Ok(ServerId(id))
}

/// Runs `sql` once for each value of its one parameter.
fn execute_each(db: &Connection, sqls: &[&str], value: i64) -> rusqlite::Result<()> {
    for sql in sqls {
        db.prepare_cached(sql)?.execute([value])?;
    }
    Ok(())
}

/// Collects every row of `sql` (no parameters) through `map`.
fn all<T>(
    db: &Connection,
    sql: &str,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    db.prepare(sql)?.query_map([], map)?.collect()
}

fn seq(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Writer for SqliteWriter {
    fn begin(&mut self) -> anyhow::Result<()> {
        Ok(self.db.execute_batch("BEGIN IMMEDIATE")?)
    }

    fn commit(&mut self) -> anyhow::Result<()> {
        Ok(self.db.execute_batch("COMMIT")?)
    }

    fn rollback(&mut self) {
        let _ = self.db.execute_batch("ROLLBACK");
        if let Ok(next) = next_room_id(&self.db) {
            self.next_room_id = next;
        }
    }

    fn snapshot(&mut self) -> anyhow::Result<Snapshot> {
        let db = &self.db;
        let mut snapshot = Snapshot {
            users: all(db, "SELECT id, name FROM users", |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?,
            devices: all(db, "SELECT id, user_id, device FROM devices", |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?,
            rooms: all(
                db,
                "SELECT id, kind, name, owner_id, user_a, user_b FROM rooms",
                |r| {
                    Ok(RoomRow {
                        id: r.get::<_, i64>(0)? as u64,
                        kind: r.get(1)?,
                        name: r.get(2)?,
                        owner: r.get(3)?,
                        user_a: r.get(4)?,
                        user_b: r.get(5)?,
                    })
                },
            )?,
            members: all(
                db,
                "SELECT room_id, user_id, joined_seq, position FROM members",
                |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get(1)?,
                        r.get::<_, i64>(2)? as u64,
                        r.get(3)?,
                    ))
                },
            )?,
            invitations: all(
                db,
                "SELECT room_id, user_id, inviter_id, ts FROM invitations",
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?,
            last_seqs: all(
                db,
                "SELECT room_id, MAX(seq) FROM events GROUP BY room_id
                 UNION ALL SELECT room_id, MAX(seq) FROM cursors GROUP BY room_id",
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )?,
            cursors: all(db, "SELECT device_key, room_id, seq FROM cursors", |r| {
                Ok((
                    r.get(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                ))
            })?,
            published_keys: all(db, "SELECT device_key, body FROM published_keys", |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?,
            one_time_keys: all(
                db,
                "SELECT device_key, COUNT(*) FROM one_time_keys GROUP BY device_key",
                |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u32)),
            )?,
            fallback_keys: all(db, "SELECT device_key, used FROM fallback_keys", |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?,
            sent_once: all(
                db,
                "SELECT user_id, client_id, room_id, seq, ts FROM sent_once ORDER BY user_id, rowid",
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get::<_, i64>(1)? as u64,
                        SentOnce {
                            room_id: r.get::<_, i64>(2)? as u64,
                            seq: r.get::<_, i64>(3)? as u64,
                            ts: r.get(4)?,
                        },
                    ))
                },
            )?,
            usage: all(
                db,
                "SELECT room_id, sender_id, SUM(length(body)) FROM events \
                 GROUP BY room_id, sender_id",
                |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get(1)?,
                        r.get::<_, i64>(2)? as u64,
                    ))
                },
            )?,
            oldest: Vec::new(),
            epoch: 0,
        };
        let mut rooms: Vec<u64> = snapshot.usage.iter().map(|u| u.0).collect();
        rooms.sort_unstable();
        rooms.dedup();
        for room in rooms {
            if let Some((seq, ts)) = self.oldest_event(room)? {
                snapshot.oldest.push((room, seq, ts));
            }
        }
        Ok(snapshot)
    }

    fn create_user(&mut self, name: &str, record: &[u8], now: i64) -> anyhow::Result<i64> {
        self.db
            .prepare_cached(
                "INSERT INTO users (name, pw_hash, created_at, opaque) VALUES (?1, '', ?2, ?3)",
            )?
            .execute(params![name, now, record])?;
        Ok(self.db.last_insert_rowid())
    }

    fn set_password(&mut self, user: i64, record: &[u8]) -> anyhow::Result<bool> {
        let changed = self
            .db
            .prepare_cached("UPDATE users SET opaque = ?1, pw_hash = '' WHERE id = ?2")?
            .execute(params![record, user])?;
        Ok(changed == 1)
    }

    fn create_device(&mut self, user: i64, device: &str, now: i64) -> anyhow::Result<i64> {
        self.db
            .prepare_cached(
                "INSERT INTO devices (user_id, device, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![user, device, now])?;
        Ok(self.db.last_insert_rowid())
    }

    fn set_token_hash(&mut self, device_key: i64, hash: &[u8; 32]) -> anyhow::Result<()> {
        self.db
            .prepare_cached("UPDATE devices SET token_hash = ?1 WHERE id = ?2")?
            .execute(params![&hash[..], device_key])?;
        Ok(())
    }

    fn delete_device(&mut self, device_key: i64) -> anyhow::Result<()> {
        Ok(execute_each(
            &self.db,
            &[
                "DELETE FROM published_keys WHERE device_key = ?1",
                "DELETE FROM one_time_keys WHERE device_key = ?1",
                "DELETE FROM fallback_keys WHERE device_key = ?1",
                "DELETE FROM cursors WHERE device_key = ?1",
                "DELETE FROM devices WHERE id = ?1",
            ],
            device_key,
        )?)
    }

    fn create_room(&mut self, room: NewRoom<'_>) -> anyhow::Result<u64> {
        // Never an id handed out before, even of a room since deleted:
        // clients remember positions by room id, and would take a new
        // room's first events for ones they already have.
        let id = self.next_room_id;
        self.db
            .prepare_cached(
                "INSERT INTO rooms (id, kind, name, owner_id, user_a, user_b, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                seq(id),
                room.kind as i64,
                room.name,
                room.owner,
                room.pair.map(|p| p.0),
                room.pair.map(|p| p.1),
                room.now
            ])?;
        self.db
            .prepare_cached(
                "INSERT INTO meta (name, value) VALUES ('last_room_id', ?1) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )?
            .execute([seq(id).to_be_bytes().to_vec()])?;
        self.next_room_id = id + 1;
        Ok(id)
    }

    fn delete_room(&mut self, room: u64) -> anyhow::Result<()> {
        Ok(execute_each(
            &self.db,
            &[
                "DELETE FROM invitations WHERE room_id = ?1",
                "DELETE FROM members WHERE room_id = ?1",
                "DELETE FROM cursors WHERE room_id = ?1",
                "DELETE FROM rooms WHERE id = ?1",
            ],
            seq(room),
        )?)
    }

    fn set_owner(&mut self, room: u64, owner: i64) -> anyhow::Result<()> {
        self.db
            .prepare_cached("UPDATE rooms SET owner_id = ?1 WHERE id = ?2")?
            .execute(params![owner, seq(room)])?;
        Ok(())
    }

    fn add_member(
        &mut self,
        room: u64,
        user: i64,
        joined_seq: u64,
        position: i64,
    ) -> anyhow::Result<()> {
        self.db
            .prepare_cached(
                "INSERT INTO members (room_id, user_id, joined_seq, position) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![seq(room), user, seq(joined_seq), position])?;
        Ok(())
    }

    fn remove_member(&mut self, room: u64, user: i64, devices: &[i64]) -> anyhow::Result<()> {
        self.db
            .prepare_cached("DELETE FROM members WHERE room_id = ?1 AND user_id = ?2")?
            .execute(params![seq(room), user])?;
        let mut cursor = self
            .db
            .prepare_cached("DELETE FROM cursors WHERE device_key = ?1 AND room_id = ?2")?;
        for device in devices {
            cursor.execute(params![device, seq(room)])?;
        }
        Ok(())
    }

    fn add_invitation(&mut self, room: u64, user: i64, by: i64, ts: i64) -> anyhow::Result<()> {
        self.db
            .prepare_cached(
                "INSERT INTO invitations (room_id, user_id, inviter_id, ts) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![seq(room), user, by, ts])?;
        Ok(())
    }

    fn delete_invitation(&mut self, room: u64, user: i64) -> anyhow::Result<()> {
        self.db
            .prepare_cached("DELETE FROM invitations WHERE room_id = ?1 AND user_id = ?2")?
            .execute(params![seq(room), user])?;
        Ok(())
    }

    fn insert_event(&mut self, event: NewEvent<'_>) -> anyhow::Result<()> {
        self.db
            .prepare_cached(
                "INSERT INTO events (room_id, seq, ts, body, sender_id) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                seq(event.room_id),
                seq(event.seq),
                event.ts,
                event.body,
                event.sender
            ])?;
        Ok(())
    }

    fn set_cursor(&mut self, device_key: i64, room: u64, at: u64) -> anyhow::Result<()> {
        self.db
            .prepare_cached(
                "INSERT INTO cursors (device_key, room_id, seq) VALUES (?1, ?2, ?3)
                 ON CONFLICT (device_key, room_id) DO UPDATE SET seq = excluded.seq",
            )?
            .execute(params![device_key, seq(room), seq(at)])?;
        Ok(())
    }

    fn event_bytes(&mut self, room: u64, up_to: u64) -> anyhow::Result<Vec<(Option<i64>, u64)>> {
        let mut stmt = self.db.prepare_cached(
            "SELECT sender_id, SUM(length(body)) FROM events \
             WHERE room_id = ?1 AND seq <= ?2 GROUP BY sender_id",
        )?;
        let rows = stmt.query_map(params![seq(room), seq(up_to)], |r| {
            Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn delete_events(&mut self, room: u64, up_to: u64) -> anyhow::Result<()> {
        self.db
            .prepare_cached("DELETE FROM events WHERE room_id = ?1 AND seq <= ?2")?
            .execute(params![seq(room), seq(up_to)])?;
        Ok(())
    }

    fn oldest_event(&mut self, room: u64) -> anyhow::Result<Option<(u64, i64)>> {
        Ok(self
            .db
            .prepare_cached("SELECT seq, ts FROM events WHERE room_id = ?1 ORDER BY seq LIMIT 1")?
            .query_row([seq(room)], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .optional()?)
    }

    fn last_before(
        &mut self,
        room: u64,
        from: u64,
        to: u64,
        cutoff: i64,
    ) -> anyhow::Result<Option<u64>> {
        // Oldest first, stopping at the first one young enough: only the
        // rows to prune (and one more) are read.
        let mut stmt = self.db.prepare_cached(
            "SELECT seq, ts FROM events WHERE room_id = ?1 AND seq >= ?2 AND seq <= ?3 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![seq(room), seq(from), seq(to)])?;
        let mut last = None;
        while let Some(row) = rows.next()? {
            let (at, ts): (i64, i64) = (row.get(0)?, row.get(1)?);
            if ts >= cutoff {
                break;
            }
            last = Some(at as u64);
        }
        Ok(last)
    }

    fn publish_keys(&mut self, device_key: i64, body: &[u8]) -> anyhow::Result<()> {
        self.db
            .prepare_cached("INSERT INTO published_keys (device_key, body) VALUES (?1, ?2)")?
            .execute(params![device_key, body])?;
        Ok(())
    }

    fn add_one_time_key(
        &mut self,
        device_key: i64,
        key_id: &str,
        body: &[u8],
    ) -> anyhow::Result<bool> {
        let added = self
            .db
            .prepare_cached(
                "INSERT OR IGNORE INTO one_time_keys (device_key, key_id, body) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![device_key, key_id, body])?;
        Ok(added == 1)
    }

    fn set_fallback_key(&mut self, device_key: i64, body: &[u8]) -> anyhow::Result<()> {
        self.db
            .prepare_cached(
                "INSERT OR REPLACE INTO fallback_keys (device_key, body, used) VALUES (?1, ?2, 0)",
            )?
            .execute(params![device_key, body])?;
        Ok(())
    }

    fn take_one_time_key(&mut self, device_key: i64) -> anyhow::Result<Option<Vec<u8>>> {
        let row: Option<(String, Vec<u8>)> = self
            .db
            .prepare_cached(
                "SELECT key_id, body FROM one_time_keys WHERE device_key = ?1 \
                 ORDER BY key_id LIMIT 1",
            )?
            .query_row([device_key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((key_id, body)) = row else {
            return Ok(None);
        };
        self.db
            .prepare_cached("DELETE FROM one_time_keys WHERE device_key = ?1 AND key_id = ?2")?
            .execute(params![device_key, key_id])?;
        Ok(Some(body))
    }

    fn use_fallback_key(&mut self, device_key: i64) -> anyhow::Result<Option<Vec<u8>>> {
        let body: Option<Vec<u8>> = self
            .db
            .prepare_cached("SELECT body FROM fallback_keys WHERE device_key = ?1")?
            .query_row([device_key], |r| r.get(0))
            .optional()?;
        if body.is_some() {
            self.db
                .prepare_cached("UPDATE fallback_keys SET used = 1 WHERE device_key = ?1")?
                .execute([device_key])?;
        }
        Ok(body)
    }

    fn record_sent_once(
        &mut self,
        user: i64,
        client_id: u64,
        sent: SentOnce,
        evicted: Option<u64>,
    ) -> anyhow::Result<()> {
        if let Some(old) = evicted {
            self.db
                .prepare_cached("DELETE FROM sent_once WHERE user_id = ?1 AND client_id = ?2")?
                .execute(params![user, old as i64])?;
        }
        self.db
            .prepare_cached(
                "INSERT OR REPLACE INTO sent_once (user_id, client_id, room_id, seq, ts) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                user,
                client_id as i64,
                seq(sent.room_id),
                seq(sent.seq),
                sent.ts
            ])?;
        Ok(())
    }
}
