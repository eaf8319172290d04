//! Bad input of every kind gets an error or a closed connection for that
//! client only; everyone else keeps chatting and nothing is lost.

use bytes::{BufMut, BytesMut};
use sotto_proto::limits::{MAX_FRAME_LEN, MAX_PRELOGIN_FRAME_LEN, MAX_TEXT_LEN};
use sotto_proto::{ClientFrame, ErrorCode, Hello, Request, Response, ServerFrame, Username};
use sotto_test_support::{TestClient, TestServer};
use tokio::io::AsyncWriteExt;

use crate::raw::Raw;

/// Bystanders still exchange messages.
async fn still_serving(alice: &TestClient, bob: &mut TestClient, text: &str) {
    alice
        .client
        .send_private(Username::parse("bob").unwrap(), text)
        .await
        .unwrap();
    assert_eq!(bob.expect_private().await.1, text);
}

#[tokio::test]
async fn garbage_and_non_tls_clients_only_hurt_themselves() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;

    // Plain text instead of TLS.
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let _ = tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(
        sotto_test_support::PATIENCE,
        tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut sink),
    )
    .await;
    still_serving(&alice, &mut bob, "after plain text").await;

    // TLS, then random bytes instead of a hello.
    let mut raw = Raw::connect(server.addr).await;
    raw.send_bytes(&[0, 0, 0, 5, 1, 0xde, 0xad, 0xbe, 0xef])
        .await;
    raw.closed().await;
    still_serving(&alice, &mut bob, "after garbage hello").await;

    // A frame kind that does not exist.
    let mut raw = Raw::connect(server.addr).await;
    raw.send_bytes(&[0, 0, 0, 1, 99]).await;
    raw.closed().await;

    // An oversize frame is refused before login from its length alone.
    let mut raw = Raw::connect(server.addr).await;
    raw.send_bytes(&((MAX_PRELOGIN_FRAME_LEN + 1) as u32).to_be_bytes())
        .await;
    match raw.reply().await {
        Some((0, Err(e))) => assert_eq!(e.code, ErrorCode::BadRequest),
        other => panic!("expected an error, got {other:?}"),
    }
    raw.closed().await;

    // A truncated frame, then the client goes away.
    let mut raw = Raw::connect(server.addr).await;
    raw.send_bytes(&[0, 0, 1, 0, 1, 2, 3]).await;
    drop(raw);
    still_serving(&alice, &mut bob, "after truncated frame").await;
}

#[tokio::test]
async fn old_clients_are_told_to_upgrade() {
    let server = TestServer::start().await;
    let mut raw = Raw::connect(server.addr).await;
    let reply = raw.hello(999).await;
    let err = reply.result.unwrap_err();
    assert_eq!(err.code, ErrorCode::UnsupportedVersion);
    assert!(err.message.contains("please upgrade"), "{}", err.message);
    raw.closed().await;
}

#[tokio::test]
async fn malformed_requests_get_errors_and_the_session_goes_on() {
    let server = TestServer::start().await;
    let mut raw = Raw::login(server.addr, "mallory").await;
    let mut bob = server.client("bob").await;

    // Invalid UTF-8 in lobby text: the id is still answered.
    let mut body = BytesMut::new();
    ClientFrame::Request {
        id: 77,
        request: Request::SendLobby { text: "ab".into() },
    }
    .encode(&mut body)
    .unwrap();
    let pos = body.windows(2).position(|w| w == b"ab").unwrap();
    body[pos] = 0xff;
    raw.send_bytes(&body).await;
    match raw.reply().await {
        Some((77, Err(e))) => assert_eq!(e.code, ErrorCode::BadRequest),
        other => panic!("unexpected {other:?}"),
    }

    // A request that needs a session sent twice as hello.
    raw.send(ClientFrame::Hello(Hello {
        version: 1,
        client: "again".into(),
    }))
    .await;
    assert!(matches!(raw.reply().await, Some((0, Err(_)))));

    // Too long, empty, unknown recipient.
    let id = raw
        .request(Request::SendLobby {
            text: "x".repeat(MAX_TEXT_LEN + 1),
        })
        .await;
    let (rid, result) = raw.reply().await.unwrap();
    assert_eq!(rid, id);
    let e = result.unwrap_err();
    assert_eq!(e.code, ErrorCode::MessageTooLong);
    assert!(
        e.message.contains(&MAX_TEXT_LEN.to_string()),
        "{}",
        e.message
    );
    raw.request(Request::SendLobby { text: "   ".into() }).await;
    assert_eq!(
        raw.reply().await.unwrap().1.unwrap_err().code,
        ErrorCode::EmptyMessage
    );
    raw.request(Request::SendDirect {
        to: Username::parse("nobody").unwrap(),
        payload: vec![1],
    })
    .await;
    assert_eq!(
        raw.reply().await.unwrap().1.unwrap_err().code,
        ErrorCode::UnknownUser
    );
    raw.request(Request::SendDirect {
        to: Username::parse("bob").unwrap(),
        payload: vec![],
    })
    .await;
    assert_eq!(
        raw.reply().await.unwrap().1.unwrap_err().code,
        ErrorCode::EmptyMessage
    );
    raw.request(Request::History {
        limit: 0,
        before: None,
    })
    .await;
    assert_eq!(
        raw.reply().await.unwrap().1.unwrap_err().code,
        ErrorCode::Invalid
    );

    // Still logged in and working.
    raw.request(Request::SendLobby {
        text: "still here".into(),
    })
    .await;
    assert!(matches!(
        raw.reply().await,
        Some((_, Ok(Response::Sent { .. })))
    ));
    assert_eq!(bob.expect_lobby().await.1, "still here");

    // An oversize frame after login closes only this connection.
    let mut huge = BytesMut::new();
    huge.put_u32((MAX_FRAME_LEN + 1) as u32);
    raw.send_bytes(&huge).await;
    raw.closed().await;
    let alice = server.client("alice").await;
    still_serving(&alice, &mut bob, "after oversize").await;
}

#[tokio::test]
async fn requests_before_login_are_refused() {
    let server = TestServer::start().await;
    let mut raw = Raw::connect(server.addr).await;
    assert!(
        raw.hello(sotto_proto::PROTOCOL_VERSION)
            .await
            .result
            .is_ok()
    );
    raw.request(Request::Names).await;
    assert_eq!(
        raw.reply().await.unwrap().1.unwrap_err().code,
        ErrorCode::NotLoggedIn
    );
}

#[tokio::test]
async fn a_request_flood_is_rate_limited() {
    let server = TestServer::start_with(|c| {
        c.requests_per_second = 10;
        c.request_burst = 20;
    })
    .await;
    let mut raw = Raw::login(server.addr, "flooder").await;
    let mut batch = BytesMut::new();
    for id in 1000..1100u64 {
        ClientFrame::Request {
            id,
            request: Request::Ping,
        }
        .encode(&mut batch)
        .unwrap();
    }
    raw.send_bytes(&batch).await;
    let mut limited = 0;
    for _ in 0..100 {
        match raw.recv().await.expect("a reply per request") {
            ServerFrame::Reply { result: Err(e), .. } => {
                assert_eq!(e.code, ErrorCode::RateLimited);
                limited += 1;
            }
            ServerFrame::Reply { result: Ok(_), .. } => {}
            _ => {}
        }
    }
    assert!(limited >= 50, "only {limited} of 100 requests were limited");
    // Others are unaffected.
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    still_serving(&alice, &mut bob, "after flood").await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_without_loss() {
    let server = TestServer::start_with(|c| {
        c.outbound_buffer = 256 * 1024;
        c.requests_per_second = 100_000;
        c.request_burst = 100_000;
    })
    .await;
    // The stalled client logs in and then stops reading.
    let mut stalled = Raw::login_with(server.addr, "sleepy", Some(4096)).await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let text = "y".repeat(MAX_TEXT_LEN - 16);
    // More than socket buffers and the queue can hold.
    const COUNT: u32 = 3000;
    for chunk in 0..COUNT / 50 {
        let mut sends = tokio::task::JoinSet::new();
        for i in chunk * 50..(chunk + 1) * 50 {
            let (client, text) = (alice.client.clone(), format!("{i:04} {text}"));
            sends.spawn(async move {
                client
                    .send_private(Username::parse("sleepy").unwrap(), &text)
                    .await
            });
        }
        while let Some(sent) = sends.join_next().await {
            sent.unwrap().unwrap();
        }
    }
    // Bob is unaffected, and the server has cut the stalled client off.
    still_serving(&alice, &mut bob, "while sleepy sleeps").await;
    stalled.closed().await;
    // Everything reaches the same device at its next login, each message
    // once and in order. (The messages are end-to-end encrypted to
    // devices with published keys, which this raw device never had: what
    // is checked here is that the server delivers every one.)
    let mut sleepy = Raw::login_with(server.addr, "sleepy", None).await;
    let mut seqs = Vec::new();
    while seqs.len() < COUNT as usize {
        match sleepy.recv().await.expect("backlog arrives") {
            sotto_proto::ServerFrame::Event {
                body:
                    sotto_proto::EventBody {
                        kind: sotto_proto::EventKind::Room(event),
                        ..
                    },
                ..
            } if matches!(event.room, sotto_proto::RoomRef::Direct { .. }) => seqs.push(event.seq),
            _ => {}
        }
    }
    assert_eq!(seqs, (1..=u64::from(COUNT)).collect::<Vec<_>>());
}
