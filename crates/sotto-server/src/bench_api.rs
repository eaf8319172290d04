//! Internals exposed for the criterion benchmarks in `benches/`, and for
//! nothing else.
//!
//! This module is not part of the server's API: it is hidden from the
//! documentation, may change with any commit, and no crate may depend on
//! it. It exists so the benchmarks measure the server's real code instead of
//! a copy: the password hasher the login path uses, and the core thread
//! applying and fanning out messages to in-process connections (no sockets,
//! no TLS, no writer tasks).

use std::path::Path;
use std::thread::JoinHandle;

use anyhow::Context;
use sotto_proto::{DeviceId, GroupName, Request, SessionToken, Username};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::core::{ConnHandle, ConnId, Core, Op, Outbound};
use crate::queue::QueueRx;
use crate::store;

pub use crate::auth::{Hasher, MAX_CONCURRENT_HASHES};

/// Name of the group a [`Router`] sends to.
const GROUP: &str = "bench";

/// A core thread with one sender and `recipients` other logged-in,
/// in-process connections, all in one group, for measuring the cost of
/// routing group messages.
///
/// Each member is a user with one connection whose outgoing queue is read
/// here instead of by a writer task. Member 0 sends; the sending connection
/// gets no copy of its own message, so each message makes `recipients`
/// deliveries.
#[derive(Debug)]
pub struct Router {
    /// The core's operation queue; dropping it stops the core.
    ops: Option<mpsc::Sender<Op>>,
    /// The core thread, joined on drop.
    thread: Option<JoinHandle<()>>,
    /// Each member connection's outgoing queue, as its writer would see it.
    queues: Vec<QueueRx>,
    /// Cancelled by the core if it disconnects a member as a slow consumer,
    /// which would make the measurement meaningless.
    cancels: Vec<CancellationToken>,
    group: GroupName,
    /// The group room's id, once known.
    room_id: u64,
    /// The group room's last sequence number delivered to every member.
    last_seq: u64,
    /// Request ids for member 0.
    next_req: u64,
    /// Waits on the queues the way a connection's writer task would.
    waiter: tokio::runtime::Runtime,
}

impl Router {
    /// Opens (creating) the database in `data_dir`, starts the core thread,
    /// registers and logs in a sender and `recipients` users, and has the
    /// sender create a group holding all of them. `queue` is each
    /// connection's outgoing queue budget in bytes; it must hold the setup's
    /// presence events (one per member) and one measured burst.
    pub fn start(data_dir: &Path, recipients: usize, queue: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(recipients >= 1, "a group message needs a recipient");
        let members = recipients + 1;
        let db = store::sqlite::SqliteWriter::open(&store::db_path(data_dir))
            .context("opening the database")?;
        let core = Core::new(
            Box::new(db),
            1000,
            crate::Quotas::default(),
            crate::Retention::default(),
            None,
        )?;
        let (ops, rx) = mpsc::channel(65_536);
        let thread = std::thread::Builder::new()
            .name("sotto-core".into())
            .spawn(move || core.run(rx))?;
        let mut router = Self {
            ops: Some(ops),
            thread: Some(thread),
            queues: Vec::with_capacity(members),
            cancels: Vec::with_capacity(members),
            group: GroupName::parse(GROUP)?,
            room_id: 0,
            last_seq: 0,
            next_req: 1,
            waiter: tokio::runtime::Builder::new_current_thread().build()?,
        };

        let names = (0..members)
            .map(|i| Username::parse(&format!("member{i:05}")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut registered = Vec::with_capacity(members);
        for name in &names {
            let (reply, rx) = oneshot::channel();
            router.op(Op::Register {
                name: name.clone(),
                // Never checked: these users only ever log in here.
                record: Vec::new(),
                reply,
            })?;
            registered.push(rx);
        }
        let mut attached = Vec::with_capacity(members);
        for (i, rx) in registered.into_iter().enumerate() {
            let user_id = rx
                .blocking_recv()
                .context("core stopped")?
                .map_err(|e| anyhow::anyhow!("register: {e}"))?;
            let (tx, queue) = crate::queue::queue(queue);
            let cancel = CancellationToken::new();
            let conn = ConnHandle {
                id: i as ConnId + 1,
                tx,
                cancel: cancel.clone(),
            };
            let (reply, rx) = oneshot::channel();
            router.op(Op::Attach {
                conn,
                user_id,
                device: DeviceId::parse(&format!("bench-device-{i:05}"))?,
                registered: true,
                session_token: SessionToken::parse(&"0".repeat(64))
                    .context("a valid token literal")?,
                token_hash: None,
                req_id: 0,
                reply,
            })?;
            router.queues.push(queue);
            router.cancels.push(cancel);
            attached.push(rx);
        }
        for rx in attached {
            anyhow::ensure!(rx.blocking_recv().unwrap_or(false), "attach refused");
        }

        let req_id = router.next_request();
        router.op(Op::Request {
            conn_id: 1,
            req_id,
            request: Request::GroupCreate {
                group: router.group.clone(),
                members: names.iter().skip(1).cloned().collect(),
            },
        })?;
        // Creating the group appends `GroupCreated` at seq 1 of the new room,
        // delivered to every member but the creator: wait for it everywhere.
        router.last_seq = 1;
        router.room_id = router.wait_room_seq(1, |room_id| room_id != store::LOBBY_ROOM)?;
        for member in 2..members {
            let room_id = router.room_id;
            router.wait_room_seq(member, |r| r == room_id)?;
        }
        Ok(router)
    }

    /// Member 0 sends `messages` group messages of `payload_len` bytes
    /// back to back; returns once every recipient's queue has received all
    /// of them (each was committed first, as always).
    pub fn send_group(&mut self, messages: usize, payload_len: usize) -> anyhow::Result<()> {
        for _ in 0..messages {
            let req_id = self.next_request();
            self.op(Op::Request {
                conn_id: 1,
                req_id,
                request: Request::SendGroup {
                    group: self.group.clone(),
                    payload: vec![0xa5; payload_len],
                },
            })?;
        }
        self.last_seq += messages as u64;
        let room_id = self.room_id;
        for member in 1..self.queues.len() {
            self.wait_room_seq(member, |r| r == room_id)?;
        }
        Ok(())
    }

    /// Deliveries each message makes: the members other than the sender.
    pub fn recipients(&self) -> usize {
        self.queues.len() - 1
    }

    fn next_request(&mut self) -> u64 {
        self.next_req += 1;
        self.next_req
    }

    fn op(&self, op: Op) -> anyhow::Result<()> {
        self.ops
            .as_ref()
            .context("core stopped")?
            .blocking_send(op)
            .map_err(|_| anyhow::anyhow!("core stopped"))
    }

    /// Reads `member`'s queue, skipping replies, presence and other rooms'
    /// events, until the room event at `self.last_seq` of a room `is_room`
    /// accepts arrives; returns that room's id.
    fn wait_room_seq(
        &mut self,
        member: usize,
        is_room: impl Fn(u64) -> bool,
    ) -> anyhow::Result<u64> {
        let target = self.last_seq;
        loop {
            anyhow::ensure!(
                self.cancels.get(member).is_some_and(|c| !c.is_cancelled()),
                "member {member} was disconnected as a slow consumer: raise the queue budget"
            );
            let queue = self.queues.get_mut(member).context("no such member")?;
            let out = self.waiter.block_on(queue.recv()).context("core stopped")?;
            queue.written(out.cost());
            let (batch, single) = match out {
                Outbound::Batch(items) => (items, None),
                one => (Vec::new(), Some(one)),
            };
            for out in batch.into_iter().chain(single) {
                if let Outbound::Room { room_id, seq, .. } = out
                    && is_room(room_id)
                    && seq >= target
                {
                    return Ok(room_id);
                }
            }
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        // The core stops once its queue is closed; the connections it still
        // holds are dropped with it.
        drop(self.ops.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
