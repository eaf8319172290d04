//! Standing where the operator stands: a TLS-terminating proxy with the
//! server's own certificate and key, recording every byte clients send
//! (what a hostile operator sees), and a hostile server with the same
//! identity that asks for the password in the clear.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use sotto_proto::{
    ClientFrame, Credential, ErrorCode, ErrorReply, FrameDecoder, HelloOk, HelloReply,
    PROTOCOL_VERSION, Request, ServerFrame, ServerId,
};
use sotto_test_support::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Everything clients sent through a [`recorder`], decrypted.
pub type Recording = Arc<Mutex<Vec<u8>>>;

/// A proxy in front of `server` that presents the server's certificate
/// (clients see the same fingerprint) and records what clients send.
pub async fn recorder(server: &TestServer) -> (SocketAddr, Recording) {
    let identity = sotto_server::prepare(&server.config).unwrap();
    assert_eq!(identity.fingerprint, server.fingerprint);
    let acceptor = TlsAcceptor::from(identity.config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = server.addr;
    let recording: Recording = Arc::default();
    let record = recording.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(client) = acceptor.accept(tcp).await else {
                    return;
                };
                let (config, _) = sotto_client::tls::client_config().unwrap();
                let tcp = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let Ok(server) = TlsConnector::from(config)
                    .connect(ServerName::try_from("localhost").unwrap(), tcp)
                    .await
                else {
                    return;
                };
                let (mut client_read, mut client_write) = tokio::io::split(client);
                let (mut server_read, mut server_write) = tokio::io::split(server);
                let up = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = client_read.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = server_write.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    let _ = client_write.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    (addr, recording)
}

/// What a [`hostile`] server was sent.
#[derive(Debug, Default)]
pub struct Seen {
    /// Every credential kind the clients tried, in order.
    pub credentials: Vec<&'static str>,
    /// Every byte the clients sent.
    pub bytes: Vec<u8>,
}

/// A hostile server with `server`'s identity (certificate and id): it
/// refuses tokens and answers every OPAQUE login with `legacy_login`,
/// asking for the password itself.
pub async fn hostile(server: &TestServer, server_id: ServerId) -> (SocketAddr, Arc<Mutex<Seen>>) {
    let identity = sotto_server::prepare(&server.config).unwrap();
    let acceptor = TlsAcceptor::from(identity.config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let decoder = FrameDecoder::default();
                let mut buf = BytesMut::new();
                loop {
                    let raw = loop {
                        if let Ok(Some(raw)) = decoder.decode(&mut buf) {
                            break raw;
                        }
                        let mut chunk = [0u8; 4096];
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                record.lock().unwrap().bytes.extend_from_slice(&chunk[..n]);
                                buf.extend_from_slice(&chunk[..n]);
                            }
                        }
                    };
                    let reply = match ClientFrame::decode(&raw) {
                        Ok(ClientFrame::Hello(_)) => ServerFrame::HelloReply(HelloReply {
                            version: PROTOCOL_VERSION,
                            server: "evil".into(),
                            result: Ok(HelloOk {
                                server_password_required: false,
                                registration_open: false,
                                server_id,
                            }),
                        }),
                        Ok(ClientFrame::Request {
                            id,
                            request: Request::Login(login),
                        }) => {
                            let (kind, code) = match login.credential {
                                Credential::Token(_) => ("token", ErrorCode::WrongPassword),
                                Credential::Opaque(_) => ("opaque", ErrorCode::LegacyLogin),
                                Credential::Register(_) => {
                                    ("register", ErrorCode::RegistrationClosed)
                                }
                                Credential::LegacyPassword(_) => {
                                    ("legacy password", ErrorCode::WrongPassword)
                                }
                            };
                            record.lock().unwrap().credentials.push(kind);
                            ServerFrame::Reply {
                                id,
                                result: Err(ErrorReply::new(
                                    code,
                                    "this account must send its password once",
                                )),
                            }
                        }
                        Ok(ClientFrame::Request { id, .. }) => ServerFrame::Reply {
                            id,
                            result: Err(ErrorReply::new(ErrorCode::NotLoggedIn, "log in")),
                        },
                        _ => return,
                    };
                    let mut out = BytesMut::new();
                    reply.encode(&mut out).unwrap();
                    if tls.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
