//! The client's local store through the real server (issue 4): private and
//! group history is served from it, messages waiting for a room key survive
//! a restart, and a device that lost its Olm sessions gets new ones and
//! reads on.

use std::path::Path;

use sotto_client::ClientEvent;
use sotto_proto::{GroupName, Username};
use sotto_test_support::{TestClient, TestServer};

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

/// Whether any file of the client's data dir contains `needle`.
fn data_dir_contains(dir: &Path, needle: &str) -> bool {
    fn walk(dir: &Path, needle: &[u8]) -> bool {
        std::fs::read_dir(dir).unwrap().any(|entry| {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, needle)
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                bytes.windows(needle.len()).any(|w| w == needle)
            }
        })
    }
    walk(dir, needle.as_bytes())
}

/// The texts of the private and group messages in `events`, in order.
fn texts(events: &[ClientEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Private { from, text, .. } => Some(format!("{from}: {text}")),
            ClientEvent::Group {
                group, from, text, ..
            } => Some(format!("{group}/{from}: {text}")),
            ClientEvent::Lobby { from, text, .. } => Some(format!("lobby/{from}: {text}")),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn private_and_group_history_is_served_from_the_local_store() {
    let mut server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let crew = GroupName::parse("crew").unwrap();
    alice
        .client
        .group_create(crew.clone(), vec![user("bob")])
        .await
        .unwrap();
    bob.accept_invitation("crew").await;
    alice
        .client
        .send_private(user("bob"), "first-secret-5521")
        .await
        .unwrap();
    assert_eq!(bob.expect_private().await.1, "first-secret-5521");
    bob.client
        .send_private(user("alice"), "reply-secret-5522")
        .await
        .unwrap();
    alice
        .client
        .send_group(crew.clone(), "group-secret-5523")
        .await
        .unwrap();
    assert_eq!(bob.expect_group().await.2, "group-secret-5523");
    alice
        .client
        .send_private(user("bob"), "last-secret-5524")
        .await
        .unwrap();
    assert_eq!(bob.expect_private().await.1, "last-secret-5524");
    alice
        .client
        .send_group(crew.clone(), "group-last-5525")
        .await
        .unwrap();
    assert_eq!(bob.expect_group().await.2, "group-last-5525");
    let before = texts(&bob.client.history(20).await.unwrap());
    assert_eq!(
        before,
        [
            "alice: first-secret-5521",
            "bob: reply-secret-5522",
            "crew/alice: group-secret-5523",
            "alice: last-secret-5524",
            "crew/alice: group-last-5525",
        ]
    );

    // Bob's client stops; the server loses its copy of every private and
    // group event but the last of each room (as with a retention policy,
    // or a server that withholds them).
    let bob_dir = bob.dir;
    let _ = bob.client.quit().await;
    server.stop().await;
    let gone = server
        .db()
        .execute(
            "DELETE FROM events WHERE room_id IN (SELECT id FROM rooms WHERE kind IN (1, 2)) \
             AND seq < (SELECT MAX(seq) FROM events e WHERE e.room_id = events.room_id)",
        )
        .await;
    assert_eq!(
        gone, 6,
        "two private messages, three group notices (created, invited, joined) and a message"
    );
    server.restart().await;
    let bob = TestClient::connect_in(server.addr, "bob", bob_dir)
        .await
        .unwrap();
    let after = texts(&bob.client.history(20).await.unwrap());
    assert_eq!(after, before, "the history is bob's own, not the server's");

    // Nothing of it is readable in bob's data dir.
    for text in [
        "first-secret-5521",
        "reply-secret-5522",
        "group-secret-5523",
    ] {
        assert!(!data_dir_contains(bob.dir.path(), text), "{text} on disk");
    }
}

#[tokio::test]
async fn a_message_waiting_for_its_key_is_shown_when_the_key_comes_even_after_a_restart() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let bob = server.client("bob").await;
    // Alice verified bob: a device bob adds later gets no keys from her
    // until she accepts it.
    alice.verify("bob").await;
    let mut bob2 = server.client("bob").await;
    let bob2_id = bob2.client.session().device_id.clone();
    alice.client.send_private(user("bob"), "m1").await.unwrap();
    let told = alice.expect_notice("gets no key").await;
    assert!(
        told.contains(&format!("@devices bob trust {bob2_id}")),
        "{told}"
    );
    // Bob2 holds m1 and learns why it waits.
    bob2.expect("m1, unreadable for now", |e| {
        matches!(e, ClientEvent::Undecodable { .. }).then_some(())
    })
    .await;
    let why = bob2.expect_notice("cannot be read").await;
    assert!(why.contains("has not accepted this device"), "{why}");
    // Bob2 is restarted; then alice accepts it, and the message bob2 held
    // in its local store is shown.
    let bob2 = bob2.reconnect_later().await;
    alice
        .client
        .trust_device(Some(user("bob")), &bob2_id)
        .await
        .unwrap();
    let mut bob2 = bob2.connect(server.addr).await;
    assert_eq!(bob2.expect_private().await.1, "m1");
    let history = texts(&bob2.client.history(10).await.unwrap());
    assert_eq!(history, ["alice: m1"]);
    drop(bob);
}

#[tokio::test]
async fn a_device_that_lost_its_olm_sessions_gets_new_ones_and_reads_on() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    // A copy of bob's local store from before any conversation.
    let bob = bob.reconnect_later().await;
    let db = sotto_test_support::store_db(bob.dir.path());
    let early = std::fs::read(&db).unwrap();
    let mut bob = bob.connect(server.addr).await;

    // Both ways, so alice's Olm session with bob's device is established
    // and she sends him ordinary (not pre-key) Olm messages from now on.
    alice.client.send_private(user("bob"), "one").await.unwrap();
    assert_eq!(bob.expect_private().await.1, "one");
    bob.client.send_private(user("alice"), "two").await.unwrap();
    let mut alice = alice;
    assert_eq!(alice.expect_private().await.1, "two");

    // Bob's device loses its state: the early copy comes back (a restored
    // backup, say). Its identity keys are the same; its Olm sessions are
    // gone.
    let bob = bob.reconnect_later().await;
    std::fs::write(&db, &early).unwrap();
    let mut bob = bob.connect(server.addr).await;
    // Alice's next room key (a new session after her restart) travels on
    // her old Olm session, which bob's device cannot read any more.
    let mut alice = alice.reconnect(server.addr).await;
    alice
        .client
        .send_private(user("bob"), "three")
        .await
        .unwrap();
    bob.expect("a refused key message and a new session", |e| match e {
        ClientEvent::Undecodable { reason, .. }
            if reason.contains("starting a new encrypted session with alice's device") =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    // Over the new session bob's device asks for the key it missed, and
    // reads the message.
    assert_eq!(bob.expect_private().await.1, "three");
    // The conversation goes on both ways.
    alice
        .client
        .send_private(user("bob"), "four")
        .await
        .unwrap();
    assert_eq!(bob.expect_private().await.1, "four");
    bob.client
        .send_private(user("alice"), "five")
        .await
        .unwrap();
    assert_eq!(alice.expect_private().await.1, "five");
}
