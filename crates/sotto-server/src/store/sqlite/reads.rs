//! Reads of connection tasks on a small pool of read-only connections.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use sotto_proto::{HistoryCursor, SharedEvent};

use crate::store::{HistoryPage, LOBBY_ROOM, MAX_MISSED_COUNTED, StoredUser, history};

fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// Read-only connections shared by connection tasks.
///
/// A std `Mutex` around a free list is enough: it is held only to pop or
/// push a connection, never across a query or an `.await`. Queries run on
/// tokio's blocking pool via [`ReadPool::run`], at most [`MAX_READERS`] at
/// once: under a login storm, unbounded queries would each take a blocking
/// thread and open (and parse the schema for) a short-lived connection.
#[derive(Debug, Clone)]
pub struct ReadPool {
    /// Database file, to open readers as they are first needed.
    path: Arc<PathBuf>,
    /// Idle readers.
    idle: Arc<Mutex<Vec<Connection>>>,
    /// One permit per reader that may exist.
    permits: Arc<tokio::sync::Semaphore>,
}

/// Most readers open and queries running at once.
const MAX_READERS: usize = 8;

impl ReadPool {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path: Arc::new(path),
            idle: Arc::new(Mutex::new(Vec::new())),
            permits: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
        }
    }

    /// Runs `f` with a reader on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let pool = self.clone();
        let permit = self.permits.clone().acquire_owned().await?;
        tokio::task::spawn_blocking(move || {
            let conn = match pool.idle.lock().map(|mut idle| idle.pop()) {
                Ok(Some(conn)) => conn,
                _ => open_reader(&pool.path)?,
            };
            let result = f(&conn);
            if let Ok(mut idle) = pool.idle.lock() {
                idle.push(conn);
            }
            drop(permit);
            Ok(result?)
        })
        .await?
    }
}

/// Looks a user up by normalized name.
pub fn find_user(conn: &Connection, name: &str) -> rusqlite::Result<Option<StoredUser>> {
    conn.prepare_cached("SELECT id, pw_hash, opaque FROM users WHERE name = ?1")?
        .query_row([name], |row| {
            let hash: String = row.get(1)?;
            Ok(StoredUser {
                id: row.get(0)?,
                legacy_hash: (!hash.is_empty()).then_some(hash),
                record: row.get(2)?,
            })
        })
        .optional()
}

/// The SHA-256 of the session token of `device` of user `name`, if any.
pub fn device_token_hash(
    conn: &Connection,
    name: &str,
    device: &str,
) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached(
        "SELECT d.token_hash FROM devices d JOIN users u ON u.id = d.user_id WHERE u.name = ?1 AND d.device = ?2",
    )?
    .query_row([name, device], |row| row.get::<_, Option<Vec<u8>>>(0))
    .optional()
    .map(Option::flatten)
}

/// The newest `limit` lobby events after position `after`, oldest first,
/// and how many older ones after `after` there are besides (at most
/// [`MAX_MISSED_COUNTED`]), in one read transaction.
pub fn lobby_since(
    conn: &Connection,
    after: u64,
    limit: usize,
) -> rusqlite::Result<(Vec<SharedEvent>, u64)> {
    let tx = conn.unchecked_transaction()?;
    let mut events = {
        let mut stmt = tx.prepare_cached(
            "SELECT seq, body FROM events WHERE room_id = ?1 AND seq > ?2 \
             ORDER BY seq DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![LOBBY_ROOM as i64, after as i64, limit as i64],
            |row| {
                let seq: i64 = row.get(0)?;
                let body: Vec<u8> = row.get(1)?;
                Ok((seq as u64, SharedEvent::from_encoded(Bytes::from(body))))
            },
        )?;
        rows.collect::<rusqlite::Result<Vec<(u64, SharedEvent)>>>()?
    };
    events.reverse();
    let missed = match events.first() {
        Some((oldest, _)) => tx
            .prepare_cached(
                "SELECT COUNT(*) FROM (SELECT 1 FROM events \
                 WHERE room_id = ?1 AND seq > ?2 AND seq < ?3 LIMIT ?4)",
            )?
            .query_row(
                params![
                    LOBBY_ROOM as i64,
                    after as i64,
                    *oldest as i64,
                    MAX_MISSED_COUNTED
                ],
                |r| r.get::<_, i64>(0),
            )? as u64,
        None => 0,
    };
    tx.finish()?;
    Ok((events.into_iter().map(|(_, e)| e).collect(), missed))
}

/// Events of `room` with `after < seq <= up_to`, oldest first, at most `limit`.
pub fn events_range(
    conn: &Connection,
    room: u64,
    after: u64,
    up_to: u64,
    limit: usize,
) -> rusqlite::Result<Vec<(u64, SharedEvent)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, body FROM events WHERE room_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        params![room as i64, after as i64, up_to as i64, limit as i64],
        |row| {
            let seq: i64 = row.get(0)?;
            let body: Vec<u8> = row.get(1)?;
            Ok((seq as u64, SharedEvent::from_encoded(Bytes::from(body))))
        },
    )?;
    rows.collect()
}

/// One page of a user's history: the newest `limit` events they can see
/// (older than `before`, if given), oldest first, at most `max_bytes` of
/// them (the newest one always, whatever its size). The cursor is set when
/// older events of the `limit` did not fit: ask again from there.
pub fn history(
    conn: &Connection,
    user_id: i64,
    limit: usize,
    before: Option<HistoryCursor>,
    max_bytes: usize,
) -> rusqlite::Result<HistoryPage> {
    let mut rooms: Vec<(i64, i64)> = vec![(LOBBY_ROOM as i64, 0)];
    {
        let mut stmt =
            // Not the to-device queues: they hold key material for one
            // device, not history.
            conn.prepare_cached(
                "SELECT m.room_id, m.joined_seq FROM members m JOIN rooms r ON r.id = m.room_id \
                 WHERE m.user_id = ?1 AND r.kind != 4",
            )?;
        for row in stmt.query_map([user_id], |row| Ok((row.get(0)?, row.get(1)?)))? {
            rooms.push(row?);
        }
    }
    // Strictly before the cursor in (ts, room, seq) order; no cursor: all.
    let (cts, croom, cseq) = history::bound(before);
    let mut all: Vec<(HistoryCursor, SharedEvent)> = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT ts, seq, body FROM events WHERE room_id = ?1 AND seq > ?2 \
         AND (ts, ?1, seq) < (?4, ?5, ?6) ORDER BY seq DESC LIMIT ?3",
    )?;
    for &(room, joined) in &rooms {
        let rows = stmt.query_map(
            params![room, joined, limit as i64, cts, croom, cseq],
            |row| {
                let body: Vec<u8> = row.get(2)?;
                Ok((
                    HistoryCursor {
                        ts: row.get(0)?,
                        room_id: room as u64,
                        seq: row.get::<_, i64>(1)? as u64,
                    },
                    SharedEvent::from_encoded(Bytes::from(body)),
                ))
            },
        )?;
        for row in rows {
            all.push(row?);
        }
    }
    let mut oldest = conn.prepare_cached("SELECT MIN(seq) FROM events WHERE room_id = ?1")?;
    let firsts = rooms
        .iter()
        .map(|&(room, _)| oldest.query_row([room], |r| r.get::<_, Option<i64>>(0)))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(history::assemble(all, &rooms, &firsts, limit, max_bytes))
}
