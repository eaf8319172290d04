//! Who gets room keys, through the real server (issue 9): key requests
//! from a stranger, from a fake device on the user's own account and from a
//! verified contact asking for another room's key are answered with a
//! refusal and no key; a member added later gets a key only from where it
//! joined; a key message that names another device than the one it came
//! from is refused and pins nothing; held messages are bounded; the same
//! server under another address is the same device; the sender's clock is
//! checked.

use sotto_client::ClientEvent;
use sotto_crypto::e2e::ToDevice;
use sotto_proto::e2e::{
    DeviceKeys, MegolmEnvelope, OlmEnvelope, ToDeviceContent, ToDevicePlaintext, WithheldReason,
};
use sotto_proto::{GroupName, MessageBody, Request, Response, RoomContent, Username};
use sotto_test_support::{TestClient, TestServer};

use crate::e2e_tamper::{Stranger, next_envelope};
use crate::raw::Raw;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

impl Stranger {
    /// The next to-device message in this device's inbox, from `from`
    /// (decrypted as that device).
    async fn next_from(&mut self, from: &DeviceKeys) -> ToDevice {
        loop {
            let event = self.raw.next_envelope_event().await;
            let RoomContent::ToDevice { payload, .. } = &event.content else {
                continue;
            };
            let envelope = OlmEnvelope::decode(payload).unwrap();
            return self.e2e.decrypt_to_device(from, &envelope).unwrap();
        }
    }

    /// Asks `owner`'s device for the key of `session_id` in `room_id`.
    async fn ask_for(&mut self, owner: &DeviceKeys, room_id: u64, session_id: &str) {
        let request = self
            .e2e
            .encrypt_to_device(
                owner,
                ToDeviceContent::KeyRequest {
                    room_id,
                    session_id: session_id.to_owned(),
                },
            )
            .unwrap();
        self.send_to_device(owner, request).await;
    }
}

/// What alice's device answers a key request with: the reason, if it
/// withheld the key (and it must be withheld).
fn withheld(answer: ToDevice) -> WithheldReason {
    match answer.content {
        ToDeviceContent::Withheld { reason, .. } => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn key_requests_from_a_stranger_a_fake_own_device_and_another_rooms_contact_get_no_key() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let alice_device = alice.client.session().device_id.clone();
    // A device on alice's own account that alice never accepted: what an
    // operator could add. It sees the session id, as the server would.
    let mut fake = Stranger::new(&server, "alice").await;
    // Carol is a contact alice verified, but not in alice and bob's room.
    let mut carol = Stranger::new(&server, "carol").await;
    alice.verify("carol").await;
    alice
        .client
        .send_private(user("bob"), "for bob only")
        .await
        .unwrap();
    assert_eq!(bob.expect_private().await.1, "for bob only");
    let (room_id, payload) = next_envelope(&mut fake.raw).await;
    let session_id = MegolmEnvelope::decode(&payload).unwrap().session_id;

    // A stranger with a real device asks alice's device for it.
    let mut mallory = Stranger::new(&server, "mallory").await;
    let alice_keys = mallory.session_with("alice", &alice_device).await;
    mallory.ask_for(&alice_keys, room_id, &session_id).await;
    assert_eq!(
        withheld(mallory.next_from(&alice_keys).await),
        WithheldReason::NotShared
    );
    let told = alice.expect_notice("mallory's device").await;
    assert!(told.contains("gets none"), "{told}");
    // The fake own device: refused until alice accepts it, and alice is
    // told it asked.
    fake.session_with("alice", &alice_device).await;
    fake.ask_for(&alice_keys, room_id, &session_id).await;
    assert_eq!(
        withheld(fake.next_from(&alice_keys).await),
        WithheldReason::NotAccepted
    );
    let told = alice
        .expect_notice("alice's device rawdevice-alice asked")
        .await;
    assert!(told.contains("@devices trust rawdevice-alice"), "{told}");
    // The verified contact, for a room it is not in.
    carol.session_with("alice", &alice_device).await;
    carol.ask_for(&alice_keys, room_id, &session_id).await;
    assert_eq!(
        withheld(carol.next_from(&alice_keys).await),
        WithheldReason::NotShared
    );
    alice.expect_notice("carol's device").await;
    // None of them can read the message.
    for stranger in [&mut mallory, &mut fake, &mut carol] {
        assert!(!stranger.e2e.has_room_key(room_id, &session_id));
    }
}

#[tokio::test]
async fn a_member_added_later_gets_the_key_only_from_where_it_joined() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    // A raw device of bob's account sees the group's ciphertext, as the
    // server does.
    let mut watcher = Raw::login(server.addr, "bob").await;
    let alice_device = alice.client.session().device_id.clone();
    let crew = GroupName::parse("crew").unwrap();
    alice
        .client
        .group_create(crew.clone(), vec![user("bob")])
        .await
        .unwrap();
    bob.accept_invitation("crew").await;
    alice
        .client
        .send_group(crew.clone(), "before dave")
        .await
        .unwrap();
    assert_eq!(bob.expect_group().await.2, "before dave");
    let (room_id, payload) = next_envelope(&mut watcher).await;
    let before = MegolmEnvelope::decode(&payload).unwrap();

    // Dave (a device the test drives) is added and gets the room key with
    // the next message, from its index: the session goes on, no rotation.
    let mut dave = Stranger::new(&server, "dave").await;
    alice
        .client
        .group_add(crew.clone(), vec![user("dave")])
        .await
        .unwrap();
    let (joined, _) = dave
        .raw
        .ask(sotto_proto::Request::GroupAccept {
            group: crew.clone(),
            room_id: None,
        })
        .await;
    assert!(joined.is_ok(), "{joined:?}");
    alice
        .client
        .send_group(crew.clone(), "after dave")
        .await
        .unwrap();
    let (mut alice_keys, mut after) = (None, None);
    while alice_keys.is_none() || after.is_none() {
        let event = dave.raw.next_envelope_event().await;
        match &event.content {
            RoomContent::ToDevice { keys, payload, .. } => {
                let envelope = OlmEnvelope::decode(payload).unwrap();
                let got = dave.e2e.decrypt_to_device(keys, &envelope).unwrap();
                assert!(matches!(got.content, ToDeviceContent::RoomKey { .. }));
                alice_keys = Some((**keys).clone());
            }
            RoomContent::Envelope { payload, .. } => {
                after = Some(MegolmEnvelope::decode(payload).unwrap());
            }
            _ => {}
        }
    }
    let (alice_keys, after) = (alice_keys.unwrap(), after.unwrap());
    assert_eq!(after.session_id, before.session_id);
    // Dave asks for the session: alice's device answers from the index
    // dave was first sent, so "before dave" stays unreadable.
    dave.session_with("alice", &alice_device).await;
    dave.ask_for(&alice_keys, room_id, &after.session_id).await;
    let answer = dave.next_from(&alice_keys).await;
    assert!(
        matches!(answer.content, ToDeviceContent::ForwardedRoomKey { .. }),
        "{answer:?}"
    );
    let read = |dave: &mut Stranger, envelope: &MegolmEnvelope| {
        dave.e2e.decrypt_room(
            room_id,
            &user("alice"),
            &alice_device,
            envelope,
            sotto_crypto::e2e::ReadMode::History,
        )
    };
    assert!(read(&mut dave, &after).is_ok());
    assert!(
        read(&mut dave, &before).is_err(),
        "dave read what came before"
    );
}

#[tokio::test]
async fn a_key_message_naming_another_device_is_refused_and_pins_nothing() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let (alice_device, bob_device) = (
        alice.client.session().device_id.clone(),
        bob.client.session().device_id.clone(),
    );
    // Mallory, before alice and bob ever talk, sends bob a to-device
    // message that names alice's real device, with keys mallory made.
    let mut mallory = Stranger::new(&server, "mallory").await;
    let bob_keys = mallory.session_with("bob", &bob_device).await;
    let fake_alice = sotto_crypto::e2e::E2e::new(user("alice"), alice_device.clone());
    let plaintext = ToDevicePlaintext {
        sender: user("alice"),
        sender_device: alice_device.clone(),
        sender_keys: fake_alice.device_keys(),
        recipient: user("bob"),
        recipient_device: bob_device.clone(),
        recipient_ed25519: bob_keys.ed25519,
        content: ToDeviceContent::Dummy,
    };
    let envelope = mallory
        .e2e
        .encrypt_raw_to_device(&bob_keys, &plaintext.encode().unwrap())
        .unwrap();
    mallory.send_to_device(&bob_keys, envelope).await;
    let refusal = bob
        .expect("the refusal", |e| match e {
            ClientEvent::Undecodable { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(refusal.contains("names alice"), "{refusal}");
    // Alice's real device was not poisoned: bob reads her, with no warning
    // about changed keys.
    alice
        .client
        .send_private(user("bob"), "the real alice")
        .await
        .unwrap();
    let shown = bob
        .expect("alice's message", |e| match e {
            ClientEvent::Security { message } if message.contains("CHANGED") => {
                panic!("alice's keys were poisoned: {message}")
            }
            ClientEvent::Private { text, .. } => Some(text.clone()),
            _ => None,
        })
        .await;
    assert_eq!(shown, "the real alice");
}

#[tokio::test]
async fn messages_waiting_for_keys_are_bounded_per_sending_device() {
    let server = TestServer::start().await;
    let bob = server.client("bob").await;
    let bob_dir = bob.dir;
    let _ = bob.client.quit().await;
    let size_of = |dir: &std::path::Path| {
        std::fs::read_dir(dir.join("stores"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum::<u64>()
    };
    let before = size_of(bob_dir.path());
    // Mallory sends 1 MiB messages under room keys bob never gets.
    let mut mallory = Stranger::new(&server, "mallory").await;
    let send = |n: u8| {
        let envelope = MegolmEnvelope {
            sender_key: [n; 32],
            session_id: format!("no-such-session-{n}"),
            ciphertext: vec![n; 1 << 20],
        };
        Request::SendDirect {
            to: user("bob"),
            payload: envelope.encode().unwrap(),
        }
    };
    for n in 0..8 {
        let (result, _) = mallory.raw.ask(send(n)).await;
        result.expect("stored");
    }
    let mut bob = TestClient::connect_in(server.addr, "bob", bob_dir)
        .await
        .unwrap();
    for _ in 0..8 {
        bob.expect("a held message", |e| {
            matches!(e, ClientEvent::Undecodable { reason, .. } if !reason.contains("not kept"))
                .then_some(())
        })
        .await;
    }
    // Past its device's share, a message is shown and not kept.
    for n in 8..14 {
        let (result, _) = mallory.raw.ask(send(n)).await;
        result.expect("stored");
    }
    let dropped = bob
        .expect("a message not kept", |e| match e {
            ClientEvent::Undecodable { reason, .. } if reason.contains("not kept") => {
                Some(reason.clone())
            }
            _ => None,
        })
        .await;
    assert!(dropped.contains("mallory's device"), "{dropped}");
    let _ = bob.client.quit().await;
    let grown = size_of(bob.dir.path()) - before;
    assert!(
        grown < (sotto_client::MAX_HELD_BYTES_PER_DEVICE as u64) + (1 << 20),
        "the store grew by {grown} bytes"
    );
}

#[tokio::test]
async fn the_same_server_under_another_address_or_port_is_the_same_device() {
    let mut server = TestServer::start().await;
    let mut bob = server.client("bob").await;
    let dir = tempfile::tempdir().unwrap();
    let at = |server: &TestServer, host: &str| {
        let mut options = sotto_test_support::options(server.addr, "alice", "pw-alice", dir.path());
        options.server = format!("{host}:{}", server.addr.port());
        options
    };
    let (alice, _events) = sotto_client::connect(at(&server, "localhost"))
        .await
        .unwrap();
    let device = alice.session().device_id.clone();
    alice
        .send_private(user("bob"), "from localhost")
        .await
        .unwrap();
    assert_eq!(bob.expect_private().await.1, "from localhost");
    alice.quit().await.unwrap();
    // Another name for the same server (a new pin, the same device and
    // history).
    let (alice, _events) = sotto_client::connect(at(&server, "127.0.0.1"))
        .await
        .unwrap();
    assert_eq!(alice.session().device_id, device);
    let history = alice.history(10).await.unwrap();
    assert!(
        history
            .iter()
            .any(|e| matches!(e, ClientEvent::Private { text, .. } if text == "from localhost")),
        "{history:?}"
    );
    alice.quit().await.unwrap();
    // The server moves to another port.
    server.restart_elsewhere().await;
    let (alice, _events) = sotto_client::connect(at(&server, "127.0.0.1"))
        .await
        .unwrap();
    assert_eq!(alice.session().device_id, device);
    alice.quit().await.unwrap();
    let _ = bob.client.quit().await;
}

#[tokio::test]
async fn a_message_whose_sender_clock_is_far_off_is_shown_as_such() {
    let server = TestServer::start().await;
    let mut bob = server.client("bob").await;
    let bob_device = bob.client.session().device_id.clone();
    let mut mallory = Stranger::new(&server, "mallory").await;
    let bob_keys = mallory.session_with("bob", &bob_device).await;
    let (result, _) = mallory
        .raw
        .ask(Request::DirectRoom { with: user("bob") })
        .await;
    let Ok(Response::Room { room_id }) = result else {
        panic!("expected the room, got {result:?}");
    };
    mallory.share_room_key(room_id, &bob_keys).await;
    // Written "an hour ago" by the sender's clock.
    let an_hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 60 * 60 * 1000;
    let (envelope, _) = mallory
        .e2e
        .encrypt_room(
            room_id,
            an_hour_ago,
            MessageBody::Text {
                text: "late".into(),
            },
        )
        .unwrap();
    mallory
        .raw
        .request(Request::SendDirect {
            to: user("bob"),
            payload: envelope.encode().unwrap(),
        })
        .await;
    let notice = bob
        .expect("the clock notice", |e| match e {
            ClientEvent::Private { .. } => panic!("shown without the notice"),
            ClientEvent::Security { message } if message.contains("clock") => Some(message.clone()),
            _ => None,
        })
        .await;
    assert!(notice.contains("minutes before"), "{notice}");
    assert_eq!(bob.expect_private().await.1, "late");
}

/// Standard base64 without padding (how a Megolm session id spells its
/// public key), decoded.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let value = ALPHABET.iter().position(|a| *a == c).unwrap() as u32;
        acc = (acc << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[tokio::test]
async fn a_fake_forwarded_key_for_someone_elses_session_destroys_nothing() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let _bob = server.client("bob").await;
    // A raw device of bob's account sees the session ids, as the server
    // would.
    let mut watcher = Raw::login(server.addr, "bob").await;
    alice.verify("bob").await;
    let mut bob2 = server.client("bob").await;
    let bob2_id = bob2.client.session().device_id.clone();
    alice.client.send_private(user("bob"), "m1").await.unwrap();
    bob2.expect("m1 held", |e| {
        matches!(e, ClientEvent::Undecodable { .. }).then_some(())
    })
    .await;
    let (room_id, payload) = next_envelope(&mut watcher).await;
    let session_id = MegolmEnvelope::decode(&payload).unwrap().session_id;
    // Mallory forwards bob2 a made-up key under alice's session id (an
    // exported key is not signed: version, index, ratchet, public key).
    let mut mallory = Stranger::new(&server, "mallory").await;
    let bob2_keys = mallory.session_with("bob", &bob2_id).await;
    let mut exported = vec![1u8];
    exported.extend_from_slice(&0u32.to_be_bytes());
    exported.extend_from_slice(&[7u8; 128]);
    exported.extend_from_slice(&base64_decode(&session_id));
    let fake = mallory
        .e2e
        .encrypt_to_device(
            &bob2_keys,
            ToDeviceContent::ForwardedRoomKey {
                room_id,
                session_id: session_id.clone(),
                exported_key: exported,
            },
        )
        .unwrap();
    mallory.send_to_device(&bob2_keys, fake).await;
    // Alice accepts bob2: her key comes, and m1, still held, is shown.
    alice
        .client
        .trust_device(Some(user("bob")), &bob2_id)
        .await
        .unwrap();
    let shown = bob2
        .expect("m1", |e| match e {
            ClientEvent::Private { text, .. } => Some(text.clone()),
            _ => None,
        })
        .await;
    assert_eq!(shown, "m1");
}
