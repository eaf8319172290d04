//! The batch loop: a batch of operations applied in one transaction and
//! committed once (group commit); a failed commit answered, and the state
//! read again; while the database is unreachable, requests refused.

use sotto_proto::ErrorCode;

use super::{Core, Directory, Effects, Op, Outbound, encode_reply, err, usage};
use crate::store::Writer as _;

impl Core {
    pub(super) fn process(&mut self, batch: &mut Vec<Op>) {
        if self.stale {
            self.reload();
            if self.stale {
                self.refuse(batch);
                return;
            }
            tracing::info!("the database is back: serving again");
        }
        if self.cluster.is_some() {
            self.take_cluster_ops(batch);
            if batch.is_empty() {
                return;
            }
        }
        let mut fx = Effects::default();
        let ops = batch.len();
        let started = std::time::Instant::now();
        let mut applied = started;
        let result = self.db.begin().and_then(|()| {
            self.lock_and_catch_up()?;
            for op in batch.drain(..) {
                self.apply(op, &mut fx)?;
            }
            self.flush_cursors()?;
            self.apply_retention()?;
            let entry = self.seal_entry()?;
            applied = std::time::Instant::now();
            self.db.commit()?;
            Ok(entry)
        });
        match result {
            Ok(entry) => {
                if let Some((epoch, bytes)) = entry {
                    self.committed_entry(epoch, bytes);
                }
                let committed = std::time::Instant::now();
                let deliveries = fx.count;
                self.dispatch(fx);
                tracing::trace!(
                    ops,
                    deliveries,
                    apply_us = (applied - started).as_micros() as u64,
                    commit_us = (committed - applied).as_micros() as u64,
                    dispatch_us = committed.elapsed().as_micros() as u64,
                    "batch"
                );
            }
            Err(e) => {
                tracing::error!("commit failed, batch rejected: {e:#}");
                self.db.rollback();
                self.dirty_cursors.clear();
                self.reload();
                // Operations not reached (the transaction did not even
                // begin) are answered too.
                self.refuse(batch);
                // Deliveries are dropped; every request gets an error.
                for (conn, items) in fx.drain_by_conn() {
                    for item in items {
                        let Outbound::Reply(mut reply) = item else {
                            continue;
                        };
                        reply.result = Err(err(
                            ErrorCode::Internal,
                            "storage failed; nothing was saved, try again",
                        ));
                        if let Some(c) = self.conns.get(&conn) {
                            c.handle.send(Outbound::Reply(reply));
                        }
                    }
                }
                for conn_id in fx.attached.drain(..) {
                    self.detach(conn_id, &mut Effects::default());
                }
                for done in fx.completions {
                    done(false);
                }
            }
        }
        batch.clear();
    }

    /// Reloads the state from the database (after a failed commit, or a
    /// node that fell behind the change log).
    pub(super) fn reload(&mut self) {
        match self.db.snapshot() {
            Ok(snapshot) => {
                self.dir = Directory::load(&snapshot);
                self.usage = usage::Usage::load(&snapshot);
                if let Some(cluster) = &mut self.cluster {
                    cluster.applied = snapshot.epoch;
                }
                self.stale = false;
            }
            Err(e) => {
                if !self.stale {
                    tracing::error!(
                        "cannot read the state from the database ({e:#}): requests are refused \
                         until it is reachable again"
                    );
                }
                self.stale = true;
            }
        }
    }

    /// While the database is unreachable: every request is answered with
    /// an error saying so, and nothing is applied; connections may still
    /// close and the server may still stop.
    pub(super) fn refuse(&mut self, batch: &mut Vec<Op>) {
        let unavailable = || {
            err(
                ErrorCode::Internal,
                "the server cannot reach its database: nothing can be saved now; try again \
                 shortly",
            )
        };
        let mut fx = Effects::default();
        for op in batch.drain(..) {
            match op {
                Op::Register { reply, .. } => {
                    let _ = reply.send(Err(unavailable()));
                }
                Op::SetPassword { reply, .. } => {
                    let _ = reply.send(Err(unavailable()));
                }
                Op::Attach {
                    conn,
                    req_id,
                    reply,
                    ..
                } => {
                    if let Some(frame) = encode_reply(req_id, Err(unavailable())) {
                        conn.send(Outbound::Frame(frame));
                    }
                    let _ = reply.send(false);
                }
                Op::Request {
                    conn_id, req_id, ..
                } => fx.reply(conn_id, req_id, Err(unavailable())),
                op @ (Op::Detach { .. } | Op::Shutdown { .. }) => {
                    // Neither writes.
                    if let Err(e) = self.apply(op, &mut fx) {
                        tracing::error!("{e:#}");
                    }
                }
                // Delivered again later; the bus's entries are read from
                // the log once the database is back.
                Op::Acks { .. } | Op::Tick | Op::Entry(_) | Op::Presence(_) => {}
            }
        }
        self.dispatch(fx);
    }

    /// In a cluster: applies the bus's entries and presence notes, which
    /// need no transaction, and takes them out of the batch; a tick also
    /// says who is online here and takes silent nodes' users offline.
    fn take_cluster_ops(&mut self, batch: &mut Vec<Op>) {
        let mut entries = Vec::new();
        let mut notes = Vec::new();
        let mut ticked = false;
        batch.retain_mut(|op| match op {
            Op::Entry(bytes) => {
                entries.push(std::mem::take(bytes));
                false
            }
            Op::Presence(note) => {
                notes.push(note.clone());
                false
            }
            Op::Tick => {
                ticked = true;
                true
            }
            _ => true,
        });
        if !entries.is_empty() {
            self.apply_bus_entries(entries);
        }
        for note in notes {
            self.apply_presence(note);
        }
        if ticked {
            self.expire_nodes();
            self.publish_all_presence();
        }
    }
}
