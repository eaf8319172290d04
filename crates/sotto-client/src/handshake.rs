//! Connecting: TCP, TLS 1.3, the certificate pin check, hello and login,
//! then starting the background tasks.
//!
//! Order matters for security: the pin is checked right after the TLS
//! handshake and before the hello, so credentials are never sent to a server
//! whose certificate is unknown or has changed.

use std::path::{Path, PathBuf};

use bytes::BytesMut;
use sotto_crypto::Fingerprint;
use sotto_crypto::opaque::Stretch;
use sotto_proto::{
    ClientFrame, DeviceId, ErrorCode, ErrorReply, FrameDecoder, Hello, HelloReply, LoggedIn,
    PROTOCOL_VERSION, Request, Response, ServerFrame, SessionToken,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::actor::{Actor, read_frames, write_frame};
use crate::addr::ServerAddr;
use crate::client::{Client, Connection, Events};
use crate::crypto::{Crypto, SharedCrypto};
use crate::device::{
    adopt_address_files, create_private_dir, load_or_create_device_id, server_part,
};
use crate::known_servers::{KnownServers, Pinned};
use crate::local_store::{LocalStore, Opened, Session};
use crate::login::Credentials;
use crate::{
    COMMAND_CAPACITY, CONNECT_TIMEOUT, ClientError, ConnectOptions, EVENT_CAPACITY,
    HANDSHAKE_TIMEOUT, Secret, TrustPolicy, tls,
};

/// Frame batches waiting for the actor; the reader waits when it is full.
pub(crate) const FRAME_BATCH_CAPACITY: usize = 16;

/// Connects, checks the server's certificate against `known_servers`, logs
/// in, and starts the background task.
pub async fn connect(opts: ConnectOptions) -> Result<(Client, Events), ClientError> {
    let ConnectOptions {
        server,
        user,
        secret,
        server_password,
        data_dir,
        trust,
        register_only,
        sign_in_only,
    } = opts;
    let addrs = crate::addr::parse_list(&server).map_err(|reason| ClientError::InvalidAddress {
        server: server.clone(),
        reason,
    })?;
    let server = crate::addr::list_name(&addrs);
    // The first address names this device's files (as for one server).
    let addr = addrs.first().cloned().ok_or(ClientError::InvalidAddress {
        server: server.clone(),
        reason: "no address",
    })?;

    let mut known = {
        let data_dir = data_dir.clone();
        blocking(move || prepare_data_dir(&data_dir)).await?
    };

    let (mut stream, fingerprint, used) = open_any(&addrs).await?;
    match known.check(&server, &fingerprint) {
        Pinned::Match => {}
        Pinned::Changed { expected } => {
            return Err(ClientError::CertificateChanged {
                server,
                expected,
                got: fingerprint,
                known_servers: known.path().to_owned(),
            });
        }
        Pinned::Damaged => {
            return Err(ClientError::DataDir {
                path: known.path().to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("the line for {server} is damaged; fix or remove it"),
                ),
            });
        }
        Pinned::Unknown => {
            let asked = decide_trust(trust, &server, fingerprint).await?;
            let path = known.path().to_owned();
            let entry = (server.clone(), fingerprint);
            known = blocking(move || {
                known
                    .add(&entry.0, &entry.1)
                    .map_err(|source| ClientError::DataDir { path, source })?;
                Ok(known)
            })
            .await?;
            tracing::info!(%server, %fingerprint, "pinned new server certificate");
            if asked {
                // The user may have taken a while to answer, long enough for
                // the server to drop an idle connection: start afresh. The
                // server is now pinned, so the new certificate must match.
                drop(stream);
                let (fresh, again) = open_tls(&used).await?;
                if again != fingerprint {
                    return Err(ClientError::CertificateChanged {
                        server,
                        expected: fingerprint,
                        got: again,
                        known_servers: known.path().to_owned(),
                    });
                }
                stream = fresh;
            }
        }
    }

    let mut conn = Handshake::new(stream);
    let hello = conn.hello().await?;
    let ok = hello.result.map_err(ClientError::Server)?;
    if ok.server_password_required && server_password.is_none() {
        return Err(ClientError::ServerPasswordRequired);
    }
    // This device belongs to the server (its id and certificate), not to
    // the address.
    let server_name = server_part(&ok.server_id, &fingerprint, &addr);
    let device_id = {
        let (data_dir, addr, user, name) = (
            data_dir.clone(),
            addr.clone(),
            user.clone(),
            server_name.clone(),
        );
        blocking(move || device_of(&data_dir, &addr, &user, &name)).await?
    };
    let remember_file = crate::remember::key_file(&data_dir, &server, &user);
    let (password, remembered) = match secret {
        Secret::Password(password) => (password.expose().to_owned(), None),
        Secret::Remembered => {
            let path = remember_file.clone();
            let key = blocking(move || Ok(crate::remember::load(&path))).await?;
            let Some(key) = key else {
                return Err(ClientError::PasswordNeeded(format!(
                    "{user} is not remembered on this device for {server}"
                )));
            };
            (String::new(), Some(key))
        }
    };
    let creds = Credentials {
        user: user.clone(),
        password: zeroize::Zeroizing::new(password),
        device_id: device_id.clone(),
        server_password,
        server_id: ok.server_id,
        stretch: Stretch::default(),
    };
    let store_path = crate::local_store::store_file(&data_dir, &user, &server_name);
    let (logged_in, crypto, store) = match remembered {
        Some(key) => {
            log_in_remembered(&mut conn, &creds, &store_path, (key, &remember_file)).await?
        }
        None => {
            log_in(
                &mut conn,
                &creds,
                &store_path,
                ok.registration_open,
                (register_only, sign_in_only),
            )
            .await?
        }
    };
    tracing::info!(%server, user = %logged_in.user, server_software = %hello.server, "logged in");
    let crypto: SharedCrypto = crate::crypto::shared(crypto, store);

    let redial = crate::reconnect::TlsRedial {
        next: std::sync::atomic::AtomicUsize::new(
            addrs.iter().position(|a| *a == used).unwrap_or(0),
        ),
        addrs,
        fingerprint,
        user: logged_in.user.clone(),
        device_id: logged_in.device_id.clone(),
        server_password: creds.server_password.clone(),
        server_id: ok.server_id,
        token: logged_in.session_token.clone(),
        known_servers: known.path().to_owned(),
    };
    let (stream, rbuf, decoder, early) = conn.into_parts();
    let (read_half, write_half) = tokio::io::split(stream);
    let (frames_tx, frames_rx) = mpsc::channel(FRAME_BATCH_CAPACITY);
    let (ops_tx, ops_rx) = mpsc::channel(COMMAND_CAPACITY);
    let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);
    if !early.is_empty() {
        // Events that arrived before the login reply go first. The channel
        // is new and has room, so this cannot fail.
        let _ = frames_tx.try_send(Ok(early));
    }
    let reader = tokio::spawn(read_frames(read_half, rbuf, decoder, frames_tx));
    let actor = Actor::new(
        logged_in.user.clone(),
        logged_in.device_id.clone(),
        crate::actor::Paths {
            downloads: downloads_dir(&data_dir),
            device_file: crate::device::device_file(&data_dir, &user, &server_name),
        },
        write_half,
        ops_rx,
        frames_rx,
        events_tx,
        Some(reader),
        crypto.clone(),
    )
    .reconnecting_with(std::sync::Arc::new(redial));
    tokio::spawn(actor.run());
    let session = Connection {
        logged_in,
        server,
        fingerprint,
        server_software: hello.server,
        server_id: ok.server_id,
        remember_file,
    };
    let client = Client::new(ops_tx, session, crypto);
    client.publish_keys().await?;
    Ok((client, Events::new(events_rx)))
}

/// Logs in, opening (or, for a new device, creating) the local store.
///
/// A device with a store opens it first (the password is checked there,
/// without a try against the server) and logs in with its session token;
/// without a token, or if the server refuses it, with OPAQUE. A new device
/// registers first where registration is open and the name is free, and
/// creates its store once the server has accepted the password.
async fn log_in<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Handshake<S>,
    creds: &Credentials,
    store_path: &Path,
    registration_open: bool,
    (register_only, sign_in_only): (bool, bool),
) -> Result<(LoggedIn, Crypto, LocalStore), ClientError> {
    let open = {
        let (path, password, user, device) = (
            store_path.to_owned(),
            creds.password.clone(),
            creds.user.clone(),
            creds.device_id.clone(),
        );
        move || -> Result<(Crypto, LocalStore), ClientError> {
            Crypto::open(&path, &password, &user, &device)
        }
    };
    let existing = {
        let path = store_path.to_owned();
        blocking(move || Ok(crate::local_store::store_exists(&path))).await?
    };
    let mut opened = None;
    let mut session = Session::default();
    if existing {
        let (crypto, store) = blocking(open.clone()).await?;
        session = store
            .session()
            .map_err(|e| ClientError::LocalStore(e.to_string()))?;
        opened = Some((crypto, store));
    }
    let pending = opened.as_ref().and_then(|(_, s)| s.pending_change());
    let token = session
        .token
        .as_deref()
        .and_then(SessionToken::parse)
        // With a password change in progress, the server must say which
        // password is now the right one: no token.
        .filter(|_| pending.is_none());
    let mut logged_in = None;
    if let Some(token) = token
        && !register_only
    {
        logged_in = conn.token_login(creds, token).await?;
    }
    let logged_in = match logged_in {
        Some(logged_in) => logged_in,
        None if register_only => conn.register(creds).await?,
        None => {
            let mut hint = "";
            let mut registered = None;
            if registration_open && !existing && !sign_in_only {
                match conn.register(creds).await {
                    Ok(logged_in) => registered = Some(logged_in),
                    Err(ClientError::Server(e)) if e.code == ErrorCode::UsernameTaken => {
                        hint = " (if you are new here, that name is taken: choose another)";
                    }
                    Err(e) => return Err(e),
                }
            } else if !registration_open {
                hint = " (this server does not register new accounts: ask its operator)";
            }
            match registered {
                Some(logged_in) => logged_in,
                None => match conn.opaque_login(creds, hint).await {
                    Ok(logged_in) => logged_in,
                    Err(ClientError::Server(e)) if e.code == ErrorCode::LegacyLogin => {
                        // The one time the password goes to the server: only
                        // from a device that has logged in to this account
                        // on this server before, never after OPAQUE.
                        if !existing || session.opaque {
                            return Err(ClientError::Server(ErrorReply::new(
                                ErrorCode::LegacyLogin,
                                format!(
                                    "{} This device does not send the password: it never logged in to \
                                     this account with it before, or the account already \
                                     uses OPAQUE here. Log in once from a device that used \
                                     the account before.",
                                    e.message
                                ),
                            )));
                        }
                        conn.legacy_login(creds).await?
                    }
                    Err(e) => return Err(e),
                },
            }
        }
    };
    let (crypto, mut store) = match opened {
        Some(opened) => opened,
        None => blocking(open).await?,
    };
    let local = |e: crate::local_store::StoreError| ClientError::LocalStore(e.to_string());
    // The server accepted this password: an interrupted change is finished
    // (it was the new one) or forgotten (the old one).
    match store.pending_change() {
        Some(Opened::Next) => store.finish_change().map_err(local)?,
        Some(Opened::Current) => store.abandon_change().map_err(local)?,
        None => {}
    }
    keep_session(&mut store, &logged_in)?;
    Ok((logged_in, crypto, store))
}

/// Logs in a remembered device: its device key opens the local store,
/// and its session token logs it in. Nothing else is tried, since that
/// would need the password.
async fn log_in_remembered<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Handshake<S>,
    creds: &Credentials,
    store_path: &Path,
    (key, remember_file): (sotto_crypto::at_rest::DeviceKey, &Path),
) -> Result<(LoggedIn, Crypto, LocalStore), ClientError> {
    let opened = {
        let (path, user, device) = (
            store_path.to_owned(),
            creds.user.clone(),
            creds.device_id.clone(),
        );
        blocking(move || Crypto::open_remembered(&path, &key, &user, &device)).await
    };
    let forget = |why: &str| {
        // A key that no longer signs in is no use kept: the next start
        // asks for the password without trying it.
        if let Err(e) = std::fs::remove_file(remember_file) {
            tracing::warn!("forgetting this device's saved sign-in: {e}");
        }
        ClientError::PasswordNeeded(why.to_owned())
    };
    let opened = match opened {
        Err(ClientError::PasswordNeeded(why)) => return Err(forget(&why)),
        other => other?,
    };
    let (crypto, mut store) = opened;
    let local = |e: crate::local_store::StoreError| ClientError::LocalStore(e.to_string());
    let token = store
        .session()
        .map_err(local)?
        .token
        .as_deref()
        .and_then(SessionToken::parse);
    let Some(token) = token else {
        return Err(forget("this device has no session to resume"));
    };
    let Some(logged_in) = conn.token_login(creds, token).await? else {
        // Removed from the account, or signed in elsewhere with the
        // password: the store's copy of the key goes too.
        let _ = store.forget_remembered();
        return Err(forget(
            "the server no longer accepts this device's saved sign-in",
        ));
    };
    keep_session(&mut store, &logged_in)?;
    Ok((logged_in, crypto, store))
}

/// Keeps the session token the server just issued, for the next start.
fn keep_session(store: &mut LocalStore, logged_in: &LoggedIn) -> Result<(), ClientError> {
    store
        .set_session(&Session {
            token: Some(logged_in.session_token.expose().to_owned()),
            opaque: true,
        })
        .map_err(|e| ClientError::LocalStore(e.to_string()))
}

/// Where received files go.
fn downloads_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("downloads")
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError {
    let path = path.to_owned();
    move |source| ClientError::DataDir { path, source }
}

/// Creates the data dir and reads `known_servers`.
fn prepare_data_dir(data_dir: &Path) -> Result<KnownServers, ClientError> {
    create_private_dir(data_dir).map_err(at(data_dir))?;
    let known_path = data_dir.join("known_servers");
    KnownServers::load(&known_path).map_err(at(&known_path))
}

/// This device's id for `user` on the server named `server` (moving over
/// the files of a client that named it by `addr`).
fn device_of(
    data_dir: &Path,
    addr: &ServerAddr,
    user: &sotto_proto::Username,
    server: &str,
) -> Result<DeviceId, ClientError> {
    let device_file = crate::device::device_file(data_dir, user, server);
    adopt_address_files(data_dir, user, addr, server).map_err(at(&device_file))?;
    load_or_create_device_id(data_dir, user, server).map_err(at(&device_file))
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ClientError> + Send + 'static,
) -> Result<T, ClientError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ClientError::Internal(format!("background task failed: {e}")))?
}

/// Applies the trust policy to a server seen for the first time. `Ok(true)`
/// means the user was asked interactively.
async fn decide_trust(
    trust: TrustPolicy,
    server: &str,
    fingerprint: Fingerprint,
) -> Result<bool, ClientError> {
    match trust {
        TrustPolicy::TrustNew => Ok(false),
        TrustPolicy::Fingerprint(expected) if expected == fingerprint => Ok(false),
        TrustPolicy::Fingerprint(expected) => Err(ClientError::FingerprintMismatch {
            server: server.to_owned(),
            expected,
            got: fingerprint,
        }),
        TrustPolicy::RefuseUnknown => Err(ClientError::UnknownServer {
            server: server.to_owned(),
            fingerprint,
        }),
        TrustPolicy::Ask(ask) => {
            let name = server.to_owned();
            let yes = blocking(move || Ok(ask(&name, &fingerprint))).await?;
            if yes {
                Ok(true)
            } else {
                Err(ClientError::NotTrusted {
                    server: server.to_owned(),
                    fingerprint,
                })
            }
        }
    }
}

/// Opens TCP and TLS; returns the stream and the certificate's fingerprint.
/// Opens TLS to the first of `addrs` that answers (the nodes of a cluster
/// in turn); the error of the last one if none does.
pub(crate) async fn open_any(
    addrs: &[ServerAddr],
) -> Result<(TlsStream<TcpStream>, Fingerprint, ServerAddr), ClientError> {
    let mut last = None;
    for addr in addrs {
        match open_tls(addr).await {
            Ok((stream, fingerprint)) => return Ok((stream, fingerprint, addr.clone())),
            Err(e) => {
                tracing::info!(%addr, "cannot connect: {e}");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(ClientError::InvalidAddress {
        server: String::new(),
        reason: "no address",
    }))
}

pub(crate) async fn open_tls(
    addr: &ServerAddr,
) -> Result<(TlsStream<TcpStream>, Fingerprint), ClientError> {
    let server = addr.to_string();
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((addr.host.as_str(), addr.port)),
    )
    .await
    .map_err(|_| ClientError::Unreachable {
        server: server.clone(),
        source: std::io::ErrorKind::TimedOut.into(),
    })?
    .map_err(|source| ClientError::Unreachable {
        server: server.clone(),
        source,
    })?;
    // Chat frames are small and interactive.
    let _ = tcp.set_nodelay(true);

    let tls_error = |source: std::io::Error| ClientError::Tls {
        server: server.clone(),
        source,
    };
    let (config, slot) = tls::client_config().map_err(|e| tls_error(std::io::Error::other(e)))?;
    let name = tls::server_name(&addr.host).map_err(|e| tls_error(std::io::Error::other(e)))?;
    let stream = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| tls_error(std::io::ErrorKind::TimedOut.into()))?
    .map_err(tls_error)?;
    let fingerprint = slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .ok_or_else(|| ClientError::Protocol("the server presented no certificate".into()))?;
    Ok((stream, fingerprint))
}

/// The connection before login: frames are read one at a time.
pub(crate) struct Handshake<S> {
    stream: S,
    /// Read buffer; whatever follows the login reply is handed to the reader task.
    rbuf: BytesMut,
    wbuf: BytesMut,
    decoder: FrameDecoder,
    /// Id of the next request; the actor goes on from there.
    next_id: u64,
    /// Events that arrived before the login reply.
    early: Vec<ServerFrame>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Handshake<S> {
    pub(crate) fn new(stream: S) -> Self {
        Self {
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            decoder: FrameDecoder::default(),
            // Apart from the actor's own numbers (from 2).
            next_id: 1 << 62,
            early: Vec::new(),
        }
    }

    /// The stream, what was read past the login reply, and the events
    /// that came before it.
    pub(crate) fn into_parts(self) -> (S, BytesMut, FrameDecoder, Vec<ServerFrame>) {
        (self.stream, self.rbuf, self.decoder, self.early)
    }

    async fn send(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        write_frame(&mut self.stream, &mut self.wbuf, frame).await
    }

    /// Reads the next frame, within [`HANDSHAKE_TIMEOUT`].
    async fn recv(&mut self, waiting_for: &'static str) -> Result<ServerFrame, ClientError> {
        let read = async {
            loop {
                if let Some(raw) = self
                    .decoder
                    .decode(&mut self.rbuf)
                    .map_err(|e| ClientError::Protocol(format!("bad frame: {e}")))?
                {
                    return ServerFrame::decode(&raw)
                        .map_err(|e| ClientError::Protocol(format!("undecodable frame: {e}")));
                }
                self.rbuf.reserve(8 * 1024);
                match self.stream.read_buf(&mut self.rbuf).await {
                    Ok(0) => {
                        return Err(ClientError::ConnectionLost(format!(
                            "the server closed the connection while we waited for {waiting_for}"
                        )));
                    }
                    Ok(_) => {}
                    Err(e) => return Err(ClientError::ConnectionLost(e.to_string())),
                }
            }
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, read)
            .await
            .map_err(|_| ClientError::Timeout(waiting_for))?
    }

    pub(crate) async fn hello(&mut self) -> Result<HelloReply, ClientError> {
        let hello = Hello {
            version: PROTOCOL_VERSION,
            client: format!("sotto-client/{}", env!("CARGO_PKG_VERSION")),
        };
        self.send(&ClientFrame::Hello(hello)).await?;
        match self.recv("the hello reply").await? {
            ServerFrame::HelloReply(reply) => Ok(reply),
            other => Err(ClientError::Protocol(format!(
                "expected a hello reply, got {}",
                frame_name(&other)
            ))),
        }
    }

    /// Sends a request and waits for its reply (an error reply as
    /// [`ClientError::Server`]); events that arrive first are kept for the
    /// reader.
    pub(crate) async fn ask(&mut self, request: Request) -> Result<Response, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&ClientFrame::Request { id, request }).await?;
        loop {
            match self.recv("the login reply").await? {
                ServerFrame::Reply { id: got, result } if got == id => {
                    return result.map_err(ClientError::Server);
                }
                event @ ServerFrame::Event { .. } => {
                    if self.early.len() >= crate::EVENT_CAPACITY {
                        return Err(ClientError::Protocol(
                            "too many events before the login reply".into(),
                        ));
                    }
                    self.early.push(event);
                }
                other => {
                    return Err(ClientError::Protocol(format!(
                        "expected the login reply, got {}",
                        frame_name(&other)
                    )));
                }
            }
        }
    }
}

fn frame_name(frame: &ServerFrame) -> &'static str {
    match frame {
        ServerFrame::HelloReply(_) => "a hello reply",
        ServerFrame::Reply { .. } => "a reply to another request",
        ServerFrame::Event { .. } => "an event",
    }
}

#[cfg(test)]
mod tests;
