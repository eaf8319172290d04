//! Durable storage: one SQLite database in WAL mode.
//!
//! Only the core thread writes (see `core.rs`), through the connection
//! returned by [`open_writer`], batching many operations into one
//! transaction (group commit). Connection tasks read through a small
//! [`ReadPool`] on tokio's blocking threads; WAL lets those reads run
//! alongside the writer and see only committed data.
//!
//! Timeline entries are stored exactly as they are sent: the encoded
//! [`SharedEvent`] bytes, so a backlog is replayed without re-encoding.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use sotto_crypto::opaque::ServerKeys;
use sotto_proto::{HistoryCursor, ServerId, SharedEvent};

/// Room id of the lobby, created with the schema.
pub const LOBBY_ROOM: u64 = sotto_proto::LOBBY_ROOM_ID;

/// Kinds of room, as stored in `rooms.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomKind {
    Lobby = 0,
    Direct = 1,
    Group = 2,
    Notices = 3,
    /// One device's to-device queue (`user_a` holds the device row id).
    Inbox = 4,
}

impl RoomKind {
    pub fn from_i64(value: i64) -> Option<Self> {
        Some(match value {
            0 => RoomKind::Lobby,
            1 => RoomKind::Direct,
            2 => RoomKind::Group,
            3 => RoomKind::Notices,
            4 => RoomKind::Inbox,
            _ => return None,
        })
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    -- Argon2id hash of an account made before logins used OPAQUE, until
    -- its first login moves it over; '' after that.
    pw_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- The OPAQUE registration record (never a password or a hash of one).
    opaque BLOB
);
CREATE TABLE IF NOT EXISTS devices (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    device TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- SHA-256 of the device's current session token, if one was issued.
    token_hash BLOB,
    UNIQUE (user_id, device)
);
CREATE TABLE IF NOT EXISTS rooms (
    id INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    name TEXT,
    owner_id INTEGER,
    user_a INTEGER,
    user_b INTEGER,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS rooms_group_name ON rooms(name) WHERE kind = 2;
CREATE UNIQUE INDEX IF NOT EXISTS rooms_direct_pair ON rooms(user_a, user_b) WHERE kind = 1;
CREATE TABLE IF NOT EXISTS members (
    room_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    joined_seq INTEGER NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_by_user ON members(user_id);
CREATE TABLE IF NOT EXISTS events (
    room_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    body BLOB NOT NULL,
    -- Who sent it (schema version 5; NULL in older rows), for the
    -- stored-bytes quota.
    sender_id INTEGER,
    PRIMARY KEY (room_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cursors (
    device_key INTEGER NOT NULL,
    room_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (device_key, room_id)
) WITHOUT ROWID;
-- The key directory (schema version 2). Bodies are sotto-proto encodings
-- of DeviceKeys / SignedOneTimeKey, signed by the device.
CREATE TABLE IF NOT EXISTS published_keys (
    device_key INTEGER PRIMARY KEY,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS one_time_keys (
    device_key INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (device_key, key_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fallback_keys (
    device_key INTEGER PRIMARY KEY,
    body BLOB NOT NULL,
    -- Handed out since it was uploaded.
    used INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO rooms (id, kind, created_at) VALUES (1, 0, 0);
-- Schema version 5: invitations to groups, waiting for an answer.
CREATE TABLE IF NOT EXISTS invitations (
    room_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    inviter_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
-- Schema version 6: the last ids of messages sent with `Request::Once`
-- per account, so a message sent again after a lost reply is stored once.
-- Its rowid is the order they were sent in (the oldest is forgotten first).
CREATE TABLE IF NOT EXISTS sent_once (
    user_id INTEGER NOT NULL,
    client_id INTEGER NOT NULL,
    room_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
-- Schema version 3: facts about this server ('server_id': 16 random bytes).
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
";

/// Version of the schema above, kept in `PRAGMA user_version`. Version 2
/// added the key directory tables, version 3 the `meta` table, version 4
/// the OPAQUE record of each account, version 5 the sender of each event
/// and group invitations, version 6 the ids of messages sent once
/// (tables are created on start; columns are added to an older database).
const SCHEMA_VERSION: i64 = 6;

/// Path of the database inside the data dir.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("sotto.db")
}

/// Opens (creating if needed) the database for the single writer.
///
/// `synchronous = FULL`: a commit is on disk before it is acknowledged, so
/// neither `kill -9` nor a power cut loses an acknowledged message. Group
/// commit amortizes the fsync over every operation in the batch.
pub fn open_writer(path: &Path) -> rusqlite::Result<Connection> {
    restrict(path)
        .map_err(|e| rusqlite::Error::InvalidParameterName(format!("{}: {e}", path.display())))?;
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the database has schema version {version}, newer than this server's {SCHEMA_VERSION}: upgrade the server"
        )));
    }
    conn.execute_batch(SCHEMA)?;
    // Schema 4 added OPAQUE records; older accounts keep their hash until
    // their next login.
    let has_opaque = conn
        .prepare("SELECT 1 FROM pragma_table_info('users') WHERE name = 'opaque'")?
        .exists([])?;
    if !has_opaque {
        conn.execute_batch("ALTER TABLE users ADD COLUMN opaque BLOB")?;
    }
    // Schema 5 records who sent each event; older events count for nobody.
    let has_sender = conn
        .prepare("SELECT 1 FROM pragma_table_info('events') WHERE name = 'sender_id'")?
        .exists([])?;
    if !has_sender {
        conn.execute_batch("ALTER TABLE events ADD COLUMN sender_id INTEGER")?;
    }
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(conn)
}

/// The server's OPAQUE keys (OPRF seed and key-exchange key pair), made
/// the first time and kept with the database.
pub fn opaque_keys(conn: &Connection) -> anyhow::Result<ServerKeys> {
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
pub fn server_id(conn: &Connection) -> rusqlite::Result<ServerId> {
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

/// The database, its WAL and shared-memory files are the owner's only:
/// created 0600 before SQLite opens them (SQLite gives the WAL the
/// database's mode), and made so if an older server left them readable.
fn restrict(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Holds the data dir for one server: a second server on the same data
/// dir refuses to start (two writers would corrupt nothing, SQLite locks,
/// but they would hand out the same positions and keys twice).
#[derive(Debug)]
pub struct DataDirLock {
    /// Locked while it is open; the lock goes with the process.
    _file: std::fs::File,
}

/// Takes the data dir's lock file (`lock`, holding the owner's process id).
pub fn lock_data_dir(data_dir: &Path) -> anyhow::Result<DataDirLock> {
    use std::io::{Read, Seek, Write};
    let path = data_dir.join("lock");
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&path)
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
    if file.try_lock().is_err() {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        anyhow::bail!(
            "another Sotto server (process {}) is using the data dir {}; stop it first, or give \
             this one another --data-dir",
            holder.trim(),
            data_dir.display()
        );
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    Ok(DataDirLock { _file: file })
}

fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// A stored user as the login path needs it.
#[derive(Debug, Clone)]
pub struct StoredUser {
    pub id: i64,
    /// The Argon2id hash of an account not yet moved over to OPAQUE.
    pub legacy_hash: Option<String>,
    /// The OPAQUE record, once there is one.
    pub record: Option<Vec<u8>>,
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

/// Missed lobby events counted at most (counting a huge lobby costs more
/// than the number says).
const MAX_MISSED_COUNTED: i64 = 100_000;

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
    let (cts, croom, cseq) = before.map_or((i64::MAX, i64::MAX, i64::MAX), |c| {
        (
            c.ts,
            i64::try_from(c.room_id).unwrap_or(i64::MAX),
            i64::try_from(c.seq).unwrap_or(i64::MAX),
        )
    });
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
    // Newest `limit` overall, as many as fit, then oldest first.
    all.sort_by_key(|e| std::cmp::Reverse(e.0));
    all.truncate(limit);
    let mut bytes = 0usize;
    let mut fit = 0;
    for (_, event) in &all {
        bytes = bytes.saturating_add(event.as_bytes().len());
        if fit > 0 && bytes > max_bytes {
            break;
        }
        fit += 1;
    }
    let more = (fit < all.len())
        .then(|| all.get(fit.wrapping_sub(1)).map(|e| e.0))
        .flatten();
    all.truncate(fit);
    all.reverse();
    // Did this page reach back to the oldest event a room still keeps,
    // with older ones (that this user could see) deleted by retention?
    let mut pruned = None;
    let mut oldest = conn.prepare_cached("SELECT MIN(seq) FROM events WHERE room_id = ?1")?;
    for &(room, joined) in &rooms {
        let Some(first) = oldest.query_row([room], |r| r.get::<_, Option<i64>>(0))? else {
            continue;
        };
        if first <= joined.saturating_add(1) {
            continue;
        }
        if let Some((at, _)) = all
            .iter()
            .find(|(c, _)| c.room_id == room as u64 && c.seq == first as u64)
        {
            pruned = pruned.max(Some(at.ts));
        }
    }
    Ok(HistoryPage {
        events: all.into_iter().map(|(_, e)| e).collect(),
        more,
        pruned_before: pruned,
    })
}

/// One page of [`history`].
#[derive(Debug)]
pub struct HistoryPage {
    pub events: Vec<SharedEvent>,
    pub more: Option<HistoryCursor>,
    /// Set when the page reaches the oldest event a room still keeps and
    /// older ones were deleted by the retention policy: that event's time.
    pub pruned_before: Option<i64>,
}

/// Where a message sent with `Request::Once` was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentOnce {
    pub room_id: u64,
    pub seq: u64,
    pub ts: i64,
}

/// Every remembered message id: (user, client id, where), oldest first per user.
pub fn load_sent_once(conn: &Connection) -> rusqlite::Result<Vec<(i64, u64, SentOnce)>> {
    let mut stmt = conn.prepare(
        "SELECT user_id, client_id, room_id, seq, ts FROM sent_once ORDER BY user_id, rowid",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)? as u64,
            SentOnce {
                room_id: r.get::<_, i64>(2)? as u64,
                seq: r.get::<_, i64>(3)? as u64,
                ts: r.get(4)?,
            },
        ))
    })?;
    rows.collect()
}

/// Remembers a message id, forgetting `evicted` (the user's oldest).
pub fn record_sent_once(
    conn: &Connection,
    user: i64,
    client_id: u64,
    sent: SentOnce,
    evicted: Option<u64>,
) -> rusqlite::Result<()> {
    if let Some(old) = evicted {
        conn.prepare_cached("DELETE FROM sent_once WHERE user_id = ?1 AND client_id = ?2")?
            .execute(rusqlite::params![user, old as i64])?;
    }
    conn.prepare_cached(
        "INSERT OR REPLACE INTO sent_once (user_id, client_id, room_id, seq, ts) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(rusqlite::params![
        user,
        client_id as i64,
        sent.room_id as i64,
        sent.seq as i64,
        sent.ts
    ])?;
    Ok(())
}
