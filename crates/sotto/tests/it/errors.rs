//! Login and account errors, each with a clear code and message.

use sotto_client::{ClientError, TrustPolicy};
use sotto_proto::{ErrorCode, Password};
use sotto_server::Registration;
use sotto_test_support::{TestServer, options};

fn server_code(
    result: Result<(sotto_client::Client, sotto_client::Events), ClientError>,
) -> (ErrorCode, String) {
    match result {
        Err(ClientError::Server(e)) => (e.code, e.message),
        Err(other) => panic!("expected a server error, got {other}"),
        Ok(_) => panic!("expected a server error, got a session"),
    }
}

#[tokio::test]
async fn wrong_password_and_taken_names() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    assert!(alice.client.session().registered);
    let dir = tempfile::tempdir().unwrap();
    let (code, message) = server_code(
        sotto_client::connect(options(server.addr, "alice", "wrong", dir.path())).await,
    );
    assert_eq!(code, ErrorCode::WrongPassword);
    assert!(message.contains("taken"), "{message}");
    let mut register = options(server.addr, "Alice", "anything", dir.path());
    register.register_only = true;
    assert_eq!(
        server_code(sotto_client::connect(register).await).0,
        ErrorCode::UsernameTaken
    );
    // The right password still works, as a second device, and names are case-insensitive.
    let again = sotto_client::connect(options(server.addr, "ALICE", "pw-alice", dir.path()))
        .await
        .unwrap();
    assert!(!again.0.session().registered);
}

#[tokio::test]
async fn repeated_failures_are_rate_limited() {
    let server = TestServer::start().await;
    server.client("alice").await;
    let dir = tempfile::tempdir().unwrap();
    let mut codes = Vec::new();
    for _ in 0..7 {
        codes.push(
            server_code(
                sotto_client::connect(options(server.addr, "alice", "guess", dir.path())).await,
            )
            .0,
        );
    }
    assert_eq!(codes[..5], [ErrorCode::WrongPassword; 5]);
    assert_eq!(codes[5..], [ErrorCode::RateLimited; 2]);
    // Even the right password waits out the lockout.
    let (code, message) = server_code(
        sotto_client::connect(options(server.addr, "alice", "pw-alice", dir.path())).await,
    );
    assert_eq!(code, ErrorCode::RateLimited);
    assert!(message.contains("try again"), "{message}");
}

#[tokio::test]
async fn closed_registration_refuses_new_names() {
    let server = TestServer::start_with(|c| c.registration = Registration::Closed).await;
    let dir = tempfile::tempdir().unwrap();
    let (code, message) =
        server_code(sotto_client::connect(options(server.addr, "newbie", "pw", dir.path())).await);
    assert_eq!(code, ErrorCode::RegistrationClosed);
    assert!(message.contains("newbie"), "{message}");
}

#[tokio::test]
async fn server_password_is_required_and_checked() {
    let server = TestServer::start_with(|c| {
        c.server_password = Some(Password::new("letmein".into()).unwrap())
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let missing =
        sotto_client::connect(options(server.addr, "alice", "pw-alice", dir.path())).await;
    assert!(
        matches!(missing, Err(ClientError::ServerPasswordRequired)),
        "{missing:?}"
    );
    let mut wrong = options(server.addr, "alice", "pw-alice", dir.path());
    wrong.server_password = Some(Password::new("nope".into()).unwrap());
    assert_eq!(
        server_code(sotto_client::connect(wrong).await).0,
        ErrorCode::WrongServerPassword
    );
    let mut right = options(server.addr, "alice", "pw-alice", dir.path());
    right.server_password = Some(Password::new("letmein".into()).unwrap());
    sotto_client::connect(right).await.unwrap();
}

#[tokio::test]
async fn unreachable_server_is_reported() {
    // Bind and drop to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(
        format!("127.0.0.1:{port}").parse().unwrap(),
        "alice",
        "pw",
        dir.path(),
    );
    opts.trust = TrustPolicy::RefuseUnknown;
    let result = sotto_client::connect(opts).await;
    assert!(
        matches!(result, Err(ClientError::Unreachable { .. })),
        "{result:?}"
    );
}
