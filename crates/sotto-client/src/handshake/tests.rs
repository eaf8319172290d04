//! Tests of certificate pinning through a real TLS 1.3 handshake.
//!
//! The peer here is only a TLS endpoint with a fresh self-signed
//! certificate that answers a hello with "please upgrade": enough to see
//! what the client sends, and whether it sends anything at all, for each
//! trust decision. Login and messaging are tested against the real server
//! in the integration tests.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sotto_proto::{
    ClientFrame, ErrorCode, ErrorReply, FrameDecoder, HelloReply, Password, ServerFrame, Username,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;

/// A TLS endpoint; reports, per connection, whether a hello arrived.
struct TlsPeer {
    addr: SocketAddr,
    fingerprint: Fingerprint,
    hellos: mpsc::Receiver<bool>,
}

async fn tls_peer() -> TlsPeer {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let fingerprint = Fingerprint::of_der(cert.as_ref());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, hellos) = mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    let _ = tx.send(false).await;
                    return;
                };
                let mut buf = BytesMut::new();
                let decoder = FrameDecoder::default();
                let hello = loop {
                    if let Some(raw) = decoder.decode(&mut buf).unwrap() {
                        break matches!(ClientFrame::decode(&raw), Ok(ClientFrame::Hello(_)));
                    }
                    match tls.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => break false,
                        Ok(_) => {}
                    }
                };
                if hello {
                    let reply = ServerFrame::HelloReply(HelloReply {
                        version: 99,
                        server: "test-peer".into(),
                        result: Err(ErrorReply::new(
                            ErrorCode::UnsupportedVersion,
                            "please upgrade",
                        )),
                    });
                    let mut out = BytesMut::new();
                    reply.encode(&mut out).unwrap();
                    let _ = tls.write_all(&out).await;
                    let _ = tls.shutdown().await;
                }
                let _ = tx.send(hello).await;
            });
        }
    });
    TlsPeer {
        addr,
        fingerprint,
        hellos,
    }
}

fn options(addr: SocketAddr, data_dir: &Path, trust: TrustPolicy) -> ConnectOptions {
    ConnectOptions {
        server: addr.to_string(),
        user: Username::parse("alice").unwrap(),
        secret: crate::Secret::Password(Password::new("pw".into()).unwrap()),
        server_password: None,
        data_dir: data_dir.to_owned(),
        trust,
        register_only: false,
        sign_in_only: false,
    }
}

fn known_servers(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("known_servers")).unwrap_or_default()
}

/// The peer's answer to a hello reached the caller: the pin was accepted.
fn said_upgrade(result: Result<(Client, Events), ClientError>) -> bool {
    matches!(result, Err(ClientError::Server(ref e)) if e.code == ErrorCode::UnsupportedVersion)
}

#[tokio::test]
async fn unknown_server_is_refused_before_anything_is_sent() {
    let mut peer = tls_peer().await;
    let dir = tempfile::tempdir().unwrap();
    let result = connect(options(peer.addr, dir.path(), TrustPolicy::RefuseUnknown)).await;
    match result {
        Err(ClientError::UnknownServer {
            server,
            fingerprint,
        }) => {
            assert_eq!(server, peer.addr.to_string());
            assert_eq!(fingerprint, peer.fingerprint);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !peer.hellos.recv().await.unwrap(),
        "nothing may be sent to an unknown server"
    );
    assert_eq!(known_servers(dir.path()), "");
}

#[tokio::test]
async fn trust_new_pins_then_the_pin_is_enforced() {
    let mut peer = tls_peer().await;
    let dir = tempfile::tempdir().unwrap();
    assert!(said_upgrade(
        connect(options(peer.addr, dir.path(), TrustPolicy::TrustNew)).await
    ));
    assert!(peer.hellos.recv().await.unwrap());
    assert_eq!(
        known_servers(dir.path()),
        format!("{} {}\n", peer.addr, peer.fingerprint)
    );

    // Known now: even a refusing policy connects.
    assert!(said_upgrade(
        connect(options(peer.addr, dir.path(), TrustPolicy::RefuseUnknown)).await
    ));
    assert!(peer.hellos.recv().await.unwrap());

    // Another certificate at the same address: loud refusal, nothing sent.
    let other = Fingerprint::of_der(b"the real server's certificate");
    std::fs::write(
        dir.path().join("known_servers"),
        format!("{} {other}\n", peer.addr),
    )
    .unwrap();
    match connect(options(peer.addr, dir.path(), TrustPolicy::TrustNew)).await {
        Err(ClientError::CertificateChanged { expected, got, .. }) => {
            assert_eq!((expected, got), (other, peer.fingerprint));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !peer.hellos.recv().await.unwrap(),
        "no credentials to a changed server"
    );
}

#[tokio::test]
async fn expected_fingerprint_must_match() {
    let mut peer = tls_peer().await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = Fingerprint::of_der(b"something else");
    let result = connect(options(
        peer.addr,
        dir.path(),
        TrustPolicy::Fingerprint(wrong),
    ))
    .await;
    assert!(
        matches!(result, Err(ClientError::FingerprintMismatch { .. })),
        "{result:?}"
    );
    assert!(!peer.hellos.recv().await.unwrap());
    assert_eq!(known_servers(dir.path()), "");

    let right = TrustPolicy::Fingerprint(peer.fingerprint);
    assert!(said_upgrade(
        connect(options(peer.addr, dir.path(), right)).await
    ));
    assert!(peer.hellos.recv().await.unwrap());
    assert!(known_servers(dir.path()).contains(&peer.fingerprint.to_string()));
}

#[tokio::test]
async fn asking_the_user() {
    let mut peer = tls_peer().await;
    let dir = tempfile::tempdir().unwrap();
    let no = TrustPolicy::Ask(Box::new(|_, _| false));
    let result = connect(options(peer.addr, dir.path(), no)).await;
    assert!(
        matches!(result, Err(ClientError::NotTrusted { .. })),
        "{result:?}"
    );
    assert!(!peer.hellos.recv().await.unwrap());

    let expected = peer.fingerprint;
    let yes = TrustPolicy::Ask(Box::new(move |_, fp| *fp == expected));
    assert!(said_upgrade(
        connect(options(peer.addr, dir.path(), yes)).await
    ));
    // The prompted connection is dropped and a fresh one says hello.
    let mut seen = [
        peer.hellos.recv().await.unwrap(),
        peer.hellos.recv().await.unwrap(),
    ];
    seen.sort();
    assert_eq!(seen, [false, true]);
}

#[tokio::test]
async fn refused_port_is_unreachable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let result = connect(options(addr, dir.path(), TrustPolicy::TrustNew)).await;
    assert!(
        matches!(result, Err(ClientError::Unreachable { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn bad_address_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(
        "127.0.0.1:1".parse().unwrap(),
        dir.path(),
        TrustPolicy::TrustNew,
    );
    opts.server = "no-port".into();
    assert!(matches!(
        connect(opts).await,
        Err(ClientError::InvalidAddress { .. })
    ));
}
