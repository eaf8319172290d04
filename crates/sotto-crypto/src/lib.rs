//! Sotto's client-side cryptography, sans-IO.
//!
//! - [`at_rest`]: the client's local store sealed under a key derived
//!   from the account password.
//! - [`e2e`]: end-to-end encryption with vodozemac: device accounts and
//!   signed keys, Olm sessions between devices, Megolm room sessions with
//!   rotation and replay protection, safety numbers.
//! - [`sealed`]: `@secret` messages sealed with a passphrase (Argon2id key
//!   derivation, XChaCha20-Poly1305).
//! - [`fingerprint`]: certificate fingerprints used for trust on first use.
//! - [`opaque`]: password login (OPAQUE) without the server learning the
//!   password.
//!
//! Secrets are zeroized on drop and never printed by `Debug`.

pub mod at_rest;
pub mod e2e;
pub mod fingerprint;
pub mod opaque;
pub mod sealed;

pub use fingerprint::Fingerprint;
pub use sealed::{Passphrase, SealError, open, seal};
