//! Logging in without the password leaving this machine: OPAQUE login and
//! registration, the device's session token, and moving an account made
//! before OPAQUE over (the one time its password is sent, and only from a
//! device that used the account before).
//!
//! The key stretching (Argon2id) runs here, on a blocking thread; the
//! server never sees the password or anything it could test guesses
//! against offline.

use sotto_crypto::opaque::{self, OpaqueError, Stretch};
use sotto_proto::{
    Credential, DeviceId, ErrorCode, ErrorReply, LoggedIn, Login, OpaqueMessage, Password, Request,
    Response, ServerId, SessionToken, Username,
};
use tokio::io::{AsyncRead, AsyncWrite};
use zeroize::Zeroizing;

use crate::ClientError;
use crate::handshake::Handshake;

/// Who is logging in, and where.
pub(crate) struct Credentials {
    pub user: Username,
    /// Empty for a remembered device, which logs in with its token only.
    pub password: Zeroizing<String>,
    pub device_id: DeviceId,
    pub server_password: Option<Password>,
    pub server_id: ServerId,
    pub stretch: Stretch,
}

impl Credentials {
    fn login(&self, credential: Credential) -> Request {
        Request::Login(Login {
            user: self.user.clone(),
            credential,
            device_id: self.device_id.clone(),
            server_password: self.server_password.clone(),
        })
    }
}

fn server_error(code: ErrorCode, message: String) -> ClientError {
    ClientError::Server(ErrorReply::new(code, message))
}

fn unexpected(what: &str) -> ClientError {
    ClientError::Protocol(format!("the server answered {what} with something else"))
}

fn opaque_error(e: OpaqueError, user: &Username, hint: &str) -> ClientError {
    match e {
        OpaqueError::WrongPassword => server_error(
            ErrorCode::WrongPassword,
            format!("wrong name or password for {user}{hint}"),
        ),
        other => ClientError::Protocol(format!("the server's login message: {other}")),
    }
}

/// Runs CPU-heavy OPAQUE work (Argon2id) off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, OpaqueError> + Send + 'static,
) -> Result<Result<T, OpaqueError>, ClientError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ClientError::Internal(format!("background task failed: {e}")))
}

fn logged_in(response: Response) -> Result<LoggedIn, ClientError> {
    match response {
        Response::LoggedIn(logged_in) => Ok(logged_in),
        _ => Err(unexpected("the login")),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Handshake<S> {
    /// Logs in with the device's session token; `None` if the server no
    /// longer takes it (revoked, or another server).
    pub(crate) async fn token_login(
        &mut self,
        creds: &Credentials,
        token: SessionToken,
    ) -> Result<Option<LoggedIn>, ClientError> {
        match self.ask(creds.login(Credential::Token(token))).await {
            Ok(response) => logged_in(response).map(Some),
            Err(ClientError::Server(e)) if e.code == ErrorCode::WrongPassword => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// An OPAQUE login; `hint` is added to a wrong-password message.
    pub(crate) async fn opaque_login(
        &mut self,
        creds: &Credentials,
        hint: &str,
    ) -> Result<LoggedIn, ClientError> {
        let (state, request) = opaque::client_login_start(&creds.password)
            .map_err(|e| opaque_error(e, &creds.user, hint))?;
        let response = self
            .ask(creds.login(Credential::Opaque(OpaqueMessage(request))))
            .await?;
        let Response::Challenge { message } = response else {
            return Err(unexpected("the login"));
        };
        let (password, user, server) = (
            creds.password.clone(),
            creds.user.to_string(),
            creds.server_id,
        );
        let stretch = creds.stretch;
        let finalization =
            blocking(move || state.finish(&password, &message.0, &user, &server.0, stretch))
                .await?
                .map_err(|e| opaque_error(e, &creds.user, hint))?;
        let response = self
            .ask(Request::LoginFinish {
                message: OpaqueMessage(finalization),
            })
            .await?;
        logged_in(response)
    }

    /// An OPAQUE registration of a new account.
    pub(crate) async fn register(&mut self, creds: &Credentials) -> Result<LoggedIn, ClientError> {
        let (state, request) = opaque::client_register_start(&creds.password)
            .map_err(|e| opaque_error(e, &creds.user, ""))?;
        let response = self
            .ask(creds.login(Credential::Register(OpaqueMessage(request))))
            .await?;
        let Response::Challenge { message } = response else {
            return Err(unexpected("the registration"));
        };
        let (password, user, server) = (
            creds.password.clone(),
            creds.user.to_string(),
            creds.server_id,
        );
        let stretch = creds.stretch;
        let upload =
            blocking(move || state.finish(&password, &message.0, &user, &server.0, stretch))
                .await?
                .map_err(|e| opaque_error(e, &creds.user, ""))?;
        let response = self
            .ask(Request::LoginFinish {
                message: OpaqueMessage(upload),
            })
            .await?;
        logged_in(response)
    }

    /// Logs an account made before OPAQUE in with its password (the one
    /// time it is sent) and moves it over at once.
    pub(crate) async fn legacy_login(
        &mut self,
        creds: &Credentials,
    ) -> Result<LoggedIn, ClientError> {
        let password = Password::new(creds.password.to_string())
            .map_err(|e| ClientError::Internal(format!("the password: {e}")))?;
        let logged_in = logged_in(
            self.ask(creds.login(Credential::LegacyPassword(password)))
                .await?,
        )?;
        let (state, request) = opaque::client_register_start(&creds.password)
            .map_err(|e| opaque_error(e, &creds.user, ""))?;
        let response = self
            .ask(Request::PasswordStart {
                old: None,
                new: OpaqueMessage(request),
            })
            .await?;
        let Response::PasswordChallenge { new, .. } = response else {
            return Err(unexpected("moving the account over"));
        };
        let (password, user, server) = (
            creds.password.clone(),
            creds.user.to_string(),
            creds.server_id,
        );
        let stretch = creds.stretch;
        let upload = blocking(move || state.finish(&password, &new.0, &user, &server.0, stretch))
            .await?
            .map_err(|e| opaque_error(e, &creds.user, ""))?;
        match self
            .ask(Request::PasswordFinish {
                old: None,
                new: OpaqueMessage(upload),
            })
            .await?
        {
            Response::Done => {
                tracing::info!(user = %creds.user, "account moved over to OPAQUE logins");
                Ok(logged_in)
            }
            _ => Err(unexpected("moving the account over")),
        }
    }
}

/// The two OPAQUE runs of a password change: a login with the old password
/// and a registration of the new one.
pub(crate) struct PasswordChange {
    old: opaque::ClientLoginState,
    new: opaque::ClientRegistrationState,
}

/// The first messages of a password change.
pub(crate) fn password_change_start(
    old: &str,
    new: &str,
) -> Result<(PasswordChange, Request), ClientError> {
    let internal = |e: OpaqueError| ClientError::Internal(format!("password change: {e}"));
    let (old_state, old_request) = opaque::client_login_start(old).map_err(internal)?;
    let (new_state, new_request) = opaque::client_register_start(new).map_err(internal)?;
    Ok((
        PasswordChange {
            old: old_state,
            new: new_state,
        },
        Request::PasswordStart {
            old: Some(OpaqueMessage(old_request)),
            new: OpaqueMessage(new_request),
        },
    ))
}

/// The last messages of a password change, from the server's answer
/// (`Err` wrong password if `old` is not the account's password).
pub(crate) async fn password_change_finish(
    change: PasswordChange,
    response: Response,
    user: &Username,
    server_id: ServerId,
    old: Zeroizing<String>,
    new: Zeroizing<String>,
) -> Result<Request, ClientError> {
    let Response::PasswordChallenge {
        old: Some(old_reply),
        new: new_reply,
    } = response
    else {
        return Err(unexpected("the password change"));
    };
    let name = user.to_string();
    let stretch = Stretch::default();
    let finished = blocking(move || {
        let old_final = change
            .old
            .finish(&old, &old_reply.0, &name, &server_id.0, stretch)?;
        let upload = change
            .new
            .finish(&new, &new_reply.0, &name, &server_id.0, stretch)?;
        Ok((old_final, upload))
    })
    .await?;
    let (old_final, upload) = finished.map_err(|e| match e {
        OpaqueError::WrongPassword => server_error(
            ErrorCode::WrongPassword,
            "that is not your current password".into(),
        ),
        other => ClientError::Protocol(format!("the server's password-change message: {other}")),
    })?;
    Ok(Request::PasswordFinish {
        old: Some(OpaqueMessage(old_final)),
        new: OpaqueMessage(upload),
    })
}
