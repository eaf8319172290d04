//! A raw TLS protocol peer for sending exactly the bytes a test wants.

use std::net::SocketAddr;

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use sotto_crypto::opaque::{self, Stretch};
use sotto_proto::{
    ClientFrame, Credential, DeviceId, ErrorCode, ErrorReply, FrameDecoder, Hello, HelloReply,
    Login, OpaqueMessage, PROTOCOL_VERSION, Request, Response, ServerFrame, ServerId, Username,
};
use sotto_test_support::PATIENCE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub struct Raw {
    stream: TlsStream<TcpStream>,
    buf: BytesMut,
    next_id: u64,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::connect_with(addr, None).await
    }

    /// Connects with an optional small receive buffer (a client that will
    /// stop reading should not hide megabytes in its kernel buffer).
    pub async fn connect_with(addr: SocketAddr, recv_buffer: Option<u32>) -> Self {
        Self::connect_from(addr, recv_buffer, None).await
    }

    /// Connects from a chosen local address (another loopback address is
    /// another client address for the server's limits).
    pub async fn connect_from(
        addr: SocketAddr,
        recv_buffer: Option<u32>,
        from: Option<std::net::IpAddr>,
    ) -> Self {
        // The client library's verifier: any certificate (recorded, not
        // pinned here), TLS 1.3 handshake signatures checked.
        let (config, _seen) = sotto_client::tls::client_config().unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        if let Some(ip) = from {
            socket.bind(SocketAddr::new(ip, 0)).unwrap();
        }
        let tcp = socket.connect(addr).await.unwrap();
        let stream = TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        Self {
            stream,
            buf: BytesMut::new(),
            next_id: 1,
        }
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        // The server may already have closed; tests look at what comes back.
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    pub async fn send(&mut self, frame: ClientFrame) {
        let mut buf = BytesMut::new();
        frame.encode(&mut buf).unwrap();
        self.send_bytes(&buf).await;
    }

    pub async fn request(&mut self, request: Request) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(ClientFrame::Request { id, request }).await;
        id
    }

    /// The next frame, or `None` once the server has closed the connection.
    pub async fn recv(&mut self) -> Option<ServerFrame> {
        let decoder = FrameDecoder::default();
        loop {
            if let Some(raw) = decoder.decode(&mut self.buf).unwrap() {
                return Some(ServerFrame::decode(&raw).unwrap());
            }
            let read = tokio::time::timeout(PATIENCE, self.stream.read_buf(&mut self.buf))
                .await
                .expect("server answers or closes");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Sends a request; its reply, with the kinds of the events that came
    /// before it.
    pub async fn ask(
        &mut self,
        request: Request,
    ) -> (
        Result<sotto_proto::Response, sotto_proto::ErrorReply>,
        Vec<sotto_proto::EventKind>,
    ) {
        let id = self.request(request).await;
        let mut events = Vec::new();
        loop {
            match self.recv().await.expect("server answers") {
                ServerFrame::Reply { id: got, result } if got == id => return (result, events),
                ServerFrame::Event { body, .. } => events.push(body.kind),
                _ => {}
            }
        }
    }

    /// The next room event carrying an envelope (a private or group
    /// message, or a to-device one), skipping everything else.
    pub async fn next_envelope_event(&mut self) -> sotto_proto::RoomEvent {
        loop {
            if let Some(ServerFrame::Event {
                body:
                    sotto_proto::EventBody {
                        kind: sotto_proto::EventKind::Room(event),
                        ..
                    },
                ..
            }) = self.recv().await
                && matches!(
                    event.content,
                    sotto_proto::RoomContent::Envelope { .. }
                        | sotto_proto::RoomContent::ToDevice { .. }
                )
            {
                return event;
            }
        }
    }

    /// The Megolm session of the next private or group message from
    /// `sender` (a raw device of a member's account sees them all, as the
    /// server does).
    pub async fn next_session_of(&mut self, sender: &str) -> String {
        loop {
            let event = self.next_envelope_event().await;
            if event.sender.as_str() == sender
                && let sotto_proto::RoomContent::Envelope { payload, .. } = event.content
                && let Ok(envelope) = sotto_proto::e2e::MegolmEnvelope::decode(&payload)
            {
                return envelope.session_id;
            }
        }
    }

    /// The next reply (skipping events): (id, result).
    pub async fn reply(
        &mut self,
    ) -> Option<(u64, Result<sotto_proto::Response, sotto_proto::ErrorReply>)> {
        loop {
            match self.recv().await? {
                ServerFrame::Reply { id, result } => return Some((id, result)),
                _ => continue,
            }
        }
    }

    /// Waits until the server closes the connection.
    pub async fn closed(&mut self) {
        while self.recv().await.is_some() {}
    }

    pub async fn hello(&mut self, version: u32) -> HelloReply {
        self.send(ClientFrame::Hello(Hello {
            version,
            client: "raw-test".into(),
        }))
        .await;
        match self.recv().await {
            Some(ServerFrame::HelloReply(reply)) => reply,
            other => panic!("expected a hello reply, got {other:?}"),
        }
    }

    /// Hello and login as `name` with password `pw-NAME`.
    pub async fn login(addr: SocketAddr, name: &str) -> Self {
        Self::login_with(addr, name, None).await
    }

    /// [`Raw::login`] with a chosen receive buffer size.
    pub async fn login_with(addr: SocketAddr, name: &str, recv_buffer: Option<u32>) -> Self {
        let (raw, result) = Self::try_login(
            addr,
            name,
            "rawdevice",
            Auth::Password(format!("pw-{name}")),
            recv_buffer,
        )
        .await;
        result.expect("login succeeds");
        raw
    }

    /// Hello and one login attempt as `name` on device `rawdevice-NAME`-ish.
    pub async fn try_login(
        addr: SocketAddr,
        name: &str,
        device: &str,
        auth: impl Into<Auth>,
        recv_buffer: Option<u32>,
    ) -> (Self, Result<sotto_proto::Response, sotto_proto::ErrorReply>) {
        let device_id = DeviceId::parse(&format!("{device}-{name}")).unwrap();
        Self::try_login_device(addr, name, device_id, auth, recv_buffer).await
    }

    /// One login attempt as `name` on exactly `device_id`: a password goes
    /// through OPAQUE (registering the name if it is free), as the client
    /// library does it; a wrong one is refused on this side, with
    /// `wrong_password`, as the client library reports it.
    pub async fn try_login_device(
        addr: SocketAddr,
        name: &str,
        device_id: DeviceId,
        auth: impl Into<Auth>,
        recv_buffer: Option<u32>,
    ) -> (Self, Result<sotto_proto::Response, sotto_proto::ErrorReply>) {
        Self::try_login_from(addr, None, name, device_id, auth, recv_buffer).await
    }

    /// [`Raw::try_login_device`] from a chosen local address.
    pub async fn try_login_from(
        addr: SocketAddr,
        from: Option<std::net::IpAddr>,
        name: &str,
        device_id: DeviceId,
        auth: impl Into<Auth>,
        recv_buffer: Option<u32>,
    ) -> (Self, Result<sotto_proto::Response, sotto_proto::ErrorReply>) {
        let mut raw = Self::connect_from(addr, recv_buffer, from).await;
        let hello = raw.hello(PROTOCOL_VERSION).await;
        let server_id = hello.result.expect("hello accepted").server_id;
        let user = Username::parse(name).unwrap();
        let login = |credential| {
            Request::Login(Login {
                user: user.clone(),
                credential,
                device_id: device_id.clone(),
                server_password: None,
            })
        };
        let result = match auth.into() {
            Auth::Credential(credential) => raw.ask(login(credential)).await.0,
            Auth::Password(password) => raw.opaque(&user, server_id, &password, login).await,
        };
        (raw, result)
    }

    /// Registers `user` with `password`, or logs it in if the name is taken.
    async fn opaque(
        &mut self,
        user: &Username,
        server_id: ServerId,
        password: &str,
        login: impl Fn(Credential) -> Request,
    ) -> Result<sotto_proto::Response, sotto_proto::ErrorReply> {
        let stretch = Stretch::Argon2id;
        let (state, request) = opaque::client_register_start(password).unwrap();
        let last = match self
            .ask(login(Credential::Register(OpaqueMessage(request))))
            .await
            .0
        {
            Ok(Response::Challenge { message }) => state
                .finish(password, &message.0, user.as_str(), &server_id.0, stretch)
                .unwrap(),
            Err(e) if e.code == ErrorCode::UsernameTaken => {
                let (state, request) = opaque::client_login_start(password).unwrap();
                let Response::Challenge { message } = self
                    .ask(login(Credential::Opaque(OpaqueMessage(request))))
                    .await
                    .0?
                else {
                    panic!("expected a login challenge");
                };
                state
                    .finish(password, &message.0, user.as_str(), &server_id.0, stretch)
                    .map_err(|e| ErrorReply::new(ErrorCode::WrongPassword, e.to_string()))?
            }
            other => return other,
        };
        self.ask(Request::LoginFinish {
            message: OpaqueMessage(last),
        })
        .await
        .0
    }
}

/// How a raw login proves itself.
pub enum Auth {
    /// A password, through OPAQUE.
    Password(String),
    /// Exactly this credential in the login request.
    Credential(Credential),
}

impl From<Credential> for Auth {
    fn from(credential: Credential) -> Self {
        Auth::Credential(credential)
    }
}
