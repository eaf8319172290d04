//! A connection's outbound queue, bounded in bytes rather than entries.
//!
//! The core, the connection's reader and the shutdown path push entries;
//! the connection's writer drains them. An entry may be a whole batch of
//! events (one committed batch's share for this connection), so counting
//! entries would say little about memory: each entry is charged its
//! approximate size when pushed and credited back once the writer has
//! written it. A connection whose unwritten bytes would exceed its budget is
//! a slow consumer: the push is refused and the caller disconnects it.
//! Nothing is lost that way, since everything in a room is stored and the
//! client catches up from its cursor when it returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use crate::core::Outbound;

/// Charged for a reply, which the writer encodes: replies are small and
/// bounded by the protocol's listing limits.
const REPLY_COST: usize = 256;
/// Charged per entry on top of its payload: framing and bookkeeping.
const ENTRY_COST: usize = 32;

impl Outbound {
    /// Approximate bytes this entry will take until it is written.
    pub(crate) fn cost(&self) -> usize {
        match self {
            Outbound::Frame(frame) => ENTRY_COST + frame.len(),
            Outbound::Reply(_) => REPLY_COST,
            Outbound::Event(event) | Outbound::Room { event, .. } => {
                ENTRY_COST + event.as_bytes().len()
            }
            // The writer reads these from the store a page at a time.
            Outbound::Sync { ranges, .. } => ENTRY_COST + 24 * ranges.len(),
            Outbound::Close => 0,
            Outbound::Batch(items) => items.iter().map(Outbound::cost).sum(),
        }
    }
}

/// The connection is over its byte budget: the entry was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OverBudget;

/// The pushing side, held by the core (in its `ConnHandle`) and the reader.
#[derive(Debug, Clone)]
pub(crate) struct QueueTx {
    tx: mpsc::UnboundedSender<Outbound>,
    queued: Arc<AtomicUsize>,
    budget: usize,
}

/// The writer's side.
#[derive(Debug)]
pub(crate) struct QueueRx {
    rx: mpsc::UnboundedReceiver<Outbound>,
    queued: Arc<AtomicUsize>,
}

/// A queue that holds at most about `budget` unwritten bytes. One entry is
/// always accepted into an empty queue, however large (a file, say).
pub(crate) fn queue(budget: usize) -> (QueueTx, QueueRx) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        QueueTx {
            tx,
            queued: queued.clone(),
            budget,
        },
        QueueRx { rx, queued },
    )
}

impl QueueTx {
    /// Queues `out` unless that would take the unwritten bytes over the
    /// budget. A closed queue (the writer is gone) silently drops it.
    pub(crate) fn push(&self, out: Outbound) -> Result<(), OverBudget> {
        let cost = out.cost();
        let before = self.queued.fetch_add(cost, Ordering::AcqRel);
        if cost > 0 && before > 0 && before + cost > self.budget {
            self.queued.fetch_sub(cost, Ordering::AcqRel);
            return Err(OverBudget);
        }
        if self.tx.send(out).is_err() {
            self.queued.fetch_sub(cost, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Unwritten bytes queued now.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

impl QueueRx {
    /// The next entry, or `None` once every sender is gone.
    pub(crate) async fn recv(&mut self) -> Option<Outbound> {
        self.rx.recv().await
    }

    /// The next entry if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<Outbound> {
        self.rx.try_recv().ok()
    }

    /// The next entry, blocking the thread (not for async code).
    pub(crate) fn blocking_recv(&mut self) -> Option<Outbound> {
        self.rx.blocking_recv()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Credits back entries the writer has written, by their total cost.
    pub(crate) fn written(&self, cost: usize) {
        if cost > 0 {
            self.queued.fetch_sub(cost, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn frame(len: usize) -> Outbound {
        Outbound::Frame(Bytes::from(vec![0; len]))
    }

    #[test]
    fn the_budget_counts_bytes_until_they_are_written() {
        let (tx, mut rx) = queue(1000);
        tx.push(frame(400)).unwrap();
        tx.push(frame(400)).unwrap();
        assert_eq!(tx.push(frame(400)), Err(OverBudget));
        // Close always fits: it costs nothing.
        tx.push(Outbound::Close).unwrap();
        let first = rx.try_recv().unwrap();
        rx.written(first.cost());
        tx.push(frame(400)).unwrap();
        assert_eq!(tx.queued(), 2 * (400 + ENTRY_COST));
    }

    #[test]
    fn an_empty_queue_takes_one_entry_of_any_size() {
        let (tx, mut rx) = queue(1000);
        tx.push(frame(5000)).unwrap();
        assert_eq!(tx.push(frame(10)), Err(OverBudget));
        let big = rx.try_recv().unwrap();
        rx.written(big.cost());
        assert_eq!(tx.queued(), 0);
        tx.push(frame(10)).unwrap();
    }

    #[test]
    fn a_batch_costs_the_sum_of_its_entries() {
        let batch = Outbound::Batch(vec![frame(100), frame(200), Outbound::Close]);
        assert_eq!(batch.cost(), 300 + 2 * ENTRY_COST);
    }

    #[test]
    fn pushing_to_a_closed_queue_leaves_nothing_charged() {
        let (tx, rx) = queue(1000);
        drop(rx);
        tx.push(frame(100)).unwrap();
        assert_eq!(tx.queued(), 0);
    }
}
