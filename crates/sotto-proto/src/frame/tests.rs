//! Codec tests: round trips, table-driven malformed input, and properties.

use bytes::{BufMut, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::messages::*;
use crate::names::*;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn sample_requests() -> Vec<Request> {
    vec![
        Request::Login(Login {
            user: user("alice"),
            credential: Credential::Opaque(OpaqueMessage(vec![7; 96])),
            device_id: DeviceId::parse("device0001").unwrap(),
            server_password: Some(Password::new("sp".into()).unwrap()),
        }),
        Request::Login(Login {
            user: user("alice"),
            credential: Credential::LegacyPassword(Password::new("pw".into()).unwrap()),
            device_id: DeviceId::parse("device0001").unwrap(),
            server_password: None,
        }),
        Request::LoginFinish {
            message: OpaqueMessage(vec![1, 2, 3]),
        },
        Request::PasswordStart {
            old: None,
            new: OpaqueMessage(vec![4; 32]),
        },
        Request::PasswordFinish {
            old: Some(OpaqueMessage(vec![5; 64])),
            new: OpaqueMessage(vec![6; 192]),
        },
        Request::SendLobby {
            text: "hi ✓".into(),
        },
        Request::SendDirect {
            to: user("bob"),
            payload: vec![0, 1, 2, 255],
        },
        Request::GroupCreate {
            group: GroupName::parse("team").unwrap(),
            members: vec![user("bob"), user("carol")],
        },
        Request::SetStatus {
            status: Status::Dnd,
        },
        Request::History {
            limit: 10,
            before: None,
        },
        Request::Names,
    ]
}

fn roundtrip_client(frame: &ClientFrame) -> ClientFrame {
    let mut buf = BytesMut::new();
    frame.encode(&mut buf).unwrap();
    let raw = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty(), "decoder must consume exactly one frame");
    ClientFrame::decode(&raw).unwrap()
}

#[test]
fn requests_round_trip() {
    for (i, request) in sample_requests().into_iter().enumerate() {
        let frame = ClientFrame::Request {
            id: i as u64,
            request,
        };
        let back = roundtrip_client(&frame);
        assert_eq!(format!("{frame:?}"), format!("{back:?}"));
    }
}

#[test]
fn events_round_trip_through_shared_bytes() {
    let body = EventBody {
        ts: 1_700_000_000_000,
        kind: EventKind::Room(RoomEvent {
            room_id: 7,
            room: RoomRef::Direct {
                users: (user("alice"), user("bob")),
            },
            seq: 3,
            sender: user("alice"),
            content: RoomContent::Envelope {
                device: DeviceId::parse("device0001").unwrap(),
                payload: vec![9; 100],
            },
        }),
    };
    let shared = SharedEvent::encode(&body).unwrap();
    let mut buf = BytesMut::new();
    write_event(&mut buf, 42, &shared).unwrap();
    write_event(&mut buf, 43, &shared).unwrap();
    let decoder = FrameDecoder::default();
    for expected_seq in [42, 43] {
        let raw = decoder.decode(&mut buf).unwrap().unwrap();
        match ServerFrame::decode(&raw).unwrap() {
            ServerFrame::Event { seq, body: back } => {
                assert_eq!(seq, expected_seq);
                assert_eq!(back, body);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn replies_round_trip() {
    let frame = ServerFrame::Reply {
        id: 5,
        result: Err(ErrorReply::new(ErrorCode::UnknownUser, "no such user: zed")),
    };
    let mut buf = BytesMut::new();
    frame.encode(&mut buf).unwrap();
    let raw = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
    match ServerFrame::decode(&raw).unwrap() {
        ServerFrame::Reply {
            id: 5,
            result: Err(e),
        } => assert_eq!(e.code, ErrorCode::UnknownUser),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn partial_frames_wait_for_more_bytes() {
    let mut full = BytesMut::new();
    ClientFrame::Request {
        id: 1,
        request: Request::Names,
    }
    .encode(&mut full)
    .unwrap();
    let decoder = FrameDecoder::default();
    for cut in 0..full.len() {
        let mut partial = BytesMut::from(&full[..cut]);
        assert_eq!(decoder.decode(&mut partial), Ok(None), "cut at {cut}");
        assert_eq!(partial.len(), cut, "nothing consumed");
    }
}

#[test]
fn malformed_frames_are_rejected() {
    let decoder = FrameDecoder::new(1024);
    // (bytes, expected error) for framing errors.
    let cases: Vec<(Vec<u8>, FrameError)> = vec![
        (vec![0, 0, 0, 0], FrameError::Empty),
        (
            vec![0, 0, 4, 1],
            FrameError::TooLarge {
                len: 1025,
                max: 1024,
            },
        ),
        (
            vec![0xff, 0xff, 0xff, 0xff],
            FrameError::TooLarge {
                len: u32::MAX as usize,
                max: 1024,
            },
        ),
        (vec![0, 0, 0, 1, 99], FrameError::UnknownKind(99)),
    ];
    for (bytes, expected) in cases {
        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(decoder.decode(&mut buf), Err(expected), "{bytes:?}");
    }
}

#[test]
fn malformed_bodies_are_rejected() {
    let decode = |kind: u8, body: &[u8]| {
        let mut buf = BytesMut::new();
        buf.put_u32(body.len() as u32 + 1);
        buf.put_u8(kind);
        buf.extend_from_slice(body);
        let raw = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        ClientFrame::decode(&raw)
    };
    // Request too short for its id.
    assert_eq!(decode(3, &[1, 2]).unwrap_err(), DecodeError::Truncated);
    // Request id readable, body garbage: the id is reported so it can be answered.
    match decode(3, &[0, 0, 0, 0, 0, 0, 0, 9, 0xc1]).unwrap_err() {
        DecodeError::Malformed { request_id, .. } => assert_eq!(request_id, Some(9)),
        other => panic!("unexpected {other:?}"),
    }
    // A server-only kind sent by a client.
    assert!(matches!(
        decode(5, &[0; 9]),
        Err(DecodeError::WrongDirection(_))
    ));
    // Invalid UTF-8 in lobby text.
    let mut body = vec![0, 0, 0, 0, 0, 0, 0, 1];
    let good = rmp_serde::to_vec(&Request::SendLobby { text: "ab".into() }).unwrap();
    let pos = good.windows(2).position(|w| w == b"ab").unwrap();
    let mut bad = good.clone();
    bad[pos] = 0xff;
    body.extend_from_slice(&bad);
    assert!(matches!(
        decode(3, &body),
        Err(DecodeError::Malformed { .. })
    ));
    // An invalid username inside an otherwise valid request.
    let mut body = vec![0, 0, 0, 0, 0, 0, 0, 2];
    let good = rmp_serde::to_vec(&Request::GroupLeave {
        group: GroupName::parse("abc").unwrap(),
    })
    .unwrap();
    let pos = good.windows(3).position(|w| w == b"abc").unwrap();
    let mut bad = good.clone();
    bad[pos] = b'!';
    body.extend_from_slice(&bad);
    assert!(matches!(
        decode(3, &body),
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
fn encoding_refuses_oversize_frames() {
    let frame = ClientFrame::Request {
        id: 1,
        request: Request::SendDirect {
            to: user("bob"),
            payload: vec![0; crate::limits::MAX_FRAME_LEN + 1],
        },
    };
    let mut buf = BytesMut::new();
    assert!(matches!(
        frame.encode(&mut buf),
        Err(EncodeError::TooLarge { .. })
    ));
    assert!(buf.is_empty(), "a failed encode leaves nothing behind");
}

#[test]
fn a_reply_too_large_to_frame_becomes_an_error_reply_to_the_same_request() {
    let mut buf = BytesMut::new();
    buf.put_slice(b"earlier");
    let huge = Response::Groups {
        // About 13 MiB.
        groups: (0..6_000)
            .map(|n| GroupInfo {
                name: GroupName::parse(&format!("g{n}")).unwrap(),
                room_id: n,
                owner: user("alice"),
                members: vec![user("bobbybobby"); 200],
                member_count: 200,
                invited: Vec::new(),
            })
            .collect(),
        invitations: Vec::new(),
    };
    let result = encode_reply(&mut buf, 7, Ok(huge));
    assert!(
        matches!(result, Err(EncodeError::TooLarge { .. })),
        "{result:?}"
    );
    assert_eq!(&buf[..7], b"earlier", "what was before is kept");
    let mut rest = buf.split_off(7);
    let raw = FrameDecoder::default().decode(&mut rest).unwrap().unwrap();
    let ServerFrame::Reply {
        id: 7,
        result: Err(e),
    } = ServerFrame::decode(&raw).unwrap()
    else {
        panic!("expected an error reply to request 7");
    };
    assert_eq!(e.code, ErrorCode::Internal);
    assert!(
        e.message.contains("could not send its answer"),
        "{}",
        e.message
    );
    assert!(rest.is_empty());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let decoder = FrameDecoder::new(256);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(raw)) = decoder.decode(&mut buf) {
            let _ = ClientFrame::decode(&raw);
            let _ = ServerFrame::decode(&raw);
        }
    }

    #[test]
    fn arbitrary_bodies_never_panic(kind in 1u8..=6, body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let raw = RawFrame { kind: FrameKind::from_byte(kind).unwrap(), body: body.into() };
        let _ = ClientFrame::decode(&raw);
        let _ = ServerFrame::decode(&raw);
        let _ = crate::body::MessageBody::decode(&raw.body);
    }

    #[test]
    fn lobby_text_round_trips(id in any::<u64>(), text in ".{0,200}") {
        let frame = ClientFrame::Request { id, request: Request::SendLobby { text: text.clone() } };
        match roundtrip_client(&frame) {
            ClientFrame::Request { id: back_id, request: Request::SendLobby { text: back } } => {
                prop_assert_eq!(back_id, id);
                prop_assert_eq!(back, text);
            }
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn bodies_round_trip(text in ".{0,100}", data in proptest::collection::vec(any::<u8>(), 0..100)) {
        for body in [
            crate::body::MessageBody::Text { text: text.clone() },
            crate::body::MessageBody::File(crate::body::FileBody { name: text.clone(), data: data.clone() }),
        ] {
            let bytes = body.encode().unwrap();
            prop_assert_eq!(crate::body::MessageBody::decode(&bytes).unwrap(), body);
        }
    }
}
