//! Authenticating a login: the server password, failed-login limits, and
//! the account password (registering new names where allowed) or a device
//! session token. Runs in the connection task; hashing runs on the
//! blocking pool (see `auth.rs`).

use std::net::IpAddr;

use rand::RngCore;
use sha2::{Digest, Sha256};
use sotto_proto::{Credential, ErrorCode, ErrorReply, Login, Password, SessionToken, Username};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use crate::Registration;
use crate::conn::Shared;
use crate::core::Op;
use crate::store;

/// Who a login proved to be.
#[derive(Debug)]
pub(crate) struct Authenticated {
    pub user_id: i64,
    /// The account was created by this login.
    pub registered: bool,
    /// The token to return in `LoggedIn`.
    pub session_token: SessionToken,
    /// The SHA-256 of a newly issued token, to store for the device.
    pub token_hash: Option<[u8; 32]>,
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

/// Checks a login's credentials.
pub(crate) async fn authenticate(
    shared: &Shared,
    ip: IpAddr,
    login: &Login,
) -> Result<Authenticated, ErrorReply> {
    let limiter = &shared.limiter;
    let name = &login.user;
    if let Some(required) = &shared.config.server_password {
        if let Err(wait) = limiter.check("#server", ip) {
            return Err(error(
                ErrorCode::RateLimited,
                format!("too many failed attempts; try again in {wait} s"),
            ));
        }
        let Some(given) = &login.server_password else {
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
            limiter.failed("#server", ip);
            return Err(error(
                ErrorCode::WrongServerPassword,
                "wrong server password",
            ));
        }
    }
    if let Err(wait) = limiter.check(name.as_str(), ip) {
        return Err(error(
            ErrorCode::RateLimited,
            format!("too many failed logins for {name}; try again in {wait} s"),
        ));
    }
    let result = match &login.credential {
        Credential::Token(token) => token_login(shared, login, token).await,
        Credential::Password(password) => password_login(shared, login, password).await,
    };
    match &result {
        Ok(_) => limiter.succeeded(name.as_str()),
        Err(e)
            if matches!(
                e.code,
                ErrorCode::WrongPassword | ErrorCode::RegistrationClosed
            ) =>
        {
            limiter.failed(name.as_str(), ip);
        }
        Err(_) => {}
    }
    result
}

async fn token_login(
    shared: &Shared,
    login: &Login,
    token: &SessionToken,
) -> Result<Authenticated, ErrorReply> {
    if login.register_only {
        return Err(error(
            ErrorCode::Invalid,
            "registering a new account needs a password",
        ));
    }
    let (name, device) = (login.user.to_string(), login.device_id.to_string());
    let (user, stored) = shared
        .store
        .run(move |db| {
            Ok((
                store::find_user(db, &name)?,
                store::device_token_hash(db, &name, &device)?,
            ))
        })
        .await
        .map_err(|e| internal("read accounts", e))?;
    let given: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
    match (user, stored) {
        (Some(user), Some(stored)) if bool::from(given.as_slice().ct_eq(&stored)) => {
            Ok(Authenticated {
                user_id: user.id,
                registered: false,
                session_token: token.clone(),
                token_hash: None,
            })
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

async fn password_login(
    shared: &Shared,
    login: &Login,
    password: &Password,
) -> Result<Authenticated, ErrorReply> {
    let name = &login.user;
    let lookup = name.clone();
    let stored = shared
        .store
        .run(move |db| store::find_user(db, lookup.as_str()))
        .await
        .map_err(|e| internal("read accounts", e))?;
    let password = Zeroizing::new(password.expose().to_owned());
    let (user_id, registered) = match stored {
        Some(_) if login.register_only => {
            return Err(error(
                ErrorCode::UsernameTaken,
                format!("the name '{name}' is taken; choose another"),
            ));
        }
        Some(user) => match shared.hasher.verify(password, user.pw_hash).await {
            Ok(true) => (user.id, false),
            Ok(false) => {
                return Err(error(
                    ErrorCode::WrongPassword,
                    format!(
                        "wrong password for {name} (if you are new here, that name is taken: choose another)"
                    ),
                ));
            }
            Err(e) => return Err(internal("check the password", e)),
        },
        None if shared.config.registration == Registration::Closed => {
            // Same cost as a real check, so timing does not reveal which names exist.
            let _ = shared.hasher.hash(password).await;
            return Err(error(
                ErrorCode::RegistrationClosed,
                format!("no account named {name}, and this server does not register new accounts"),
            ));
        }
        None => (register(shared, name, password).await?, true),
    };
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    let text = Zeroizing::new(hex_lower(bytes.as_ref()));
    let session_token =
        SessionToken::parse(&text).ok_or_else(|| internal("issue a session token", "bad token"))?;
    let token_hash = Sha256::digest(text.as_bytes()).into();
    Ok(Authenticated {
        user_id,
        registered,
        session_token,
        token_hash: Some(token_hash),
    })
}

async fn register(
    shared: &Shared,
    name: &Username,
    password: Zeroizing<String>,
) -> Result<i64, ErrorReply> {
    let pw_hash = shared
        .hasher
        .hash(password)
        .await
        .map_err(|e| internal("create the account", e))?;
    let (reply, rx) = oneshot::channel();
    let op = Op::Register {
        name: name.clone(),
        pw_hash,
        reply,
    };
    shared.core.send(op).await.map_err(|_| shutting_down())?;
    let id = rx.await.map_err(|_| shutting_down())??;
    tracing::info!(user = %name, "registered");
    Ok(id)
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
