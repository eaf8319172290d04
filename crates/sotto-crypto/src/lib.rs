//! Sotto's client-side cryptography, sans-IO.
//!
//! - [`sealed`]: `@secret` messages sealed with a passphrase (Argon2id key
//!   derivation, XChaCha20-Poly1305).
//! - [`fingerprint`]: certificate fingerprints used for trust on first use.
//!
//! Secrets are zeroized on drop and never printed by `Debug`.

pub mod fingerprint;
pub mod sealed;

pub use fingerprint::Fingerprint;
pub use sealed::{Passphrase, SealError, open, seal};
