//! Sotto's full-screen terminal UI (ratatui on crossterm).
//!
//! It draws the client library's front-end model
//! ([`sotto_client::model::Model`]) and runs what is typed through the
//! library's command dispatch ([`sotto_client::dispatch::execute`]), like
//! every other front end; it never touches a socket. Module map:
//! - [`app`]: the state (model, input, scrolling, overlays) and the keys.
//! - [`input`]: the input line's editing, history and completion.
//! - [`line`]: the same input line for line mode on a terminal.
//! - [`ui`]: drawing, from the state only.
//! - `term`: the terminal (raw mode, restored on every exit) and the loop.

pub mod app;
pub mod input;
pub mod line;
mod term;
pub mod ui;

#[cfg(test)]
mod snapshots_tests;

pub use app::{App, Session};
pub use term::{Options, run};
