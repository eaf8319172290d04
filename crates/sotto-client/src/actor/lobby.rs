//! The lobby messages missed while away: the server does not queue lobby
//! messages for anyone, so on every connection the actor asks for those
//! after the last one this device saw (the newest
//! [`MAX_LOBBY_CATCH_UP`], saying how many more there were) and shows them
//! before the live ones that came meanwhile. A device that never saw the
//! lobby starts from its newest message (learned, not shown).

use std::time::Duration;

use sotto_proto::limits::MAX_LOBBY_CATCH_UP;
use sotto_proto::{
    ErrorReply, EventBody, EventKind, LOBBY_ROOM_ID, Request, Response, RoomContent,
};
use tokio::io::AsyncWrite;

use super::{Actor, Pending};
use crate::ClientEvent;
use crate::crypto::lock;

/// Live lobby events held while the catch-up is read, at most.
const MAX_HELD_LOBBY_EVENTS: usize = crate::EVENT_CAPACITY;
/// Their bytes, at most.
const MAX_HELD_LOBBY_BYTES: usize = 4 * 1024 * 1024;
/// How long live lobby events wait for the catch-up's answer.
const CATCH_UP_PATIENCE: Duration = Duration::from_secs(15);

/// About how much memory a held event takes.
fn size_of(body: &EventBody) -> usize {
    let content = match &body.kind {
        EventKind::Room(room) => match &room.content {
            RoomContent::Text { text } => text.len(),
            RoomContent::Envelope { payload, .. } => payload.len(),
            _ => 0,
        },
        _ => 0,
    };
    content + 256
}

impl<W: AsyncWrite + Unpin + Send> Actor<W> {
    /// Holds a live lobby event until the catch-up is answered; gives it
    /// back when it cannot wait (too many held, or no answer in time):
    /// then everything held is shown now, in order, and older missed
    /// messages are left to `@history`, with a notice.
    pub(super) fn hold_lobby_event(&mut self, body: EventBody) -> Option<EventBody> {
        let size = size_of(&body);
        let waiting = self.lobby_catch_up.as_mut()?;
        let fits = waiting.len() < MAX_HELD_LOBBY_EVENTS
            && self.lobby_held_bytes + size <= MAX_HELD_LOBBY_BYTES;
        if fits && self.lobby_asked_at.elapsed() < CATCH_UP_PATIENCE {
            waiting.push(body);
            self.lobby_held_bytes += size;
            return None;
        }
        Some(body)
    }

    /// Stops waiting for the catch-up: what was held is shown now.
    pub(super) async fn give_up_lobby_catch_up(&mut self) {
        let held = self.lobby_catch_up.take().unwrap_or_default();
        self.lobby_held_bytes = 0;
        tracing::warn!(
            held = held.len(),
            "lobby catch-up not answered in time or too much came meanwhile"
        );
        self.emit(ClientEvent::Security {
            message: "could not fetch the lobby messages sent while you were away; \
                      @history shows them"
                .to_owned(),
        })
        .await;
        for body in held {
            Box::pin(self.handle_event(body)).await;
        }
    }

    /// Asks for the lobby messages after the last one seen.
    pub(super) async fn catch_up_lobby(&mut self) {
        self.lobby_catch_up = None;
        self.lobby_held_bytes = 0;
        self.lobby_asked_at = tokio::time::Instant::now();
        let known = lock(&self.crypto).position(LOBBY_ROOM_ID);
        let request = Request::LobbySince {
            after: known.unwrap_or(0),
            limit: if known.is_some() {
                MAX_LOBBY_CATCH_UP
            } else {
                1
            },
        };
        if let Some(id) = self.write_request(request).await {
            let baseline = known.is_none();
            self.pending.insert(id, Pending::LobbyCatchUp { baseline });
            self.lobby_catch_up = Some(Vec::new());
        }
    }

    /// Shows what was missed, then the live lobby events held meanwhile.
    pub(super) async fn lobby_caught_up(
        &mut self,
        baseline: bool,
        result: Result<Response, ErrorReply>,
    ) {
        // Given up on already (the held events were shown): too late.
        let Some(waiting) = self.lobby_catch_up.take() else {
            return;
        };
        self.lobby_held_bytes = 0;
        match result {
            Ok(Response::LobbySince { events, .. }) if baseline => {
                let newest = events
                    .iter()
                    .filter_map(crate::event::Position::of)
                    .map(|pos| pos.seq)
                    .max()
                    .unwrap_or(0);
                // A live line held meanwhile may be the newest the server
                // read: it is still to be shown.
                let first_held = waiting
                    .iter()
                    .filter_map(crate::event::Position::of)
                    .map(|pos| pos.seq)
                    .min();
                let seen = first_held.map_or(newest, |held| newest.min(held.saturating_sub(1)));
                lock(&self.crypto).set_position(LOBBY_ROOM_ID, seen);
            }
            Ok(Response::LobbySince { events, missed }) => {
                if missed > 0 {
                    self.emit(ClientEvent::LobbyMissed { count: missed }).await;
                }
                for body in events {
                    self.handle_event(body).await;
                }
            }
            Ok(_) => tracing::warn!("the server answered the lobby catch-up with something else"),
            Err(e) => tracing::warn!("could not catch up on the lobby: {}", e.message),
        }
        for body in waiting {
            self.handle_event(body).await;
        }
    }
}
