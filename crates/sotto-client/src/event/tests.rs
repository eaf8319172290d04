//! Tests of event decoding: echoes, peers, payload kinds and group notices.

use super::*;

fn u(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn body(room: RoomRef, sender: &str, content: RoomContent) -> EventBody {
    EventBody {
        ts: 42,
        kind: EventKind::Room(RoomEvent {
            room_id: 7,
            room,
            seq: 3,
            sender: u(sender),
            content,
        }),
    }
}

fn envelope(device: &str, message: &MessageBody) -> RoomContent {
    RoomContent::Envelope {
        device: DeviceId::parse(device).unwrap(),
        payload: message.encode().unwrap(),
    }
}

fn text(t: &str) -> MessageBody {
    MessageBody::Text { text: t.into() }
}

fn decode_as(me: &str, device: &str, hide: bool, event: EventBody) -> Decoded {
    let user = u(me);
    let device = DeviceId::parse(device).unwrap();
    decode(
        Me {
            user: &user,
            device: &device,
            hide_own_echo: hide,
        },
        event,
    )
}

const MINE: &str = "devicemine0001";
const OTHER: &str = "deviceother002";

#[test]
fn private_messages_name_the_peer() {
    let direct = RoomRef::Direct {
        users: (u("alice"), u("bob")),
    };
    let got = decode_as(
        "bob",
        MINE,
        true,
        body(direct.clone(), "alice", envelope(OTHER, &text("hi"))),
    );
    let Decoded::Ready(ClientEvent::Private {
        from,
        peer,
        text: t,
        ts,
    }) = got
    else {
        panic!("{got:?}");
    };
    assert_eq!(
        (from, peer, t.as_str(), ts),
        (u("alice"), u("alice"), "hi", 42)
    );

    // My own message from another device: shown, peer is the other party.
    let got = decode_as(
        "alice",
        MINE,
        true,
        body(direct.clone(), "alice", envelope(OTHER, &text("yo"))),
    );
    assert!(
        matches!(got, Decoded::Ready(ClientEvent::Private { ref from, ref peer, .. })
        if *from == u("alice") && *peer == u("bob"))
    );

    // The echo of this device's own message: hidden live, shown in history.
    let echo = body(direct, "alice", envelope(MINE, &text("yo")));
    assert!(matches!(
        decode_as("alice", MINE, true, echo.clone()),
        Decoded::OwnEcho
    ));
    assert!(matches!(
        decode_as("alice", MINE, false, echo),
        Decoded::Ready(_)
    ));
}

#[test]
fn note_to_self_has_me_as_peer() {
    let direct = RoomRef::Direct {
        users: (u("alice"), u("alice")),
    };
    let got = decode_as(
        "alice",
        MINE,
        true,
        body(direct, "alice", envelope(OTHER, &text("memo"))),
    );
    assert!(
        matches!(got, Decoded::Ready(ClientEvent::Private { ref peer, .. }) if *peer == u("alice"))
    );
}

#[test]
fn group_sealed_and_file_payloads() {
    let team = RoomRef::Group {
        name: GroupName::parse("team").unwrap(),
    };
    let got = decode_as(
        "bob",
        MINE,
        true,
        body(team.clone(), "alice", envelope(OTHER, &text("hey"))),
    );
    assert!(matches!(got, Decoded::Ready(ClientEvent::Group { ref text, .. }) if text == "hey"));

    let sealed = SealedBox {
        m_cost: 1,
        t_cost: 1,
        salt: vec![0; 16],
        nonce: vec![0; 24],
        ciphertext: vec![1, 2, 3],
    };
    let got = decode_as(
        "bob",
        MINE,
        true,
        body(
            team.clone(),
            "alice",
            envelope(OTHER, &MessageBody::Sealed(sealed)),
        ),
    );
    assert!(matches!(got, Decoded::Sealed { group: Some(_), .. }));

    let file = MessageBody::File(FileBody {
        name: "a.txt".into(),
        data: b"abc".to_vec(),
    });
    let got = decode_as(
        "bob",
        MINE,
        true,
        body(team, "alice", envelope(OTHER, &file)),
    );
    assert!(matches!(got, Decoded::File { ref file, .. } if file.name == "a.txt"));
}

#[test]
fn garbage_payload_is_reported_not_dropped() {
    let direct = RoomRef::Direct {
        users: (u("alice"), u("bob")),
    };
    let content = RoomContent::Envelope {
        device: DeviceId::parse(OTHER).unwrap(),
        payload: vec![0xc1, 0xff, 0x00],
    };
    let got = decode_as("bob", MINE, true, body(direct, "alice", content));
    assert!(
        matches!(got, Decoded::Ready(ClientEvent::Undecodable { ref from, ts: 42, .. }) if *from == u("alice"))
    );
}

#[test]
fn lobby_text_is_cleaned() {
    let got = decode_as(
        "bob",
        MINE,
        true,
        body(
            RoomRef::Lobby,
            "alice",
            RoomContent::Text {
                text: "hi\u{1b}[2Jthere\n\tok".into(),
            },
        ),
    );
    let Decoded::Ready(event) = got else {
        panic!("expected a lobby event");
    };
    // What reaches the front end.
    assert!(
        matches!(event.sanitized(), ClientEvent::Lobby { ref text, .. } if text == "hi[2Jthere\n\tok")
    );
}

#[test]
fn reasons_and_server_messages_are_one_line_without_bidi_controls() {
    let event = ClientEvent::Undecodable {
        from: u("alice"),
        reason: "unknown variant `x\n[18:49] (private) alice: pay`\u{202E}".into(),
        ts: 1,
    }
    .sanitized();
    assert!(
        matches!(event, ClientEvent::Undecodable { ref reason, .. } if reason == "unknown variant `x [18:49] (private) alice: pay`"),
        "{event:?}"
    );
    let event = ClientEvent::Shutdown {
        message: "bye\n! security: alice is now verified".into(),
    }
    .sanitized();
    assert!(matches!(event, ClientEvent::Shutdown { ref message } if !message.contains('\n')));
}

#[test]
fn group_notices() {
    let team = GroupName::parse("team").unwrap();
    let room = RoomRef::Group { name: team.clone() };
    let notices = RoomRef::Notices { user: u("bob") };
    let cases = [
        (
            room.clone(),
            RoomContent::GroupCreated {
                members: vec![u("bob")],
            },
            ClientEvent::GroupCreated {
                group: team.clone(),
                by: u("alice"),
                members: vec![u("bob")],
            },
        ),
        (
            room.clone(),
            RoomContent::MembersAdded {
                members: vec![u("carol")],
            },
            ClientEvent::MembersAdded {
                group: team.clone(),
                by: u("alice"),
                members: vec![u("carol")],
            },
        ),
        (
            room.clone(),
            RoomContent::MembersKicked {
                members: vec![u("carol")],
            },
            ClientEvent::MembersKicked {
                group: team.clone(),
                by: u("alice"),
                members: vec![u("carol")],
            },
        ),
        (
            room.clone(),
            RoomContent::MemberLeft {
                new_owner: Some(u("bob")),
            },
            ClientEvent::MemberLeft {
                group: team.clone(),
                user: u("alice"),
                new_owner: Some(u("bob")),
            },
        ),
        (
            notices.clone(),
            RoomContent::GroupDeleted {
                group: team.clone(),
            },
            ClientEvent::GroupDeleted {
                group: team.clone(),
                by: u("alice"),
            },
        ),
        (
            notices.clone(),
            RoomContent::RemovedFromGroup {
                group: team.clone(),
            },
            ClientEvent::RemovedFromGroup {
                group: team.clone(),
                by: u("alice"),
            },
        ),
    ];
    for (room, content, expected) in cases {
        match decode_as("bob", MINE, true, body(room, "alice", content)) {
            Decoded::Ready(event) => assert_eq!(event, expected),
            other => panic!("{other:?}"),
        }
    }
    // Content that makes no sense in a room is reported.
    let got = decode_as(
        "bob",
        MINE,
        true,
        body(notices, "alice", RoomContent::Text { text: "x".into() }),
    );
    assert!(matches!(
        got,
        Decoded::Ready(ClientEvent::Undecodable { .. })
    ));
}

#[test]
fn positions() {
    let lobby = body(
        RoomRef::Lobby,
        "alice",
        RoomContent::Text { text: "x".into() },
    );
    assert_eq!(
        Position::of(&lobby),
        Some(Position {
            room_id: 7,
            seq: 3,
            ackable: false
        })
    );
    let notices = body(
        RoomRef::Notices { user: u("bob") },
        "alice",
        RoomContent::Text { text: "x".into() },
    );
    assert!(Position::of(&notices).unwrap().ackable);
    assert_eq!(
        Position::of(&EventBody {
            ts: 0,
            kind: EventKind::CaughtUp
        }),
        None
    );
}
