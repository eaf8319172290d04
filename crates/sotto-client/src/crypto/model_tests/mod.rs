//! The model test: seeded random schedules that hunt for unreadable
//! messages, sans-IO, over the very code the client runs ([`Crypto`]: its
//! send plan, its handling of to-device and room messages, its effects)
//! against an in-memory model of the server's queues and of each device's
//! local store.
//!
//! A schedule interleaves sends (each step of a send on its own, so
//! anything can happen between sharing a key and sending the message),
//! deliveries, acknowledgements, saves, kills (a device loses everything it
//! did not save, and starts again from its store), server restarts (clients
//! reconnect; acknowledgements not yet flushed are lost, so the server
//! sends again), new devices, devices accepted, removed, members joining,
//! leaving and being kicked. It checks, for every message:
//! - every device the sender shared the room key with (its view of the
//!   room) decrypts it the moment it arrives: never "unable to decrypt";
//! - every such device that is still a member receives it in the end;
//! - no member who left or was kicked, and no removed device, holds the
//!   key of a message whose sending began after that.
//!
//! `SOTTO_MODEL_SCHEDULES` (default below) sets how many schedules run and
//! `SOTTO_MODEL_SEED` the first seed; a failure prints its seed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sotto_crypto::e2e::{ReadMode, Recipient};
use sotto_proto::e2e::{DeviceKeys, MegolmEnvelope};
use sotto_proto::{
    DeviceId, GroupName, MessageBody, Request, Response, RoomContent, RoomEvent, RoomRef, Username,
};

mod serve;
mod world;

use super::{Crypto, Effect, PlanStep, SendPlan};
use crate::ClientEvent;
use world::{DeviceKey, Incoming, MemStore, Server};

/// Schedules run in CI (seconds in a debug build).
const DEFAULT_SCHEDULES: u64 = 150;
/// Actions per schedule before everything is delivered.
const STEPS: usize = 120;
const USERS: [&str; 3] = ["alice", "bob", "carol"];
const MAX_DEVICES_PER_USER: usize = 3;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

// --------------------------------------------------------------- model

/// A message sent, and what its sender knew when it sent it.
#[derive(Debug, Clone)]
struct Sent {
    room_id: u64,
    seq: u64,
    sender: Username,
    /// The sending device reads its own message too, if the server sends
    /// it back (after a restart, before its position moved on).
    sender_device: DeviceId,
    envelope: MegolmEnvelope,
    text: String,
    /// The devices the sender shared the room key with.
    readers: BTreeSet<DeviceKey>,
    /// The room's members when its sending began.
    members: BTreeSet<Username>,
    /// The devices removed before its sending began.
    removed_before: BTreeSet<DeviceKey>,
}

/// A message on its way out of a device.
#[derive(Debug)]
struct Sending {
    plan: SendPlan,
    room_id: u64,
    text: String,
    reply: Option<Response>,
    members: BTreeSet<Username>,
    removed_before: BTreeSet<DeviceKey>,
}

/// A device of the model: its client state (none while it is down), its
/// committed store and its connection.
#[derive(Debug)]
struct Device {
    key: DeviceKey,
    crypto: Option<Crypto>,
    store: MemStore,
    queue: VecDeque<Incoming>,
    unacked: BTreeMap<u64, u64>,
    sending: Option<Sending>,
    removed: bool,
    /// Messages read, by (room, position).
    read: BTreeMap<(u64, u64), String>,
}

struct Model {
    rng: StdRng,
    now: i64,
    server: Server,
    devices: Vec<Device>,
    direct: BTreeMap<(Username, Username), u64>,
    group: u64,
    sent: Vec<Sent>,
    removed: BTreeSet<DeviceKey>,
    next_device: u64,
    texts: u64,
    stats: Stats,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    messages: u64,
    checked: u64,
    kills: u64,
    server_restarts: u64,
    not_for_readers: u64,
    /// Private messages refused for devices that changed after a cached
    /// list was used, and encrypted again.
    device_races: u64,
}

impl Model {
    fn new(seed: u64) -> Self {
        let mut model = Self {
            rng: StdRng::seed_from_u64(seed),
            now: 1_800_000_000_000,
            server: Server::default(),
            devices: Vec::new(),
            direct: BTreeMap::new(),
            group: 0,
            sent: Vec::new(),
            removed: BTreeSet::new(),
            next_device: 0,
            texts: 0,
            stats: Stats::default(),
        };
        let users: Vec<Username> = USERS.iter().map(|u| user(u)).collect();
        model.group = model.server.add_room(
            RoomRef::Group {
                name: GroupName::parse("crew").unwrap(),
            },
            &users,
        );
        for (i, a) in users.iter().enumerate() {
            for b in &users[i + 1..] {
                let room = model.server.add_room(
                    RoomRef::Direct {
                        users: (a.clone(), b.clone()),
                    },
                    &[a.clone(), b.clone()],
                );
                model.direct.insert((a.clone(), b.clone()), room);
            }
        }
        for u in &users {
            model.new_device(u.clone());
        }
        model
    }

    fn index(&self, key: &DeviceKey) -> usize {
        self.devices.iter().position(|d| d.key == *key).unwrap()
    }

    fn new_device(&mut self, user: Username) {
        self.next_device += 1;
        let key = (
            user.clone(),
            DeviceId::parse(&format!("{user}dev{:04}", self.next_device)).unwrap(),
        );
        self.server.add_device(key.clone());
        self.devices.push(Device {
            key: key.clone(),
            crypto: None,
            store: MemStore::default(),
            queue: VecDeque::new(),
            unacked: BTreeMap::new(),
            sending: None,
            removed: false,
            read: BTreeMap::new(),
        });
        let at = self.devices.len() - 1;
        self.start(at);
    }

    /// Starts (or restarts) a device from its store and connects it.
    fn start(&mut self, at: usize) {
        let d = &mut self.devices[at];
        let crypto = Crypto::from_loaded(d.store.loaded(), &d.key.0, &d.key.1).unwrap();
        d.crypto = Some(crypto);
        d.queue = self.server.sync(&d.key);
        d.unacked.clear();
        // Publishing keys, as `Client::publish_keys` does.
        let mut count = None;
        let mut fallback_used = false;
        for _ in 0..3 {
            let request = self.devices[at]
                .crypto
                .as_mut()
                .unwrap()
                .key_upload(count, fallback_used);
            let Some(request) = request else { break };
            self.commit(at);
            match self.serve(at, request) {
                Ok(Response::KeyCount {
                    one_time_keys,
                    fallback_used: used,
                }) => {
                    self.devices[at]
                        .crypto
                        .as_mut()
                        .unwrap()
                        .e2e
                        .mark_keys_published();
                    count = Some(one_time_keys);
                    fallback_used = used;
                }
                other => panic!("upload failed: {other:?}"),
            }
        }
        self.commit(at);
        let effects = self.devices[at].crypto.as_mut().unwrap().connected();
        self.run_effects(at, effects);
    }

    fn commit(&mut self, at: usize) {
        let d = &mut self.devices[at];
        if let Some(crypto) = d.crypto.as_mut() {
            let changes = crypto.take_changes();
            d.store.write(changes);
        }
    }

    fn online(&self, at: usize) -> bool {
        self.devices[at].crypto.is_some() && !self.devices[at].removed
    }

    fn run_effects(&mut self, at: usize, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Show(_) => {}
                Effect::Request {
                    request,
                    tag,
                    save_first,
                } => {
                    if save_first {
                        self.commit(at);
                    }
                    let reply = self.serve(at, request);
                    self.devices[at]
                        .queue
                        .push_back(Incoming::Reply(tag, reply));
                }
                Effect::Release { key, forwarded } => {
                    self.commit(at);
                    let rows = self.devices[at].store.held_for(key.0, &key.1);
                    let (shown, more) = self.devices[at]
                        .crypto
                        .as_mut()
                        .unwrap()
                        .release_held(&key, rows, forwarded);
                    for (_, event) in shown {
                        self.read(at, &event);
                    }
                    queue.extend(more);
                }
            }
        }
    }

    fn read(&mut self, at: usize, event: &RoomEvent) {
        let RoomContent::Envelope { payload, .. } = &event.content else {
            return;
        };
        let Ok(MessageBody::Text { text }) = MessageBody::decode(payload) else {
            panic!(
                "{:?} read garbage at {}/{}",
                self.devices[at].key, event.room_id, event.seq
            );
        };
        if let Some(sent) = self
            .sent
            .iter()
            .find(|s| s.room_id == event.room_id && s.seq == event.seq)
        {
            assert_eq!(text, sent.text, "the wrong text was read");
        }
        self.devices[at]
            .read
            .insert((event.room_id, event.seq), text);
    }

    /// Device `at` handles the next thing on its connection.
    fn deliver(&mut self, at: usize) {
        let Some(incoming) = self.devices[at].queue.pop_front() else {
            return;
        };
        let now = self.now;
        match incoming {
            Incoming::Reply(tag, result) => {
                let effects = self.devices[at]
                    .crypto
                    .as_mut()
                    .unwrap()
                    .on_reply(tag, result);
                self.run_effects(at, effects);
            }
            Incoming::DevicesChanged(user) => {
                self.devices[at]
                    .crypto
                    .as_mut()
                    .unwrap()
                    .forget_devices(&user);
            }
            Incoming::KeyCount(count, used) => {
                let effects = self.devices[at]
                    .crypto
                    .as_mut()
                    .unwrap()
                    .on_key_count(count, used);
                self.run_effects(at, effects);
            }
            Incoming::Event(ts, event) => {
                let d = &mut self.devices[at];
                let crypto = d.crypto.as_mut().unwrap();
                if !crypto.first_time(event.room_id, event.seq) {
                    return;
                }
                let unacked = d.unacked.entry(event.room_id).or_default();
                *unacked = (*unacked).max(event.seq);
                if let RoomRef::Inbox { .. } = event.room {
                    let effects = crypto.receive_to_device(&event, ts, now);
                    self.run_effects(at, effects);
                    return;
                }
                let mut decrypted = event.clone();
                let (result, effects) =
                    crypto.receive_room_event(&mut decrypted, ts, ReadMode::Live);
                self.run_effects(at, effects);
                let me = self.devices[at].key.clone();
                let reader = self
                    .sent
                    .iter()
                    .find(|s| s.room_id == event.room_id && s.seq == event.seq)
                    .is_some_and(|s| {
                        s.readers.contains(&me) || (s.sender == me.0 && s.sender_device == me.1)
                    });
                match result {
                    Ok(()) => {
                        if reader {
                            self.stats.checked += 1;
                        }
                        self.read(at, &decrypted);
                    }
                    Err(ClientEvent::Undecodable { reason, .. }) if reader => panic!(
                        "{me:?} could not decrypt message {}/{} on arrival, though the sender \
                         shared its key with it: {reason}",
                        event.room_id, event.seq
                    ),
                    Err(_) => self.stats.not_for_readers += 1,
                }
            }
        }
    }

    fn ack(&mut self, at: usize) {
        self.commit(at);
        let key = self.devices[at].key.clone();
        let unacked = std::mem::take(&mut self.devices[at].unacked);
        if let Some(device) = self.server.devices.get_mut(&key) {
            for (room, seq) in unacked {
                let at = device.acked.entry(room).or_default();
                *at = (*at).max(seq);
            }
        }
    }

    fn kill(&mut self, at: usize) {
        let d = &mut self.devices[at];
        d.crypto = None;
        d.queue.clear();
        d.unacked.clear();
        d.sending = None;
        self.stats.kills += 1;
    }

    /// Every client is disconnected (they save, as on a lost connection,
    /// and start again); acknowledgements the server had not written are
    /// lost.
    fn restart_server(&mut self, flush: bool) {
        if flush {
            self.server.flush();
        }
        for device in self.server.devices.values_mut() {
            device.acked = device.flushed.clone();
        }
        for at in 0..self.devices.len() {
            if self.online(at) {
                self.commit(at);
                self.kill(at);
                self.stats.kills -= 1;
                self.start(at);
            }
        }
        self.stats.server_restarts += 1;
    }

    /// The rooms device `at` can send in: (room, members).
    fn rooms_of(&self, at: usize) -> Vec<(u64, Vec<Username>)> {
        let me = &self.devices[at].key.0;
        self.server
            .rooms
            .iter()
            .filter(|(_, r)| r.inbox_of.is_none() && r.members.contains_key(me))
            .map(|(id, r)| (*id, r.members.keys().cloned().collect()))
            .collect()
    }

    fn begin_send(&mut self, at: usize) {
        let rooms = self.rooms_of(at);
        if rooms.is_empty() || self.devices[at].sending.is_some() {
            return;
        }
        let (room_id, members) = rooms[self.rng.gen_range(0..rooms.len())].clone();
        self.texts += 1;
        let text = format!("message {}", self.texts);
        let mut plan = SendPlan::new(
            room_id,
            members.clone(),
            MessageBody::Text { text: text.clone() },
        );
        // Private rooms use the device-list cache, as the client does.
        if self.direct.values().any(|id| *id == room_id) {
            plan = plan.with_cached_devices();
        }
        self.devices[at].sending = Some(Sending {
            plan,
            room_id,
            text,
            reply: None,
            members: members.into_iter().collect(),
            removed_before: self.removed.clone(),
        });
    }

    /// One step of device `at`'s message on its way out.
    fn step_send(&mut self, at: usize) {
        let Some(mut sending) = self.devices[at].sending.take() else {
            return;
        };
        let now = self.now;
        let step = sending.plan.next(
            self.devices[at].crypto.as_mut().unwrap(),
            sending.reply.take(),
            now,
        );
        let step = match step {
            Ok(step) => step,
            Err(e) => panic!("{:?}: the send failed: {e}", self.devices[at].key),
        };
        match step {
            PlanStep::Ask(request) => {
                sending.reply = Some(self.serve(at, request).unwrap());
                self.devices[at].sending = Some(sending);
            }
            PlanStep::SaveThenSend(requests) => {
                self.commit(at);
                for request in requests {
                    if !matches!(self.serve(at, request), Ok(Response::Done)) {
                        sending
                            .plan
                            .failed(self.devices[at].crypto.as_mut().unwrap());
                        return;
                    }
                }
                self.devices[at].sending = Some(sending);
            }
            PlanStep::Payload(payload) => {
                // The server's check of a private message's devices: a
                // cached list that missed a change is refused, and the
                // client asks again and encrypts anew.
                if let Some(digest) = sending.plan.digest()
                    && self.server.device_digest(|u| sending.members.contains(u)) != digest
                {
                    self.stats.device_races += 1;
                    let crypto = self.devices[at].crypto.as_mut().unwrap();
                    for member in &sending.members {
                        crypto.forget_devices(member);
                    }
                    sending.plan = SendPlan::new(
                        sending.room_id,
                        sending.members.iter().cloned().collect(),
                        MessageBody::Text {
                            text: sending.text.clone(),
                        },
                    )
                    .with_cached_devices();
                    sending.removed_before = self.removed.clone();
                    self.devices[at].sending = Some(sending);
                    return;
                }
                let envelope = MegolmEnvelope::decode(&payload).unwrap();
                let readers: BTreeSet<DeviceKey> = sending
                    .plan
                    .readers()
                    .iter()
                    .map(|(u, d, _): &Recipient| (u.clone(), d.clone()))
                    .collect();
                if let Some(seq) = self.post(at, sending.room_id, payload) {
                    self.stats.messages += 1;
                    self.sent.push(Sent {
                        room_id: sending.room_id,
                        seq,
                        sender: self.devices[at].key.0.clone(),
                        sender_device: self.devices[at].key.1.clone(),
                        envelope,
                        text: sending.text,
                        readers,
                        members: sending.members,
                        removed_before: sending.removed_before,
                    });
                }
            }
        }
    }

    /// The directory's devices of `user`, taken in by device `at` (as
    /// `@devices USER` does before it accepts or verifies).
    fn refresh(&mut self, at: usize, user: &Username) {
        let listed: Vec<DeviceKeys> = self
            .server
            .devices
            .iter()
            .filter(|(k, _)| k.0 == *user)
            .filter_map(|(_, d)| d.keys.clone())
            .collect();
        let crypto = self.devices[at].crypto.as_mut().unwrap();
        crypto.trust.observe(user, &listed);
    }

    /// Device `at` accepts `other` (after comparing fingerprints) and sends
    /// it the keys it was left out of, as `Client::trust_device` does.
    fn accept(&mut self, at: usize, other: &DeviceKey) {
        self.refresh(at, &other.0);
        let crypto = self.devices[at].crypto.as_mut().unwrap();
        if let Ok(keys) = crypto.trust.accept(&other.0, &other.1) {
            self.forward(at, &keys);
        }
    }

    /// Device `at` verifies `user` (the numbers compared out of band), as
    /// `Client::confirm_verified` does.
    fn verify(&mut self, at: usize, user: &Username) {
        self.refresh(at, user);
        let crypto = self.devices[at].crypto.as_mut().unwrap();
        let Ok(number) = crypto.trust.safety_number(user) else {
            return;
        };
        for keys in crypto.trust.verify(user, &number).unwrap() {
            self.forward(at, &keys);
        }
    }

    /// Sends `keys`' device the room keys it was left out of.
    fn forward(&mut self, at: usize, keys: &DeviceKeys) {
        let crypto = self.devices[at].crypto.as_mut().unwrap();
        let contents = crypto.withheld_keys_for(keys);
        if contents.is_empty() {
            return;
        }
        let claimed = if crypto.e2e.has_olm_session(keys) {
            None
        } else {
            let request = Request::ClaimKeys {
                devices: vec![sotto_proto::DeviceRef {
                    user: keys.user.clone(),
                    device: keys.device.clone(),
                }],
            };
            match self.serve(at, request) {
                Ok(Response::Claimed { keys }) => keys.into_iter().next().map(|k| k.key),
                _ => None,
            }
        };
        let crypto = self.devices[at].crypto.as_mut().unwrap();
        if let Ok(request) = crypto.seal_for(keys, claimed.as_ref(), contents) {
            self.commit(at);
            let _ = self.serve(at, request);
        }
    }

    fn membership_change(&mut self) {
        let room_id = self.group;
        let name = user(USERS[self.rng.gen_range(0..USERS.len())]);
        let room = self.server.rooms.get_mut(&room_id).unwrap();
        if room.members.remove(&name).is_none() {
            room.members.insert(name, room.last_seq);
        }
    }

    fn remove_device(&mut self, at: usize) {
        let key = self.devices[at].key.clone();
        if self
            .devices
            .iter()
            .filter(|d| d.key.0 == key.0 && !d.removed)
            .count()
            < 2
        {
            return;
        }
        let inbox = self.server.devices.remove(&key).unwrap().inbox;
        self.server.rooms.remove(&inbox);
        self.devices[at].removed = true;
        self.devices[at].sending = None;
        self.devices_changed(&key.0);
        self.removed.insert(key);
    }

    /// A random device that is up, preferring those for which `busy` holds.
    fn pick(&mut self, busy: impl Fn(&Device) -> bool) -> Option<usize> {
        let up: Vec<usize> = (0..self.devices.len())
            .filter(|i| self.online(*i))
            .collect();
        let busy: Vec<usize> = up
            .iter()
            .copied()
            .filter(|i| busy(&self.devices[*i]))
            .collect();
        let from = if busy.is_empty() { up } else { busy };
        (!from.is_empty()).then(|| from[self.rng.gen_range(0..from.len())])
    }

    /// One random action.
    fn act(&mut self) {
        self.now += self.rng.gen_range(1..2000);
        let down: Vec<usize> = (0..self.devices.len())
            .filter(|i| !self.devices[*i].removed && !self.online(*i))
            .collect();
        let roll = self.rng.gen_range(0..100);
        if !down.is_empty() && roll < 8 {
            let at = down[self.rng.gen_range(0..down.len())];
            self.start(at);
            return;
        }
        match roll {
            8..=21 => {
                if let Some(at) = self.pick(|_| true) {
                    self.begin_send(at);
                }
            }
            22..=43 => {
                if let Some(at) = self.pick(|d| d.sending.is_some()) {
                    self.step_send(at);
                }
            }
            44..=75 => {
                if let Some(at) = self.pick(|d| !d.queue.is_empty()) {
                    self.deliver(at);
                }
            }
            76..=83 => {
                if let Some(at) = self.pick(|d| !d.unacked.is_empty()) {
                    self.ack(at);
                }
            }
            84 => {
                if let Some(at) = self.pick(|_| true) {
                    self.commit(at);
                }
            }
            85..=88 => {
                if let Some(at) = self.pick(|_| true) {
                    self.kill(at);
                }
            }
            89 => {
                let flush = self.rng.gen_bool(0.5);
                self.restart_server(flush);
            }
            90 => self.server.flush(),
            91 => {
                let name = user(USERS[self.rng.gen_range(0..USERS.len())]);
                if self
                    .devices
                    .iter()
                    .filter(|d| d.key.0 == name && !d.removed)
                    .count()
                    < MAX_DEVICES_PER_USER
                {
                    self.new_device(name);
                }
            }
            92..=93 => {
                // Accept another device, of this user's or of a verified
                // contact's (refused for one never verified).
                let Some(at) = self.pick(|_| true) else {
                    return;
                };
                let me = self.devices[at].key.clone();
                let others: Vec<DeviceKey> = self
                    .devices
                    .iter()
                    .filter(|d| d.key != me && !d.removed)
                    .map(|d| d.key.clone())
                    .collect();
                if !others.is_empty() {
                    let other = others[self.rng.gen_range(0..others.len())].clone();
                    self.accept(at, &other);
                }
            }
            94 => {
                let Some(at) = self.pick(|_| true) else {
                    return;
                };
                let name = user(USERS[self.rng.gen_range(0..USERS.len())]);
                if name != self.devices[at].key.0 {
                    self.verify(at, &name);
                }
            }
            95..=96 => self.membership_change(),
            97 => {
                if let Some(at) = self.pick(|_| true) {
                    self.remove_device(at);
                }
            }
            _ => {
                // Both ends of a conversation sending at once.
                for _ in 0..2 {
                    if let Some(at) = self.pick(|d| d.sending.is_none()) {
                        self.begin_send(at);
                    }
                }
            }
        }
    }

    /// Everything settles: every device comes up, finishes its send, and
    /// reads and acknowledges everything.
    fn settle(&mut self) {
        for at in 0..self.devices.len() {
            if !self.devices[at].removed && !self.online(at) {
                self.start(at);
            }
        }
        for _ in 0..200 {
            let mut busy = false;
            for at in 0..self.devices.len() {
                if !self.online(at) {
                    continue;
                }
                if self.devices[at].sending.is_some() {
                    self.step_send(at);
                    busy = true;
                }
                while !self.devices[at].queue.is_empty() {
                    self.deliver(at);
                    busy = true;
                }
                self.ack(at);
            }
            if !busy {
                return;
            }
        }
        panic!("the model did not settle");
    }

    /// The checks after everything settled.
    fn check(&mut self) {
        let mut states: Vec<(DeviceKey, Crypto)> = self
            .devices
            .iter()
            .map(|d| {
                let crypto = Crypto::from_loaded(d.store.loaded(), &d.key.0, &d.key.1).unwrap();
                (d.key.clone(), crypto)
            })
            .collect();
        for sent in &self.sent {
            let room = &self.server.rooms[&sent.room_id];
            for reader in &sent.readers {
                let Some(d) = self.devices.iter().find(|d| d.key == *reader) else {
                    continue;
                };
                let member = room
                    .members
                    .get(&reader.0)
                    .is_some_and(|joined| *joined < sent.seq);
                if d.removed || !member {
                    continue;
                }
                assert!(
                    d.read.contains_key(&(sent.room_id, sent.seq)),
                    "{reader:?} never read message {}/{} ({:?})",
                    sent.room_id,
                    sent.seq,
                    sent.text
                );
            }
            // Nobody who was not a member when its sending began, and no
            // device removed before, can read it.
            for (key, state) in &mut states {
                if sent.members.contains(&key.0) && !sent.removed_before.contains(key) {
                    continue;
                }
                let read = state.e2e.decrypt_room(
                    sent.room_id,
                    &sent.sender,
                    &sent.sender_device,
                    &sent.envelope,
                    ReadMode::History,
                );
                assert!(
                    read.is_err(),
                    "{key:?} can read {:?}, sent after it left or was removed",
                    sent.text
                );
            }
        }
    }
}

fn run(seed: u64) -> Stats {
    let mut model = Model::new(seed);
    for _ in 0..STEPS {
        model.act();
    }
    model.settle();
    model.check();
    model.stats
}

#[test]
fn no_message_is_ever_unreadable_and_no_removed_device_reads_on() {
    let count: u64 = std::env::var("SOTTO_MODEL_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SCHEDULES);
    let first: u64 = std::env::var("SOTTO_MODEL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut total = Stats::default();
    for seed in first..first + count {
        let stats = match std::panic::catch_unwind(|| run(seed)) {
            Ok(stats) => stats,
            Err(e) => {
                eprintln!("model schedule failed: SOTTO_MODEL_SEED={seed} SOTTO_MODEL_SCHEDULES=1");
                std::panic::resume_unwind(e);
            }
        };
        total.messages += stats.messages;
        total.checked += stats.checked;
        total.kills += stats.kills;
        total.server_restarts += stats.server_restarts;
        total.not_for_readers += stats.not_for_readers;
        total.device_races += stats.device_races;
    }
    eprintln!(
        "model: {count} schedules, {} messages sent, {} deliveries to their readers all \
         readable on arrival, {} deliveries to devices not in the sender's view, {} kills, \
         {} server restarts, {} private messages encrypted again after a device change raced \
         a cached list",
        total.messages,
        total.checked,
        total.not_for_readers,
        total.kills,
        total.server_restarts,
        total.device_races
    );
    assert!(total.checked > count, "the schedules checked too little");
}

/// Device `at` sends one private message to `room` (members `members`)
/// with the device-list cache, as the client does, the whole way through:
/// the requests it made, by name, then "sent", or "refused" if the
/// server's check of the devices refused the message.
fn send_private(
    model: &mut Model,
    at: usize,
    room: u64,
    members: &[Username],
) -> Vec<&'static str> {
    let mut plan = SendPlan::new(
        room,
        members.to_vec(),
        MessageBody::Text { text: "hi".into() },
    )
    .with_cached_devices();
    let mut reply = None;
    let mut asked = Vec::new();
    loop {
        let now = model.now;
        let step = plan
            .next(
                model.devices[at].crypto.as_mut().unwrap(),
                reply.take(),
                now,
            )
            .unwrap();
        match step {
            PlanStep::Ask(request) => {
                asked.push(request.name());
                reply = Some(model.serve(at, request).unwrap());
            }
            PlanStep::SaveThenSend(requests) => {
                model.commit(at);
                for request in requests {
                    asked.push(request.name());
                    assert!(matches!(model.serve(at, request), Ok(Response::Done)));
                }
            }
            PlanStep::Payload(payload) => {
                if plan.digest() != Some(model.server.device_digest(|u| members.contains(u))) {
                    asked.push("refused");
                } else {
                    model.post(at, room, payload).unwrap();
                    asked.push("sent");
                }
                return asked;
            }
        }
    }
}

#[test]
fn a_steady_state_private_message_is_one_request_and_a_device_change_is_never_missed() {
    let mut model = Model::new(7);
    let alice = model.index(&model.devices[0].key.clone());
    assert_eq!(model.devices[alice].key.0, user("alice"));
    let members = [user("alice"), user("bob")];
    let room = model.direct[&(user("alice"), user("bob"))];
    // Drain what the start queued (bob's and carol's keys published).
    while !model.devices[alice].queue.is_empty() {
        model.deliver(alice);
    }
    // The first message looks the devices up and shares the room key.
    let first = send_private(&mut model, alice, room, &members);
    assert_eq!(first[0], "query_keys");
    assert_eq!(first.last(), Some(&"sent"));
    // Every later one is the message alone.
    for _ in 0..3 {
        assert_eq!(send_private(&mut model, alice, room, &members), ["sent"]);
    }
    // Bob adds a device; alice has not read the notice yet: her cached list
    // misses it, and the server refuses the message rather than store one
    // the new device could never read.
    model.new_device(user("bob"));
    let bob2 = model.devices.len() - 1;
    assert_eq!(send_private(&mut model, alice, room, &members), ["refused"]);
    // Once the notice is read (or after the refusal, which drops the
    // list), the next message asks again and shares the key with it.
    while !model.devices[alice].queue.is_empty() {
        model.deliver(alice);
    }
    let again = send_private(&mut model, alice, room, &members);
    assert_eq!(again[0], "query_keys");
    assert!(again.contains(&"send_to_device"), "{again:?}");
    assert_eq!(again.last(), Some(&"sent"));
    while !model.devices[bob2].queue.is_empty() {
        model.deliver(bob2);
    }
    assert!(
        model.devices[bob2].read.values().any(|text| text == "hi"),
        "bob's new device read nothing"
    );
    assert_eq!(send_private(&mut model, alice, room, &members), ["sent"]);
}
