//! `@history`: the local history of private and group rooms merged with
//! the server's lobby and notices.

use std::collections::BTreeMap;

use sotto_proto::{EventBody, EventKind, RoomContent, RoomRef};
use tokio::io::AsyncWrite;

use super::{Actor, StoredSealed};
use crate::ClientError;
use crate::event::{ClientEvent, Position};
use crate::history::Entry;

impl<W: AsyncWrite + Unpin + Send> Actor<W> {
    /// The newest `limit` events of the local history and the server's,
    /// oldest first. Private and group messages come from the local store;
    /// the server's copy (ciphertext) is decrypted only for messages the
    /// store does not have (sent before this device existed, say), and
    /// those are kept from then on. The lobby and group notices come from
    /// the server. This device's own messages are shown too.
    pub(super) async fn history(
        &mut self,
        events: Vec<EventBody>,
        limit: u32,
    ) -> Result<Vec<ClientEvent>, ClientError> {
        crate::crypto::save(&self.crypto).await?;
        let positions: Vec<(u64, u64)> = events
            .iter()
            .filter(|body| is_message(body))
            .filter_map(Position::of)
            .map(|p| (p.room_id, p.seq))
            .collect();
        let (recent, found) = crate::crypto::read(&self.crypto, move |store| {
            Ok((store.recent_history(limit)?, store.history_at(&positions)?))
        })
        .await?;
        enum Shown {
            Kept(Entry),
            Event(ClientEvent),
        }
        // By (time, room, position): the order shown.
        let mut shown: BTreeMap<(i64, u64, u64), Shown> = BTreeMap::new();
        let mut kept = std::collections::HashSet::new();
        for row in recent.into_iter().chain(found) {
            let entry: Entry = serde_json::from_slice(&row.entry).map_err(|e| {
                ClientError::LocalStore(format!("a history entry is unreadable: {e}"))
            })?;
            kept.insert((row.room_id, row.seq));
            shown.insert((row.ts, row.room_id, row.seq), Shown::Kept(entry));
        }
        for (n, body) in events.into_iter().enumerate() {
            let ts = body.ts;
            let position = Position::of(&body);
            let key = position.map_or((ts, u64::MAX, n as u64), |p| (ts, p.room_id, p.seq));
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
                shown.insert(key, Shown::Event(event));
            }
        }
        // Messages decrypted just now are kept.
        crate::crypto::save(&self.crypto).await?;
        let skip = shown.len().saturating_sub(limit as usize);
        let mut out = Vec::with_capacity(shown.len() - skip);
        for ((ts, _, _), item) in shown.into_iter().skip(skip) {
            out.push(match item {
                Shown::Event(event) => event,
                Shown::Kept(entry) => entry.into_event(ts, |from, group, sealed| {
                    self.keep_sealed(StoredSealed {
                        from: from.clone(),
                        group: group.clone(),
                        ts,
                        sealed: sealed.clone(),
                    })
                }),
            });
        }
        Ok(out)
    }
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
