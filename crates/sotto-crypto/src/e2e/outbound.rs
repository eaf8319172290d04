//! This device's sending side of a room: its outbound Megolm session, who
//! it was shared with or left out of, and when it must be replaced.

use std::collections::BTreeSet;

use vodozemac::megolm::{GroupSession, SessionConfig};

use super::megolm::{ROTATE_AFTER_MESSAGES, ROTATE_AFTER_MS, Recipient};

/// This device's sending session in one room.
pub struct OutboundRoom {
    pub(super) session: GroupSession,
    created_ms: i64,
    pub(super) sent: u32,
    /// Devices the room key has been sent to.
    pub(super) shared_with: BTreeSet<Recipient>,
    /// Devices left out of it (not accepted by the user): they may get its
    /// key later, once accepted, so it must not outlive their membership.
    pub(super) withheld: BTreeSet<Recipient>,
}

impl std::fmt::Debug for OutboundRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundRoom")
            .field("session_id", &self.session_id())
            .field("created_ms", &self.created_ms)
            .field("sent", &self.sent)
            .field("shared_with", &self.shared_with.len())
            .finish_non_exhaustive()
    }
}

impl OutboundRoom {
    pub(super) fn new(now_ms: i64) -> Self {
        Self {
            session: GroupSession::new(SessionConfig::version_1()),
            created_ms: now_ms,
            sent: 0,
            shared_with: BTreeSet::new(),
            withheld: BTreeSet::new(),
        }
    }

    pub fn session_id(&self) -> String {
        self.session.session_id()
    }

    /// Whether this session may not be used again: too many messages, too
    /// old, or a device it was shared with, or left out of (and could get
    /// it once accepted), is no longer a recipient or waiting to be one (a
    /// member left or was removed, or removed a device).
    pub fn expired(
        &self,
        now_ms: i64,
        recipients: &BTreeSet<Recipient>,
        waiting: &BTreeSet<Recipient>,
    ) -> bool {
        self.sent >= ROTATE_AFTER_MESSAGES
            || now_ms.saturating_sub(self.created_ms) >= ROTATE_AFTER_MS
            || !self.shared_with.is_subset(recipients)
            || !self
                .withheld
                .iter()
                .all(|d| recipients.contains(d) || waiting.contains(d))
    }
}

/// What must happen before a room message can be sent.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The outbound session's id.
    pub session_id: String,
    /// Devices that still need the room key (over Olm), with the key.
    pub to_share: Vec<Recipient>,
    /// The key to send them (at the session's current index).
    pub session_key: Vec<u8>,
    /// The session's current index: the first message they can read.
    pub index: u32,
    /// Whether the session is new (the old one was rotated or there was none).
    pub rotated: bool,
}
