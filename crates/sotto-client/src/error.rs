//! The client's error type: everything a [`crate::connect`] or a
//! [`crate::Client`] call can fail with, each with a message meant for the
//! person at the keyboard.

use std::path::PathBuf;

use sotto_crypto::Fingerprint;
use sotto_proto::limits::{MAX_FILE_LEN, MAX_TEXT_LEN};
use sotto_proto::{ErrorCode, ErrorReply};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server address is not `host:port`.
    #[error("invalid server address '{server}': {reason}")]
    InvalidAddress {
        server: String,
        reason: &'static str,
    },
    /// The TCP connection could not be made.
    #[error("cannot reach {server}: {source}")]
    Unreachable {
        server: String,
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {server} failed: {source}")]
    Tls {
        server: String,
        #[source]
        source: std::io::Error,
    },
    /// First contact with a server and the trust policy refuses unknown servers.
    #[error(
        "{server} is not a known server; its certificate fingerprint is\n    {fingerprint}\n\
         Compare it with the fingerprint the server printed when it started, then \
         connect again with --server-fingerprint {fingerprint} (or --trust-new-server)."
    )]
    UnknownServer {
        server: String,
        fingerprint: Fingerprint,
    },
    /// First contact, and the certificate is not the one the user said to expect.
    #[error(
        "{server} presented certificate {got}, but --server-fingerprint expected {expected}.\n\
         Not connecting: check the fingerprint the server printed at start, or you may be \
         talking to an impostor."
    )]
    FingerprintMismatch {
        server: String,
        expected: Fingerprint,
        got: Fingerprint,
    },
    /// The user was asked whether to trust a new server and said no.
    #[error("you did not trust {server} ({fingerprint}); not connecting")]
    NotTrusted {
        server: String,
        fingerprint: Fingerprint,
    },
    /// The server's certificate is not the one pinned in `known_servers`.
    #[error(
        "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         @    WARNING: SERVER IDENTIFICATION HAS CHANGED!           @\n\
         @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
         Someone could be intercepting your connection right now (man-in-the-middle attack).\n\
         It is also possible that the server's certificate was regenerated.\n\
         Server:           {server}\n\
         Expected (pinned): {expected}\n\
         Presented:         {got}\n\
         Nothing was sent to the server. If you are sure the server's certificate really \
         changed (ask its operator for the fingerprint it printed at start), remove the line \
         starting with '{server} ' from\n    {}\n\
         and connect again with --server-fingerprint {got}.",
        known_servers.display()
    )]
    CertificateChanged {
        server: String,
        expected: Fingerprint,
        got: Fingerprint,
        /// The file holding the pinned fingerprint, so the message can say
        /// which line to remove.
        known_servers: PathBuf,
    },
    /// This device was remembered, but cannot sign in without the password
    /// now (why is said); nothing was sent.
    #[error("enter your password: {0}")]
    PasswordNeeded(String),
    /// The server needs a server password and none was given.
    #[error(
        "this server requires a server password; ask its operator and pass it with --server-password-file"
    )]
    ServerPasswordRequired,
    /// The server refused a request.
    #[error("{0}")]
    Server(ErrorReply),
    /// The server sent something this client cannot understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server did not answer in time.
    #[error("timed out waiting for the server ({0})")]
    Timeout(&'static str),
    /// A file or directory in the data dir could not be used.
    #[error("{}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file to send could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file to send is larger than the protocol allows.
    #[error("{} is {size} bytes; files are limited to {MAX_FILE_LEN} bytes (10 MiB)", path.display())]
    FileTooLarge { path: PathBuf, size: u64 },
    /// A message with no text.
    #[error("empty message")]
    EmptyMessage,
    /// A message longer than the protocol allows.
    #[error("message is {len} bytes; messages are limited to {MAX_TEXT_LEN} bytes")]
    MessageTooLong { len: usize },
    /// The passphrase does not open the sealed message; it stays sealed.
    #[error("wrong key: the message stays sealed")]
    WrongKey,
    /// No sealed message has this local id (or it was evicted).
    #[error("there is no sealed message #{0}")]
    NoSuchSealed(u64),
    /// No received file with this id is waiting for an answer.
    #[error("no file #{0} is waiting for @accept or @reject (see @files)")]
    NoSuchFile(u64),
    /// A sealed message could not be opened for another reason.
    #[error("cannot open sealed message: {0}")]
    Sealed(String),
    /// Too many requests are waiting for replies.
    #[error("too many requests in flight; wait for some to finish")]
    Busy,
    /// The connection broke while connecting or logging in.
    #[error("connection to the server lost: {0}")]
    ConnectionLost(String),
    /// The connection is closed.
    #[error("not connected to the server")]
    Disconnected,
    /// The connection dropped and too much is already waiting for the
    /// next one.
    #[error("not connected to the server right now (reconnecting); try again in a moment")]
    Reconnecting,
    /// A bug or an environment failure inside the client (a task panicked,
    /// a value could not be encoded).
    #[error("internal error: {0}")]
    Internal(String),
    /// The local store (keys, sessions) could not be opened or written.
    #[error("{0}")]
    LocalStore(String),
    /// End-to-end encryption failed for this message; nothing was sent.
    #[error("cannot encrypt the message: {0}")]
    Encryption(String),
    /// A verification or a device's acceptance was refused (the number
    /// does not match, no such device, ...); nothing changed.
    #[error(transparent)]
    Trust(#[from] crate::trust::TrustError),
}

impl ClientError {
    /// The server's error code, when the server refused the request.
    pub fn server_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server(reply) => Some(reply.code),
            _ => None,
        }
    }

    /// A stable snake_case name for this error, for machine-readable output:
    /// the server's code for [`ClientError::Server`], a client-side name otherwise.
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::InvalidAddress { .. } => "invalid_address",
            ClientError::Unreachable { .. } => "unreachable",
            ClientError::Tls { .. } => "tls",
            ClientError::UnknownServer { .. } => "unknown_server",
            ClientError::FingerprintMismatch { .. } => "fingerprint_mismatch",
            ClientError::NotTrusted { .. } => "not_trusted",
            ClientError::CertificateChanged { .. } => "certificate_changed",
            ClientError::ServerPasswordRequired => "server_password_required",
            ClientError::PasswordNeeded(_) => "password_needed",
            ClientError::Server(reply) => reply.code.as_str(),
            ClientError::Protocol(_) => "protocol",
            ClientError::Timeout(_) => "timeout",
            ClientError::DataDir { .. } => "data_dir",
            ClientError::ReadFile { .. } => "read_file",
            ClientError::FileTooLarge { .. } => "file_too_large",
            ClientError::EmptyMessage => "empty_message",
            ClientError::MessageTooLong { .. } => "message_too_long",
            ClientError::WrongKey => "wrong_key",
            ClientError::NoSuchSealed(_) => "no_such_sealed",
            ClientError::NoSuchFile(_) => "no_such_file",
            ClientError::Sealed(_) => "sealed",
            ClientError::Busy => "busy",
            ClientError::ConnectionLost(_) => "connection_lost",
            ClientError::Disconnected => "disconnected",
            ClientError::Reconnecting => "reconnecting",
            ClientError::Internal(_) => "internal",
            ClientError::LocalStore(_) => "local_store",
            ClientError::Encryption(_) => "encryption",
            ClientError::Trust(_) => "trust",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_changed_is_loud_and_helpful() {
        let err = ClientError::CertificateChanged {
            server: "chat.example:7777".into(),
            expected: Fingerprint::of_der(b"old"),
            got: Fingerprint::of_der(b"new"),
            known_servers: PathBuf::from("/home/u/.sotto/known_servers"),
        };
        let text = err.to_string();
        assert!(text.contains("IDENTIFICATION HAS CHANGED"));
        assert!(text.contains("/home/u/.sotto/known_servers"));
        assert!(text.contains(&Fingerprint::of_der(b"old").to_string()));
        assert!(text.contains(&Fingerprint::of_der(b"new").to_string()));
        assert!(text.lines().count() > 5);
    }

    #[test]
    fn unknown_server_names_the_flags() {
        let err = ClientError::UnknownServer {
            server: "h:1".into(),
            fingerprint: Fingerprint::of_der(b"c"),
        };
        let text = err.to_string();
        assert!(text.contains("--trust-new-server"));
        assert!(text.contains("--server-fingerprint SHA256:"));
        assert_eq!(err.code(), "unknown_server");
    }

    #[test]
    fn limits_are_named() {
        assert!(
            ClientError::MessageTooLong { len: 5000 }
                .to_string()
                .contains("4096")
        );
        let big = ClientError::FileTooLarge {
            path: "x.bin".into(),
            size: 1 << 30,
        };
        assert!(big.to_string().contains(&MAX_FILE_LEN.to_string()));
    }
}
