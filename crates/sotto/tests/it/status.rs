//! `@status`: dnd holds private messages, away warns the sender.

use sotto_client::ClientEvent;
use sotto_proto::{DeliveryNote, Status, Username};
use sotto_test_support::TestServer;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

#[tokio::test]
async fn dnd_holds_private_messages_until_the_user_leaves_it() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    bob.client.set_status(Status::Dnd).await.unwrap();
    let sent = alice
        .client
        .send_private(user("bob"), "are you there?")
        .await
        .unwrap();
    assert_eq!(sent.note, Some(DeliveryNote::RecipientDnd));
    alice.client.send_lobby("marker").await.unwrap();
    bob.expect("the marker", |e| match e {
        ClientEvent::Private { text, .. } => panic!("dnd user got {text}"),
        ClientEvent::Lobby { text, .. } if text == "marker" => Some(()),
        _ => None,
    })
    .await;
    bob.client.set_status(Status::Normal).await.unwrap();
    assert_eq!(
        bob.expect_private().await,
        ("alice".into(), "are you there?".into())
    );
    // Delivered once: a new message comes next, not the held one again.
    alice
        .client
        .send_private(user("bob"), "thanks")
        .await
        .unwrap();
    assert_eq!(bob.expect_private().await.1, "thanks");
}

#[tokio::test]
async fn away_delivers_and_warns_the_sender() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    bob.client.set_status(Status::Away).await.unwrap();
    let sent = alice
        .client
        .send_private(user("bob"), "ping")
        .await
        .unwrap();
    assert_eq!(sent.note, Some(DeliveryNote::RecipientAway));
    assert_eq!(bob.expect_private().await.1, "ping");
}

#[tokio::test]
async fn offline_recipient_is_reported() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let bob = server.client("bob").await;
    bob.client.quit().await.unwrap();
    alice
        .expect("bob leaving", |e| match e {
            ClientEvent::Presence {
                user,
                change: sotto_proto::PresenceChange::Offline,
            } if user.as_str() == "bob" => Some(()),
            _ => None,
        })
        .await;
    let sent = alice
        .client
        .send_private(user("bob"), "later")
        .await
        .unwrap();
    assert_eq!(sent.note, Some(DeliveryNote::RecipientOffline));
}
