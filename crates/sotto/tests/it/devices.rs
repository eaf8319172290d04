//! Removing a device (issue 4: "a new session whenever a member or device
//! leaves or is removed"): the removed device is signed out for good, gets
//! no key for anything sent after, and its data dir logs in again only as
//! a new device.

use sotto_client::{ClientError, ClientEvent};
use sotto_proto::{Credential, DeviceId, ErrorCode, Username};
use sotto_test_support::TestServer;

use crate::raw::Raw;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

#[tokio::test]
async fn a_removed_device_is_signed_out_and_gets_no_key_for_what_follows() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let mut laptop = server.client("bob").await;
    let mut phone = server.client("bob").await;
    let phone_id = phone.client.session().device_id.clone();
    let phone_token = phone.client.session().session_token.clone();
    let mut alice_watch = Raw::login(server.addr, "alice").await;
    alice
        .client
        .send_private(user("bob"), "before")
        .await
        .unwrap();
    let before = alice_watch.next_session_of("alice").await;
    assert_eq!(laptop.expect_private().await.1, "before");
    assert_eq!(phone.expect_private().await.1, "before");

    // The laptop lists both devices, then removes the (lost) phone.
    let devices = laptop.client.devices(None).await.unwrap();
    assert_eq!(devices.len(), 2, "{devices:?}");
    assert!(
        devices
            .iter()
            .any(|d| d.device == phone_id && !d.this_device)
    );
    laptop.client.remove_device(&phone_id).await.unwrap();
    let reason = phone
        .expect("the disconnection", |e| match e {
            ClientEvent::Disconnected { reason } => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(reason.contains("removed from your account"), "{reason}");
    assert!(
        laptop
            .client
            .devices(None)
            .await
            .unwrap()
            .iter()
            .all(|d| d.device != phone_id)
    );

    // Alice is told, and her next message is under a new session whose key
    // only the laptop gets.
    alice
        .client
        .send_private(user("bob"), "after")
        .await
        .unwrap();
    let warning = alice
        .expect("a notice", |e| match e {
            ClientEvent::Security { message } if message.contains("removed device") => {
                Some(message.clone())
            }
            _ => None,
        })
        .await;
    assert!(warning.contains(phone_id.as_str()), "{warning}");
    let after = alice_watch.next_session_of("alice").await;
    assert_ne!(before, after);
    assert_eq!(laptop.expect_private().await.1, "after");
    let phone = phone.reconnect_later().await;
    let known = sotto_test_support::room_sessions(phone.dir.path(), "pw-bob");
    assert!(
        known.contains(&before) && !known.contains(&after),
        "{known:?}"
    );

    // Its session token no longer works, and its data dir comes back only
    // as a new device (which alice is told about).
    let (_, result) = Raw::try_login_device(
        server.addr,
        "bob",
        phone_id.clone(),
        Credential::Token(phone_token),
        None,
    )
    .await;
    assert_eq!(result.unwrap_err().code, ErrorCode::WrongPassword);
    let phone = phone.connect(server.addr).await;
    assert_ne!(phone.client.session().device_id, phone_id);
    alice
        .client
        .send_private(user("bob"), "to the new one")
        .await
        .unwrap();
    alice
        .expect("a new-device notice", |e| match e {
            ClientEvent::Security { message } if message.contains("new device") => Some(()),
            _ => None,
        })
        .await;
    let mut phone = phone;
    assert_eq!(phone.expect_private().await.1, "to the new one");
}

#[tokio::test]
async fn only_ones_own_existing_devices_can_be_removed() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let alice_device = alice.client.session().device_id.clone();
    for device in [
        alice_device.clone(),
        DeviceId::parse("nosuchdevice").unwrap(),
    ] {
        let err = bob.client.remove_device(&device).await.unwrap_err();
        let ClientError::Server(reply) = err else {
            panic!("expected a refusal, got {err:?}");
        };
        assert_eq!(reply.code, ErrorCode::Invalid);
        assert!(reply.message.contains("no device"), "{}", reply.message);
    }
    // Alice's device is untouched.
    bob.client
        .send_private(user("alice"), "still here?")
        .await
        .unwrap();
    let mut alice = alice;
    assert_eq!(alice.expect_private().await.1, "still here?");
}

#[tokio::test]
async fn a_device_that_removes_itself_is_signed_out_after_the_reply() {
    let server = TestServer::start().await;
    let mut bob = server.client("bob").await;
    let me = bob.client.session().device_id.clone();
    bob.client.remove_device(&me).await.unwrap();
    let reason = bob
        .expect("the disconnection", |e| match e {
            ClientEvent::Disconnected { reason } => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(reason.contains("removed from your account"), "{reason}");
    let again = bob.reconnect_later().await.connect(server.addr).await;
    assert_ne!(again.client.session().device_id, me);
}
