//! The database or the bus goes away and comes back: nodes refuse what
//! they cannot store, saying so, and carry on by themselves afterwards.

use std::time::Duration;

use sotto_client::ClientError;
use sotto_proto::Username;
use sotto_test_support::{PATIENCE, PrivateNats, PrivatePostgres, TestClient, TestCluster};

/// Sends `text` to the lobby until it is stored (the database coming
/// back); each try is a real request answered by the server.
async fn send_until_stored(client: &TestClient, text: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match client.client.send_lobby(text).await {
            Ok(_) => return,
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "still refused: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_refuses_writes_meanwhile_and_nodes_resume_by_themselves() {
    let postgres = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .unwrap();
    let nats = PrivateNats::start();
    let cluster = TestCluster::start_on(&postgres.url, &nats.url, 2).await;
    let alice = cluster.nodes[0].client("alice").await;
    let mut bob = cluster.nodes[1].client("bob").await;
    alice.client.send_lobby("before").await.unwrap();
    assert_eq!(bob.expect_lobby().await.1, "before");

    // The database crashes: a message is refused, with a reason.
    let pg = std::sync::Arc::new(postgres);
    let crash = pg.clone();
    tokio::task::spawn_blocking(move || crash.crash())
        .await
        .unwrap();
    match alice.client.send_lobby("during").await {
        Err(ClientError::Server(e)) => assert!(
            e.message.contains("database") || e.message.contains("nothing was saved"),
            "{e:?}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // It comes back: both nodes serve again without being touched.
    let start = pg.clone();
    tokio::task::spawn_blocking(move || start.start_again())
        .await
        .unwrap();
    send_until_stored(&alice, "after").await;
    assert_eq!(bob.expect_lobby().await.1, "after");
    bob.client
        .send_private(Username::parse("alice").unwrap(), "all well")
        .await
        .unwrap();
    let mut alice = alice;
    assert_eq!(alice.expect_private().await.1, "all well");
    // Nothing refused was stored.
    let history = bob.client.history(10).await.unwrap();
    assert!(
        !format!("{history:?}").contains("\"during\""),
        "{history:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_nodes_while_the_bus_is_down_and_after_it_restarts() {
    let postgres = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .unwrap();
    let mut nats = PrivateNats::start();
    let cluster = TestCluster::start_on(&postgres.url, &nats.url, 2).await;
    let alice = cluster.nodes[0].client("alice").await;
    let mut bob = cluster.nodes[1].client("bob").await;

    // Without the bus, the other node reads the change log (within about
    // a second).
    nats.kill();
    alice.client.send_lobby("no bus").await.unwrap();
    assert_eq!(bob.expect_lobby().await.1, "no bus");

    // The bus comes back; the nodes find it by themselves.
    let _nats = tokio::task::spawn_blocking(move || {
        nats.start_again();
        nats
    })
    .await
    .unwrap();
    alice.client.send_lobby("bus again").await.unwrap();
    assert_eq!(bob.expect_lobby().await.1, "bus again");
    // Presence travels on the bus only: carol, signing in on node 0, is
    // seen online on node 1.
    let _carol = cluster.nodes[0].client("carol").await;
    bob.expect("carol online", |e| match e {
        sotto_client::ClientEvent::Presence {
            user,
            change: sotto_proto::PresenceChange::Online(_),
        } if user.as_str() == "carol" => Some(()),
        _ => None,
    })
    .await;
}
