//! The server never learns a password (issue 10, point 1): logins and
//! registrations are OPAQUE, a password change too, and an account made
//! before OPAQUE moves over at its next login. Checked from where the
//! operator stands: what the server receives and what it stores.

use sotto_client::ClientError;
use sotto_proto::{Credential, ErrorCode, Password, Response};
use sotto_test_support::{TestServer, options};
use zeroize::Zeroizing;

use crate::mitm::{contains, hostile, recorder};
use crate::raw::Raw;

fn password(text: &str) -> Password {
    Password::new(text.into()).unwrap()
}

fn code(result: Result<(sotto_client::Client, sotto_client::Events), ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Server(e)) => e.code,
        Err(other) => panic!("expected a server error, got {other}"),
        Ok(_) => panic!("expected an error, got a session"),
    }
}

/// Where `user`'s local store for `server` lives in `dir`.
async fn store_path(server: &TestServer, dir: &std::path::Path, user: &str) -> std::path::PathBuf {
    let server_id = server.db().server_id().await;
    let addr = sotto_client::addr::ServerAddr::parse(&server.addr.to_string()).unwrap();
    let part = sotto_client::device::server_part(&server_id, &server.fingerprint, &addr);
    let user = sotto_proto::Username::parse(user).unwrap();
    sotto_client::local_store::store_file(dir, &user, &part)
}

/// The server's database, as the operator can read it.
async fn stored(server: &TestServer) -> Vec<u8> {
    server.db().contents().await
}

#[tokio::test]
async fn the_operator_never_sees_a_password_neither_at_login_nor_at_a_change() {
    let server = TestServer::start().await;
    let (proxy, recording) = recorder(&server).await;
    let first = "correct horse battery staple";
    let second = "Tr0ub4dor & 3, and then some";

    // Registration, then a login from another machine, then a change.
    let dir = tempfile::tempdir().unwrap();
    let (client, _events) = sotto_client::connect(options(proxy, "alice", first, dir.path()))
        .await
        .unwrap();
    assert!(client.session().registered);
    client.quit().await.unwrap();
    let other = tempfile::tempdir().unwrap();
    let (client, _events) = sotto_client::connect(options(proxy, "alice", first, other.path()))
        .await
        .unwrap();
    assert!(!client.session().registered);
    client
        .change_password(password(first), password(second))
        .await
        .unwrap();
    client.quit().await.unwrap();
    let third = tempfile::tempdir().unwrap();
    sotto_client::connect(options(proxy, "alice", second, third.path()))
        .await
        .unwrap();
    let fourth = tempfile::tempdir().unwrap();
    assert_eq!(
        code(sotto_client::connect(options(proxy, "alice", first, fourth.path())).await),
        ErrorCode::WrongPassword
    );

    let sent = recording.lock().unwrap().clone();
    // The recording is the plaintext of the protocol: the name is in it.
    assert!(contains(&sent, b"alice"));
    for pw in [first, second] {
        assert!(
            !contains(&sent, pw.as_bytes()),
            "the server received {pw:?}"
        );
        assert!(!contains(&stored(&server).await, pw.as_bytes()));
    }
    // What it keeps is an OPAQUE record, no password hash.
    let db = server.db();
    let hash = db
        .texts("SELECT pw_hash FROM users WHERE name = 'alice'")
        .await;
    let record = db
        .blobs("SELECT opaque FROM users WHERE name = 'alice'")
        .await;
    assert_eq!(hash, [""]);
    assert!(!record.concat().is_empty());
}

#[tokio::test]
async fn a_server_asking_for_the_password_in_the_clear_gets_nothing() {
    let server = TestServer::start().await;
    let secret = "never to be sent";
    let dir = tempfile::tempdir().unwrap();
    let (client, _events) =
        sotto_client::connect(options(server.addr, "alice", secret, dir.path()))
            .await
            .unwrap();
    client.quit().await.unwrap();
    let server_id = server.db().server_id().await;
    // Same certificate, same server id: alice's device knows it.
    let (evil, seen) = hostile(&server, server_id).await;
    let fresh = tempfile::tempdir().unwrap();
    for data_dir in [dir.path(), fresh.path()] {
        let result = sotto_client::connect(options(evil, "alice", secret, data_dir)).await;
        match result {
            Err(ClientError::Server(e)) => {
                assert_eq!(e.code, ErrorCode::LegacyLogin);
                assert!(
                    e.message.contains("does not send the password"),
                    "{}",
                    e.message
                );
            }
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
    }
    let seen = seen.lock().unwrap();
    assert!(
        !seen.credentials.contains(&"legacy password"),
        "{:?}",
        seen.credentials
    );
    assert!(
        seen.credentials.contains(&"opaque"),
        "{:?}",
        seen.credentials
    );
    assert!(!contains(&seen.bytes, secret.as_bytes()));
}

#[tokio::test]
async fn an_account_made_before_opaque_moves_over_at_its_next_login() {
    let mut server = TestServer::start().await;
    drop(server.client("someone").await);
    server.stop().await;
    // An account as servers stored them before: an Argon2id hash only.
    let hash = sotto_server::bench_api::Hasher::default()
        .hash(Zeroizing::new("old-pw".into()))
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$") && !hash.contains('\''));
    server
        .db()
        .execute(&format!(
            "INSERT INTO users (name, pw_hash, created_at) VALUES ('olga', '{}', 0)",
            hash.as_str()
        ))
        .await;
    server.restart().await;

    // A device that never used the account does not send the password.
    let fresh = tempfile::tempdir().unwrap();
    assert_eq!(
        code(sotto_client::connect(options(server.addr, "olga", "old-pw", fresh.path())).await),
        ErrorCode::LegacyLogin
    );
    // The device that did (its store was written before OPAQUE) sends it
    // this once, and moves the account over.
    let dir = tempfile::tempdir().unwrap();
    sotto_client::local_store::LocalStore::open(
        &store_path(&server, dir.path(), "olga").await,
        "old-pw",
    )
    .unwrap();
    sotto_client::connect(options(server.addr, "olga", "old-pw", dir.path()))
        .await
        .unwrap();
    let db = server.db();
    let hash = db
        .texts("SELECT pw_hash FROM users WHERE name = 'olga'")
        .await;
    assert_eq!(hash, [""], "the old hash is forgotten");
    let records = db
        .blobs("SELECT opaque FROM users WHERE name = 'olga' AND opaque IS NOT NULL")
        .await;
    assert_eq!(records.len(), 1);
    // From now on OPAQUE, from any device; the password itself is refused.
    let later = tempfile::tempdir().unwrap();
    sotto_client::connect(options(server.addr, "olga", "old-pw", later.path()))
        .await
        .unwrap();
    let (_raw, result) = Raw::try_login(
        server.addr,
        "olga",
        "probe",
        Credential::LegacyPassword(password("old-pw")),
        None,
    )
    .await;
    assert_eq!(result.unwrap_err().code, ErrorCode::WrongPassword);
}

#[tokio::test]
async fn a_password_change_reseals_the_local_store_and_keeps_the_device() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (client, _events) =
        sotto_client::connect(options(server.addr, "alice", "first-pw", dir.path()))
            .await
            .unwrap();
    let device = client.session().device_id.clone();
    // A wrong current password changes nothing.
    let refused = client
        .change_password(password("not-it"), password("second-pw"))
        .await;
    assert!(
        matches!(&refused, Err(ClientError::Server(e)) if e.code == ErrorCode::WrongPassword),
        "{refused:?}"
    );
    client
        .change_password(password("first-pw"), password("second-pw"))
        .await
        .unwrap();
    client.quit().await.unwrap();
    // Re-sealed at once, nothing left pending.
    let path = store_path(&server, dir.path(), "alice").await;
    let (store, _) = sotto_client::local_store::LocalStore::open(&path, "second-pw").unwrap();
    assert_eq!(store.pending_change(), None);
    drop(store);
    assert!(sotto_client::local_store::LocalStore::open(&path, "first-pw").is_err());

    // This device: the new password opens its store (the same device).
    let (client, _events) =
        sotto_client::connect(options(server.addr, "alice", "second-pw", dir.path()))
            .await
            .unwrap();
    assert_eq!(client.session().device_id, device);
    client.quit().await.unwrap();
    // The old one does not, and is not tried against the server.
    let old = sotto_client::connect(options(server.addr, "alice", "first-pw", dir.path())).await;
    assert!(
        matches!(&old, Err(ClientError::LocalStore(m)) if m.contains("unlock")),
        "{:?}",
        old.map(|_| ())
    );
    // Another device: only the new password logs in.
    let other = tempfile::tempdir().unwrap();
    assert_eq!(
        code(sotto_client::connect(options(server.addr, "alice", "first-pw", other.path())).await),
        ErrorCode::WrongPassword
    );
    sotto_client::connect(options(server.addr, "alice", "second-pw", other.path()))
        .await
        .unwrap();
    // A raw peer cannot change it without the current one.
    let mut raw = Raw::login(server.addr, "bob").await;
    let request = sotto_crypto::opaque::client_register_start("mine now")
        .unwrap()
        .1;
    let (result, _) = raw
        .ask(sotto_proto::Request::PasswordStart {
            old: None,
            new: sotto_proto::OpaqueMessage(request),
        })
        .await;
    assert_eq!(result.unwrap_err().code, ErrorCode::Invalid);
    let (result, _) = raw
        .ask(sotto_proto::Request::PasswordFinish {
            old: None,
            new: sotto_proto::OpaqueMessage(vec![0; 192]),
        })
        .await;
    assert!(!matches!(result, Ok(Response::Done)), "{result:?}");
}

/// A client stopped in the middle of a password change: the next login
/// asks the server which password is right and settles the local store.
#[tokio::test]
async fn an_interrupted_password_change_is_settled_at_the_next_login() {
    use sotto_client::local_store::LocalStore;
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (client, _events) =
        sotto_client::connect(options(server.addr, "alice", "first", dir.path()))
            .await
            .unwrap();
    client.quit().await.unwrap();
    let path = store_path(&server, dir.path(), "alice").await;

    // Stopped before the server heard of it: the old password still works.
    LocalStore::open(&path, "first")
        .unwrap()
        .0
        .begin_change("second")
        .unwrap();
    sotto_client::connect(options(server.addr, "alice", "first", dir.path()))
        .await
        .unwrap()
        .0
        .quit()
        .await
        .unwrap();
    let (store, _) = LocalStore::open(&path, "first").unwrap();
    assert_eq!(store.pending_change(), None, "the change is forgotten");
    drop(store);

    // Stopped after the server changed it: the new password opens the
    // store and finishes the change.
    LocalStore::open(&path, "first")
        .unwrap()
        .0
        .begin_change("second")
        .unwrap();
    let other = tempfile::tempdir().unwrap();
    let (phone, _events) =
        sotto_client::connect(options(server.addr, "alice", "first", other.path()))
            .await
            .unwrap();
    phone
        .change_password(password("first"), password("second"))
        .await
        .unwrap();
    // The old password opens the store, but the server says which one is
    // right now (the token is not used while a change is pending).
    assert_eq!(
        code(sotto_client::connect(options(server.addr, "alice", "first", dir.path())).await),
        ErrorCode::WrongPassword
    );
    sotto_client::connect(options(server.addr, "alice", "second", dir.path()))
        .await
        .unwrap()
        .0
        .quit()
        .await
        .unwrap();
    let (store, _) = LocalStore::open(&path, "second").unwrap();
    assert_eq!(store.pending_change(), None, "the change is finished");
    drop(store);
    assert!(LocalStore::open(&path, "first").is_err());
}
