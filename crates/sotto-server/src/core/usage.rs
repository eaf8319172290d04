//! What is stored, and for how long: bytes per room and per sender (for the
//! stored-bytes quotas and the to-device inbox limit), and the retention
//! policy that prunes old lobby and room events.
//!
//! Every figure is the length of the stored event body. The counts are
//! loaded at start and kept in step with every append and prune, inside
//! the core's open transaction (a failed commit reloads them).

use rustc_hash::FxHashMap;

use super::{CURSOR_FLUSH_INTERVAL, Core, MAX_DIRTY_CURSORS, now_ms};
use crate::Keep;
use sotto_proto::cluster::Change;

use super::replica::Recorder;
use crate::store::{RoomKind, Snapshot, Writer};

/// Stored bytes and the oldest kept event of one room.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RoomUsage {
    pub bytes: u64,
    /// Position and time of the oldest event still stored.
    pub oldest: Option<(u64, i64)>,
}

/// Stored bytes by room and by sender.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    rooms: FxHashMap<u64, RoomUsage>,
    senders: FxHashMap<i64, u64>,
    /// By (room, sender): each sender's share of a room.
    shares: FxHashMap<(u64, i64), u64>,
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Events one retention pass deletes from one room, at most.
pub(crate) const MAX_PRUNED_PER_PASS: u64 = 20_000;

impl Usage {
    /// Sums what the database holds.
    pub fn load(db: &Snapshot) -> Self {
        let mut usage = Usage::default();
        for &(room, sender, bytes) in &db.usage {
            usage.rooms.entry(room).or_default().bytes += bytes;
            if let Some(sender) = sender {
                *usage.senders.entry(sender).or_insert(0) += bytes;
                usage.shares.insert((room, sender), bytes);
            }
        }
        for &(room, seq, ts) in &db.oldest {
            if let Some(usage) = usage.rooms.get_mut(&room) {
                usage.oldest = Some((seq, ts));
            }
        }
        usage
    }

    /// Bytes stored in a room.
    pub fn room_bytes(&self, room: u64) -> u64 {
        self.rooms.get(&room).map_or(0, |r| r.bytes)
    }

    /// Bytes stored that `sender` sent, in every room and inbox.
    pub fn sender_bytes(&self, sender: i64) -> u64 {
        self.senders.get(&sender).copied().unwrap_or(0)
    }

    /// Bytes stored in a room that `sender` sent.
    pub fn share(&self, room: u64, sender: i64) -> u64 {
        self.shares.get(&(room, sender)).copied().unwrap_or(0)
    }

    /// The oldest event still stored in a room.
    pub fn oldest(&self, room: u64) -> Option<(u64, i64)> {
        self.rooms.get(&room).and_then(|r| r.oldest)
    }

    /// Counts an appended event.
    pub fn added(&mut self, room: u64, sender: i64, seq: u64, ts: i64, bytes: u64) {
        let usage = self.rooms.entry(room).or_default();
        usage.bytes += bytes;
        usage.oldest.get_or_insert((seq, ts));
        *self.senders.entry(sender).or_insert(0) += bytes;
        *self.shares.entry((room, sender)).or_insert(0) += bytes;
    }

    /// Deletes a room's events up to and including `up_to` (all of them
    /// with `u64::MAX`) and takes them off the counts.
    pub fn prune(&mut self, db: &mut Recorder, room: u64, up_to: u64) -> anyhow::Result<()> {
        let freed = db.event_bytes(room, up_to)?;
        if freed.iter().all(|(_, bytes)| *bytes == 0) {
            return Ok(());
        }
        db.delete_events(room, up_to)?;
        let oldest = db.oldest_event(room)?;
        self.forget(room, &freed, oldest);
        db.note(Change::EventsDeleted {
            room,
            up_to,
            freed,
            oldest,
        });
        Ok(())
    }

    /// Takes deleted events off the counts: their bytes by sender, and the
    /// room's oldest event left.
    pub fn forget(&mut self, room: u64, freed: &[(Option<i64>, u64)], oldest: Option<(u64, i64)>) {
        let mut total = 0u64;
        for &(sender, bytes) in freed {
            total += bytes;
            let Some(sender) = sender else {
                continue;
            };
            if let Some(sent) = self.senders.get_mut(&sender) {
                *sent = sent.saturating_sub(bytes);
            }
            if let Some(share) = self.shares.get_mut(&(room, sender)) {
                *share = share.saturating_sub(bytes);
                if *share == 0 {
                    self.shares.remove(&(room, sender));
                }
            }
        }
        match oldest {
            None => {
                self.rooms.remove(&room);
            }
            Some(oldest) => {
                let usage = self.rooms.entry(room).or_default();
                usage.bytes = usage.bytes.saturating_sub(total);
                usage.oldest = Some(oldest);
            }
        }
    }

    /// Rooms holding events, for the retention pass.
    pub fn rooms(&self) -> Vec<u64> {
        self.rooms.keys().copied().collect()
    }
}

impl Core {
    /// Writes the acknowledged positions (about once a second), and deletes
    /// what every reader of a device inbox or a notices room has.
    pub(super) fn flush_cursors(&mut self) -> anyhow::Result<()> {
        let due = self.closing
            || self.cursors_flushed.elapsed() >= CURSOR_FLUSH_INTERVAL
            || self.dirty_cursors.len() >= MAX_DIRTY_CURSORS;
        if self.dirty_cursors.is_empty() || !due {
            return Ok(());
        }
        self.cursors_flushed = std::time::Instant::now();
        let mut notices = Vec::new();
        for ((device, room), seq) in std::mem::take(&mut self.dirty_cursors) {
            self.db.set_cursor(device, room, seq)?;
            match self.dir.rooms.get(&room) {
                // A device's to-device messages are gone once it has them.
                Some(r) if r.device == Some(device) => self.usage.prune(&mut self.db, room, seq)?,
                Some(r) if r.kind == RoomKind::Notices => notices.push(room),
                _ => {}
            }
        }
        // A user's notices are gone once every device of theirs has them.
        for room in notices {
            let Some(user) = self
                .dir
                .rooms
                .get(&room)
                .and_then(|r| r.members.keys().next().copied())
            else {
                continue;
            };
            let read_by_all = self
                .dir
                .user_devices
                .get(&user)
                .into_iter()
                .flatten()
                .map(|device| self.dir.cursor(user, *device, room))
                .min();
            if let Some(seq) = read_by_all.filter(|seq| *seq > 0) {
                self.usage.prune(&mut self.db, room, seq)?;
            }
        }
        Ok(())
    }

    /// Deletes lobby and room events the retention policy lets go, at
    /// most once per [`crate::Retention::interval`] (the server ticks
    /// every second, so an idle server prunes too).
    pub(super) fn apply_retention(&mut self) -> anyhow::Result<()> {
        if self
            .retention_applied
            .is_some_and(|at| at.elapsed() < self.retention.interval)
        {
            return Ok(());
        }
        self.retention_applied = Some(std::time::Instant::now());
        if self.retention.lobby == Keep::default() && self.retention.rooms == Keep::default() {
            return Ok(());
        }
        let now = now_ms();
        for room_id in self.usage.rooms() {
            let Some(room) = self.dir.rooms.get(&room_id) else {
                continue;
            };
            let keep = match room.kind {
                RoomKind::Lobby => self.retention.lobby,
                RoomKind::Direct | RoomKind::Group => self.retention.rooms,
                RoomKind::Notices | RoomKind::Inbox => continue,
            };
            if keep == crate::Keep::default() {
                continue;
            }
            let last_seq = room.last_seq;
            if let Some(up_to) = prunable(&mut self.db, &self.usage, room_id, last_seq, keep, now)?
            {
                tracing::debug!(room_id, up_to, "retention: pruning");
                self.usage.prune(&mut self.db, room_id, up_to)?;
            }
        }
        Ok(())
    }
}

/// The newest position of `room` that `keep` lets go, if any: events older
/// than `keep.days`, and all but the newest `keep.messages`. The newest event
/// of a room is always kept, so that positions are never handed out twice
/// after a restart (the next one is counted from it).
pub(crate) fn prunable(
    db: &mut dyn Writer,
    usage: &Usage,
    room: u64,
    last_seq: u64,
    keep: Keep,
    now: i64,
) -> anyhow::Result<Option<u64>> {
    let Some((oldest_seq, oldest_ts)) = usage.oldest(room) else {
        return Ok(None);
    };
    let newest_kept_back = last_seq.saturating_sub(1);
    // A bounded step per pass, so that a large backlog (a policy just
    // tightened, a busy lobby) never stalls the core for long.
    let step_end = oldest_seq.saturating_add(MAX_PRUNED_PER_PASS - 1);
    let mut up_to = 0u64;
    if keep.messages > 0 {
        up_to = up_to.max(last_seq.saturating_sub(keep.messages));
    }
    if keep.days > 0 {
        let cutoff = now.saturating_sub(i64::from(keep.days).saturating_mul(DAY_MS));
        if oldest_ts < cutoff
            && let Some(last) = db.last_before(room, oldest_seq, step_end, cutoff)?
        {
            up_to = up_to.max(last);
        }
    }
    let up_to = up_to.min(newest_kept_back).min(step_end);
    Ok((up_to >= oldest_seq).then_some(up_to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewEvent;
    use crate::store::sqlite::SqliteWriter;

    const NOW: i64 = 1_800_000_000_000;

    /// A room of `n` events, one a minute up to now, sent by user 7.
    fn db_with_room(n: u64) -> Recorder {
        let mut db = Recorder::new(Box::new(SqliteWriter::in_memory()), false);
        db.begin().unwrap();
        for seq in 1..=n {
            db.insert_event(NewEvent {
                room_id: 1,
                seq,
                ts: NOW - (n - seq) as i64 * 60_000,
                body: &[0, 0x11, 0x22, 0x33],
                sender: 7,
            })
            .unwrap();
        }
        db.commit().unwrap();
        db
    }

    #[test]
    fn retention_keeps_the_newest_and_works_off_a_backlog_in_bounded_steps() {
        let n = MAX_PRUNED_PER_PASS + 5_000;
        let mut db = db_with_room(n);
        let mut usage = Usage::load(&db.snapshot().unwrap());
        assert_eq!(usage.room_bytes(1), 4 * n);
        assert_eq!(usage.sender_bytes(7), 4 * n);
        let keep = Keep {
            days: 0,
            messages: 10,
        };
        let first = prunable(&mut db, &usage, 1, n, keep, NOW).unwrap();
        assert_eq!(first, Some(MAX_PRUNED_PER_PASS));
        usage.prune(&mut db, 1, MAX_PRUNED_PER_PASS).unwrap();
        let second = prunable(&mut db, &usage, 1, n, keep, NOW).unwrap();
        assert_eq!(second, Some(n - 10));
        usage.prune(&mut db, 1, n - 10).unwrap();
        assert_eq!(prunable(&mut db, &usage, 1, n, keep, NOW).unwrap(), None);
        assert_eq!(usage.room_bytes(1), 40);
        assert_eq!(usage.sender_bytes(7), 40);
        assert_eq!(usage.oldest(1).map(|(seq, _)| seq), Some(n - 9));
    }

    #[test]
    fn retention_by_age_never_deletes_a_rooms_newest_event() {
        let mut db = db_with_room(100);
        let usage = Usage::load(&db.snapshot().unwrap());
        let keep = Keep {
            days: 1,
            messages: 0,
        };
        // A minute apart: all within a day.
        assert_eq!(prunable(&mut db, &usage, 1, 100, keep, NOW).unwrap(), None);
        // Ten days later every event is old; the newest stays.
        let later = NOW + 10 * DAY_MS;
        assert_eq!(
            prunable(&mut db, &usage, 1, 100, keep, later).unwrap(),
            Some(99)
        );
        // Those more than a day old: sent over 50 minutes before `NOW`.
        let half = NOW + DAY_MS - 50 * 60_000;
        assert_eq!(
            prunable(&mut db, &usage, 1, 100, keep, half).unwrap(),
            Some(49)
        );
    }
}
