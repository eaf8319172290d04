//! "Remember me" on a logged-in device (see [`crate::remember`]).

use sotto_crypto::at_rest::DeviceKey;

use super::Client;
use crate::ClientError;

impl Client {
    /// Remembers this device: the next start can sign in with
    /// [`crate::Secret::Remembered`], without the password. A new device
    /// key replaces any earlier one.
    pub async fn remember_device(&self) -> Result<(), ClientError> {
        let key = DeviceKey::generate();
        let path = self.session.remember_file.clone();
        // The store's copy first: a key file without it opens nothing.
        let store_key = key.clone();
        crate::crypto::with_store(&self.crypto, move |store| store.remember(&store_key)).await?;
        tokio::task::spawn_blocking(move || crate::remember::save(&path, &key))
            .await
            .map_err(|e| ClientError::Internal(format!("background task failed: {e}")))?
            .map_err(|source| ClientError::DataDir {
                path: self.session.remember_file.clone(),
                source,
            })
    }

    /// Forgets this device: the next start needs the password. The
    /// store's copy goes first: without it the key file opens nothing.
    pub async fn forget_device(&self) -> Result<(), ClientError> {
        crate::crypto::with_store(&self.crypto, |store| store.forget_remembered()).await?;
        let path = self.session.remember_file.clone();
        let removed = tokio::task::spawn_blocking(move || match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
        .map_err(|e| ClientError::Internal(format!("background task failed: {e}")))?;
        removed.map_err(|source| ClientError::DataDir {
            path: self.session.remember_file.clone(),
            source,
        })
    }

    /// Whether this device is remembered.
    pub fn is_remembered(&self) -> bool {
        self.session.remember_file.exists()
    }
}
