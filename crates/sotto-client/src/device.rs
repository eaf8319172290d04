//! The client's data dir and this device's id.
//!
//! The data dir holds `known_servers`, `devices/` and `downloads/`; it is
//! created private (0700 on unix) because it says whom the user talks to.
//! A device id is random, created on first login of a user on a server and
//! reused afterwards: the server keeps one delivery position per device, so
//! a stable id is what lets offline messages arrive exactly once per device.
//!
//! A device belongs to a server, not to an address: its files are named by
//! the server id from the hello and the server's certificate
//! ([`server_part`]), so the same server reached as `localhost:P`,
//! `127.0.0.1:P` or on a new port is the same device with the same history,
//! while another server that claims the same id (ids are not secret) is
//! not. Files named by address (before server ids) are moved over on first
//! use ([`adopt_address_files`]).

use std::io;
use std::path::{Path, PathBuf};

use rand::RngCore;
use sotto_crypto::Fingerprint;
use sotto_proto::{DeviceId, ServerId, Username};

use crate::addr::ServerAddr;
use crate::known_servers::write_atomically;

/// Random bytes in a new device id (hex encoded: 32 characters).
const DEVICE_ID_BYTES: usize = 16;

/// Creates `dir` (and its parents) if missing, private to the user.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// How a server is named in this client's file names: by its id and its
/// certificate (a server that presents a new certificate, which the user
/// must have accepted, is a new device), or (a server that sent no id) by
/// the address it was reached at.
pub fn server_part(server_id: &ServerId, certificate: &Fingerprint, addr: &ServerAddr) -> String {
    if *server_id == ServerId::default() {
        addr.file_name_part()
    } else {
        format!(
            "server-{}-{}",
            server_id.to_hex(),
            hex::encode(&certificate.as_bytes()[..6])
        )
    }
}

/// The file holding the device id of `user` on the server named `server`
/// (see [`server_part`]).
pub fn device_file(data_dir: &Path, user: &Username, server: &str) -> PathBuf {
    data_dir.join("devices").join(format!("{user}@{server}"))
}

/// Moves the device id and local store of `user` named by the address
/// `addr` (as clients before server ids named them) to the names of the
/// server `server`, unless it has its own already.
pub fn adopt_address_files(
    data_dir: &Path,
    user: &Username,
    addr: &ServerAddr,
    server: &str,
) -> io::Result<()> {
    let old = addr.file_name_part();
    if old == server {
        return Ok(());
    }
    let (old_device, new_device) = (
        device_file(data_dir, user, &old),
        device_file(data_dir, user, server),
    );
    if !old_device.exists() || new_device.exists() {
        return Ok(());
    }
    let (old_store, new_store) = (
        crate::local_store::store_file(data_dir, user, &old),
        crate::local_store::store_file(data_dir, user, server),
    );
    if old_store.exists() && !new_store.exists() {
        for suffix in ["", "-wal", "-shm"] {
            let from = PathBuf::from(format!("{}{suffix}", old_store.display()));
            if from.exists() {
                std::fs::rename(&from, format!("{}{suffix}", new_store.display()))?;
            }
        }
    }
    // The device id last: if anything above failed, the next start tries
    // again from the old names.
    std::fs::rename(old_device, new_device)
}

/// Reads this device's id for `user` on the server named `server` (see
/// [`server_part`]), creating it on first use. A damaged file is an error,
/// not silently replaced: a new id would make the server treat this as a
/// new device.
pub fn load_or_create_device_id(
    data_dir: &Path,
    user: &Username,
    server: &str,
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
        let server = "server-0102";
        let other = "server-0304";

        let first = load_or_create_device_id(dir.path(), &alice, server).unwrap();
        assert_eq!(first.as_str().len(), 32);
        assert!(first.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        let again = load_or_create_device_id(dir.path(), &alice, server).unwrap();
        assert_eq!(first, again);
        assert!(dir.path().join("devices/alice@server-0102").is_file());

        // Another user or another server gets another id.
        assert_ne!(
            load_or_create_device_id(dir.path(), &bob, server).unwrap(),
            first
        );
        assert_ne!(
            load_or_create_device_id(dir.path(), &alice, other).unwrap(),
            first
        );
    }

    #[test]
    fn a_device_is_named_by_its_server_and_files_named_by_address_move_over() {
        let dir = tempfile::tempdir().unwrap();
        let alice = Username::parse("alice").unwrap();
        let addr = ServerAddr::parse("127.0.0.1:4000").unwrap();
        let id = ServerId([7; 16]);
        let cert = Fingerprint::of_der(b"cert");
        assert_eq!(
            server_part(&ServerId::default(), &cert, &addr),
            "127.0.0.1_4000"
        );
        let named = server_part(&id, &cert, &addr);
        assert!(
            named.starts_with(&format!("server-{}-", "07".repeat(16))),
            "{named}"
        );
        // Another server claiming the same id has another certificate.
        assert_ne!(
            server_part(&id, &Fingerprint::of_der(b"other"), &addr),
            named
        );
        // What a client named by address had.
        let old = load_or_create_device_id(dir.path(), &alice, &addr.file_name_part()).unwrap();
        let store = crate::local_store::store_file(dir.path(), &alice, &addr.file_name_part());
        std::fs::create_dir_all(store.parent().unwrap()).unwrap();
        std::fs::write(&store, b"db").unwrap();
        adopt_address_files(dir.path(), &alice, &addr, &named).unwrap();
        assert_eq!(
            load_or_create_device_id(dir.path(), &alice, &named).unwrap(),
            old
        );
        assert!(crate::local_store::store_file(dir.path(), &alice, &named).is_file());
        assert!(!store.exists());
        // Reached under another address: the same device.
        let other = ServerAddr::parse("localhost:4001").unwrap();
        let again = server_part(&id, &cert, &other);
        adopt_address_files(dir.path(), &alice, &other, &again).unwrap();
        assert_eq!(
            load_or_create_device_id(dir.path(), &alice, &again).unwrap(),
            old
        );
    }

    #[test]
    fn damaged_device_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let alice = Username::parse("alice").unwrap();
        let server = "h_1";
        let path = device_file(dir.path(), &alice, server);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "no spaces allowed here").unwrap();
        let err = load_or_create_device_id(dir.path(), &alice, server).unwrap_err();
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
