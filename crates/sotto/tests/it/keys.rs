//! The key directory (issue 4): devices publish signed keys, others query
//! them and claim each one-time key once, then the fallback key; owners are
//! told; bad uploads are refused; everything survives a restart.

use sotto_crypto::e2e::{E2e, verify_device_keys};
use sotto_proto::e2e::ToDeviceContent;
use sotto_proto::{
    DeviceId, DeviceRef, ErrorCode, ErrorReply, EventKind, Request, Response, ServerFrame, Username,
};
use sotto_test_support::TestServer;

use crate::raw::Raw;

/// A device: a raw connection and its end-to-end state.
pub(crate) struct Device {
    pub raw: Raw,
    pub e2e: E2e,
}

pub(crate) async fn device(server: &TestServer, name: &str, device: &str) -> Device {
    let credential = crate::raw::Auth::Password(format!("pw-{name}"));
    let (raw, result) = Raw::try_login(server.addr, name, device, credential, None).await;
    result.expect("login succeeds");
    let e2e = E2e::new(
        Username::parse(name).unwrap(),
        DeviceId::parse(&format!("{device}-{name}")).unwrap(),
    );
    Device { raw, e2e }
}

pub(crate) async fn publish(d: &mut Device) -> Response {
    let upload = d.e2e.keys_to_upload(0);
    let (result, _) = d
        .raw
        .ask(Request::UploadKeys {
            device_keys: Some(Box::new(d.e2e.device_keys())),
            one_time_keys: upload.one_time_keys,
            fallback_key: upload.fallback_key.map(Box::new),
        })
        .await;
    let response = result.expect("upload accepted");
    d.e2e.mark_keys_published();
    response
}

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn code(result: Result<Response, ErrorReply>) -> ErrorCode {
    result.expect_err("refused").code
}

#[tokio::test]
async fn published_keys_are_claimed_once_each_then_the_fallback() {
    let mut server = TestServer::start().await;
    let mut alice = device(&server, "alice", "phone").await;
    let mut bob = device(&server, "bob", "laptop").await;
    assert!(matches!(
        publish(&mut bob).await,
        Response::KeyCount {
            one_time_keys: 50,
            fallback_used: false
        }
    ));

    // Alice finds bob's device, with a signature her client can check.
    let (result, _) = alice
        .raw
        .ask(Request::QueryKeys {
            users: vec![user("bob")],
        })
        .await;
    let Ok(Response::Devices { devices }) = result else {
        panic!("expected devices, got {result:?}");
    };
    assert_eq!(devices, vec![bob.e2e.device_keys()]);
    verify_device_keys(&devices[0]).unwrap();

    // Each claim hands out a different one-time key; bob hears the count.
    let bob_ref = DeviceRef {
        user: user("bob"),
        device: bob.e2e.device().clone(),
    };
    let (result, _) = alice
        .raw
        .ask(Request::ClaimKeys {
            devices: vec![bob_ref.clone(); 3],
        })
        .await;
    let Ok(Response::Claimed { keys }) = result else {
        panic!("expected claimed keys, got {result:?}");
    };
    assert_eq!(keys.len(), 3);
    let mut ids: Vec<_> = keys.iter().map(|k| k.key.key_id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 3, "each one-time key is handed out once");
    assert!(keys.iter().all(|k| !k.key.fallback));
    let (_, events) = bob.raw.ask(Request::Ping).await;
    assert!(events.contains(&EventKind::KeyCount {
        one_time_keys: 47,
        fallback_used: false
    }));

    // A claimed key starts a working Olm session (carried by hand here).
    alice
        .e2e
        .start_olm_session(&devices[0], &keys[0].key)
        .unwrap();
    let envelope = alice
        .e2e
        .encrypt_to_device(&devices[0], ToDeviceContent::Dummy)
        .unwrap();
    let got = bob
        .e2e
        .decrypt_to_device(&alice.e2e.device_keys(), &envelope)
        .unwrap();
    assert_eq!(got.content, ToDeviceContent::Dummy);

    // The directory survives a restart.
    server.restart().await;
    let mut alice = Device {
        raw: {
            let credential = crate::raw::Auth::Password("pw-alice".into());
            Raw::try_login(server.addr, "alice", "phone", credential, None)
                .await
                .0
        },
        e2e: alice.e2e,
    };
    // The rest go; then only the fallback key is left, handed out again
    // and again, and bob is told to replace it.
    let (result, _) = alice
        .raw
        .ask(Request::ClaimKeys {
            devices: vec![bob_ref.clone(); 48],
        })
        .await;
    let Ok(Response::Claimed { keys }) = result else {
        panic!("expected claimed keys, got {result:?}");
    };
    assert_eq!(keys.len(), 48);
    assert_eq!(keys.iter().filter(|k| k.key.fallback).count(), 1);
    let fallback = keys.last().unwrap().key.clone();
    assert!(fallback.fallback);
    let (result, _) = alice
        .raw
        .ask(Request::ClaimKeys {
            devices: vec![bob_ref.clone()],
        })
        .await;
    let Ok(Response::Claimed { keys }) = result else {
        panic!("expected claimed keys, got {result:?}");
    };
    assert_eq!(keys[0].key, fallback);

    let mut bob = Device {
        raw: {
            let credential = crate::raw::Auth::Password("pw-bob".into());
            Raw::try_login(server.addr, "bob", "laptop", credential, None)
                .await
                .0
        },
        e2e: bob.e2e,
    };
    let (result, _) = bob
        .raw
        .ask(Request::UploadKeys {
            device_keys: None,
            one_time_keys: Vec::new(),
            fallback_key: None,
        })
        .await;
    assert!(matches!(
        result,
        Ok(Response::KeyCount {
            one_time_keys: 0,
            fallback_used: true
        })
    ));
    // Bob tops up and replaces the fallback key.
    bob.e2e.rotate_fallback_key();
    let upload = bob.e2e.keys_to_upload(0);
    let (result, _) = bob
        .raw
        .ask(Request::UploadKeys {
            device_keys: None,
            one_time_keys: upload.one_time_keys,
            fallback_key: upload.fallback_key.map(Box::new),
        })
        .await;
    assert!(matches!(
        result,
        Ok(Response::KeyCount {
            one_time_keys: 50,
            fallback_used: false
        })
    ));
}

#[tokio::test]
async fn a_claimed_key_from_the_directory_starts_a_session_both_ends_use() {
    let server = TestServer::start().await;
    let mut alice = device(&server, "alice", "phone").await;
    let mut bob = device(&server, "bob", "laptop").await;
    publish(&mut alice).await;
    publish(&mut bob).await;
    let (result, _) = alice
        .raw
        .ask(Request::ClaimKeys {
            devices: vec![DeviceRef {
                user: user("bob"),
                device: bob.e2e.device().clone(),
            }],
        })
        .await;
    let Ok(Response::Claimed { keys }) = result else {
        panic!("expected a key, got {result:?}");
    };
    let (result, _) = bob
        .raw
        .ask(Request::QueryKeys {
            users: vec![user("alice")],
        })
        .await;
    let Ok(Response::Devices {
        devices: alice_devices,
    }) = result
    else {
        panic!("expected devices, got {result:?}");
    };
    let bob_keys = bob.e2e.device_keys();
    alice
        .e2e
        .start_olm_session(&bob_keys, &keys[0].key)
        .unwrap();
    let envelope = alice
        .e2e
        .encrypt_to_device(&bob_keys, ToDeviceContent::Dummy)
        .unwrap();
    let got = bob
        .e2e
        .decrypt_to_device(&alice_devices[0], &envelope)
        .unwrap();
    assert_eq!(got.sender, user("alice"));
}

#[tokio::test]
async fn bad_uploads_and_queries_are_refused_and_nothing_else_breaks() {
    let server = TestServer::start().await;
    let mut alice = device(&server, "alice", "phone").await;
    let mallory_e2e = E2e::new(user("mallory"), DeviceId::parse("phone-mallory").unwrap());
    let upload = alice.e2e.keys_to_upload(0);

    // One-time keys before the device's identity keys.
    let (result, _) = alice
        .raw
        .ask(Request::UploadKeys {
            device_keys: None,
            one_time_keys: upload.one_time_keys.clone(),
            fallback_key: None,
        })
        .await;
    assert_eq!(code(result), ErrorCode::Invalid);
    // Someone else's device keys.
    let (result, _) = alice
        .raw
        .ask(Request::UploadKeys {
            device_keys: Some(Box::new(mallory_e2e.device_keys())),
            one_time_keys: Vec::new(),
            fallback_key: None,
        })
        .await;
    assert_eq!(code(result), ErrorCode::Invalid);
    // Too many keys at once.
    let mut many = upload.one_time_keys.clone();
    many.extend(upload.one_time_keys.clone());
    many.extend(upload.one_time_keys.clone());
    let (result, _) = alice
        .raw
        .ask(Request::UploadKeys {
            device_keys: Some(Box::new(alice.e2e.device_keys())),
            one_time_keys: many,
            fallback_key: None,
        })
        .await;
    assert_eq!(code(result), ErrorCode::Invalid);
    // A fallback key passed as a one-time key.
    let (result, _) = alice
        .raw
        .ask(Request::UploadKeys {
            device_keys: Some(Box::new(alice.e2e.device_keys())),
            one_time_keys: vec![upload.fallback_key.clone().unwrap()],
            fallback_key: None,
        })
        .await;
    assert_eq!(code(result), ErrorCode::Invalid);
    // An unknown user.
    let (result, _) = alice
        .raw
        .ask(Request::QueryKeys {
            users: vec![user("nobody")],
        })
        .await;
    assert_eq!(code(result), ErrorCode::UnknownUser);

    // The valid upload still works, and the identity cannot change after.
    publish(&mut alice).await;
    let other = E2e::new(user("alice"), alice.e2e.device().clone());
    let (result, _) = alice
        .raw
        .ask(Request::UploadKeys {
            device_keys: Some(Box::new(other.device_keys())),
            one_time_keys: Vec::new(),
            fallback_key: None,
        })
        .await;
    let refusal = result.expect_err("identity keys cannot change");
    assert_eq!(refusal.code, ErrorCode::Invalid);
    assert!(
        refusal.message.contains("cannot change"),
        "{}",
        refusal.message
    );
    // Claims for unknown users or devices are simply empty.
    let (result, _) = alice
        .raw
        .ask(Request::ClaimKeys {
            devices: vec![DeviceRef {
                user: user("nobody"),
                device: DeviceId::parse("whatever1").unwrap(),
            }],
        })
        .await;
    assert!(matches!(result, Ok(Response::Claimed { keys }) if keys.is_empty()));
}

#[tokio::test]
async fn a_new_device_is_announced_to_those_who_share_a_room() {
    let server = TestServer::start().await;
    let mut alice = device(&server, "alice", "phone").await;
    let mut bob = device(&server, "bob", "laptop").await;
    let mut carol = device(&server, "carol", "tablet").await;
    // Alice and bob share a private room; carol shares nothing with bob.
    let (result, _) = alice
        .raw
        .ask(Request::SendDirect {
            to: user("bob"),
            payload: vec![1, 2, 3],
        })
        .await;
    result.expect("sent");
    publish(&mut bob).await;
    let (_, events) = alice.raw.ask(Request::Ping).await;
    assert!(
        events.contains(&EventKind::DevicesChanged { user: user("bob") }),
        "{events:?}"
    );
    let (_, events) = carol.raw.ask(Request::Ping).await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, EventKind::DevicesChanged { .. })),
        "{events:?}"
    );
}

/// The next room event, skipping other events and replies.
async fn next_room_event(raw: &mut Raw) -> sotto_proto::RoomEvent {
    loop {
        match raw.recv().await.expect("server answers") {
            ServerFrame::Event {
                body:
                    sotto_proto::EventBody {
                        kind: EventKind::Room(event),
                        ..
                    },
                ..
            } => return event,
            _ => continue,
        }
    }
}

/// Room events that arrive before the reply to a ping.
async fn room_events_until_pong(raw: &mut Raw) -> Vec<sotto_proto::RoomEvent> {
    let (_, events) = raw.ask(Request::Ping).await;
    events
        .into_iter()
        .filter_map(|e| match e {
            EventKind::Room(event) => Some(event),
            _ => None,
        })
        .collect()
}

fn payload_of(event: &sotto_proto::RoomEvent) -> Vec<u8> {
    match &event.content {
        sotto_proto::RoomContent::Envelope { payload, .. }
        | sotto_proto::RoomContent::ToDevice { payload, .. } => payload.clone(),
        other => panic!("expected an envelope, got {other:?}"),
    }
}

async fn ack(raw: &mut Raw, event: &sotto_proto::RoomEvent) {
    raw.send(sotto_proto::ClientFrame::Ack(sotto_proto::Ack {
        room_id: event.room_id,
        seq: event.seq,
    }))
    .await;
}

fn to(user_name: &str, device: &DeviceId, payload: &[u8]) -> sotto_proto::ToDeviceMessage {
    sotto_proto::ToDeviceMessage {
        user: user(user_name),
        device: device.clone(),
        payload: payload.to_vec(),
    }
}

#[tokio::test]
async fn to_device_messages_reach_only_their_device_in_order_even_offline_until_acknowledged() {
    let mut server = TestServer::start().await;
    let mut alice = device(&server, "alice", "phone").await;
    // A device publishes its keys before it sends to-device messages:
    // recipients check them against the directory's.
    let (result, _) = alice
        .raw
        .ask(Request::SendToDevice {
            messages: vec![to("alice", alice.e2e.device(), b"x")],
        })
        .await;
    assert_eq!(code(result), ErrorCode::Invalid);
    publish(&mut alice).await;
    let mut laptop = device(&server, "bob", "laptop").await;
    // Bob's phone exists (it logged in once) but is offline.
    let phone_id = {
        let phone = device(&server, "bob", "phone").await;
        phone.e2e.device().clone()
    };
    let laptop_id = laptop.e2e.device().clone();

    // A request naming an unknown device stores nothing at all.
    let (result, _) = alice
        .raw
        .ask(Request::SendToDevice {
            messages: vec![
                to("bob", &laptop_id, b"never"),
                to("bob", &DeviceId::parse("nosuchdevice").unwrap(), b"x"),
            ],
        })
        .await;
    assert_eq!(code(result), ErrorCode::UnknownUser);

    let (result, _) = alice
        .raw
        .ask(Request::SendToDevice {
            messages: vec![
                to("bob", &laptop_id, b"k1"),
                to("bob", &phone_id, b"k2"),
                to("bob", &laptop_id, b"k3"),
            ],
        })
        .await;
    assert!(matches!(result, Ok(Response::Done)), "{result:?}");

    let first = next_room_event(&mut laptop.raw).await;
    let second = next_room_event(&mut laptop.raw).await;
    assert_eq!(
        first.room,
        sotto_proto::RoomRef::Inbox {
            device: laptop_id.clone()
        }
    );
    assert_eq!(first.sender, user("alice"));
    assert_eq!(
        (payload_of(&first), payload_of(&second)),
        (b"k1".to_vec(), b"k3".to_vec())
    );
    // Each carries the directory's keys of the sending device.
    assert!(
        matches!(&first.content, sotto_proto::RoomContent::ToDevice { device, keys, .. }
            if device == alice.e2e.device() && **keys == alice.e2e.device_keys()),
        "{first:?}"
    );
    assert!(room_events_until_pong(&mut laptop.raw).await.is_empty());
    ack(&mut laptop.raw, &second).await;

    // The phone gets its message when it comes online, and only that one.
    let mut phone = device(&server, "bob", "phone").await;
    let got = next_room_event(&mut phone.raw).await;
    assert_eq!(payload_of(&got), b"k2".to_vec());
    assert!(room_events_until_pong(&mut phone.raw).await.is_empty());
    ack(&mut phone.raw, &got).await;
    // Acknowledged messages are deleted (after the reader hands its acks
    // over, at most 100 ms later, and the cursors are written on stop).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    server.stop().await;
    let queued = server
        .db()
        .integer("SELECT COUNT(*) FROM events e JOIN rooms r ON r.id = e.room_id WHERE r.kind = 4")
        .await;
    assert_eq!(queued, 0, "acknowledged to-device messages are deleted");
    server.restart().await;
    let mut phone = device(&server, "bob", "phone").await;
    assert!(room_events_until_pong(&mut phone.raw).await.is_empty());
    // And history never shows them.
    let (result, _) = phone
        .raw
        .ask(Request::History {
            limit: 100,
            before: None,
        })
        .await;
    let Ok(Response::History { events, .. }) = result else {
        panic!("expected history, got {result:?}");
    };
    assert!(events.is_empty(), "{events:?}");
}

#[tokio::test]
async fn a_megolm_conversation_through_the_server_which_stores_no_plaintext() {
    let server = TestServer::start().await;
    let mut alice = device(&server, "alice", "phone").await;
    publish(&mut alice).await;
    let mut bob = device(&server, "bob", "laptop").await;
    publish(&mut bob).await;
    let bob_keys = bob.e2e.device_keys();
    let alice_keys = alice.e2e.device_keys();

    // Alice claims a key of bob's device, shares her room key over Olm
    // through bob's queue, then sends a Megolm message in their room.
    let (result, _) = alice
        .raw
        .ask(Request::ClaimKeys {
            devices: vec![DeviceRef {
                user: user("bob"),
                device: bob.e2e.device().clone(),
            }],
        })
        .await;
    let Ok(Response::Claimed { keys }) = result else {
        panic!("expected a key, got {result:?}");
    };
    alice
        .e2e
        .start_olm_session(&bob_keys, &keys[0].key)
        .unwrap();
    // The room id comes from the server once the room exists: a first
    // message creates it.
    let (result, _) = alice
        .raw
        .ask(Request::SendDirect {
            to: user("bob"),
            payload: b"opening the room".to_vec(),
        })
        .await;
    let Ok(Response::Sent { room_id, .. }) = result else {
        panic!("expected sent, got {result:?}");
    };
    let recipients = std::collections::BTreeSet::from([(
        user("bob"),
        bob.e2e.device().clone(),
        bob_keys.curve25519,
    )]);
    let prepared = alice
        .e2e
        .prepare_room(room_id, &recipients, &Default::default(), 0)
        .unwrap();
    let olm = alice
        .e2e
        .room_key_for(room_id, &prepared, &bob_keys)
        .unwrap();
    let (result, _) = alice
        .raw
        .ask(Request::SendToDevice {
            messages: vec![sotto_proto::ToDeviceMessage {
                user: user("bob"),
                device: bob.e2e.device().clone(),
                payload: olm.encode().unwrap(),
            }],
        })
        .await;
    result.expect("queued");
    let secret = "the eagle lands at 0600 (Megolm test)";
    let envelope = alice
        .e2e
        .encrypt_room(
            room_id,
            0,
            sotto_proto::MessageBody::Text {
                text: secret.into(),
            },
        )
        .unwrap()
        .0;
    let (result, _) = alice
        .raw
        .ask(Request::SendDirect {
            to: user("bob"),
            payload: envelope.encode().unwrap(),
        })
        .await;
    let Ok(Response::Sent { seq, .. }) = result else {
        panic!("expected sent, got {result:?}");
    };

    // Bob: the opening message, the room key from his queue, the message.
    let mut room_key = None;
    let mut message = None;
    while room_key.is_none() || message.is_none() {
        let event = next_room_event(&mut bob.raw).await;
        match event.room {
            sotto_proto::RoomRef::Inbox { .. } => room_key = Some(event),
            _ if event.seq == seq => message = Some(event),
            _ => {}
        }
    }
    let olm = sotto_proto::e2e::OlmEnvelope::decode(&payload_of(&room_key.unwrap())).unwrap();
    bob.e2e.decrypt_to_device(&alice_keys, &olm).unwrap();
    let message = message.unwrap();
    let envelope = sotto_proto::e2e::MegolmEnvelope::decode(&payload_of(&message)).unwrap();
    let plain = bob
        .e2e
        .decrypt_room(
            message.room_id,
            &message.sender,
            alice.e2e.device(),
            &envelope,
            sotto_crypto::e2e::ReadMode::Live,
        )
        .unwrap();
    assert_eq!(
        plain.plaintext.body,
        sotto_proto::MessageBody::Text {
            text: secret.into()
        }
    );

    // The server's database holds ciphertext only. (The search works: the
    // unencrypted opening payload is found.)
    let stored = server.db().contents().await;
    let contains = |needle: &[u8]| stored.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"opening the room"));
    assert!(
        !contains(secret.as_bytes()),
        "plaintext in the server's database"
    );
}

#[tokio::test]
async fn the_private_room_id_is_known_before_the_first_message() {
    let server = TestServer::start().await;
    let mut alice = device(&server, "alice", "phone").await;
    let mut bob = device(&server, "bob", "laptop").await;
    let (result, _) = alice
        .raw
        .ask(Request::DirectRoom { with: user("bob") })
        .await;
    let Ok(Response::Room { room_id }) = result else {
        panic!("expected a room, got {result:?}");
    };
    // The same room from bob's side, and for the first message.
    let (result, _) = bob
        .raw
        .ask(Request::DirectRoom {
            with: user("alice"),
        })
        .await;
    assert!(matches!(result, Ok(Response::Room { room_id: id }) if id == room_id));
    let (result, _) = alice
        .raw
        .ask(Request::SendDirect {
            to: user("bob"),
            payload: vec![1],
        })
        .await;
    assert!(matches!(result, Ok(Response::Sent { room_id: id, seq: 1, .. }) if id == room_id));
    let (result, _) = alice
        .raw
        .ask(Request::DirectRoom {
            with: user("nobody"),
        })
        .await;
    assert_eq!(code(result), ErrorCode::UnknownUser);
    let (result, _) = alice
        .raw
        .ask(Request::DirectRoom {
            with: user("alice"),
        })
        .await;
    assert_eq!(code(result), ErrorCode::Invalid);
}
