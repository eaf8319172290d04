//! One simulated client's connection, for either protocol.
//!
//! A [`Session`] owns a TLS stream and its read and write buffers. Reading is
//! split in two so it fits in a `select!`: [`Session::read_some`] is the only
//! await (cancel-safe: it is `read_buf`), and [`Session::parse`] turns the
//! bytes read into [`Incoming`] items without awaiting. Sends are queued into
//! the write buffer and written by [`Session::flush`], which also sends the
//! acknowledgements collected while parsing (one cumulative Sotto `Ack` per
//! room per read burst). Sotto frames are decoded with `sotto-proto` only.

use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::BytesMut;
use sotto_proto::{
    Ack, ClientFrame, Credential, DeviceId, ErrorReply, EventKind, FrameDecoder, GroupName, Hello,
    Login, PROTOCOL_VERSION, Request, Response, RoomContent, RoomRef, ServerFrame, SessionToken,
    Username,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

use crate::irc::IrcState;
use crate::payload::Payload;
use crate::tls::Stream;

/// How long a setup step (hello, login, join, group creation) may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a bench message goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// The Sotto lobby.
    Lobby,
    /// A Sotto group.
    Group(GroupName),
    /// A Sotto direct room with this user.
    Direct(Username),
    /// An IRC channel or nick.
    Irc(String),
}

/// Something a read burst brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// A bench message (possibly the sender's own echo).
    Message(Payload),
    /// The reply to a request: success or not.
    Replied { id: u64, ok: bool },
    /// Sotto: the backlog after login has been sent.
    CaughtUp,
    /// IRC: registration completed (`001`).
    Registered,
    /// IRC: end of the channel's NAMES list (`366`), i.e. joined.
    Joined,
    /// IRC: the nick is taken (`433`), e.g. by a previous run's connection.
    NickInUse,
}

/// Protocol-specific state.
#[derive(Debug)]
enum ProtoState {
    Sotto {
        /// Frame splitter (server frames up to `MAX_FRAME_LEN`).
        decoder: FrameDecoder,
        /// Next request id (ids start at 1; 0 is the server's).
        next_id: u64,
        /// Highest room sequence seen per non-lobby room since acks were
        /// last written.
        acks: Vec<(u64, u64)>,
        /// When acks were last written: like the client library, the bench
        /// acknowledges at most every `ACK_INTERVAL`.
        acked_at: std::time::Instant,
    },
    Irc(IrcState),
}

/// Records that `room_id` has been read up to `seq` (acks are cumulative).
fn note_ack(acks: &mut Vec<(u64, u64)>, room_id: u64, seq: u64) {
    match acks.iter_mut().find(|(r, _)| *r == room_id) {
        Some(a) => a.1 = a.1.max(seq),
        None => acks.push((room_id, seq)),
    }
}

/// A connection and its buffers.
#[derive(Debug)]
pub struct Session {
    /// The TLS stream.
    stream: Stream,
    /// Bytes read and not yet parsed.
    rbuf: BytesMut,
    /// Bytes queued for the next flush.
    wbuf: BytesMut,
    /// Framing and protocol state.
    proto: ProtoState,
}

impl Session {
    /// Wraps a fresh Sotto connection (before the hello).
    pub fn sotto(stream: Stream) -> Self {
        Self::new(
            stream,
            ProtoState::Sotto {
                decoder: FrameDecoder::default(),
                next_id: 1,
                acks: Vec::new(),
                acked_at: std::time::Instant::now(),
            },
        )
    }

    /// Wraps a fresh IRC connection (before registration).
    pub fn irc(stream: Stream, nick: String) -> Self {
        Self::new(stream, ProtoState::Irc(IrcState::new(nick)))
    }

    fn new(stream: Stream, proto: ProtoState) -> Self {
        Self {
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            proto,
        }
    }

    /// Reads what the socket has (cancel-safe). `Ok(0)` is end of stream.
    pub async fn read_some(&mut self) -> std::io::Result<usize> {
        if self.rbuf.capacity() - self.rbuf.len() < 8192 {
            self.rbuf.reserve(16 * 1024);
        }
        self.stream.read_buf(&mut self.rbuf).await
    }

    /// Parses everything complete in the read buffer into `out`.
    pub fn parse(&mut self, out: &mut Vec<Incoming>) -> anyhow::Result<()> {
        match &mut self.proto {
            ProtoState::Sotto { decoder, acks, .. } => {
                while let Some(raw) = decoder.decode(&mut self.rbuf)? {
                    match ServerFrame::decode(&raw)? {
                        ServerFrame::Reply { id, result } => {
                            if id == 0 {
                                bail!("connection error from server: {:?}", result.err());
                            }
                            out.push(Incoming::Replied {
                                id,
                                ok: result.is_ok(),
                            });
                        }
                        ServerFrame::Event { body, .. } => match body.kind {
                            EventKind::Room(ev) => {
                                if ev.room != RoomRef::Lobby {
                                    note_ack(acks, ev.room_id, ev.seq);
                                }
                                let bytes = match &ev.content {
                                    RoomContent::Text { text } => text.as_bytes(),
                                    RoomContent::Envelope { payload, .. } => payload.as_slice(),
                                    _ => continue,
                                };
                                if let Some(p) = Payload::decode(bytes) {
                                    out.push(Incoming::Message(p));
                                }
                            }
                            EventKind::CaughtUp => out.push(Incoming::CaughtUp),
                            EventKind::Shutdown { message } => {
                                bail!("server is shutting down: {message}")
                            }
                            EventKind::Presence { .. }
                            | EventKind::KeyCount { .. }
                            | EventKind::DevicesChanged { .. }
                            | EventKind::DeviceRemoved { .. } => {}
                        },
                        ServerFrame::HelloReply(_) => bail!("unexpected second HelloReply"),
                    }
                }
            }
            ProtoState::Irc(state) => state.parse(&mut self.rbuf, &mut self.wbuf, out)?,
        }
        Ok(())
    }

    /// Queues a Sotto request; returns its id.
    pub fn queue_request(&mut self, request: Request) -> anyhow::Result<u64> {
        let ProtoState::Sotto { next_id, .. } = &mut self.proto else {
            bail!("not a Sotto session");
        };
        let id = *next_id;
        *next_id += 1;
        ClientFrame::Request { id, request }.encode(&mut self.wbuf)?;
        Ok(id)
    }

    /// Queues a bench message; returns the Sotto request id (0 for IRC).
    pub fn queue_message(&mut self, target: &Target, text: String) -> anyhow::Result<u64> {
        let request = match target {
            Target::Irc(name) => {
                self.wbuf.extend_from_slice(b"PRIVMSG ");
                self.wbuf.extend_from_slice(name.as_bytes());
                self.wbuf.extend_from_slice(b" :");
                self.wbuf.extend_from_slice(text.as_bytes());
                self.wbuf.extend_from_slice(b"\r\n");
                return Ok(0);
            }
            Target::Lobby => Request::SendLobby { text },
            Target::Group(group) => Request::SendGroup {
                group: group.clone(),
                payload: text.into_bytes(),
            },
            Target::Direct(to) => Request::SendDirect {
                to: to.clone(),
                payload: text.into_bytes(),
            },
        };
        self.queue_request(request)
    }

    /// Queues raw bytes (IRC commands).
    pub fn queue_raw(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    /// Writes pending acks and queued bytes.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if let ProtoState::Sotto { acks, acked_at, .. } = &mut self.proto
            && acked_at.elapsed() >= sotto_proto::limits::ACK_INTERVAL
        {
            *acked_at = std::time::Instant::now();
            for (room_id, seq) in acks.drain(..) {
                ClientFrame::Ack(Ack { room_id, seq }).encode(&mut self.wbuf)?;
            }
        }
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.stream.flush().await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Whether this is an IRC session.
    pub fn is_irc(&self) -> bool {
        matches!(self.proto, ProtoState::Irc(_))
    }

    /// Closes the connection politely (IRC `QUIT`, then TLS close_notify),
    /// bounded in time.
    pub async fn close(mut self) {
        if self.is_irc() {
            crate::irc::quit(&mut self).await;
        }
        // Acknowledge what was read, as a client does before it leaves, so
        // the next run does not start with a backlog of this one.
        if let ProtoState::Sotto { acks, .. } = &mut self.proto {
            for (room_id, seq) in acks.drain(..) {
                let _ = ClientFrame::Ack(Ack { room_id, seq }).encode(&mut self.wbuf);
            }
            if !self.wbuf.is_empty() {
                let _ = self.stream.write_all(&self.wbuf).await;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.stream.shutdown()).await;
    }

    /// Reads and parses until `want` matches an item, with a deadline.
    /// Everything else parsed meanwhile is passed to `other`.
    pub async fn read_until(
        &mut self,
        deadline: Instant,
        mut want: impl FnMut(&Incoming) -> bool,
        mut other: impl FnMut(Incoming),
    ) -> anyhow::Result<Incoming> {
        let mut items = Vec::new();
        loop {
            self.parse(&mut items)?;
            let mut found = None;
            for item in items.drain(..) {
                if found.is_none() && want(&item) {
                    found = Some(item);
                } else {
                    other(item);
                }
            }
            self.flush().await?;
            if let Some(item) = found {
                return Ok(item);
            }
            self.read_more(deadline, "timed out waiting for the server")
                .await?;
        }
    }

    /// Sotto: sends the hello and checks the reply; the server's id.
    pub async fn sotto_hello(&mut self) -> anyhow::Result<sotto_proto::ServerId> {
        ClientFrame::Hello(Hello {
            version: PROTOCOL_VERSION,
            client: format!("sotto-bench {}", env!("CARGO_PKG_VERSION")),
        })
        .encode(&mut self.wbuf)?;
        self.flush().await?;
        let ProtoState::Sotto { decoder, .. } = &self.proto else {
            bail!("not a Sotto session");
        };
        let decoder = *decoder;
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(raw) = decoder.decode(&mut self.rbuf)? {
                match ServerFrame::decode(&raw)? {
                    ServerFrame::HelloReply(reply) => {
                        return reply
                            .result
                            .map(|ok| ok.server_id)
                            .map_err(|e| anyhow::anyhow!("hello refused: {e}"));
                    }
                    other => bail!("expected HelloReply, got {other:?}"),
                }
            }
            self.read_more(deadline, "timed out waiting for HelloReply")
                .await?;
        }
    }

    /// Reads more bytes before `deadline`; `waiting` says what for.
    async fn read_more(&mut self, deadline: Instant, waiting: &str) -> anyhow::Result<()> {
        let n = tokio::time::timeout_at(deadline, self.read_some())
            .await
            .with_context(|| waiting.to_owned())??;
        if n == 0 {
            bail!("server closed the connection ({waiting})");
        }
        Ok(())
    }

    /// Sotto: sends one request and waits for its reply. Events arriving
    /// meanwhile are parsed (and acknowledged) but otherwise ignored.
    pub async fn sotto_request(
        &mut self,
        request: Request,
    ) -> anyhow::Result<Result<Response, ErrorReply>> {
        let id = self.queue_request(request)?;
        self.flush().await?;
        let ProtoState::Sotto { decoder, .. } = &self.proto else {
            bail!("not a Sotto session");
        };
        let decoder = *decoder;
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            while let Some(raw) = decoder.decode(&mut self.rbuf)? {
                let frame = ServerFrame::decode(&raw)?;
                match frame {
                    ServerFrame::Reply { id: got, result } if got == id => return Ok(result),
                    ServerFrame::Reply { id: 0, result } => {
                        bail!("connection error from server: {:?}", result.err())
                    }
                    ServerFrame::Event {
                        body:
                            sotto_proto::EventBody {
                                kind: EventKind::Room(ev),
                                ..
                            },
                        ..
                    } if ev.room != RoomRef::Lobby => {
                        if let ProtoState::Sotto { acks, .. } = &mut self.proto {
                            note_ack(acks, ev.room_id, ev.seq);
                        }
                    }
                    _ => {}
                }
            }
            self.read_more(deadline, "timed out waiting for a reply")
                .await?;
        }
    }

    /// Sotto: logs in with a password (OPAQUE), registering the account
    /// first if it is new. The bench's throwaway accounts skip the client's
    /// Argon2id stretch ([`Stretch::NoneForBenchmarks`]): what is measured
    /// is the server's side. `Ok(Err(_))` is the server's refusal.
    pub async fn sotto_password_login(
        &mut self,
        server_id: sotto_proto::ServerId,
        user: &Username,
        device: &DeviceId,
        password: &str,
    ) -> anyhow::Result<Result<SessionToken, ErrorReply>> {
        use sotto_crypto::opaque::{self, Stretch};
        use sotto_proto::OpaqueMessage;
        let stretch = Stretch::NoneForBenchmarks;
        let login = |credential| {
            Request::Login(Login {
                user: user.clone(),
                credential,
                device_id: device.clone(),
                server_password: None,
            })
        };
        let (state, request) = opaque::client_register_start(password)?;
        let reply = self
            .sotto_request(login(Credential::Register(OpaqueMessage(request))))
            .await?;
        let last = match reply {
            Ok(Response::Challenge { message }) => {
                state.finish(password, &message.0, user.as_str(), &server_id.0, stretch)?
            }
            Err(e) if e.code == sotto_proto::ErrorCode::UsernameTaken => {
                let (state, request) = opaque::client_login_start(password)?;
                match self
                    .sotto_request(login(Credential::Opaque(OpaqueMessage(request))))
                    .await?
                {
                    Ok(Response::Challenge { message }) => {
                        state.finish(password, &message.0, user.as_str(), &server_id.0, stretch)?
                    }
                    Ok(other) => bail!("unexpected login reply {other:?}"),
                    Err(e) => return Ok(Err(e)),
                }
            }
            Ok(other) => bail!("unexpected registration reply {other:?}"),
            Err(e) => return Ok(Err(e)),
        };
        let reply = self
            .sotto_request(Request::LoginFinish {
                message: OpaqueMessage(last),
            })
            .await?;
        Ok(match reply {
            Ok(Response::LoggedIn(done)) => Ok(done.session_token),
            Ok(other) => bail!("unexpected login reply {other:?}"),
            Err(e) => Err(e),
        })
    }

    /// Sotto: logs in. `Ok(Err(_))` is the server's refusal.
    pub async fn sotto_login(
        &mut self,
        user: &Username,
        device: &DeviceId,
        credential: Credential,
    ) -> anyhow::Result<Result<SessionToken, ErrorReply>> {
        let reply = self
            .sotto_request(Request::Login(Login {
                user: user.clone(),
                credential,
                device_id: device.clone(),
                server_password: None,
            }))
            .await?;
        Ok(match reply {
            Ok(Response::LoggedIn(done)) => Ok(done.session_token),
            Ok(other) => bail!("unexpected login reply {other:?}"),
            Err(e) => Err(e),
        })
    }
}
