//! A history page from each room's newest rows: what both engines share.

use sotto_proto::{HistoryCursor, SharedEvent};

/// One page of a user's history.
#[derive(Debug)]
pub struct HistoryPage {
    pub events: Vec<SharedEvent>,
    pub more: Option<HistoryCursor>,
    /// Set when the page reaches the oldest event a room still keeps and
    /// older ones were deleted by the retention policy: that event's time.
    pub pruned_before: Option<i64>,
}

/// The strict upper bound of a page in (ts, room, seq) order, as signed
/// numbers for the queries; no cursor: everything.
pub(crate) fn bound(before: Option<HistoryCursor>) -> (i64, i64, i64) {
    before.map_or((i64::MAX, i64::MAX, i64::MAX), |c| {
        (
            c.ts,
            i64::try_from(c.room_id).unwrap_or(i64::MAX),
            i64::try_from(c.seq).unwrap_or(i64::MAX),
        )
    })
}

/// Makes a page from up to `limit` newest rows of each room the user sees
/// (`rooms`: (room, joined_seq)) and each room's oldest kept position
/// (`oldest`, same order as `rooms`; `None` for an empty room): the newest
/// `limit` overall, as many as fit in `max_bytes` (the newest always),
/// oldest first.
pub(crate) fn assemble(
    mut all: Vec<(HistoryCursor, SharedEvent)>,
    rooms: &[(i64, i64)],
    oldest: &[Option<i64>],
    limit: usize,
    max_bytes: usize,
) -> HistoryPage {
    all.sort_by_key(|e| std::cmp::Reverse(e.0));
    all.truncate(limit);
    let mut bytes = 0usize;
    let mut fit = 0;
    for (_, event) in &all {
        bytes = bytes.saturating_add(event.as_bytes().len());
        if fit > 0 && bytes > max_bytes {
            break;
        }
        fit += 1;
    }
    let more = (fit < all.len())
        .then(|| all.get(fit.wrapping_sub(1)).map(|e| e.0))
        .flatten();
    all.truncate(fit);
    all.reverse();
    // Did this page reach back to the oldest event a room still keeps,
    // with older ones (that this user could see) deleted by retention?
    let mut pruned = None;
    for (&(room, joined), first) in rooms.iter().zip(oldest) {
        let Some(first) = *first else {
            continue;
        };
        if first <= joined.saturating_add(1) {
            continue;
        }
        if let Some((at, _)) = all
            .iter()
            .find(|(c, _)| c.room_id == room as u64 && c.seq == first as u64)
        {
            pruned = pruned.max(Some(at.ts));
        }
    }
    HistoryPage {
        events: all.into_iter().map(|(_, e)| e).collect(),
        more,
        pruned_before: pruned,
    }
}
