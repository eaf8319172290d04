//! Retention (issue 10, point 3): the server keeps the newest lobby and
//! room events its policy allows, never a room's newest one, and a history
//! page that reaches back to where it cut says so.

use sotto_client::ClientEvent;
use sotto_proto::{Request, Response, Username};
use sotto_test_support::TestServer;

use crate::raw::Raw;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn lobby(text: &str) -> Request {
    Request::SendLobby { text: text.into() }
}

#[tokio::test]
async fn the_lobby_keeps_its_newest_messages_and_history_says_older_ones_were_deleted() {
    let server = TestServer::start_with(|c| {
        c.retention.interval = std::time::Duration::ZERO;
        c.retention.lobby.messages = 3;
        // Room for about four of the messages below: what is deleted no
        // longer counts against the sender.
        c.quotas.stored_bytes_per_user = 2_400;
    })
    .await;
    let mut alice = Raw::login(server.addr, "alice").await;
    let pad = ".".repeat(400);
    for n in 1..=6 {
        let sent = alice.ask(lobby(&format!("message {n}{pad}"))).await.0;
        assert!(sent.is_ok(), "{sent:?}");
    }
    // Each batch applies the policy; the next request sees its result.
    let _ = alice.ask(Request::Ping).await;
    let (result, _) = alice
        .ask(Request::History {
            limit: 100,
            before: None,
        })
        .await;
    let Ok(Response::History {
        events,
        pruned_before,
        ..
    }) = result
    else {
        panic!("{result:?}");
    };
    let texts: Vec<String> = events
        .iter()
        .filter_map(lobby_text)
        .map(|t| t.trim_end_matches('.').to_owned())
        .collect();
    assert_eq!(texts, ["message 4", "message 5", "message 6"]);
    assert_eq!(pruned_before, Some(events[0].ts));
    // A page that does not reach back that far does not say so.
    let (result, _) = alice
        .ask(Request::History {
            limit: 2,
            before: None,
        })
        .await;
    assert!(
        matches!(
            result,
            Ok(Response::History {
                pruned_before: None,
                ..
            })
        ),
        "{result:?}"
    );
    // A client shows it before what it lists.
    let bob = server.client("bob").await;
    let history = bob.client.history(10).await.unwrap();
    assert!(
        matches!(history.first(), Some(ClientEvent::HistoryPruned { .. })),
        "{history:?}"
    );
    assert!(
        !bob.client
            .history(1)
            .await
            .unwrap()
            .iter()
            .any(|e| matches!(e, ClientEvent::HistoryPruned { .. }))
    );
}

fn lobby_text(event: &sotto_proto::EventBody) -> Option<String> {
    match &event.kind {
        sotto_proto::EventKind::Room(sotto_proto::RoomEvent {
            content: sotto_proto::RoomContent::Text { text },
            ..
        }) => Some(text.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn messages_older_than_the_retention_period_are_deleted_and_positions_go_on() {
    let mut server = TestServer::start_with(|c| {
        c.retention.interval = std::time::Duration::ZERO;
        c.retention.lobby = sotto_server::Keep {
            days: 30,
            messages: 0,
        };
        c.retention.rooms.days = 30;
    })
    .await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    for n in 1..=3 {
        alice
            .client
            .send_lobby(&format!("lobby {n}"))
            .await
            .unwrap();
        alice
            .client
            .send_private(user("bob"), &format!("private {n}"))
            .await
            .unwrap();
        assert_eq!(bob.expect_private().await.1, format!("private {n}"));
    }
    drop(alice);
    drop(bob);
    // As far as the server knows, every lobby message and the first two
    // private ones were sent 40 days ago.
    server.stop().await;
    let db = server.db();
    // 40 days in milliseconds (written as one number: it is past a 32-bit
    // integer, which PostgreSQL would take a product of small ones for).
    let aged = db
        .execute(
            "UPDATE events SET ts = ts - 3456000000 WHERE room_id = 1 \
             OR (room_id IN (SELECT id FROM rooms WHERE kind = 1) AND seq <= 2)",
        )
        .await;
    assert_eq!(aged, 5);
    let seqs = async |kind: i64| -> Vec<i64> {
        db.integers(&format!(
            "SELECT seq FROM events WHERE room_id IN (SELECT id FROM rooms WHERE kind = {kind}) \
             ORDER BY seq"
        ))
        .await
    };
    server.restart().await;
    let mut carol = Raw::login(server.addr, "carol").await;
    let _ = carol.ask(Request::Ping).await;
    // The newest event of a room is kept, however old.
    assert_eq!(seqs(0).await, [3]);
    assert_eq!(seqs(1).await, [3]);
    let (result, _) = carol
        .ask(Request::History {
            limit: 10,
            before: None,
        })
        .await;
    assert!(
        matches!(&result, Ok(Response::History { events, pruned_before: Some(_), .. })
            if events.len() == 1),
        "{result:?}"
    );
    // After another restart the lobby counts on from its newest event.
    drop(carol);
    server.restart().await;
    let mut carol = Raw::login(server.addr, "carol").await;
    let (result, _) = carol.ask(lobby("lobby 4")).await;
    assert!(
        matches!(result, Ok(Response::Sent { seq: 4, .. })),
        "{result:?}"
    );
}
