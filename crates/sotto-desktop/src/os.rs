//! What the app asks of the desktop around it: opening a received file
//! with its program, showing it in its folder, and notifications.

use std::path::Path;

/// Opens `path` with the program the desktop uses for it.
pub fn open(path: &Path) -> std::io::Result<()> {
    launch(path)
}

/// Shows the folder holding `path`.
pub fn show_in_folder(path: &Path) -> std::io::Result<()> {
    launch(path.parent().unwrap_or(path))
}

fn launch(path: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "macos")]
    let mut command = std::process::Command::new("open");
    #[cfg(target_os = "windows")]
    let mut command = {
        let mut command = std::process::Command::new("explorer");
        command.arg("/n,");
        command
    };
    #[cfg(not(any(target_os = "macos", target_os = "windows")))]
    let mut command = std::process::Command::new("xdg-open");
    // Its own child: the app never waits for it.
    command
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|_| ())
}

/// Shows a desktop notification.
pub trait Notifier: Send {
    fn notify(&mut self, title: &str, body: &str);
}

/// The desktop's own notifications (D-Bus on Linux); where there are
/// none, the window's attention request is all there is.
#[derive(Debug, Default)]
pub struct DesktopNotifier;

impl Notifier for DesktopNotifier {
    fn notify(&mut self, title: &str, body: &str) {
        #[cfg(all(unix, not(target_os = "macos")))]
        {
            let (title, body) = (title.to_owned(), body.to_owned());
            // D-Bus may be slow or absent: never on the UI thread.
            std::thread::spawn(move || {
                if let Err(e) = notify_rust::Notification::new()
                    .appname("Sotto")
                    .summary(&title)
                    .body(&body)
                    .show()
                {
                    tracing::info!("no desktop notification: {e}");
                }
            });
        }
        #[cfg(not(all(unix, not(target_os = "macos"))))]
        let _ = (title, body);
    }
}
