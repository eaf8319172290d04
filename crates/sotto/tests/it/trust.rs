//! Trust on first use: pinning, refusal of unknown servers without consent,
//! and a loud refusal of a changed certificate.

use sotto_client::{ClientError, TrustPolicy};
use sotto_crypto::Fingerprint;
use sotto_test_support::{TestServer, options};

#[tokio::test]
async fn unknown_servers_need_consent() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(server.addr, "alice", "pw-alice", dir.path());
    opts.trust = TrustPolicy::RefuseUnknown;
    let result = sotto_client::connect(opts).await;
    assert!(
        matches!(result, Err(ClientError::UnknownServer { .. })),
        "{result:?}"
    );

    let mut opts = options(server.addr, "alice", "pw-alice", dir.path());
    opts.trust = TrustPolicy::Fingerprint(Fingerprint::of_der(b"some other certificate"));
    assert!(sotto_client::connect(opts).await.is_err());

    let mut opts = options(server.addr, "alice", "pw-alice", dir.path());
    opts.trust = TrustPolicy::Fingerprint(server.fingerprint);
    sotto_client::connect(opts).await.unwrap();
    // Now pinned: known without any trust flag.
    let mut opts = options(server.addr, "alice", "pw-alice", dir.path());
    opts.trust = TrustPolicy::RefuseUnknown;
    sotto_client::connect(opts).await.unwrap();
    let known = std::fs::read_to_string(dir.path().join("known_servers")).unwrap();
    assert!(known.contains(&server.fingerprint.to_string()), "{known}");
}

#[tokio::test]
async fn an_interactive_answer_decides() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(server.addr, "alice", "pw-alice", dir.path());
    opts.trust = TrustPolicy::Ask(Box::new(|_, _| false));
    assert!(sotto_client::connect(opts).await.is_err());
    let expected = server.fingerprint;
    let mut opts = options(server.addr, "alice", "pw-alice", dir.path());
    opts.trust = TrustPolicy::Ask(Box::new(move |_, fp| *fp == expected));
    sotto_client::connect(opts).await.unwrap();
}

#[tokio::test]
async fn a_changed_certificate_is_refused() {
    let mut server = TestServer::start().await;
    let alice = server.client("alice").await;
    let dir = alice.dir;
    // The server gets a new identity (as an attacker in the middle would).
    server.stop().await;
    std::fs::remove_file(server.config.data_dir.join("cert.pem")).unwrap();
    std::fs::remove_file(server.config.data_dir.join("key.pem")).unwrap();
    // (On PostgreSQL the certificate is kept in the database too, for the
    // other nodes of a cluster.)
    server
        .db()
        .execute("DELETE FROM meta WHERE name IN ('tls_cert', 'tls_key')")
        .await;
    let old = server.fingerprint;
    server.restart().await;
    assert_ne!(server.fingerprint, old);
    let mut opts = options(server.addr, "alice", "pw-alice", dir.path());
    opts.trust = TrustPolicy::TrustNew; // even trust-new does not override a pin
    match sotto_client::connect(opts).await {
        Err(e @ ClientError::CertificateChanged { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&old.to_string()) && text.contains(&server.fingerprint.to_string()),
                "{text}"
            );
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn an_operator_certificate_replaces_the_generated_one() {
    let dir = tempfile::tempdir().unwrap();
    let files = sotto_server::TlsFiles::in_data_dir(dir.path());
    assert!(sotto_server::tls::ensure_self_signed(&files).unwrap());
    let expected = sotto_server::tls::load(&files).unwrap().fingerprint;
    let server = TestServer::start_with(|c| c.tls = Some(files.clone())).await;
    assert_eq!(server.fingerprint, expected);
    assert!(
        !server.config.data_dir.join("cert.pem").exists(),
        "no certificate generated"
    );
    let client_dir = tempfile::tempdir().unwrap();
    let mut opts = options(server.addr, "alice", "pw-alice", client_dir.path());
    opts.trust = TrustPolicy::Fingerprint(expected);
    sotto_client::connect(opts).await.unwrap();
}
