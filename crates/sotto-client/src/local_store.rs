//! The client's local store: one file per account and server in the data
//! dir, sealed at rest under a key derived from the account password
//! (`sotto_crypto::at_rest`). It is written whole and atomically (a
//! temporary file, fsync, rename), so a crash leaves either the old state
//! or the new one, never a mix.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sotto_crypto::at_rest::{self, AtRestError, StoreKey};
use sotto_proto::Username;

use crate::addr::ServerAddr;
use crate::device::create_private_dir;
use crate::known_servers::write_atomically;

/// Why the local store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Locked(#[from] AtRestError),
    #[error("the local store's contents are unreadable: {0}")]
    Corrupt(String),
    #[error("local store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The store file of `user` on `server`.
pub fn store_file(data_dir: &Path, user: &Username, server: &ServerAddr) -> PathBuf {
    data_dir
        .join("stores")
        .join(format!("{user}@{}", server.file_name_part()))
}

/// An open (unlocked) store.
#[derive(Debug)]
pub struct LocalStore {
    path: PathBuf,
    key: StoreKey,
}

impl LocalStore {
    /// Unlocks the store at `path` with `password` and reads it; a store
    /// that does not exist yet opens empty (`None`) and is created by the
    /// first save.
    pub fn open<T: DeserializeOwned>(
        path: &Path,
        password: &str,
    ) -> Result<(Self, Option<T>), StoreError> {
        let io = |source| StoreError::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::read(path) {
            Ok(file) => {
                let (key, plain) = at_rest::open(password, &file)?;
                let value = serde_json::from_slice(&plain)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((
                    Self {
                        path: path.to_owned(),
                        key,
                    },
                    Some(value),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent() {
                    create_private_dir(parent).map_err(io)?;
                }
                Ok((
                    Self {
                        path: path.to_owned(),
                        key: StoreKey::create(password),
                    },
                    None,
                ))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Seals and writes `value`, replacing what was stored.
    pub fn save<T: Serialize>(&self, value: &T) -> Result<(), StoreError> {
        let sealed = self.seal(value)?;
        write_atomically(&self.path, &sealed).map_err(|source| StoreError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// The sealed file bytes for `value`, to write later (and elsewhere).
    pub fn seal<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, StoreError> {
        let plain = zeroize::Zeroizing::new(
            serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        );
        Ok(self.key.seal(&plain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_round_trips_only_with_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stores").join("alice@example");
        let (store, empty) = LocalStore::open::<Vec<String>>(&path, "pw-alice").unwrap();
        assert!(empty.is_none());
        let history = vec!["meet at noon".to_owned()];
        store.save(&history).unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert!(!on_disk.windows(4).any(|w| w == b"noon"));

        let (store, got) = LocalStore::open::<Vec<String>>(&path, "pw-alice").unwrap();
        assert_eq!(got, Some(history));
        store.save(&vec!["second".to_owned()]).unwrap();
        let (_, got) = LocalStore::open::<Vec<String>>(&path, "pw-alice").unwrap();
        assert_eq!(got, Some(vec!["second".to_owned()]));

        let err = LocalStore::open::<Vec<String>>(&path, "not-the-password").unwrap_err();
        assert!(err.to_string().contains("wrong password"), "{err}");
    }
}
