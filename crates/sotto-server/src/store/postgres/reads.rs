//! Reads of connection tasks: a few connections, used in turn, each with
//! its statements prepared once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sotto_proto::{HistoryCursor, SharedEvent};
use tokio_postgres::{Client, Statement};

use super::{PgFuture, connect, pipeline, seq};
use crate::store::{HistoryPage, LOBBY_ROOM, MAX_MISSED_COUNTED, StoredUser, history};

/// Connections for reads.
const READERS: usize = 4;

/// A reading connection and its statements.
struct Reader {
    client: Client,
    find_user: Statement,
    token_hash: Statement,
    lobby_since: Statement,
    range: Statement,
    history_rooms: Statement,
    history_page: Statement,
    oldest: Statement,
}

impl Reader {
    async fn open(url: &str) -> anyhow::Result<Self> {
        let client = connect(url).await?;
        Ok(Self {
            find_user: client
                .prepare("SELECT id, pw_hash, opaque FROM users WHERE name = $1")
                .await?,
            token_hash: client
                .prepare(
                    "SELECT d.token_hash FROM devices d JOIN users u ON u.id = d.user_id \
                     WHERE u.name = $1 AND d.device = $2",
                )
                .await?,
            lobby_since: client
                .prepare(
                    "WITH newest AS (SELECT seq, body FROM events WHERE room_id = $1 \
                     AND seq > $2 ORDER BY seq DESC LIMIT $3) \
                     SELECT seq, body, (SELECT COUNT(*) FROM (SELECT 1 FROM events \
                     WHERE room_id = $1 AND seq > $2 AND seq < (SELECT MIN(seq) FROM newest) \
                     LIMIT $4) AS missed) FROM newest ORDER BY seq DESC",
                )
                .await?,
            range: client
                .prepare(
                    "SELECT seq, body FROM events WHERE room_id = $1 AND seq > $2 \
                     AND seq <= $3 ORDER BY seq LIMIT $4",
                )
                .await?,
            // Not the to-device queues: they hold key material for one
            // device, not history.
            history_rooms: client
                .prepare(
                    "SELECT m.room_id, m.joined_seq FROM members m \
                     JOIN rooms r ON r.id = m.room_id WHERE m.user_id = $1 AND r.kind != 4",
                )
                .await?,
            history_page: client
                .prepare(
                    "SELECT ts, seq, body FROM events WHERE room_id = $1 AND seq > $2 \
                     AND (ts, $1, seq) < ($4, $5, $6) ORDER BY seq DESC LIMIT $3",
                )
                .await?,
            oldest: client
                .prepare("SELECT MIN(seq) FROM events WHERE room_id = $1")
                .await?,
            client,
        })
    }
}

/// Reading connections shared by connection tasks, used in turn; one that
/// broke is opened again at its next use.
#[derive(Clone)]
pub struct PgReads {
    url: Arc<String>,
    readers: Arc<Vec<Mutex<Option<Arc<Reader>>>>>,
    next: Arc<AtomicUsize>,
}

impl std::fmt::Debug for PgReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgReads").finish_non_exhaustive()
    }
}

impl PgReads {
    pub(super) async fn open(url: &str) -> anyhow::Result<Self> {
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(Mutex::new(Some(Arc::new(Reader::open(url).await?))));
        }
        Ok(Self {
            url: Arc::new(url.to_owned()),
            readers: Arc::new(readers),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The next reader in turn, opened again if it broke.
    async fn reader(&self) -> anyhow::Result<Arc<Reader>> {
        let slot = self
            .readers
            .get(self.next.fetch_add(1, Ordering::Relaxed) % READERS.max(1))
            .ok_or_else(|| anyhow::anyhow!("no database readers"))?;
        let current = slot
            .lock()
            .map_err(|_| anyhow::anyhow!("reader lock"))?
            .clone();
        if let Some(reader) = current.filter(|r| !r.client.is_closed()) {
            return Ok(reader);
        }
        let reader = Arc::new(Reader::open(&self.url).await?);
        if let Ok(mut slot) = slot.lock() {
            *slot = Some(reader.clone());
        }
        Ok(reader)
    }

    pub async fn find_user(&self, name: &str) -> anyhow::Result<Option<StoredUser>> {
        let r = self.reader().await?;
        let row = r.client.query_opt(&r.find_user, &[&name]).await?;
        Ok(row.map(|row| {
            let hash: String = row.get(1);
            StoredUser {
                id: row.get(0),
                legacy_hash: (!hash.is_empty()).then_some(hash),
                record: row.get(2),
            }
        }))
    }

    pub async fn user_and_token(
        &self,
        name: &str,
        device: &str,
    ) -> anyhow::Result<(Option<StoredUser>, Option<Vec<u8>>)> {
        let user = self.find_user(name).await?;
        let r = self.reader().await?;
        let hash = r
            .client
            .query_opt(&r.token_hash, &[&name, &device])
            .await?
            .and_then(|row| row.get::<_, Option<Vec<u8>>>(0));
        Ok((user, hash))
    }

    pub async fn lobby_since(
        &self,
        after: u64,
        limit: usize,
    ) -> anyhow::Result<(Vec<SharedEvent>, u64)> {
        let r = self.reader().await?;
        // One statement, so both come from one snapshot.
        let rows = r
            .client
            .query(
                &r.lobby_since,
                &[
                    &seq(LOBBY_ROOM),
                    &seq(after),
                    &(limit as i64),
                    &MAX_MISSED_COUNTED,
                ],
            )
            .await?;
        let missed = rows.first().map_or(0, |row| row.get::<_, i64>(2) as u64);
        let mut events: Vec<SharedEvent> = rows.iter().map(|row| event(row.get(1))).collect();
        events.reverse();
        Ok((events, missed))
    }

    pub async fn events_range(
        &self,
        room: u64,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> anyhow::Result<Vec<(u64, SharedEvent)>> {
        let r = self.reader().await?;
        let rows = r
            .client
            .query(
                &r.range,
                &[&seq(room), &seq(after), &seq(up_to), &(limit as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| (row.get::<_, i64>(0) as u64, event(row.get(1))))
            .collect())
    }

    pub async fn history(
        &self,
        user_id: i64,
        limit: usize,
        before: Option<HistoryCursor>,
        max_bytes: usize,
    ) -> anyhow::Result<HistoryPage> {
        let r = self.reader().await?;
        let mut rooms: Vec<(i64, i64)> = vec![(seq(LOBBY_ROOM), 0)];
        for row in r.client.query(&r.history_rooms, &[&user_id]).await? {
            rooms.push((row.get(0), row.get(1)));
        }
        let (cts, croom, cseq) = history::bound(before);
        let limit_param = limit as i64;
        let client = &r.client;
        let pages = pipeline(
            rooms
                .iter()
                .map(|(room, joined)| {
                    let (room, joined) = (*room, *joined);
                    let statement = &r.history_page;
                    Box::pin(async move {
                        client
                            .query(
                                statement,
                                &[&room, &joined, &limit_param, &cts, &croom, &cseq],
                            )
                            .await
                    }) as PgFuture<'_, Vec<tokio_postgres::Row>>
                })
                .collect(),
        )
        .await?;
        let mut all = Vec::new();
        for (&(room, _), rows) in rooms.iter().zip(pages) {
            for row in rows {
                all.push((
                    HistoryCursor {
                        ts: row.get(0),
                        room_id: room as u64,
                        seq: row.get::<_, i64>(1) as u64,
                    },
                    event(row.get(2)),
                ));
            }
        }
        let firsts = pipeline(
            rooms
                .iter()
                .map(|(room, _)| {
                    let room = *room;
                    let statement = &r.oldest;
                    Box::pin(async move { client.query_one(statement, &[&room]).await })
                        as PgFuture<'_, tokio_postgres::Row>
                })
                .collect(),
        )
        .await?
        .iter()
        .map(|row| row.get::<_, Option<i64>>(0))
        .collect::<Vec<_>>();
        Ok(history::assemble(all, &rooms, &firsts, limit, max_bytes))
    }
}

fn event(body: Vec<u8>) -> SharedEvent {
    SharedEvent::from_encoded(Bytes::from(body))
}
