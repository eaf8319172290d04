//! Certificate fingerprints: `SHA256:` followed by 64 lower-case hex digits
//! of the SHA-256 of the certificate's DER encoding. The server prints it at
//! start; clients pin it on first use (like SSH `known_hosts`).

use std::fmt;

use sha2::{Digest, Sha256};

/// The SHA-256 fingerprint of a DER certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Fingerprints a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// Parses `SHA256:<64 hex>` (case-insensitive; `:` between byte pairs allowed).
    pub fn parse(input: &str) -> Option<Self> {
        let rest = input.trim();
        let rest = rest
            .strip_prefix("SHA256:")
            .or_else(|| rest.strip_prefix("sha256:"))?;
        let hex_digits: String = rest.chars().filter(|c| *c != ':').collect();
        let bytes = hex::decode(hex_digits).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// The raw SHA-256.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SHA256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let fp = Fingerprint::of_der(b"certificate");
        let text = fp.to_string();
        assert!(text.starts_with("SHA256:") && text.len() == 7 + 64);
        assert_eq!(Fingerprint::parse(&text), Some(fp));
        assert_eq!(
            Fingerprint::parse(&text.to_uppercase().replace("SHA256", "sha256")),
            Some(fp)
        );
        assert_eq!(Fingerprint::parse("SHA256:abcd"), None);
        assert_eq!(Fingerprint::parse("MD5:00"), None);
    }
}
