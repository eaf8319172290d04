//! Reconnecting: when the connection drops, the actor dials the same
//! server again with back-off and logs in with this device's session token
//! (the password is not needed and not kept). The new connection must
//! present the certificate the first one did; anything else ends the
//! session, as does a token the server no longer takes (the device was
//! removed).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use sotto_crypto::Fingerprint;
use sotto_proto::{ErrorCode, LoggedIn, Password, ServerId, SessionToken, Username};
use tokio::io::WriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;

use crate::ClientError;
use crate::actor::{Batch, read_frames};
use crate::addr::ServerAddr;
use crate::handshake::{Handshake, open_tls};
use crate::login::Credentials;

/// The first wait before dialing again; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long to wait before try number `attempt` (1, 2, ...): doubling from
/// [`FIRST_BACKOFF`] to [`MAX_BACKOFF`], less up to a fifth at random so
/// that clients dropped together do not all come back at once.
pub fn backoff(attempt: u32) -> Duration {
    let doubled = FIRST_BACKOFF.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let full = doubled.min(MAX_BACKOFF);
    let jitter = rand::random::<f64>() * 0.2;
    full.mul_f64(1.0 - jitter)
}

/// A fresh connection, logged in.
pub(crate) struct Redialed<W> {
    pub writer: W,
    pub frames: mpsc::Receiver<Batch>,
    pub reader: JoinHandle<()>,
    pub logged_in: LoggedIn,
}

/// Why a try failed.
#[derive(Debug)]
pub(crate) enum RedialError {
    /// Worth trying again later (unreachable, shutting down, a timeout).
    Retry(String),
    /// Trying again cannot help: the session ends with this reason.
    Fatal(String),
}

pub(crate) type RedialFuture<'a, W> =
    Pin<Box<dyn Future<Output = Result<Redialed<W>, RedialError>> + Send + 'a>>;

/// Opens a new connection for the actor.
pub(crate) trait Redial<W>: Send + Sync + std::fmt::Debug {
    fn redial(&self) -> RedialFuture<'_, W>;
}

/// The real thing: TLS to the same server (each node of a cluster in
/// turn, one per try, starting with the one last used), the same
/// certificate, a token login.
pub(crate) struct TlsRedial {
    pub addrs: Vec<ServerAddr>,
    /// The address the next try dials.
    pub next: std::sync::atomic::AtomicUsize,
    pub fingerprint: Fingerprint,
    pub user: Username,
    pub device_id: sotto_proto::DeviceId,
    pub server_password: Option<Password>,
    pub server_id: ServerId,
    pub token: SessionToken,
    /// Named in the error if the certificate changed.
    pub known_servers: std::path::PathBuf,
}

impl std::fmt::Debug for TlsRedial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsRedial")
            .field("addrs", &crate::addr::list_name(&self.addrs))
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

pub(crate) type TlsWriter = WriteHalf<TlsStream<TcpStream>>;

impl Redial<TlsWriter> for TlsRedial {
    fn redial(&self) -> RedialFuture<'_, TlsWriter> {
        Box::pin(self.dial())
    }
}

impl TlsRedial {
    async fn dial(&self) -> Result<Redialed<TlsWriter>, RedialError> {
        let server = crate::addr::list_name(&self.addrs);
        // The same node first (it may only have restarted), then the next
        // one at each try.
        let turn = self.next.load(std::sync::atomic::Ordering::Relaxed);
        let addr = self
            .addrs
            .get(turn % self.addrs.len().max(1))
            .ok_or_else(|| RedialError::Fatal("no server address".into()))?;
        let dialed = open_tls(addr).await;
        if dialed.is_err() {
            self.next
                .store(turn.wrapping_add(1), std::sync::atomic::Ordering::Relaxed);
        }
        let (stream, fingerprint) = dialed.map_err(retry)?;
        if fingerprint != self.fingerprint {
            // Never log in to it: the pin is checked before anything is sent.
            return Err(RedialError::Fatal(
                ClientError::CertificateChanged {
                    server,
                    expected: self.fingerprint,
                    got: fingerprint,
                    known_servers: self.known_servers.clone(),
                }
                .to_string(),
            ));
        }
        let mut conn = Handshake::new(stream);
        let hello = conn.hello().await.map_err(retry)?;
        let ok = hello.result.map_err(|e| retry(ClientError::Server(e)))?;
        if ok.server_password_required && self.server_password.is_none() {
            return Err(RedialError::Fatal(
                ClientError::ServerPasswordRequired.to_string(),
            ));
        }
        if ok.server_id != self.server_id {
            return Err(RedialError::Fatal(format!(
                "{server} is now another server (its id changed): start again to log in there"
            )));
        }
        let creds = Credentials {
            user: self.user.clone(),
            password: zeroize::Zeroizing::new(String::new()),
            device_id: self.device_id.clone(),
            server_password: self.server_password.clone(),
            server_id: self.server_id,
            stretch: sotto_crypto::opaque::Stretch::default(),
        };
        let logged_in = match conn.token_login(&creds, self.token.clone()).await {
            Ok(Some(logged_in)) => logged_in,
            Ok(None) => {
                return Err(RedialError::Fatal(
                    "the server no longer accepts this device's session (was it removed?): \
                     start again and log in with your password"
                        .to_owned(),
                ));
            }
            Err(e) => return Err(retry(e)),
        };
        let (stream, rbuf, decoder, early) = conn.into_parts();
        let (read_half, writer) = tokio::io::split(stream);
        let (frames_tx, frames) = mpsc::channel(crate::handshake::FRAME_BATCH_CAPACITY);
        if !early.is_empty() {
            let _ = frames_tx.try_send(Ok(early));
        }
        let reader = tokio::spawn(read_frames(read_half, rbuf, decoder, frames_tx));
        Ok(Redialed {
            writer,
            frames,
            reader,
            logged_in,
        })
    }
}

fn retry(e: ClientError) -> RedialError {
    match &e {
        // A server that refuses this client for good.
        ClientError::Server(reply)
            if matches!(
                reply.code,
                ErrorCode::UnsupportedVersion
                    | ErrorCode::WrongPassword
                    | ErrorCode::UnknownUser
                    | ErrorCode::ServerPasswordRequired
                    | ErrorCode::WrongServerPassword
                    | ErrorCode::RegistrationClosed
            ) =>
        {
            RedialError::Fatal(e.to_string())
        }
        _ => RedialError::Retry(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_a_little_jitter() {
        let first = backoff(1);
        assert!(first <= FIRST_BACKOFF && first >= FIRST_BACKOFF.mul_f64(0.8));
        let third = backoff(3);
        assert!(third <= FIRST_BACKOFF * 4 && third >= (FIRST_BACKOFF * 4).mul_f64(0.8));
        for attempt in [8, 20, 40, u32::MAX] {
            let late = backoff(attempt);
            assert!(
                late <= MAX_BACKOFF && late >= MAX_BACKOFF.mul_f64(0.8),
                "{late:?}"
            );
        }
    }
}
