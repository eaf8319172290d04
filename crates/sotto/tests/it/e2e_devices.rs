//! Cached device lists (issue 14): a client keeps a peer's device list
//! between private messages, and the server refuses a private message
//! encrypted for devices its directory no longer lists, so a device added
//! or removed a moment ago is never raced.

use sotto_proto::e2e::device_digest;
use sotto_proto::{ErrorCode, EventKind, Message, Request, Response, Username};
use sotto_test_support::TestServer;

use crate::e2e_tamper::Stranger;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn once(client_id: u64, devices: Option<u64>) -> Request {
    Request::Once {
        client_id,
        message: Message::Direct {
            to: user("bob"),
            payload: vec![1, 2, 3],
            devices,
        },
    }
}

#[tokio::test]
async fn a_private_message_for_devices_no_longer_listed_is_refused_and_not_stored() {
    let server = TestServer::start().await;
    let mut alice = Stranger::new(&server, "alice").await;
    let mut bob = Stranger::new(&server, "bob").await;
    let (result, _) = alice
        .raw
        .ask(Request::QueryKeys {
            users: vec![user("alice"), user("bob")],
        })
        .await;
    let Ok(Response::Devices { devices }) = result else {
        panic!("expected devices, got {result:?}");
    };
    assert_eq!(devices.len(), 2);
    let listed = device_digest(devices.iter().map(|d| (d.user.as_str(), d.device.as_str())));
    // Encrypted for alice's device alone, as if bob's were not there yet.
    let stale = device_digest(
        devices
            .iter()
            .filter(|d| d.user == user("alice"))
            .map(|d| (d.user.as_str(), d.device.as_str())),
    );
    let (result, _) = alice.raw.ask(once(1, Some(stale))).await;
    let refusal = result.expect_err("refused");
    assert_eq!(refusal.code, ErrorCode::DevicesChanged, "{refusal:?}");
    assert!(
        refusal.message.contains("not stored"),
        "{}",
        refusal.message
    );
    // Nothing reached bob: his ping is answered after anything alice's
    // request stored would have been delivered.
    let (_, events) = bob.raw.ask(Request::Ping).await;
    assert!(
        !events.iter().any(|e| matches!(e, EventKind::Room(_))),
        "{events:?}"
    );
    // The refused id was not remembered: the same id with the devices
    // listed now is stored, and reaches bob.
    let (result, _) = alice.raw.ask(once(1, Some(listed))).await;
    assert!(matches!(result, Ok(Response::Sent { .. })), "{result:?}");
    let (_, events) = bob.raw.ask(Request::Ping).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, EventKind::Room(_)))
            .count(),
        1,
        "{events:?}"
    );
    // A message without the check (older clients) is stored as before.
    let (result, _) = alice.raw.ask(once(2, None)).await;
    assert!(matches!(result, Ok(Response::Sent { .. })), "{result:?}");
}

#[tokio::test]
async fn a_device_added_between_messages_reads_what_follows() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    for text in ["one", "two"] {
        alice.client.send_private(user("bob"), text).await.unwrap();
        assert_eq!(bob.expect_private().await, ("alice".into(), text.into()));
    }
    // Bob's new device publishes its keys while alice holds his list from
    // the messages above. Whether or not she has read the server's notice
    // yet, her next message reaches the new device (a stale list is
    // refused and the message encrypted again).
    let mut bob_tablet = server.client("bob").await;
    alice
        .client
        .send_private(user("bob"), "three")
        .await
        .unwrap();
    assert_eq!(
        bob_tablet.expect_private().await,
        ("alice".into(), "three".into())
    );
    assert_eq!(bob.expect_private().await, ("alice".into(), "three".into()));
}
