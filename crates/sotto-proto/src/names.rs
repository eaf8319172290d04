//! Validated identifiers: usernames, group names, device ids and passwords.
//!
//! Parse, don't validate: a [`Username`] or [`GroupName`] can only exist if its
//! text passed the rules below, and deserializing one from the wire runs the
//! same check, so code holding one never re-validates it.
//!
//! Rules for both kinds of name: 1 to 32 characters from `a-z`, `0-9`, `_`,
//! `-` and `.`, starting with a letter or digit. Input is case-insensitive: it
//! is normalized to lower case, so `Alice` and `alice` are the same account.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::limits::{MAX_NAME_LEN, MAX_PASSWORD_LEN, MIN_NAME_LEN};

/// Why a name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must be {MIN_NAME_LEN} to {MAX_NAME_LEN} characters long")]
    Length,
    #[error("may only contain letters a-z, digits, '_', '-' and '.'")]
    Charset,
    #[error("must start with a letter or a digit")]
    Start,
    #[error("'{0}' is reserved")]
    Reserved(String),
}

/// Words that cannot be usernames because `@word` is a client command.
pub const RESERVED_USERNAMES: &[&str] = &[
    "all", "devices", "file", "group", "help", "history", "names", "open", "quit", "secret",
    "server", "status", "verify", "me", "sotto", "admin", "system", "password", "auto", "accept",
    "reject", "files",
];

/// Whether `name` is already valid and normalized: the common case when
/// decoding, where no copy is needed. All allowed bytes are ASCII, so the
/// byte length is the character count.
fn is_normalized(name: &str) -> bool {
    (MIN_NAME_LEN..=MAX_NAME_LEN).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        })
}

fn normalize(input: &str) -> Result<String, NameError> {
    let name = input.trim().to_ascii_lowercase();
    let len = name.chars().count();
    if !(MIN_NAME_LEN..=MAX_NAME_LEN).contains(&len) {
        return Err(NameError::Length);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(NameError::Charset);
    }
    if !name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
    {
        return Err(NameError::Start);
    }
    Ok(name)
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $reserved:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            /// Validates and normalizes `input`.
            pub fn parse(input: &str) -> Result<Self, NameError> {
                let name = normalize(input)?;
                if $reserved.contains(&name.as_str()) {
                    return Err(NameError::Reserved(name));
                }
                Ok(Self(name))
            }

            /// The normalized name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                if !is_normalized(&value) {
                    return Self::parse(&value);
                }
                if $reserved.contains(&value.as_str()) {
                    return Err(NameError::Reserved(value));
                }
                Ok(Self(value))
            }
        }

        impl From<$ty> for String {
            fn from(value: $ty) -> Self {
                value.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

name_type!(
    /// A valid, normalized account name.
    Username,
    RESERVED_USERNAMES
);

name_type!(
    /// A valid, normalized group name.
    GroupName,
    &[] as &[&str]
);

/// A device identifier: chosen randomly by the client on first use and kept
/// in its data dir, 8 to 64 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

impl DeviceId {
    /// Validates a device id.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        Self::check(input)?;
        Ok(Self(input.to_owned()))
    }

    fn check(input: &str) -> Result<(), NameError> {
        if !(8..=64).contains(&input.len()) {
            return Err(NameError::Length);
        }
        if !input
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        {
            return Err(NameError::Charset);
        }
        Ok(())
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DeviceId {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::check(&value)?;
        Ok(Self(value))
    }
}

impl From<DeviceId> for String {
    fn from(value: DeviceId) -> Self {
        value.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password in transit. Its `Debug` never prints it and its memory is
/// zeroed when dropped. At most [`MAX_PASSWORD_LEN`] bytes.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Password(String);

impl Password {
    /// Wraps a password, rejecting empty and oversize ones.
    pub fn new(value: String) -> Result<Self, PasswordError> {
        if value.is_empty() {
            return Err(PasswordError::Empty);
        }
        if value.len() > MAX_PASSWORD_LEN {
            return Err(PasswordError::TooLong);
        }
        Ok(Self(value))
    }

    /// The secret text. Keep the borrow short.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Why a password was rejected before being checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password must not be empty")]
    Empty,
    #[error("password is longer than {MAX_PASSWORD_LEN} bytes")]
    TooLong,
}

impl TryFrom<String> for Password {
    type Error = PasswordError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Password> for String {
    fn from(value: Password) -> Self {
        value.0.clone()
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_normalized_and_checked() {
        assert_eq!(Username::parse("Alice").unwrap().as_str(), "alice");
        assert_eq!(Username::parse(" bob_2 ").unwrap().as_str(), "bob_2");
        assert_eq!(Username::parse(""), Err(NameError::Length));
        assert_eq!(Username::parse(&"a".repeat(33)), Err(NameError::Length));
        assert_eq!(Username::parse("a b"), Err(NameError::Charset));
        assert_eq!(Username::parse("émile"), Err(NameError::Charset));
        assert_eq!(Username::parse("-x"), Err(NameError::Start));
        assert!(matches!(
            Username::parse("Group"),
            Err(NameError::Reserved(_))
        ));
        assert!(GroupName::parse("group").is_ok());
    }

    proptest::proptest! {
        /// Decoding (`TryFrom<String>`, with its no-copy fast path) accepts
        /// and rejects exactly what `parse` does.
        #[test]
        fn decoding_a_name_agrees_with_parse(input in "[ A-Za-z0-9_.\\-é]{0,40}") {
            proptest::prop_assert_eq!(Username::try_from(input.clone()), Username::parse(&input));
            proptest::prop_assert_eq!(GroupName::try_from(input.clone()), GroupName::parse(&input));
            proptest::prop_assert_eq!(DeviceId::try_from(input.clone()), DeviceId::parse(&input));
        }
    }

    #[test]
    fn reserved_names_are_refused_when_decoding_too() {
        assert!(matches!(
            Username::try_from("server".to_owned()),
            Err(NameError::Reserved(_))
        ));
    }

    #[test]
    fn password_debug_is_redacted() {
        let p = Password::new("hunter2".into()).unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
        assert!(matches!(
            Password::new(String::new()),
            Err(PasswordError::Empty)
        ));
    }

    #[test]
    fn device_ids_are_checked() {
        assert!(DeviceId::parse("abcdEFGH1234").is_ok());
        assert!(DeviceId::parse("short").is_err());
        assert!(DeviceId::parse("has space in it").is_err());
    }
}
