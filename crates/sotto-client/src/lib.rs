//! Sotto's async client library, shared by the line-mode, TUI and GUI front
//! ends.
//!
//! [`connect`] opens a TLS 1.3 connection, pins the server's certificate on
//! first use (`known_servers`, like SSH), says hello and logs in. It returns
//! a [`Client`] handle and an [`Events`] stream. The handle is an actor
//! handle: each method sends a command with a `oneshot` for its reply over a
//! bounded channel to a background task that owns the connection, and the
//! task pushes [`ClientEvent`]s into a bounded channel.
//!
//! The event channel is bounded, so the background task waits while it is
//! full, and it reads replies from the same connection as events. A front end
//! must therefore keep draining [`Events`] while it awaits a [`Client`]
//! method (select over both, or call methods from a spawned task).
//!
//! Module map:
//! - [`command`]: the `@command` line language (pure parsing) and `@help`.
//! - [`emoji`]: `:shortcode:` expansion for outgoing text.
//! - [`known_servers`], `tls`: certificate pinning.
//! - [`device`]: the data dir and this device's id.
//! - [`files`]: saving received files under safe names.
//! - [`sanitize`]: what may be shown of a string a peer chose.
//! - [`model`], [`front`]: the state every interactive front end draws,
//!   and what they all do with typed lines, results and events.
//! - `handshake`, `actor`, `client`: connecting, the background task, the handle.

// Anything the server sends is untrusted: no panics outside tests.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod actor;
pub mod addr;
mod client;
pub mod command;
mod crypto;
pub mod device;
pub mod dispatch;
pub mod emoji;
mod error;
mod event;
pub mod files;
pub mod front;
mod handshake;
mod history;
pub mod known_servers;
pub mod local_store;
mod login;
pub mod model;
mod offers;
pub mod reconnect;
pub mod remember;
pub mod sanitize;
pub mod tls;
pub mod trust;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use addr::ServerAddr;
pub use client::{Client, Events, OpenedSecret, PendingSend, SentInfo, Target, Verification};
pub use error::ClientError;
pub use event::ClientEvent;
pub use handshake::connect;
pub use local_store::Offer;
pub use sotto_crypto::{Fingerprint, Passphrase};
pub use trust::{AutoAccept, DeviceInfo};

/// What a successful login established (returned by [`Client::session`]):
/// the user, this device's id, whether the account was just registered, who
/// was online and the user's groups at login.
pub type Session = sotto_proto::LoggedIn;

/// Commands waiting for the background task; senders wait when it is full.
pub const COMMAND_CAPACITY: usize = 64;
/// Events waiting for the front end; the background task waits when it is full.
pub const EVENT_CAPACITY: usize = 1024;
/// Requests awaiting a reply at once; more fail with [`ClientError::Busy`].
pub const MAX_PENDING_REQUESTS: usize = 256;
/// Sealed messages kept in memory for [`Client::open_sealed`]; the oldest is
/// forgotten when a new one would exceed this (each may be ~10 MiB at worst,
/// but a sealed text is a few KiB).
pub const MAX_SEALED_KEPT: usize = 1000;
/// Messages held at once from one sending device (as the server names
/// it) while they wait for their room key; more are shown as unreadable
/// and not kept.
pub const MAX_HELD_PER_DEVICE: usize = 256;
/// Bytes held at once from one sending device: one file of the largest
/// size and then some.
pub const MAX_HELD_BYTES_PER_DEVICE: usize = 12 * 1024 * 1024;
/// Bytes held at once from all devices together.
pub const MAX_HELD_BYTES: usize = 48 * 1024 * 1024;
/// A room message whose sender's clock is further than this from the
/// server's time when it stored the message is shown with a notice (not
/// refused: clocks drift, and the server's time is the one shown).
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;
/// Time allowed for the TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Time allowed for each of the TLS handshake, the hello and the login.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for the server to answer a request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// An interactive "trust this server?" prompt: gets `host:port` and the
/// certificate fingerprint, returns whether to trust it. It runs on a
/// blocking thread, so it may read the terminal.
pub type AskTrust = Box<dyn FnOnce(&str, &Fingerprint) -> bool + Send>;

/// What to do when connecting to a server that is not in `known_servers`.
pub enum TrustPolicy {
    /// Refuse: [`ClientError::UnknownServer`].
    RefuseUnknown,
    /// Trust and pin it (`--trust-new-server`).
    TrustNew,
    /// Trust and pin it only if its fingerprint is this one
    /// (`--server-fingerprint`), else [`ClientError::FingerprintMismatch`].
    Fingerprint(Fingerprint),
    /// Ask the user; a "no" is [`ClientError::NotTrusted`].
    Ask(AskTrust),
}

impl fmt::Debug for TrustPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustPolicy::RefuseUnknown => f.write_str("RefuseUnknown"),
            TrustPolicy::TrustNew => f.write_str("TrustNew"),
            TrustPolicy::Fingerprint(fp) => f.debug_tuple("Fingerprint").field(fp).finish(),
            TrustPolicy::Ask(_) => f.write_str("Ask(<prompt>)"),
        }
    }
}

/// What signs this device in.
pub enum Secret {
    /// The account password: it opens the local store and, when the
    /// device has no session the server accepts, logs in with OPAQUE (it
    /// never leaves the device).
    Password(sotto_proto::Password),
    /// The device key kept when the user asked to be remembered
    /// ([`Client::remember_device`]): it opens the local store, and the
    /// device logs in with its session token only. Anything that would
    /// need the password fails with [`ClientError::PasswordNeeded`].
    Remembered,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Password(_) => f.write_str("Password(<redacted>)"),
            Secret::Remembered => f.write_str("Remembered"),
        }
    }
}

/// Everything [`connect`] needs.
pub struct ConnectOptions {
    /// `host:port` (IPv6 as `[addr]:port`).
    pub server: String,
    pub user: sotto_proto::Username,
    pub secret: Secret,
    /// Needed when the server has a server password.
    pub server_password: Option<sotto_proto::Password>,
    /// Holds `known_servers`, `devices/` and `downloads/`; created if
    /// missing (0700 on unix).
    pub data_dir: PathBuf,
    /// What to do about a server seen for the first time.
    pub trust: TrustPolicy,
    /// Only create the account; fail if the name is taken.
    pub register_only: bool,
    /// Never create an account: a name that does not exist is refused
    /// like a wrong password (for a front end that asks whether the user
    /// means to create one, so that a typo does not).
    pub sign_in_only: bool,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("server", &self.server)
            .field("user", &self.user)
            .field("secret", &self.secret)
            .field(
                "server_password",
                &self.server_password.as_ref().map(|_| "<redacted>"),
            )
            .field("data_dir", &self.data_dir)
            .field("trust", &self.trust)
            .field("register_only", &self.register_only)
            .field("sign_in_only", &self.sign_in_only)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sotto_proto::{Password, Username};

    #[test]
    fn debug_never_prints_passwords() {
        let opts = ConnectOptions {
            server: "h:1".into(),
            user: Username::parse("alice").unwrap(),
            secret: Secret::Password(Password::new("hunter2".into()).unwrap()),
            server_password: Some(Password::new("letmein".into()).unwrap()),
            data_dir: "/tmp/x".into(),
            trust: TrustPolicy::Ask(Box::new(|_, _| true)),
            register_only: false,
            sign_in_only: false,
        };
        let text = format!("{opts:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("letmein"),
            "{text}"
        );
        assert!(text.contains("alice") && text.contains("Ask(<prompt>)"));
    }
}
