//! A node killed under load: its clients go on on another node by
//! themselves, and nothing acknowledged is lost or delivered twice.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sotto_client::{ClientEvent, ConnectOptions, Secret, TrustPolicy};
use sotto_proto::{Password, Username};
use sotto_test_support::{PATIENCE, TestClient, TestCluster};

/// A `sotto serve` process: one node.
struct Node {
    child: Child,
    addr: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn start(database: &str, nats: &str, data_dir: &Path) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sotto"))
            .args(["serve", "--listen", "127.0.0.1:0", "--database", database])
            .args(["--cluster", nats, "--data-dir"])
            .arg(data_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sotto serve");
        let stdout = child.stdout.take();
        // From here the node is killed and waited for if anything fails.
        let mut node = Node {
            child,
            addr: String::new(),
        };
        let stdout = BufReader::new(stdout.expect("stdout"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        loop {
            let line = rx
                .recv_timeout(PATIENCE)
                .expect("the node prints its address");
            if let Some(rest) = line.strip_prefix("Sotto server listening on ") {
                node.addr = rest
                    .split_whitespace()
                    .next()
                    .expect("an address")
                    .to_owned();
                return node;
            }
        }
    }
}

/// A client of the cluster given every node's address, `first` first.
async fn client(name: &str, addrs: &[&str], dir: tempfile::TempDir) -> TestClient {
    let options = ConnectOptions {
        server: addrs.join(","),
        user: Username::parse(name).unwrap(),
        secret: Secret::Password(Password::new(format!("pw-{name}")).unwrap()),
        server_password: None,
        data_dir: dir.path().to_owned(),
        trust: TrustPolicy::TrustNew,
        register_only: false,
        sign_in_only: false,
    };
    let (client, events) = sotto_client::connect(options).await.expect("connects");
    TestClient {
        name: name.to_owned(),
        client,
        events,
        dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_nothing_and_its_clients_move_on() {
    // The database and bus of a cluster; its nodes are real processes.
    let cluster = TestCluster::start(0).await;
    let dirs = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Option<Node>> = (0..3)
        .map(|i| {
            Some(Node::start(
                &cluster.database,
                &cluster.nats,
                &dirs.path().join(format!("node{i}")),
            ))
        })
        .collect();
    let addr = |i: usize| nodes[i].as_ref().unwrap().addr.clone();
    let (a0, a1, a2) = (addr(0), addr(1), addr(2));

    // Alice (sending) and carol (reading) on node 0, bob on node 1.
    let tmp = || tempfile::tempdir().unwrap();
    let alice = client("alice", &[&a0, &a1, &a2], tmp()).await;
    let mut carol = client("carol", &[&a0, &a2, &a1], tmp()).await;
    let mut bob = client("bob", &[&a1, &a2, &a0], tmp()).await;
    let carol_name = Username::parse("carol").unwrap();

    // A steady stream of private messages from alice to carol; node 0 is
    // killed (SIGKILL) in the middle of it.
    const MESSAGES: usize = 60;
    let sender = tokio::spawn(async move {
        // A message whose key exchange was cut off by the kill fails (it
        // was never sent, and says so); one whose reply was cut off is
        // sent again and stored once. Only acknowledged ones count.
        let mut acknowledged = Vec::new();
        let mut failed = Vec::new();
        for n in 0..MESSAGES {
            let text = format!("message {n}");
            match alice.client.send_private(carol_name.clone(), &text).await {
                Ok(_) => acknowledged.push(text),
                Err(
                    e @ (sotto_client::ClientError::ConnectionLost(_)
                    | sotto_client::ClientError::Reconnecting),
                ) => failed.push(format!("{text}: {e}")),
                Err(e) => panic!("{text} was refused: {e}"),
            }
        }
        assert!(failed.len() <= 3, "{failed:?}");
        (alice, acknowledged)
    });
    let mut received: Vec<String> = Vec::new();
    while received.len() < MESSAGES / 3 {
        received.push(carol.expect_private().await.1);
    }
    drop(nodes[0].take());

    // Carol's client finds node 2 by itself; every acknowledged message
    // arrives once, in order.
    let (alice, acknowledged) = tokio::time::timeout(PATIENCE * 2, sender)
        .await
        .expect("alice's messages are all acknowledged in time")
        .unwrap();
    assert!(acknowledged.len() >= MESSAGES - 3);
    while received.len() < acknowledged.len() {
        received.push(carol.expect_private().await.1);
    }
    assert_eq!(received, acknowledged, "each message once, in order");
    let extra = carol.drain_for(Duration::from_millis(500)).await;
    let repeated: Vec<_> = extra
        .iter()
        .filter(|e| matches!(e, ClientEvent::Private { .. }))
        .collect();
    assert!(repeated.is_empty(), "delivered twice: {repeated:?}");

    // Both are online again as bob, on node 1, sees it.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let names = bob.client.names().await.unwrap();
        let online: BTreeMap<String, _> = names
            .0
            .iter()
            .map(|p| (p.user.to_string(), p.status))
            .collect();
        if online.contains_key("alice") && online.contains_key("carol") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice and carol are back online: {online:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And they go on chatting.
    alice
        .client
        .send_private(Username::parse("bob").unwrap(), "still here")
        .await
        .unwrap();
    assert_eq!(bob.expect_private().await.1, "still here");
}
