//! Reconnecting (issue 11): a client whose server went away dials again by
//! itself on its session token; what was sent while it was away goes once
//! it is back, and nothing arrives twice.

use sotto_client::ClientEvent;
use sotto_proto::{Message, Request, Response, RoomContent, Status, Username};
use sotto_test_support::{TestClient, TestServer};

use crate::raw::Raw;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

async fn reconnected(client: &mut TestClient) {
    client
        .expect("reconnected", |e| {
            matches!(e, ClientEvent::Reconnected { .. }).then_some(())
        })
        .await;
}

async fn reconnecting(client: &mut TestClient) -> String {
    client
        .expect("reconnecting", |e| match e {
            ClientEvent::Reconnecting { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .await
}

/// The next private message `client` reads; every private message it
/// reads is in `seen`, so a second copy of one fails.
async fn next_private(client: &mut TestClient, seen: &mut Vec<String>) -> String {
    let (_, text) = client.expect_private().await;
    assert!(!seen.contains(&text), "{text:?} arrived twice: {seen:?}");
    seen.push(text.clone());
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reconnect_after_a_server_restart_and_messages_sent_meanwhile_go_once() {
    let mut server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let mut bob_saw = Vec::new();
    alice
        .client
        .send_private(user("bob"), "before")
        .await
        .unwrap();
    assert_eq!(next_private(&mut bob, &mut bob_saw).await, "before");
    alice.client.set_status(Status::Away).await.unwrap();

    server.stop().await;
    let reason = reconnecting(&mut alice).await;
    assert!(reason.contains("shut down"), "{reason}");
    reconnecting(&mut bob).await;

    // Sent while there is no server: it waits for the next connection.
    let sender = alice.client.clone();
    let waiting = tokio::spawn(async move {
        let private = sender.send_private(user("bob"), "while away").await;
        let lobby = sender.send_lobby("lobby while away").await;
        (private, lobby)
    });
    assert!(!waiting.is_finished());

    server.restart().await;
    reconnected(&mut alice).await;
    reconnected(&mut bob).await;
    let (private, lobby) = waiting.await.unwrap();
    private.expect("the private message is sent after reconnecting");
    lobby.expect("the lobby message is sent after reconnecting");
    assert_eq!(next_private(&mut bob, &mut bob_saw).await, "while away");
    // The status she set is hers again on the new connection.
    assert_eq!(alice.client.status().await.unwrap(), Status::Away);

    // Both ways, after the restart.
    bob.client
        .send_private(user("alice"), "back")
        .await
        .unwrap();
    let (_, text) = alice.expect_private().await;
    assert_eq!(text, "back");
    // Per-recipient order: had anything come twice, it would come before this.
    alice
        .client
        .send_private(user("bob"), "marker")
        .await
        .unwrap();
    assert_eq!(next_private(&mut bob, &mut bob_saw).await, "marker");
    assert_eq!(bob_saw, ["before", "while away", "marker"]);

    // Another restart: Alice's client asks for the lobby lines it missed,
    // which include her own (the lobby names no sending device); it shows
    // her none of them again.
    server.restart().await;
    reconnected(&mut alice).await;
    reconnected(&mut bob).await;
    bob.client.send_lobby("lobby marker").await.unwrap();
    let mut before_marker = Vec::new();
    alice
        .expect("the lobby marker", |e| match e {
            ClientEvent::Lobby { text, .. } if text == "lobby marker" => Some(()),
            other => {
                before_marker.push(other.clone());
                None
            }
        })
        .await;
    assert!(
        !before_marker
            .iter()
            .any(|e| matches!(e, ClientEvent::Lobby { .. })),
        "{before_marker:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_again_under_its_id_is_stored_once_also_after_a_restart() {
    let mut server = TestServer::start().await;
    let once = |text: &str| Request::Once {
        client_id: 0xfeed_f00d,
        message: Message::Lobby { text: text.into() },
    };
    let first = {
        let mut alice = Raw::login(server.addr, "alice").await;
        let (first, _) = alice.ask(once("hello")).await;
        let (again, _) = alice.ask(once("hello")).await;
        assert_eq!(format!("{first:?}"), format!("{again:?}"));
        first.unwrap()
    };
    let Response::Sent { seq, .. } = first else {
        panic!("{first:?}");
    };
    server.restart().await;
    let mut alice = Raw::login(server.addr, "alice").await;
    let (after, _) = alice.ask(once("hello")).await;
    let Ok(Response::Sent { seq: after_seq, .. }) = after else {
        panic!("{after:?}");
    };
    assert_eq!(after_seq, seq, "stored again after a restart");
    // Another id is another message.
    let (other, _) = alice
        .ask(Request::Once {
            client_id: 1,
            message: Message::Lobby {
                text: "world".into(),
            },
        })
        .await;
    let Ok(Response::Sent { seq: other_seq, .. }) = other else {
        panic!("{other:?}");
    };
    assert_eq!(other_seq, seq + 1);
    // The lobby as stored: "hello" once, then "world".
    let mut bob = Raw::login(server.addr, "bob").await;
    let (history, _) = bob
        .ask(Request::History {
            limit: 10,
            before: None,
        })
        .await;
    let Ok(Response::History { events, .. }) = history else {
        panic!("{history:?}");
    };
    let texts: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            sotto_proto::EventKind::Room(room) => match &room.content {
                RoomContent::Text { text } => Some(text.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["hello", "world"]);
}

/// A TCP relay between a client and the server that can hold back the
/// server's bytes on the current connection and cut it: a reply that never
/// arrives. Connections after a cut are relayed as they come.
struct Relay {
    addr: std::net::SocketAddr,
    /// The connection (by number) whose server bytes are held back.
    hold: tokio::sync::watch::Sender<Option<u64>>,
    /// Connections numbered below this are cut.
    cut: tokio::sync::watch::Sender<u64>,
}

impl Relay {
    async fn start(server: std::net::SocketAddr) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (hold, holding) = tokio::sync::watch::channel(None);
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        tokio::spawn(async move {
            loop {
                let (client, _) = listener.accept().await.unwrap();
                let upstream = tokio::net::TcpStream::connect(server).await.unwrap();
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = upstream.into_split();
                let (mut holding, mut cuts) = (holding.clone(), cuts.clone());
                let number = *cuts.borrow_and_update();
                tokio::spawn(async move {
                    let up = tokio::io::copy(&mut client_read, &mut server_write);
                    let down = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = server_read.read(&mut buf).await?;
                            if n == 0 {
                                return Ok::<(), std::io::Error>(());
                            }
                            // Held back bytes wait here until released or cut.
                            while *holding.borrow_and_update() == Some(number) {
                                holding.changed().await.map_err(std::io::Error::other)?;
                            }
                            client_write.write_all(&buf[..n]).await?;
                        }
                    };
                    // A cut drops both sockets, with whatever was held.
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Self { addr, hold, cut }
    }

    /// Holds back what the server sends on the current connection.
    fn hold_replies(&self) {
        self.hold.send_replace(Some(*self.cut.borrow()));
    }

    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_reply_was_lost_is_sent_again_and_arrives_once() {
    let server = TestServer::start().await;
    let relay = Relay::start(server.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let mut alice = TestClient::connect_in(relay.addr, "alice", dir)
        .await
        .unwrap();
    let mut bob = server.client("bob").await;

    // The server stores the message (one request), but its reply never
    // reaches Alice: the connection is cut while it is held back.
    relay.hold_replies();
    let sender = alice.client.clone();
    let sending = tokio::spawn(async move { sender.send_lobby("cut off").await });
    assert_eq!(
        bob.expect_lobby().await,
        ("alice".to_owned(), "cut off".to_owned())
    );
    relay.cut();
    reconnecting(&mut alice).await;
    reconnected(&mut alice).await;
    let sent = sending
        .await
        .unwrap()
        .expect("sent once the connection is back");

    // Nothing came between "cut off" and the next message: no second copy.
    alice.client.send_lobby("marker").await.unwrap();
    let mut between = Vec::new();
    bob.expect("the marker", |e| match e {
        ClientEvent::Lobby { text, .. } if text == "marker" => Some(()),
        other => {
            between.push(other.clone());
            None
        }
    })
    .await;
    assert!(
        !between
            .iter()
            .any(|e| matches!(e, ClientEvent::Lobby { .. })),
        "{between:?}"
    );
    // The reply Alice got names the message Bob read.
    let history = bob.client.history(10).await.unwrap();
    let stored: Vec<i64> = history
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Lobby { text, ts, .. } if text == "cut off" => Some(*ts),
            _ => None,
        })
        .collect();
    assert_eq!(stored, [sent.ts]);
}

/// `sotto chat --json` under a `sotto serve` killed with SIGKILL and
/// started again: both clients reconnect by themselves and every message
/// is shown once.
#[test]
fn json_clients_reconnect_after_the_server_is_killed() {
    use crate::binary::{chat, serve, wait_exit};
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let mut server = serve(&server_dir, "127.0.0.1:0");
    let mut alice = chat(&server, "alice", &dir.path().join("alice"));
    let mut bob = chat(&server, "bob", &dir.path().join("bob"));
    alice.say("@bob before");
    bob.expect(|v| v["type"] == "private" && v["text"] == "before");

    server.child.kill().unwrap();
    wait_exit(&mut server.child);
    alice.expect(|v| v["type"] == "reconnecting");
    bob.expect(|v| v["type"] == "reconnecting");
    // Typed while the server is down: sent once it is back.
    alice.say("@bob while down");
    let mut server = serve(&server_dir, &server.addr);
    alice.expect(|v| v["type"] == "reconnected");
    bob.expect(|v| v["type"] == "reconnected");
    alice.expect(|v| v["type"] == "sent" && v["to"] == "bob");
    alice.say("@bob marker");
    let mut texts = Vec::new();
    loop {
        let event = bob.expect(|v| v["type"] == "private");
        let text = event["text"].as_str().unwrap().to_owned();
        texts.push(text.clone());
        if text == "marker" {
            break;
        }
    }
    assert_eq!(texts, ["while down", "marker"]);
    for mut chat in [alice, bob] {
        chat.say("@quit");
        assert!(wait_exit(&mut chat.child).success());
    }
    let _ = server.child.kill();
}

/// Lobby texts of `events`, in order.
fn lobby_texts(events: &[ClientEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Lobby { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// Reads events until the lobby line `marker`; returns those before it.
async fn until_lobby(client: &mut TestClient, marker: &str) -> Vec<ClientEvent> {
    let mut before = Vec::new();
    client
        .expect(marker, |e| match e {
            ClientEvent::Lobby { text, .. } if text == marker => Some(()),
            other => {
                before.push(other.clone());
                None
            }
        })
        .await;
    before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lobby_messages_sent_while_away_are_shown_on_return_once_and_bounded() {
    use sotto_proto::limits::MAX_LOBBY_CATCH_UP;
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    // Bob's first visit: the lobby is empty, nothing to show.
    let bob = server.client("bob").await.reconnect_later().await;
    for n in 0..3 {
        alice.client.send_lobby(&format!("away {n}")).await.unwrap();
    }
    let mut bob = bob.connect(server.addr).await;
    alice.client.send_lobby("marker 1").await.unwrap();
    let before = until_lobby(&mut bob, "marker 1").await;
    assert_eq!(lobby_texts(&before), ["away 0", "away 1", "away 2"]);
    assert!(
        !before
            .iter()
            .any(|e| matches!(e, ClientEvent::LobbyMissed { .. }))
    );

    // Away for longer than the catch-up holds: the newest are shown, and
    // how many older ones are not.
    let bob = bob.reconnect_later().await;
    let sent = MAX_LOBBY_CATCH_UP as usize + 5;
    for n in 0..sent {
        alice
            .client
            .send_lobby(&format!("flood {n}"))
            .await
            .unwrap();
    }
    let mut bob = bob.connect(server.addr).await;
    alice.client.send_lobby("marker 2").await.unwrap();
    let before = until_lobby(&mut bob, "marker 2").await;
    let texts = lobby_texts(&before);
    let expected: Vec<String> = (5..sent).map(|n| format!("flood {n}")).collect();
    assert_eq!(texts, expected);
    assert!(
        before
            .iter()
            .any(|e| matches!(e, ClientEvent::LobbyMissed { count: 5 })),
        "{before:?}"
    );
}
