//! Nodes of a cluster in the test process.

use crate::TestServer;
use crate::db::schema_database_on;
use sotto_server::store::Database;

/// Nodes of one cluster in this process: one PostgreSQL database (a new
/// schema on the server `SOTTO_TEST_POSTGRES` names) and the NATS server
/// `SOTTO_TEST_NATS` names; `scripts/test` starts both.
#[derive(Debug)]
pub struct TestCluster {
    pub nodes: Vec<TestServer>,
    /// The cluster's database, for more nodes.
    pub database: String,
    /// The NATS server.
    pub nats: String,
}

/// Names the test PostgreSQL server (set by `scripts/test`).
pub const TEST_POSTGRES_ENV: &str = "SOTTO_TEST_POSTGRES";
/// Names the test NATS server (set by `scripts/test`).
pub const TEST_NATS_ENV: &str = "SOTTO_TEST_NATS";

impl TestCluster {
    /// Starts `n` nodes.
    pub async fn start(n: usize) -> Self {
        let needed = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!(
                    "{name} is not set: the cluster tests need PostgreSQL and NATS servers; \
                     run them with scripts/test, which starts both"
                )
            })
        };
        Self::start_on(&needed(TEST_POSTGRES_ENV), &needed(TEST_NATS_ENV), n).await
    }

    /// Starts `n` nodes on a new schema of the PostgreSQL server `base`
    /// names and the NATS server at `nats`.
    pub async fn start_on(base: &str, nats: &str, n: usize) -> Self {
        let nats = nats.to_owned();
        let schema = format!("c{:016x}", rand::random::<u64>());
        let database = schema_database_on(base, &schema).await;
        let mut cluster = Self {
            nodes: Vec::new(),
            database,
            nats,
        };
        for _ in 0..n {
            cluster.add_node().await;
        }
        cluster
    }

    /// Starts one more node.
    pub async fn add_node(&mut self) -> &TestServer {
        let (database, nats) = (self.database.clone(), self.nats.clone());
        let node = TestServer::start_with(move |config| {
            config.database = Database::Postgres(database);
            config.cluster = Some(nats);
        })
        .await;
        self.nodes.push(node);
        self.nodes.last().expect("a node")
    }

    /// The nodes' addresses, as a client's list of servers.
    pub fn addresses(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}
