//! The writing side of a connection: one task owns the socket's write half
//! and drains the connection's bounded queue. It frames events with this
//! connection's sequence numbers, replays backlogs from the store in pages,
//! skips room events it has already sent and fills gaps from the store, and
//! batches everything queued into few socket writes.

use rustc_hash::FxHashMap;
use std::time::Duration;

use bytes::BytesMut;
use sotto_proto::{EventBody, EventKind, SharedEvent};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::core::{Outbound, PendingReply, SyncRange, now_ms};
use crate::queue::QueueRx;
use crate::store::Reads;

/// Events read from the store per page when replaying a backlog.
const SYNC_PAGE: usize = 256;
/// Bytes buffered before they are written to the socket: one TLS record.
/// Larger chunks did not write faster and cost memory per busy connection.
const WRITE_CHUNK: usize = 16 * 1024;

/// Owns the write half: frames queued events with this connection's
/// sequence numbers, replays backlogs from the store, and skips room events
/// it has already sent.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: QueueRx,
    store: Reads,
    cancel: CancellationToken,
) {
    let mut state = WriterState {
        seq: 0,
        delivered: FxHashMap::default(),
        buf: BytesMut::new(),
    };
    // One registration for the connection's life: a fresh `cancelled()`
    // future per wakeup costs two lock round trips on the token.
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    loop {
        let first = tokio::select! {
            biased;
            () = &mut cancelled => break,
            msg = rx.recv() => msg,
        };
        let Some(mut msg) = first else { break };
        let mut closing = false;
        // Queue bytes taken in this round, credited back once written.
        let mut cost = 0;
        loop {
            cost += msg.cost();
            let (batch, single) = match msg {
                Outbound::Batch(items) => (items, None),
                one => (Vec::new(), Some(one)),
            };
            for item in batch.into_iter().chain(single) {
                let result = match item {
                    Outbound::Close => {
                        closing = true;
                        Ok(())
                    }
                    other => state.handle(other, &store, &mut writer).await,
                };
                // A big batch goes out in chunks, not all buffered at once.
                let result = match result {
                    Ok(()) if state.buf.len() >= WRITE_CHUNK => state.flush(&mut writer).await,
                    other => other,
                };
                if let Err(e) = result {
                    tracing::debug!("write failed: {e}");
                    cancel.cancel();
                    return;
                }
            }
            if closing || state.buf.len() >= WRITE_CHUNK {
                break;
            }
            match rx.try_recv() {
                Some(next) => msg = next,
                None => break,
            }
        }
        if state.flush(&mut writer).await.is_err() {
            cancel.cancel();
            return;
        }
        rx.written(cost);
        if closing {
            break;
        }
        if rx.is_empty() {
            // Nothing else queued: an idle connection keeps no write buffer
            // (the next wakeup allocates one sized to what it writes) and
            // gives back the queue capacity its last burst grew.
            state.buf = BytesMut::new();
            rx.shrink_idle();
        }
    }
    let _ = state.flush(&mut writer).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), writer.shutdown()).await;
}

/// What the writer remembers about this connection.
#[derive(Debug)]
struct WriterState {
    /// Sequence number of the last event sent.
    seq: u64,
    /// Highest room position sent, per room.
    delivered: FxHashMap<u64, u64>,
    /// Frames not yet written.
    buf: BytesMut,
}

impl WriterState {
    fn push_event(&mut self, event: &SharedEvent) {
        self.seq += 1;
        if let Err(e) = sotto_proto::frame::write_event(&mut self.buf, self.seq, event) {
            tracing::error!("cannot frame event: {e}");
        }
    }

    async fn flush<W: AsyncWrite + Unpin>(&mut self, writer: &mut W) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            writer.write_all(&self.buf).await?;
            writer.flush().await?;
            self.buf.clear();
            if self.buf.capacity() > 4 * WRITE_CHUNK {
                // A big backlog or file went out: do not keep its buffer.
                self.buf = BytesMut::new();
            }
        }
        Ok(())
    }

    async fn handle<W: AsyncWrite + Unpin>(
        &mut self,
        msg: Outbound,
        store: &Reads,
        writer: &mut W,
    ) -> std::io::Result<()> {
        match msg {
            Outbound::Frame(frame) => self.buf.extend_from_slice(&frame),
            Outbound::Reply(reply) => {
                let stored = reply.stored();
                let PendingReply { id, result } = *reply;
                if let Err(e) = sotto_proto::frame::encode_reply(&mut self.buf, id, result) {
                    tracing::error!("cannot encode reply {id} (answered with an error): {e}");
                }
                // The connection has its own message at that position. Only
                // when contiguous: an earlier event not yet sent here (held
                // in dnd, say) must not be skipped.
                if let Some((room_id, seq)) = stored
                    && self
                        .delivered
                        .get(&room_id)
                        .is_some_and(|last| *last + 1 == seq)
                {
                    self.delivered.insert(room_id, seq);
                }
            }
            Outbound::Event(event) => self.push_event(&event),
            Outbound::Room {
                room_id,
                seq,
                event,
            } => {
                if let Some(last) = self.delivered.get(&room_id).copied() {
                    if seq <= last {
                        return Ok(());
                    }
                    if seq > last + 1 {
                        // Boxed: a store read's future is large, and the
                        // writer task is sized for its largest await.
                        Box::pin(self.replay(
                            SyncRange {
                                room_id,
                                after: last,
                                up_to: seq - 1,
                            },
                            store,
                            writer,
                        ))
                        .await?;
                    }
                }
                self.push_event(&event);
                self.delivered.insert(room_id, seq);
            }
            Outbound::Sync { ranges, caught_up } => {
                for range in ranges {
                    Box::pin(self.replay(range, store, writer)).await?;
                }
                if caught_up {
                    let body = EventBody {
                        ts: now_ms(),
                        kind: EventKind::CaughtUp,
                    };
                    if let Ok(event) = SharedEvent::encode(&body) {
                        self.push_event(&event);
                    }
                }
            }
            // Unpacked by the write loop.
            Outbound::Close | Outbound::Batch(_) => {}
        }
        Ok(())
    }

    /// Sends stored events of `range` not yet sent on this connection.
    async fn replay<W: AsyncWrite + Unpin>(
        &mut self,
        range: SyncRange,
        store: &Reads,
        writer: &mut W,
    ) -> std::io::Result<()> {
        let mut after = range
            .after
            .max(self.delivered.get(&range.room_id).copied().unwrap_or(0));
        while after < range.up_to {
            let (room, up_to) = (range.room_id, range.up_to);
            let page = store
                .events_range(room, after, up_to, SYNC_PAGE)
                .await
                .map_err(|e| std::io::Error::other(format!("backlog read failed: {e:#}")))?;
            let Some(last) = page.last().map(|(seq, _)| *seq) else {
                break;
            };
            for (_, event) in &page {
                self.push_event(event);
            }
            after = last;
            self.delivered.insert(room, last);
            self.flush(writer).await?;
        }
        Ok(())
    }
}
