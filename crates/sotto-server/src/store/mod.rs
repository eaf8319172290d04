//! Durable storage behind one interface, with two engines: embedded SQLite
//! (the default: a file in the data dir, nothing to set up) and PostgreSQL
//! (`--database postgres://...`, the shared store of a cluster).
//!
//! Only the core thread writes, through a [`Writer`]: it opens a
//! transaction per batch, makes every change of the batch in it, and
//! commits once (group commit). Connection tasks read through [`Reads`]:
//! logins, backlogs and history pages, which see only committed data.
//!
//! Timeline entries are stored exactly as they are sent: the encoded
//! [`SharedEvent`] bytes, so a backlog is replayed without re-encoding.
//!
//! **Architecture Invariant:** SQL lives in this module only. The rest of
//! the server asks for typed operations.

mod history;
pub mod postgres;
pub mod sqlite;

use std::path::Path;

use sotto_crypto::opaque::ServerKeys;
use sotto_proto::{HistoryCursor, ServerId, SharedEvent};

pub use history::HistoryPage;
pub use sqlite::db_path;

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

/// Which engine stores the server's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Database {
    /// `sotto.db` in the data dir.
    #[default]
    Sqlite,
    /// A PostgreSQL database, by connection string
    /// (`postgres://user@host/db` or `host=/run/postgresql dbname=sotto`).
    Postgres(String),
}

impl Database {
    /// Parses `--database`: `sqlite`, or a PostgreSQL connection string.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value.eq_ignore_ascii_case("sqlite") {
            return Ok(Database::Sqlite);
        }
        if value.starts_with("postgres://")
            || value.starts_with("postgresql://")
            || value.contains("dbname=")
            || value.contains("host=")
        {
            return value
                .parse::<tokio_postgres::Config>()
                .map(|_| Database::Postgres(value.to_owned()))
                .map_err(|e| format!("not a PostgreSQL connection string: {e}"));
        }
        Err(format!(
            "'{value}' is not a database: give 'sqlite' or a PostgreSQL URL such as \
             postgres://sotto@localhost/sotto"
        ))
    }

    /// How the database is named in logs: without its password.
    pub fn describe(&self, data_dir: &Path) -> String {
        match self {
            Database::Sqlite => format!("SQLite at {}", db_path(data_dir).display()),
            Database::Postgres(url) => match url.parse::<tokio_postgres::Config>() {
                Ok(config) => {
                    let hosts: Vec<String> = config
                        .get_hosts()
                        .iter()
                        .map(|h| match h {
                            tokio_postgres::config::Host::Tcp(h) => h.clone(),
                            #[cfg(unix)]
                            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                        })
                        .collect();
                    format!(
                        "PostgreSQL database '{}' on {}",
                        config.get_dbname().unwrap_or("(default)"),
                        hosts.join(",")
                    )
                }
                Err(_) => "PostgreSQL".to_owned(),
            },
        }
    }
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

/// Where a message sent with `Request::Once` was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentOnce {
    pub room_id: u64,
    pub seq: u64,
    pub ts: i64,
}

/// A room row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRow {
    pub id: u64,
    pub kind: i64,
    pub name: Option<String>,
    pub owner: Option<i64>,
    pub user_a: Option<i64>,
    pub user_b: Option<i64>,
}

/// A room to create (its id is handed out by the store, never twice).
#[derive(Debug, Clone, Copy)]
pub struct NewRoom<'a> {
    pub kind: RoomKind,
    pub name: Option<&'a str>,
    pub owner: Option<i64>,
    pub pair: Option<(i64, i64)>,
    pub now: i64,
}

/// An event to append to a room's timeline.
#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    pub room_id: u64,
    pub seq: u64,
    pub ts: i64,
    pub body: &'a [u8],
    pub sender: i64,
}

/// Everything the core keeps in memory, as stored: read once at start
/// (and again after a failed commit).
#[derive(Debug, Default)]
pub struct Snapshot {
    /// (id, name)
    pub users: Vec<(i64, String)>,
    /// (device row id, user, device id)
    pub devices: Vec<(i64, i64, String)>,
    pub rooms: Vec<RoomRow>,
    /// (room, user, joined_seq, position)
    pub members: Vec<(u64, i64, u64, i64)>,
    /// (room, user, inviter, ts)
    pub invitations: Vec<(u64, i64, i64, i64)>,
    /// (room, newest position): a room's newest event, or the newest
    /// acknowledged position of a to-device queue whose events were pruned.
    pub last_seqs: Vec<(u64, u64)>,
    /// (device row id, room, seq)
    pub cursors: Vec<(i64, u64, u64)>,
    /// (device row id, encoded `DeviceKeys`)
    pub published_keys: Vec<(i64, Vec<u8>)>,
    /// (device row id, one-time keys left)
    pub one_time_keys: Vec<(i64, u32)>,
    /// (device row id, handed out since uploaded)
    pub fallback_keys: Vec<(i64, bool)>,
    /// (user, client id, where), oldest first per user.
    pub sent_once: Vec<(i64, u64, SentOnce)>,
    /// (room, sender, bytes of its events there)
    pub usage: Vec<(u64, Option<i64>, u64)>,
    /// (room, oldest seq, its ts)
    pub oldest: Vec<(u64, u64, i64)>,
    /// The cluster's last commit this state includes (0 outside a cluster).
    pub epoch: u64,
}

/// The core thread's access to storage: one transaction per batch.
///
/// An engine may send writes at once or hold them until the next read or
/// the commit (PostgreSQL pipelines a batch into one round trip); either
/// way nothing is visible to readers, or acknowledged, before [`commit`]
/// returns.
///
/// [`commit`]: Writer::commit
pub trait Writer: Send {
    fn begin(&mut self) -> anyhow::Result<()>;
    fn commit(&mut self) -> anyhow::Result<()>;
    /// Undoes the open transaction (after any error in it).
    fn rollback(&mut self);
    /// Reads everything the core keeps in memory.
    fn snapshot(&mut self) -> anyhow::Result<Snapshot>;

    /// A new account; its id.
    fn create_user(&mut self, name: &str, record: &[u8], now: i64) -> anyhow::Result<i64>;
    /// A new OPAQUE record (the old hash, if any, dropped); false if the
    /// account is gone.
    fn set_password(&mut self, user: i64, record: &[u8]) -> anyhow::Result<bool>;
    /// A new device of `user`; its row id.
    fn create_device(&mut self, user: i64, device: &str, now: i64) -> anyhow::Result<i64>;
    fn set_token_hash(&mut self, device_key: i64, hash: &[u8; 32]) -> anyhow::Result<()>;
    /// A device's keys, cursors and row (its inbox is a room: deleted apart).
    fn delete_device(&mut self, device_key: i64) -> anyhow::Result<()>;

    /// A new room; its id, never handed out before.
    fn create_room(&mut self, room: NewRoom<'_>) -> anyhow::Result<u64>;
    /// A room's invitations, members, cursors and row (its events apart).
    fn delete_room(&mut self, room: u64) -> anyhow::Result<()>;
    fn set_owner(&mut self, room: u64, owner: i64) -> anyhow::Result<()>;
    fn add_member(
        &mut self,
        room: u64,
        user: i64,
        joined_seq: u64,
        position: i64,
    ) -> anyhow::Result<()>;
    /// Removes a member and the positions of its devices in the room.
    fn remove_member(&mut self, room: u64, user: i64, devices: &[i64]) -> anyhow::Result<()>;
    fn add_invitation(&mut self, room: u64, user: i64, by: i64, ts: i64) -> anyhow::Result<()>;
    fn delete_invitation(&mut self, room: u64, user: i64) -> anyhow::Result<()>;

    fn insert_event(&mut self, event: NewEvent<'_>) -> anyhow::Result<()>;
    /// Sets an acknowledged position.
    fn set_cursor(&mut self, device_key: i64, room: u64, seq: u64) -> anyhow::Result<()>;
    /// Bytes of a room's events up to `up_to`, by sender.
    fn event_bytes(&mut self, room: u64, up_to: u64) -> anyhow::Result<Vec<(Option<i64>, u64)>>;
    fn delete_events(&mut self, room: u64, up_to: u64) -> anyhow::Result<()>;
    /// A room's oldest stored event: (seq, ts).
    fn oldest_event(&mut self, room: u64) -> anyhow::Result<Option<(u64, i64)>>;
    /// The newest position in `from..=to` before the first event there
    /// at or after `cutoff` (events in a room are in time order).
    fn last_before(
        &mut self,
        room: u64,
        from: u64,
        to: u64,
        cutoff: i64,
    ) -> anyhow::Result<Option<u64>>;

    fn publish_keys(&mut self, device_key: i64, body: &[u8]) -> anyhow::Result<()>;
    /// Adds a one-time key; false if one with that id is already there.
    fn add_one_time_key(
        &mut self,
        device_key: i64,
        key_id: &str,
        body: &[u8],
    ) -> anyhow::Result<bool>;
    /// Sets the fallback key (not yet handed out).
    fn set_fallback_key(&mut self, device_key: i64, body: &[u8]) -> anyhow::Result<()>;
    /// Takes one of a device's one-time keys (each is handed out once).
    fn take_one_time_key(&mut self, device_key: i64) -> anyhow::Result<Option<Vec<u8>>>;
    /// The device's fallback key, marked as handed out.
    fn use_fallback_key(&mut self, device_key: i64) -> anyhow::Result<Option<Vec<u8>>>;

    /// Remembers a message id, forgetting `evicted` (the user's oldest).
    fn record_sent_once(
        &mut self,
        user: i64,
        client_id: u64,
        sent: SentOnce,
        evicted: Option<u64>,
    ) -> anyhow::Result<()>;

    /// In a cluster, at the start of a batch: takes the cluster's commit
    /// lock (held until this transaction ends, so commits happen one at a
    /// time, in the order of their epochs), and returns the change log's
    /// entries after epoch `after`, oldest first.
    fn lock_log(&mut self, after: u64) -> anyhow::Result<Vec<Vec<u8>>> {
        let _ = after;
        anyhow::bail!("a cluster keeps its state in PostgreSQL: give --database postgres://...")
    }

    /// The change log's entries after epoch `after`, oldest first, outside
    /// a batch (committed entries have no gaps). `None` if some of them
    /// were already dropped from the log.
    fn read_log(&mut self, after: u64) -> anyhow::Result<Option<Vec<Vec<u8>>>> {
        let _ = after;
        anyhow::bail!("a cluster keeps its state in PostgreSQL: give --database postgres://...")
    }

    /// Appends the batch's entry to the change log (after [`lock_log`]),
    /// and drops entries older than `keep` epochs.
    ///
    /// [`lock_log`]: Writer::lock_log
    fn append_log(&mut self, epoch: u64, entry: &[u8], keep: u64) -> anyhow::Result<()> {
        let _ = (epoch, entry, keep);
        anyhow::bail!("a cluster keeps its state in PostgreSQL: give --database postgres://...")
    }
}

/// What a server gets from opening its database.
#[derive(Debug)]
pub struct Opened {
    pub writer: Box<dyn Writer>,
    pub reads: Reads,
    pub server_id: ServerId,
    pub opaque: ServerKeys,
    /// On PostgreSQL: the key a cluster's nodes sign their bus messages
    /// with (made once, kept in the database, so every node has it and the
    /// bus does not).
    pub bus_key: Option<[u8; 32]>,
}

impl std::fmt::Debug for dyn Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

/// Opens (creating or upgrading the schema if needed) the database, for
/// a node of a cluster if `clustered` (a PostgreSQL database is used by one
/// server alone, or by the nodes of one cluster only).
pub async fn open(database: &Database, data_dir: &Path, clustered: bool) -> anyhow::Result<Opened> {
    match database {
        Database::Sqlite => {
            // Opening SQLite is quick (the schema check), done in place.
            sqlite::open(&db_path(data_dir))
        }
        Database::Postgres(url) => postgres::open(url, clustered).await,
    }
}

/// Connection tasks' reads: logins, backlogs and history pages.
#[derive(Debug, Clone)]
pub enum Reads {
    Sqlite(sqlite::ReadPool),
    Postgres(postgres::PgReads),
}

/// Missed lobby events counted at most (counting a huge lobby costs more
/// than the number says).
pub(crate) const MAX_MISSED_COUNTED: i64 = 100_000;

impl Reads {
    /// Looks a user up by normalized name.
    pub async fn find_user(&self, name: &str) -> anyhow::Result<Option<StoredUser>> {
        match self {
            Reads::Sqlite(pool) => {
                let name = name.to_owned();
                pool.run(move |db| sqlite::find_user(db, &name)).await
            }
            Reads::Postgres(pg) => pg.find_user(name).await,
        }
    }

    /// A user and the SHA-256 of `device`'s session token, if any.
    pub async fn user_and_token(
        &self,
        name: &str,
        device: &str,
    ) -> anyhow::Result<(Option<StoredUser>, Option<Vec<u8>>)> {
        match self {
            Reads::Sqlite(pool) => {
                let (name, device) = (name.to_owned(), device.to_owned());
                pool.run(move |db| {
                    Ok((
                        sqlite::find_user(db, &name)?,
                        sqlite::device_token_hash(db, &name, &device)?,
                    ))
                })
                .await
            }
            Reads::Postgres(pg) => pg.user_and_token(name, device).await,
        }
    }

    /// The newest `limit` lobby events after position `after`, oldest
    /// first, and how many older ones after `after` there are besides (at
    /// most [`MAX_MISSED_COUNTED`]).
    pub async fn lobby_since(
        &self,
        after: u64,
        limit: usize,
    ) -> anyhow::Result<(Vec<SharedEvent>, u64)> {
        match self {
            Reads::Sqlite(pool) => {
                pool.run(move |db| sqlite::lobby_since(db, after, limit))
                    .await
            }
            Reads::Postgres(pg) => pg.lobby_since(after, limit).await,
        }
    }

    /// Events of `room` with `after < seq <= up_to`, oldest first, at most `limit`.
    pub async fn events_range(
        &self,
        room: u64,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> anyhow::Result<Vec<(u64, SharedEvent)>> {
        match self {
            Reads::Sqlite(pool) => {
                pool.run(move |db| sqlite::events_range(db, room, after, up_to, limit))
                    .await
            }
            Reads::Postgres(pg) => pg.events_range(room, after, up_to, limit).await,
        }
    }

    /// One page of a user's history: the newest `limit` events they can
    /// see (older than `before`, if given), oldest first, at most
    /// `max_bytes` of them (the newest one always, whatever its size).
    pub async fn history(
        &self,
        user_id: i64,
        limit: usize,
        before: Option<HistoryCursor>,
        max_bytes: usize,
    ) -> anyhow::Result<HistoryPage> {
        match self {
            Reads::Sqlite(pool) => {
                pool.run(move |db| sqlite::history(db, user_id, limit, before, max_bytes))
                    .await
            }
            Reads::Postgres(pg) => pg.history(user_id, limit, before, max_bytes).await,
        }
    }
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
