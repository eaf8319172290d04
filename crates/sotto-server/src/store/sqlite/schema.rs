//! The SQLite schema, and opening the writer's connection.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

pub(super) const SCHEMA: &str = "
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

/// The writer's page cache, KiB (as a negative `cache_size`).
const WRITER_CACHE_KIB: i64 = -32 * 1024;

/// WAL pages between automatic checkpoints.
const WAL_CHECKPOINT_PAGES: i64 = 8192;

/// Opens (creating if needed) the database for the single writer.
///
/// `synchronous = FULL`: a commit is on disk before it is acknowledged, so
/// neither `kill -9` nor a power cut loses an acknowledged message. Group
/// commit amortizes the fsync over every operation in the batch.
pub(super) fn open_writer(path: &Path) -> rusqlite::Result<Connection> {
    restrict(path)
        .map_err(|e| rusqlite::Error::InvalidParameterName(format!("{}: {e}", path.display())))?;
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // The pages a batch touches stay cached: private messages land in
    // thousands of rooms, so a batch dirties thousands of leaf pages, and
    // with SQLite's default 2 MiB cache it spilled and re-read them (perf:
    // `pagerStress`, `pread`).
    conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
    // A checkpoint copies each page's newest version once: every 8,192 WAL
    // pages (32 MiB) instead of SQLite's 1,000, since a batch alone can
    // write 1,000 pages (perf: a checkpoint after nearly every commit, 14%
    // of the core thread, copying the same hot pages again and again).
    conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
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
