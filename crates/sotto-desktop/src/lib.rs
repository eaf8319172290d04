//! Sotto's desktop app (egui on eframe), for people who never open a
//! terminal. It draws the client library's front-end state
//! ([`sotto_client::front::Front`]) and runs what the user does through
//! the library's command dispatch, like the terminal UI: the two differ
//! only in drawing. The network runs on a tokio runtime in a thread of its
//! own ([`net`]); the UI thread never waits on it.
//!
//! Module map:
//! - [`app`]: the screens, the messages from the network applied between
//!   frames, notifications, theme, window title, settings.
//! - [`connect`]: the connect screen, the trust and changed-certificate
//!   dialogs.
//! - [`chat`]: the main window; `sidebar` (conversations, people, the
//!   security banner, the status bar), [`timeline`] (drawn virtually),
//!   [`composer`], [`dialogs`] (every command as a form), [`picker`] (a
//!   file to send).
//! - [`net`]: the network thread. [`settings`]: what is kept between
//!   runs. [`os`]: opening files, notifications.

pub mod app;
pub mod chat;
pub mod composer;
pub mod connect;
pub mod dialogs;
pub mod net;
pub mod os;
pub mod picker;
pub mod settings;
mod sidebar;
pub mod timeline;

pub use app::DesktopApp;

/// Entries a conversation holds with older pages read in: the timeline
/// draws only the rows in view, so it can hold a long history.
pub const MAX_SCROLLBACK: usize = 100_000;
