//! End-to-end encryption through the client library (issue 4): what the
//! server stores is ciphertext, every device of a recipient can read new
//! messages, and a message that is not end-to-end encrypted is refused.

use sotto_client::ClientEvent;
use sotto_proto::{GroupName, Request, Username};
use sotto_test_support::{TestClient, TestServer};

use crate::raw::Raw;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

/// Whether the server's database or its WAL contains `needle`.
fn server_db_contains(server: &TestServer, needle: &str) -> bool {
    let db = std::fs::read(server.db_path()).unwrap();
    let wal = std::fs::read(server.db_path().with_extension("db-wal")).unwrap_or_default();
    [db, wal]
        .iter()
        .any(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
}

#[tokio::test]
async fn private_and_group_messages_are_ciphertext_on_the_server() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let mut carol = server.client("carol").await;

    alice
        .client
        .send_private(user("bob"), "private-plaintext-8841")
        .await
        .unwrap();
    assert_eq!(bob.expect_private().await.1, "private-plaintext-8841");

    let crew = GroupName::parse("crew").unwrap();
    alice
        .client
        .group_create(crew.clone(), vec![user("bob"), user("carol")])
        .await
        .unwrap();
    alice
        .client
        .send_group(crew.clone(), "group-plaintext-8842")
        .await
        .unwrap();
    assert_eq!(bob.expect_group().await.2, "group-plaintext-8842");
    assert_eq!(carol.expect_group().await.2, "group-plaintext-8842");

    // The lobby is plaintext by design: it shows the search works.
    alice
        .client
        .send_lobby("lobby-plaintext-8843")
        .await
        .unwrap();
    bob.expect_lobby().await;
    assert!(server_db_contains(&server, "lobby-plaintext-8843"));
    assert!(!server_db_contains(&server, "private-plaintext-8841"));
    assert!(!server_db_contains(&server, "group-plaintext-8842"));
}

#[tokio::test]
async fn every_device_of_a_recipient_reads_new_messages_and_the_senders_other_devices_too() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut alice_phone = server.client("alice").await;
    let mut bob_laptop = server.client("bob").await;
    let mut bob_phone = server.client("bob").await;
    alice
        .client
        .send_private(user("bob"), "to all of bob")
        .await
        .unwrap();
    assert_eq!(bob_laptop.expect_private().await.1, "to all of bob");
    assert_eq!(bob_phone.expect_private().await.1, "to all of bob");
    // Alice's other device sees her own message (its own copy).
    let (from, text) = alice_phone.expect_private().await;
    assert_eq!((from.as_str(), text.as_str()), ("alice", "to all of bob"));

    // A device that logs in later reads what is sent after it appeared.
    let mut bob_tablet = server.client("bob").await;
    alice
        .client
        .send_private(user("bob"), "after the tablet")
        .await
        .unwrap();
    assert_eq!(bob_tablet.expect_private().await.1, "after the tablet");
}

#[tokio::test]
async fn a_conversation_survives_restarting_the_clients_and_the_server() {
    let mut server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice
        .client
        .send_private(user("bob"), "before")
        .await
        .unwrap();
    assert_eq!(bob.expect_private().await.1, "before");

    let (alice_dir, bob_dir) = (alice.dir, bob.dir);
    let _ = alice.client.quit().await;
    let _ = bob.client.quit().await;
    server.restart().await;
    let alice = TestClient::connect_in(server.addr, "alice", alice_dir)
        .await
        .unwrap();
    let mut bob = TestClient::connect_in(server.addr, "bob", bob_dir)
        .await
        .unwrap();
    alice
        .client
        .send_private(user("bob"), "after")
        .await
        .unwrap();
    assert_eq!(bob.expect_private().await.1, "after");
    bob.client
        .send_private(user("alice"), "and back")
        .await
        .unwrap();
    let mut alice = alice;
    assert_eq!(alice.expect_private().await.1, "and back");
}

#[tokio::test]
async fn a_message_that_is_not_end_to_end_encrypted_is_refused_visibly() {
    let server = TestServer::start().await;
    let mut bob = server.client("bob").await;
    // A raw client sends a plain message body where ciphertext belongs.
    let mut mallory = Raw::login(server.addr, "mallory").await;
    let body = sotto_proto::MessageBody::Text {
        text: "trust me".into(),
    };
    let (result, _) = mallory
        .ask(Request::SendDirect {
            to: user("bob"),
            payload: body.encode().unwrap(),
        })
        .await;
    result.expect("the server stores what it cannot read");
    let reason = bob
        .expect("a refusal", |e| match e {
            ClientEvent::Undecodable { from, reason, .. } if from.as_str() == "mallory" => {
                Some(reason.clone())
            }
            _ => None,
        })
        .await;
    assert!(reason.contains("not end-to-end encrypted"), "{reason}");
    // Bob's client keeps working.
    let alice = server.client("alice").await;
    alice
        .client
        .send_private(user("bob"), "still fine")
        .await
        .unwrap();
    assert_eq!(bob.expect_private().await.1, "still fine");
}

#[tokio::test]
async fn safety_numbers_match_on_both_sides_and_change_with_the_keys() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let from_alice = alice.client.safety_number(&user("bob")).await.unwrap();
    let from_bob = bob.client.safety_number(&user("alice")).await.unwrap();
    assert_eq!(from_alice.safety_number, from_bob.safety_number);
    assert_eq!(from_alice.safety_number.len(), 71);
    assert!(!from_alice.verified);

    let confirmed = alice.client.confirm_verified(&user("bob")).await.unwrap();
    assert!(confirmed.verified);
    let devices = alice.client.devices(Some(user("bob"))).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert!(devices[0].verified);
    assert_eq!(devices[0].fingerprint.len(), 64 + 15);

    // Bob adds a device: the number changes and the verification lapses.
    let _bob_phone = server.client("bob").await;
    let after = alice.client.safety_number(&user("bob")).await.unwrap();
    assert_ne!(after.safety_number, from_alice.safety_number);
    assert!(!after.verified);
    let mine = alice.client.devices(None).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert!(alice.client.safety_number(&user("alice")).await.is_err());
}

/// The envelope payloads of room events a raw device of the same account
/// receives (its own account's messages reach its other devices).
async fn next_envelope(raw: &mut Raw) -> (u64, Vec<u8>) {
    loop {
        if let Some(sotto_proto::ServerFrame::Event {
            body:
                sotto_proto::EventBody {
                    kind: sotto_proto::EventKind::Room(event),
                    ..
                },
            ..
        }) = raw.recv().await
            && let sotto_proto::RoomContent::Envelope { payload, .. } = event.content
        {
            return (event.room_id, payload);
        }
    }
}

#[tokio::test]
async fn tampered_and_replayed_envelopes_are_rejected_and_nothing_else_breaks() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    // A raw device of alice's account sees what alice sends (as a hostile
    // server would) and can send it again.
    let mut replayer = Raw::login(server.addr, "alice").await;
    alice
        .client
        .send_private(user("bob"), "pay bob 10")
        .await
        .unwrap();
    assert_eq!(bob.expect_private().await.1, "pay bob 10");
    let (_, payload) = next_envelope(&mut replayer).await;

    let undecodable = |reason_has: &'static str| {
        move |e: &ClientEvent| match e {
            ClientEvent::Undecodable { reason, .. } if reason.contains(reason_has) => {
                Some(reason.clone())
            }
            _ => None,
        }
    };
    // The same ciphertext again, as a new message.
    replayer
        .request(Request::SendDirect {
            to: user("bob"),
            payload: payload.clone(),
        })
        .await;
    bob.expect("a refused replay", undecodable("replayed"))
        .await;
    // A flipped bit.
    let mut envelope = sotto_proto::e2e::MegolmEnvelope::decode(&payload).unwrap();
    let at = envelope.ciphertext.len() / 2;
    envelope.ciphertext[at] ^= 1;
    replayer
        .request(Request::SendDirect {
            to: user("bob"),
            payload: envelope.encode().unwrap(),
        })
        .await;
    bob.expect("a refused forgery", undecodable("cannot decrypt"))
        .await;
    // The conversation goes on.
    alice
        .client
        .send_private(user("bob"), "still here")
        .await
        .unwrap();
    assert_eq!(bob.expect_private().await.1, "still here");
}

#[tokio::test]
async fn a_kicked_member_gets_no_key_for_what_follows() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let mut carol = server.client("carol").await;
    let mut watcher = Raw::login(server.addr, "alice").await;
    let crew = GroupName::parse("crew").unwrap();
    alice
        .client
        .group_create(crew.clone(), vec![user("bob"), user("carol")])
        .await
        .unwrap();
    alice
        .client
        .send_group(crew.clone(), "all of us")
        .await
        .unwrap();
    assert_eq!(bob.expect_group().await.2, "all of us");
    assert_eq!(carol.expect_group().await.2, "all of us");
    alice
        .client
        .group_kick(crew.clone(), vec![user("carol")])
        .await
        .unwrap();
    alice
        .client
        .send_group(crew.clone(), "without carol")
        .await
        .unwrap();
    assert_eq!(bob.expect_group().await.2, "without carol");

    // The second message is under a new Megolm session, whose key went to
    // bob's device only.
    let mut sessions = Vec::new();
    while sessions.len() < 2 {
        let (_, payload) = next_envelope(&mut watcher).await;
        if let Ok(envelope) = sotto_proto::e2e::MegolmEnvelope::decode(&payload) {
            sessions.push(envelope.session_id);
        }
    }
    assert_ne!(sessions[0], sessions[1], "the session rotated at the kick");
    let seen = carol.drain_for(std::time::Duration::from_millis(300)).await;
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, ClientEvent::Group { text, .. } if text == "without carol")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn exhausted_one_time_keys_fall_back_and_the_conversation_works() {
    let server = TestServer::start().await;
    let mut bob = server.client("bob").await;
    let bob_device = bob.client.session().device_id.clone();
    // Someone claims all of bob's one-time keys.
    let mut claimer = Raw::login(server.addr, "mallory").await;
    let (result, _) = claimer
        .ask(Request::ClaimKeys {
            devices: vec![
                sotto_proto::DeviceRef {
                    user: user("bob"),
                    device: bob_device.clone(),
                };
                50
            ],
        })
        .await;
    let Ok(sotto_proto::Response::Claimed { keys }) = result else {
        panic!("expected keys, got {result:?}");
    };
    assert!(keys.iter().all(|k| !k.key.fallback));
    // Bob's client tops up on the KeyCount notice; claim the new ones too,
    // then alice gets the fallback key.
    let _ = bob.drain_for(std::time::Duration::from_millis(300)).await;
    let (result, _) = claimer
        .ask(Request::ClaimKeys {
            devices: vec![
                sotto_proto::DeviceRef {
                    user: user("bob"),
                    device: bob_device.clone(),
                };
                60
            ],
        })
        .await;
    let Ok(sotto_proto::Response::Claimed { keys }) = result else {
        panic!("expected keys, got {result:?}");
    };
    assert!(
        keys.last().unwrap().key.fallback,
        "only the fallback was left"
    );

    let alice = server.client("alice").await;
    alice
        .client
        .send_private(user("bob"), "over the fallback key")
        .await
        .unwrap();
    assert_eq!(bob.expect_private().await.1, "over the fallback key");
    bob.client
        .send_private(user("alice"), "and back")
        .await
        .unwrap();
    let mut alice = alice;
    assert_eq!(alice.expect_private().await.1, "and back");
}

#[tokio::test]
async fn a_damaged_local_store_is_a_clear_error_not_a_silent_new_identity() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let dir = alice.dir;
    let _ = alice.client.quit().await;
    let stores = dir.path().join("stores");
    let store = std::fs::read_dir(&stores)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "db"))
        .unwrap();
    // One bit of the sealed account record (this device's identity keys).
    let db = rusqlite::Connection::open(&store).unwrap();
    let mut account: Vec<u8> = db
        .query_row(
            "SELECT value FROM records WHERE kind = 'account'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let last = account.len() - 1;
    account[last] ^= 1;
    db.execute(
        "UPDATE records SET value = ?1 WHERE kind = 'account'",
        [account],
    )
    .unwrap();
    drop(db);
    let err = TestClient::connect_in(server.addr, "alice", dir)
        .await
        .expect_err("a changed store does not open");
    let message = err.to_string();
    assert!(
        message.contains("cannot unlock the local store"),
        "{message}"
    );
    assert!(message.contains("stores"), "{message}");
}

#[tokio::test]
async fn a_new_device_asks_for_a_missing_key_and_then_reads_the_message() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.client.send_private(user("bob"), "m1").await.unwrap();
    assert_eq!(bob.expect_private().await.1, "m1");
    // Bob's new device gets the room key from the current index on.
    let mut bob2 = server.client("bob").await;
    alice.client.send_private(user("bob"), "m2").await.unwrap();
    assert_eq!(bob2.expect_private().await.1, "m2");

    // In history, m1 cannot be read yet: it says so and asks alice's device.
    let history = bob2.client.history(10).await.unwrap();
    assert!(
        history
            .iter()
            .any(|e| matches!(e, ClientEvent::Undecodable { reason, .. }
            if reason.contains("asked alice's device"))),
        "{history:?}"
    );
    // Alice's device answers (bob2 was sent this session's key), and m1
    // shows up.
    assert_eq!(bob2.expect_private().await.1, "m1");
}

#[tokio::test]
async fn key_requests_from_strangers_are_not_answered() {
    use sotto_crypto::e2e::E2e;
    use sotto_proto::e2e::{MegolmEnvelope, OlmEnvelope, ToDeviceContent};
    use sotto_proto::{DeviceId, DeviceRef, Response, ToDeviceMessage};

    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let alice_device = alice.client.session().device_id.clone();
    // A raw device of alice's account sees the session id, as the server
    // would.
    let mut watcher = Raw::login(server.addr, "alice").await;
    alice
        .client
        .send_private(user("bob"), "for bob only")
        .await
        .unwrap();
    assert_eq!(bob.expect_private().await.1, "for bob only");
    let (room_id, payload) = next_envelope(&mut watcher).await;
    let session_id = MegolmEnvelope::decode(&payload).unwrap().session_id;

    // Mallory, a stranger with a real device, asks alice's device for it.
    let mut mallory = Raw::login(server.addr, "mallory").await;
    let mut e2e = E2e::new(
        user("mallory"),
        DeviceId::parse("rawdevice-mallory").unwrap(),
    );
    let upload = e2e.keys_to_upload(0);
    let (result, _) = mallory
        .ask(Request::UploadKeys {
            device_keys: Some(Box::new(e2e.device_keys())),
            one_time_keys: upload.one_time_keys,
            fallback_key: upload.fallback_key.map(Box::new),
        })
        .await;
    result.expect("mallory's keys are published");
    e2e.mark_keys_published();
    let (result, _) = mallory
        .ask(Request::QueryKeys {
            users: vec![user("alice")],
        })
        .await;
    let Ok(Response::Devices { devices }) = result else {
        panic!("expected devices, got {result:?}");
    };
    let alice_keys = devices
        .into_iter()
        .find(|d| d.device == alice_device)
        .unwrap();
    let (result, _) = mallory
        .ask(Request::ClaimKeys {
            devices: vec![DeviceRef {
                user: user("alice"),
                device: alice_device.clone(),
            }],
        })
        .await;
    let Ok(Response::Claimed { keys }) = result else {
        panic!("expected a key, got {result:?}");
    };
    e2e.start_olm_session(&alice_keys, &keys[0].key).unwrap();
    let request = e2e
        .encrypt_to_device(
            &alice_keys,
            ToDeviceContent::KeyRequest {
                room_id,
                session_id: session_id.clone(),
            },
        )
        .unwrap();
    let (result, _) = mallory
        .ask(Request::SendToDevice {
            messages: vec![ToDeviceMessage {
                user: user("alice"),
                device: alice_device.clone(),
                payload: request.encode().unwrap(),
            }],
        })
        .await;
    result.expect("queued");

    // Alice's client reads the request but sends nothing back: mallory's
    // inbox stays empty. (The test above shows an allowed request is
    // answered within this time.)
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let id2 = mallory.request(Request::Ping).await;
    let mut forwarded = Vec::new();
    loop {
        match mallory.recv().await.unwrap() {
            sotto_proto::ServerFrame::Event {
                body:
                    sotto_proto::EventBody {
                        kind: sotto_proto::EventKind::Room(event),
                        ..
                    },
                ..
            } => {
                if let sotto_proto::RoomContent::Envelope { payload, .. } = event.content
                    && let Ok(env) = OlmEnvelope::decode(&payload)
                {
                    forwarded.push(env);
                }
            }
            sotto_proto::ServerFrame::Reply { id: got, .. } if got == id2 => break,
            _ => {}
        }
    }
    assert!(forwarded.is_empty(), "a stranger got an answer");
    drop(alice);
}

#[tokio::test]
async fn reconnecting_tops_up_one_time_keys_instead_of_piling_them_up() {
    let server = TestServer::start().await;
    let mut bob = server.client("bob").await;
    let device = bob.client.session().device_id.clone();
    for _ in 0..5 {
        bob = bob.reconnect(server.addr).await;
    }
    let mut claimer = Raw::login(server.addr, "mallory").await;
    let (result, _) = claimer
        .ask(Request::ClaimKeys {
            devices: vec![
                sotto_proto::DeviceRef {
                    user: user("bob"),
                    device,
                };
                60
            ],
        })
        .await;
    let Ok(sotto_proto::Response::Claimed { keys }) = result else {
        panic!("expected keys, got {result:?}");
    };
    assert_eq!(keys.iter().filter(|k| !k.key.fallback).count(), 50);
    drop(bob);
}
