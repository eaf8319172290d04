//! Encryption at rest for the client's local store (end-to-end state,
//! pinned keys, decrypted history).
//!
//! The key is derived once per session from the account password with
//! Argon2id and a random salt kept in the store's header (`MAGIC` ‖ m_cost
//! (u32 BE) ‖ t_cost (u32 BE) ‖ salt (16)). Everything stored is sealed with
//! XChaCha20-Poly1305 under a fresh random nonce, with the header as
//! associated data. A wrong password, or any change, fails authentication.
//!
//! Two forms:
//! - records ([`StoreKey::seal_record`]): nonce (24) ‖ ciphertext and tag,
//!   bound to a context naming the record (its table and key), so a record
//!   cannot be moved to another place or passed off as another; the header
//!   is kept beside them and [`StoreKey::unlock`] derives the key from it;
//! - a whole file ([`StoreKey::seal`], [`open`]): header ‖ nonce ‖
//!   ciphertext and tag.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::sealed::{M_COST_KIB, MAX_M_COST_KIB, MAX_T_COST, T_COST};

const MAGIC: &[u8; 8] = b"SOTTOST1";
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = MAGIC.len() + 4 + 4 + SALT_LEN;

/// Why a store could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtRestError {
    #[error("cannot unlock the local store: wrong password, or the file was changed")]
    WrongKeyOrDamaged,
    #[error("the local store file is not a Sotto store, or is truncated")]
    Malformed,
}

/// A store key: derived from the password and the store's salt.
#[derive(Clone)]
pub struct StoreKey {
    key: Zeroizing<[u8; 32]>,
    header: [u8; HEADER_LEN],
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreKey(<redacted>)")
    }
}

impl StoreKey {
    /// A key for a new store: a fresh salt, the default costs.
    pub fn create(password: &str) -> Self {
        let mut salt = [0u8; SALT_LEN];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        Self::derive(password, M_COST_KIB, T_COST, salt)
            .unwrap_or_else(|_| unreachable_key(M_COST_KIB, T_COST, salt))
    }

    fn derive(
        password: &str,
        m_cost: u32,
        t_cost: u32,
        salt: [u8; SALT_LEN],
    ) -> Result<Self, AtRestError> {
        let params =
            Params::new(m_cost, t_cost, 1, Some(32)).map_err(|_| AtRestError::Malformed)?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(password.as_bytes(), &salt, key.as_mut())
            .map_err(|_| AtRestError::Malformed)?;
        Ok(Self {
            key,
            header: header(m_cost, t_cost, &salt),
        })
    }

    /// Seals `plaintext` into the bytes of a store file.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&self.seal_with(&self.header, plaintext));
        out
    }

    /// The store's header (costs and salt): not secret, kept beside the
    /// records so [`StoreKey::unlock`] can derive the key again.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// The key of a store with this header, from the password. A wrong
    /// password still yields a key; opening a record with it fails.
    pub fn unlock(password: &str, header: &[u8]) -> Result<Self, AtRestError> {
        let (m_cost, t_cost, salt) = parse_header(header)?;
        Self::derive(password, m_cost, t_cost, salt)
    }

    /// Seals one record stored under `context` (which names it: table and
    /// key): nonce ‖ ciphertext and tag.
    pub fn seal_record(&self, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.seal_with(&self.record_aad(context), plaintext)
    }

    /// Opens a record sealed under the same `context`.
    pub fn open_record(
        &self,
        context: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, AtRestError> {
        if sealed.len() < NONCE_LEN {
            return Err(AtRestError::Malformed);
        }
        self.open_with(&self.record_aad(context), sealed)
    }

    /// Seals another key (its secret and header) under this one, for a
    /// store moving from `other` to this key: if the move is interrupted,
    /// the new password still reaches the old key.
    pub fn wrap(&self, other: &StoreKey) -> Vec<u8> {
        let mut plain = Zeroizing::new(Vec::with_capacity(32 + HEADER_LEN));
        plain.extend_from_slice(other.key.as_ref());
        plain.extend_from_slice(&other.header);
        self.seal_record(b"meta/wrapped-key", &plain)
    }

    /// A key sealed with [`StoreKey::wrap`].
    pub fn unwrap_key(&self, sealed: &[u8]) -> Result<StoreKey, AtRestError> {
        let plain = self.open_record(b"meta/wrapped-key", sealed)?;
        if plain.len() != 32 + HEADER_LEN {
            return Err(AtRestError::Malformed);
        }
        let (secret, header) = plain.split_at(32);
        parse_header(header)?;
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(secret);
        let mut fixed = [0u8; HEADER_LEN];
        fixed.copy_from_slice(header);
        Ok(StoreKey { key, header: fixed })
    }

    fn record_aad(&self, context: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(HEADER_LEN + 1 + context.len());
        aad.extend_from_slice(&self.header);
        // Whole files use the bare header: a record can never pass for one.
        aad.push(b'/');
        aad.extend_from_slice(context);
        aad
    }

    /// nonce ‖ ciphertext and tag.
    fn seal_with(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let cipher = XChaCha20Poly1305::new(self.key.as_ref().into());
        // Encryption with a valid key and nonce only fails for inputs
        // beyond 256 GiB.
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    fn open_with(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, AtRestError> {
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new(self.key.as_ref().into());
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| AtRestError::WrongKeyOrDamaged)
    }
}

/// A random key that opens a store without its password, for a device
/// whose user asked to be remembered: it wraps the store's key
/// ([`DeviceKey::wrap`]), and the wrapped copy is kept in the store. It
/// is kept in a file of its own by the client, so anyone who can read
/// both files can open the store; forgetting the device deletes it.
#[derive(Clone)]
pub struct DeviceKey {
    key: StoreKey,
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceKey(<redacted>)")
    }
}

/// The length of a [`DeviceKey`]'s bytes.
pub const DEVICE_KEY_LEN: usize = 32;

impl DeviceKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; DEVICE_KEY_LEN]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        Self::from_array(key)
    }

    /// A key kept before ([`DeviceKey::to_bytes`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AtRestError> {
        let array: [u8; DEVICE_KEY_LEN] = bytes.try_into().map_err(|_| AtRestError::Malformed)?;
        Ok(Self::from_array(Zeroizing::new(array)))
    }

    fn from_array(key: Zeroizing<[u8; DEVICE_KEY_LEN]>) -> Self {
        // A header no password-derived key has (no costs, no salt), so
        // that what this key seals can never pass for a store's record.
        Self {
            key: StoreKey {
                key,
                header: header(0, 0, &[0u8; SALT_LEN]),
            },
        }
    }

    /// The key's bytes, to keep.
    pub fn to_bytes(&self) -> Zeroizing<[u8; DEVICE_KEY_LEN]> {
        self.key.key.clone()
    }

    /// Seals a store's key under this one.
    pub fn wrap(&self, store: &StoreKey) -> Vec<u8> {
        self.key.wrap(store)
    }

    /// A store key sealed with [`DeviceKey::wrap`].
    pub fn unwrap(&self, sealed: &[u8]) -> Result<StoreKey, AtRestError> {
        self.key.unwrap_key(sealed)
    }
}

/// Costs and salt from a header, refusing costs beyond the bounds before
/// anything is derived.
fn parse_header(header: &[u8]) -> Result<(u32, u32, [u8; SALT_LEN]), AtRestError> {
    if header.len() < HEADER_LEN || &header[..8] != MAGIC {
        return Err(AtRestError::Malformed);
    }
    let word = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let (m_cost, t_cost) = (word(8), word(12));
    if m_cost > MAX_M_COST_KIB || t_cost > MAX_T_COST {
        return Err(AtRestError::Malformed);
    }
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&header[16..HEADER_LEN]);
    Ok((m_cost, t_cost, salt))
}

/// A key that can never have been derived (all zero); only reachable if the
/// default costs were invalid, which a test rules out.
fn unreachable_key(m_cost: u32, t_cost: u32, salt: [u8; SALT_LEN]) -> StoreKey {
    StoreKey {
        key: Zeroizing::new([0; 32]),
        header: header(m_cost, t_cost, &salt),
    }
}

fn header(m_cost: u32, t_cost: u32, salt: &[u8; SALT_LEN]) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&m_cost.to_be_bytes());
    header[12..16].copy_from_slice(&t_cost.to_be_bytes());
    header[16..].copy_from_slice(salt);
    header
}

/// Opens a store file with the password: its key (to seal the next save
/// with) and its contents.
pub fn open(password: &str, file: &[u8]) -> Result<(StoreKey, Zeroizing<Vec<u8>>), AtRestError> {
    if file.len() < HEADER_LEN + NONCE_LEN {
        return Err(AtRestError::Malformed);
    }
    let (header, sealed) = file.split_at(HEADER_LEN);
    let key = StoreKey::unlock(password, header)?;
    let plain = key.open_with(header, sealed)?;
    Ok((key, plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_store_opens_with_the_password_only() {
        let key = StoreKey::create("correct horse");
        assert_ne!(*key.key, [0; 32], "the default costs derive a real key");
        let file = key.seal(b"olm account and history");
        assert!(!file.windows(7).any(|w| w == b"history"));
        let (again, plain) = open("correct horse", &file).unwrap();
        assert_eq!(plain.as_slice(), b"olm account and history");
        // The reopened key seals files the password opens, with a new nonce.
        let second = again.seal(b"more");
        assert_ne!(
            second[HEADER_LEN..HEADER_LEN + NONCE_LEN],
            file[HEADER_LEN..HEADER_LEN + NONCE_LEN]
        );
        assert_eq!(
            open("correct horse", &second).unwrap().1.as_slice(),
            b"more"
        );
        assert_eq!(
            open("wrong", &file).map(|_| ()),
            Err(AtRestError::WrongKeyOrDamaged)
        );
    }

    #[test]
    fn any_change_to_the_file_is_detected() {
        let file = StoreKey::create("pw").seal(b"state");
        for at in [0, 9, 20, HEADER_LEN + 3, file.len() - 1] {
            let mut changed = file.clone();
            changed[at] ^= 0x10;
            assert!(open("pw", &changed).is_err(), "byte {at}");
        }
        assert_eq!(
            open("pw", &file[..30]).map(|_| ()),
            Err(AtRestError::Malformed)
        );
    }

    #[test]
    fn records_open_only_in_their_place_and_with_the_password() {
        let key = StoreKey::create("pw");
        let record = key.seal_record(b"history/7/42", b"see you at noon");
        assert!(!record.windows(4).any(|w| w == b"noon"));
        let again = StoreKey::unlock("pw", key.header()).unwrap();
        assert_eq!(
            again
                .open_record(b"history/7/42", &record)
                .unwrap()
                .as_slice(),
            b"see you at noon"
        );
        // Moved to another key, altered, or opened with another password.
        let wrong = Err(AtRestError::WrongKeyOrDamaged);
        assert_eq!(
            again.open_record(b"history/7/43", &record).map(|_| ()),
            wrong
        );
        let mut changed = record.clone();
        changed[30] ^= 1;
        assert_eq!(
            again.open_record(b"history/7/42", &changed).map(|_| ()),
            wrong
        );
        let other = StoreKey::unlock("not pw", key.header()).unwrap();
        assert_eq!(
            other.open_record(b"history/7/42", &record).map(|_| ()),
            wrong
        );
        assert_eq!(
            again.open_record(b"x", &record[..10]).map(|_| ()),
            Err(AtRestError::Malformed)
        );
        // A whole-file seal is not a record, nor the other way round.
        let file = key.seal(b"state");
        assert_eq!(key.open_record(b"", &file[HEADER_LEN..]).map(|_| ()), wrong);
    }

    #[test]
    fn hostile_costs_are_refused_before_deriving() {
        let mut file = StoreKey::create("pw").seal(b"state");
        file[8..12].copy_from_slice(&(MAX_M_COST_KIB + 1).to_be_bytes());
        assert_eq!(open("pw", &file).map(|_| ()), Err(AtRestError::Malformed));
    }

    #[test]
    fn a_wrapped_key_opens_only_with_the_wrapping_key() {
        let old = StoreKey::create("old");
        let new = StoreKey::create("new");
        let record = old.seal_record(b"records/a", b"kept");
        let wrapped = new.wrap(&old);
        let again = StoreKey::unlock("new", new.header()).unwrap();
        let unwrapped = again.unwrap_key(&wrapped).unwrap();
        assert_eq!(unwrapped.header(), old.header());
        assert_eq!(
            unwrapped
                .open_record(b"records/a", &record)
                .unwrap()
                .as_slice(),
            b"kept"
        );
        let wrong = StoreKey::unlock("old", new.header()).unwrap();
        assert!(wrong.unwrap_key(&wrapped).is_err());
        assert!(again.unwrap_key(&record).is_err());
    }

    #[test]
    fn a_device_key_opens_the_store_key_it_wrapped_and_nothing_else() {
        let store = StoreKey::create("pw");
        let device = DeviceKey::generate();
        let wrapped = device.wrap(&store);
        let kept = DeviceKey::from_bytes(device.to_bytes().as_slice()).unwrap();
        let opened = kept.unwrap(&wrapped).unwrap();
        let record = store.seal_record(b"records/x", b"secret");
        assert_eq!(
            opened
                .open_record(b"records/x", &record)
                .unwrap()
                .as_slice(),
            b"secret"
        );
        // Another device key, a flipped bit, a short key: refused.
        assert!(DeviceKey::generate().unwrap(&wrapped).is_err());
        let mut flipped = wrapped.clone();
        flipped[30] ^= 1;
        assert!(device.unwrap(&flipped).is_err());
        assert_eq!(
            DeviceKey::from_bytes(&[1; 31]).map(|_| ()),
            Err(AtRestError::Malformed)
        );
        // The store key's own wrapping (a password change) is not a
        // device key's: neither opens the other's.
        let next = StoreKey::create("pw2");
        assert!(device.unwrap(&next.wrap(&store)).is_err());
        assert!(format!("{device:?}").contains("redacted"));
    }
}
