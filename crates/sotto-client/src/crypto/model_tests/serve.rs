//! The model server's side of requests: what `sotto-server` does with
//! each one a device makes (key directory, to-device queues, messages),
//! and the delivery to each connection's queue in commit order.

use sotto_proto::{ClaimedKey, ErrorCode, ErrorReply, Request, Response, RoomContent, RoomEvent};

use super::Model;
use super::world::{DeviceKey, Incoming, refused};

impl Model {
    pub(super) fn deliver_to(&mut self, to: &[DeviceKey], ts: i64, event: &RoomEvent) {
        for key in to {
            let i = self.index(key);
            if self.online(i) {
                self.devices[i]
                    .queue
                    .push_back(Incoming::Event(ts, event.clone()));
            }
        }
    }

    /// As the server does: everyone online who shares a room with `user`
    /// (and `user`) is told that `user`'s devices changed.
    pub(super) fn devices_changed(&mut self, user: &sotto_proto::Username) {
        let mut audience = std::collections::BTreeSet::from([user.clone()]);
        for room in self.server.rooms.values() {
            if room.inbox_of.is_none() && room.members.contains_key(user) {
                audience.extend(room.members.keys().cloned());
            }
        }
        for i in 0..self.devices.len() {
            if self.online(i) && audience.contains(&self.devices[i].key.0) {
                self.devices[i]
                    .queue
                    .push_back(Incoming::DevicesChanged(user.clone()));
            }
        }
    }

    /// The server handles a request from device `at`.
    pub(super) fn serve(&mut self, at: usize, request: Request) -> Result<Response, ErrorReply> {
        let me = self.devices[at].key.clone();
        let ts = self.now;
        match request {
            Request::UploadKeys {
                device_keys,
                one_time_keys,
                fallback_key,
            } => {
                let device = self.server.devices.get_mut(&me).unwrap();
                let mut published = false;
                if let Some(keys) = device_keys {
                    published = device.keys.is_none();
                    device.keys = Some(*keys);
                }
                device.one_time_keys.extend(one_time_keys);
                if let Some(key) = fallback_key {
                    device.fallback = Some(*key);
                }
                let count = device.one_time_keys.len() as u32;
                if published {
                    self.devices_changed(&me.0);
                }
                Ok(Response::KeyCount {
                    one_time_keys: count,
                    fallback_used: false,
                })
            }
            Request::QueryKeys { users } => Ok(Response::Devices {
                devices: self
                    .server
                    .devices
                    .iter()
                    .filter(|(k, _)| users.contains(&k.0))
                    .filter_map(|(_, d)| d.keys.clone())
                    .collect(),
            }),
            Request::ClaimKeys { devices } => {
                let mut keys = Vec::new();
                for target in devices {
                    let key = (target.user.clone(), target.device.clone());
                    let Some(device) = self.server.devices.get_mut(&key) else {
                        continue;
                    };
                    let claimed = device
                        .one_time_keys
                        .pop_front()
                        .or_else(|| device.fallback.clone());
                    let count = device.one_time_keys.len() as u32;
                    if let Some(claimed) = claimed {
                        keys.push(ClaimedKey {
                            user: target.user,
                            device: target.device,
                            key: claimed,
                        });
                        let owner = self.index(&key);
                        if self.online(owner) {
                            self.devices[owner]
                                .queue
                                .push_back(Incoming::KeyCount(count, false));
                        }
                    }
                }
                Ok(Response::Claimed { keys })
            }
            Request::SendToDevice { messages } => {
                let Some(keys) = self.server.devices[&me].keys.clone() else {
                    return Err(refused("publish first"));
                };
                if messages.iter().any(|m| {
                    !self
                        .server
                        .devices
                        .contains_key(&(m.user.clone(), m.device.clone()))
                }) {
                    return Err(ErrorReply {
                        code: ErrorCode::UnknownUser,
                        message: "no such device".into(),
                    });
                }
                for message in messages {
                    let inbox = self.server.devices[&(message.user, message.device)].inbox;
                    let content = RoomContent::ToDevice {
                        device: me.1.clone(),
                        keys: Box::new(keys.clone()),
                        payload: message.payload,
                    };
                    let (event, to) = self.server.append(inbox, &me, content, ts);
                    self.deliver_to(&to, ts, &event);
                }
                Ok(Response::Done)
            }
            other => panic!("the model does not serve {other:?}"),
        }
    }

    /// The server stores a private or group message of device `at`: its
    /// position, unless the device is no longer a member.
    pub(super) fn post(&mut self, at: usize, room_id: u64, payload: Vec<u8>) -> Option<u64> {
        let me = self.devices[at].key.clone();
        if !self.server.rooms[&room_id].members.contains_key(&me.0) {
            return None;
        }
        let content = RoomContent::Envelope {
            device: me.1.clone(),
            payload,
        };
        let (event, to) = self.server.append(room_id, &me, content, self.now);
        self.deliver_to(&to, self.now, &event);
        Some(event.seq)
    }
}
