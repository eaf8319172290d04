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
    let newest = bob.client.history(2).await.unwrap();
    assert_eq!(texts(&newest), ["m4", "m5"]);
    let before = |i: usize| stamps[i];
    let page = bob.client.history_before(Some(before(4)), 2).await.unwrap();
    assert_eq!(texts(&page), ["m2", "m3"]);
    let page = bob
        .client
        .history_before(Some(before(2)), 10)
        .await
        .unwrap();
    assert_eq!(texts(&page), ["m0", "m1"]);
    let page = bob
        .client
        .history_before(Some(before(0)), 10)
        .await
        .unwrap();
    assert!(texts(&page).is_empty(), "{page:?}");
}
