//! Applying one operation, and appending an event to a room's timeline
//! with its fanout.

use sotto_proto::{EventBody, EventKind, RoomContent, RoomEvent, SharedEvent, Status};

use super::{AttachLogin, ConnId, Core, Effects, Op, Outbound, err, now_ms};
use crate::store::{NewEvent, RoomKind, Writer as _};
use sotto_proto::ErrorCode;

impl Core {
    pub(super) fn apply(&mut self, op: Op, fx: &mut Effects) -> anyhow::Result<()> {
        match op {
            Op::Register {
                name,
                record,
                reply,
            } => {
                let result = self.register(name, &record)?;
                fx.reply_once_committed(reply, result);
            }
            Op::SetPassword {
                user_id,
                record,
                reply,
            } => {
                let result = self.set_password(user_id, &record)?;
                fx.reply_once_committed(reply, result);
            }
            Op::Attach {
                conn,
                user_id,
                device,
                registered,
                session_token,
                token_hash,
                req_id,
                reply,
            } => {
                let login = AttachLogin {
                    user: user_id,
                    device,
                    registered,
                    session_token,
                    token_hash,
                    req_id,
                };
                let ok = self.attach(conn, login, fx)?;
                fx.completions.push(Box::new(move |committed| {
                    let _ = reply.send(ok && committed);
                }));
            }
            Op::Detach { conn_id } => self.detach(conn_id, fx),
            // Taken out of the batch before (`take_cluster_ops`).
            Op::Tick | Op::Entry(_) | Op::Presence(_) => {}
            Op::Acks { conn_id, acks } => {
                for ack in acks {
                    self.ack(conn_id, ack);
                }
            }
            Op::Request {
                conn_id,
                req_id,
                request,
            } => {
                let Some(conn) = self.conns.get(&conn_id) else {
                    return Ok(());
                };
                if conn.removed {
                    fx.reply(
                        conn_id,
                        req_id,
                        Err(err(ErrorCode::NotLoggedIn, "this device was removed")),
                    );
                    return Ok(());
                }
                let (user, device) = (conn.user, conn.device.clone());
                fx.current_conn = Some(conn_id);
                let result = self.request(conn_id, user, &device, request, fx);
                fx.current_conn = None;
                let result = result?;
                fx.reply(conn_id, req_id, result);
                for (conn, event) in std::mem::take(&mut fx.after_reply) {
                    fx.send(conn, Outbound::Event(event));
                    fx.send(conn, Outbound::Close);
                }
            }
            Op::Shutdown { reply } => {
                self.closing = true;
                let event = EventBody {
                    ts: now_ms(),
                    kind: EventKind::Shutdown {
                        message: "the server is shutting down".into(),
                    },
                };
                if let Ok(shared) = SharedEvent::encode(&event) {
                    for id in self.conns.keys() {
                        fx.send(*id, Outbound::Event(shared.clone()));
                        fx.send(*id, Outbound::Close);
                    }
                }
                fx.completions.push(Box::new(move |_| {
                    let _ = reply.send(());
                }));
            }
        }
        Ok(())
    }

    /// Appends an event to a room's timeline (in the open transaction) and
    /// queues its delivery to every online member.
    pub(super) fn append(
        &mut self,
        fx: &mut Effects,
        room_id: u64,
        sender: i64,
        content: RoomContent,
    ) -> anyhow::Result<(u64, i64)> {
        let sender_name = self
            .dir
            .user_names
            .get(&sender)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("unknown sender {sender}"))?;
        let room = self
            .dir
            .rooms
            .get_mut(&room_id)
            .ok_or_else(|| anyhow::anyhow!("unknown room {room_id}"))?;
        let seq = room.last_seq + 1;
        let ts = now_ms();
        let body = EventBody {
            ts,
            kind: EventKind::Room(RoomEvent {
                room_id,
                room: room.reference.clone(),
                seq,
                sender: sender_name,
                content,
            }),
        };
        let shared = SharedEvent::encode(&body)?;
        self.db.insert_event(NewEvent {
            room_id,
            seq,
            ts,
            body: shared.as_bytes().as_ref(),
            sender,
        })?;
        room.last_seq = seq;
        self.usage
            .added(room_id, sender, seq, ts, shared.as_bytes().len() as u64);
        let origin = fx.current_conn;
        self.fan_out(fx, room_id, seq, sender, &shared, origin);
        // The sending device has its own message: move its cursor on if
        // it had everything before it. (Not for the lobby, which keeps no
        // positions, or a to-device queue, which only its own device reads.)
        let room = self.room(room_id)?;
        if room.kind != RoomKind::Lobby
            && room.device.is_none()
            && let Some(conn) = origin.and_then(|c| self.conns.get(&c))
        {
            let key = (conn.device_key, room_id);
            if self.dir.cursor(sender, conn.device_key, room_id) + 1 == seq {
                self.dir.cursors.insert(key, seq);
                self.dirty_cursors.insert(key, seq);
            }
        }
        Ok((seq, ts))
    }

    /// Queues a stored event for this node's connections that see it:
    /// everyone for the lobby, else the members' connections (direct
    /// messages held back from a member in dnd, a to-device queue's for
    /// its device only), but not `origin`'s, whose reply says it is stored.
    pub(super) fn fan_out(
        &self,
        fx: &mut Effects,
        room_id: u64,
        seq: u64,
        sender: i64,
        shared: &SharedEvent,
        origin: Option<ConnId>,
    ) {
        let Some(room) = self.dir.rooms.get(&room_id) else {
            return;
        };
        if room.kind == RoomKind::Lobby {
            for id in self.conns.keys().filter(|id| Some(**id) != origin) {
                fx.send(*id, Outbound::Event(shared.clone()));
            }
            return;
        }
        for user in room.members.keys() {
            let Some(online) = self.online.get(user) else {
                continue;
            };
            if room.kind == RoomKind::Direct && online.status == Status::Dnd && *user != sender {
                continue;
            }
            let for_device = |c: &&ConnId| {
                room.device.is_none_or(|device| {
                    self.conns
                        .get(*c)
                        .is_some_and(|conn| conn.device_key == device)
                })
            };
            for conn in online
                .conns
                .iter()
                .filter(|c| Some(**c) != origin)
                .filter(for_device)
            {
                fx.send(
                    *conn,
                    Outbound::Room {
                        room_id,
                        seq,
                        event: shared.clone(),
                    },
                );
            }
        }
    }
}
