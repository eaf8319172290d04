//! A device's long-term Olm account: identity keys, signed one-time and
//! fallback keys for the server's key directory, and verification of other
//! devices' signed keys.

use serde::{Deserialize, Serialize};
use sotto_proto::e2e::{DeviceKeys, PublicKey, SignedOneTimeKey};
use sotto_proto::{DeviceId, Username};
use vodozemac::olm::{Account, AccountPickle, InboundCreationResult, PreKeyMessage, SessionConfig};
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey, Ed25519Signature};

use super::E2eError;

/// One-time keys a device keeps on the server; it tops up below this.
pub const ONE_TIME_KEY_TARGET: usize = 50;

/// The public half of a device's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdentityKeys {
    pub curve25519: PublicKey,
    pub ed25519: PublicKey,
}

/// This device's Olm account and who it belongs to.
pub struct DeviceAccount {
    user: Username,
    device: DeviceId,
    account: Account,
    /// Whether a fallback key was ever generated (vodozemac only reports an
    /// unpublished one).
    has_fallback_key: bool,
}

impl std::fmt::Debug for DeviceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private keys.
        f.debug_struct("DeviceAccount")
            .field("user", &self.user)
            .field("device", &self.device)
            .field("identity", &self.identity())
            .finish_non_exhaustive()
    }
}

/// A [`DeviceAccount`] as stored (inside the client's encrypted store).
#[derive(Serialize, Deserialize)]
pub struct DeviceAccountPickle {
    user: Username,
    device: DeviceId,
    account: AccountPickle,
    has_fallback_key: bool,
}

impl std::fmt::Debug for DeviceAccountPickle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAccountPickle")
            .field("user", &self.user)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// Keys to upload to the key directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUpload {
    pub one_time_keys: Vec<SignedOneTimeKey>,
    pub fallback_key: Option<SignedOneTimeKey>,
}

impl KeyUpload {
    pub fn is_empty(&self) -> bool {
        self.one_time_keys.is_empty() && self.fallback_key.is_none()
    }
}

impl DeviceAccount {
    /// A fresh account with new identity keys.
    pub fn new(user: Username, device: DeviceId) -> Self {
        Self {
            user,
            device,
            account: Account::new(),
            has_fallback_key: false,
        }
    }

    pub fn user(&self) -> &Username {
        &self.user
    }

    pub fn device(&self) -> &DeviceId {
        &self.device
    }

    pub fn identity(&self) -> IdentityKeys {
        IdentityKeys {
            curve25519: self.account.curve25519_key().to_bytes(),
            ed25519: *self.account.ed25519_key().as_bytes(),
        }
    }

    /// This device's keys, self-signed, for the key directory.
    pub fn device_keys(&self) -> DeviceKeys {
        let identity = self.identity();
        let signed = DeviceKeys::signed_bytes(
            &self.user,
            &self.device,
            &identity.curve25519,
            &identity.ed25519,
        );
        DeviceKeys {
            user: self.user.clone(),
            device: self.device.clone(),
            curve25519: identity.curve25519,
            ed25519: identity.ed25519,
            signature: self.account.sign(&signed).to_bytes(),
        }
    }

    /// Keys to upload, given how many one-time keys the server still holds:
    /// enough new one-time keys to reach [`ONE_TIME_KEY_TARGET`], and a
    /// fallback key if there is an unpublished one (the first, or a
    /// replacement after [`DeviceAccount::rotate_fallback_key`]). The keys
    /// stay unpublished, and are offered again, until
    /// [`DeviceAccount::mark_published`] is called after the upload
    /// succeeded.
    pub fn keys_to_upload(&mut self, server_count: usize) -> KeyUpload {
        let wanted = ONE_TIME_KEY_TARGET.saturating_sub(server_count);
        let pending = self.account.one_time_keys().len();
        if pending < wanted {
            self.account.generate_one_time_keys(wanted - pending);
        }
        if !self.has_fallback_key {
            self.account.generate_fallback_key();
            self.has_fallback_key = true;
        }
        let mut one_time_keys: Vec<SignedOneTimeKey> = self
            .account
            .one_time_keys()
            .into_iter()
            .map(|(id, key)| self.sign_key(id.to_base64(), key, false))
            .collect();
        one_time_keys.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        let fallback_key = self
            .account
            .fallback_key()
            .into_iter()
            .next()
            .map(|(id, key)| self.sign_key(id.to_base64(), key, true));
        KeyUpload {
            one_time_keys,
            fallback_key,
        }
    }

    /// The upload of [`DeviceAccount::keys_to_upload`] succeeded.
    pub fn mark_published(&mut self) {
        self.account.mark_keys_as_published();
    }

    /// Replaces the fallback key after the server reports it was handed out.
    /// The previous one keeps working for sessions already started with it
    /// until the next rotation.
    pub fn rotate_fallback_key(&mut self) {
        self.account.generate_fallback_key();
    }

    fn sign_key(
        &self,
        key_id: String,
        key: Curve25519PublicKey,
        fallback: bool,
    ) -> SignedOneTimeKey {
        let key = key.to_bytes();
        let signed =
            SignedOneTimeKey::signed_bytes(&self.user, &self.device, &key_id, &key, fallback);
        SignedOneTimeKey {
            key_id,
            key,
            fallback,
            signature: self.account.sign(&signed).to_bytes(),
        }
    }

    /// Signs arbitrary bytes with this device's Ed25519 key.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.account.sign(message).to_bytes()
    }

    /// Starts an Olm session with a device, from a one-time (or fallback)
    /// key claimed from the directory. Both the device's keys and the
    /// claimed key must carry valid signatures.
    pub(crate) fn outbound_session(
        &self,
        peer: &DeviceKeys,
        key: &SignedOneTimeKey,
    ) -> Result<vodozemac::olm::Session, E2eError> {
        verify_device_keys(peer)?;
        let one_time_key = verify_one_time_key(peer, key)?;
        Ok(self.account.create_outbound_session(
            SessionConfig::version_2(),
            Curve25519PublicKey::from_bytes(peer.curve25519),
            one_time_key,
        ))
    }

    /// Accepts a pre-key message from `sender_key`, consuming the one-time
    /// key it used.
    pub(crate) fn inbound_session(
        &mut self,
        sender_key: &PublicKey,
        message: &PreKeyMessage,
    ) -> Result<InboundCreationResult, E2eError> {
        self.account
            .create_inbound_session(Curve25519PublicKey::from_bytes(*sender_key), message)
            .map_err(|e| E2eError::Decrypt(format!("cannot start an Olm session: {e}")))
    }

    pub fn pickle(&self) -> DeviceAccountPickle {
        DeviceAccountPickle {
            user: self.user.clone(),
            device: self.device.clone(),
            account: self.account.pickle(),
            has_fallback_key: self.has_fallback_key,
        }
    }

    pub fn from_pickle(pickle: DeviceAccountPickle) -> Self {
        Self {
            user: pickle.user,
            device: pickle.device,
            account: Account::from_pickle(pickle.account),
            has_fallback_key: pickle.has_fallback_key,
        }
    }
}

/// Checks a device's self-signature.
pub fn verify_device_keys(keys: &DeviceKeys) -> Result<(), E2eError> {
    let signed =
        DeviceKeys::signed_bytes(&keys.user, &keys.device, &keys.curve25519, &keys.ed25519);
    verify(&keys.ed25519, &signed, &keys.signature).map_err(|()| E2eError::BadSignature {
        what: "device keys",
        user: keys.user.clone(),
        device: keys.device.clone(),
    })
}

/// Checks a claimed one-time or fallback key's signature by its device;
/// returns the key.
pub fn verify_one_time_key(
    owner: &DeviceKeys,
    key: &SignedOneTimeKey,
) -> Result<Curve25519PublicKey, E2eError> {
    let signed = SignedOneTimeKey::signed_bytes(
        &owner.user,
        &owner.device,
        &key.key_id,
        &key.key,
        key.fallback,
    );
    verify(&owner.ed25519, &signed, &key.signature).map_err(|()| E2eError::BadSignature {
        what: "one-time key",
        user: owner.user.clone(),
        device: owner.device.clone(),
    })?;
    Ok(Curve25519PublicKey::from_bytes(key.key))
}

fn verify(key: &PublicKey, message: &[u8], signature: &[u8; 64]) -> Result<(), ()> {
    let key = Ed25519PublicKey::from_slice(key).map_err(|_| ())?;
    let signature = Ed25519Signature::from_slice(signature).map_err(|_| ())?;
    key.verify(message, &signature).map_err(|_| ())
}
