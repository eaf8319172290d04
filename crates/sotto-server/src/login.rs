//! Authenticating a login: the server password, the login limiter, then
//! an OPAQUE login or registration (two round trips: [`start`] answers
//! the client's first message, [`finish`] checks its last), a device
//! session token, or, once per account made before OPAQUE, the old
//! password hash. Runs in the connection task.
//!
//! Every answer about the account is the same whether or not the name
//! exists: an OPAQUE login for an unknown name gets a challenge shaped and
//! computed like a real one and fails at the end with the same
//! `wrong_password`; where registration is closed, a registration is
//! refused before the name is looked up.

use std::net::IpAddr;

use rand::RngCore;
use sha2::{Digest, Sha256};
use sotto_crypto::opaque::{self, Record, ServerLoginState};
use sotto_proto::{
    Credential, ErrorCode, ErrorReply, Login, OpaqueMessage, Password, SessionToken, Username,
};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use crate::Registration;
use crate::conn::Shared;
use crate::core::Op;
use crate::limiter::{Attempt, seconds};
use crate::store;

/// Who a login proved to be.
#[derive(Debug)]
pub(crate) struct Authenticated {
    pub user_id: i64,
    /// The account was created by this login.
    pub registered: bool,
    /// The login used the old password hash: the account must move over
    /// to OPAQUE on this connection ([`sotto_proto::Request::PasswordStart`]
    /// without the old password).
    pub legacy: bool,
    /// The token to return in `LoggedIn`.
    pub session_token: SessionToken,
    /// The SHA-256 of a newly issued token, to store for the device.
    pub token_hash: Option<[u8; 32]>,
}

/// What the first message of a login led to.
#[derive(Debug)]
pub(crate) enum Step {
    Done(Authenticated),
    /// Reply with the server's OPAQUE message; the login goes on with the
    /// client's last one.
    Challenge(OpaqueMessage, Box<Pending>),
}

/// An OPAQUE login or registration waiting for the client's last message.
/// Dropping it (the connection went away, or another login began) counts a
/// failed attempt.
#[derive(Debug)]
pub(crate) struct Pending {
    name: Username,
    kind: PendingKind,
    attempt: Attempt,
}

#[derive(Debug)]
enum PendingKind {
    Login {
        state: ServerLoginState,
        user_id: Option<i64>,
    },
    Register(crate::limiter::Registration),
}

fn error(code: ErrorCode, message: impl Into<String>) -> ErrorReply {
    ErrorReply::new(code, message)
}

fn internal(what: &str, e: impl std::fmt::Display) -> ErrorReply {
    tracing::error!("{what}: {e:#}");
    error(ErrorCode::Internal, format!("could not {what}"))
}

fn shutting_down() -> ErrorReply {
    error(ErrorCode::ShuttingDown, "the server is shutting down")
}

fn malformed(e: opaque::OpaqueError) -> ErrorReply {
    error(ErrorCode::BadRequest, format!("login message: {e}"))
}

/// The answer to a wrong password, a wrong token's account, or a name that
/// does not exist: the same words.
pub(crate) fn wrong_password(name: &Username) -> ErrorReply {
    error(
        ErrorCode::WrongPassword,
        format!("wrong name or password for {name}"),
    )
}

fn rate_limited(name: &Username, wait: std::time::Duration) -> ErrorReply {
    error(
        ErrorCode::RateLimited,
        format!(
            "too many failed logins for {name} from your address; try again in {} s",
            seconds(wait)
        ),
    )
}

/// Checks the server password, then takes the login's first step.
pub(crate) async fn start(shared: &Shared, ip: IpAddr, login: &Login) -> Result<Step, ErrorReply> {
    let name = &login.user;
    if let Some(required) = &shared.config.server_password {
        let attempt = shared.limiter.begin_server_password(ip).map_err(|wait| {
            error(
                ErrorCode::RateLimited,
                format!(
                    "too many wrong server passwords from your address; try again in {} s",
                    seconds(wait)
                ),
            )
        })?;
        let Some(given) = &login.server_password else {
            attempt.neutral();
            return Err(error(
                ErrorCode::ServerPasswordRequired,
                "this server requires a server password",
            ));
        };
        if !bool::from(
            given
                .expose()
                .as_bytes()
                .ct_eq(required.expose().as_bytes()),
        ) {
            return Err(error(
                ErrorCode::WrongServerPassword,
                "wrong server password",
            ));
        }
        attempt.succeeded();
    }
    // A session token is 256 random bits: nothing to guess, so token logins
    // (every reconnect) are not counted. Counting them in flight would
    // refuse a class or an office behind one address reconnecting at once
    // after a server restart.
    if let Credential::Token(token) = &login.credential {
        return token_login(shared, login, token).await;
    }
    let attempt = shared
        .limiter
        .begin_login(name.as_str(), ip)
        .map_err(|wait| rate_limited(name, wait))?;
    match &login.credential {
        Credential::Token(token) => token_login(shared, login, token).await,
        Credential::Opaque(request) => opaque_start(shared, name, request, attempt).await,
        Credential::Register(request) => register_start(shared, ip, name, request, attempt).await,
        Credential::LegacyPassword(password) => legacy_login(shared, name, password, attempt).await,
    }
}

async fn lookup(shared: &Shared, name: &Username) -> Result<Option<store::StoredUser>, ErrorReply> {
    shared
        .store
        .find_user(name.as_str())
        .await
        .map_err(|e| internal("read accounts", e))
}

async fn token_login(
    shared: &Shared,
    login: &Login,
    token: &SessionToken,
) -> Result<Step, ErrorReply> {
    let (user, stored) = shared
        .store
        .user_and_token(login.user.as_str(), login.device_id.as_str())
        .await
        .map_err(|e| internal("read accounts", e))?;
    let given: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
    match (user, stored) {
        (Some(user), Some(stored)) if bool::from(given.as_slice().ct_eq(&stored)) => {
            Ok(Step::Done(Authenticated {
                user_id: user.id,
                registered: false,
                legacy: false,
                session_token: token.clone(),
                token_hash: None,
            }))
        }
        _ => Err(error(
            ErrorCode::WrongPassword,
            format!(
                "invalid session token for {} on this device: log in with the password",
                login.user
            ),
        )),
    }
}

async fn opaque_start(
    shared: &Shared,
    name: &Username,
    request: &OpaqueMessage,
    attempt: Attempt,
) -> Result<Step, ErrorReply> {
    let user = lookup(shared, name).await?;
    let (user_id, record) = match user {
        Some(user) => match (user.record, user.legacy_hash) {
            (Some(record), _) => (
                Some(user.id),
                Some(Record::from_bytes(&record).map_err(|e| internal("read a login record", e))?),
            ),
            (None, Some(_)) => {
                // Counted as a failure: the answer says the account exists.
                drop(attempt);
                return Err(error(
                    ErrorCode::LegacyLogin,
                    format!(
                        "the account {name} was made before logins stopped sending passwords: \
                         log in once with the password itself to move it over"
                    ),
                ));
            }
            // Neither (a benchmark's account): no password logs in.
            (None, None) => (None, None),
        },
        None => (None, None),
    };
    let (state, reply) = opaque::server_login_start(
        &shared.opaque,
        record.as_ref(),
        &request.0,
        name.as_str(),
        &shared.server_id.0,
    )
    .map_err(malformed)?;
    Ok(Step::Challenge(
        OpaqueMessage(reply),
        Box::new(Pending {
            name: name.clone(),
            kind: PendingKind::Login { state, user_id },
            attempt,
        }),
    ))
}

async fn register_start(
    shared: &Shared,
    ip: IpAddr,
    name: &Username,
    request: &OpaqueMessage,
    attempt: Attempt,
) -> Result<Step, ErrorReply> {
    if shared.config.registration == Registration::Closed {
        // Before looking the name up: the same answer for every name.
        attempt.neutral();
        return Err(error(
            ErrorCode::RegistrationClosed,
            "this server does not register new accounts",
        ));
    }
    if lookup(shared, name).await?.is_some() {
        // Not counted: clients on a new device ask to register first (the
        // name may be new), so counting this would slow every real user's
        // first login on a device, and a class behind one address. Where
        // registration is open, anyone may learn that a name is taken.
        attempt.neutral();
        return Err(error(
            ErrorCode::UsernameTaken,
            format!("the name '{name}' is taken; choose another"),
        ));
    }
    let per_hour = shared.config.quotas.registrations_per_hour;
    let slot = match shared.limiter.begin_registration(ip, per_hour) {
        Ok(slot) => slot,
        Err(wait) => {
            attempt.neutral();
            return Err(error(
                ErrorCode::QuotaExceeded,
                format!(
                    "{per_hour} new accounts an hour may be made from your address; \
                     try again in {} min",
                    seconds(wait).div_ceil(60)
                ),
            ));
        }
    };
    let reply = opaque::server_register_start(&shared.opaque, &request.0, name.as_str())
        .map_err(malformed)?;
    Ok(Step::Challenge(
        OpaqueMessage(reply),
        Box::new(Pending {
            name: name.clone(),
            kind: PendingKind::Register(slot),
            attempt,
        }),
    ))
}

/// Checks the client's last message of an OPAQUE login or registration.
pub(crate) async fn finish(
    shared: &Shared,
    pending: Pending,
    message: &OpaqueMessage,
) -> Result<Authenticated, ErrorReply> {
    let Pending {
        name,
        kind,
        attempt,
    } = pending;
    let (user_id, registered) = match kind {
        PendingKind::Login { state, user_id } => match (state.finish(&message.0), user_id) {
            (Ok(()), Some(user_id)) => (user_id, false),
            _ => return Err(wrong_password(&name)),
        },
        PendingKind::Register(slot) => {
            let record = opaque::server_register_finish(&message.0).map_err(malformed)?;
            let id = register(shared, &name, record).await?;
            slot.succeeded();
            (id, true)
        }
    };
    attempt.succeeded();
    let (session_token, token_hash) = new_token()?;
    Ok(Authenticated {
        user_id,
        registered,
        legacy: false,
        session_token,
        token_hash: Some(token_hash),
    })
}

/// An account made before OPAQUE, checked against its old hash once.
async fn legacy_login(
    shared: &Shared,
    name: &Username,
    password: &Password,
    attempt: Attempt,
) -> Result<Step, ErrorReply> {
    let user = lookup(shared, name).await?;
    let password = Zeroizing::new(password.expose().to_owned());
    let user = match user {
        Some(store::StoredUser {
            id,
            legacy_hash: Some(hash),
            record: None,
        }) => match shared.hasher.verify(password, hash).await {
            Ok(true) => Some(id),
            Ok(false) => None,
            Err(e) => return Err(internal("check the password", e)),
        },
        _ => {
            // The same cost as a real check, and the same answer.
            let _ = shared.hasher.hash(password).await;
            None
        }
    };
    let Some(user_id) = user else {
        return Err(wrong_password(name));
    };
    attempt.succeeded();
    tracing::info!(user = %name, "logged in with an old password hash; moving it over");
    let (session_token, token_hash) = new_token()?;
    Ok(Step::Done(Authenticated {
        user_id,
        registered: false,
        legacy: true,
        session_token,
        token_hash: Some(token_hash),
    }))
}

fn new_token() -> Result<(SessionToken, [u8; 32]), ErrorReply> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    let text = Zeroizing::new(hex_lower(bytes.as_ref()));
    let session_token =
        SessionToken::parse(&text).ok_or_else(|| internal("issue a session token", "bad token"))?;
    Ok((session_token, Sha256::digest(text.as_bytes()).into()))
}

async fn register(shared: &Shared, name: &Username, record: Record) -> Result<i64, ErrorReply> {
    let (reply, rx) = oneshot::channel();
    let op = Op::Register {
        name: name.clone(),
        record: record.as_bytes().to_vec(),
        reply,
    };
    shared.core.send(op).await.map_err(|_| shutting_down())?;
    let id = rx.await.map_err(|_| shutting_down())??;
    tracing::info!(user = %name, "registered");
    Ok(id)
}

/// A password change started on a logged-in connection.
#[derive(Debug)]
pub(crate) struct PasswordChange {
    /// The old password's login, unless the account is moving over.
    old: Option<(ServerLoginState, Attempt)>,
}

/// Answers [`sotto_proto::Request::PasswordStart`]: `old` is `None` only
/// when `legacy` (the connection logged in with the old hash).
pub(crate) async fn password_start(
    shared: &Shared,
    ip: IpAddr,
    name: &Username,
    legacy: bool,
    old: Option<&OpaqueMessage>,
    new: &OpaqueMessage,
) -> Result<(PasswordChange, Option<OpaqueMessage>, OpaqueMessage), ErrorReply> {
    let new_reply =
        opaque::server_register_start(&shared.opaque, &new.0, name.as_str()).map_err(malformed)?;
    let old = match old {
        None if legacy => None,
        None => {
            return Err(error(
                ErrorCode::Invalid,
                "changing the password needs a login with the current one",
            ));
        }
        Some(request) => {
            let attempt = shared
                .limiter
                .begin_login(name.as_str(), ip)
                .map_err(|wait| rate_limited(name, wait))?;
            let record = lookup(shared, name)
                .await?
                .and_then(|u| u.record)
                .map(|r| Record::from_bytes(&r))
                .transpose()
                .map_err(|e| internal("read a login record", e))?;
            let (state, reply) = opaque::server_login_start(
                &shared.opaque,
                record.as_ref(),
                &request.0,
                name.as_str(),
                &shared.server_id.0,
            )
            .map_err(malformed)?;
            Some((state, attempt, OpaqueMessage(reply)))
        }
    };
    let (old, old_reply) = match old {
        Some((state, attempt, reply)) => (Some((state, attempt)), Some(reply)),
        None => (None, None),
    };
    Ok((PasswordChange { old }, old_reply, OpaqueMessage(new_reply)))
}

/// Finishes a password change: checks the old password's login, stores
/// the new record.
pub(crate) async fn password_finish(
    shared: &Shared,
    name: &Username,
    user_id: i64,
    change: PasswordChange,
    old: Option<&OpaqueMessage>,
    new: &OpaqueMessage,
) -> Result<(), ErrorReply> {
    match (change.old, old) {
        (None, _) => {}
        (Some((state, attempt)), Some(finalization)) => {
            if state.finish(&finalization.0).is_err() {
                return Err(wrong_password(name));
            }
            attempt.succeeded();
        }
        (Some(_), None) => return Err(wrong_password(name)),
    }
    let record = opaque::server_register_finish(&new.0).map_err(malformed)?;
    let (reply, rx) = oneshot::channel();
    let op = Op::SetPassword {
        user_id,
        record: record.as_bytes().to_vec(),
        reply,
    };
    shared.core.send(op).await.map_err(|_| shutting_down())?;
    rx.await.map_err(|_| shutting_down())??;
    tracing::info!(user = %name, "password changed");
    Ok(())
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}
