//! Quotas on what one user can make the server and others store (issue 10,
//! point 3): each refusal is `quota_exceeded`, names the limit, and frees
//! up again once the cause is gone.

use sotto_client::ClientEvent;
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
    let mut bob = server.client("bob").await;
    for name in ["one", "two"] {
        alice
            .client
            .group_create(GroupName::parse(name).unwrap(), vec![user("bob")])
            .await
            .unwrap();
        bob.accept_invitation(name).await;
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
    // An invitation does not count until it is accepted, and accepting
    // counts again.
    alice
        .client
        .group_create(GroupName::parse("four").unwrap(), vec![])
        .await
        .unwrap();
    alice
        .client
        .group_add(GroupName::parse("four").unwrap(), vec![user("bob")])
        .await
        .unwrap();
    bob.accept_invitation("mine").await;
    let accepted = bob
        .client
        .group_accept(GroupName::parse("four").unwrap())
        .await;
    assert!(
        matches!(&accepted, Err(sotto_client::ClientError::Server(e))
            if e.code == ErrorCode::QuotaExceeded && e.message.contains("bob")),
        "{accepted:?}"
    );
}

#[tokio::test]
async fn to_device_messages_are_bounded_per_request_and_per_waiting_queue() {
    let server = TestServer::start_with(|c| {
        c.quotas.to_device_request_bytes = 2_000;
        // Stored sizes include each message's envelope (the sender's keys).
        // One sender may fill a quarter of an inbox.
        c.quotas.inbox_bytes = 16_000;
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
    // Bob is away: alice has her share of his queue. What is over it is
    // left out, and said so; the rest of a request still goes.
    let refused = |result: Result<Response, ErrorReply>| match result {
        Ok(Response::ToDeviceSent { refused }) => refused,
        other => panic!("expected some left out, got {other:?}"),
    };
    let left_out = refused(alice.raw.ask(to_bob(1_200)).await.0);
    assert_eq!(left_out.len(), 1);
    assert_eq!(left_out[0].device, bob_device);
    let carol = device(&server, "carol", "tablet").await;
    let (both, _) = alice
        .raw
        .ask(Request::SendToDevice {
            messages: vec![
                ToDeviceMessage {
                    user: user("bob"),
                    device: bob_device.clone(),
                    payload: vec![7; 1_200],
                },
                ToDeviceMessage {
                    user: user("carol"),
                    device: carol.e2e.device().clone(),
                    payload: vec![7; 100],
                },
            ],
        })
        .await;
    assert_eq!(refused(both).len(), 1, "carol's copy still goes");
    // Others still reach him, until the queue is full.
    let mut full = None;
    for n in 0..8 {
        let mut other = device(&server, &format!("sender{n}"), "phone").await;
        publish(&mut other).await;
        for _ in 0..2 {
            match other.raw.ask(to_bob(1_500)).await.0 {
                Ok(Response::Done) => {}
                other => {
                    full = Some((n, other));
                    break;
                }
            }
        }
        if full.is_some() {
            break;
        }
    }
    let (n, result) = full.expect("the queue fills up");
    assert!(n >= 3, "refused at sender {n}: {result:?}");
    assert_eq!(refused(result).len(), 1);
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
        match alice.raw.ask(to_bob(1_200)).await.0 {
            Ok(Response::Done) => break,
            Ok(Response::ToDeviceSent { .. }) => {
                // The acknowledged messages are pruned at the next cursor
                // write (about once a second).
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the queue never emptied"
                );
                let _ = bob.ask(Request::Ping).await;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn an_address_registers_at_most_so_many_accounts_an_hour() {
    let server = TestServer::start_with(|c| c.quotas.registrations_per_hour = 2).await;
    for name in ["one", "two"] {
        let (_raw, result) = Raw::try_login(
            server.addr,
            name,
            "device1",
            Auth::Password("pw".into()),
            None,
        )
        .await;
        assert!(result.is_ok(), "{result:?}");
    }
    // A name that is taken does not count, nor a login.
    let (_raw, result) = Raw::try_login(
        server.addr,
        "one",
        "device2",
        Auth::Password("pw".into()),
        None,
    )
    .await;
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

fn lobby(text: &str) -> Request {
    Request::SendLobby { text: text.into() }
}

#[tokio::test]
async fn stored_bytes_are_bounded_per_user_and_per_room() {
    let server = TestServer::start_with(|c| {
        c.quotas.stored_bytes_per_user = 10_000;
        c.quotas.stored_bytes_per_room = 16_000;
    })
    .await;
    let mut alice = Raw::login(server.addr, "alice").await;
    let mut bob = Raw::login(server.addr, "bob").await;
    let text = "a".repeat(3_000);
    for _ in 0..3 {
        assert!(alice.ask(lobby(&text)).await.0.is_ok());
    }
    // Alice has about 9,300 bytes stored: one more is over her quota.
    assert!(quota(alice.ask(lobby(&text)).await.0).contains("you sent"));
    // Bob has his own; the room fills up at 16,000.
    assert!(bob.ask(lobby(&text)).await.0.is_ok());
    assert!(bob.ask(lobby(&text)).await.0.is_ok());
    assert!(quota(bob.ask(lobby(&text)).await.0).contains("conversation"));
    // Short ones still fit where they fit.
    assert!(bob.ask(lobby("ok")).await.0.is_ok());
}

#[tokio::test]
async fn to_device_messages_count_against_the_senders_stored_bytes() {
    let server = TestServer::start_with(|c| c.quotas.stored_bytes_per_user = 5_000).await;
    let mut alice = device(&server, "alice", "phone").await;
    publish(&mut alice).await;
    let bob = device(&server, "bob", "laptop").await;
    let to_bob = |size: usize| Request::SendToDevice {
        messages: vec![ToDeviceMessage {
            user: user("bob"),
            device: bob.e2e.device().clone(),
            payload: vec![7; size],
        }],
    };
    assert!(alice.raw.ask(to_bob(4_000)).await.0.is_ok());
    assert!(quota(alice.raw.ask(to_bob(1_500)).await.0).contains("you sent"));
}

fn group_request(kind: &str, members: &[&str]) -> Request {
    let group = GroupName::parse("g").unwrap();
    let members = members.iter().map(|m| user(m)).collect();
    match kind {
        "create" => Request::GroupCreate { group, members },
        "add" => Request::GroupAdd { group, members },
        _ => Request::GroupKick { group, members },
    }
}

#[tokio::test]
async fn invitations_are_bounded_per_request_per_inviter_and_by_unread_notices() {
    let server = TestServer::start_with(|c| c.quotas.notices_bytes = 3_000).await;
    let mut alice = Raw::login(server.addr, "alice").await;
    let bob = Raw::login(server.addr, "bob").await;
    drop(bob);
    // 101 names in one request.
    let names: Vec<String> = (0..101).map(|n| format!("user{n}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (result, _) = alice.ask(group_request("create", &names)).await;
    let e = result.expect_err("refused");
    assert_eq!(e.code, ErrorCode::Invalid, "{e:?}");
    assert!(e.message.contains("100 users"), "{e:?}");
    // Five invitations to bob from alice at once, not six.
    for n in 0..5 {
        let (result, _) = alice
            .ask(Request::GroupCreate {
                group: GroupName::parse(&format!("g{n}")).unwrap(),
                members: vec![user("bob")],
            })
            .await;
        assert!(result.is_ok(), "{result:?}");
    }
    let (result, _) = alice
        .ask(Request::GroupCreate {
            group: GroupName::parse("g5").unwrap(),
            members: vec![user("bob")],
        })
        .await;
    assert!(quota(result).contains("from you"));
    // Inviting and withdrawing over and over while bob is away fills his
    // notices, then stops.
    let mut carol = Raw::login(server.addr, "carol").await;
    let (result, _) = carol.ask(group_request("create", &[])).await;
    assert!(result.is_ok(), "{result:?}");
    let mut refused = None;
    for _ in 0..100 {
        let (result, _) = carol.ask(group_request("add", &["bob"])).await;
        if let Err(e) = result {
            refused = Some(e);
            break;
        }
        let (result, _) = carol.ask(group_request("kick", &["bob"])).await;
        assert!(result.is_ok(), "{result:?}");
    }
    let e = refused.expect("a limit");
    assert_eq!(e.code, ErrorCode::QuotaExceeded, "{e:?}");
    assert!(e.message.contains("unread notices"), "{e:?}");
}

#[tokio::test]
async fn notices_are_deleted_once_every_device_has_them() {
    let mut server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let db = server.db();
    let notices = async || -> i64 {
        db.integer(
            "SELECT COUNT(*) FROM events WHERE room_id IN \
             (SELECT id FROM rooms WHERE kind = 3)",
        )
        .await
    };
    for n in 0..3 {
        alice
            .client
            .group_create(
                GroupName::parse(&format!("g{n}")).unwrap(),
                vec![user("bob")],
            )
            .await
            .unwrap();
        bob.accept_invitation(&format!("g{n}")).await;
    }
    // Bob's client acknowledges what it read; the server writes positions
    // about once a second and deletes what every device of his has.
    let deadline = tokio::time::Instant::now() + sotto_test_support::PATIENCE;
    while notices().await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "notices kept");
        alice.client.names().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // After a restart, notices count on: the next one is shown.
    server.restart().await;
    let alice = alice.reconnect(server.addr).await;
    let mut bob = bob.reconnect(server.addr).await;
    alice
        .client
        .group_create(GroupName::parse("later").unwrap(), vec![user("bob")])
        .await
        .unwrap();
    bob.accept_invitation("later").await;
}

/// A device whose queue is full (away for long, or flooded) does not stop
/// a conversation: the room key to it is left out, the message goes to
/// everyone else, and the device reads it once it is back and asks.
#[tokio::test]
async fn a_full_inbox_does_not_stop_a_conversation_and_its_device_catches_up() {
    let server = TestServer::start_with(|c| c.quotas.inbox_bytes = 8_000).await;
    let alice = server.client("alice").await;
    let mut carol = server.client("carol").await;
    let mut bob = server.client("bob").await;
    let crew = GroupName::parse("crew").unwrap();
    alice
        .client
        .group_create(crew.clone(), vec![user("bob"), user("carol")])
        .await
        .unwrap();
    bob.accept_invitation("crew").await;
    carol.accept_invitation("crew").await;
    let bob_device = bob.client.session().device_id.clone();
    let bob = bob.reconnect_later().await;
    // Strangers fill bob's queue while he is away.
    let mut full = false;
    for n in 0..8 {
        let mut flood = device(&server, &format!("flood{n}"), "phone").await;
        publish(&mut flood).await;
        for _ in 0..4 {
            let (result, _) = flood
                .raw
                .ask(Request::SendToDevice {
                    messages: vec![ToDeviceMessage {
                        user: user("bob"),
                        device: bob_device.clone(),
                        payload: vec![1; 1_500],
                    }],
                })
                .await;
            if matches!(result, Ok(Response::ToDeviceSent { .. })) {
                full = true;
            }
        }
    }
    assert!(full, "the queue filled up");
    // Alice's message still goes; carol reads it; alice is told.
    alice
        .client
        .send_group(crew.clone(), "while bob is away")
        .await
        .unwrap();
    assert_eq!(carol.expect_group().await.2, "while bob is away");
    // Bob comes back, reads his queue (the flood is unreadable), asks for
    // the key and reads the message.
    let mut bob = bob.connect(server.addr).await;
    let got = bob
        .expect("alice's message", |e| match e {
            ClientEvent::Group { text, .. } => Some(text.clone()),
            _ => None,
        })
        .await;
    assert_eq!(got, "while bob is away");
    drop(alice);
}
