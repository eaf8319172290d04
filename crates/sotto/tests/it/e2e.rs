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

/// Whether the server's database contains `needle`.
async fn server_db_contains(server: &TestServer, needle: &str) -> bool {
    server.db().contains(needle.as_bytes()).await
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
    bob.accept_invitation("crew").await;
    carol.accept_invitation("crew").await;
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
    assert!(server_db_contains(&server, "lobby-plaintext-8843").await);
    assert!(!server_db_contains(&server, "private-plaintext-8841").await);
    assert!(!server_db_contains(&server, "group-plaintext-8842").await);
}

#[tokio::test]
async fn every_device_of_a_recipient_reads_new_messages_and_the_senders_accepted_devices_too() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut alice_phone = server.client("alice").await;
    let mut bob_laptop = server.client("bob").await;
    let mut bob_phone = server.client("bob").await;
    // Alice's first device accepts her phone (after comparing its
    // fingerprint): from then on her messages reach it too.
    let phone = alice_phone.client.session().device_id.clone();
    let accepted = alice.client.trust_device(None, &phone).await.unwrap();
    assert!(accepted.gets_keys);
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
    // And the history is intact on both sides.
    for side in [&alice, &bob] {
        let history: Vec<String> = side
            .client
            .history(10)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|e| match e {
                ClientEvent::Private { from, text, .. } => Some(format!("{from}: {text}")),
                _ => None,
            })
            .collect();
        assert_eq!(
            history,
            ["alice: before", "alice: after", "bob: and back"],
            "{}",
            side.name
        );
    }
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

    let confirmed = alice
        .client
        .confirm_verified(&user("bob"), &from_alice.safety_number)
        .await
        .unwrap();
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
    let store = sotto_test_support::store_db(dir.path());
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
async fn a_device_made_after_a_message_says_why_it_cannot_read_it_and_an_accepted_own_device_can() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.client.send_private(user("bob"), "m1").await.unwrap();
    assert_eq!(bob.expect_private().await.1, "m1");
    // Bob's new device gets the room key from the current index on.
    let mut bob2 = server.client("bob").await;
    alice.client.send_private(user("bob"), "m2").await.unwrap();
    // (m1 may reach bob2 live too, if bob's first device had not
    // acknowledged it yet: then bob2 asks for its key already.)
    let mut why = None;
    let watch = |why: &mut Option<String>, e: &ClientEvent| match e {
        ClientEvent::Security { message } if message.contains("cannot be read") => {
            assert!(why.replace(message.clone()).is_none(), "told twice");
        }
        ClientEvent::Private { text, .. } if text == "m1" => panic!("m1 was forwarded"),
        _ => {}
    };
    bob2.expect("m2", |e| {
        watch(&mut why, e);
        matches!(e, ClientEvent::Private { text, .. } if text == "m2").then_some(())
    })
    .await;

    // In history, m1 cannot be read: bob2 asks alice's device, which never
    // sent it that far back and says so, and bob2 tells its user once.
    let history = bob2.client.history(10).await.unwrap();
    assert!(
        history.iter().any(
            |e| matches!(e, ClientEvent::Undecodable { from, .. } if from.as_str() == "alice")
        ),
        "{history:?}"
    );
    if why.is_none() {
        bob2.expect("why m1 stays unreadable", |e| {
            watch(&mut why, e);
            why.is_some().then_some(())
        })
        .await;
    }
    let why = why.unwrap();
    assert!(why.contains("never sent this device its key"), "{why}");

    // Alice's own new device, once she accepts it, gets the key of her own
    // earlier session from its first index: her history is hers.
    let mut alice2 = server.client("alice").await;
    let id = alice2.client.session().device_id.clone();
    alice.client.trust_device(None, &id).await.unwrap();
    let history = alice2.client.history(10).await.unwrap();
    assert!(
        history
            .iter()
            .any(|e| matches!(e, ClientEvent::Undecodable { .. })),
        "{history:?}"
    );
    let mut got = Vec::new();
    while got.len() < 2 {
        got.push(alice2.expect_private().await.1);
    }
    got.sort();
    assert_eq!(got, ["m1", "m2"]);
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
