//! Replay protection for room messages, in bounded memory: which message
//! indices of a Megolm session were read ([`ReplayWindow`], a record of
//! fixed size however long the session), and the message id each message
//! must carry inside its ciphertext, bound to its session and index
//! ([`message_id`]), so that a repeated id is a replayed message.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Message indices of one session tracked above its floor (every index
/// below the floor counts as read). A sender that jumps further ahead moves
/// the floor up, so a message older than that window is refused as a
/// replay; Sotto's senders rotate after [`super::megolm::ROTATE_AFTER_MESSAGES`], far
/// inside it.
pub const REPLAY_WINDOW: u32 = 1024;

/// The message id a room message at `index` of session `session_id` must
/// carry inside its ciphertext: bound to its place, so a repeated id is a
/// replayed message, and the replay window refuses it.
pub fn message_id(session_id: &str, index: u32) -> [u8; 16] {
    let mut hash = Sha256::new();
    hash.update(b"sotto message id v1\0");
    hash.update((session_id.len() as u32).to_be_bytes());
    hash.update(session_id.as_bytes());
    hash.update(index.to_be_bytes());
    let digest = hash.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

/// Which message indices of one session were read, in bounded memory:
/// every index below `floor`, and those set in `bits` above it (bit `i`
/// of word `w` is index `floor + 64 w + i`). Whole words that fill up move
/// the floor, so a session read to its end keeps a floor and no words.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayWindow {
    floor: u32,
    bits: Vec<u64>,
}

impl ReplayWindow {
    /// Whether the message at `index` was read before (or lies below the
    /// window).
    pub fn seen(&self, index: u32) -> bool {
        if index < self.floor {
            return true;
        }
        let offset = index - self.floor;
        let (word, bit) = ((offset / 64) as usize, offset % 64);
        self.bits.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    /// Records that the message at `index` was read.
    pub fn mark(&mut self, index: u32) {
        if index < self.floor {
            return;
        }
        if index - self.floor >= REPLAY_WINDOW {
            // Slide so that `index` is the window's last slot.
            let new_floor = (index - REPLAY_WINDOW + 1)
                .checked_next_multiple_of(64)
                .unwrap_or(index & !63);
            let drop_words = ((new_floor - self.floor) / 64) as usize;
            self.bits.drain(..drop_words.min(self.bits.len()));
            self.floor = new_floor;
        }
        let offset = index - self.floor;
        let (word, bit) = ((offset / 64) as usize, offset % 64);
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        self.bits[word] |= 1 << bit;
        while self.bits.first() == Some(&u64::MAX) {
            self.bits.remove(0);
            // (A sender at the end of the index space keeps its last word.)
            let Some(floor) = self.floor.checked_add(64) else {
                break;
            };
            self.floor = floor;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2e::megolm::ROTATE_AFTER_MESSAGES;

    #[test]
    fn the_window_remembers_what_was_read_in_bounded_space() {
        let mut window = ReplayWindow::default();
        for index in [3, 0, 1, 2, 70] {
            assert!(!window.seen(index));
            window.mark(index);
            assert!(window.seen(index));
        }
        assert!(!window.seen(4) && !window.seen(69));
        // A whole session read in order keeps no words at all.
        let mut full = ReplayWindow::default();
        for index in 0..ROTATE_AFTER_MESSAGES * 10 {
            full.mark(index);
        }
        assert!(full.bits.len() <= 1, "{full:?}");
        assert!(full.seen(0) && full.seen(999) && !full.seen(1000));
        // A far jump slides the window: what falls below it counts as read.
        window.mark(1_000_000);
        assert!(window.seen(1_000_000) && window.seen(4));
        assert!(!window.seen(1_000_000 - 1));
        assert!(window.bits.len() <= (REPLAY_WINDOW / 64) as usize + 1);
    }

    #[test]
    fn message_ids_are_bound_to_session_and_index() {
        assert_ne!(message_id("s", 1), message_id("s", 2));
        assert_ne!(message_id("s", 1), message_id("t", 1));
        assert_eq!(message_id("s", 1), message_id("s", 1));
    }
}
