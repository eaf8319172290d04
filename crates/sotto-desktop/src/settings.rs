//! What the app remembers between runs (`desktop.json` in its data dir):
//! the last server and user name, whether to sign in by itself, the
//! theme, notifications, the window's size and the conversation last
//! shown. Never a password: a remembered sign-in is the client library's
//! device key (`sotto_client::remember`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The colours of the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    /// As the system says.
    #[default]
    System,
    Light,
    Dark,
}

/// Remembered between runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The server address last connected to.
    pub server: String,
    /// The user name last signed in with.
    pub user: String,
    /// Sign in by itself at start (the device is remembered).
    pub remember: bool,
    pub theme: Theme,
    /// Desktop notifications for private messages and mentions while the
    /// window is not focused.
    pub notifications: bool,
    /// The window's inner size, in points.
    pub window: Option<[f32; 2]>,
    /// The conversation shown last (`lobby`, `@user` or `#group`).
    pub conversation: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: "127.0.0.1:7443".into(),
            user: String::new(),
            remember: false,
            theme: Theme::System,
            notifications: true,
            window: None,
            conversation: None,
        }
    }
}

/// The settings file in `data_dir`.
pub fn file(data_dir: &Path) -> PathBuf {
    data_dir.join("desktop.json")
}

impl Settings {
    /// Reads the settings; the defaults when there are none or they are
    /// unreadable (said in the log).
    pub fn load(path: &Path) -> Self {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), "unreadable settings, using defaults: {e}");
                Self::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot read settings: {e}");
                Self::default()
            }
        }
    }

    /// Writes the settings in one step (a new file renamed over the
    /// old), readable by the user only.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            sotto_client::device::create_private_dir(dir)?;
        }
        let temp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        std::io::Write::write_all(&mut options.open(&temp)?, &bytes)?;
        std::fs::rename(&temp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_bad_files_give_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path());
        assert_eq!(Settings::load(&path), Settings::default());
        let settings = Settings {
            user: "alice".into(),
            remember: true,
            theme: Theme::Dark,
            window: Some([900.0, 640.0]),
            conversation: Some("#project".into()),
            ..Settings::default()
        };
        settings.save(&path).unwrap();
        assert_eq!(Settings::load(&path), settings);
        assert!(!std::fs::read_to_string(&path).unwrap().contains("password"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        std::fs::write(&path, b"{ not json").unwrap();
        assert_eq!(Settings::load(&path), Settings::default());
    }
}
