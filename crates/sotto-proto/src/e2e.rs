//! End-to-end encryption payloads: the signed key records a device uploads
//! to the server's key directory, and what travels inside and around Olm
//! and Megolm ciphertext.
//!
//! The server stores and routes the outer types ([`DeviceKeys`],
//! [`SignedOneTimeKey`], [`MegolmEnvelope`], [`OlmEnvelope`]) without being
//! able to read the inner ones ([`RoomPlaintext`], [`ToDevicePlaintext`]).
//! `sotto-crypto` produces and checks all of them; this module only defines
//! the encoding.
//!
//! Identity, room, message id and time are inside the ciphertext and are
//! checked on receipt against the envelope the server delivered, so nothing
//! the server can change (or the envelope's unauthenticated fields) is
//! trusted for identity.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::body::MessageBody;
use crate::frame::{DecodeError, EncodeError};
use crate::names::{DeviceId, Username};

/// A Curve25519 or Ed25519 public key.
pub type PublicKey = [u8; 32];
/// An Ed25519 signature.
pub type Signature = [u8; 64];

/// A device's long-term public keys, signed with its own Ed25519 key over
/// [`DeviceKeys::signed_bytes`]. Uploaded once, on the device's first login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceKeys {
    pub user: Username,
    pub device: DeviceId,
    /// Olm identity key (key agreement).
    #[serde(with = "serde_bytes")]
    pub curve25519: PublicKey,
    /// Signing key.
    #[serde(with = "serde_bytes")]
    pub ed25519: PublicKey,
    #[serde(with = "serde_bytes")]
    pub signature: Signature,
}

impl DeviceKeys {
    /// The bytes the device signs: a domain tag, then every field.
    pub fn signed_bytes(
        user: &Username,
        device: &DeviceId,
        curve25519: &PublicKey,
        ed25519: &PublicKey,
    ) -> Vec<u8> {
        let mut out = b"sotto device keys v1\0".to_vec();
        push_str(&mut out, user.as_str());
        push_str(&mut out, device.as_str());
        out.extend_from_slice(curve25519);
        out.extend_from_slice(ed25519);
        out
    }
}

/// A one-time or fallback key for starting an Olm session, signed by the
/// owning device's Ed25519 key over [`SignedOneTimeKey::signed_bytes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedOneTimeKey {
    /// The key's id, unique per device (vodozemac's key id).
    pub key_id: String,
    #[serde(with = "serde_bytes")]
    pub key: PublicKey,
    /// A fallback key: handed out when no one-time key is left, possibly
    /// more than once, until the device replaces it.
    pub fallback: bool,
    #[serde(with = "serde_bytes")]
    pub signature: Signature,
}

impl SignedOneTimeKey {
    /// The bytes the device signs: a domain tag, the owner and the key.
    pub fn signed_bytes(
        user: &Username,
        device: &DeviceId,
        key_id: &str,
        key: &PublicKey,
        fallback: bool,
    ) -> Vec<u8> {
        let mut out = b"sotto one-time key v1\0".to_vec();
        push_str(&mut out, user.as_str());
        push_str(&mut out, device.as_str());
        push_str(&mut out, key_id);
        out.extend_from_slice(key);
        out.push(u8::from(fallback));
        out
    }
}

/// Length-prefixed, so no two different field lists sign the same bytes.
fn push_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The payload of a private or group message's envelope: Megolm ciphertext
/// of an encoded [`RoomPlaintext`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MegolmEnvelope {
    /// The sending device's Curve25519 identity key: which device's room
    /// keys to look in. Not trusted: the plaintext names the sender, and the
    /// room key must have come from that device over Olm.
    #[serde(with = "serde_bytes")]
    pub sender_key: PublicKey,
    /// The Megolm session that encrypted it.
    pub session_id: String,
    /// vodozemac's Megolm message bytes (index, ciphertext, MAC, signature).
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

/// What a room message decrypts to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomPlaintext {
    /// Who sent it; must match the account that owns the device whose room
    /// key decrypted it, and the sender the server names.
    pub sender: Username,
    pub sender_device: DeviceId,
    /// The room it was sent to; must match the room it arrived in.
    pub room_id: u64,
    /// Chosen by the sender, unique per sender: replays carry the same id.
    #[serde(with = "serde_bytes")]
    pub msg_id: [u8; 16],
    /// Sender's clock, milliseconds since the Unix epoch.
    pub ts: i64,
    pub body: MessageBody,
}

/// A to-device message's payload: Olm ciphertext of an encoded
/// [`ToDevicePlaintext`] for one recipient device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OlmEnvelope {
    /// The sender device's Curve25519 identity key.
    #[serde(with = "serde_bytes")]
    pub sender_key: PublicKey,
    /// vodozemac's message type: 0 pre-key, 1 normal.
    pub message_type: u8,
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

/// What a to-device message decrypts to. Both ends are named with their
/// keys so a message cannot be re-encrypted to someone else or attributed
/// to another device. The sender's self-signed keys travel inside, so a
/// recipient that has not seen the sender's device yet can check and pin
/// them (trust on first use) without asking the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToDevicePlaintext {
    pub sender: Username,
    pub sender_device: DeviceId,
    pub sender_keys: DeviceKeys,
    pub recipient: Username,
    pub recipient_device: DeviceId,
    #[serde(with = "serde_bytes")]
    pub recipient_ed25519: PublicKey,
    pub content: ToDeviceContent,
}

/// What one device tells another over Olm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToDeviceContent {
    /// A Megolm room key: the recipient can decrypt the sender's messages in
    /// `room_id` from the key's index on.
    RoomKey {
        room_id: u64,
        session_id: String,
        /// vodozemac `SessionKey` bytes (signed by the Megolm session).
        #[serde(with = "serde_bytes")]
        session_key: Vec<u8>,
    },
    /// Asks the sender of a room message for the key it could not decrypt.
    KeyRequest { room_id: u64, session_id: String },
    /// The answer to a [`ToDeviceContent::KeyRequest`], from the device
    /// that owns the session: its key from the first index it has
    /// (vodozemac `ExportedSessionKey` bytes).
    ForwardedRoomKey {
        room_id: u64,
        session_id: String,
        #[serde(with = "serde_bytes")]
        exported_key: Vec<u8>,
    },
    /// The answer to a [`ToDeviceContent::KeyRequest`] that the owner of
    /// the session will not answer with a key, and why: the requester
    /// shows it once instead of waiting in silence.
    Withheld {
        room_id: u64,
        session_id: String,
        reason: WithheldReason,
    },
    /// Starts a fresh Olm session after a broken one; carries nothing.
    Dummy,
}

/// Why a room key was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WithheldReason {
    /// The sender's user has not accepted the requesting device yet (it is
    /// a new device of a contact they verified, or of their own account):
    /// it gets the key once they accept it.
    NotAccepted,
    /// The requesting device was never sent the key (it was not in the
    /// room, or did not exist yet, when the session was made).
    NotShared,
}

macro_rules! msgpack_codec {
    ($($ty:ty),*) => {$(
        impl $ty {
            /// Encodes to bytes.
            pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
                encode(self)
            }

            /// Decodes from bytes.
            pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                decode(bytes)
            }
        }
    )*};
}

msgpack_codec!(
    DeviceKeys,
    SignedOneTimeKey,
    MegolmEnvelope,
    RoomPlaintext,
    OlmEnvelope,
    ToDevicePlaintext
);

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, EncodeError> {
    rmp_serde::to_vec(value).map_err(|e| EncodeError::Serialize(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    rmp_serde::from_slice(bytes).map_err(|e| DecodeError::Malformed {
        request_id: None,
        reason: e.to_string(),
    })
}

/// A digest of a set of devices (user and device names; order and
/// repeats do not matter), for [`crate::Message::Direct`]'s check that a
/// message was encrypted for the devices the directory lists. Not a
/// security measure (a server can list what it likes): it catches the
/// race between a device list a client cached and a device added or
/// removed a moment ago. FNV-1a over the sorted names.
pub fn device_digest<'a>(devices: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut names: Vec<(&str, &str)> = devices.into_iter().collect();
    names.sort_unstable();
    names.dedup();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (user, device) in names {
        for byte in user.bytes().chain([0]).chain(device.bytes()).chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Username {
        Username::parse(name).unwrap()
    }

    #[test]
    fn the_device_digest_is_of_the_set() {
        let a = device_digest([("alice", "phone"), ("bob", "laptop")]);
        assert_eq!(a, device_digest([("bob", "laptop"), ("alice", "phone")]));
        assert_eq!(
            a,
            device_digest([("bob", "laptop"), ("alice", "phone"), ("bob", "laptop")])
        );
        assert_ne!(a, device_digest([("alice", "phone")]));
        assert_ne!(
            a,
            device_digest([("alice", "phone"), ("bob", "laptop"), ("bob", "tablet")])
        );
        // Names are separated: moving a letter between them changes it.
        assert_ne!(device_digest([("ab", "c")]), device_digest([("a", "bc")]));
    }

    fn device(id: &str) -> DeviceId {
        DeviceId::parse(id).unwrap()
    }

    #[test]
    fn payloads_round_trip() {
        let plain = RoomPlaintext {
            sender: user("alice"),
            sender_device: device("ALICEDEV01"),
            room_id: 7,
            msg_id: [3; 16],
            ts: 1_700_000_000_000,
            body: MessageBody::Text { text: "hi".into() },
        };
        assert_eq!(
            RoomPlaintext::decode(&plain.encode().unwrap()).unwrap(),
            plain
        );
        let key = ToDevicePlaintext {
            sender: user("alice"),
            sender_device: device("ALICEDEV01"),
            sender_keys: DeviceKeys {
                user: user("alice"),
                device: device("ALICEDEV01"),
                curve25519: [1; 32],
                ed25519: [4; 32],
                signature: [5; 64],
            },
            recipient: user("bob"),
            recipient_device: device("BOBDEVICE1"),
            recipient_ed25519: [2; 32],
            content: ToDeviceContent::RoomKey {
                room_id: 7,
                session_id: "s".into(),
                session_key: vec![9; 229],
            },
        };
        assert_eq!(
            ToDevicePlaintext::decode(&key.encode().unwrap()).unwrap(),
            key
        );
    }

    #[test]
    fn signed_bytes_are_unambiguous() {
        // Moving a character from the user name to the device id changes
        // what is signed.
        let a = DeviceKeys::signed_bytes(&user("ab"), &device("cdefghijk"), &[0; 32], &[0; 32]);
        let b = DeviceKeys::signed_bytes(&user("abc"), &device("defghijk"), &[0; 32], &[0; 32]);
        assert_ne!(a, b);
        let otk =
            SignedOneTimeKey::signed_bytes(&user("ab"), &device("cdefghijk"), "k", &[0; 32], false);
        let fallback =
            SignedOneTimeKey::signed_bytes(&user("ab"), &device("cdefghijk"), "k", &[0; 32], true);
        assert_ne!(otk, fallback);
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(MegolmEnvelope::decode(b"\xc1garbage").is_err());
        assert!(RoomPlaintext::decode(&[]).is_err());
    }
}
