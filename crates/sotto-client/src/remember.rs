//! "Remember me": a device that starts without its user typing the
//! password. The password is never kept. Instead a random device key
//! ([`DeviceKey`]) is kept in a file of the data dir
//! (`remembered/USER@SERVER.key`, 0600), and the local store keeps the
//! store key sealed under it; the device then logs in with its session
//! token, as every device does after its first login. Anyone who can read
//! the user's files can therefore open the store while the device is
//! remembered (as with any saved sign-in); [`forget`] deletes the file.
//!
//! A password change, a removed device or a refused token ends it: the
//! next start asks for the password ([`crate::ClientError::PasswordNeeded`]).

use std::path::{Path, PathBuf};

use sotto_crypto::at_rest::DeviceKey;
use sotto_proto::Username;
use zeroize::Zeroizing;

use crate::ServerAddr;
use crate::device::create_private_dir;

/// The file holding the device key of `user` on `server` (an address as
/// typed; its normalized form names the file).
pub fn key_file(data_dir: &Path, server: &str, user: &Username) -> PathBuf {
    let server = ServerAddr::parse(server).map_or_else(|_| server.to_owned(), |a| a.to_string());
    // Only characters every file system takes.
    let safe: String = server
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    data_dir
        .join("remembered")
        .join(format!("{user}@{safe}.key"))
}

/// Whether `user` on `server` is remembered on this device.
pub fn is_remembered(data_dir: &Path, server: &str, user: &Username) -> bool {
    key_file(data_dir, server, user).exists()
}

/// Forgets `user` on `server`: the next start asks for the password.
pub fn forget(data_dir: &Path, server: &str, user: &Username) -> std::io::Result<()> {
    match std::fs::remove_file(key_file(data_dir, server, user)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Reads a kept device key; `None` when there is none or it is damaged.
pub(crate) fn load(path: &Path) -> Option<DeviceKey> {
    let text = Zeroizing::new(std::fs::read_to_string(path).ok()?);
    let bytes = Zeroizing::new(hex::decode(text.trim()).ok()?);
    DeviceKey::from_bytes(&bytes).ok()
}

/// Keeps `key` at `path`, readable by the user only, replacing what was
/// there in one step.
pub(crate) fn save(path: &Path, key: &DeviceKey) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let text = Zeroizing::new(hex::encode(key.to_bytes().as_slice()));
    crate::known_servers::write_atomically(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_key_reads_back_and_is_private_and_forgetting_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let alice = Username::parse("alice").unwrap();
        let path = key_file(dir.path(), "[::1]:7443", &alice);
        assert_eq!(path.file_name().unwrap(), "alice@___1__7443.key");
        assert!(!is_remembered(dir.path(), "[::1]:7443", &alice));
        let key = DeviceKey::generate();
        save(&path, &key).unwrap();
        assert!(is_remembered(dir.path(), "[::1]:7443", &alice));
        let again = load(&path).unwrap();
        assert_eq!(again.to_bytes(), key.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        std::fs::write(&path, "not hex").unwrap();
        assert!(load(&path).is_none());
        forget(dir.path(), "[::1]:7443", &alice).unwrap();
        assert!(!is_remembered(dir.path(), "[::1]:7443", &alice));
        forget(dir.path(), "[::1]:7443", &alice).unwrap();
    }
}
