//! Paging back through history (issue 11): a front end scrolling up asks
//! for the events before the oldest it shows, from the server (the lobby)
//! and the local store (private messages), without reading everything.

use sotto_client::ClientEvent;
use sotto_proto::{HistoryCursor, Username};
use sotto_test_support::TestServer;

fn texts(events: &[ClientEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Lobby { text, .. } | ClientEvent::Private { text, .. } => {
                Some(text.clone())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_pages_come_before_the_oldest_shown() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let mut stamps = Vec::new();
    for n in 0..6 {
        let sent = if n % 2 == 0 {
            alice.client.send_lobby(&format!("m{n}")).await.unwrap()
        } else {
            alice
                .client
                .send_private(Username::parse("bob").unwrap(), &format!("m{n}"))
                .await
                .unwrap()
        };
        stamps.push(HistoryCursor {
            ts: sent.ts,
            room_id: sent.room_id,
            seq: sent.seq,
        });
        // Bob reads each (so his local store keeps the private ones).
        bob.expect("the message", |e| {
            matches!(e, ClientEvent::Lobby { .. } | ClientEvent::Private { .. }).then_some(())
        })
        .await;
    }
    // History's order is (time, room, position): messages sent within
    // the same millisecond go by room. The expected order, from the
    // server's answers:
    let mut order: Vec<(HistoryCursor, String)> = stamps
        .iter()
        .enumerate()
        .map(|(n, c)| (*c, format!("m{n}")))
        .collect();
    order.sort_by_key(|(c, _)| (c.ts, c.room_id, c.seq));
    let names = |range: std::ops::Range<usize>| -> Vec<String> {
        order[range].iter().map(|(_, t)| t.clone()).collect()
    };
    let all = bob.client.history(20).await.unwrap();
    assert_eq!(texts(&all), names(0..6));
    // Pages further back: strictly before the cursor, newest last.
    let page = bob
        .client
        .history_before(Some(order[4].0), 2)
        .await
        .unwrap();
    assert_eq!(texts(&page), names(2..4));
    let page = bob
        .client
        .history_before(Some(order[2].0), 10)
        .await
        .unwrap();
    assert_eq!(texts(&page), names(0..2));
    let page = bob
        .client
        .history_before(Some(order[0].0), 10)
        .await
        .unwrap();
    assert!(texts(&page).is_empty(), "{page:?}");
}
