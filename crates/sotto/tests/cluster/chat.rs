//! Users on different nodes chat as if on one server.

use sotto_client::{ClientEvent, Target};
use sotto_crypto::Passphrase;
use sotto_proto::{GroupName, PresenceChange, Status, Username};
use sotto_test_support::{TestClient, TestCluster};

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_three_nodes_chat_in_the_lobby_privately_and_in_groups() {
    let cluster = TestCluster::start(3).await;
    let [one, two, three] = &cluster.nodes[..] else {
        unreachable!()
    };
    // One certificate for the cluster.
    assert_eq!(one.fingerprint, two.fingerprint);
    assert_eq!(one.fingerprint, three.fingerprint);

    let mut alice = one.client("alice").await;
    let mut bob = two.client("bob").await;
    let mut carol = three.client("carol").await;

    // Presence: alice, on node one, sees carol (node three) come online.
    alice
        .expect("carol online", |e| match e {
            ClientEvent::Presence {
                user,
                change: PresenceChange::Online(_),
            } if user.as_str() == "carol" => Some(()),
            _ => None,
        })
        .await;
    let names = alice.client.names().await.unwrap();
    let online: Vec<&str> = names.0.iter().map(|p| p.user.as_str()).collect();
    assert_eq!(online, ["alice", "bob", "carol"], "{names:?}");

    // The lobby.
    bob.client.send_lobby("hello from node two").await.unwrap();
    assert_eq!(alice.expect_lobby().await.1, "hello from node two");
    assert_eq!(carol.expect_lobby().await.1, "hello from node two");

    // Private, end-to-end encrypted, across nodes, both ways.
    alice
        .client
        .send_private(user("carol"), "one to three")
        .await
        .unwrap();
    assert_eq!(
        carol.expect_private().await,
        ("alice".into(), "one to three".into())
    );
    carol
        .client
        .send_private(user("alice"), "three to one")
        .await
        .unwrap();
    assert_eq!(
        alice.expect_private().await,
        ("carol".into(), "three to one".into())
    );

    // A group made on node two with members on one and three.
    let crew = GroupName::parse("crew").unwrap();
    bob.client
        .group_create(crew.clone(), vec![user("alice"), user("carol")])
        .await
        .unwrap();
    alice.accept_invitation("crew").await;
    carol.accept_invitation("crew").await;
    carol
        .client
        .send_group(crew.clone(), "to the crew")
        .await
        .unwrap();
    assert_eq!(alice.expect_group().await.2, "to the crew");
    assert_eq!(bob.expect_group().await.2, "to the crew");

    // A status set on node three is seen on node one.
    carol.client.set_status(Status::Away).await.unwrap();
    alice
        .expect("carol away", |e| match e {
            ClientEvent::Presence {
                user,
                change: PresenceChange::Status(Status::Away),
            } if user.as_str() == "carol" => Some(()),
            _ => None,
        })
        .await;

    // Carol leaves node three: alice and bob see her go.
    let _ = carol.client.quit().await;
    bob.expect("carol offline", |e| match e {
        ClientEvent::Presence {
            user,
            change: PresenceChange::Offline,
        } if user.as_str() == "carol" => Some(()),
        _ => None,
    })
    .await;

    // Messages to her while she is away wait for her on any node.
    alice
        .client
        .send_private(user("carol"), "while you were out")
        .await
        .unwrap();
    let mut carol = TestClient::connect_in(one.addr, "carol", carol.dir)
        .await
        .expect("carol signs in on node one");
    assert_eq!(
        carol.expect_private().await,
        ("alice".into(), "while you were out".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_sealed_messages_and_new_devices_cross_nodes() {
    let cluster = TestCluster::start(3).await;
    let alice = cluster.nodes[0].client("alice").await;
    let mut bob = cluster.nodes[1].client("bob").await;

    // A file larger than a message on the bus may be (1 MiB): the other
    // node reads that commit from the change log.
    let data: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    let path = alice.dir.path().join("big.bin");
    std::fs::write(&path, &data).unwrap();
    alice
        .client
        .send_file(Target::User(user("bob")), &path)
        .await
        .unwrap();
    let id = bob
        .expect("a file offered", |e| match e {
            ClientEvent::FileOffered { id, .. } => Some(*id),
            _ => None,
        })
        .await;
    let (_, saved, _) = bob.client.accept_file(id).await.unwrap();
    assert_eq!(std::fs::read(saved).unwrap(), data);

    // A sealed message.
    alice
        .client
        .send_secret(
            Target::User(user("bob")),
            Passphrase::new("open sesame").unwrap(),
            "the code is 1234",
        )
        .await
        .unwrap();
    let id = bob
        .expect("a sealed message", |e| match e {
            ClientEvent::Sealed { id, .. } => Some(*id),
            _ => None,
        })
        .await;
    let opened = bob
        .client
        .open_sealed(id, Passphrase::new("open sesame").unwrap())
        .await
        .unwrap();
    assert_eq!(opened.text, "the code is 1234");

    // Bob's new phone signs in on node three: alice's next message, from
    // node one, reaches it (its keys, published there, are in every
    // node's directory, and the room key goes to its queue).
    let mut phone = cluster.nodes[2].client("bob").await;
    alice
        .client
        .send_private(user("bob"), "to all your devices")
        .await
        .unwrap();
    assert_eq!(phone.expect_private().await.1, "to all your devices");
    assert_eq!(bob.expect_private().await.1, "to all your devices");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_has_one_order_on_every_node_and_in_the_database() {
    let cluster = TestCluster::start(3).await;
    let mut senders = Vec::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        senders.push(node.client(&format!("sender{i}")).await);
    }
    let mut near = cluster.nodes[0].client("near").await;
    let mut far = cluster.nodes[2].client("far").await;

    // Three senders on three nodes at once, into one room.
    const EACH: usize = 20;
    let mut sending = Vec::new();
    for sender in &senders {
        let (client, name) = (sender.client.clone(), sender.name.clone());
        sending.push(tokio::spawn(async move {
            for n in 0..EACH {
                client.send_lobby(&format!("{name} {n}")).await.unwrap();
            }
        }));
    }
    for task in sending {
        task.await.unwrap();
    }
    let mut seen = Vec::new();
    for watcher in [&mut near, &mut far] {
        let mut texts = Vec::new();
        while texts.len() < 3 * EACH {
            texts.push(watcher.expect_lobby().await.1);
        }
        seen.push(texts);
    }
    // The same interleaving on node 0 and node 2 ...
    assert_eq!(seen[0], seen[1]);
    // ... as stored, read back from any node.
    let stored: Vec<String> = far
        .client
        .history(3 * EACH as u32)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::Lobby { text, .. } => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(stored, seen[0]);
}
