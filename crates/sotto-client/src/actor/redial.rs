//! Connecting again after the connection dropped: the actor keeps its
//! state (positions, sealed messages, what waits for keys), dials with
//! back-off while it holds the handle's requests, and goes on with the new
//! connection. Messages whose reply never came are sent again under the
//! same [`Request::Once`] id, so the server stores each once; other
//! requests in flight fail (the server may or may not have done them).

use std::collections::VecDeque;

use sotto_proto::{ClientFrame, Request};
use tokio::io::AsyncWrite;

use super::{Actor, Op, Pending, write_frame};
use crate::crypto::lock;
use crate::reconnect::{Redial, RedialError, backoff};
use crate::{ClientError, ClientEvent, MAX_PENDING_REQUESTS};

/// How reconnecting ended.
pub(super) enum Outcome {
    Connected,
    Quit,
    /// Trying again cannot help; the session ends with this reason.
    Fatal(String),
}

/// What to do with a command while there is no connection.
enum Held {
    Keep(Op),
    Handled,
    Quit,
}

impl<W: AsyncWrite + Unpin + Send> Actor<W> {
    /// Dials until a new connection is logged in, the user quits, or the
    /// server cannot be used again.
    pub(super) async fn reconnect(
        &mut self,
        redial: &dyn Redial<W>,
        mut reason: String,
    ) -> Outcome {
        // What was handled is kept, so the server's resending is
        // recognized and not shown twice.
        if let Err(e) = crate::crypto::save(&self.crypto).await {
            tracing::warn!("saving the local store at disconnection: {e}");
        }
        if let Some(message) = self.shutdown_message.take() {
            reason = message;
        }
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
        // Lobby events held for a catch-up are asked for again.
        self.lobby_catch_up = None;
        let retry = self.take_in_flight();
        // What a connection that broke again right away did not get to send.
        let mut held: VecDeque<Op> = std::mem::take(&mut self.carried);
        let mut attempt = 0u32;
        tracing::info!(%reason, "connection lost; reconnecting");
        let redialed = loop {
            attempt = attempt.saturating_add(1);
            let wait = backoff(attempt);
            self.emit(ClientEvent::Reconnecting {
                reason: reason.clone(),
                attempt,
                retry_in_ms: wait.as_millis() as u64,
            })
            .await;
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => break,
                    op = self.ops.recv() => if self.hold(op, &mut held).await {
                        return self.quit_offline(retry, held);
                    },
                }
            }
            let dial = redial.redial();
            tokio::pin!(dial);
            let result = loop {
                tokio::select! {
                    result = &mut dial => break result,
                    op = self.ops.recv() => if self.hold(op, &mut held).await {
                        return self.quit_offline(retry, held);
                    },
                }
            };
            match result {
                Ok(redialed) => break redialed,
                Err(RedialError::Retry(why)) => {
                    tracing::debug!(attempt, %why, "reconnecting failed; trying again");
                    reason = why;
                }
                Err(RedialError::Fatal(why)) => {
                    self.fail_all(retry, held, || ClientError::Disconnected);
                    return Outcome::Fatal(why);
                }
            }
        };
        self.writer = redialed.writer;
        self.frames = redialed.frames;
        self.reader = Some(redialed.reader);
        self.conn_seq = 0;
        // Device changes while offline were not announced to this device.
        lock(&self.crypto).device_lists.clear();
        tracing::info!(attempt, "reconnected");
        self.emit(ClientEvent::Reconnected {
            online: redialed.logged_in.online,
        })
        .await;
        // Before anything held is sent: the lobby catch-up is read before
        // this device's own new lobby lines are stored.
        self.on_connected().await;
        // Everything waiting stays with the actor until it is written: if
        // this connection breaks too, the next one sends it.
        let mut resend = Vec::new();
        for (pending, request) in retry {
            // A caller that gave up was told it timed out: not sent again.
            if pending.is_closed() {
                continue;
            }
            let id = self.next_request;
            self.next_request += 1;
            self.pending.insert(id, pending);
            self.resend.insert(id, request.clone());
            resend.push((id, request));
        }
        self.carried = held;
        // Acknowledge at once what the last connection could not.
        if self.acknowledge().await.is_err() {
            return Outcome::Connected;
        }
        if self.status != sotto_proto::Status::Normal {
            let request = Request::SetStatus {
                status: self.status,
            };
            match self.write_request(request).await {
                Some(id) => {
                    self.pending.insert(id, Pending::Restore);
                }
                None => return Outcome::Connected,
            }
        }
        for (id, request) in resend {
            let frame = ClientFrame::Request { id, request };
            if write_frame(&mut self.writer, &mut self.wbuf, &frame)
                .await
                .is_err()
            {
                // Dropped again: the loop notices, and these go on the next.
                return Outcome::Connected;
            }
        }
        while let Some(op) = self.carried.pop_front() {
            if op_closed(&op) {
                continue;
            }
            if self.handle_op(op).await.is_err() {
                break;
            }
        }
        Outcome::Connected
    }

    /// Takes the requests that were waiting for replies: messages to send
    /// again (oldest first); the others fail.
    fn take_in_flight(&mut self) -> Vec<(Pending, Request)> {
        let mut ids: Vec<u64> = self.pending.keys().copied().collect();
        ids.sort_unstable();
        let mut retry = Vec::new();
        for id in ids {
            let Some(pending) = self.pending.remove(&id) else {
                continue;
            };
            match self.resend.remove(&id) {
                Some(request) if !pending.is_closed() => retry.push((pending, request)),
                _ => pending.fail(ClientError::ConnectionLost(
                    "the connection dropped before the server answered; it may or may not \
                     have done it"
                        .to_owned(),
                )),
            }
        }
        self.resend.clear();
        retry
    }

    /// Handles a command while offline: `true` to stop (the user quit).
    async fn hold(&mut self, op: Option<Op>, held: &mut VecDeque<Op>) -> bool {
        let op = match op {
            None => return true,
            Some(op) => op,
        };
        match self.offline(op).await {
            Held::Quit => true,
            Held::Handled => false,
            Held::Keep(op) => {
                // Commands whose callers gave up are dropped first.
                if held.len() >= MAX_PENDING_REQUESTS {
                    held.retain(|op| !op_closed(op));
                }
                if held.len() >= MAX_PENDING_REQUESTS {
                    fail_op(op, ClientError::Reconnecting);
                } else {
                    held.push_back(op);
                }
                false
            }
        }
    }

    /// Answers what needs no connection; keeps the rest.
    async fn offline(&mut self, op: Op) -> Held {
        match op {
            Op::Quit { reply } => {
                let _ = reply.send(());
                Held::Quit
            }
            op @ (Op::Request { .. } | Op::Send { .. } | Op::History { .. }) => Held::Keep(op),
            // Local work: the connection is not needed.
            op => {
                let _ = self.handle_op(op).await;
                Held::Handled
            }
        }
    }

    fn quit_offline(&mut self, retry: Vec<(Pending, Request)>, held: VecDeque<Op>) -> Outcome {
        self.fail_all(retry, held, || ClientError::Disconnected);
        Outcome::Quit
    }

    fn fail_all(
        &mut self,
        retry: Vec<(Pending, Request)>,
        held: VecDeque<Op>,
        error: fn() -> ClientError,
    ) {
        for (pending, _) in retry {
            pending.fail(error());
        }
        for op in held.into_iter().chain(std::mem::take(&mut self.carried)) {
            fail_op(op, error());
        }
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
    }
}

fn op_closed(op: &Op) -> bool {
    match op {
        Op::Request { reply, .. } | Op::Send { reply, .. } => reply.is_closed(),
        Op::History { reply, .. } => reply.is_closed(),
        _ => false,
    }
}

fn fail_op(op: Op, error: ClientError) {
    match op {
        Op::Request { reply, .. } | Op::Send { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        Op::History { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        _ => {}
    }
}
