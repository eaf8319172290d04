//! One client connection: TLS handshake, hello, login, then a reader loop
//! that turns frames into core operations. The writing side is `writer.rs`.
//!
//! Anything the peer sends is untrusted. A malformed request gets an error
//! reply; a framing error (oversize, unknown kind, truncated) or garbage
//! before login closes this connection only.

use rustc_hash::FxHashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sotto_proto::limits::{
    MAX_CLIENT_NAME_LEN, MAX_FRAME_LEN, MAX_HISTORY, MAX_HISTORY_BYTES, MAX_PRELOGIN_FRAME_LEN,
};
use sotto_proto::{
    Ack, ClientFrame, DecodeError, ErrorCode, ErrorReply, FrameDecoder, FrameError, HelloOk,
    HelloReply, HistoryCursor, PROTOCOL_VERSION, RawFrame, Request, Response, ServerFrame,
};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::auth::Hasher;
use crate::core::{ConnHandle, Op, Outbound};
use crate::limiter::LoginLimiter;
use crate::store::Reads;
use crate::{Config, Registration};

/// Time allowed for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed from connect to a successful login.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long acknowledgements are gathered before the core sees them: a busy
/// client acks after every burst it reads, and one core operation per burst
/// per connection was a large share of the core's work.
const ACK_DELAY: Duration = Duration::from_millis(100);
/// Read buffer capacity kept while the connection is idle.
const IDLE_BUFFER_MAX: usize = 512;
/// Consecutive rate-limited requests after which the connection is closed.
const MAX_STRIKES: u32 = 1000;

/// State every connection task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Queue of the core thread.
    pub core: mpsc::Sender<Op>,
    /// Readers for backlogs and history.
    pub store: Reads,
    /// Old password hashes, checked once when an account moves over.
    pub hasher: Hasher,
    pub limiter: LoginLimiter,
    /// The server's OPAQUE keys.
    pub opaque: sotto_crypto::opaque::ServerKeys,
    pub config: Config,
    /// Told to clients in the hello (see [`sotto_proto::HelloOk::server_id`]).
    pub server_id: sotto_proto::ServerId,
    /// Source of connection ids.
    pub next_conn: AtomicU64,
}

/// Why the reader stopped.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one frame, growing the buffer only as bytes arrive.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    decoder: &FrameDecoder,
) -> Result<Option<RawFrame>, ReadError> {
    loop {
        if let Some(frame) = decoder.decode(buf)? {
            return Ok(Some(frame));
        }
        if buf.is_empty() && buf.capacity() > IDLE_BUFFER_MAX {
            // Give a big frame's memory back instead of holding it while idle.
            *buf = BytesMut::new();
        }
        let want = decoder
            .needed(buf)
            .map_or(IDLE_BUFFER_MAX, |n| n.saturating_sub(buf.len()));
        buf.reserve(want.clamp(IDLE_BUFFER_MAX, 64 * 1024));
        if reader.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(ReadError::Truncated)
            };
        }
    }
}

fn reply_frame(id: u64, result: Result<Response, ErrorReply>) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    if let Err(e) = sotto_proto::frame::encode_reply(&mut buf, id, result) {
        tracing::error!("cannot encode reply {id} (answered with an error): {e}");
    }
    (!buf.is_empty()).then(|| buf.freeze())
}

fn error(code: ErrorCode, message: impl Into<String>) -> ErrorReply {
    ErrorReply::new(code, message)
}

/// Serves one accepted TCP connection until it closes.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    // Boxed: the handshake's future is large and done once; the task that
    // holds an idle connection is sized for its largest await.
    let handshake = Box::pin(tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        acceptor.accept(stream),
    ));
    let tls = match handshake.await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let (reader, writer) = tokio::io::split(tls);
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = crate::queue::queue(shared.config.outbound_buffer);
    let cancel = CancellationToken::new();
    let writer_task = tokio::spawn(crate::writer::write_loop(
        writer,
        rx,
        shared.store.clone(),
        cancel.clone(),
    ));
    let handle = ConnHandle {
        id,
        tx,
        cancel: cancel.clone(),
    };
    let mut conn = Connection {
        shared: shared.clone(),
        handle,
        peer,
        user: None,
        auth: None,
        strikes: 0,
        acks: FxHashMap::default(),
        acks_due: None,
        bucket: TokenBucket::new(&shared.config),
    };
    tracing::debug!(%peer, conn = id, "connected");
    let result = tokio::select! {
        r = conn.read_loop(reader) => r,
        () = cancel.cancelled() => Ok(()),
        () = shutdown.cancelled() => Ok(()),
    };
    if let Err(e) = &result {
        tracing::debug!(%peer, conn = id, "closing: {e}");
        if let ReadError::Frame(e) = e {
            conn.send_reply(0, Err(error(ErrorCode::BadRequest, e.to_string())))
                .await;
        }
    }
    if conn.user.is_some() {
        conn.flush_acks().await;
        let _ = shared.core.send(Op::Detach { conn_id: id }).await;
    }
    if !shutdown.is_cancelled() {
        // Let queued replies go out, then close; on shutdown the core sends
        // the goodbye and `Close` itself.
        conn.handle.send(Outbound::Close);
    }
    drop(conn);
    let _ = tokio::time::timeout(Duration::from_secs(10), writer_task).await;
    cancel.cancel();
    tracing::debug!(%peer, conn = id, "disconnected");
}

/// Per-connection request budget: `rate` per second, bursts of `burst`.
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(config: &Config) -> Self {
        let burst = f64::from(config.request_burst.max(1));
        Self {
            tokens: burst,
            rate: f64::from(config.requests_per_second.max(1)),
            burst,
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The reading side of a connection.
#[derive(Debug)]
struct Connection {
    shared: Arc<Shared>,
    handle: ConnHandle,
    peer: SocketAddr,
    /// Set once logged in.
    user: Option<i64>,
    /// An OPAQUE exchange in progress, and who is logged in.
    auth: Option<Box<session::AuthState>>,
    /// Consecutive requests refused by the rate limit.
    strikes: u32,
    /// Acknowledged positions not yet handed to the core, per room.
    acks: FxHashMap<u64, u64>,
    /// When `acks` must be handed over.
    acks_due: Option<Instant>,
    bucket: TokenBucket,
}

impl Connection {
    /// Hands pending acknowledgements to the core.
    async fn flush_acks(&mut self) {
        self.acks_due = None;
        if self.acks.is_empty() {
            return;
        }
        let acks = self
            .acks
            .drain()
            .map(|(room_id, seq)| Ack { room_id, seq })
            .collect();
        let _ = self
            .shared
            .core
            .send(Op::Acks {
                conn_id: self.handle.id,
                acks,
            })
            .await;
    }

    async fn send_reply(&self, id: u64, result: Result<Response, ErrorReply>) {
        if let Some(frame) = reply_frame(id, result) {
            self.handle.send(Outbound::Frame(frame));
        }
    }

    async fn read_loop<R: AsyncRead + Unpin>(&mut self, mut reader: R) -> Result<(), ReadError> {
        let mut buf = BytesMut::new();
        let mut decoder = FrameDecoder::new(MAX_PRELOGIN_FRAME_LEN);
        let deadline = Instant::now() + LOGIN_TIMEOUT;

        // Hello.
        let Some(raw) =
            tokio::time::timeout_at(deadline.into(), read_frame(&mut reader, &mut buf, &decoder))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no hello"))??
        else {
            return Ok(());
        };
        let hello = match ClientFrame::decode(&raw) {
            Ok(ClientFrame::Hello(hello)) => hello,
            _ => {
                self.send_reply(
                    0,
                    Err(error(ErrorCode::BadRequest, "expected a hello frame first")),
                )
                .await;
                return Ok(());
            }
        };
        if hello.client.len() > MAX_CLIENT_NAME_LEN {
            self.send_reply(
                0,
                Err(error(
                    ErrorCode::BadRequest,
                    format!("client name longer than {MAX_CLIENT_NAME_LEN} bytes"),
                )),
            )
            .await;
            return Ok(());
        }
        let version_ok = hello.version == PROTOCOL_VERSION;
        let result = if version_ok {
            Ok(HelloOk {
                server_password_required: self.shared.config.server_password.is_some(),
                registration_open: self.shared.config.registration == Registration::Open,
                server_id: self.shared.server_id,
            })
        } else {
            Err(error(
                ErrorCode::UnsupportedVersion,
                format!(
                    "please upgrade: this server speaks protocol version {PROTOCOL_VERSION}, your client speaks version {}",
                    hello.version
                ),
            ))
        };
        let mut out = BytesMut::new();
        let reply = HelloReply {
            version: PROTOCOL_VERSION,
            server: format!("sotto/{}", env!("CARGO_PKG_VERSION")),
            result,
        };
        if ServerFrame::HelloReply(reply).encode(&mut out).is_ok() {
            self.handle.send(Outbound::Frame(out.freeze()));
        }
        if !version_ok {
            return Ok(());
        }

        // Login, then requests.
        loop {
            let next = if self.user.is_none() {
                tokio::time::timeout_at(
                    deadline.into(),
                    read_frame(&mut reader, &mut buf, &decoder),
                )
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "login timed out")
                })??
            } else if let Some(due) = self.acks_due {
                match tokio::time::timeout_at(
                    due.into(),
                    read_frame(&mut reader, &mut buf, &decoder),
                )
                .await
                {
                    Ok(next) => next?,
                    Err(_) => {
                        // Reading is cancel-safe: bytes read so far stay in `buf`.
                        self.flush_acks().await;
                        continue;
                    }
                }
            } else {
                read_frame(&mut reader, &mut buf, &decoder).await?
            };
            let Some(raw) = next else {
                return Ok(());
            };
            match ClientFrame::decode(&raw) {
                Ok(ClientFrame::Request { id, request }) => {
                    if !self.bucket.take() {
                        self.strikes += 1;
                        if self.strikes > MAX_STRIKES {
                            return Err(std::io::Error::other("request flood").into());
                        }
                        self.send_reply(
                            id,
                            Err(error(
                                ErrorCode::RateLimited,
                                "too many requests: slow down",
                            )),
                        )
                        .await;
                        continue;
                    }
                    self.strikes = 0;
                    self.request(id, request).await;
                    if self.user.is_some() && decoder.max_len() != MAX_FRAME_LEN {
                        decoder.set_max_len(MAX_FRAME_LEN);
                    }
                }
                Ok(ClientFrame::Ack(ack)) => {
                    if self.user.is_some() {
                        // Acks are cumulative: keep the highest per room and
                        // hand them to the core at most every ACK_DELAY.
                        let seq = self.acks.entry(ack.room_id).or_insert(0);
                        *seq = (*seq).max(ack.seq);
                        self.acks_due
                            .get_or_insert_with(|| Instant::now() + ACK_DELAY);
                    }
                }
                Ok(ClientFrame::Hello(_)) => {
                    self.send_reply(0, Err(error(ErrorCode::BadRequest, "hello sent twice")))
                        .await;
                }
                Err(DecodeError::Malformed {
                    request_id: Some(id),
                    reason,
                }) => {
                    self.send_reply(
                        id,
                        Err(error(
                            ErrorCode::BadRequest,
                            format!("malformed request: {reason}"),
                        )),
                    )
                    .await;
                }
                Err(e) => {
                    self.send_reply(0, Err(error(ErrorCode::BadRequest, e.to_string())))
                        .await;
                    return Ok(());
                }
            }
        }
    }

    /// Handles one request. Logins, password changes and store reads are
    /// rare and their futures large (OPAQUE, PostgreSQL queries): they are
    /// boxed, so the idle connection's task, sized for its largest await,
    /// stays small.
    async fn request(&mut self, id: u64, request: Request) {
        let Some(user) = self.user else {
            let result = match request {
                Request::Login(login) => Box::pin(self.login(id, login)).await,
                Request::LoginFinish { message } => Box::pin(self.login_finish(id, message)).await,
                Request::Ping => Err(Some(Response::Pong)),
                other => Ok(Err(error(
                    ErrorCode::NotLoggedIn,
                    format!("log in first ({} needs a session)", other.name()),
                ))),
            };
            match result {
                // Attach queued the LoggedIn reply itself.
                Ok(Ok(())) => {}
                Ok(Err(e)) => self.send_reply(id, Err(e)).await,
                Err(Some(response)) => self.send_reply(id, Ok(response)).await,
                Err(None) => {}
            }
            return;
        };
        match request {
            Request::Ping => self.send_reply(id, Ok(Response::Pong)).await,
            Request::PasswordStart { old, new } => {
                let result = Box::pin(self.password_start(old, new)).await;
                self.send_reply(id, result).await;
            }
            Request::PasswordFinish { old, new } => {
                let result = Box::pin(self.password_finish(user, old, new)).await;
                self.send_reply(id, result).await;
            }
            Request::LoginFinish { .. } => {
                self.send_reply(
                    id,
                    Err(error(ErrorCode::AlreadyLoggedIn, "already logged in")),
                )
                .await;
            }
            Request::History { limit, before } => {
                let result = Box::pin(self.history(user, limit, before)).await;
                self.send_reply(id, result).await;
            }
            Request::LobbySince { after, limit } => {
                let result = Box::pin(self.lobby_since(after, limit)).await;
                self.send_reply(id, result).await;
            }
            request => {
                let op = Op::Request {
                    conn_id: self.handle.id,
                    req_id: id,
                    request,
                };
                if self.shared.core.send(op).await.is_err() {
                    self.send_reply(
                        id,
                        Err(error(
                            ErrorCode::ShuttingDown,
                            "the server is shutting down",
                        )),
                    )
                    .await;
                }
            }
        }
    }

    async fn lobby_since(&self, after: u64, limit: u32) -> Result<Response, ErrorReply> {
        use sotto_proto::limits::MAX_LOBBY_CATCH_UP;
        if limit == 0 || limit > MAX_LOBBY_CATCH_UP {
            return Err(error(
                ErrorCode::Invalid,
                format!("lobby catch-up size must be between 1 and {MAX_LOBBY_CATCH_UP}"),
            ));
        }
        let (events, missed) = self
            .shared
            .store
            .lobby_since(after, limit as usize)
            .await
            .map_err(|e| {
                tracing::error!("lobby read failed: {e:#}");
                error(ErrorCode::Internal, "could not read the lobby")
            })?;
        Ok(Response::LobbySince {
            events: events.iter().filter_map(|e| e.decode().ok()).collect(),
            missed,
        })
    }

    async fn history(
        &self,
        user: i64,
        limit: u32,
        before: Option<HistoryCursor>,
    ) -> Result<Response, ErrorReply> {
        if limit == 0 || limit > MAX_HISTORY {
            return Err(error(
                ErrorCode::Invalid,
                format!("history size must be between 1 and {MAX_HISTORY}"),
            ));
        }
        let page = self
            .shared
            .store
            .history(user, limit as usize, before, MAX_HISTORY_BYTES)
            .await
            .map_err(|e| {
                tracing::error!("history read failed: {e:#}");
                error(ErrorCode::Internal, "could not read history")
            })?;
        Ok(Response::History {
            events: page.events.iter().filter_map(|e| e.decode().ok()).collect(),
            more: page.more,
            pruned_before: page.pruned_before,
        })
    }
}

mod session;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle connection keeps its reader and writer futures alive: a
    /// state machine is as large as its largest await point, so logins,
    /// password changes and store reads (PostgreSQL queries are large) must
    /// be boxed, not inlined. Unboxed they made the two 8.3 KB and 3.6 KB
    /// in a release build, 12 KB per idle connection; boxed, 2.7 KB and
    /// 0.8 KB. Prints the sizes with --nocapture.
    #[tokio::test]
    async fn connection_futures_stay_small() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::Config::new(dir.path());
        let identity = crate::prepare(&config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let (core, _rx) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            core,
            store: Reads::Sqlite(crate::store::sqlite::ReadPool::new(dir.path().join("db"))),
            hasher: Hasher::default(),
            limiter: LoginLimiter::default(),
            opaque: sotto_crypto::opaque::ServerKeys::generate(),
            config,
            server_id: sotto_proto::ServerId([1; 16]),
            next_conn: AtomicU64::new(1),
        });
        let serve_future = serve(
            stream,
            peer,
            TlsAcceptor::from(identity.config),
            shared,
            CancellationToken::new(),
        );
        let size = std::mem::size_of_val(&serve_future);
        println!("serve future: {size} bytes");
        drop(client);
        assert!(size < 4 * 1024, "the reader future grew to {size} bytes");
        let (_tx, rx) = crate::queue::queue(1024);
        let writer_future = crate::writer::write_loop(
            tokio::io::sink(),
            rx,
            Reads::Sqlite(crate::store::sqlite::ReadPool::new(dir.path().join("db"))),
            CancellationToken::new(),
        );
        let size = std::mem::size_of_val(&writer_future);
        println!("writer future: {size} bytes");
        assert!(size < 1536, "the writer future grew to {size} bytes");
    }
}
