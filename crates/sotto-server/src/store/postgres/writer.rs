//! The core's writer on PostgreSQL: a batch's writes held and sent with
//! the `COMMIT` as one pipeline; a read inside the batch sends what is
//! held first.

use std::collections::HashMap;

use anyhow::Context as _;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use super::{Param, PgFuture, bytes, connect, pipeline, schema, seq};
use crate::store::{NewEvent, NewRoom, RoomRow, SentOnce, Snapshot, Writer};

/// The core's connection: a batch's writes are held and sent as one
/// pipeline.
pub struct PgWriter {
    client: Client,
    /// To connect again after the database went away.
    url: String,
    /// A node of a cluster (the server lock is shared).
    clustered: bool,
    /// The server's runtime, which drives the connection; the core thread
    /// blocks on it.
    rt: tokio::runtime::Handle,
    statements: HashMap<&'static str, Statement>,
    /// Statements of the open transaction not yet sent.
    held: Vec<(Statement, Vec<Param>)>,
}

impl std::fmt::Debug for PgWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgWriter")
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl PgWriter {
    /// The writer on `client` (connected to `url`), blocking on `rt`.
    pub(super) fn new(
        client: Client,
        url: String,
        clustered: bool,
        rt: tokio::runtime::Handle,
    ) -> Self {
        Self {
            client,
            url,
            clustered,
            rt,
            statements: HashMap::new(),
            held: Vec::new(),
        }
    }

    /// The prepared statement for `sql` (prepared at first use).
    fn statement(&mut self, sql: &'static str) -> anyhow::Result<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self
            .rt
            .block_on(self.client.prepare(sql))
            .with_context(|| format!("preparing {sql}"))?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Connects again if the connection broke (the database restarted).
    fn ensure_connected(&mut self) -> anyhow::Result<()> {
        if !self.client.is_closed() {
            return Ok(());
        }
        let url = self.url.clone();
        let clustered = self.clustered;
        self.client = self
            .rt
            .block_on(async {
                let client = connect(&url).await?;
                super::take_server_lock(&client, clustered).await?;
                anyhow::Ok(client)
            })
            .context("the database is unreachable")?;
        self.statements.clear();
        tracing::info!("connected to the database again");
        Ok(())
    }

    /// Holds a write until the next read or the commit.
    fn hold(&mut self, sql: &'static str, params: Vec<Param>) -> anyhow::Result<()> {
        let statement = self.statement(sql)?;
        self.held.push((statement, params));
        Ok(())
    }

    /// Sends every held write, in order, as one pipeline.
    fn send_held(&mut self) -> anyhow::Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        let client = &self.client;
        let futures = held
            .iter()
            .map(|(statement, params)| {
                Box::pin(async move {
                    let params: Vec<&(dyn ToSql + Sync)> = params
                        .iter()
                        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                        .collect();
                    client.execute(statement, &params).await
                }) as PgFuture<'_, u64>
            })
            .collect();
        self.rt.block_on(pipeline(futures))?;
        Ok(())
    }

    /// Sends what is held, then runs a query.
    fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> anyhow::Result<Vec<Row>> {
        self.send_held()?;
        let statement = self.statement(sql)?;
        Ok(self.rt.block_on(self.client.query(&statement, params))?)
    }

    /// Sends what is held, then runs a statement: how many rows it changed.
    fn execute_now(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> anyhow::Result<u64> {
        self.send_held()?;
        let statement = self.statement(sql)?;
        Ok(self.rt.block_on(self.client.execute(&statement, params))?)
    }

    fn all<T>(&mut self, sql: &'static str, map: impl Fn(&Row) -> T) -> anyhow::Result<Vec<T>> {
        Ok(self.query(sql, &[])?.iter().map(map).collect())
    }

    /// Every table the core keeps in memory (inside a read transaction).
    fn read_snapshot(&mut self) -> anyhow::Result<Snapshot> {
        let u = |v: i64| v as u64;
        Ok(Snapshot {
            users: self.all("SELECT id, name FROM users", |r| (r.get(0), r.get(1)))?,
            devices: self.all("SELECT id, user_id, device FROM devices", |r| {
                (r.get(0), r.get(1), r.get(2))
            })?,
            rooms: self.all(
                "SELECT id, kind, name, owner_id, user_a, user_b FROM rooms",
                |r| RoomRow {
                    id: u(r.get(0)),
                    kind: r.get(1),
                    name: r.get(2),
                    owner: r.get(3),
                    user_a: r.get(4),
                    user_b: r.get(5),
                },
            )?,
            members: self.all(
                "SELECT room_id, user_id, joined_seq, position FROM members",
                |r| (u(r.get(0)), r.get(1), u(r.get(2)), r.get(3)),
            )?,
            invitations: self.all(
                "SELECT room_id, user_id, inviter_id, ts FROM invitations",
                |r| (u(r.get(0)), r.get(1), r.get(2), r.get(3)),
            )?,
            last_seqs: self.all(
                "SELECT room_id, MAX(seq) FROM events GROUP BY room_id
                 UNION ALL SELECT room_id, MAX(seq) FROM cursors GROUP BY room_id",
                |r| (u(r.get(0)), u(r.get(1))),
            )?,
            cursors: self.all("SELECT device_key, room_id, seq FROM cursors", |r| {
                (r.get(0), u(r.get(1)), u(r.get(2)))
            })?,
            published_keys: self.all("SELECT device_key, body FROM published_keys", |r| {
                (r.get(0), r.get(1))
            })?,
            one_time_keys: self.all(
                "SELECT device_key, COUNT(*) FROM one_time_keys GROUP BY device_key",
                |r| (r.get(0), r.get::<_, i64>(1) as u32),
            )?,
            fallback_keys: self.all("SELECT device_key, used FROM fallback_keys", |r| {
                (r.get(0), r.get(1))
            })?,
            sent_once: self.all(
                "SELECT user_id, client_id, room_id, seq, ts FROM sent_once ORDER BY user_id, n",
                |r| {
                    (
                        r.get(0),
                        u(r.get(1)),
                        SentOnce {
                            room_id: u(r.get(2)),
                            seq: u(r.get(3)),
                            ts: r.get(4),
                        },
                    )
                },
            )?,
            usage: self.all(
                "SELECT room_id, sender_id, SUM(octet_length(body))::BIGINT FROM events \
                 GROUP BY room_id, sender_id",
                |r| (u(r.get(0)), r.get(1), u(r.get(2))),
            )?,
            oldest: self.all(
                "SELECT DISTINCT ON (room_id) room_id, seq, ts FROM events \
                 ORDER BY room_id, seq",
                |r| (u(r.get(0)), u(r.get(1)), r.get(2)),
            )?,
            epoch: self
                .all("SELECT COALESCE(MAX(epoch), 0) FROM changes", |r| {
                    u(r.get(0))
                })?
                .first()
                .copied()
                .unwrap_or(0),
        })
    }
}

impl Writer for PgWriter {
    fn begin(&mut self) -> anyhow::Result<()> {
        self.ensure_connected()?;
        self.held.clear();
        self.hold("BEGIN", Vec::new())
    }

    fn commit(&mut self) -> anyhow::Result<()> {
        self.hold("COMMIT", Vec::new())?;
        self.send_held()
    }

    fn rollback(&mut self) {
        self.held.clear();
        if !self.client.is_closed() {
            let _ = self.rt.block_on(self.client.batch_execute("ROLLBACK"));
        }
    }

    fn snapshot(&mut self) -> anyhow::Result<Snapshot> {
        // One consistent view: other nodes may be committing meanwhile.
        self.ensure_connected()?;
        self.held.clear();
        self.rt
            .block_on(
                self.client
                    .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
            )
            .context("starting to read the state")?;
        let snapshot = self.read_snapshot();
        let _ = self.rt.block_on(self.client.batch_execute("COMMIT"));
        snapshot
    }

    fn lock_log(&mut self, after: u64) -> anyhow::Result<Vec<Vec<u8>>> {
        self.hold(
            "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
            vec![Box::new(schema::COMMIT_LOCK)],
        )?;
        let rows = self.query(
            "SELECT entry FROM changes WHERE epoch > $1 ORDER BY epoch",
            &[&seq(after)],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn read_log(&mut self, after: u64) -> anyhow::Result<Option<Vec<Vec<u8>>>> {
        self.ensure_connected()?;
        let rows = self.query(
            "SELECT epoch, entry FROM changes WHERE epoch > $1 ORDER BY epoch",
            &[&seq(after)],
        )?;
        // The first one must be the next: older ones may have been dropped.
        if rows
            .first()
            .is_some_and(|r| r.get::<_, i64>(0) as u64 != after + 1)
        {
            return Ok(None);
        }
        Ok(Some(rows.iter().map(|r| r.get(1)).collect()))
    }

    fn append_log(&mut self, epoch: u64, entry: &[u8], keep: u64) -> anyhow::Result<()> {
        self.hold(
            "INSERT INTO changes (epoch, entry) VALUES ($1, $2)",
            vec![Box::new(seq(epoch)), bytes(entry)],
        )?;
        if epoch.is_multiple_of(1024) {
            self.hold(
                "DELETE FROM changes WHERE epoch <= $1",
                vec![Box::new(seq(epoch.saturating_sub(keep)))],
            )?;
        }
        Ok(())
    }

    fn create_user(&mut self, name: &str, record: &[u8], now: i64) -> anyhow::Result<i64> {
        let rows = self.query(
            "INSERT INTO users (name, pw_hash, created_at, opaque) VALUES ($1, '', $2, $3) \
             RETURNING id",
            &[&name, &now, &record],
        )?;
        first_id(&rows)
    }

    fn set_password(&mut self, user: i64, record: &[u8]) -> anyhow::Result<bool> {
        let changed = self.execute_now(
            "UPDATE users SET opaque = $1, pw_hash = '' WHERE id = $2",
            &[&record, &user],
        )?;
        Ok(changed == 1)
    }

    fn create_device(&mut self, user: i64, device: &str, now: i64) -> anyhow::Result<i64> {
        let rows = self.query(
            "INSERT INTO devices (user_id, device, created_at) VALUES ($1, $2, $3) RETURNING id",
            &[&user, &device, &now],
        )?;
        first_id(&rows)
    }

    fn set_token_hash(&mut self, device_key: i64, hash: &[u8; 32]) -> anyhow::Result<()> {
        self.hold(
            "UPDATE devices SET token_hash = $1 WHERE id = $2",
            vec![bytes(hash), Box::new(device_key)],
        )
    }

    fn delete_device(&mut self, device_key: i64) -> anyhow::Result<()> {
        for sql in [
            "DELETE FROM published_keys WHERE device_key = $1",
            "DELETE FROM one_time_keys WHERE device_key = $1",
            "DELETE FROM fallback_keys WHERE device_key = $1",
            "DELETE FROM cursors WHERE device_key = $1",
            "DELETE FROM devices WHERE id = $1",
        ] {
            self.hold(sql, vec![Box::new(device_key)])?;
        }
        Ok(())
    }

    fn create_room(&mut self, room: NewRoom<'_>) -> anyhow::Result<u64> {
        let (a, b) = (room.pair.map(|p| p.0), room.pair.map(|p| p.1));
        let rows = self.query(
            "INSERT INTO rooms (kind, name, owner_id, user_a, user_b, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[
                &(room.kind as i64),
                &room.name,
                &room.owner,
                &a,
                &b,
                &room.now,
            ],
        )?;
        Ok(first_id(&rows)? as u64)
    }

    fn delete_room(&mut self, room: u64) -> anyhow::Result<()> {
        for sql in [
            "DELETE FROM invitations WHERE room_id = $1",
            "DELETE FROM members WHERE room_id = $1",
            "DELETE FROM cursors WHERE room_id = $1",
            "DELETE FROM rooms WHERE id = $1",
        ] {
            self.hold(sql, vec![Box::new(seq(room))])?;
        }
        Ok(())
    }

    fn set_owner(&mut self, room: u64, owner: i64) -> anyhow::Result<()> {
        self.hold(
            "UPDATE rooms SET owner_id = $1 WHERE id = $2",
            vec![Box::new(owner), Box::new(seq(room))],
        )
    }

    fn add_member(
        &mut self,
        room: u64,
        user: i64,
        joined_seq: u64,
        position: i64,
    ) -> anyhow::Result<()> {
        self.hold(
            "INSERT INTO members (room_id, user_id, joined_seq, position) VALUES ($1, $2, $3, $4)",
            vec![
                Box::new(seq(room)),
                Box::new(user),
                Box::new(seq(joined_seq)),
                Box::new(position),
            ],
        )
    }

    fn remove_member(&mut self, room: u64, user: i64, devices: &[i64]) -> anyhow::Result<()> {
        self.hold(
            "DELETE FROM members WHERE room_id = $1 AND user_id = $2",
            vec![Box::new(seq(room)), Box::new(user)],
        )?;
        self.hold(
            "DELETE FROM cursors WHERE room_id = $1 AND device_key = ANY($2)",
            vec![Box::new(seq(room)), Box::new(devices.to_vec())],
        )
    }

    fn add_invitation(&mut self, room: u64, user: i64, by: i64, ts: i64) -> anyhow::Result<()> {
        self.hold(
            "INSERT INTO invitations (room_id, user_id, inviter_id, ts) VALUES ($1, $2, $3, $4)",
            vec![
                Box::new(seq(room)),
                Box::new(user),
                Box::new(by),
                Box::new(ts),
            ],
        )
    }

    fn delete_invitation(&mut self, room: u64, user: i64) -> anyhow::Result<()> {
        self.hold(
            "DELETE FROM invitations WHERE room_id = $1 AND user_id = $2",
            vec![Box::new(seq(room)), Box::new(user)],
        )
    }

    fn insert_event(&mut self, event: NewEvent<'_>) -> anyhow::Result<()> {
        self.hold(
            "INSERT INTO events (room_id, seq, ts, body, sender_id) VALUES ($1, $2, $3, $4, $5)",
            vec![
                Box::new(seq(event.room_id)),
                Box::new(seq(event.seq)),
                Box::new(event.ts),
                bytes(event.body),
                Box::new(event.sender),
            ],
        )
    }

    fn set_cursor(&mut self, device_key: i64, room: u64, at: u64) -> anyhow::Result<()> {
        self.hold(
            "INSERT INTO cursors (device_key, room_id, seq) VALUES ($1, $2, $3) \
             ON CONFLICT (device_key, room_id) DO UPDATE SET seq = excluded.seq",
            vec![Box::new(device_key), Box::new(seq(room)), Box::new(seq(at))],
        )
    }

    fn event_bytes(&mut self, room: u64, up_to: u64) -> anyhow::Result<Vec<(Option<i64>, u64)>> {
        let rows = self.query(
            "SELECT sender_id, SUM(octet_length(body))::BIGINT FROM events \
             WHERE room_id = $1 AND seq <= $2 GROUP BY sender_id",
            &[&seq(room), &seq(up_to)],
        )?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect())
    }

    fn delete_events(&mut self, room: u64, up_to: u64) -> anyhow::Result<()> {
        self.hold(
            "DELETE FROM events WHERE room_id = $1 AND seq <= $2",
            vec![Box::new(seq(room)), Box::new(seq(up_to))],
        )
    }

    fn oldest_event(&mut self, room: u64) -> anyhow::Result<Option<(u64, i64)>> {
        let rows = self.query(
            "SELECT seq, ts FROM events WHERE room_id = $1 ORDER BY seq LIMIT 1",
            &[&seq(room)],
        )?;
        Ok(rows.first().map(|r| (r.get::<_, i64>(0) as u64, r.get(1))))
    }

    fn last_before(
        &mut self,
        room: u64,
        from: u64,
        to: u64,
        cutoff: i64,
    ) -> anyhow::Result<Option<u64>> {
        // The events before the first young one, in the step's range.
        let rows = self.query(
            "SELECT MAX(seq) FROM events WHERE room_id = $1 AND seq >= $2 AND seq <= $3 \
             AND seq < COALESCE((SELECT MIN(seq) FROM events WHERE room_id = $1 \
             AND seq >= $2 AND seq <= $3 AND ts >= $4), $3 + 1)",
            &[&seq(room), &seq(from), &seq(to), &cutoff],
        )?;
        Ok(rows
            .first()
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .map(|v| v as u64))
    }

    fn publish_keys(&mut self, device_key: i64, body: &[u8]) -> anyhow::Result<()> {
        self.hold(
            "INSERT INTO published_keys (device_key, body) VALUES ($1, $2)",
            vec![Box::new(device_key), bytes(body)],
        )
    }

    fn add_one_time_key(
        &mut self,
        device_key: i64,
        key_id: &str,
        body: &[u8],
    ) -> anyhow::Result<bool> {
        let added = self.execute_now(
            "INSERT INTO one_time_keys (device_key, key_id, body) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
            &[&device_key, &key_id, &body],
        )?;
        Ok(added == 1)
    }

    fn set_fallback_key(&mut self, device_key: i64, body: &[u8]) -> anyhow::Result<()> {
        self.hold(
            "INSERT INTO fallback_keys (device_key, body, used) VALUES ($1, $2, FALSE) \
             ON CONFLICT (device_key) DO UPDATE SET body = excluded.body, used = FALSE",
            vec![Box::new(device_key), bytes(body)],
        )
    }

    fn take_one_time_key(&mut self, device_key: i64) -> anyhow::Result<Option<Vec<u8>>> {
        // Taken in one statement: two nodes claiming at once get two keys.
        let rows = self.query(
            "DELETE FROM one_time_keys WHERE (device_key, key_id) = \
             (SELECT device_key, key_id FROM one_time_keys WHERE device_key = $1 \
              ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING body",
            &[&device_key],
        )?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    fn use_fallback_key(&mut self, device_key: i64) -> anyhow::Result<Option<Vec<u8>>> {
        let rows = self.query(
            "UPDATE fallback_keys SET used = TRUE WHERE device_key = $1 RETURNING body",
            &[&device_key],
        )?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    fn record_sent_once(
        &mut self,
        user: i64,
        client_id: u64,
        sent: SentOnce,
        evicted: Option<u64>,
    ) -> anyhow::Result<()> {
        if let Some(old) = evicted {
            self.hold(
                "DELETE FROM sent_once WHERE user_id = $1 AND client_id = $2",
                vec![Box::new(user), Box::new(old as i64)],
            )?;
        }
        self.hold(
            "INSERT INTO sent_once (user_id, client_id, room_id, seq, ts) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, client_id) DO UPDATE \
             SET room_id = excluded.room_id, seq = excluded.seq, ts = excluded.ts, \
             n = nextval(pg_get_serial_sequence('sent_once', 'n'))",
            vec![
                Box::new(user),
                Box::new(client_id as i64),
                Box::new(seq(sent.room_id)),
                Box::new(seq(sent.seq)),
                Box::new(sent.ts),
            ],
        )
    }
}

/// The id a `RETURNING id` gave.
fn first_id(rows: &[Row]) -> anyhow::Result<i64> {
    rows.first()
        .map(|r| r.get(0))
        .ok_or_else(|| anyhow::anyhow!("the database returned no id"))
}
