//! A PostgreSQL database serves one server alone, or the nodes of one
//! cluster: never two servers that do not know of each other.

use sotto_server::store::Database;
use sotto_test_support::{TestCluster, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_serves_one_server_alone_or_the_nodes_of_one_cluster() {
    let cluster = TestCluster::start(0).await;
    let database = cluster.database.clone();
    let alone = |db: String| {
        move |config: &mut sotto_server::Config| {
            config.database = Database::Postgres(db);
        }
    };
    let first = TestServer::start_with(alone(database.clone())).await;
    // (Serving: it has opened the database.)
    drop(first.client("alice").await);

    let mut second = TestServer::start_with(alone(database.clone())).await;
    let refused = format!("{:#}", second.ended().await.unwrap_err());
    assert!(
        refused.contains("another Sotto server uses this database"),
        "{refused}"
    );

    let nats = cluster.nats.clone();
    let mut node = TestServer::start_with(move |config| {
        config.database = Database::Postgres(database);
        config.cluster = Some(nats);
    })
    .await;
    let refused = format!("{:#}", node.ended().await.unwrap_err());
    assert!(refused.contains("not part of a cluster"), "{refused}");
}
