//! TLS for the client: TLS 1.3 only, ring provider, and a certificate
//! verifier that pins instead of checking a CA chain.
//!
//! Sotto servers use self-signed certificates, so there is no chain or host
//! name to check. Instead the verifier records the end-entity certificate's
//! fingerprint, and [`crate::connect`] compares it with `known_servers`
//! before sending any credentials. The verifier still checks the handshake
//! signature, which proves the server holds the private key of the
//! certificate whose fingerprint was recorded: without that check anyone
//! could replay the server's (public) certificate.

use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, InvalidDnsNameError, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use sotto_crypto::Fingerprint;

/// Where the verifier leaves the fingerprint of the certificate it saw.
pub type FingerprintSlot = Arc<Mutex<Option<Fingerprint>>>;

/// Accepts any certificate, records its fingerprint for pinning, and verifies
/// TLS 1.3 handshake signatures.
#[derive(Debug)]
pub struct PinningVerifier {
    /// The provider's signature algorithms, used to check the handshake signature.
    algorithms: WebPkiSupportedAlgorithms,
    /// Shared with [`crate::connect`], which reads it after the handshake.
    seen: FingerprintSlot,
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // No chain or name check: trust comes from the pin, which the caller
        // checks before sending anything but the hello.
        let fingerprint = Fingerprint::of_der(end_entity.as_ref());
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(fingerprint);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The config only enables TLS 1.3, so this is never reached; refuse
        // anyway rather than accept an unchecked signature.
        Err(rustls::Error::General("TLS 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A TLS 1.3 client config with the pinning verifier, and the slot the
/// verifier will write the server's fingerprint into.
pub fn client_config() -> Result<(Arc<ClientConfig>, FingerprintSlot), rustls::Error> {
    let provider = rustls::crypto::ring::default_provider();
    let slot = FingerprintSlot::default();
    let verifier = PinningVerifier {
        algorithms: provider.signature_verification_algorithms,
        seen: slot.clone(),
    };
    let config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok((Arc::new(config), slot))
}

/// The name sent in SNI: the host if it is a DNS name or IP address, else a
/// placeholder (the name is not verified either way). The error case cannot
/// happen, since the placeholder is a valid name, but is reported rather
/// than unwrapped.
pub fn server_name(host: &str) -> Result<ServerName<'static>, InvalidDnsNameError> {
    ServerName::try_from(host.to_owned()).or_else(|_| ServerName::try_from("sotto.invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        assert!(matches!(
            server_name("chat.example.org"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("::1"), Ok(ServerName::IpAddress(_))));
        match server_name("bad_name!").unwrap() {
            ServerName::DnsName(n) => assert_eq!(n.as_ref(), "sotto.invalid"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn config_is_tls13_only() {
        let (config, slot) = client_config().unwrap();
        assert!(slot.lock().unwrap().is_none());
        assert!(!config.crypto_provider().cipher_suites.is_empty());
    }
}
