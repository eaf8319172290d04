//! Nothing acknowledged is lost: offline delivery, restarts, no duplicates.

use sotto_client::ClientEvent;
use sotto_proto::{GroupName, Username};
use sotto_test_support::{TestClient, TestServer};

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

/// Collects private and group texts until the backlog is done.
async fn backlog(client: &mut TestClient) -> Vec<String> {
    let mut texts = Vec::new();
    loop {
        let event = client
            .expect("backlog", |e| match e {
                ClientEvent::Private { text, .. } | ClientEvent::Group { text, .. } => {
                    Some(Some(text.clone()))
                }
                ClientEvent::CaughtUp => Some(None),
                _ => None,
            })
            .await;
        match event {
            Some(text) => texts.push(text),
            None => return texts,
        }
    }
}

#[tokio::test]
async fn offline_users_get_their_messages_in_order_at_login() {
    let server = TestServer::start().await;
    let mut bob = server.client("bob").await;
    let alice = server.client("alice").await;
    alice
        .client
        .group_create(GroupName::parse("team").unwrap(), vec![user("bob")])
        .await
        .unwrap();
    bob.accept_invitation("team").await;
    let bob = bob.reconnect_later().await;
    for i in 0..20 {
        alice
            .client
            .send_private(user("bob"), &format!("dm {i}"))
            .await
            .unwrap();
    }
    for i in 0..5 {
        alice
            .client
            .send_group(GroupName::parse("team").unwrap(), &format!("team {i}"))
            .await
            .unwrap();
    }
    let mut bob = bob.connect(server.addr).await;
    let texts = backlog(&mut bob).await;
    let dms: Vec<&String> = texts.iter().filter(|t| t.starts_with("dm ")).collect();
    let team: Vec<&String> = texts.iter().filter(|t| t.starts_with("team ")).collect();
    assert_eq!(
        dms,
        (0..20)
            .map(|i| format!("dm {i}"))
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>()
    );
    assert_eq!(
        team,
        (0..5)
            .map(|i| format!("team {i}"))
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>()
    );

    // Acknowledged messages are not delivered again on the next login.
    let mut bob = bob.reconnect(server.addr).await;
    assert_eq!(backlog(&mut bob).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_restart_loses_nothing() {
    let mut server = TestServer::start().await;
    let mut bob = server.client("bob").await;
    let alice = server.client("alice").await;
    alice
        .client
        .group_create(GroupName::parse("crew").unwrap(), vec![user("bob")])
        .await
        .unwrap();
    bob.accept_invitation("crew").await;
    let bob = bob.reconnect_later().await;
    alice
        .client
        .send_lobby("lobby before restart")
        .await
        .unwrap();
    alice
        .client
        .send_private(user("bob"), "private before restart")
        .await
        .unwrap();
    alice
        .client
        .send_group(GroupName::parse("crew").unwrap(), "group before restart")
        .await
        .unwrap();

    server.restart().await;

    let mut bob = bob.connect(server.addr).await;
    let mut got = backlog(&mut bob).await;
    got.sort();
    assert_eq!(got, ["group before restart", "private before restart"]);
    let (groups, _) = bob.client.group_list().await.unwrap();
    assert_eq!(groups[0].name.as_str(), "crew");
    let history = bob.client.history(10).await.unwrap();
    assert!(
        history.iter().any(
            |e| matches!(e, ClientEvent::Lobby { text, .. } if text == "lobby before restart")
        )
    );
    // Accounts survived too: a wrong password is still wrong.
    let mut opts =
        sotto_test_support::options(server.addr, "alice", "not-her-password", bob.dir.path());
    opts.data_dir = tempfile::tempdir().unwrap().keep();
    assert!(sotto_client::connect(opts).await.is_err());
}

#[tokio::test]
async fn a_new_device_does_not_replay_what_another_device_acknowledged() {
    let server = TestServer::start().await;
    let mut bob = server.client("bob").await;
    let alice = server.client("alice").await;
    alice
        .client
        .send_private(user("bob"), "seen on the first device")
        .await
        .unwrap();
    assert_eq!(bob.expect_private().await.1, "seen on the first device");
    // A request that passes through the core after the acknowledgement.
    bob.client.names().await.unwrap();
    bob.client.quit().await.unwrap();
    let mut second = server.client("bob").await;
    assert_eq!(backlog(&mut second).await, Vec::<String>::new());
    // Both devices of a user get new messages.
    let mut first = TestClient::connect_in(server.addr, "bob", bob.dir)
        .await
        .unwrap();
    backlog(&mut first).await;
    alice
        .client
        .send_private(user("bob"), "to both")
        .await
        .unwrap();
    assert_eq!(first.expect_private().await.1, "to both");
    assert_eq!(second.expect_private().await.1, "to both");
}

/// The core thread is the only writer: if it dies, the server does not go
/// on half alive. `run` fails at once, every client is cut off, and what
/// was acknowledged before is there after a restart.
#[tokio::test]
async fn a_server_whose_core_thread_dies_stops_at_once_and_loses_nothing() {
    let mut server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let bob = bob.reconnect_later().await;
    alice
        .client
        .send_private(user("bob"), "acknowledged before the crash")
        .await
        .unwrap();
    server.crash_core();
    let err = server.ended().await.unwrap_err();
    assert!(err.to_string().contains("core thread stopped"), "{err:#}");
    // Alice's connection is closed, not left waiting: her client dials again.
    alice
        .expect("the disconnect", |e| {
            matches!(e, ClientEvent::Reconnecting { .. }).then_some(())
        })
        .await;

    server.restart().await;
    let mut bob = bob.connect(server.addr).await;
    assert_eq!(backlog(&mut bob).await, ["acknowledged before the crash"]);
    alice
        .expect("reconnected", |e| {
            matches!(e, ClientEvent::Reconnected { .. }).then_some(())
        })
        .await;
}
