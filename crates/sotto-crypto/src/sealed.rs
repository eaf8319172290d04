//! Passphrase-sealed messages (`@secret USER KEY message`).
//!
//! The sender derives a 256-bit key from the passphrase with Argon2id and a
//! random 16-byte salt, then encrypts with XChaCha20-Poly1305 under a random
//! 24-byte nonce. The recipient needs the same passphrase: a wrong one fails
//! authentication and the message stays sealed. The cost parameters travel
//! with the box so they can be raised later; [`open`] refuses costs above
//! [`MAX_M_COST_KIB`] and [`MAX_T_COST`] so a hostile sender cannot make a
//! recipient burn gigabytes of memory.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sotto_proto::SealedBox;
use zeroize::{Zeroize, Zeroizing};

/// Argon2id memory cost used when sealing (KiB): OWASP's 19 MiB.
pub const M_COST_KIB: u32 = 19 * 1024;
/// Argon2id iterations used when sealing.
pub const T_COST: u32 = 2;
/// Highest memory cost [`open`] accepts (KiB).
pub const MAX_M_COST_KIB: u32 = 256 * 1024;
/// Highest iteration count [`open`] accepts.
pub const MAX_T_COST: u32 = 16;

const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;

/// Why a sealed message could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("wrong key: the message stays sealed")]
    WrongKey,
    #[error("the sealed message is malformed: {0}")]
    Malformed(&'static str),
    #[error("the passphrase must not be empty")]
    EmptyPassphrase,
}

/// A passphrase; zeroized on drop, never printed.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps a non-empty passphrase.
    pub fn new(text: impl Into<String>) -> Result<Self, SealError> {
        let text = text.into();
        if text.is_empty() {
            return Err(SealError::EmptyPassphrase);
        }
        Ok(Self(Zeroizing::new(text)))
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

fn derive_key(
    passphrase: &Passphrase,
    salt: &[u8],
    m_cost: u32,
    t_cost: u32,
) -> Result<Zeroizing<[u8; 32]>, SealError> {
    let params = Params::new(m_cost, t_cost, 1, Some(32))
        .map_err(|_| SealError::Malformed("invalid key-derivation parameters"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.0.as_bytes(), salt, key.as_mut())
        .map_err(|_| SealError::Malformed("invalid salt"))?;
    Ok(key)
}

/// Seals `plaintext` under `passphrase`.
pub fn seal(passphrase: &Passphrase, plaintext: &[u8]) -> SealedBox {
    seal_with_cost(passphrase, plaintext, M_COST_KIB, T_COST)
}

fn seal_with_cost(
    passphrase: &Passphrase,
    plaintext: &[u8],
    m_cost: u32,
    t_cost: u32,
) -> SealedBox {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    // Invariant: the constants above are valid Argon2 parameters and the salt
    // is 16 bytes, so derivation cannot fail; fall back to an empty box that
    // can never be opened rather than panicking.
    let Ok(key) = derive_key(passphrase, &salt, m_cost, t_cost) else {
        return SealedBox {
            m_cost,
            t_cost,
            salt: salt.to_vec(),
            nonce: nonce.to_vec(),
            ciphertext: Vec::new(),
        };
    };
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let ciphertext = cipher
        .encrypt(XNonce::from_slice(&nonce), plaintext)
        .unwrap_or_default();
    SealedBox {
        m_cost,
        t_cost,
        salt: salt.to_vec(),
        nonce: nonce.to_vec(),
        ciphertext,
    }
}

/// Opens a sealed box with `passphrase`.
pub fn open(passphrase: &Passphrase, sealed: &SealedBox) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if sealed.salt.len() != SALT_LEN {
        return Err(SealError::Malformed("salt must be 16 bytes"));
    }
    if sealed.nonce.len() != NONCE_LEN {
        return Err(SealError::Malformed("nonce must be 24 bytes"));
    }
    if sealed.m_cost > MAX_M_COST_KIB || sealed.t_cost > MAX_T_COST {
        return Err(SealError::Malformed(
            "key-derivation cost is above the allowed maximum",
        ));
    }
    let key = derive_key(passphrase, &sealed.salt, sealed.m_cost, sealed.t_cost)?;
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let mut plain = cipher
        .decrypt(
            XNonce::from_slice(&sealed.nonce),
            sealed.ciphertext.as_slice(),
        )
        .map_err(|_| SealError::WrongKey)?;
    let out = Zeroizing::new(plain.clone());
    plain.zeroize();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast(passphrase: &str, text: &[u8]) -> SealedBox {
        seal_with_cost(&Passphrase::new(passphrase).unwrap(), text, 64, 1)
    }

    #[test]
    fn right_key_opens() {
        let sealed = seal(&Passphrase::new("correct horse").unwrap(), b"meet at noon");
        let plain = open(&Passphrase::new("correct horse").unwrap(), &sealed).unwrap();
        assert_eq!(plain.as_slice(), b"meet at noon");
        assert!(!sealed.ciphertext.windows(4).any(|w| w == b"meet"));
    }

    #[test]
    fn wrong_key_fails() {
        let sealed = fast("k1", b"x");
        assert_eq!(
            open(&Passphrase::new("k2").unwrap(), &sealed).unwrap_err(),
            SealError::WrongKey
        );
    }

    #[test]
    fn flipped_bits_fail() {
        let sealed = fast("k", b"hello");
        for i in 0..sealed.ciphertext.len() {
            let mut bad = sealed.clone();
            bad.ciphertext[i] ^= 1;
            assert_eq!(
                open(&Passphrase::new("k").unwrap(), &bad).unwrap_err(),
                SealError::WrongKey
            );
        }
        let mut bad = sealed.clone();
        bad.nonce[0] ^= 1;
        assert_eq!(
            open(&Passphrase::new("k").unwrap(), &bad).unwrap_err(),
            SealError::WrongKey
        );
    }

    #[test]
    fn hostile_parameters_are_refused() {
        let mut sealed = fast("k", b"hello");
        sealed.m_cost = u32::MAX;
        assert!(matches!(
            open(&Passphrase::new("k").unwrap(), &sealed),
            Err(SealError::Malformed(_))
        ));
        let mut sealed = fast("k", b"hello");
        sealed.salt.pop();
        assert!(matches!(
            open(&Passphrase::new("k").unwrap(), &sealed),
            Err(SealError::Malformed(_))
        ));
    }

    #[test]
    fn debug_is_redacted() {
        assert!(!format!("{:?}", Passphrase::new("topsecret").unwrap()).contains("topsecret"));
        assert_eq!(Passphrase::new("").unwrap_err(), SealError::EmptyPassphrase);
    }
}
