//! The server's TLS identity: a self-signed certificate generated on first
//! start (or a PEM pair given by the operator), and the rustls configuration
//! (TLS 1.3 only, ring provider).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sotto_crypto::Fingerprint;

/// Where the certificate and key live.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// The generated pair inside the data dir.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self {
            cert: data_dir.join("cert.pem"),
            key: data_dir.join("key.pem"),
        }
    }
}

/// Generates a self-signed certificate if `files` do not exist yet.
/// Returns `true` if it generated one.
pub fn ensure_self_signed(files: &TlsFiles) -> anyhow::Result<bool> {
    if files.cert.exists() && files.key.exists() {
        return Ok(false);
    }
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Ok(host) = fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_owned());
        }
    }
    let certified =
        rcgen::generate_simple_self_signed(names).context("generating a certificate")?;
    write_private(&files.key, certified.signing_key.serialize_pem().as_bytes())
        .with_context(|| format!("writing {}", files.key.display()))?;
    write_private(&files.cert, certified.cert.pem().as_bytes())
        .with_context(|| format!("writing {}", files.cert.display()))?;
    Ok(true)
}

/// Makes the data dir's certificate and key these (the ones a cluster
/// shares through its database), if they are not already.
pub fn adopt(files: &TlsFiles, cert: &str, key: &str) -> anyhow::Result<()> {
    if fs::read_to_string(&files.cert).ok().as_deref() == Some(cert)
        && fs::read_to_string(&files.key).ok().as_deref() == Some(key)
    {
        return Ok(());
    }
    write_private(&files.key, key.as_bytes())
        .with_context(|| format!("writing {}", files.key.display()))?;
    write_private(&files.cert, cert.as_bytes())
        .with_context(|| format!("writing {}", files.cert.display()))?;
    Ok(())
}

/// Writes a file readable only by its owner.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// The loaded identity.
#[derive(Debug)]
pub struct Identity {
    pub config: Arc<rustls::ServerConfig>,
    pub fingerprint: Fingerprint,
}

/// Loads the certificate chain and key and builds the TLS 1.3 config.
pub fn load(files: &TlsFiles) -> anyhow::Result<Identity> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("reading {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", files.cert.display()))?;
    let leaf = certs
        .first()
        .with_context(|| format!("no certificate in {}", files.cert.display()))?;
    let fingerprint = Fingerprint::of_der(leaf);
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading {}", files.key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .context("TLS 1.3 unavailable")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("certificate and key do not match")?;
    Ok(Identity {
        config: Arc::new(config),
        fingerprint,
    })
}
