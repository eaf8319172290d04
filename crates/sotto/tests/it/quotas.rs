//! Quotas on what one user can make the server and others store (issue 10,
//! point 3): each refusal is `quota_exceeded`, names the limit, and frees
//! up again once the cause is gone.

use sotto_proto::{
    DeviceId, ErrorCode, ErrorReply, GroupName, Request, Response, ToDeviceMessage, Username,
};
use sotto_test_support::TestServer;

use crate::keys::{device, publish};
use crate::raw::{Auth, Raw};

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn quota(result: Result<Response, ErrorReply>) -> String {
    let e = result.expect_err("refused");
    assert_eq!(e.code, ErrorCode::QuotaExceeded, "{e:?}");
    e.message
}

#[tokio::test]
async fn an_account_has_at_most_so_many_devices() {
    let server = TestServer::start_with(|c| c.quotas.devices_per_account = 3).await;
    let mut devices = Vec::new();
    for n in 0..3 {
        let (raw, result) = Raw::try_login(
            server.addr,
            "alice",
            &format!("dev{n}"),
            Auth::Password("pw-alice".into()),
            None,
        )
        .await;
        assert!(result.is_ok(), "{result:?}");
        devices.push(raw);
    }
    let (_raw, result) = Raw::try_login(
        server.addr,
        "alice",
        "dev3",
        Auth::Password("pw-alice".into()),
        None,
    )
    .await;
    assert!(quota(result).contains("@devices remove"));
    // An existing device still logs in; removing one makes room.
    let (_raw, result) = Raw::try_login(
        server.addr,
        "alice",
        "dev0",
        Auth::Password("pw-alice".into()),
        None,
    )
    .await;
    assert!(result.is_ok(), "{result:?}");
    let (result, _) = devices[0]
        .ask(Request::RemoveDevice {
            device: DeviceId::parse("dev2-alice").unwrap(),
        })
        .await;
    assert!(result.is_ok(), "{result:?}");
    let (_raw, result) = Raw::try_login(
        server.addr,
        "alice",
        "dev3",
        Auth::Password("pw-alice".into()),
        None,
    )
    .await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn a_user_is_in_at_most_so_many_groups() {
    let server = TestServer::start_with(|c| c.quotas.groups_per_user = 2).await;
    let alice = server.client("alice").await;
    let carol = server.client("carol").await;
    let _bob = server.client("bob").await;
    for name in ["one", "two"] {
        alice
            .client
            .group_create(GroupName::parse(name).unwrap(), vec![user("bob")])
            .await
            .unwrap();
    }
    // Alice (the owner) is at the limit, and so is bob.
    let third = alice
        .client
        .group_create(GroupName::parse("three").unwrap(), vec![])
        .await;
    assert!(
        matches!(&third, Err(sotto_client::ClientError::Server(e))
            if e.code == ErrorCode::QuotaExceeded && e.message.contains("alice")),
        "{third:?}"
    );
    carol
        .client
        .group_create(GroupName::parse("mine").unwrap(), vec![])
        .await
        .unwrap();
    let added = carol
        .client
        .group_add(GroupName::parse("mine").unwrap(), vec![user("bob")])
        .await;
    assert!(
        matches!(&added, Err(sotto_client::ClientError::Server(e))
            if e.code == ErrorCode::QuotaExceeded && e.message.contains("bob")),
        "{added:?}"
    );
    // Leaving one makes room.
    alice
        .client
        .group_delete(GroupName::parse("one").unwrap())
        .await
        .unwrap();
    carol
        .client
        .group_add(GroupName::parse("mine").unwrap(), vec![user("bob")])
        .await
        .unwrap();
}

#[tokio::test]
async fn to_device_messages_are_bounded_per_request_and_per_waiting_queue() {
    let server = TestServer::start_with(|c| {
        c.quotas.to_device_request_bytes = 2_000;
        c.quotas.inbox_bytes = 3_000;
    })
    .await;
    let mut alice = device(&server, "alice", "phone").await;
    publish(&mut alice).await;
    let bob = device(&server, "bob", "laptop").await;
    let bob_device = bob.e2e.device().clone();
    drop(bob);
    let to_bob = |size: usize| Request::SendToDevice {
        messages: vec![ToDeviceMessage {
            user: user("bob"),
            device: bob_device.clone(),
            payload: vec![7; size],
        }],
    };
    assert!(quota(alice.raw.ask(to_bob(2_001)).await.0).contains("per request"));
    assert!(alice.raw.ask(to_bob(1_500)).await.0.is_ok());
    assert!(alice.raw.ask(to_bob(1_400)).await.0.is_ok());
    // Bob is away: his queue is full.
    assert!(quota(alice.raw.ask(to_bob(200)).await.0).contains("waiting"));
    // Once bob has read them (and acknowledged), there is room again.
    let mut bob = Raw::try_login_device(
        server.addr,
        "bob",
        bob_device.clone(),
        Auth::Password("pw-bob".into()),
        None,
    )
    .await
    .0;
    let mut acked = 0;
    while acked < 2 {
        let event = bob.next_envelope_event().await;
        bob.send(sotto_proto::ClientFrame::Ack(sotto_proto::Ack {
            room_id: event.room_id,
            seq: event.seq,
        }))
        .await;
        acked += 1;
    }
    let deadline = tokio::time::Instant::now() + sotto_test_support::PATIENCE;
    loop {
        match alice.raw.ask(to_bob(200)).await.0 {
            Ok(_) => break,
            Err(e) if e.code == ErrorCode::QuotaExceeded => {
                // The acknowledged messages are pruned at the next cursor
                // write (about once a second).
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the queue never emptied"
                );
                let _ = bob.ask(Request::Ping).await;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[tokio::test]
async fn an_address_registers_at_most_so_many_accounts_an_hour() {
    let server = TestServer::start_with(|c| c.quotas.registrations_per_hour = 2).await;
    for name in ["one", "two"] {
        let (_raw, result) =
            Raw::try_login(server.addr, name, "device1", Auth::Password("pw".into()), None).await;
        assert!(result.is_ok(), "{result:?}");
    }
    // A name that is taken does not count, nor a login.
    let (_raw, result) =
        Raw::try_login(server.addr, "one", "device2", Auth::Password("pw".into()), None).await;
    assert!(result.is_ok(), "{result:?}");
    let (_raw, result) = Raw::try_login(
        server.addr,
        "three",
        "d1",
        Auth::Password("pw".into()),
        None,
    )
    .await;
    assert!(quota(result).contains("an hour"));
    // Another address may.
    let (_raw, result) = Raw::try_login_from(
        server.addr,
        Some("127.0.0.2".parse().unwrap()),
        "three",
        DeviceId::parse("device1-three").unwrap(),
        Auth::Password("pw".into()),
        None,
    )
    .await;
    assert!(result.is_ok(), "{result:?}");
}
