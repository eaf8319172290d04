//! The login limits are the cluster's: guesses spread over the nodes
//! count together.

use sotto_client::{ClientError, ClientEvent};
use sotto_proto::{ErrorCode, PresenceChange};
use sotto_test_support::{TestCluster, options};

async fn wrong_password(addr: std::net::SocketAddr) -> ErrorCode {
    let dir = tempfile::tempdir().unwrap();
    match sotto_client::connect(options(addr, "alice", "not her password", dir.path())).await {
        Err(ClientError::Server(e)) => e.code,
        Err(other) => panic!("expected a server error, got {other}"),
        Ok(_) => panic!("signed in with a wrong password"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guesses_on_one_node_slow_down_guesses_on_another() {
    let cluster = TestCluster::start(2).await;
    let (one, two) = (&cluster.nodes[0], &cluster.nodes[1]);
    drop(one.client("alice").await);
    let mut bob = two.client("bob").await;

    // The free failures, all on node one.
    for _ in 0..sotto_server::limits::FREE_ACCOUNT_FAILURES {
        assert_eq!(wrong_password(one.addr).await, ErrorCode::WrongPassword);
    }
    // (Node one tells the bus each attempt's end, then, later, that carol
    // is online: once node two shows carol, it has counted the attempts.)
    let _carol = one.client("carol").await;
    bob.expect("carol online", |e| match e {
        ClientEvent::Presence {
            user,
            change: PresenceChange::Online(_),
        } if user.as_str() == "carol" => Some(()),
        _ => None,
    })
    .await;

    // The next guess, on node two, has to wait.
    assert_eq!(wrong_password(two.addr).await, ErrorCode::RateLimited);
}
