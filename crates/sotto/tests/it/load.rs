//! Many clients at once: no message lost or duplicated.

use std::collections::HashMap;

use sotto_client::ClientEvent;
use sotto_proto::Username;
use sotto_test_support::{TestClient, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_lose_and_duplicate_nothing() {
    const CLIENTS: usize = 50;
    const LOBBY_EACH: usize = 4;
    let server = TestServer::start().await;
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        clients.push(server.client(&format!("user{i:02}")).await);
    }
    // Everyone is online before anyone sends.
    let last = clients.len() - 1;
    let (names, total) = clients[last].client.names().await.unwrap();
    assert_eq!((names.len(), total as usize), (CLIENTS, CLIENTS));

    let mut tasks = tokio::task::JoinSet::new();
    for (i, client) in clients.into_iter().enumerate() {
        tasks.spawn(async move {
            let mut client: TestClient = client;
            for n in 0..LOBBY_EACH {
                client
                    .client
                    .send_lobby(&format!("lobby {i} {n}"))
                    .await
                    .unwrap();
            }
            // One private message to the next user, one to the previous.
            for peer in [(i + 1) % CLIENTS, (i + CLIENTS - 1) % CLIENTS] {
                let to = Username::parse(&format!("user{peer:02}")).unwrap();
                client
                    .client
                    .send_private(to, &format!("dm {i}"))
                    .await
                    .unwrap();
            }
            // Expect everyone else's lobby messages and two DMs.
            let mut lobby: HashMap<String, usize> = HashMap::new();
            let mut dms: Vec<String> = Vec::new();
            while lobby.len() < (CLIENTS - 1) * LOBBY_EACH || dms.len() < 2 {
                let event = client.expect("traffic", |e| Some(e.clone())).await;
                match event {
                    ClientEvent::Lobby { text, .. } => *lobby.entry(text).or_default() += 1,
                    ClientEvent::Private { from, text, .. } if from.as_str() != client.name => {
                        dms.push(text)
                    }
                    _ => {}
                }
            }
            assert!(lobby.values().all(|n| *n == 1), "duplicates at {i}");
            assert!(
                lobby.keys().all(|t| !t.starts_with(&format!("lobby {i} "))),
                "own lobby echo at {i}"
            );
            dms.sort();
            let mut expected = vec![
                format!("dm {}", (i + 1) % CLIENTS),
                format!("dm {}", (i + CLIENTS - 1) % CLIENTS),
            ];
            expected.sort();
            assert_eq!(dms, expected, "user{i:02}");
            client
        });
    }
    let mut done = Vec::new();
    while let Some(result) = tasks.join_next().await {
        done.push(result.unwrap());
    }
    // Nothing extra arrives afterwards: a final marker is the next message.
    done[0].client.send_lobby("the end").await.unwrap();
    for client in done.iter_mut().skip(1) {
        client
            .expect("the end", |e| match e {
                ClientEvent::Lobby { text, .. } if text == "the end" => Some(()),
                ClientEvent::Lobby { text, .. } | ClientEvent::Private { text, .. } => {
                    panic!("extra message {text}")
                }
                _ => None,
            })
            .await;
    }
}

/// Both sides of many private conversations pipeline messages at once (as
/// the load generator does): every acknowledged message is delivered live,
/// once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_private_conversations_lose_nothing() {
    const PAIRS: usize = 10;
    const PER_SIDE: u32 = 300;
    const WINDOW: usize = 16;
    let server = TestServer::start_with(|c| {
        c.requests_per_second = 1_000_000;
        c.request_burst = 1_000_000;
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..PAIRS * 2 {
        clients.push(server.client(&format!("p{i:02}")).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        tasks.spawn(async move {
            let peer = Username::parse(&format!("p{:02}", i ^ 1)).unwrap();
            let sender = client.client.clone();
            let sending = tokio::spawn(async move {
                let mut inflight: tokio::task::JoinSet<
                    Result<sotto_client::SentInfo, sotto_client::ClientError>,
                > = tokio::task::JoinSet::new();
                for n in 0..PER_SIDE {
                    if inflight.len() >= WINDOW {
                        inflight.join_next().await.unwrap().unwrap().unwrap();
                    }
                    let (c, to) = (sender.clone(), peer.clone());
                    inflight.spawn(async move { c.send_private(to, &format!("{n}")).await });
                }
                while let Some(sent) = inflight.join_next().await {
                    sent.unwrap().unwrap();
                }
            });
            let mut got = Vec::new();
            while got.len() < PER_SIDE as usize {
                let (from, text) = client.expect_private().await;
                assert_ne!(from, client.name, "own message echoed");
                got.push(text.parse::<u32>().unwrap());
            }
            sending.await.unwrap();
            got.sort_unstable();
            got.dedup();
            assert_eq!(
                got.len(),
                PER_SIDE as usize,
                "{}: duplicates or losses",
                client.name
            );
            client
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}
