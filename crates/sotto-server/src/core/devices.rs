//! Removing a device: a user takes one of their devices (a lost phone, an
//! old laptop) off the account. Everything the server keeps for it goes:
//! its published keys, one-time and fallback keys, session token, delivery
//! cursors and to-device queue. Its connections are told and closed, and
//! everyone sharing a room with the user learns that the user's devices
//! changed, so their next message starts room sessions the device never
//! gets a key for.

use sotto_proto::cluster::Change;
use sotto_proto::{DeviceId, ErrorCode, ErrorReply, EventKind, Response};

use super::keys::encode_event;
use super::{ConnId, Core, Effects, Outbound, err};
use crate::store::Writer as _;

type Reply = Result<Response, ErrorReply>;

impl Core {
    /// `RemoveDevice` from `conn_id`, whose user must own `device`.
    pub(super) fn remove_device(
        &mut self,
        conn_id: ConnId,
        device: DeviceId,
        fx: &mut Effects,
    ) -> anyhow::Result<Reply> {
        let Some((user, by)) = self.conns.get(&conn_id).map(|c| (c.user, c.device.clone())) else {
            return Ok(Err(err(ErrorCode::Internal, "connection vanished")));
        };
        let Some(device_key) = self.dir.device_keys.get(&(user, device.clone())).copied() else {
            return Ok(Err(err(
                ErrorCode::Invalid,
                format!("your account has no device {device} (see @devices)"),
            )));
        };
        let name = self.name(user)?;

        // Its to-device queue, with what is still in it.
        if let Some(inbox) = self.dir.inboxes.get(&device_key).copied() {
            self.usage.prune(&mut self.db, inbox, u64::MAX)?;
            self.db.delete_room(inbox)?;
            self.dir.remove_room(inbox);
        }
        self.db.delete_device(device_key)?;
        self.db.note(Change::DeviceDeleted {
            id: device_key,
            by: by.to_string(),
        });
        self.dir.remove_device(user, device_key);
        self.dirty_cursors.retain(|(d, _), _| *d != device_key);

        // Its connections are told, then closed; until they are gone they
        // can do nothing more (see `Conn::removed`).
        if let Some(shared) = encode_event(EventKind::DeviceRemoved { by }) {
            let conns: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(_, c)| c.device_key == device_key)
                .map(|(id, _)| *id)
                .collect();
            for id in conns {
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.removed = true;
                }
                // The request's own reply goes first.
                if id != conn_id {
                    fx.send(id, Outbound::Event(shared.clone()));
                    fx.send(id, Outbound::Close);
                }
            }
            if self.conns.get(&conn_id).is_some_and(|c| c.removed) {
                fx.after_reply.push((conn_id, shared));
            }
        }
        self.devices_changed(user, &name, fx);
        tracing::info!(user = %name, %device, "device removed");
        Ok(Ok(Response::Done))
    }
}
