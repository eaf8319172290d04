//! The `known_servers` file: the certificate fingerprint pinned for each
//! server on first contact (trust on first use, like SSH's `known_hosts`).
//!
//! One line per server, `host:port SHA256:<hex>`; blank lines and lines
//! starting with `#` are ignored, so a user can annotate or comment out
//! entries. The file is rewritten atomically (temporary file, then rename),
//! so a crash never leaves it half written.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sotto_crypto::Fingerprint;

/// What the file says about a server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinned {
    /// The presented certificate is the pinned one.
    Match,
    /// The server is not in the file.
    Unknown,
    /// The server is pinned to another certificate.
    Changed { expected: Fingerprint },
    /// The server's line exists but its fingerprint does not parse. This
    /// fails closed: a damaged file must not silently re-trust a server.
    Damaged,
}

/// The pinned fingerprints, as read from the file.
#[derive(Debug, Clone)]
pub struct KnownServers {
    /// Where the entries were read from and are written back to.
    path: PathBuf,
    /// The file's lines, kept verbatim so comments survive a rewrite.
    lines: Vec<String>,
}

impl KnownServers {
    /// Reads the file; a missing file is an empty list.
    pub fn load(path: &Path) -> io::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            path: path.to_owned(),
            lines: text.lines().map(str::to_owned).collect(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pin for `server` (`host:port`): `None` if the server has no
    /// line, `Some(None)` if its line does not parse.
    pub fn lookup(&self, server: &str) -> Option<Option<Fingerprint>> {
        self.lines.iter().find_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let (name, fp) = line.split_once(char::is_whitespace)?;
            (name == server).then(|| Fingerprint::parse(fp.trim()))
        })
    }

    /// Compares a presented certificate with the pin.
    pub fn check(&self, server: &str, presented: &Fingerprint) -> Pinned {
        match self.lookup(server) {
            None => Pinned::Unknown,
            Some(Some(pinned)) if pinned == *presented => Pinned::Match,
            Some(Some(expected)) => Pinned::Changed { expected },
            Some(None) => Pinned::Damaged,
        }
    }

    /// Pins `server` to `fingerprint` and rewrites the file atomically.
    pub fn add(&mut self, server: &str, fingerprint: &Fingerprint) -> io::Result<()> {
        self.lines.push(format!("{server} {fingerprint}"));
        let mut text = self.lines.join("\n");
        text.push('\n');
        write_atomically(&self.path, text.as_bytes())
    }
}

impl KnownServers {
    /// Pins `server` to `fingerprint` in place of its old pin (after its
    /// operator confirmed a new certificate); the old line is kept as a
    /// comment.
    pub fn replace(&mut self, server: &str, fingerprint: &Fingerprint) -> io::Result<()> {
        for line in &mut self.lines {
            let trimmed = line.trim();
            if !trimmed.starts_with('#')
                && trimmed
                    .split_once(char::is_whitespace)
                    .map(|(name, _)| name)
                    == Some(server)
            {
                *line = format!("# replaced: {trimmed}");
            }
        }
        self.add(server, fingerprint)
    }
}

/// Writes `data` to a temporary file next to `path` (mode 0600 on unix),
/// syncs it and renames it over `path`.
pub(crate) fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        // Best effort: do not leave the temporary file behind.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_lookup_and_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_servers");
        let a = Fingerprint::of_der(b"cert a");
        let b = Fingerprint::of_der(b"cert b");

        let mut known = KnownServers::load(&path).unwrap();
        assert_eq!(known.check("h:1", &a), Pinned::Unknown);
        known.add("h:1", &a).unwrap();
        known.add("other:2", &b).unwrap();

        // Re-read from disk: the entries persisted.
        let known = KnownServers::load(&path).unwrap();
        assert_eq!(known.check("h:1", &a), Pinned::Match);
        assert_eq!(known.check("h:1", &b), Pinned::Changed { expected: a });
        assert_eq!(known.check("other:2", &b), Pinned::Match);
        assert_eq!(known.check("h:2", &a), Pinned::Unknown);

        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("h:1 {a}\nother:2 {b}\n"));
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_replaced_pin_is_the_only_one_and_the_old_stays_as_a_comment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_servers");
        let a = Fingerprint::of_der(b"cert a");
        let b = Fingerprint::of_der(b"cert b");
        let mut known = KnownServers::load(&path).unwrap();
        known.add("h:1", &a).unwrap();
        known.add("other:2", &a).unwrap();
        known.replace("h:1", &b).unwrap();
        let known = KnownServers::load(&path).unwrap();
        assert_eq!(known.check("h:1", &b), Pinned::Match);
        assert_eq!(known.check("other:2", &a), Pinned::Match);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("# replaced: h:1 {a}\nother:2 {a}\nh:1 {b}\n"));
    }

    #[test]
    fn comments_survive_and_damaged_lines_fail_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_servers");
        let a = Fingerprint::of_der(b"a");
        std::fs::write(&path, "# my servers\n\nbroken:1 SHA256:zz\n").unwrap();
        let mut known = KnownServers::load(&path).unwrap();
        assert_eq!(known.check("broken:1", &a), Pinned::Damaged);
        assert_eq!(known.check("# my", &a), Pinned::Unknown);
        known.add("new:1", &a).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# my servers\n\nbroken:1 SHA256:zz\n"));
        assert!(text.ends_with(&format!("new:1 {a}\n")));
    }

    #[cfg(unix)]
    #[test]
    fn file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_servers");
        KnownServers::load(&path)
            .unwrap()
            .add("h:1", &Fingerprint::of_der(b"x"))
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
