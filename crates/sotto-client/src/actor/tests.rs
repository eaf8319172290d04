//! Tests of the actor's bookkeeping (acks, de-duplication, echoes, replies,
//! disconnection), driven through its channels with an in-memory pipe as
//! the write half. End-to-end tests against the real server live in the
//! integration test crate.

use bytes::BytesMut;
use sotto_proto::{
    ClientFrame, DeviceId, ErrorCode, ErrorReply, EventBody, EventKind, FileBody, FrameDecoder,
    MessageBody, Request, Response, RoomContent, RoomEvent, RoomRef, SealedBox, ServerFrame,
    Username,
};
use tokio::io::{AsyncReadExt, DuplexStream};
use tokio::sync::{mpsc, oneshot};

use super::*;

const MY_DEVICE: &str = "mydevice00000001";
const OTHER_DEVICE: &str = "otherdevice00002";

fn u(name: &str) -> Username {
    Username::parse(name).unwrap()
}

/// The test's side of an actor: what it feeds in and reads out.
struct Harness {
    ops: mpsc::Sender<Op>,
    frames: mpsc::Sender<Batch>,
    events: mpsc::Receiver<ClientEvent>,
    /// The other end of the actor's write half.
    wire: DuplexStream,
    wire_buf: BytesMut,
    _dir: tempfile::TempDir,
    downloads: PathBuf,
    /// Alice's end-to-end state, shared with the actor.
    crypto: SharedCrypto,
    /// The other devices that send to alice, by (user, device).
    senders: std::sync::Mutex<HashMap<(String, String), sotto_crypto::e2e::E2e>>,
}

async fn start() -> Harness {
    start_in(tempfile::tempdir().unwrap(), HashMap::new()).await
}

/// An actor on the local store in `dir`, with these senders' state.
async fn start_in(
    dir: tempfile::TempDir,
    senders: HashMap<(String, String), sotto_crypto::e2e::E2e>,
) -> Harness {
    let mut h = start_unanswered(dir, senders);
    h.answer_lobby_catch_up(Vec::new(), 0).await;
    h
}

/// An actor whose first request (the lobby catch-up) is not answered yet.
fn start_unanswered(
    dir: tempfile::TempDir,
    senders: HashMap<(String, String), sotto_crypto::e2e::E2e>,
) -> Harness {
    let downloads = dir.path().join("downloads");
    let (writer, wire) = tokio::io::duplex(1 << 20);
    let (ops_tx, ops_rx) = mpsc::channel(8);
    let (frames_tx, frames_rx) = mpsc::channel(8);
    let (events_tx, events_rx) = mpsc::channel(64);
    let (crypto, store) = crate::crypto::Crypto::open(
        &dir.path().join("store.db"),
        "pw-alice",
        &u("alice"),
        &DeviceId::parse(MY_DEVICE).unwrap(),
    )
    .unwrap();
    let crypto: SharedCrypto = crate::crypto::shared(crypto, store);
    let actor = Actor::new(
        u("alice"),
        DeviceId::parse(MY_DEVICE).unwrap(),
        Paths {
            downloads: downloads.clone(),
            device_file: dir.path().join("device"),
        },
        writer,
        ops_rx,
        frames_rx,
        events_tx,
        None,
        crypto.clone(),
    );
    tokio::spawn(actor.run());
    Harness {
        ops: ops_tx,
        frames: frames_tx,
        events: events_rx,
        wire,
        wire_buf: BytesMut::new(),
        _dir: dir,
        downloads,
        crypto,
        senders: std::sync::Mutex::new(senders),
    }
}

impl Harness {
    /// Quits, then starts a new actor on the same local store (as a client
    /// that is started again).
    async fn restart(self) -> Harness {
        let (reply, rx) = oneshot::channel();
        self.ops.send(Op::Quit { reply }).await.unwrap();
        rx.await.unwrap();
        crate::crypto::close(&self.crypto).await.unwrap();
        start_in(self._dir, self.senders.into_inner().unwrap()).await
    }

    /// Like [`Self::restart`], leaving the lobby catch-up unanswered.
    async fn restart_unanswered(self) -> Harness {
        let (reply, rx) = oneshot::channel();
        self.ops.send(Op::Quit { reply }).await.unwrap();
        rx.await.unwrap();
        crate::crypto::close(&self.crypto).await.unwrap();
        start_unanswered(self._dir, self.senders.into_inner().unwrap())
    }

    /// The next frame the actor wrote.
    async fn written(&mut self) -> ClientFrame {
        let decoder = FrameDecoder::default();
        loop {
            if let Some(raw) = decoder.decode(&mut self.wire_buf).unwrap() {
                return ClientFrame::decode(&raw).unwrap();
            }
            let n = self.wire.read_buf(&mut self.wire_buf).await.unwrap();
            assert_ne!(n, 0, "the actor closed its write half");
        }
    }

    /// Answers the lobby catch-up every connection starts with; returns
    /// what it asked for.
    async fn answer_lobby_catch_up(&mut self, events: Vec<EventBody>, missed: u64) -> (u64, u32) {
        let ClientFrame::Request {
            id,
            request: Request::LobbySince { after, limit },
        } = self.written().await
        else {
            panic!("the lobby catch-up comes first");
        };
        self.feed(vec![ServerFrame::Reply {
            id,
            result: Ok(Response::LobbySince { events, missed }),
        }])
        .await;
        (after, limit)
    }

    async fn event(&mut self) -> ClientEvent {
        self.events.recv().await.expect("event stream ended")
    }

    async fn feed(&self, frames: Vec<ServerFrame>) {
        self.frames.send(Ok(frames)).await.unwrap();
    }

    async fn request(&self, request: Request) -> oneshot::Receiver<Result<Response, ClientError>> {
        let (reply, rx) = oneshot::channel();
        self.ops.send(Op::Request { request, reply }).await.unwrap();
        rx
    }
}

/// A room event whose timeline position equals its connection sequence.
fn room_event(
    seq: u64,
    room_id: u64,
    room: RoomRef,
    sender: &str,
    content: RoomContent,
) -> ServerFrame {
    ServerFrame::Event {
        seq,
        body: EventBody {
            ts: 1000 + seq as i64,
            kind: EventKind::Room(RoomEvent {
                room_id,
                room,
                seq,
                sender: u(sender),
                content,
            }),
        },
    }
}

fn direct() -> RoomRef {
    RoomRef::Direct {
        users: (u("alice"), u("bob")),
    }
}

impl Harness {
    /// `body` encrypted by `user`'s `device` for room `room_id`, as it
    /// arrives in an envelope; the sender shares its room key with alice
    /// (over Olm) first.
    fn envelope(&self, user: &str, device: &str, room_id: u64, body: &MessageBody) -> RoomContent {
        use sotto_crypto::e2e::E2e;
        let mut alice = crate::crypto::lock(&self.crypto);
        let payload = if user == "alice" && device == MY_DEVICE {
            let prepared = alice
                .e2e
                .prepare_room(room_id, &Default::default(), &Default::default(), 0)
                .unwrap();
            assert!(prepared.to_share.is_empty());
            alice.e2e.encrypt_room(room_id, 0, body.clone()).unwrap().0
        } else {
            let mut senders = self.senders.lock().unwrap();
            let sender = senders
                .entry((user.to_owned(), device.to_owned()))
                .or_insert_with(|| E2e::new(u(user), DeviceId::parse(device).unwrap()));
            let me = alice.e2e.device_keys();
            let recipients = std::collections::BTreeSet::from([(
                me.user.clone(),
                me.device.clone(),
                me.curve25519,
            )]);
            let prepared = sender
                .prepare_room(room_id, &recipients, &Default::default(), 0)
                .unwrap();
            if !prepared.to_share.is_empty() {
                if !sender.has_olm_session(&me) {
                    let upload = alice.e2e.keys_to_upload(0);
                    alice.e2e.mark_keys_published();
                    sender
                        .start_olm_session(&me, &upload.one_time_keys[0])
                        .unwrap();
                }
                let olm = sender.room_key_for(room_id, &prepared, &me).unwrap();
                alice
                    .e2e
                    .decrypt_to_device(&sender.device_keys(), &olm)
                    .unwrap();
                let shared: Vec<_> = prepared.to_share.clone();
                sender.mark_room_key_shared(room_id, &prepared, &shared);
            }
            sender.encrypt_room(room_id, 0, body.clone()).unwrap().0
        };
        RoomContent::Envelope {
            device: DeviceId::parse(device).unwrap(),
            payload: payload.encode().unwrap(),
        }
    }
}

fn text(t: &str) -> MessageBody {
    MessageBody::Text { text: t.into() }
}

fn lobby(t: &str) -> RoomContent {
    RoomContent::Text { text: t.into() }
}

#[tokio::test]
async fn one_ack_per_room_per_batch_and_none_for_the_lobby() {
    let mut h = start().await;
    h.feed(vec![
        room_event(
            1,
            5,
            direct(),
            "bob",
            h.envelope("bob", OTHER_DEVICE, 5, &text("one")),
        ),
        room_event(2, 1, RoomRef::Lobby, "bob", lobby("hello lobby")),
        room_event(
            3,
            5,
            direct(),
            "bob",
            h.envelope("bob", OTHER_DEVICE, 5, &text("two")),
        ),
        room_event(
            4,
            9,
            RoomRef::Notices { user: u("alice") },
            "bob",
            RoomContent::GroupDeleted {
                group: sotto_proto::GroupName::parse("team").unwrap(),
            },
        ),
    ])
    .await;
    assert!(matches!(h.event().await, ClientEvent::Private { text, .. } if text == "one"));
    assert!(matches!(h.event().await, ClientEvent::Lobby { text, .. } if text == "hello lobby"));
    assert!(matches!(h.event().await, ClientEvent::Private { text, .. } if text == "two"));
    assert!(matches!(h.event().await, ClientEvent::GroupDeleted { .. }));
    // Acks in room order, the highest seq of each room; the lobby (room 1) is not acked.
    assert!(matches!(
        h.written().await,
        ClientFrame::Ack(Ack { room_id: 5, seq: 3 })
    ));
    assert!(matches!(
        h.written().await,
        ClientFrame::Ack(Ack { room_id: 9, seq: 4 })
    ));
}

#[tokio::test]
async fn redelivered_events_are_shown_once() {
    let mut h = start().await;
    h.feed(vec![room_event(
        1,
        5,
        direct(),
        "bob",
        h.envelope("bob", OTHER_DEVICE, 5, &text("once")),
    )])
    .await;
    assert!(matches!(h.event().await, ClientEvent::Private { .. }));
    assert!(matches!(
        h.written().await,
        ClientFrame::Ack(Ack { room_id: 5, seq: 1 })
    ));
    // The same room event again (as after a redelivery), then a new one.
    let mut again = room_event(
        2,
        5,
        direct(),
        "bob",
        h.envelope("bob", OTHER_DEVICE, 5, &text("once")),
    );
    if let ServerFrame::Event { body, .. } = &mut again
        && let EventKind::Room(event) = &mut body.kind
    {
        event.seq = 1;
    }
    h.feed(vec![
        again,
        room_event(
            3,
            5,
            direct(),
            "bob",
            h.envelope("bob", OTHER_DEVICE, 5, &text("new")),
        ),
    ])
    .await;
    assert!(matches!(h.event().await, ClientEvent::Private { text, .. } if text == "new"));
    assert!(matches!(
        h.written().await,
        ClientFrame::Ack(Ack { room_id: 5, seq: 3 })
    ));
}

#[tokio::test]
async fn events_handled_before_a_restart_are_not_shown_again() {
    let mut h = start().await;
    let once = room_event(
        1,
        5,
        direct(),
        "bob",
        h.envelope("bob", OTHER_DEVICE, 5, &text("once")),
    );
    h.feed(vec![once.clone()]).await;
    assert!(matches!(h.event().await, ClientEvent::Private { .. }));
    // Started again: the server resends what it has no ack for (say the
    // client stopped before the ack went out). It was handled: not shown.
    let mut h = h.restart().await;
    let next = h.envelope("bob", OTHER_DEVICE, 5, &text("next"));
    h.feed(vec![once, room_event(2, 5, direct(), "bob", next)])
        .await;
    assert!(matches!(h.event().await, ClientEvent::Private { text, .. } if text == "next"));
    assert!(matches!(
        h.written().await,
        ClientFrame::Ack(Ack { room_id: 5, seq: 2 })
    ));
}

#[tokio::test]
async fn an_acknowledgement_goes_out_only_once_what_it_covers_is_on_disk() {
    let mut h = start().await;
    let first = h.envelope("bob", OTHER_DEVICE, 5, &text("with a new room key"));
    h.feed(vec![room_event(1, 5, direct(), "bob", first)]).await;
    assert!(matches!(h.event().await, ClientEvent::Private { .. }));
    assert!(matches!(
        h.written().await,
        ClientFrame::Ack(Ack { room_id: 5, seq: 1 })
    ));
    // The client is killed now (nothing more saved): what its store holds
    // is the room key and the position the server may now forget.
    let (_, loaded) =
        crate::local_store::LocalStore::open(&h._dir.path().join("store.db"), "pw-alice").unwrap();
    assert_eq!(loaded.positions.get(&5), Some(&1));
    assert!(
        loaded
            .records
            .iter()
            .any(|(key, _)| key.kind == crate::local_store::kind::INBOUND),
        "the room key is not in the store"
    );
}

#[tokio::test]
async fn a_message_the_server_credits_to_another_device_is_refused() {
    let mut h = start().await;
    let mut content = h.envelope("bob", OTHER_DEVICE, 5, &text("from bob's phone"));
    if let RoomContent::Envelope { device, .. } = &mut content {
        *device = DeviceId::parse("bobslaptop000003").unwrap();
    }
    h.feed(vec![room_event(1, 5, direct(), "bob", content)])
        .await;
    let ClientEvent::Undecodable { reason, .. } = h.event().await else {
        panic!("expected a refusal");
    };
    assert!(
        reason.contains("bobslaptop000003") && reason.contains(OTHER_DEVICE),
        "{reason}"
    );
}

#[tokio::test]
async fn own_echo_is_hidden_but_acked_and_other_devices_are_shown() {
    let mut h = start().await;
    h.feed(vec![
        room_event(
            1,
            5,
            direct(),
            "alice",
            h.envelope("alice", MY_DEVICE, 5, &text("from here")),
        ),
        room_event(
            2,
            5,
            direct(),
            "alice",
            h.envelope("alice", OTHER_DEVICE, 5, &text("from my phone")),
        ),
    ])
    .await;
    match h.event().await {
        ClientEvent::Private {
            from, peer, text, ..
        } => {
            assert_eq!(
                (from, peer, text.as_str()),
                (u("alice"), u("bob"), "from my phone")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        h.written().await,
        ClientFrame::Ack(Ack { room_id: 5, seq: 2 })
    ));
}

#[tokio::test]
async fn requests_get_their_replies() {
    let mut h = start().await;
    let ping = h.request(Request::Ping).await;
    let names = h.request(Request::Names).await;
    let ClientFrame::Request {
        id: ping_id,
        request: Request::Ping,
    } = h.written().await
    else {
        panic!("expected ping");
    };
    let ClientFrame::Request { id: names_id, .. } = h.written().await else {
        panic!("expected names");
    };
    // The login used request id 1, the lobby catch-up 2.
    assert_eq!(ping_id, 3);
    assert_ne!(ping_id, names_id);
    // Replies may come in any order.
    h.feed(vec![
        ServerFrame::Reply {
            id: names_id,
            result: Err(ErrorReply::new(ErrorCode::Internal, "nope")),
        },
        ServerFrame::Reply {
            id: ping_id,
            result: Ok(Response::Pong),
        },
    ])
    .await;
    assert!(matches!(ping.await.unwrap(), Ok(Response::Pong)));
    let err = names.await.unwrap().unwrap_err();
    assert_eq!(err.server_code(), Some(ErrorCode::Internal));
}

#[tokio::test]
async fn connection_loss_fails_pending_and_reports_the_reason() {
    let mut h = start().await;
    let ping = h.request(Request::Ping).await;
    let _ = h.written().await;
    h.frames
        .send(Err("connection lost: reset".into()))
        .await
        .unwrap();
    assert!(matches!(
        ping.await.unwrap(),
        Err(ClientError::Disconnected)
    ));
    assert!(
        matches!(h.event().await, ClientEvent::Disconnected { reason } if reason.contains("reset"))
    );
    assert!(
        h.events.recv().await.is_none(),
        "Disconnected is the last event"
    );
}

#[tokio::test]
async fn shutdown_message_becomes_the_disconnect_reason() {
    let mut h = start().await;
    h.feed(vec![ServerFrame::Event {
        seq: 1,
        body: EventBody {
            ts: 0,
            kind: EventKind::Shutdown {
                message: "maintenance".into(),
            },
        },
    }])
    .await;
    assert!(
        matches!(h.event().await, ClientEvent::Shutdown { message } if message == "maintenance")
    );
    drop(h.frames);
    assert!(
        matches!(h.events.recv().await, Some(ClientEvent::Disconnected { reason }) if reason == "the server shut down")
    );
}

#[tokio::test]
async fn sealed_messages_are_numbered_and_kept() {
    let mut h = start().await;
    let sealed = SealedBox {
        m_cost: 8,
        t_cost: 1,
        salt: vec![0; 16],
        nonce: vec![0; 24],
        ciphertext: vec![1; 20],
    };
    let body = MessageBody::Sealed(sealed.clone());
    h.feed(vec![
        room_event(
            1,
            5,
            direct(),
            "bob",
            h.envelope("bob", OTHER_DEVICE, 5, &body),
        ),
        room_event(
            2,
            5,
            direct(),
            "bob",
            h.envelope("bob", OTHER_DEVICE, 5, &body),
        ),
    ])
    .await;
    assert!(matches!(
        h.event().await,
        ClientEvent::Sealed {
            id: 1,
            group: None,
            ..
        }
    ));
    assert!(matches!(h.event().await, ClientEvent::Sealed { id: 2, .. }));
    let (reply, rx) = oneshot::channel();
    h.ops.send(Op::GetSealed { id: 2, reply }).await.unwrap();
    let stored = rx.await.unwrap().unwrap();
    assert_eq!((stored.from, stored.sealed), (u("bob"), sealed));
    let (reply, rx) = oneshot::channel();
    h.ops.send(Op::GetSealed { id: 7, reply }).await.unwrap();
    assert!(matches!(
        rx.await.unwrap(),
        Err(ClientError::NoSuchSealed(7))
    ));
}

#[tokio::test]
async fn files_are_saved_once_and_history_reuses_them() {
    let mut h = start().await;
    let file = MessageBody::File(FileBody {
        name: "../../evil.txt".into(),
        data: b"contents".to_vec(),
    });
    let frame = room_event(
        1,
        5,
        direct(),
        "bob",
        h.envelope("bob", OTHER_DEVICE, 5, &file),
    );
    let ServerFrame::Event {
        body: stored_body, ..
    } = frame.clone()
    else {
        unreachable!()
    };
    h.feed(vec![frame.clone()]).await;
    let ClientEvent::FileOffered {
        id: offer,
        name,
        size,
        from,
        ..
    } = h.event().await
    else {
        panic!("expected a file waiting for an answer");
    };
    assert_eq!((name.as_str(), size, from), ("evil.txt", 8, u("bob")));
    // Nothing is written before the user accepts it.
    assert!(!h.downloads.exists() || std::fs::read_dir(&h.downloads).unwrap().count() == 0);
    let (reply, rx) = oneshot::channel();
    h.ops
        .send(Op::AcceptFile { id: offer, reply })
        .await
        .unwrap();
    let (_, path, _) = rx.await.unwrap().unwrap();
    assert_eq!(path, h.downloads.join("evil.txt"));
    assert_eq!(std::fs::read(&path).unwrap(), b"contents");
    let (reply, rx) = oneshot::channel();
    h.ops
        .send(Op::AcceptFile { id: offer, reply })
        .await
        .unwrap();
    assert!(matches!(rx.await.unwrap(), Err(ClientError::NoSuchFile(_))));

    // History holds the same event plus this device's own message.
    let (reply, rx) = oneshot::channel();
    h.ops
        .send(Op::History {
            limit: 10,
            before: None,
            reply,
        })
        .await
        .unwrap();
    let _ack = h.written().await;
    let ClientFrame::Request {
        id,
        request: Request::History {
            limit: 10,
            before: None,
        },
    } = h.written().await
    else {
        panic!("expected a history request");
    };
    let ServerFrame::Event { body: mine, .. } = room_event(
        2,
        5,
        direct(),
        "alice",
        h.envelope("alice", MY_DEVICE, 5, &text("sent from here")),
    ) else {
        unreachable!()
    };
    h.feed(vec![ServerFrame::Reply {
        id,
        result: Ok(Response::History {
            events: vec![stored_body, mine],
            more: None,
            pruned_before: None,
        }),
    }])
    .await;
    let items = rx.await.unwrap().unwrap();
    assert_eq!(items.len(), 2);
    assert!(matches!(&items[0], ClientEvent::File { path: p, .. } if *p == path));
    assert!(matches!(&items[1], ClientEvent::Private { text, .. } if text == "sent from here"));
    assert_eq!(
        std::fs::read_dir(&h.downloads).unwrap().count(),
        1,
        "not saved twice"
    );
}

#[tokio::test]
async fn quit_closes_the_write_half() {
    let mut h = start().await;
    let (reply, rx) = oneshot::channel();
    h.ops.send(Op::Quit { reply }).await.unwrap();
    rx.await.unwrap();
    let mut rest = Vec::new();
    assert_eq!(h.wire.read_to_end(&mut rest).await.unwrap(), 0);
    assert!(h.events.recv().await.is_none());
    assert!(h.ops.is_closed());
}

#[tokio::test]
async fn history_reads_every_page_the_server_says_there_is() {
    let mut h = start().await;
    let body = |seq: u64, t: &str| {
        let ServerFrame::Event { body, .. } = room_event(seq, 1, RoomRef::Lobby, "bob", lobby(t))
        else {
            unreachable!()
        };
        body
    };
    let (reply, rx) = oneshot::channel();
    h.ops
        .send(Op::History {
            limit: 3,
            before: None,
            reply,
        })
        .await
        .unwrap();
    let ClientFrame::Request {
        id,
        request: Request::History {
            limit: 3,
            before: None,
        },
    } = h.written().await
    else {
        panic!("expected a history request");
    };
    // The newest two fit; the third is on the next page.
    let cursor = sotto_proto::HistoryCursor {
        ts: 1002,
        room_id: 1,
        seq: 2,
    };
    h.feed(vec![ServerFrame::Reply {
        id,
        result: Ok(Response::History {
            events: vec![body(2, "two"), body(3, "three")],
            more: Some(cursor),
            pruned_before: None,
        }),
    }])
    .await;
    let ClientFrame::Request {
        id,
        request:
            Request::History {
                limit: 1,
                before: Some(before),
            },
    } = tokio::time::timeout(std::time::Duration::from_secs(30), h.written())
        .await
        .expect("the actor asks for the next page")
    else {
        panic!("expected the next page");
    };
    assert_eq!(before, cursor);
    h.feed(vec![ServerFrame::Reply {
        id,
        result: Ok(Response::History {
            events: vec![body(1, "one")],
            more: None,
            pruned_before: None,
        }),
    }])
    .await;
    let texts: Vec<String> = rx
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|e| match e {
            ClientEvent::Lobby { text, .. } => text,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(texts, ["one", "two", "three"]);
}

#[tokio::test]
async fn lobby_messages_missed_come_before_live_ones_that_arrive_meanwhile() {
    let mut h = start().await;
    h.feed(vec![room_event(1, 1, RoomRef::Lobby, "bob", lobby("seen"))])
        .await;
    assert!(matches!(h.event().await, ClientEvent::Lobby { text, .. } if text == "seen"));
    let mut h = h.restart_unanswered().await;
    let ClientFrame::Request {
        id,
        request: Request::LobbySince { after, limit },
    } = h.written().await
    else {
        panic!("the lobby catch-up comes first");
    };
    assert_eq!((after, limit), (1, sotto_proto::limits::MAX_LOBBY_CATCH_UP));
    // A live lobby message arrives before the answer.
    h.feed(vec![room_event(
        4,
        1,
        RoomRef::Lobby,
        "carol",
        lobby("live"),
    )])
    .await;
    let body = |seq: u64, text: &str| match room_event(seq, 1, RoomRef::Lobby, "bob", lobby(text)) {
        ServerFrame::Event { body, .. } => body,
        _ => unreachable!(),
    };
    h.feed(vec![ServerFrame::Reply {
        id,
        result: Ok(Response::LobbySince {
            events: vec![body(2, "missed a"), body(3, "missed b")],
            missed: 7,
        }),
    }])
    .await;
    assert!(matches!(
        h.event().await,
        ClientEvent::LobbyMissed { count: 7 }
    ));
    for want in ["missed a", "missed b", "live"] {
        assert!(
            matches!(h.event().await, ClientEvent::Lobby { ref text, .. } if text == want),
            "{want}"
        );
    }
}

#[tokio::test]
async fn a_quiet_connection_is_pinged_and_a_dead_one_noticed() {
    let mut h = start().await;
    tokio::time::pause();
    tokio::time::advance(super::PING_AFTER).await;
    let ClientFrame::Request {
        request: Request::Ping,
        ..
    } = h.written().await
    else {
        panic!("expected a ping");
    };
    // Nothing comes back: the connection is given up on.
    tokio::time::advance(super::PING_PATIENCE).await;
    loop {
        if let ClientEvent::Disconnected { reason } = h.event().await {
            assert!(reason.contains("stopped answering"), "{reason}");
            break;
        }
    }
}

#[tokio::test]
async fn live_lobby_events_wait_for_the_catch_up_only_so_long() {
    let mut h = start().await;
    h.feed(vec![room_event(1, 1, RoomRef::Lobby, "bob", lobby("seen"))])
        .await;
    assert!(matches!(h.event().await, ClientEvent::Lobby { .. }));
    let mut h = h.restart_unanswered().await;
    let ClientFrame::Request {
        request: Request::LobbySince { .. },
        ..
    } = h.written().await
    else {
        panic!("the lobby catch-up comes first");
    };
    // The server never answers; a live lobby message waits...
    h.feed(vec![room_event(
        2,
        1,
        RoomRef::Lobby,
        "carol",
        lobby("held"),
    )])
    .await;
    tokio::time::pause();
    tokio::time::advance(std::time::Duration::from_secs(16)).await;
    // ...until the next one, past the patience: both are shown, in order,
    // after a notice that the missed ones were not fetched.
    h.feed(vec![room_event(
        3,
        1,
        RoomRef::Lobby,
        "carol",
        lobby("next"),
    )])
    .await;
    assert!(
        matches!(h.event().await, ClientEvent::Security { message } if message.contains("@history"))
    );
    for want in ["held", "next"] {
        assert!(
            matches!(h.event().await, ClientEvent::Lobby { ref text, .. } if text == want),
            "{want}"
        );
    }
}

#[tokio::test]
async fn a_file_being_sent_reports_its_progress() {
    let mut h = start().await;
    let payload = vec![7u8; 600 * 1024];
    let (reply, _rx) = oneshot::channel();
    h.ops
        .send(Op::Send {
            request: Request::Once {
                client_id: 1,
                message: sotto_proto::Message::Direct {
                    to: u("bob"),
                    payload,
                    devices: None,
                },
            },
            entry: Box::new(Entry::File {
                from: u("alice"),
                group: None,
                name: "report.pdf".into(),
                path: "/tmp/report.pdf".into(),
                size: 600 * 1024,
            }),
            reply,
        })
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(std::time::Duration::from_secs(20), h.event())
            .await
            .expect("progress reported");
        let ClientEvent::Sending {
            name, sent, total, ..
        } = event
        else {
            continue;
        };
        assert_eq!(name, "report.pdf");
        seen.push(sent);
        if sent == total {
            break;
        }
    }
    assert!(seen.len() >= 3, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
}

#[tokio::test]
async fn a_lobby_line_that_arrives_during_the_first_catch_up_is_shown() {
    // A device that never saw the lobby learns its newest position; a
    // live line held meanwhile that the server already counted is shown.
    let mut h = start_unanswered(tempfile::tempdir().unwrap(), HashMap::new());
    let ClientFrame::Request {
        id,
        request: Request::LobbySince { after: 0, limit: 1 },
    } = h.written().await
    else {
        panic!("the first catch-up only learns the newest position");
    };
    h.feed(vec![room_event(
        7,
        1,
        RoomRef::Lobby,
        "bob",
        lobby("just now"),
    )])
    .await;
    let newest = match room_event(7, 1, RoomRef::Lobby, "bob", lobby("just now")) {
        ServerFrame::Event { body, .. } => body,
        _ => unreachable!(),
    };
    h.feed(vec![ServerFrame::Reply {
        id,
        result: Ok(Response::LobbySince {
            events: vec![newest],
            missed: 6,
        }),
    }])
    .await;
    let event = tokio::time::timeout(std::time::Duration::from_secs(20), h.event())
        .await
        .expect("the held line is shown");
    assert!(matches!(event, ClientEvent::Lobby { text, .. } if text == "just now"));
}
