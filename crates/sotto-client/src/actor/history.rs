//! `@history`: the local history of private and group rooms merged with
//! the server's lobby and notices.

use std::collections::BTreeMap;

use sotto_proto::{EventBody, EventKind, RoomContent, RoomRef};
use tokio::io::AsyncWrite;

use super::{Actor, Reply, StoredSealed};
use crate::ClientError;
use crate::event::{ClientEvent, Position};
use crate::history::Entry;

/// A `@history` being read: the server's pages so far, merged at the end
/// with the local history.
#[derive(Debug)]
pub(super) struct HistoryRead {
    pub reply: Reply<Vec<ClientEvent>>,
    pub limit: u32,
    /// Server events received so far, over every page.
    received: u32,
    /// By (time, room, position): the order shown.
    shown: BTreeMap<(i64, u64, u64), Shown>,
    /// The time of the oldest event the server still keeps of a
    /// conversation whose older events it deleted, if a page reached it.
    pub pruned_before: Option<i64>,
    /// Only what is older than this (a page further back).
    before: Option<sotto_proto::HistoryCursor>,
}

#[derive(Debug)]
enum Shown {
    Kept(Entry),
    Event(ClientEvent),
}

impl HistoryRead {
    pub fn new(
        reply: Reply<Vec<ClientEvent>>,
        limit: u32,
        before: Option<sotto_proto::HistoryCursor>,
    ) -> Self {
        Self {
            reply,
            limit,
            received: 0,
            shown: BTreeMap::new(),
            pruned_before: None,
            before,
        }
    }

    /// How many more server events the limit allows.
    pub fn remaining(&self) -> u32 {
        self.limit.saturating_sub(self.received)
    }
}

impl<W: AsyncWrite + Unpin + Send> Actor<W> {
    /// Takes in one page of the server's history (a reply holds at most
    /// `MAX_HISTORY_BYTES`; older events come in further pages). Private
    /// and group messages come from the local store; the server's copy
    /// (ciphertext) is decrypted only for messages the store does not have
    /// (sent before this device existed, say), and those are kept from then
    /// on. The lobby and group notices come from the server.
    pub(super) async fn history_page(
        &mut self,
        read: &mut HistoryRead,
        events: Vec<EventBody>,
    ) -> Result<(), ClientError> {
        // Events without a room position are told apart by arrival.
        let base = u64::from(read.received);
        read.received = read
            .received
            .saturating_add(u32::try_from(events.len()).unwrap_or(u32::MAX));
        crate::crypto::save(&self.crypto).await?;
        let positions: Vec<(u64, u64)> = events
            .iter()
            .filter(|body| is_message(body))
            .filter_map(Position::of)
            .map(|p| (p.room_id, p.seq))
            .collect();
        let found =
            crate::crypto::read(&self.crypto, move |store| store.history_at(&positions)).await?;
        let mut kept = std::collections::HashSet::new();
        for row in found {
            kept.insert((row.room_id, row.seq));
            read.shown.insert(
                (row.ts, row.room_id, row.seq),
                Shown::Kept(entry_of(&row.entry)?),
            );
        }
        for (n, body) in events.into_iter().enumerate() {
            let ts = body.ts;
            let position = Position::of(&body);
            let key = position.map_or((ts, u64::MAX, base + n as u64), |p| (ts, p.room_id, p.seq));
            if position.is_some_and(|p| kept.contains(&(p.room_id, p.seq))) {
                continue;
            }
            let event = match self
                .decrypt(body, sotto_crypto::e2e::ReadMode::History)
                .await
            {
                Ok(body) => self.show(body, false).await,
                Err(event) => Some(event),
            };
            if let Some(event) = event {
                read.shown.insert(key, Shown::Event(event));
            }
        }
        // Messages decrypted just now are kept.
        crate::crypto::save(&self.crypto).await?;
        Ok(())
    }

    /// Answers with the newest `limit` events of the server's pages and the
    /// local history, oldest first, this device's own messages included.
    pub(super) async fn history_finish(&mut self, read: HistoryRead) {
        let HistoryRead {
            reply,
            limit,
            shown,
            pruned_before,
            before,
            ..
        } = read;
        let result = self
            .merge_history(limit, shown, pruned_before, before)
            .await;
        let _ = reply
            .send(result.map(|events| events.into_iter().map(ClientEvent::sanitized).collect()));
    }

    async fn merge_history(
        &mut self,
        limit: u32,
        mut shown: BTreeMap<(i64, u64, u64), Shown>,
        pruned_before: Option<i64>,
        before: Option<sotto_proto::HistoryCursor>,
    ) -> Result<Vec<ClientEvent>, ClientError> {
        let before = before.map(|c| (c.ts, c.room_id, c.seq));
        let recent = crate::crypto::read(&self.crypto, move |store| {
            store.recent_history(limit, before)
        })
        .await?;
        for row in recent {
            shown.insert(
                (row.ts, row.room_id, row.seq),
                Shown::Kept(entry_of(&row.entry)?),
            );
        }
        let skip = shown.len().saturating_sub(limit as usize);
        let mut out = Vec::with_capacity(shown.len() - skip + 1);
        // Say so when what is shown reaches back to where the server's
        // retention policy cut a conversation.
        if let Some(oldest_kept) = pruned_before
            && shown
                .keys()
                .nth(skip)
                .is_none_or(|(ts, _, _)| *ts <= oldest_kept)
        {
            out.push(ClientEvent::HistoryPruned { oldest_kept });
        }
        for ((ts, room_id, seq), item) in shown.into_iter().skip(skip) {
            out.push(match item {
                Shown::Event(event) => event,
                Shown::Kept(entry) => entry.into_event(ts, |from, group, sealed| {
                    self.keep_sealed(
                        StoredSealed {
                            from: from.clone(),
                            group: group.clone(),
                            ts,
                            sealed: sealed.clone(),
                        },
                        Some((room_id, seq)),
                    )
                }),
            });
        }
        Ok(out)
    }
}

fn entry_of(bytes: &[u8]) -> Result<Entry, ClientError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ClientError::LocalStore(format!("a history entry is unreadable: {e}")))
}

/// Whether an event is a private or group message (an envelope).
fn is_message(body: &EventBody) -> bool {
    matches!(
        &body.kind,
        EventKind::Room(sotto_proto::RoomEvent {
            room: RoomRef::Direct { .. } | RoomRef::Group { .. },
            content: RoomContent::Envelope { .. },
            ..
        })
    )
}
