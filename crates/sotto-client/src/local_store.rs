//! The client's local store: one SQLite database per account and server in
//! the data dir (`stores/USER@server-ID.db`, named by the server's id), holding this device's keys and
//! sessions, the contacts' pinned keys, the decrypted history of private and
//! group rooms, and messages waiting for a room key.
//!
//! Everything secret is sealed at rest, record by record, under a key
//! derived from the account password (`sotto_crypto::at_rest`); each record
//! is bound to its table and key, so records cannot be swapped or moved.
//! What stays readable is what the server knows too: room ids, positions in
//! a room's timeline, server times and Megolm session ids.
//!
//! A save is one SQLite transaction (WAL, `synchronous = FULL`): the end-to-end
//! state, the history it decrypted and the positions it reached land together
//! or not at all, and are on disk before the client acknowledges anything to
//! the server, so after a crash (or a power cut) the state never disagrees
//! with what was acknowledged: the server forgets a to-device message once
//! acknowledged, and a room key lost here would leave messages unreadable.
//!
//! A store written before this one (a single sealed file at the same path
//! without `.db`) is read once and moved into the database.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use sotto_crypto::at_rest::{self, AtRestError, DeviceKey, StoreKey};
use sotto_proto::Username;
use zeroize::Zeroizing;

use crate::device::create_private_dir;

/// Decrypted messages kept per room; older ones are forgotten.
pub const MAX_HISTORY_PER_ROOM: u32 = 10_000;
/// A room's history is trimmed to [`MAX_HISTORY_PER_ROOM`] at its first
/// message of a session and then every this many (trimming walks the room's
/// index, so not at every message).
const TRIM_EVERY: u32 = 256;

/// What the `check` record holds: opening it proves the password.
const CHECK: &[u8] = b"sotto local store";
/// Version 2 added who sent each held message (`held.sender_user`,
/// `held.sender_device`: held messages are bounded per sending device) and
/// the `replay` record kind; a version 1 store is moved up on open.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
-- Sealed state records: the account ('account', ''), each peer device's Olm
-- sessions ('olm', its Curve25519 key), each inbound room session
-- ('inbound': room id, its sender's Curve25519 key and the session id) and
-- its replay window ('replay', the same id), pinned keys ('trust', '').
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    id BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
-- The highest event of each room this device has handled: redeliveries at
-- or below it are not shown again.
CREATE TABLE IF NOT EXISTS positions (
    room_id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL
);
-- Decrypted private and group messages (sealed), by room position. (A
-- rowid table: walking its indexes never reads the messages themselves.)
CREATE TABLE IF NOT EXISTS history (
    room_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value BLOB NOT NULL,
    UNIQUE (room_id, seq)
);
CREATE INDEX IF NOT EXISTS history_by_time ON history (ts, room_id, seq);
-- Messages that arrived before their room key (sealed: the event as the
-- server encoded it), until it comes; by the device that sent them (as the
-- server says), whose share is bounded.
CREATE TABLE IF NOT EXISTS held (
    room_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    session_id TEXT NOT NULL,
    value BLOB NOT NULL,
    sender_user TEXT NOT NULL DEFAULT '',
    sender_device TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (room_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS held_by_session ON held (room_id, session_id);
";

/// Moves a version 1 store up to version 2.
const MIGRATE_1_TO_2: &str = "
ALTER TABLE held ADD COLUMN sender_user TEXT NOT NULL DEFAULT '';
ALTER TABLE held ADD COLUMN sender_device TEXT NOT NULL DEFAULT '';
";

/// Why the local store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Locked(#[from] AtRestError),
    #[error("the local store's contents are unreadable: {0}")]
    Corrupt(String),
    #[error("local store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("local store {path}: {source}")]
    Db {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("the local store is closed")]
    Closed,
    /// The store cannot be opened without the password (it was not
    /// remembered, the remembered key is not its own, or a password change
    /// is in progress).
    #[error("this device's saved sign-in cannot open its local store")]
    PasswordNeeded,
}

/// What opens a store.
#[derive(Debug, Clone, Copy)]
enum Unlock<'a> {
    Password(&'a str),
    Remembered(&'a DeviceKey),
}

/// The store of `user` on the server named `server` (see
/// [`crate::device::server_part`]).
pub fn store_file(data_dir: &Path, user: &Username, server: &str) -> PathBuf {
    data_dir.join("stores").join(format!("{user}@{server}.db"))
}

/// Whether there is a store (or one written as one file) at `path`.
pub fn store_exists(path: &Path) -> bool {
    path.exists() || legacy_file(path).exists()
}

/// Where a store written as one sealed file lived (moved into the database
/// on first open).
fn legacy_file(path: &Path) -> PathBuf {
    path.with_extension("")
}

/// The kinds of state records (the `kind` column).
pub mod kind {
    /// The Olm account (one record, empty id).
    pub const ACCOUNT: &str = "account";
    /// One peer device's Olm sessions (id: its Curve25519 key).
    pub const OLM: &str = "olm";
    /// One inbound Megolm session (id: room id, big-endian, its sender's
    /// Curve25519 key, then session id; before version 2 without the key).
    pub const INBOUND: &str = "inbound";
    /// One inbound Megolm session's replay window (same id as its session).
    pub const REPLAY: &str = "replay";
    /// The pinned contact keys (one record, empty id).
    pub const TRUST: &str = "trust";
    pub(super) const ALL: [&str; 5] = [ACCOUNT, OLM, INBOUND, REPLAY, TRUST];
}

/// A state record's place: what it is ([`kind`]), and which one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordKey {
    pub kind: &'static str,
    pub id: Vec<u8>,
}

/// A decrypted message as stored: its room position, server time and the
/// client's serialized entry.
#[derive(Debug)]
pub struct HistoryRow {
    pub room_id: u64,
    pub seq: u64,
    pub ts: i64,
    pub entry: Zeroizing<Vec<u8>>,
}

/// A message waiting for the room key of `session_id`, sent (the server
/// says) by `sender_user`'s device `sender_device`.
#[derive(Debug)]
pub struct HeldRow {
    pub room_id: u64,
    pub seq: u64,
    pub session_id: String,
    pub sender_user: String,
    pub sender_device: String,
    pub event: Zeroizing<Vec<u8>>,
}

/// What is known of a held message without opening it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldMeta {
    pub room_id: u64,
    pub seq: u64,
    pub session_id: String,
    pub sender_user: String,
    pub sender_device: String,
    /// Bytes it takes (sealed).
    pub size: usize,
}

/// Everything one save writes, in order: a later write of the same record
/// or position replaces an earlier one.
#[derive(Debug, Default)]
pub struct Changes {
    /// Forget every state record first (they belonged to another device).
    pub clear_records: bool,
    /// State records to forget (kept under another id now).
    pub forget: Vec<RecordKey>,
    pub records: Vec<(RecordKey, Zeroizing<Vec<u8>>)>,
    pub positions: Vec<(u64, u64)>,
    pub history: Vec<HistoryRow>,
    pub held: Vec<HeldRow>,
    /// Held messages that were shown (their key came) or given up on.
    pub unheld: Vec<(u64, u64)>,
    /// Received files to keep until the user answers.
    pub offers: Vec<OfferRow>,
    /// Waiting files that were accepted or rejected, by id.
    pub unoffered: Vec<u64>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        !self.clear_records
            && self.forget.is_empty()
            && self.records.is_empty()
            && self.positions.is_empty()
            && self.history.is_empty()
            && self.held.is_empty()
            && self.unheld.is_empty()
            && self.offers.is_empty()
            && self.unoffered.is_empty()
    }

    /// Puts `newer` after these changes (for a save that failed and must
    /// be written again before what came since).
    pub fn then(mut self, newer: Changes) -> Changes {
        if newer.clear_records {
            self.clear_records = true;
            self.records.clear();
        }
        self.forget.extend(newer.forget);
        self.records.extend(newer.records);
        self.positions.extend(newer.positions);
        self.history.extend(newer.history);
        self.held.extend(newer.held);
        self.unheld.extend(newer.unheld);
        self.offers.extend(newer.offers);
        self.unoffered.extend(newer.unoffered);
        self
    }
}

/// What a store held when it was opened.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every state record, opened.
    pub records: Vec<(RecordKey, Zeroizing<Vec<u8>>)>,
    pub positions: HashMap<u64, u64>,
    /// Every held message.
    pub held: Vec<HeldMeta>,
    /// The contents of a store written as one file, to move over (the
    /// file is removed after the first save).
    pub legacy: Option<Zeroizing<Vec<u8>>>,
    /// Received files waiting for an answer.
    pub offers: Vec<Offer>,
    /// The id the next waiting file gets.
    pub next_offer: u64,
}

/// An open (unlocked) store.
#[derive(Debug)]
pub struct LocalStore {
    path: PathBuf,
    conn: Connection,
    key: StoreKey,
    /// A store written as one file, removed once its contents are saved here.
    legacy: Option<PathBuf>,
    /// Messages added per room since it was last trimmed.
    untrimmed: HashMap<u64, u32>,
    /// The new key of a password change in progress, once known.
    next: Option<StoreKey>,
    /// A password change in progress, and which password opened the store.
    pending: Option<Opened>,
}

fn record_context(key: &RecordKey) -> Vec<u8> {
    let mut context = format!("records/{}/", key.kind).into_bytes();
    context.extend_from_slice(&key.id);
    context
}

fn history_context(room_id: u64, seq: u64) -> Vec<u8> {
    format!("history/{room_id}/{seq}").into_bytes()
}

fn held_context(room_id: u64, seq: u64, session_id: &str) -> Vec<u8> {
    format!("held/{room_id}/{seq}/{session_id}").into_bytes()
}

/// SQLite stores integers as i64; positions and ids fit (the server hands
/// out ids from 1 up, and refuses to exceed `i64::MAX` itself).
fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn uint(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

impl LocalStore {
    /// Unlocks the store at `path` with `password` and reads its state; a
    /// store that does not exist yet is created (moving over a store
    /// written as one file, if there is one).
    pub fn open(path: &Path, password: &str) -> Result<(Self, Loaded), StoreError> {
        Self::open_with(path, Unlock::Password(password))
    }

    /// Unlocks the store at `path` with the device key kept when its user
    /// asked to be remembered ([`LocalStore::remember`]); a store that
    /// does not exist, was not remembered, or is in the middle of a
    /// password change needs the password ([`StoreError::PasswordNeeded`]).
    pub fn open_remembered(path: &Path, key: &DeviceKey) -> Result<(Self, Loaded), StoreError> {
        if !path.exists() || legacy_file(path).exists() {
            return Err(StoreError::PasswordNeeded);
        }
        Self::open_with(path, Unlock::Remembered(key))
    }

    fn open_with(path: &Path, unlock: Unlock<'_>) -> Result<(Self, Loaded), StoreError> {
        let io = |source| StoreError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent() {
            create_private_dir(parent).map_err(io)?;
        }
        let db = |source| StoreError::Db {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(db)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .map_err(db)?;
        #[cfg(unix)]
        restrict_permissions(path).map_err(io)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        conn.execute_batch(offers::SCHEMA).map_err(db)?;
        let header: Option<Vec<u8>> = conn
            .query_row("SELECT value FROM meta WHERE name = 'header'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db)?;
        // A store written as one file is read until its contents are saved
        // here (it is removed after that write).
        let old = legacy_file(path);
        let password = match unlock {
            Unlock::Password(password) => password,
            Unlock::Remembered(device) => {
                let key = account::remembered_key(&conn, device).map_err(db)?;
                return Self::open_unlocked(path, conn, key?);
            }
        };
        let legacy = match std::fs::read(&old) {
            Ok(file) => Some(at_rest::open(password, &file)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(StoreError::Io {
                    path: old,
                    source: e,
                });
            }
        };
        let mut loaded = Loaded::default();
        let (mut next, mut pending) = (None, None);
        let key = match header {
            Some(header) => {
                let key = StoreKey::unlock(password, &header)?;
                let check: Vec<u8> = conn
                    .query_row("SELECT value FROM meta WHERE name = 'check'", [], |r| {
                        r.get(0)
                    })
                    .map_err(db)?;
                let key = match key.open_record(b"meta/check", &check) {
                    Ok(_) => {
                        if account::has_next(&conn).map_err(db)? {
                            pending = Some(Opened::Current);
                        }
                        key
                    }
                    // Perhaps the new password of an interrupted change.
                    Err(wrong) => match account::open_next(&conn, password)? {
                        Some((current, new)) => {
                            next = Some(new);
                            pending = Some(Opened::Next);
                            current
                        }
                        None => return Err(wrong.into()),
                    },
                };
                let schema: Option<Vec<u8>> = conn
                    .query_row("SELECT value FROM meta WHERE name = 'schema'", [], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(db)?;
                let version = schema
                    .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                    .map(i64::from_be_bytes);
                match version {
                    Some(SCHEMA_VERSION) => {}
                    Some(1) => migrate_1_to_2(&conn).map_err(db)?,
                    _ => {
                        return Err(StoreError::Corrupt(format!(
                            "the store has layout version {version:?}; this client reads version \
                             {SCHEMA_VERSION} (was it written by a newer Sotto?)"
                        )));
                    }
                }
                loaded.legacy = legacy.map(|(_, plain)| plain);
                key
            }
            None => {
                let key = match legacy {
                    Some((key, plain)) => {
                        loaded.legacy = Some(plain);
                        key
                    }
                    None => StoreKey::create(password),
                };
                conn.execute(
                    "INSERT INTO meta (name, value) VALUES ('header', ?1), ('check', ?2), \
                     ('schema', ?3)",
                    params![
                        key.header(),
                        key.seal_record(b"meta/check", CHECK),
                        SCHEMA_VERSION.to_be_bytes().as_slice()
                    ],
                )
                .map_err(db)?;
                key
            }
        };
        let store = Self {
            path: path.to_owned(),
            conn,
            key,
            legacy: loaded.legacy.is_some().then_some(old),
            untrimmed: HashMap::new(),
            next,
            pending,
        };
        store.finish_open(loaded)
    }

    /// Opens a store whose key came from a remembered device key: it must
    /// be this store's (its check record opens), of this layout version,
    /// and not in the middle of a password change.
    fn open_unlocked(
        path: &Path,
        conn: Connection,
        key: StoreKey,
    ) -> Result<(Self, Loaded), StoreError> {
        let db = |source| StoreError::Db {
            path: path.to_owned(),
            source,
        };
        let check: Vec<u8> = conn
            .query_row("SELECT value FROM meta WHERE name = 'check'", [], |r| {
                r.get(0)
            })
            .map_err(db)?;
        key.open_record(b"meta/check", &check)
            .map_err(|_| StoreError::PasswordNeeded)?;
        let schema: Option<Vec<u8>> = conn
            .query_row("SELECT value FROM meta WHERE name = 'schema'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db)?;
        let current = schema.as_deref() == Some(SCHEMA_VERSION.to_be_bytes().as_slice());
        if !current || account::has_next(&conn).map_err(db)? {
            return Err(StoreError::PasswordNeeded);
        }
        let store = Self {
            path: path.to_owned(),
            conn,
            key,
            legacy: None,
            untrimmed: HashMap::new(),
            next: None,
            pending: None,
        };
        store.finish_open(Loaded::default())
    }

    /// Reads the state of a store just unlocked.
    fn finish_open(mut self, mut loaded: Loaded) -> Result<(Self, Loaded), StoreError> {
        let store = &mut self;
        store.load(&mut loaded)?;
        if loaded.records.iter().any(|(k, _)| k.kind == "account") && loaded.legacy.is_some() {
            // Moved over before, but not removed yet: the database is newer.
            loaded.legacy = None;
            store.remove_legacy();
        }
        Ok((self, loaded))
    }

    fn remove_legacy(&mut self) {
        if let Some(old) = self.legacy.take()
            && let Err(e) = std::fs::remove_file(&old)
        {
            tracing::warn!(path = %old.display(), "could not remove the old store file: {e}");
        }
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Db {
            path: self.path.clone(),
            source,
        }
    }

    fn load(&self, loaded: &mut Loaded) -> Result<(), StoreError> {
        let db = self.db();
        let mut records = self
            .conn
            .prepare("SELECT kind, id, value FROM records")
            .map_err(&db)?;
        let rows = records
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(&db)?;
        for row in rows {
            let (kind, id, value) = row.map_err(&db)?;
            let Some(kind) = known_kind(&kind) else {
                return Err(StoreError::Corrupt(format!("unknown record kind {kind:?}")));
            };
            let key = RecordKey { kind, id };
            let plain = self.key.open_record(&record_context(&key), &value)?;
            loaded.records.push((key, plain));
        }
        let mut positions = self
            .conn
            .prepare("SELECT room_id, seq FROM positions")
            .map_err(&db)?;
        for row in positions
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .map_err(&db)?
        {
            let (room, seq) = row.map_err(&db)?;
            loaded.positions.insert(uint(room), uint(seq));
        }
        let mut held = self
            .conn
            .prepare(
                "SELECT room_id, session_id, seq, sender_user, sender_device, length(value) \
                 FROM held",
            )
            .map_err(&db)?;
        for row in held
            .query_map([], |r| {
                Ok(HeldMeta {
                    room_id: uint(r.get::<_, i64>(0)?),
                    session_id: r.get(1)?,
                    seq: uint(r.get::<_, i64>(2)?),
                    sender_user: r.get(3)?,
                    sender_device: r.get(4)?,
                    size: usize::try_from(r.get::<_, i64>(5)?).unwrap_or_default(),
                })
            })
            .map_err(&db)?
        {
            loaded.held.push(row.map_err(&db)?);
        }
        self.load_offers(loaded)
    }

    /// Writes `changes` in one transaction, sealing what is secret.
    pub fn write(&mut self, changes: &Changes) -> Result<(), StoreError> {
        let path = self.path.clone();
        let db = |source| StoreError::Db {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(db)?;
        if changes.clear_records {
            tx.execute("DELETE FROM records", []).map_err(db)?;
        }
        for key in &changes.forget {
            tx.execute(
                "DELETE FROM records WHERE kind = ?1 AND id = ?2",
                params![key.kind, key.id],
            )
            .map_err(db)?;
        }
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO records (kind, id, value) VALUES (?1, ?2, ?3)",
                )
                .map_err(db)?;
            for (key, plain) in &changes.records {
                let sealed = self.key.seal_record(&record_context(key), plain);
                put.execute(params![key.kind, key.id, sealed]).map_err(db)?;
            }
            let mut position = tx
                .prepare_cached(
                    "INSERT INTO positions (room_id, seq) VALUES (?1, ?2) \
                     ON CONFLICT (room_id) DO UPDATE SET seq = max(seq, excluded.seq)",
                )
                .map_err(db)?;
            for (room, seq) in &changes.positions {
                position
                    .execute(params![int(*room), int(*seq)])
                    .map_err(db)?;
            }
            let mut history = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO history (room_id, seq, ts, value) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(db)?;
            let mut trim = BTreeSet::new();
            for row in &changes.history {
                let sealed = self
                    .key
                    .seal_record(&history_context(row.room_id, row.seq), &row.entry);
                history
                    .execute(params![int(row.room_id), int(row.seq), row.ts, sealed])
                    .map_err(db)?;
                let added = self.untrimmed.entry(row.room_id).or_insert(TRIM_EVERY);
                *added += 1;
                if *added > TRIM_EVERY {
                    *added = 0;
                    trim.insert(row.room_id);
                }
            }
            let mut prune = tx
                .prepare_cached(
                    "DELETE FROM history WHERE room_id = ?1 AND seq < (SELECT seq FROM history \
                     WHERE room_id = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
                )
                .map_err(db)?;
            for room in trim {
                prune
                    .execute(params![int(room), MAX_HISTORY_PER_ROOM - 1])
                    .map_err(db)?;
            }
            let mut hold = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO held \
                     (room_id, seq, session_id, value, sender_user, sender_device) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(db)?;
            for row in &changes.held {
                let sealed = self.key.seal_record(
                    &held_context(row.room_id, row.seq, &row.session_id),
                    &row.event,
                );
                hold.execute(params![
                    int(row.room_id),
                    int(row.seq),
                    row.session_id,
                    sealed,
                    row.sender_user,
                    row.sender_device
                ])
                .map_err(db)?;
            }
            let mut unhold = tx
                .prepare_cached("DELETE FROM held WHERE room_id = ?1 AND seq = ?2")
                .map_err(db)?;
            for (room, seq) in &changes.unheld {
                unhold.execute(params![int(*room), int(*seq)]).map_err(db)?;
            }
        }
        offers::write(&tx, &self.key, changes).map_err(db)?;
        tx.commit().map_err(db)?;
        // A store written as one file: its contents are in the database now.
        self.remove_legacy();
        Ok(())
    }

    /// The newest `limit` decrypted messages (older than `before`, a
    /// (time, room, position), if given), oldest first.
    pub fn recent_history(
        &self,
        limit: u32,
        before: Option<(i64, u64, u64)>,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let db = self.db();
        let mut query = self
            .conn
            .prepare_cached(
                "SELECT room_id, seq, ts, value FROM history \
                 WHERE (ts, room_id, seq) < (?2, ?3, ?4) \
                 ORDER BY ts DESC, room_id DESC, seq DESC LIMIT ?1",
            )
            .map_err(&db)?;
        let (ts, room, seq) = before.map_or((i64::MAX, i64::MAX, i64::MAX), |(ts, room, seq)| {
            (ts, room as i64, seq as i64)
        });
        let rows = query
            .query_map(params![limit, ts, room, seq], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            })
            .map_err(&db)?;
        let mut out = Vec::new();
        for row in rows {
            let (room, seq, ts, sealed) = row.map_err(&db)?;
            out.push(self.history_row(uint(room), uint(seq), ts, &sealed)?);
        }
        out.reverse();
        Ok(out)
    }

    /// The decrypted messages stored at these positions (those that are).
    pub fn history_at(&self, positions: &[(u64, u64)]) -> Result<Vec<HistoryRow>, StoreError> {
        let db = self.db();
        let mut query = self
            .conn
            .prepare_cached("SELECT ts, value FROM history WHERE room_id = ?1 AND seq = ?2")
            .map_err(&db)?;
        let mut out = Vec::new();
        for (room, seq) in positions {
            let found = query
                .query_row(params![int(*room), int(*seq)], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .optional()
                .map_err(&db)?;
            if let Some((ts, sealed)) = found {
                out.push(self.history_row(*room, *seq, ts, &sealed)?);
            }
        }
        Ok(out)
    }

    fn history_row(
        &self,
        room_id: u64,
        seq: u64,
        ts: i64,
        sealed: &[u8],
    ) -> Result<HistoryRow, StoreError> {
        let entry = self
            .key
            .open_record(&history_context(room_id, seq), sealed)?;
        Ok(HistoryRow {
            room_id,
            seq,
            ts,
            entry,
        })
    }

    /// The messages held for the key of `session_id` in `room_id`, in
    /// timeline order.
    pub fn held_for(&self, room_id: u64, session_id: &str) -> Result<Vec<HeldRow>, StoreError> {
        let db = self.db();
        let mut query = self
            .conn
            .prepare_cached(
                "SELECT seq, value, sender_user, sender_device FROM held \
                 WHERE room_id = ?1 AND session_id = ?2 ORDER BY seq",
            )
            .map_err(&db)?;
        let rows = query
            .query_map(params![int(room_id), session_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(&db)?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, sealed, sender_user, sender_device) = row.map_err(&db)?;
            let seq = uint(seq);
            let event = self
                .key
                .open_record(&held_context(room_id, seq, session_id), &sealed)?;
            out.push(HeldRow {
                room_id,
                seq,
                session_id: session_id.to_owned(),
                sender_user,
                sender_device,
                event,
            });
        }
        Ok(out)
    }
}

/// Adds the columns version 2 has (`CREATE TABLE IF NOT EXISTS` kept the
/// old `held` table), in one transaction with the new version number.
fn migrate_1_to_2(conn: &Connection) -> rusqlite::Result<()> {
    let has_sender: i64 = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('held') WHERE name = 'sender_user'",
        [],
        |r| r.get(0),
    )?;
    conn.execute_batch("BEGIN")?;
    let result = (|| {
        if has_sender == 0 {
            conn.execute_batch(MIGRATE_1_TO_2)?;
        }
        conn.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'schema'",
            params![SCHEMA_VERSION.to_be_bytes().as_slice()],
        )?;
        conn.execute_batch("COMMIT")
    })();
    if result.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

fn known_kind(name: &str) -> Option<&'static str> {
    kind::ALL.into_iter().find(|k| *k == name)
}

/// The database and its WAL hold sealed records, but their layout says
/// which rooms were active when: owner-only, like the rest of the data dir.
#[cfg(unix)]
fn restrict_permissions(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

mod account;
mod offers;
pub use account::{Opened, Session};
pub use offers::{
    MAX_OFFERED_BYTES, MAX_OFFERED_BYTES_PER_SENDER, MAX_OFFERS, MAX_OFFERS_PER_SENDER, Offer,
    OfferRow,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &'static str, id: &[u8], value: &str) -> (RecordKey, Zeroizing<Vec<u8>>) {
        (
            RecordKey {
                kind,
                id: id.to_vec(),
            },
            Zeroizing::new(value.as_bytes().to_vec()),
        )
    }

    fn row(room_id: u64, seq: u64, text: &str) -> HistoryRow {
        HistoryRow {
            room_id,
            seq,
            ts: 1000 + seq as i64,
            entry: Zeroizing::new(text.as_bytes().to_vec()),
        }
    }

    fn contains(path: &Path, needle: &str) -> bool {
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        [path.to_owned(), wal].iter().any(|p| {
            std::fs::read(p)
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
        })
    }

    #[test]
    fn a_store_round_trips_only_with_its_password_and_holds_no_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stores").join("alice@example.db");
        let (mut store, loaded) = LocalStore::open(&path, "pw-alice").unwrap();
        assert!(loaded.records.is_empty() && loaded.legacy.is_none());
        let changes = Changes {
            records: vec![record("account", b"", "olm-account-secret")],
            positions: vec![(7, 3), (7, 2)],
            history: vec![row(7, 3, "meet at noon")],
            ..Changes::default()
        };
        store.write(&changes).unwrap();
        assert!(!contains(&path, "noon") && !contains(&path, "olm-account-secret"));
        drop(store);

        let (store, loaded) = LocalStore::open(&path, "pw-alice").unwrap();
        assert_eq!(loaded.records.len(), 1);
        assert_eq!(loaded.records[0].1.as_slice(), b"olm-account-secret");
        // A position only moves forward.
        assert_eq!(loaded.positions.get(&7), Some(&3));
        let history = store.recent_history(10, None).unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].entry.as_slice(), b"meet at noon");
        drop(store);

        let err = LocalStore::open(&path, "not-the-password").unwrap_err();
        assert!(err.to_string().contains("wrong password"), "{err}");

        // A layout this client does not know is refused, not misread.
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'schema'",
            params![(SCHEMA_VERSION + 1).to_be_bytes().as_slice()],
        )
        .unwrap();
        drop(conn);
        let err = LocalStore::open(&path, "pw-alice").unwrap_err();
        assert!(err.to_string().contains("layout version"), "{err}");
    }

    #[test]
    fn history_is_newest_first_bounded_and_found_by_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let (mut store, _) = LocalStore::open(&path, "pw").unwrap();
        let history = (1..=5).map(|seq| row(1, seq, &format!("m{seq}"))).collect();
        store
            .write(&Changes {
                history,
                ..Changes::default()
            })
            .unwrap();
        let last: Vec<u64> = store
            .recent_history(2, None)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(last, vec![4, 5]);
        let found = store.history_at(&[(1, 2), (1, 9), (2, 2)]).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].entry.as_slice(), b"m2");
        // A row moved to another position does not open there.
        let sealed: Vec<u8> = store
            .conn
            .query_row(
                "SELECT value FROM history WHERE room_id = 1 AND seq = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        store
            .conn
            .execute(
                "UPDATE history SET value = ?1 WHERE room_id = 1 AND seq = 2",
                params![sealed],
            )
            .unwrap();
        let err = store.history_at(&[(1, 2)]).unwrap_err();
        assert!(err.to_string().contains("changed"), "{err}");
    }

    #[test]
    fn held_messages_wait_by_session_until_unheld() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let (mut store, _) = LocalStore::open(&path, "pw").unwrap();
        let held = |seq, session: &str| HeldRow {
            room_id: 4,
            seq,
            session_id: session.into(),
            sender_user: "alice".into(),
            sender_device: "ALICEDEV".into(),
            event: Zeroizing::new(format!("event {seq}").into_bytes()),
        };
        store
            .write(&Changes {
                held: vec![held(2, "s1"), held(1, "s1"), held(3, "s2")],
                ..Changes::default()
            })
            .unwrap();
        drop(store);
        let (mut store, loaded) = LocalStore::open(&path, "pw").unwrap();
        let mut s1: Vec<u64> = loaded
            .held
            .iter()
            .filter(|h| h.session_id == "s1")
            .map(|h| h.seq)
            .collect();
        s1.sort_unstable();
        assert_eq!(s1, vec![1, 2]);
        assert!(
            loaded
                .held
                .iter()
                .all(|h| h.sender_user == "alice" && h.size > 7)
        );
        let rows = store.held_for(4, "s1").unwrap();
        assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2]);
        store
            .write(&Changes {
                unheld: vec![(4, 1), (4, 2)],
                ..Changes::default()
            })
            .unwrap();
        assert!(store.held_for(4, "s1").unwrap().is_empty());
        assert_eq!(store.held_for(4, "s2").unwrap().len(), 1);
    }

    #[test]
    fn a_version_1_store_is_moved_up_and_keeps_its_held_messages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(LocalStore::open(&path, "pw").unwrap());
        // Make it what version 1 wrote: `held` without senders.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE held; CREATE TABLE held (room_id INTEGER NOT NULL, \
             seq INTEGER NOT NULL, session_id TEXT NOT NULL, value BLOB NOT NULL, \
             PRIMARY KEY (room_id, seq)) WITHOUT ROWID; \
             INSERT INTO held VALUES (3, 9, 's', x'00');",
        )
        .unwrap();
        conn.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'schema'",
            params![1i64.to_be_bytes().as_slice()],
        )
        .unwrap();
        drop(conn);
        let (_, loaded) = LocalStore::open(&path, "pw").unwrap();
        assert_eq!(loaded.held.len(), 1);
        assert_eq!(
            (loaded.held[0].seq, loaded.held[0].sender_user.as_str()),
            (9, "")
        );
        // And opens again as version 2.
        let (_, loaded) = LocalStore::open(&path, "pw").unwrap();
        assert_eq!(loaded.held.len(), 1);
    }

    #[test]
    fn a_store_written_as_one_file_is_moved_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice@example.db");
        let key = StoreKey::create("pw");
        std::fs::write(legacy_file(&path), key.seal(b"{\"old\":true}")).unwrap();
        let (mut store, loaded) = LocalStore::open(&path, "pw").unwrap();
        assert_eq!(
            loaded.legacy.as_deref().map(Vec::as_slice),
            Some(&b"{\"old\":true}"[..])
        );
        store
            .write(&Changes {
                records: vec![record("trust", b"", "{}")],
                ..Changes::default()
            })
            .unwrap();
        assert!(!legacy_file(&path).exists(), "removed once moved");
        drop(store);
        let (_, loaded) = LocalStore::open(&path, "pw").unwrap();
        assert!(loaded.legacy.is_none());
        assert_eq!(loaded.records.len(), 1);
    }
}
