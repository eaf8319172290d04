//! The core's part in a cluster: the commit order (the change log) and
//! who is online on the other nodes.
//!
//! Commits: a batch that writes takes the cluster's commit lock, first
//! applies every entry other nodes committed since this node's last one,
//! then its own operations, and commits its changes as the log's next
//! entry. So every node sees the same changes in the same order, and a
//! room's positions are handed out by one node at a time. Entries arriving
//! on the bus between batches are applied at once, in order; a gap (a
//! message the bus lost) is filled from the log in the database.
//!
//! Presence: each node says on the bus which of its users are online, with
//! what status, and repeats all of it every second; a node not heard from
//! for [`NODE_TIMEOUT`] is taken to be gone, with its users.

use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use sotto_proto::cluster::{LogEntry, NodeNote};
use sotto_proto::{EventKind, PresenceChange, Status};
use tokio::sync::mpsc;

use super::{Core, Effects, Outbound};
use crate::store::{RoomKind, Writer};

/// Log entries kept in the database for nodes that missed them on the bus.
pub(crate) const LOG_KEEP: u64 = 100_000;

/// The largest entry sent whole on the bus (NATS takes 1 MiB messages by
/// default); a larger one is announced, and read from the log.
pub(crate) const BUS_ENTRY_MAX: usize = 512 * 1024;

/// A node not heard from for this long is taken to be gone.
pub(crate) const NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the core hands the bus task to publish.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Entry(Vec<u8>),
    Presence(Vec<u8>),
}

/// This node in its cluster.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// This node's id (random at each start).
    pub node: u64,
    /// The last log entry applied here.
    pub applied: u64,
    /// To the bus task; a full queue drops (others catch up from the log).
    pub outbox: mpsc::Sender<Outgoing>,
    /// Users online on other nodes: by user, their nodes and status.
    remote: FxHashMap<i64, FxHashMap<u64, Status>>,
    /// When each other node was last heard from.
    heard: FxHashMap<u64, Instant>,
}

impl Cluster {
    pub fn new(node: u64, applied: u64, outbox: mpsc::Sender<Outgoing>) -> Self {
        Self {
            node,
            applied,
            outbox,
            remote: FxHashMap::default(),
            heard: FxHashMap::default(),
        }
    }

    fn publish(&self, out: Outgoing) {
        if self.outbox.try_send(out).is_err() {
            tracing::debug!("bus queue full: the other nodes catch up from the log");
        }
    }

    /// The status of `user` on another node, if online there.
    pub fn remote_status(&self, user: i64) -> Option<Status> {
        self.remote
            .get(&user)
            .and_then(|nodes| nodes.values().next().copied())
    }
}

impl Core {
    /// In a cluster, applies log entries that arrived on the bus (between
    /// batches), reading what the bus lost from the database.
    pub(super) fn apply_bus_entries(&mut self, entries: Vec<Vec<u8>>) {
        let mut fx = Effects::default();
        for bytes in entries {
            let entry = match LogEntry::decode(&bytes) {
                Ok(entry) => entry,
                Err(e) => {
                    tracing::error!("unreadable log entry from the bus: {e}");
                    continue;
                }
            };
            let Some(applied) = self.cluster.as_ref().map(|c| c.applied) else {
                return;
            };
            if entry.epoch <= applied {
                continue;
            }
            if (entry.elided || entry.epoch > applied + 1) && !self.catch_up_unlocked(&mut fx) {
                continue;
            }
            // (An elided entry is never applied: its changes are in the log.)
            if !entry.elided
                && self
                    .cluster
                    .as_ref()
                    .is_some_and(|c| entry.epoch == c.applied + 1)
            {
                self.apply_logged(&entry, &mut fx);
            }
        }
        self.dispatch(fx);
    }

    /// Applies an entry and counts it applied.
    fn apply_logged(&mut self, entry: &LogEntry, fx: &mut Effects) {
        self.apply_entry(entry, fx);
        if let Some(cluster) = &mut self.cluster {
            cluster.applied = entry.epoch;
        }
    }

    /// Reads the entries this node missed from the log; if some are gone
    /// from it, reloads the whole state. False if the database could not
    /// be read.
    fn catch_up_unlocked(&mut self, fx: &mut Effects) -> bool {
        let Some(applied) = self.cluster.as_ref().map(|c| c.applied) else {
            return false;
        };
        match self.db.read_log(applied) {
            Ok(Some(missed)) => {
                self.apply_encoded(&missed, fx);
                true
            }
            Ok(None) => {
                tracing::warn!("this node fell behind the change log: reloading the state");
                self.reload();
                true
            }
            Err(e) => {
                tracing::warn!("cannot read the change log: {e:#}");
                false
            }
        }
    }

    fn apply_encoded(&mut self, entries: &[Vec<u8>], fx: &mut Effects) {
        for bytes in entries {
            match LogEntry::decode(bytes) {
                Ok(entry) => {
                    if self
                        .cluster
                        .as_ref()
                        .is_some_and(|c| entry.epoch > c.applied)
                    {
                        self.apply_logged(&entry, fx);
                    }
                }
                Err(e) => tracing::error!("unreadable log entry: {e}"),
            }
        }
    }

    /// At the start of a batch that may write: takes the commit lock and
    /// applies what other nodes committed since (delivered at once: it is
    /// committed).
    pub(super) fn lock_and_catch_up(&mut self) -> anyhow::Result<()> {
        let Some(applied) = self.cluster.as_ref().map(|c| c.applied) else {
            return Ok(());
        };
        let missed = self.db.lock_log(applied)?;
        let mut fx = Effects::default();
        self.apply_encoded(&missed, &mut fx);
        self.dispatch(fx);
        Ok(())
    }

    /// At the end of a batch, before its commit: its changes as the log's
    /// next entry. Returns the entry to publish once committed.
    pub(super) fn seal_entry(&mut self) -> anyhow::Result<Option<(u64, Vec<u8>)>> {
        let Some(cluster) = &self.cluster else {
            return Ok(None);
        };
        let changes = self.db.take_log();
        if changes.is_empty() {
            return Ok(None);
        }
        let entry = LogEntry {
            epoch: cluster.applied + 1,
            node: cluster.node,
            changes,
            elided: false,
        };
        let bytes = entry.encode()?;
        self.db.append_log(entry.epoch, &bytes, LOG_KEEP)?;
        Ok(Some((entry.epoch, bytes)))
    }

    /// After the commit: counts the entry applied and publishes it.
    pub(super) fn committed_entry(&mut self, epoch: u64, bytes: Vec<u8>) {
        if let Some(cluster) = &mut self.cluster {
            cluster.applied = epoch;
            let bytes = if bytes.len() <= BUS_ENTRY_MAX {
                bytes
            } else {
                let note = LogEntry {
                    epoch,
                    node: cluster.node,
                    changes: Vec::new(),
                    elided: true,
                };
                match note.encode() {
                    Ok(note) => note,
                    Err(_) => return,
                }
            };
            cluster.publish(Outgoing::Entry(bytes));
        }
    }

    /// The status of `user` anywhere in the cluster, if online.
    pub(super) fn status_anywhere(&self, user: i64) -> Option<Status> {
        self.online
            .get(&user)
            .map(|o| o.status)
            .or_else(|| self.cluster.as_ref().and_then(|c| c.remote_status(user)))
    }

    /// Tells the other nodes that `user` is online here with `status`, or
    /// (`None`) no longer.
    pub(super) fn publish_presence(&self, user: i64, status: Option<Status>) {
        if let Some(cluster) = &self.cluster {
            let note = NodeNote::User {
                node: cluster.node,
                user,
                status,
            };
            if let Ok(bytes) = note.encode() {
                cluster.publish(Outgoing::Presence(bytes));
            }
        }
    }

    /// Every user online here, for the bus (each second, and on request).
    pub(super) fn publish_all_presence(&self) {
        if let Some(cluster) = &self.cluster {
            let note = NodeNote::All {
                node: cluster.node,
                users: self.online.iter().map(|(u, o)| (*u, o.status)).collect(),
            };
            if let Ok(bytes) = note.encode() {
                cluster.publish(Outgoing::Presence(bytes));
            }
        }
    }

    /// A presence note from another node.
    pub(super) fn apply_presence(&mut self, note: NodeNote) {
        let mut fx = Effects::default();
        match note {
            NodeNote::User { node, user, status } => {
                self.heard(node);
                self.set_remote(node, user, status, &mut fx);
            }
            NodeNote::All { node, users } => {
                self.heard(node);
                let listed: FxHashMap<i64, Status> = users.into_iter().collect();
                let gone: Vec<i64> = self
                    .cluster
                    .iter()
                    .flat_map(|c| c.remote.iter())
                    .filter(|(user, nodes)| nodes.contains_key(&node) && !listed.contains_key(user))
                    .map(|(user, _)| *user)
                    .collect();
                for user in gone {
                    self.set_remote(node, user, None, &mut fx);
                }
                for (user, status) in listed {
                    self.set_remote(node, user, Some(status), &mut fx);
                }
            }
            NodeNote::Hello { node } => {
                self.heard(node);
                self.publish_all_presence();
            }
            NodeNote::Bye { node } => self.forget_node(node, &mut fx),
            // Counted by the bus task.
            NodeNote::Login { .. } => {}
        }
        self.dispatch(fx);
    }

    fn heard(&mut self, node: u64) {
        if let Some(cluster) = &mut self.cluster
            && node != cluster.node
        {
            cluster.heard.insert(node, Instant::now());
        }
    }

    /// Takes the users of nodes not heard from for [`NODE_TIMEOUT`] offline.
    pub(super) fn expire_nodes(&mut self) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let silent: Vec<u64> = cluster
            .heard
            .iter()
            .filter(|(_, at)| at.elapsed() > NODE_TIMEOUT)
            .map(|(node, _)| *node)
            .collect();
        if silent.is_empty() {
            return;
        }
        let mut fx = Effects::default();
        for node in silent {
            tracing::warn!(
                node = format!("{node:016x}"),
                "a node stopped answering: its users are offline"
            );
            self.forget_node(node, &mut fx);
        }
        self.dispatch(fx);
    }

    fn forget_node(&mut self, node: u64, fx: &mut Effects) {
        let users: Vec<i64> = self
            .cluster
            .iter()
            .flat_map(|c| c.remote.iter())
            .filter(|(_, nodes)| nodes.contains_key(&node))
            .map(|(user, _)| *user)
            .collect();
        for user in users {
            self.set_remote(node, user, None, fx);
        }
        if let Some(cluster) = &mut self.cluster {
            cluster.heard.remove(&node);
        }
    }

    /// Records `user`'s status on `node` (`None`: offline there), and tells
    /// this node's connections what changed for the cluster as a whole.
    fn set_remote(&mut self, node: u64, user: i64, status: Option<Status>, fx: &mut Effects) {
        // A user this node does not know yet (the log entry that made the
        // account is still on its way): the next heartbeat says it again.
        let Ok(name) = self.name(user) else {
            return;
        };
        let before = self.status_anywhere(user);
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        if node == cluster.node {
            return;
        }
        match status {
            Some(status) => {
                cluster.remote.entry(user).or_default().insert(node, status);
            }
            None => {
                if let Some(nodes) = cluster.remote.get_mut(&user) {
                    nodes.remove(&node);
                    if nodes.is_empty() {
                        cluster.remote.remove(&user);
                    }
                }
            }
        }
        // A status set on another node is the user's status here too.
        if let (Some(status), Some(local)) = (status, self.online.get_mut(&user)) {
            local.status = status;
        }
        let after = self.status_anywhere(user);
        if before == after {
            return;
        }
        let change = match (before, after) {
            (None, Some(status)) => {
                self.online_names.insert(name.clone());
                PresenceChange::Online(status)
            }
            (Some(_), None) => {
                self.online_names.remove(&name);
                PresenceChange::Offline
            }
            (_, Some(status)) => PresenceChange::Status(status),
            (None, None) => return,
        };
        if let PresenceChange::Status(status) = change
            && before == Some(Status::Dnd)
            && status != Status::Dnd
        {
            self.release_dnd(user, fx);
        }
        self.announce(fx, EventKind::Presence { user: name, change }, None);
    }

    /// Sends a user's connections here the private messages held while the
    /// user was in dnd.
    pub(super) fn release_dnd(&self, user: i64, fx: &mut Effects) {
        let conns = self
            .online
            .get(&user)
            .map(|o| o.conns.clone())
            .unwrap_or_default();
        for conn_id in conns {
            let Some(conn) = self.conns.get(&conn_id) else {
                continue;
            };
            let ranges = self.sync_ranges(user, conn.device_key, false, |room| {
                room.kind == RoomKind::Direct
            });
            if !ranges.is_empty() {
                fx.send(
                    conn_id,
                    Outbound::Sync {
                        ranges,
                        caught_up: false,
                    },
                );
            }
        }
    }
}
