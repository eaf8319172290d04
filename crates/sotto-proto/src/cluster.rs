//! What the nodes of a cluster tell each other (over NATS, and kept in
//! the shared database's change log): never sent to clients.
//!
//! A node's batch that commits in the shared database is a [`LogEntry`]:
//! every change it made to stored state, numbered by the cluster-wide
//! `epoch` it committed at. Every node applies every entry, in epoch order,
//! to its in-memory directory, and delivers the entry's new events to its
//! own connections. [`NodeNote`]s say which users are online on which
//! node, and how login attempts ended (the login limits are the
//! cluster's); they are not stored.

use serde::{Deserialize, Serialize};

use crate::messages::Status;
use crate::{DecodeError, EncodeError};

/// One change to stored state, as the node that made it wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    UserCreated {
        id: i64,
        name: String,
    },
    DeviceCreated {
        id: i64,
        user: i64,
        device: String,
    },
    /// A device removed from its account (by its user's device `by`).
    DeviceDeleted {
        id: i64,
        by: String,
    },
    RoomCreated {
        id: u64,
        kind: i64,
        name: Option<String>,
        owner: Option<i64>,
        user_a: Option<i64>,
        user_b: Option<i64>,
    },
    RoomDeleted {
        id: u64,
    },
    OwnerSet {
        room: u64,
        owner: i64,
    },
    MemberAdded {
        room: u64,
        user: i64,
        joined_seq: u64,
        position: i64,
    },
    MemberRemoved {
        room: u64,
        user: i64,
    },
    Invited {
        room: u64,
        user: i64,
        by: i64,
        ts: i64,
    },
    InvitationGone {
        room: u64,
        user: i64,
    },
    /// A stored room event: its encoded body, as clients receive it.
    Event {
        room: u64,
        seq: u64,
        ts: i64,
        sender: i64,
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
    CursorSet {
        device: i64,
        room: u64,
        seq: u64,
    },
    /// Events of `room` up to `up_to` deleted: their bytes by sender, and
    /// the room's oldest event left.
    EventsDeleted {
        room: u64,
        up_to: u64,
        freed: Vec<(Option<i64>, u64)>,
        oldest: Option<(u64, i64)>,
    },
    KeysPublished {
        device: i64,
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
    OneTimeKeyAdded {
        device: i64,
    },
    OneTimeKeyTaken {
        device: i64,
    },
    FallbackKeySet {
        device: i64,
    },
    FallbackKeyUsed {
        device: i64,
    },
    SentOnce {
        user: i64,
        client_id: u64,
        room: u64,
        seq: u64,
        ts: i64,
    },
}

/// The changes of one committed batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Its place in the cluster's one order of commits: 1, 2, 3, ...
    pub epoch: u64,
    /// The node that committed it.
    pub node: u64,
    pub changes: Vec<Change>,
    /// On the bus only: the entry was too large for a bus message, and
    /// its changes are left out; read it from the change log.
    #[serde(default)]
    pub elided: bool,
}

/// What one node tells the others that is not stored: who is online on
/// it, and login attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeNote {
    /// `user` is online on `node` with `status`, or (`None`) no longer.
    User {
        node: u64,
        user: i64,
        status: Option<Status>,
    },
    /// Every user online on `node`, sent when a node asks (`Hello`) and
    /// every few seconds as a heartbeat: a node not heard from for longer
    /// is taken to be gone, with its users.
    All {
        node: u64,
        users: Vec<(i64, Status)>,
    },
    /// A node started and asks the others for their `All`.
    Hello { node: u64 },
    /// A node is stopping: its users are offline at once.
    Bye { node: u64 },
    /// A login attempt ended on `node` (the login limits count it on every
    /// node).
    Login {
        node: u64,
        /// Where it came from: an IPv4 address, or an IPv6 /64.
        origin: Origin,
        /// The account tried, if any (not for a server password).
        account: Option<String>,
        outcome: LoginOutcome,
    },
}

/// An address as the login limits count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Origin {
    V4(u32),
    /// The first 64 bits.
    V6(u64),
}

impl From<std::net::IpAddr> for Origin {
    /// IPv4-mapped IPv6 addresses count as IPv4.
    fn from(ip: std::net::IpAddr) -> Self {
        match ip {
            std::net::IpAddr::V4(v4) => Origin::V4(u32::from(v4)),
            std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Origin::V4(u32::from(v4)),
                None => Origin::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// How a login attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoginOutcome {
    /// A wrong password (or an attempt broken off).
    Failed,
    /// Signed in: that account's failures from that origin are forgotten.
    Succeeded,
    /// An account was made.
    Registered,
    /// A wrong server password.
    ServerPasswordFailed,
}

macro_rules! codec {
    ($($ty:ty),*) => {$(
        impl $ty {
            pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
                rmp_serde::to_vec(self).map_err(|e| EncodeError::Serialize(e.to_string()))
            }

            pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                rmp_serde::from_slice(bytes).map_err(|e| DecodeError::Malformed {
                    request_id: None,
                    reason: e.to_string(),
                })
            }
        }
    )*};
}

codec!(LogEntry, NodeNote, Change);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let entry = LogEntry {
            epoch: 7,
            node: 3,
            changes: vec![
                Change::UserCreated {
                    id: 1,
                    name: "alice".into(),
                },
                Change::Event {
                    room: 1,
                    seq: 2,
                    ts: 3,
                    sender: 1,
                    body: vec![1, 2, 3],
                },
                Change::EventsDeleted {
                    room: 1,
                    up_to: 1,
                    freed: vec![(Some(1), 10), (None, 3)],
                    oldest: Some((2, 3)),
                },
            ],
            elided: false,
        };
        assert_eq!(LogEntry::decode(&entry.encode().unwrap()).unwrap(), entry);
        let note = NodeNote::All {
            node: 1,
            users: vec![(5, Status::Dnd)],
        };
        assert_eq!(NodeNote::decode(&note.encode().unwrap()).unwrap(), note);
        assert!(LogEntry::decode(b"\xff").is_err());
    }
}
