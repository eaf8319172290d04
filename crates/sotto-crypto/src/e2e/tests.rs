//! The end-to-end state machine, device to device, with no server: the
//! tests hand envelopes across the way the server would.

use std::collections::BTreeSet;

use sotto_proto::e2e::{
    DeviceKeys, MegolmEnvelope, RoomPlaintext, SignedOneTimeKey, ToDeviceContent,
};
use sotto_proto::{DeviceId, MessageBody, Username};

use super::*;

const NOW: i64 = 1_800_000_000_000;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn device(name: &str, n: u32) -> E2e {
    E2e::new(
        user(name),
        DeviceId::parse(&format!("{}dev{n:04}", name.to_uppercase())).unwrap(),
    )
}

fn text(t: &str) -> MessageBody {
    MessageBody::Text { text: t.into() }
}

fn recipient(e: &E2e) -> Recipient {
    (
        e.user().clone(),
        e.device().clone(),
        e.identity().curve25519,
    )
}

/// What the key directory hands out for `of`: its device keys and one
/// claimed key (a one-time key while any is left, else the fallback).
fn claim(of: &mut E2e) -> (DeviceKeys, SignedOneTimeKey) {
    let upload = of.keys_to_upload(0);
    of.mark_keys_published();
    let key = upload
        .one_time_keys
        .into_iter()
        .next()
        .or(upload.fallback_key)
        .unwrap();
    (of.device_keys(), key)
}

/// `from` shares its room key with every device in `to` (starting Olm
/// sessions where needed) and they store it.
fn share_room_key(from: &mut E2e, to: &mut [&mut E2e], room: u64) -> Prepared {
    let recipients: BTreeSet<Recipient> = to.iter().map(|d| recipient(d)).collect();
    let prepared = from
        .prepare_room(room, &recipients, &BTreeSet::new(), NOW)
        .unwrap();
    let mut shared = Vec::new();
    for peer in to.iter_mut() {
        if !prepared.to_share.contains(&recipient(peer)) {
            continue;
        }
        if !from.has_olm_session(&peer.device_keys()) {
            let (keys, key) = claim(peer);
            from.start_olm_session(&keys, &key).unwrap();
        }
        let envelope = from
            .room_key_for(room, &prepared, &peer.device_keys())
            .unwrap();
        let got = peer
            .decrypt_to_device(&from.device_keys(), &envelope)
            .unwrap();
        assert!(matches!(got.content, ToDeviceContent::RoomKey { .. }));
        shared.push(recipient(peer));
    }
    from.mark_room_key_shared(room, &prepared, &shared);
    prepared
}

fn send(from: &mut E2e, room: u64, t: &str) -> MegolmEnvelope {
    from.encrypt_room(room, NOW, text(t)).unwrap().0
}

/// Reads a room message live (replays refused).
fn read(
    to: &mut E2e,
    room: u64,
    from: &Username,
    envelope: &MegolmEnvelope,
) -> Result<RoomPlaintext, E2eError> {
    // Every sender in these tests is its user's first device.
    let device = DeviceId::parse(&format!("{}dev0001", from.as_str().to_uppercase())).unwrap();
    to.decrypt_room(room, from, &device, envelope, ReadMode::Live)
        .map(|d| d.plaintext)
}

#[test]
fn device_keys_and_claimed_keys_are_signed() {
    let mut bob = device("bob", 1);
    let (keys, key) = claim(&mut bob);
    verify_device_keys(&keys).unwrap();
    account::verify_one_time_key(&keys, &key).unwrap();

    let mut forged = keys.clone();
    forged.curve25519[0] ^= 1;
    assert!(matches!(
        verify_device_keys(&forged),
        Err(E2eError::BadSignature { .. })
    ));
    let mut forged_key = key.clone();
    forged_key.key[5] ^= 1;
    let mut alice = device("alice", 1);
    assert!(matches!(
        alice.start_olm_session(&keys, &forged_key),
        Err(E2eError::BadSignature { .. })
    ));
    // A key signed by another device does not pass as bob's.
    let mut mallory = device("mallory", 1);
    let (_, mallory_key) = claim(&mut mallory);
    assert!(alice.start_olm_session(&keys, &mallory_key).is_err());
}

#[test]
fn keys_are_offered_until_published_and_topped_up_to_the_target() {
    let mut bob = device("bob", 1);
    let first = bob.keys_to_upload(0);
    assert_eq!(first.one_time_keys.len(), account::ONE_TIME_KEY_TARGET);
    assert!(first.fallback_key.is_some());
    // The upload failed: the same keys are offered again.
    assert_eq!(bob.keys_to_upload(0), first);
    bob.mark_keys_published();
    assert!(bob.keys_to_upload(account::ONE_TIME_KEY_TARGET).is_empty());
    // The server handed out 20: top up by 20.
    let top_up = bob.keys_to_upload(account::ONE_TIME_KEY_TARGET - 20);
    assert_eq!(top_up.one_time_keys.len(), 20);
    assert!(top_up.fallback_key.is_none());
}

#[test]
fn two_users_exchange_private_messages() {
    let (mut alice, mut bob) = (device("alice", 1), device("bob", 1));
    let room = 7;
    share_room_key(&mut alice, &mut [&mut bob], room);
    let envelope = send(&mut alice, room, "hello bob");
    let plain = read(&mut bob, room, &user("alice"), &envelope).unwrap();
    assert_eq!(plain.body, text("hello bob"));
    assert_eq!(plain.sender, user("alice"));
    assert_eq!(plain.room_id, room);

    // Bob answers on his own room session, over the Olm session alice
    // started (his reply is a normal, not a pre-key, message after hers).
    share_room_key(&mut bob, &mut [&mut alice], room);
    let reply = send(&mut bob, room, "hi alice");
    let plain = read(&mut alice, room, &user("bob"), &reply).unwrap();
    assert_eq!(plain.body, text("hi alice"));
    // The sender can read its own message (for history).
    let own = read(&mut alice, room, &user("alice"), &envelope).unwrap();
    assert_eq!(own.body, text("hello bob"));
}

#[test]
fn tampering_and_replays_are_rejected_without_breaking_the_session() {
    let (mut alice, mut bob) = (device("alice", 1), device("bob", 1));
    share_room_key(&mut alice, &mut [&mut bob], 1);
    let envelope = send(&mut alice, 1, "pay 10");

    let mut flipped = envelope.clone();
    let last = flipped.ciphertext.len() - 70;
    flipped.ciphertext[last] ^= 0x01;
    assert!(read(&mut bob, 1, &user("alice"), &flipped).is_err());

    // The genuine one still decrypts; read live again, it is a replay
    // (a redelivery of the same position is dropped before it gets here),
    // while history shows it again.
    read(&mut bob, 1, &user("alice"), &envelope).unwrap();
    assert_eq!(
        read(&mut bob, 1, &user("alice"), &envelope),
        Err(E2eError::Replay)
    );
    let again = bob
        .decrypt_room(
            1,
            &user("alice"),
            alice.device(),
            &envelope,
            ReadMode::History,
        )
        .unwrap();
    assert_eq!(again.plaintext.body, text("pay 10"));
    // Moved to another room, or attributed to someone else by the server.
    share_room_key(&mut alice, &mut [&mut bob], 2);
    let mut moved = send(&mut alice, 2, "x");
    moved.session_id = envelope.session_id.clone();
    assert!(read(&mut bob, 1, &user("alice"), &moved).is_err());
    let next = send(&mut alice, 1, "next");
    assert!(matches!(
        read(&mut bob, 1, &user("carol"), &next),
        Err(E2eError::Mismatch(_))
    ));
    assert_eq!(
        read(&mut bob, 1, &user("alice"), &next).unwrap().body,
        text("next")
    );
}

#[test]
fn a_room_key_from_the_wrong_device_is_not_trusted() {
    let (mut alice, mut bob, mut mallory) =
        (device("alice", 1), device("bob", 1), device("mallory", 1));
    // Mallory shares a room key of her own, then sends a message that
    // claims to be alice's in the same room.
    share_room_key(&mut mallory, &mut [&mut bob], 5);
    let forged = send(&mut mallory, 5, "it is me, alice");
    // It decrypts only as hers: relabelled as alice's (by the server, in
    // the envelope), there is no such session of alice's.
    let mut plain_forgery = forged.clone();
    plain_forgery.sender_key = alice.identity().curve25519;
    assert!(matches!(
        read(&mut bob, 5, &user("alice"), &plain_forgery),
        Err(E2eError::MissingRoomKey { .. })
    ));
    // A key for alice's session relayed by mallory is kept as mallory's:
    // alice's messages never look there, and alice's messages passed off
    // as coming from mallory's key are refused.
    let prepared = share_room_key(&mut alice, &mut [&mut bob], 5);
    let (bob_keys, bob_key) = claim(&mut bob);
    mallory.start_olm_session(&bob_keys, &bob_key).unwrap();
    let relayed = mallory
        .encrypt_to_device(
            &bob.device_keys(),
            ToDeviceContent::RoomKey {
                room_id: 5,
                session_id: prepared.session_id.clone(),
                session_key: prepared.session_key.clone(),
            },
        )
        .unwrap();
    bob.decrypt_to_device(&mallory.device_keys(), &relayed)
        .unwrap();
    let genuine = send(&mut alice, 5, "from alice");
    let mut passed_off = genuine.clone();
    passed_off.sender_key = mallory.identity().curve25519;
    assert!(matches!(
        read(&mut bob, 5, &user("alice"), &passed_off),
        Err(E2eError::Mismatch(_))
    ));
    assert_eq!(
        read(&mut bob, 5, &user("alice"), &genuine).unwrap().body,
        text("from alice")
    );
    // And a to-device message the server attributes to the wrong device.
    let (bob_keys, bob_key) = claim(&mut bob);
    mallory.start_olm_session(&bob_keys, &bob_key).unwrap();
    let dummy = mallory
        .encrypt_to_device(&bob.device_keys(), ToDeviceContent::Dummy)
        .unwrap();
    assert!(bob.decrypt_to_device(&alice.device_keys(), &dummy).is_err());
}

#[test]
fn a_to_device_message_forwarded_to_someone_else_is_refused() {
    let (mut alice, mut bob, mut carol) =
        (device("alice", 1), device("bob", 1), device("carol", 1));
    let (keys, key) = claim(&mut bob);
    alice.start_olm_session(&keys, &key).unwrap();
    let for_bob = alice
        .encrypt_to_device(&bob.device_keys(), ToDeviceContent::Dummy)
        .unwrap();
    assert!(
        carol
            .decrypt_to_device(&alice.device_keys(), &for_bob)
            .is_err()
    );
    bob.decrypt_to_device(&alice.device_keys(), &for_bob)
        .unwrap();
}

#[test]
fn a_member_who_leaves_cannot_read_what_follows() {
    let (mut alice, mut bob, mut carol) =
        (device("alice", 1), device("bob", 1), device("carol", 1));
    let first = share_room_key(&mut alice, &mut [&mut bob, &mut carol], 9);
    let before = send(&mut alice, 9, "all three");
    read(&mut carol, 9, &user("alice"), &before).unwrap();

    // Carol leaves: the next message needs a new session, shared with bob
    // only.
    let second = share_room_key(&mut alice, &mut [&mut bob], 9);
    assert!(second.rotated);
    assert_ne!(second.session_id, first.session_id);
    let after = send(&mut alice, 9, "just us");
    assert_eq!(
        read(&mut bob, 9, &user("alice"), &after).unwrap().body,
        text("just us")
    );
    assert!(matches!(
        read(&mut carol, 9, &user("alice"), &after),
        Err(E2eError::MissingRoomKey { .. })
    ));
}

#[test]
fn a_new_device_gets_the_key_and_reads_new_messages() {
    let (mut alice, mut bob) = (device("alice", 1), device("bob", 1));
    share_room_key(&mut alice, &mut [&mut bob], 3);
    let old = send(&mut alice, 3, "before the new device");
    // Bob logs in on a second device: it is shared the current session
    // from the current index, without a rotation.
    let mut bob2 = device("bob", 2);
    let prepared = share_room_key(&mut alice, &mut [&mut bob, &mut bob2], 3);
    assert!(!prepared.rotated);
    assert_eq!(prepared.to_share, vec![recipient(&bob2)]);
    let new = send(&mut alice, 3, "after");
    assert_eq!(
        read(&mut bob2, 3, &user("alice"), &new).unwrap().body,
        text("after")
    );
    assert!(read(&mut bob2, 3, &user("alice"), &old).is_err());
}

#[test]
fn sessions_rotate_after_100_messages_and_after_a_week() {
    let (mut alice, mut bob) = (device("alice", 1), device("bob", 1));
    let first = share_room_key(&mut alice, &mut [&mut bob], 4);
    for i in 0..megolm::ROTATE_AFTER_MESSAGES {
        let recipients = BTreeSet::from([recipient(&bob)]);
        let prepared = alice
            .prepare_room(4, &recipients, &BTreeSet::new(), NOW)
            .unwrap();
        assert_eq!(prepared.session_id, first.session_id, "message {i}");
        send(&mut alice, 4, "m");
    }
    let recipients = BTreeSet::from([recipient(&bob)]);
    let second = alice
        .prepare_room(4, &recipients, &BTreeSet::new(), NOW)
        .unwrap();
    assert!(second.rotated);
    let later = alice
        .prepare_room(
            4,
            &recipients,
            &BTreeSet::new(),
            NOW + megolm::ROTATE_AFTER_MS,
        )
        .unwrap();
    assert!(later.rotated);
    assert_ne!(later.session_id, second.session_id);
}

#[test]
fn exhausted_one_time_keys_fall_back_and_the_session_works() {
    let (mut alice, mut bob) = (device("alice", 1), device("bob", 1));
    let upload = bob.keys_to_upload(0);
    bob.mark_keys_published();
    let fallback = upload.fallback_key.unwrap();
    assert!(fallback.fallback);
    alice
        .start_olm_session(&bob.device_keys(), &fallback)
        .unwrap();
    let envelope = alice
        .encrypt_to_device(&bob.device_keys(), ToDeviceContent::Dummy)
        .unwrap();
    bob.decrypt_to_device(&alice.device_keys(), &envelope)
        .unwrap();
    // The fallback key may be used again, by someone else, until bob
    // replaces it; after the rotation, the old one still works for a while.
    let mut carol = device("carol", 1);
    carol
        .start_olm_session(&bob.device_keys(), &fallback)
        .unwrap();
    bob.rotate_fallback_key();
    let replacement = bob
        .keys_to_upload(account::ONE_TIME_KEY_TARGET)
        .fallback_key
        .unwrap();
    assert_ne!(replacement.key, fallback.key);
    let from_carol = carol
        .encrypt_to_device(&bob.device_keys(), ToDeviceContent::Dummy)
        .unwrap();
    bob.decrypt_to_device(&carol.device_keys(), &from_carol)
        .unwrap();
}

#[test]
fn both_sides_starting_a_session_at_once_still_talk() {
    let (mut alice, mut bob) = (device("alice", 1), device("bob", 1));
    let (bk, bkey) = claim(&mut bob);
    let (ak, akey) = claim(&mut alice);
    alice.start_olm_session(&bk, &bkey).unwrap();
    bob.start_olm_session(&ak, &akey).unwrap();
    let to_bob = alice
        .encrypt_to_device(&bk, ToDeviceContent::Dummy)
        .unwrap();
    let to_alice = bob.encrypt_to_device(&ak, ToDeviceContent::Dummy).unwrap();
    bob.decrypt_to_device(&ak, &to_bob).unwrap();
    alice.decrypt_to_device(&bk, &to_alice).unwrap();
    // Each now sends on the newest session; both still decrypt.
    for _ in 0..3 {
        let m = alice
            .encrypt_to_device(&bk, ToDeviceContent::Dummy)
            .unwrap();
        bob.decrypt_to_device(&ak, &m).unwrap();
        let m = bob.encrypt_to_device(&ak, ToDeviceContent::Dummy).unwrap();
        alice.decrypt_to_device(&bk, &m).unwrap();
    }
}

/// The state as a client stores it: every record, then only the changed
/// ones replacing their older copies by key.
#[derive(Default)]
struct Store {
    account: Option<serde_json::Value>,
    olm: std::collections::BTreeMap<[u8; 32], serde_json::Value>,
    inbound: std::collections::BTreeMap<(u64, String), serde_json::Value>,
    replay: std::collections::BTreeMap<(u64, String), serde_json::Value>,
}

impl Store {
    fn save(&mut self, records: E2eRecords) -> usize {
        let count = usize::from(records.account.is_some())
            + records.olm.len()
            + records.inbound.len()
            + records.replay.len();
        if let Some(account) = records.account {
            self.account = Some(serde_json::to_value(account).unwrap());
        }
        for peer in records.olm {
            self.olm
                .insert(peer.peer, serde_json::to_value(peer).unwrap());
        }
        for room in records.inbound {
            let key = (room.room_id, room.session_id.clone());
            self.inbound
                .insert(key, serde_json::to_value(room).unwrap());
        }
        for window in records.replay {
            let key = (window.room_id, window.session_id.clone());
            self.replay
                .insert(key, serde_json::to_value(window).unwrap());
        }
        count
    }

    fn load(&self) -> E2e {
        E2e::from_records(E2eRecords {
            account: self
                .account
                .clone()
                .map(|v| serde_json::from_value(v).unwrap()),
            olm: self
                .olm
                .values()
                .map(|v| serde_json::from_value(v.clone()).unwrap())
                .collect(),
            inbound: self
                .inbound
                .values()
                .map(|v| serde_json::from_value(v.clone()).unwrap())
                .collect(),
            replay: self
                .replay
                .values()
                .map(|v| serde_json::from_value(v.clone()).unwrap())
                .collect(),
        })
        .unwrap()
    }
}

#[test]
fn state_survives_being_stored_as_changed_records_mid_conversation() {
    let (mut alice, mut bob) = (device("alice", 1), device("bob", 1));
    let (mut alice_store, mut bob_store) = (Store::default(), Store::default());
    share_room_key(&mut alice, &mut [&mut bob], 1);
    let first = send(&mut alice, 1, "one");
    read(&mut bob, 1, &user("alice"), &first).unwrap();
    alice_store.save(alice.take_changed());
    bob_store.save(bob.take_changed());
    // Nothing changed since: nothing to write.
    assert!(bob.take_changed().is_empty());
    // Another message changes only bob's record of alice's room session.
    let between = send(&mut alice, 1, "between");
    read(&mut bob, 1, &user("alice"), &between).unwrap();
    let changed = bob.take_changed();
    assert!(changed.account.is_none() && changed.olm.is_empty());
    assert!(changed.inbound.is_empty());
    assert_eq!(changed.replay.len(), 1);
    // Of fixed size however many messages were read.
    let size = serde_json::to_vec(&changed.replay[0]).unwrap().len();
    assert!(size < 320, "{size}");
    assert_eq!(bob_store.save(changed), 1);
    alice_store.save(alice.take_changed());

    let mut alice = alice_store.load();
    let mut bob = bob_store.load();
    // No outbound session was stored: alice's next message starts a new
    // one, whose key travels over the stored Olm session (no one-time key
    // needed: `share_room_key` would claim one otherwise, and bob's
    // account would have to start a new session).
    assert!(alice.has_olm_session(&bob.device_keys()));
    let prepared = share_room_key(&mut alice, &mut [&mut bob], 1);
    assert!(prepared.rotated);
    let second = send(&mut alice, 1, "two");
    assert_eq!(
        read(&mut bob, 1, &user("alice"), &second).unwrap().body,
        text("two")
    );
    // The replay memory survived too.
    assert_eq!(
        read(&mut bob, 1, &user("alice"), &first),
        Err(E2eError::Replay)
    );
    assert_eq!(
        read(&mut bob, 1, &user("alice"), &between),
        Err(E2eError::Replay)
    );
    // And alice's own earlier session's recipients are remembered: bob's
    // request for it is answered.
    assert!(
        alice
            .answer_key_request(1, &first.session_id, &bob.device_keys(), false)
            .is_ok()
    );
}

#[test]
fn a_broken_session_is_replaced_once_until_the_peer_answers_on_the_new_one() {
    let (mut alice, mut bob) = (device("alice", 1), device("bob", 1));
    let bob_key = bob.device_keys().curve25519;
    assert!(alice.should_recover_session(&bob_key, NOW));
    // A replacement is on its way: more failures (the peer still writes on
    // the old session) start no other one.
    assert!(!alice.should_recover_session(&bob_key, NOW + 1000));
    let (keys, key) = claim(&mut bob);
    alice.start_olm_session(&keys, &key).unwrap();
    let dummy = alice
        .encrypt_to_device(&keys, ToDeviceContent::Dummy)
        .unwrap();
    bob.decrypt_to_device(&alice.device_keys(), &dummy).unwrap();
    assert!(!alice.should_recover_session(&bob_key, NOW + 2000));
    // Bob answers on it: the next break is mended at once, whenever it
    // happens (no hourly limit).
    let reply = bob
        .encrypt_to_device(&alice.device_keys(), ToDeviceContent::Dummy)
        .unwrap();
    alice.decrypt_to_device(&keys, &reply).unwrap();
    assert!(alice.should_recover_session(&bob_key, NOW + 3000));
    // A replacement never answered is tried again after a while.
    assert!(!alice.should_recover_session(&bob_key, NOW + 4000));
    assert!(alice.should_recover_session(&bob_key, NOW + 3000 + olm::RECOVERY_PENDING_MS));
}

#[test]
fn a_to_device_message_must_name_exactly_the_device_it_came_from() {
    let (mut mallory, mut bob, alice) =
        (device("mallory", 1), device("bob", 1), device("alice", 1));
    let (keys, key) = claim(&mut bob);
    mallory.start_olm_session(&keys, &key).unwrap();
    // Mallory's client puts alice's (validly self-signed) keys inside, and
    // the server delivers it as mallory's: refused, whether bob checks it
    // against mallory's keys or alice's. Nothing gets pinned or stored.
    let plaintext = sotto_proto::e2e::ToDevicePlaintext {
        sender: user("alice"),
        sender_device: alice.device().clone(),
        sender_keys: alice.device_keys(),
        recipient: user("bob"),
        recipient_device: bob.device().clone(),
        recipient_ed25519: bob.identity().ed25519,
        content: ToDeviceContent::Dummy,
    };
    let envelope = mallory
        .olm
        .encrypt(
            &mallory.account,
            &keys.curve25519,
            &plaintext.encode().unwrap(),
        )
        .unwrap();
    assert!(matches!(
        bob.decrypt_to_device(&mallory.device_keys(), &envelope),
        Err(E2eError::Mismatch(_))
    ));
    assert!(matches!(
        bob.decrypt_to_device(&alice.device_keys(), &envelope),
        Err(E2eError::Mismatch(_))
    ));
}

#[test]
fn a_message_id_must_match_its_place_and_cannot_repeat() {
    let (mut alice, mut bob) = (device("alice", 1), device("bob", 1));
    let prepared = share_room_key(&mut alice, &mut [&mut bob], 6);
    let (first, id) = alice.encrypt_room(6, NOW, text("one")).unwrap();
    assert_eq!(id, message_id(&prepared.session_id, 0));
    let got = read(&mut bob, 6, &user("alice"), &first).unwrap();
    assert_eq!(got.msg_id, id);
    // A sender that reuses the first message's id for its second message:
    // refused (its place says otherwise), so no id is read twice.
    let forged = sotto_proto::e2e::RoomPlaintext {
        sender: user("alice"),
        sender_device: alice.device().clone(),
        room_id: 6,
        msg_id: id,
        ts: NOW,
        body: text("two, claiming to be one"),
    };
    let repeated = MegolmEnvelope {
        sender_key: alice.identity().curve25519,
        session_id: prepared.session_id.clone(),
        ciphertext: alice
            .rooms
            .outbound_session_for_tests(6)
            .encrypt(forged.encode().unwrap())
            .to_bytes(),
    };
    assert!(matches!(
        read(&mut bob, 6, &user("alice"), &repeated),
        Err(E2eError::Mismatch(m)) if m.contains("message id")
    ));
}

#[test]
fn key_requests_are_answered_from_the_first_index_each_device_was_sent() {
    let (mut alice, mut bob) = (device("alice", 1), device("bob", 1));
    let room = share_room_key(&mut alice, &mut [&mut bob], 8);
    let first = send(&mut alice, 8, "before bob's second device");
    // Bob's second device joins: it is shared the session from index 1.
    let mut bob2 = device("bob", 2);
    share_room_key(&mut alice, &mut [&mut bob, &mut bob2], 8);
    assert!(read(&mut bob2, 8, &user("alice"), &first).is_err());
    let second = send(&mut alice, 8, "after");

    // Bob2 asks: alice answers from index 1, the first it was sent, so
    // the first message stays unreadable for it.
    let answer = alice
        .answer_key_request(8, &room.session_id, &bob2.device_keys(), false)
        .unwrap();
    let forwarded = alice
        .encrypt_to_device(&bob2.device_keys(), answer)
        .unwrap();
    bob2.decrypt_to_device(&alice.device_keys(), &forwarded)
        .unwrap();
    assert!(matches!(
        read(&mut bob2, 8, &user("alice"), &first),
        Err(E2eError::MissingRoomKey { .. })
    ));
    assert_eq!(
        read(&mut bob2, 8, &user("alice"), &second).unwrap().body,
        text("after")
    );
    // A device never sent the key gets nothing; one of alice's own
    // devices that she accepted gets it from the start.
    let carol = device("carol", 1);
    assert_eq!(
        alice.answer_key_request(8, &room.session_id, &carol.device_keys(), false),
        Err(NotForwarded::NotShared)
    );
    let mut alice2 = device("alice", 2);
    assert_eq!(
        alice.answer_key_request(8, &room.session_id, &alice2.device_keys(), false),
        Err(NotForwarded::NotShared)
    );
    let (keys, key) = claim(&mut alice2);
    alice.start_olm_session(&keys, &key).unwrap();
    let answer = alice
        .answer_key_request(8, &room.session_id, &keys, true)
        .unwrap();
    let forwarded = alice.encrypt_to_device(&keys, answer).unwrap();
    alice2
        .decrypt_to_device(&alice.device_keys(), &forwarded)
        .unwrap();
    assert_eq!(
        read(&mut alice2, 8, &user("alice"), &first).unwrap().body,
        text("before bob's second device")
    );
    // Only owners answer: bob has the key but did not create the session.
    assert_eq!(
        bob.answer_key_request(8, &room.session_id, &bob2.device_keys(), true),
        Err(NotForwarded::NotOurs)
    );
    // A forwarded key from a device that does not own the session is kept
    // as that device's: alice's messages are still read with alice's key
    // only (bob2 still cannot read the first one).
    let mut carol = carol;
    let (keys, key) = claim(&mut bob2);
    carol.start_olm_session(&keys, &key).unwrap();
    let exported_key = match alice
        .answer_key_request(8, &room.session_id, &alice2.device_keys(), true)
        .unwrap()
    {
        ToDeviceContent::ForwardedRoomKey { exported_key, .. } => exported_key,
        _ => unreachable!(),
    };
    let fake = carol
        .encrypt_to_device(
            &bob2.device_keys(),
            ToDeviceContent::ForwardedRoomKey {
                room_id: 8,
                session_id: room.session_id.clone(),
                exported_key,
            },
        )
        .unwrap();
    bob2.decrypt_to_device(&carol.device_keys(), &fake).unwrap();
    assert!(matches!(
        read(&mut bob2, 8, &user("alice"), &first),
        Err(E2eError::MissingRoomKey { .. })
    ));
}

#[test]
fn a_withheld_device_gets_the_key_from_where_it_was_left_out_once_accepted() {
    let (mut alice, mut bob, mut bob2) = (device("alice", 1), device("bob", 1), device("bob", 2));
    let prepared = share_room_key(&mut alice, &mut [&mut bob], 2);
    let early = send(&mut alice, 2, "one");
    // Bob's new device is not accepted yet: left out from index 1.
    let recipients = BTreeSet::from([recipient(&bob)]);
    let again = alice
        .prepare_room(2, &recipients, &BTreeSet::new(), NOW)
        .unwrap();
    assert_eq!(again.index, 1);
    alice.mark_room_key_withheld(2, &again, &[recipient(&bob2)]);
    let waiting = send(&mut alice, 2, "two");
    assert_eq!(
        alice.answer_key_request(2, &prepared.session_id, &bob2.device_keys(), false),
        Err(NotForwarded::Withheld)
    );
    // Accepted: it gets the key from index 1, not earlier.
    let keys = alice.withheld_keys_for(&bob2.device_keys());
    assert_eq!(keys.len(), 1);
    let (bk, bkey) = claim(&mut bob2);
    alice.start_olm_session(&bk, &bkey).unwrap();
    for content in keys {
        let envelope = alice.encrypt_to_device(&bk, content).unwrap();
        bob2.decrypt_to_device(&alice.device_keys(), &envelope)
            .unwrap();
    }
    assert_eq!(
        read(&mut bob2, 2, &user("alice"), &waiting).unwrap().body,
        text("two")
    );
    assert!(read(&mut bob2, 2, &user("alice"), &early).is_err());
    // Nothing is left withheld from it, and it counts as shared now.
    assert!(alice.withheld_keys_for(&bob2.device_keys()).is_empty());
    assert!(
        alice
            .answer_key_request(2, &prepared.session_id, &bob2.device_keys(), false)
            .is_ok()
    );
}

#[test]
fn a_store_written_as_one_value_is_read_with_its_sessions_and_replay_memory() {
    let (mut alice, mut bob) = (device("alice", 1), device("bob", 1));
    share_room_key(&mut alice, &mut [&mut bob], 1);
    let first = send(&mut alice, 1, "one");
    read(&mut bob, 1, &user("alice"), &first).unwrap();
    // Bob's state in the shape stores had before records: the whole state
    // as one value, with the replay memory beside the sessions.
    let records = bob.records();
    let peer = json(&records.olm[0]);
    let room = json(&records.inbound[0]);
    // (session id, message index, room position) of each message read.
    let seen = serde_json::json!([[room["session_id"], 0, 1]]);
    let legacy = serde_json::json!({
        "account": json(records.account.as_ref().unwrap()),
        "olm": {
            "by_peer": [[peer["peer"], peer["sessions"]]],
            "recovered_at": [],
        },
        "rooms": {
            "outbound": [],
            "inbound": [[room["room_id"], room["session_id"], room["session"], room["sender"]]],
            "seen": seen,
        },
    });
    let mut bob = E2e::from_legacy(serde_json::from_value(legacy).unwrap());
    // Everything is written in the new form on the next save.
    let changed = bob.take_changed();
    assert!(changed.account.is_some());
    assert_eq!(
        (
            changed.olm.len(),
            changed.inbound.len(),
            changed.replay.len()
        ),
        (1, 1, 1)
    );
    assert_eq!(
        read(&mut bob, 1, &user("alice"), &first),
        Err(E2eError::Replay)
    );
    let second = send(&mut alice, 1, "two");
    assert_eq!(
        read(&mut bob, 1, &user("alice"), &second).unwrap().body,
        text("two")
    );
    let m = alice
        .encrypt_to_device(&bob.device_keys(), ToDeviceContent::Dummy)
        .unwrap();
    bob.decrypt_to_device(&alice.device_keys(), &m).unwrap();
}

fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap()
}

#[test]
fn a_session_left_out_of_by_someone_who_then_leaves_is_not_used_again() {
    let (mut alice, mut carol, bob2) = (device("alice", 1), device("carol", 1), device("bob", 2));
    // Bob's only device waits for alice's acceptance: it is left out.
    let recipients = BTreeSet::from([recipient(&carol)]);
    let waiting = BTreeSet::from([recipient(&bob2)]);
    let first = alice.prepare_room(7, &recipients, &waiting, NOW).unwrap();
    alice.mark_room_key_withheld(7, &first, &[recipient(&bob2)]);
    let (keys, key) = claim(&mut carol);
    alice.start_olm_session(&keys, &key).unwrap();
    let olm = alice.room_key_for(7, &first, &keys).unwrap();
    carol.decrypt_to_device(&alice.device_keys(), &olm).unwrap();
    alice.mark_room_key_shared(7, &first, &[recipient(&carol)]);
    send(&mut alice, 7, "while bob is in");
    let same = alice.prepare_room(7, &recipients, &waiting, NOW).unwrap();
    assert!(!same.rotated, "while bob waits, the session goes on");
    // Bob leaves: he is neither a recipient nor waiting now, so the session
    // he could get once accepted is not used for what follows.
    let after = alice
        .prepare_room(7, &recipients, &BTreeSet::new(), NOW)
        .unwrap();
    assert!(after.rotated);
    assert_ne!(after.session_id, first.session_id);
    // Accepted later, bob's device gets only the session from when he was
    // in.
    let forwarded = alice.withheld_keys_for(&bob2.device_keys());
    assert_eq!(forwarded.len(), 1);
    assert!(matches!(
        &forwarded[0],
        ToDeviceContent::ForwardedRoomKey { session_id, .. } if *session_id == first.session_id
    ));
}
