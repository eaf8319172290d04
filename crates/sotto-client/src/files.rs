//! Saving received files. The sender chooses the file name, so it is
//! untrusted: it is reduced to a plain base name (no directories, no control,
//! bidi or invisible characters, no hidden names, no names Windows reserves,
//! no trailing dots) that still fits when numbered, and never overwrites an
//! existing file.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sotto_proto::limits::MAX_FILE_NAME_LEN;

/// Name used when nothing usable is left of the sender's name.
const FALLBACK_NAME: &str = "download";

/// How many numbered variants (`name (1).ext`, ...) are tried before giving up.
const MAX_NAME_ATTEMPTS: u32 = 10_000;

/// Names Windows keeps for devices, with or without an extension.
const RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Bytes kept free for ` (N)` when a name is taken.
const NUMBER_ROOM: usize = 8;

/// Reduces a sender-chosen file name to a safe base name.
pub fn sanitize_file_name(name: &str) -> String {
    // Keep only the last path component, whichever separator the sender used.
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = crate::sanitize::line(base)
        .chars()
        .map(|c| match c {
            // Characters that are special on some file systems.
            '<' | '>' | ':' | '"' | '|' | '?' | '*' => '_',
            c => c,
        })
        .collect();
    // No hidden files, no "." or "..", no names that are only spaces, no
    // trailing dots or spaces (Windows drops them).
    let cleaned = cleaned
        .trim()
        .trim_start_matches('.')
        .trim_end_matches(['.', ' '])
        .trim();
    let mut out = if cleaned.is_empty() {
        FALLBACK_NAME.to_owned()
    } else {
        cleaned.to_owned()
    };
    let stem = out.split('.').next().unwrap_or_default();
    if RESERVED.iter().any(|r| stem.eq_ignore_ascii_case(r)) {
        out.insert(0, '_');
    }
    // Room for the number a taken name gets, at the end of the stem.
    let (stem, ext) = split_extension(&out);
    let (mut stem, ext) = (stem.to_owned(), ext.to_owned());
    truncate_utf8(
        &mut stem,
        MAX_FILE_NAME_LEN
            .saturating_sub(ext.len() + NUMBER_ROOM)
            .max(1),
    );
    let mut out = stem + &ext;
    truncate_utf8(&mut out, MAX_FILE_NAME_LEN - NUMBER_ROOM);
    out
}

/// A name's stem and extension (with its dot): `("report", ".pdf")`; the
/// extension is empty when there is none (or the name is only one).
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(at) if at > 0 && name.len() - at <= 16 => name.split_at(at),
        _ => (name, ""),
    }
}

/// Truncates `s` to at most `max` bytes at a character boundary.
fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// The `n`th alternative for `name`: `report (2).pdf` for `report.pdf`.
fn numbered(name: &str, n: u32) -> String {
    let (stem, ext) = split_extension(name);
    format!("{stem} ({n}){ext}")
}

/// Saves `data` in `dir` (created if missing) under the sanitized `name`,
/// adding ` (1)`, ` (2)`, ... before the extension if the name is taken.
/// Returns the path written.
pub fn save_download(dir: &Path, name: &str, data: &[u8]) -> io::Result<PathBuf> {
    crate::device::create_private_dir(dir)?;
    let name = sanitize_file_name(name);
    for attempt in 0..MAX_NAME_ATTEMPTS {
        let candidate = if attempt == 0 {
            name.clone()
        } else {
            numbered(&name, attempt)
        };
        let path = dir.join(candidate);
        // `create_new` makes "exists?" and "create" one atomic step.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(mut file) => {
                let written = file.write_all(data).and_then(|()| file.sync_all());
                if let Err(e) = written {
                    let _ = std::fs::remove_file(&path);
                    return Err(e);
                }
                return Ok(path);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("too many files named like '{name}'"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_names() {
        let cases = [
            ("report.pdf", "report.pdf"),
            ("../../etc/passwd", "passwd"),
            ("C:\\Users\\x\\evil.exe", "evil.exe"),
            ("/abs/path/a b.txt", "a b.txt"),
            ("..", FALLBACK_NAME),
            (".", FALLBACK_NAME),
            ("", FALLBACK_NAME),
            ("dir/", FALLBACK_NAME),
            (".bashrc", "bashrc"),
            ("bad\nname\u{7}.txt", "bad name.txt"),
            ("a<b>c:d\"e|f?g*h", "a_b_c_d_e_f_g_h"),
            ("  spaced  ", "spaced"),
            ("ünïcødé.txt", "ünïcødé.txt"),
            ("invoice\u{202E}fdp.exe", "invoicefdp.exe"),
            ("zero\u{200B}width.txt", "zerowidth.txt"),
            ("CON", "_CON"),
            ("con.txt", "_con.txt"),
            ("Lpt9.log", "_Lpt9.log"),
            ("console.txt", "console.txt"),
            ("trailing. . .", "trailing"),
            ("notes.txt.", "notes.txt"),
        ];
        for (input, expected) in cases {
            assert_eq!(sanitize_file_name(input), expected, "{input:?}");
        }
        let long = "é".repeat(200);
        let cut = sanitize_file_name(&long);
        assert!(cut.len() <= MAX_FILE_NAME_LEN);
        assert!(cut.chars().all(|c| c == 'é'));
        // A long name keeps its extension and room for a number.
        let long = format!("{}.pdf", "a".repeat(300));
        let cut = sanitize_file_name(&long);
        assert!(cut.ends_with(".pdf"), "{cut}");
        assert!(numbered(&cut, 10_000).len() <= MAX_FILE_NAME_LEN);
    }

    #[test]
    fn a_second_copy_of_a_longest_name_is_saved_too() {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("{}.txt", "x".repeat(251));
        let first = save_download(dir.path(), &name, b"1").unwrap();
        let second = save_download(dir.path(), &name, b"2").unwrap();
        assert_ne!(first, second);
        assert_eq!(std::fs::read(second).unwrap(), b"2");
    }

    #[test]
    fn never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let downloads = dir.path().join("downloads");
        let a = save_download(&downloads, "notes.txt", b"one").unwrap();
        let b = save_download(&downloads, "../notes.txt", b"two").unwrap();
        let c = save_download(&downloads, "notes.txt", b"three").unwrap();
        let d = save_download(&downloads, "README", b"r").unwrap();
        let e = save_download(&downloads, "README", b"r2").unwrap();
        assert_eq!(a, downloads.join("notes.txt"));
        assert_eq!(b, downloads.join("notes (1).txt"));
        assert_eq!(c, downloads.join("notes (2).txt"));
        assert_eq!(d, downloads.join("README"));
        assert_eq!(e, downloads.join("README (1)"));
        assert_eq!(std::fs::read(&a).unwrap(), b"one");
        assert_eq!(std::fs::read(&c).unwrap(), b"three");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
