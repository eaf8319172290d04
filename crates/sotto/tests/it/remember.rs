//! "Remember me" (issue 12): a device signs in again without its
//! password, from a key kept beside its store; a removed device or a
//! refused token forgets it; a password change keeps it; signing in only
//! (no registration) refuses a name not known, so a typo makes no account.

use sotto_client::{ClientError, Secret, remember};
use sotto_proto::{Password, Username};
use sotto_test_support::{TestClient, TestServer, options};

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

/// Connect options for `name` in `dir` with `secret`.
fn with(
    server: &TestServer,
    name: &str,
    dir: &std::path::Path,
    secret: Secret,
) -> sotto_client::ConnectOptions {
    let mut opts = options(server.addr, name, "unused", dir);
    opts.secret = secret;
    opts
}

#[tokio::test]
async fn a_remembered_device_signs_in_without_the_password_until_it_is_removed() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let addr = server.addr.to_string();
    // Not remembered: nothing to sign in with, and nothing is sent.
    let err = sotto_client::connect(with(&server, "alice", alice.dir.path(), Secret::Remembered))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::PasswordNeeded(_)), "{err}");
    alice.client.remember_device().await.unwrap();
    assert!(remember::is_remembered(
        alice.dir.path(),
        &addr,
        &user("alice")
    ));
    let dir = alice.reconnect_later().await.dir;
    // Again, with the kept key: the same device, logged in by its token.
    let (again, _events) =
        sotto_client::connect(with(&server, "alice", dir.path(), Secret::Remembered))
            .await
            .unwrap();
    let device = again.session().device_id.clone();
    again.quit().await.unwrap();
    // Another of alice's devices removes this one (a stolen laptop): its
    // key no longer signs in, and is forgotten.
    let phone = server.client("alice").await;
    phone.client.remove_device(&device).await.unwrap();
    let err = sotto_client::connect(with(&server, "alice", dir.path(), Secret::Remembered))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::PasswordNeeded(why) if why.contains("no longer accepts")),
        "{err}"
    );
    assert!(!remember::is_remembered(dir.path(), &addr, &user("alice")));
}

#[tokio::test]
async fn a_password_change_keeps_the_device_remembered_and_forgetting_it_ends_that() {
    let server = TestServer::start().await;
    let bob = server.client("bob").await;
    bob.client.remember_device().await.unwrap();
    let stolen_key = std::fs::read(remember::key_file(
        bob.dir.path(),
        &server.addr.to_string(),
        &user("bob"),
    ))
    .unwrap();
    bob.client
        .change_password(
            Password::new("pw-bob".into()).unwrap(),
            Password::new("a new one".into()).unwrap(),
        )
        .await
        .unwrap();
    let dir = bob.reconnect_later().await.dir;
    let key_file = remember::key_file(dir.path(), &server.addr.to_string(), &user("bob"));
    // The key kept before the change opens nothing now.
    let fresh_key = std::fs::read(&key_file).unwrap();
    assert_ne!(fresh_key, stolen_key);
    std::fs::write(&key_file, &stolen_key).unwrap();
    let err = sotto_client::connect(with(&server, "bob", dir.path(), Secret::Remembered))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::PasswordNeeded(_)), "{err}");
    // The one written at the change does.
    std::fs::write(&key_file, &fresh_key).unwrap();
    let (again, _events) =
        sotto_client::connect(with(&server, "bob", dir.path(), Secret::Remembered))
            .await
            .unwrap();
    // Forgotten: the store's copy and the file go.
    again.forget_device().await.unwrap();
    assert!(!key_file.exists());
    again.quit().await.unwrap();
    std::fs::write(&key_file, &fresh_key).unwrap();
    let err = sotto_client::connect(with(&server, "bob", dir.path(), Secret::Remembered))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::PasswordNeeded(_)), "{err}");
}

#[tokio::test]
async fn signing_in_only_refuses_a_name_not_known_and_makes_no_account() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(server.addr, "alcie", "pw-alice", dir.path());
    opts.sign_in_only = true;
    let err = sotto_client::connect(opts).await.unwrap_err();
    assert_eq!(
        err.server_code(),
        Some(sotto_proto::ErrorCode::WrongPassword),
        "{err}"
    );
    // The name is still free: registering it now is a new account.
    let fresh = TestClient::connect_in(server.addr, "alcie", tempfile::tempdir().unwrap())
        .await
        .unwrap();
    assert!(fresh.client.session().registered);
}
