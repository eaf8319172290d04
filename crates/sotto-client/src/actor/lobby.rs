//! The lobby messages missed while away: the server does not queue lobby
//! messages for anyone, so on every connection the actor asks for those
//! after the last one this device saw (the newest
//! [`MAX_LOBBY_CATCH_UP`], saying how many more there were) and shows them
//! before the live ones that came meanwhile. A device that never saw the
//! lobby starts from its newest message (learned, not shown).

use sotto_proto::limits::MAX_LOBBY_CATCH_UP;
use sotto_proto::{ErrorReply, LOBBY_ROOM_ID, Request, Response};
use tokio::io::AsyncWrite;

use super::{Actor, Pending};
use crate::ClientEvent;
use crate::crypto::lock;

impl<W: AsyncWrite + Unpin + Send> Actor<W> {
    /// Asks for the lobby messages after the last one seen.
    pub(super) async fn catch_up_lobby(&mut self) {
        self.lobby_catch_up = None;
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
        let waiting = self.lobby_catch_up.take().unwrap_or_default();
        match result {
            Ok(Response::LobbySince { events, .. }) if baseline => {
                let newest = events
                    .iter()
                    .filter_map(crate::event::Position::of)
                    .map(|pos| pos.seq)
                    .max()
                    .unwrap_or(0);
                lock(&self.crypto).set_position(LOBBY_ROOM_ID, newest);
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
