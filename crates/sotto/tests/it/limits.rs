//! Login limits that cannot be raced or turned against the victim: attempts
//! in flight count, failures slow down one (account, address) pair and not
//! the account's real user elsewhere, and wrong server passwords count per
//! address.

use std::net::IpAddr;

use sotto_proto::{
    Credential, DeviceId, ErrorCode, ErrorReply, Login, OpaqueMessage, PROTOCOL_VERSION, Password,
    Request, Response, Username,
};
use sotto_test_support::TestServer;
use tokio::task::JoinSet;

use crate::raw::{Auth, Raw};

const ATTACKER: &str = "127.0.0.1";
const VICTIM: &str = "127.0.0.2";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The first step of an OPAQUE login from `from`: the server's answer (a
/// challenge, or a refusal), and the connection, kept open so the attempt
/// stays in flight.
async fn first_step(
    addr: std::net::SocketAddr,
    from: &str,
    name: &str,
    server_password: Option<&str>,
) -> (Raw, Result<Response, ErrorReply>) {
    let mut raw = Raw::connect_from(addr, None, Some(ip(from))).await;
    assert!(raw.hello(PROTOCOL_VERSION).await.result.is_ok());
    let request = sotto_crypto::opaque::client_login_start("a guess")
        .unwrap()
        .1;
    let (result, _) = raw
        .ask(Request::Login(Login {
            user: Username::parse(name).unwrap(),
            credential: Credential::Opaque(OpaqueMessage(request)),
            device_id: DeviceId::parse("guesser0001").unwrap(),
            server_password: server_password.map(|p| Password::new(p.into()).unwrap()),
        }))
        .await;
    (raw, result)
}

#[tokio::test]
async fn guesses_sent_at_once_cannot_race_past_the_budget_nor_lock_out_the_user() {
    let server = TestServer::start().await;
    drop(server.client("bob").await);
    let mut set = JoinSet::new();
    for _ in 0..40 {
        let addr = server.addr;
        set.spawn(async move { first_step(addr, ATTACKER, "bob", None).await });
    }
    let mut open = Vec::new();
    let (mut challenged, mut limited) = (0, 0);
    while let Some(done) = set.join_next().await {
        let (raw, result) = done.unwrap();
        match result {
            Ok(Response::Challenge { .. }) => challenged += 1,
            Err(e) if e.code == ErrorCode::RateLimited => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
        // Every attempt stays in flight until the end.
        open.push(raw);
    }
    assert_eq!(
        (challenged, limited),
        (sotto_server::limits::FREE_ACCOUNT_FAILURES as usize, 35),
        "only the free attempts may go ahead"
    );
    // Bob himself, from his own address, is not slowed at all.
    let (_bob, result) = Raw::try_login_from(
        server.addr,
        Some(ip(VICTIM)),
        "bob",
        DeviceId::parse("laptop-bob").unwrap(),
        Auth::Password("pw-bob".into()),
        None,
    )
    .await;
    assert!(matches!(result, Ok(Response::LoggedIn(_))), "{result:?}");
    let (_raw, result) = first_step(server.addr, VICTIM, "bob", None).await;
    assert!(
        matches!(result, Ok(Response::Challenge { .. })),
        "{result:?}"
    );
    // The attacker's failures (the attempts given up) slow the attacker.
    drop(open);
    let (_raw, result) = first_step(server.addr, ATTACKER, "bob", None).await;
    let e = result.unwrap_err();
    assert_eq!(e.code, ErrorCode::RateLimited);
    assert!(e.message.contains("try again in"), "{}", e.message);
}

#[tokio::test]
async fn wrong_server_passwords_count_per_address() {
    let server = TestServer::start_with(|c| {
        c.server_password = Some(Password::new("letmein".into()).unwrap())
    })
    .await;
    let mut codes = Vec::new();
    for _ in 0..sotto_server::limits::FREE_SERVER_PASSWORD_FAILURES + 2 {
        let (_raw, result) = first_step(server.addr, ATTACKER, "anyone", Some("nope")).await;
        codes.push(result.unwrap_err().code);
    }
    assert!(
        codes.starts_with(&[ErrorCode::WrongServerPassword; 5]),
        "{codes:?}"
    );
    assert_eq!(codes.last(), Some(&ErrorCode::RateLimited));
    // Another address, with the right server password, gets in.
    let (_raw, result) = first_step(server.addr, VICTIM, "alice", Some("letmein")).await;
    assert!(
        matches!(result, Ok(Response::Challenge { .. })),
        "{result:?}"
    );
}

/// After a server restart everyone reconnects at once: a class behind one
/// address must not be refused. Session tokens cannot be guessed, so token
/// logins are not counted.
#[tokio::test]
async fn many_token_logins_from_one_address_at_once_all_succeed() {
    let server = TestServer::start().await;
    let mut tokens = Vec::new();
    for n in 0..40 {
        let name = format!("pupil{n}");
        let (raw, result) = Raw::try_login(
            server.addr,
            &name,
            "laptop01",
            Auth::Password("pw".into()),
            None,
        )
        .await;
        let Ok(Response::LoggedIn(logged_in)) = result else {
            panic!("{result:?}");
        };
        drop(raw);
        tokens.push((name, logged_in.session_token));
    }
    let mut set = JoinSet::new();
    for (name, token) in tokens {
        let addr = server.addr;
        set.spawn(async move {
            Raw::try_login(
                addr,
                &name,
                "laptop01",
                Auth::Credential(Credential::Token(token)),
                None,
            )
            .await
            .1
        });
    }
    while let Some(done) = set.join_next().await {
        let result = done.unwrap();
        assert!(matches!(result, Ok(Response::LoggedIn(_))), "{result:?}");
    }
}
