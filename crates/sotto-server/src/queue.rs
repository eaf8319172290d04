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
//!
//! It is a locked `VecDeque` rather than a channel: the writer takes
//! everything queued in one swap, and an idle connection keeps no queue
//! memory at all (a tokio channel keeps its blocks of 32 slots, several KiB
//! per connection).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::core::Outbound;

/// Charged for a reply, which the writer encodes: replies are small and
/// bounded by the protocol's listing limits.
const REPLY_COST: usize = 256;
/// Charged per entry on top of its payload: framing and bookkeeping.
const ENTRY_COST: usize = 32;
/// Entries of spare queue capacity an idle connection may keep.
const IDLE_CAPACITY: usize = 16;

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

#[derive(Debug, Default)]
struct Shared {
    items: Mutex<VecDeque<Outbound>>,
    /// Unwritten bytes: charged on push, credited back by the writer.
    queued: AtomicUsize,
    /// Live `QueueTx` clones; at zero the writer sees the end.
    senders: AtomicUsize,
    /// Set when the writer is gone: pushes are dropped.
    closed: AtomicBool,
    /// Wakes the writer.
    notify: Notify,
}

impl Shared {
    fn items(&self) -> MutexGuard<'_, VecDeque<Outbound>> {
        // A panic while holding the lock leaves a valid deque.
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The pushing side, held by the core (in its `ConnHandle`) and the reader.
#[derive(Debug)]
pub(crate) struct QueueTx {
    shared: Arc<Shared>,
    budget: usize,
}

/// The writer's side.
#[derive(Debug)]
pub(crate) struct QueueRx {
    shared: Arc<Shared>,
    /// Entries taken from the shared deque, not yet handed out.
    local: VecDeque<Outbound>,
}

/// A queue that holds at most about `budget` unwritten bytes. One entry is
/// always accepted into an empty queue, however large (a file, say).
pub(crate) fn queue(budget: usize) -> (QueueTx, QueueRx) {
    let shared = Arc::new(Shared {
        senders: AtomicUsize::new(1),
        ..Shared::default()
    });
    (
        QueueTx {
            shared: shared.clone(),
            budget,
        },
        QueueRx {
            shared,
            local: VecDeque::new(),
        },
    )
}

impl Clone for QueueTx {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::AcqRel);
        Self {
            shared: self.shared.clone(),
            budget: self.budget,
        }
    }
}

impl Drop for QueueTx {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.notify.notify_one();
        }
    }
}

impl QueueTx {
    /// Queues `out` unless that would take the unwritten bytes over the
    /// budget. A closed queue (the writer is gone) silently drops it.
    pub(crate) fn push(&self, out: Outbound) -> Result<(), OverBudget> {
        let cost = out.cost();
        let before = self.shared.queued.fetch_add(cost, Ordering::AcqRel);
        if cost > 0 && before > 0 && before + cost > self.budget {
            self.shared.queued.fetch_sub(cost, Ordering::AcqRel);
            return Err(OverBudget);
        }
        {
            let mut items = self.shared.items();
            if self.shared.closed.load(Ordering::Acquire) {
                drop(items);
                self.shared.queued.fetch_sub(cost, Ordering::AcqRel);
                return Ok(());
            }
            items.push_back(out);
        }
        self.shared.notify.notify_one();
        Ok(())
    }

    /// Unwritten bytes queued now.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }
}

impl QueueRx {
    /// Moves everything queued into `local`; false if nothing was queued.
    fn take_all(&mut self) -> bool {
        let mut items = self.shared.items();
        if items.is_empty() {
            return false;
        }
        // The shared side gets our empty deque (and its capacity) back.
        std::mem::swap(&mut *items, &mut self.local);
        true
    }

    /// The next entry, or `None` once every sender is gone and the queue
    /// is drained.
    pub(crate) async fn recv(&mut self) -> Option<Outbound> {
        loop {
            if let Some(out) = self.try_recv() {
                return Some(out);
            }
            if self.shared.senders.load(Ordering::Acquire) == 0 {
                // A last push may have landed just before the last sender
                // went away.
                return self.try_recv();
            }
            // A push or the last sender's drop between the checks above and
            // this await leaves a permit, so no wakeup is lost.
            self.shared.notify.notified().await;
        }
    }

    /// The next entry if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<Outbound> {
        if self.local.is_empty() && !self.take_all() {
            return None;
        }
        self.local.pop_front()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.local.is_empty() && self.shared.items().is_empty()
    }

    /// Credits back entries the writer has written, by their total cost.
    pub(crate) fn written(&self, cost: usize) {
        if cost > 0 {
            self.shared.queued.fetch_sub(cost, Ordering::AcqRel);
        }
    }

    /// Gives back spare capacity a burst grew, if nothing is queued.
    pub(crate) fn shrink_idle(&mut self) {
        if self.local.is_empty() && self.local.capacity() > IDLE_CAPACITY {
            self.local = VecDeque::new();
        }
        let mut items = self.shared.items();
        if items.is_empty() && items.capacity() > IDLE_CAPACITY {
            *items = VecDeque::new();
        }
    }
}

impl Drop for QueueRx {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        let dropped = std::mem::take(&mut *self.shared.items());
        drop(dropped);
        self.shared.queued.store(0, Ordering::Release);
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

    #[tokio::test]
    async fn the_writer_wakes_for_pushes_and_ends_with_the_last_sender() {
        let (tx, mut rx) = queue(1000);
        let other = tx.clone();
        let pushing = tokio::spawn(async move {
            tokio::task::yield_now().await;
            tx.push(frame(1)).unwrap();
            drop(tx);
            other.push(frame(2)).unwrap();
        });
        let mut lens = Vec::new();
        while let Some(Outbound::Frame(f)) = rx.recv().await {
            lens.push(f.len());
        }
        pushing.await.unwrap();
        assert_eq!(lens, [1, 2]);
    }

    #[test]
    fn an_idle_queue_gives_back_its_capacity() {
        let (tx, mut rx) = queue(1 << 20);
        for _ in 0..1000 {
            tx.push(frame(1)).unwrap();
        }
        while let Some(out) = rx.try_recv() {
            rx.written(out.cost());
        }
        rx.shrink_idle();
        assert_eq!(rx.local.capacity(), 0);
        assert!(rx.shared.items().capacity() <= IDLE_CAPACITY);
        assert!(rx.is_empty());
    }

    #[test]
    fn pushing_to_a_closed_queue_leaves_nothing_charged() {
        let (tx, rx) = queue(1000);
        drop(rx);
        tx.push(frame(100)).unwrap();
        assert_eq!(tx.queued(), 0);
    }
}
