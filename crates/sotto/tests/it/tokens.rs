//! Session tokens: a password login issues one per device; it logs that
//! device in without the password until the next password login replaces it.

use sotto_proto::{Credential, ErrorCode, Response, SessionToken};
use sotto_test_support::TestServer;

use crate::raw::Raw;

fn password(name: &str) -> crate::raw::Auth {
    crate::raw::Auth::Password(format!("pw-{name}"))
}

async fn token_of(server: &TestServer, device: &str) -> SessionToken {
    let (_raw, result) =
        Raw::try_login(server.addr, "alice", device, password("alice"), None).await;
    match result {
        Ok(Response::LoggedIn(logged_in)) => logged_in.session_token,
        other => panic!("expected a login, got {other:?}"),
    }
}

#[tokio::test]
async fn tokens_log_in_their_device_only_until_replaced() {
    let server = TestServer::start().await;
    let token = token_of(&server, "laptop").await;

    let (_raw, result) = Raw::try_login(
        server.addr,
        "alice",
        "laptop",
        Credential::Token(token.clone()),
        None,
    )
    .await;
    match result {
        Ok(Response::LoggedIn(logged_in)) => assert_eq!(logged_in.session_token, token),
        other => panic!("token login failed: {other:?}"),
    }
    // Another device cannot use it, and neither can another account.
    let (_raw, result) = Raw::try_login(
        server.addr,
        "alice",
        "phone",
        Credential::Token(token.clone()),
        None,
    )
    .await;
    assert_eq!(result.unwrap_err().code, ErrorCode::WrongPassword);
    let (_raw, result) = Raw::try_login(
        server.addr,
        "bob",
        "laptop",
        Credential::Token(token.clone()),
        None,
    )
    .await;
    assert_eq!(result.unwrap_err().code, ErrorCode::WrongPassword);
    // A made-up token fails.
    let forged = SessionToken::parse(&"ab".repeat(32)).unwrap();
    let (_raw, result) = Raw::try_login(
        server.addr,
        "alice",
        "laptop",
        Credential::Token(forged),
        None,
    )
    .await;
    assert_eq!(result.unwrap_err().code, ErrorCode::WrongPassword);

    // A new password login on the device revokes the old token.
    let newer = token_of(&server, "laptop").await;
    assert_ne!(newer, token);
    let (_raw, result) = Raw::try_login(
        server.addr,
        "alice",
        "laptop",
        Credential::Token(token),
        None,
    )
    .await;
    assert_eq!(result.unwrap_err().code, ErrorCode::WrongPassword);
    let (_raw, result) = Raw::try_login(
        server.addr,
        "alice",
        "laptop",
        Credential::Token(newer),
        None,
    )
    .await;
    assert!(result.is_ok());
}
