//! The client's data dir and this device's id.
//!
//! The data dir holds `known_servers`, `devices/` and `downloads/`; it is
//! created private (0700 on unix) because it says whom the user talks to.
//! A device id is random, created on first login of a user on a server and
//! reused afterwards: the server keeps one delivery position per device, so
//! a stable id is what lets offline messages arrive exactly once per device.

use std::io;
use std::path::{Path, PathBuf};

use rand::RngCore;
use sotto_proto::{DeviceId, Username};

use crate::addr::ServerAddr;
use crate::known_servers::write_atomically;

/// Random bytes in a new device id (hex encoded: 32 characters).
const DEVICE_ID_BYTES: usize = 16;

/// Creates `dir` (and its parents) if missing, private to the user.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// The file holding the device id of `user` on `server`.
pub fn device_file(data_dir: &Path, user: &Username, server: &ServerAddr) -> PathBuf {
    data_dir
        .join("devices")
        .join(format!("{user}@{}", server.file_name_part()))
}

/// Reads this device's id for `user` on `server`, creating it on first use.
/// A damaged file is an error, not silently replaced: a new id would make
/// the server treat this as a new device.
pub fn load_or_create_device_id(
    data_dir: &Path,
    user: &Username,
    server: &ServerAddr,
) -> io::Result<DeviceId> {
    let path = device_file(data_dir, user, server);
    match std::fs::read_to_string(&path) {
        Ok(text) => DeviceId::parse(text.trim()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a valid device id ({e}); delete the file to register a new device"),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                create_private_dir(parent)?;
            }
            let mut bytes = [0u8; DEVICE_ID_BYTES];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let text = hex::encode(bytes);
            let id = DeviceId::parse(&text)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            write_atomically(&path, format!("{text}\n").as_bytes())?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let alice = Username::parse("alice").unwrap();
        let bob = Username::parse("bob").unwrap();
        let server = ServerAddr::parse("127.0.0.1:4000").unwrap();
        let other = ServerAddr::parse("example.org:4000").unwrap();

        let first = load_or_create_device_id(dir.path(), &alice, &server).unwrap();
        assert_eq!(first.as_str().len(), 32);
        assert!(first.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        let again = load_or_create_device_id(dir.path(), &alice, &server).unwrap();
        assert_eq!(first, again);
        assert!(dir.path().join("devices/alice@127.0.0.1_4000").is_file());

        // Another user or another server gets another id.
        assert_ne!(
            load_or_create_device_id(dir.path(), &bob, &server).unwrap(),
            first
        );
        assert_ne!(
            load_or_create_device_id(dir.path(), &alice, &other).unwrap(),
            first
        );
    }

    #[test]
    fn damaged_device_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let alice = Username::parse("alice").unwrap();
        let server = ServerAddr::parse("h:1").unwrap();
        let path = device_file(dir.path(), &alice, &server);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "no spaces allowed here").unwrap();
        let err = load_or_create_device_id(dir.path(), &alice, &server).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[cfg(unix)]
    #[test]
    fn data_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/b");
        create_private_dir(&data).unwrap();
        let mode = std::fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
