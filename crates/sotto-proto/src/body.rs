//! The body of a private or group message, as the sending client encodes it
//! into an envelope's payload. The server never decodes this: to it a
//! payload is opaque bytes. (The end-to-end encryption layer wraps this
//! encoding in ciphertext without changing it.)

use serde::{Deserialize, Serialize};

use crate::frame::{DecodeError, EncodeError};
use crate::limits::{MAX_FILE_LEN, MAX_FILE_NAME_LEN, MAX_TEXT_LEN};

/// What a private or group message carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// Ordinary text.
    Text { text: String },
    /// A passphrase-sealed message (`@secret`): the recipient needs the
    /// passphrase to open it.
    Sealed(SealedBox),
    /// A file attachment.
    File(FileBody),
}

/// A message sealed with a key derived from a passphrase (Argon2id) and an
/// AEAD (XChaCha20-Poly1305). Produced and opened by `sotto-crypto`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedBox {
    /// Argon2id memory cost in KiB.
    pub m_cost: u32,
    /// Argon2id iterations.
    pub t_cost: u32,
    #[serde(with = "serde_bytes")]
    pub salt: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

/// A file sent as an attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileBody {
    /// The file's base name as the sender gave it; receivers must sanitize it.
    pub name: String,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

impl MessageBody {
    /// Encodes the body into payload bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        rmp_serde::to_vec(self).map_err(|e| EncodeError::Serialize(e.to_string()))
    }

    /// Decodes payload bytes, checking the size limits a sender must obey.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let body: MessageBody =
            rmp_serde::from_slice(bytes).map_err(|e| DecodeError::Malformed {
                request_id: None,
                reason: e.to_string(),
            })?;
        let reason = match &body {
            MessageBody::Text { text } if text.len() > MAX_TEXT_LEN => "text too long",
            MessageBody::File(f) if f.data.len() > MAX_FILE_LEN => "file too large",
            MessageBody::File(f) if f.name.len() > MAX_FILE_NAME_LEN => "file name too long",
            _ => return Ok(body),
        };
        Err(DecodeError::Malformed {
            request_id: None,
            reason: reason.to_owned(),
        })
    }
}
