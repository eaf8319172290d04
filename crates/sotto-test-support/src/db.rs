//! The test servers' databases: PostgreSQL schemas, and looking into
//! either engine.

use std::path::{Path, PathBuf};

use sotto_server::store::Database;

/// The environment variable that makes every test server use PostgreSQL:
/// a connection string (`host=/tmp/dir user=postgres dbname=postgres`) of
/// a server where the tests may create schemas. `scripts/test` sets it.
pub const TEST_DATABASE_ENV: &str = "SOTTO_TEST_DATABASE";

/// A database of its own for one test server, if the tests run on
/// PostgreSQL: a new schema, named in the connection string's
/// `search_path`. `None` on SQLite (the default).
pub async fn test_database() -> Option<String> {
    schema_database(&format!("t{:016x}", rand::random::<u64>())).await
}

/// The database of the server with data dir `data_dir`, if the tests run
/// on PostgreSQL: a schema named after the data dir, so a server started
/// again on it finds its state. For servers run as `sotto serve`
/// (`--database`); callable from any thread or runtime.
pub fn test_database_for(data_dir: &Path) -> Option<String> {
    use std::hash::{Hash, Hasher};
    std::env::var(TEST_DATABASE_ENV).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut hasher);
    let schema = format!("d{:016x}", hasher.finish());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(schema_database(&schema))
    })
    .join()
    .expect("create the test database")
}

/// A connection string for `schema` (created if missing) on the test
/// PostgreSQL server.
async fn schema_database(schema: &str) -> Option<String> {
    let base = std::env::var(TEST_DATABASE_ENV).ok()?;
    Some(schema_database_on(&base, schema).await)
}

/// A connection string for `schema` (created if missing) on the server
/// `base` names.
pub(crate) async fn schema_database_on(base: &str, schema: &str) -> String {
    let (client, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {base}: cannot connect: {e}"));
    let driver = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .await
        .expect("create a schema");
    drop(client);
    let _ = driver.await;
    let option = format!("-csearch_path={schema}");
    if base.contains("://") {
        let glue = if base.contains('?') { '&' } else { '?' };
        format!("{base}{glue}options={}", option.replace('=', "%3D"))
    } else {
        format!("{base} options='{option}'")
    }
}

/// A test server's database, on either engine, for tests that look at
/// what is stored or change it while the server is stopped. Statements are
/// written in the SQL both engines share, without parameters.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub(crate) database: Database,
    /// The SQLite file (unused on PostgreSQL).
    pub(crate) path: PathBuf,
}

impl TestDb {
    async fn pg(url: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(connection);
        client
    }

    /// Runs a statement: the rows it changed.
    pub async fn execute(&self, sql: &str) -> u64 {
        match &self.database {
            Database::Sqlite => rusqlite::Connection::open(&self.path)
                .expect("open the database")
                .execute(sql, [])
                .unwrap_or_else(|e| panic!("{sql}: {e}")) as u64,
            Database::Postgres(url) => Self::pg(url)
                .await
                .execute(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// The first column of every row, read as `T` (the types both engines
    /// read alike: integers, bytes, text).
    async fn column<T>(&self, sql: &str) -> Vec<T>
    where
        T: rusqlite::types::FromSql + for<'a> tokio_postgres::types::FromSql<'a>,
    {
        match &self.database {
            Database::Sqlite => {
                let db = rusqlite::Connection::open(&self.path).expect("open the database");
                let mut stmt = db.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                stmt.query_map([], |r| r.get::<_, T>(0))
                    .and_then(|rows| rows.collect())
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
            Database::Postgres(url) => Self::pg(url)
                .await
                .query(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .map(|r| r.get::<_, T>(0))
                .collect(),
        }
    }

    /// The first column of every row, as integers.
    pub async fn integers(&self, sql: &str) -> Vec<i64> {
        self.column(sql).await
    }

    /// The first column of the first row, as an integer.
    pub async fn integer(&self, sql: &str) -> i64 {
        *self
            .integers(sql)
            .await
            .first()
            .unwrap_or_else(|| panic!("{sql}: no rows"))
    }

    /// The first column of every row, as bytes (a BLOB or BYTEA column).
    pub async fn blobs(&self, sql: &str) -> Vec<Vec<u8>> {
        self.column(sql).await
    }

    /// The first column of every row, as text.
    pub async fn texts(&self, sql: &str) -> Vec<String> {
        self.column(sql).await
    }

    /// The server's id, as it tells clients.
    pub async fn server_id(&self) -> sotto_proto::ServerId {
        let stored = self
            .blobs("SELECT value FROM meta WHERE name = 'server_id'")
            .await;
        let bytes = stored.first().expect("a server id");
        sotto_proto::ServerId(bytes.as_slice().try_into().expect("16 bytes"))
    }

    /// Everything the database holds, as an operator can read it: on
    /// SQLite the database file and its WAL; on PostgreSQL every value of
    /// every column of every table of the server's schema, raw bytes for
    /// binary columns and text for the others.
    pub async fn contents(&self) -> Vec<u8> {
        match &self.database {
            Database::Sqlite => {
                let mut bytes = std::fs::read(&self.path).expect("read the database");
                let wal = PathBuf::from(format!("{}-wal", self.path.display()));
                bytes.extend(std::fs::read(wal).unwrap_or_default());
                bytes
            }
            Database::Postgres(url) => {
                let client = Self::pg(url).await;
                let columns = client
                    .query(
                        "SELECT table_name::text, column_name::text, data_type::text \
                         FROM information_schema.columns WHERE table_schema = current_schema()",
                        &[],
                    )
                    .await
                    .expect("list columns");
                let mut bytes = Vec::new();
                for column in columns {
                    let (table, name, kind): (String, String, String) =
                        (column.get(0), column.get(1), column.get(2));
                    let value = if kind == "bytea" {
                        format!("\"{name}\"")
                    } else {
                        format!("convert_to(\"{name}\"::text, 'UTF8')")
                    };
                    let sql =
                        format!("SELECT {value} FROM \"{table}\" WHERE \"{name}\" IS NOT NULL");
                    for row in client.query(&sql, &[]).await.expect("read a column") {
                        bytes.extend(row.get::<_, Vec<u8>>(0));
                        bytes.push(0);
                    }
                }
                bytes
            }
        }
    }

    /// Whether anything stored contains `needle`.
    pub async fn contains(&self, needle: &[u8]) -> bool {
        self.contents()
            .await
            .windows(needle.len())
            .any(|w| w == needle)
    }
}
