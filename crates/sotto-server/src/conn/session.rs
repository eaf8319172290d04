//! The login and password-change requests of a connection: the OPAQUE
//! exchanges span two requests, so their state lives here between them.

use sotto_proto::{DeviceId, ErrorCode, ErrorReply, Login, OpaqueMessage, Response, Username};
use tokio::sync::oneshot;

use super::{Connection, error};
use crate::core::Op;
use crate::login::{self, Authenticated, PasswordChange, Pending, Step};

/// What a connection knows about its login.
#[derive(Debug)]
pub(super) enum AuthState {
    /// An OPAQUE login or registration waiting for the client's last
    /// message.
    LoggingIn {
        pending: Box<Pending>,
        name: Username,
        device: DeviceId,
    },
    /// Logged in as `name`.
    LoggedIn {
        name: Username,
        /// Logged in with an old password hash: may set a password without
        /// proving the old one, once.
        legacy: bool,
        /// A password change waiting for its last messages.
        /// (Boxed: it is large, and rarely there.)
        change: Option<Box<PasswordChange>>,
    },
}

/// `Ok(Ok(()))`: logged in (reply already queued); `Ok(Err(e))`: reply
/// `e`; `Err(Some(r))`: reply `r`; `Err(None)`: the core replied.
type LoginResult = Result<Result<(), ErrorReply>, Option<Response>>;

impl Connection {
    pub(super) async fn login(&mut self, id: u64, login: Login) -> LoginResult {
        // A login that was waiting for its last message is given up (and
        // counts as a failed attempt).
        self.auth = None;
        match login::start(&self.shared, self.peer.ip(), &login).await {
            Ok(Step::Done(auth)) => self.attach(id, login.user, login.device_id, auth).await,
            Ok(Step::Challenge(message, pending)) => {
                self.auth = Some(Box::new(AuthState::LoggingIn {
                    pending,
                    name: login.user,
                    device: login.device_id,
                }));
                Err(Some(Response::Challenge { message }))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    pub(super) async fn login_finish(&mut self, id: u64, message: OpaqueMessage) -> LoginResult {
        let Some(AuthState::LoggingIn {
            pending,
            name,
            device,
        }) = self.auth.take().map(|a| *a)
        else {
            return Ok(Err(error(
                ErrorCode::Invalid,
                "no login is waiting for its last message: start with a login",
            )));
        };
        match login::finish(&self.shared, *pending, &message).await {
            Ok(auth) => self.attach(id, name, device, auth).await,
            Err(e) => Ok(Err(e)),
        }
    }

    async fn attach(
        &mut self,
        id: u64,
        name: Username,
        device: DeviceId,
        auth: Authenticated,
    ) -> LoginResult {
        let user_id = auth.user_id;
        let (reply, rx) = oneshot::channel();
        let op = Op::Attach {
            conn: self.handle.clone(),
            user_id,
            device,
            registered: auth.registered,
            session_token: auth.session_token,
            token_hash: auth.token_hash,
            req_id: id,
            reply,
        };
        if self.shared.core.send(op).await.is_err() {
            return Ok(Err(error(
                ErrorCode::ShuttingDown,
                "the server is shutting down",
            )));
        }
        match rx.await {
            Ok(true) => {
                self.user = Some(user_id);
                tracing::info!(user = %name, conn = self.handle.id, "logged in");
                self.auth = Some(Box::new(AuthState::LoggedIn {
                    name,
                    legacy: auth.legacy,
                    change: None,
                }));
                Ok(Ok(()))
            }
            // The core replied itself (shutting down) or failed to commit.
            Ok(false) => Err(None),
            Err(_) => Ok(Err(error(
                ErrorCode::ShuttingDown,
                "the server is shutting down",
            ))),
        }
    }

    pub(super) async fn password_start(
        &mut self,
        old: Option<OpaqueMessage>,
        new: OpaqueMessage,
    ) -> Result<Response, ErrorReply> {
        let Some(AuthState::LoggedIn {
            name,
            legacy,
            change,
        }) = self.auth.as_deref_mut()
        else {
            return Err(error(ErrorCode::NotLoggedIn, "log in first"));
        };
        // A change already waiting is given up.
        *change = None;
        let (started, old_reply, new_reply) = login::password_start(
            &self.shared,
            self.peer.ip(),
            name,
            *legacy,
            old.as_ref(),
            &new,
        )
        .await?;
        *change = Some(Box::new(started));
        Ok(Response::PasswordChallenge {
            old: old_reply,
            new: new_reply,
        })
    }

    pub(super) async fn password_finish(
        &mut self,
        user_id: i64,
        old: Option<OpaqueMessage>,
        new: OpaqueMessage,
    ) -> Result<Response, ErrorReply> {
        let Some(AuthState::LoggedIn {
            name,
            legacy,
            change,
        }) = self.auth.as_deref_mut()
        else {
            return Err(error(ErrorCode::NotLoggedIn, "log in first"));
        };
        let Some(started) = change.take() else {
            return Err(error(
                ErrorCode::Invalid,
                "no password change is waiting: start one first",
            ));
        };
        login::password_finish(&self.shared, name, user_id, *started, old.as_ref(), &new).await?;
        *legacy = false;
        Ok(Response::Done)
    }
}
