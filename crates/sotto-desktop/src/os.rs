//! What the app asks of the desktop around it: opening a received file
//! with its program, showing it in its folder, and notifications.

use std::path::Path;

/// Kinds of file that open in a viewer, not a program that runs code:
/// opened at a click; any other asks first.
const VIEWED: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "webp", "bmp", "txt", "md", "csv", "pdf", "mp3", "ogg", "flac",
    "wav", "mp4", "webm", "mkv",
];

/// Whether a received file opens with a viewer (its extension says so).
pub fn opens_safely(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIEWED.contains(&e.to_ascii_lowercase().as_str()))
}

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
    let mut child = command
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Reaped on a thread of its own: the app never waits for it.
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// Shows a desktop notification.
pub trait Notifier: Send {
    fn notify(&mut self, title: &str, body: &str);
}

/// Notifications waiting for the desktop at most; more are dropped (a
/// burst of messages after a reconnect notifies a few, not hundreds).
pub const MAX_WAITING_NOTIFICATIONS: usize = 4;

/// The desktop's own notifications (D-Bus on Linux), shown one at a time
/// by a thread of their own (D-Bus may be slow or absent: never on the UI
/// thread); where there are none, the window's attention request is all
/// there is.
#[derive(Debug)]
pub struct DesktopNotifier {
    queue: std::sync::mpsc::SyncSender<(String, String)>,
}

impl Default for DesktopNotifier {
    fn default() -> Self {
        let (queue, waiting) =
            std::sync::mpsc::sync_channel::<(String, String)>(MAX_WAITING_NOTIFICATIONS);
        let _ = std::thread::Builder::new()
            .name("sotto-notify".into())
            .spawn(move || {
                for (title, body) in waiting {
                    show(&title, &body);
                }
            });
        Self { queue }
    }
}

impl Notifier for DesktopNotifier {
    fn notify(&mut self, title: &str, body: &str) {
        // Full: dropped (the window's badge and title still say it).
        let _ = self.queue.try_send((markup_free(title), markup_free(body)));
    }
}

/// Notification servers read a little HTML in bodies: a peer's text
/// must show as text, not as links or images.
fn markup_free(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn show(title: &str, body: &str) {
    #[cfg(all(unix, not(target_os = "macos")))]
    if let Err(e) = notify_rust::Notification::new()
        .appname("Sotto")
        .summary(title)
        .body(body)
        .show()
    {
        tracing::info!("no desktop notification: {e}");
    }
    #[cfg(not(all(unix, not(target_os = "macos"))))]
    let _ = (title, body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peers_text_is_not_markup_in_a_notification() {
        assert_eq!(
            markup_free("<a href=\"x\">click</a> & <img src=y>"),
            "&lt;a href=\"x\"&gt;click&lt;/a&gt; &amp; &lt;img src=y&gt;"
        );
    }
}
