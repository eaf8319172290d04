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

/// Under closed registration, whether a name exists cannot be learned:
/// a registration is refused with the same words for every name, and a
/// login with a wrong password gets the same answer as one for a name that
/// does not exist.
#[tokio::test]
async fn closed_registration_does_not_tell_which_names_exist() {
    use crate::raw::Raw;
    use sotto_proto::{Credential, OpaqueMessage};
    let mut server = TestServer::start().await;
    server.client("alice").await;
    server.stop().await;
    server.config.registration = Registration::Closed;
    server.restart().await;

    // The client library: the same code and words, but for the name.
    let dir = tempfile::tempdir().unwrap();
    let (new_code, new_message) =
        server_code(sotto_client::connect(options(server.addr, "newbie", "pw", dir.path())).await);
    let (old_code, old_message) = server_code(
        sotto_client::connect(options(server.addr, "alice", "wrong", dir.path())).await,
    );
    assert_eq!(new_code, ErrorCode::WrongPassword);
    assert_eq!(old_code, ErrorCode::WrongPassword);
    assert_eq!(
        new_message.replace("newbie", "NAME"),
        old_message.replace("alice", "NAME")
    );
    assert!(new_message.contains("does not register"), "{new_message}");

    // On the wire: a registration is refused alike for both names, and a
    // login's challenge has the same shape for both.
    let request = sotto_crypto::opaque::client_register_start("pw").unwrap().1;
    let mut replies = Vec::new();
    for name in ["alice", "newbie"] {
        let (_raw, result) = Raw::try_login(
            server.addr,
            name,
            "probe",
            Credential::Register(OpaqueMessage(request.clone())),
            None,
        )
        .await;
        let e = result.unwrap_err();
        replies.push((e.code, e.message));
    }
    assert_eq!(replies[0], replies[1]);
    assert_eq!(replies[0].0, ErrorCode::RegistrationClosed);
    let request = sotto_crypto::opaque::client_login_start("pw").unwrap().1;
    let mut sizes = Vec::new();
    for name in ["alice", "newbie"] {
        let (_raw, result) = Raw::try_login(
            server.addr,
            name,
            "probe",
            Credential::Opaque(OpaqueMessage(request.clone())),
            None,
        )
        .await;
        match result {
            Ok(sotto_proto::Response::Challenge { message }) => sizes.push(message.0.len()),
            other => panic!("expected a challenge, got {other:?}"),
        }
    }
    assert_eq!(sizes[0], sizes[1]);
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
