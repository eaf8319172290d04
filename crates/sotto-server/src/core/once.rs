//! Messages stored at most once ([`Request::Once`]): a client that lost the
//! connection before the reply sends the message again with the same id,
//! and gets the first one's position back instead of a second copy.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use sotto_proto::limits::REMEMBERED_SEND_IDS;
use sotto_proto::{DeviceId, ErrorCode, Message, Response};

use super::{ConnId, Core, Effects};
use crate::store::SentOnce;
use crate::store::Writer as _;

/// The last [`REMEMBERED_SEND_IDS`] message ids of each account, oldest
/// first (the database holds the same; this is its index).
#[derive(Debug, Default)]
pub(crate) struct SentIds {
    by_user: FxHashMap<i64, VecDeque<(u64, SentOnce)>>,
}

impl SentIds {
    pub fn load(stored: &[(i64, u64, SentOnce)]) -> Self {
        let mut ids = SentIds::default();
        for &(user, client_id, sent) in stored {
            ids.remember(user, client_id, sent);
        }
        ids
    }

    fn get(&self, user: i64, client_id: u64) -> Option<SentOnce> {
        self.by_user
            .get(&user)?
            .iter()
            .find(|(id, _)| *id == client_id)
            .map(|(_, sent)| *sent)
    }

    /// Remembers an id; returns the one forgotten to make room.
    pub(super) fn remember(&mut self, user: i64, client_id: u64, sent: SentOnce) -> Option<u64> {
        let ids = self.by_user.entry(user).or_default();
        ids.push_back((client_id, sent));
        if ids.len() > REMEMBERED_SEND_IDS {
            ids.pop_front().map(|(id, _)| id)
        } else {
            None
        }
    }
}

impl Core {
    /// Stores `message` unless this account sent one with `client_id`
    /// before; either way, replies where it is stored (a repeat's reply
    /// has no delivery note: that was said the first time).
    pub(super) fn send_once(
        &mut self,
        conn_id: ConnId,
        user: i64,
        device: &DeviceId,
        client_id: u64,
        message: Message,
        fx: &mut Effects,
    ) -> anyhow::Result<Result<Response, sotto_proto::ErrorReply>> {
        if let Some(sent) = self.dir.sent_once.get(user, client_id) {
            tracing::debug!(user, client_id, "message sent again; stored once");
            return Ok(Ok(Response::Sent {
                room_id: sent.room_id,
                seq: sent.seq,
                ts: sent.ts,
                note: None,
            }));
        }
        if let Message::Direct {
            to,
            devices: Some(digest),
            ..
        } = &message
            && let Some(peer) = self.dir.user_ids.get(to).copied()
            && self.device_digest(&[user, peer]) != *digest
        {
            return Ok(Err(sotto_proto::ErrorReply::new(
                ErrorCode::DevicesChanged,
                format!(
                    "your devices or {to}'s changed since this message was encrypted: it was not \
                     stored; encrypt it again for the devices listed now"
                ),
            )));
        }
        let reply = self.request(conn_id, user, device, message.into_request(), fx)?;
        if let Ok(Response::Sent {
            room_id, seq, ts, ..
        }) = &reply
        {
            let sent = SentOnce {
                room_id: *room_id,
                seq: *seq,
                ts: *ts,
            };
            let evicted = self.dir.sent_once.remember(user, client_id, sent);
            self.db.record_sent_once(user, client_id, sent, evicted)?;
        }
        Ok(reply)
    }
}
