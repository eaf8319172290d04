//! Password hashing and login rate limiting.
//!
//! Passwords are hashed with Argon2id at OWASP's recommended cost (19 MiB,
//! 2 iterations, 1 lane) on tokio's blocking pool, at most
//! [`MAX_CONCURRENT_HASHES`] at a time, so a login storm neither stalls the
//! async runtime nor exhausts memory. Failed logins are counted per account
//! and per address in a sliding window.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// Most password hashes computed at once (each takes 19 MiB).
pub const MAX_CONCURRENT_HASHES: usize = 4;

/// Failed logins allowed per account within [`FAILURE_WINDOW`].
pub const MAX_ACCOUNT_FAILURES: u32 = 5;
/// Failed logins allowed per address within [`FAILURE_WINDOW`].
pub const MAX_ADDRESS_FAILURES: u32 = 20;
/// How long failures are remembered.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

fn argon2() -> Argon2<'static> {
    // Invariant: these are valid parameters (OWASP's); `Params::DEFAULT` is
    // the same values, used only if the constructor ever rejected them.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or(Params::DEFAULT);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes passwords off the async runtime.
#[derive(Debug, Clone)]
pub struct Hasher {
    /// Bounds concurrent hashes (memory and CPU).
    permits: Arc<Semaphore>,
}

impl Default for Hasher {
    fn default() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_HASHES)),
        }
    }
}

impl Hasher {
    /// Hashes `password` into a PHC string.
    pub async fn hash(&self, password: Zeroizing<String>) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            argon2()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
        })
        .await?
    }

    /// Checks `password` against a stored PHC string.
    pub async fn verify(&self, password: Zeroizing<String>, hash: String) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await?;
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash)
                .map_err(|e| anyhow::anyhow!("stored hash unreadable: {e}"))?;
            Ok(argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok())
        })
        .await?
    }
}

/// Failure counts in a window.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Counts failed logins per account and per address.
///
/// A std `Mutex` is right here: it is held for a hash-map lookup, never
/// across an `.await`.
#[derive(Debug, Clone, Default)]
pub struct LoginLimiter {
    /// Windows keyed by account name or address.
    windows: Arc<Mutex<HashMap<String, Window>>>,
}

/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 10_000;

impl LoginLimiter {
    /// `Err(seconds to wait)` if the account or address is locked out.
    pub fn check(&self, account: &str, addr: IpAddr) -> Result<(), u64> {
        let Ok(windows) = self.windows.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        for (key, max) in [
            (account_key(account), MAX_ACCOUNT_FAILURES),
            (addr_key(addr), MAX_ADDRESS_FAILURES),
        ] {
            if let Some(w) = windows.get(&key) {
                let elapsed = now.duration_since(w.started);
                if elapsed < FAILURE_WINDOW && w.failures >= max {
                    return Err((FAILURE_WINDOW - elapsed).as_secs().max(1));
                }
            }
        }
        Ok(())
    }

    /// Records a failed login.
    pub fn failed(&self, account: &str, addr: IpAddr) {
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        let now = Instant::now();
        if windows.len() > SWEEP_AT {
            windows.retain(|_, w| now.duration_since(w.started) < FAILURE_WINDOW);
        }
        for key in [account_key(account), addr_key(addr)] {
            let w = windows.entry(key).or_insert(Window {
                started: now,
                failures: 0,
            });
            if now.duration_since(w.started) >= FAILURE_WINDOW {
                *w = Window {
                    started: now,
                    failures: 0,
                };
            }
            w.failures += 1;
        }
    }

    /// Clears an account's failures after a successful login.
    pub fn succeeded(&self, account: &str) {
        if let Ok(mut windows) = self.windows.lock() {
            windows.remove(&account_key(account));
        }
    }
}

fn account_key(account: &str) -> String {
    format!("u:{account}")
}

fn addr_key(addr: IpAddr) -> String {
    format!("a:{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify() {
        let hasher = Hasher::default();
        let hash = hasher.hash(Zeroizing::new("pw".into())).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            hasher
                .verify(Zeroizing::new("pw".into()), hash.clone())
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(Zeroizing::new("px".into()), hash)
                .await
                .unwrap()
        );
    }

    #[test]
    fn limiter_locks_after_failures() {
        let limiter = LoginLimiter::default();
        let addr: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..MAX_ACCOUNT_FAILURES {
            assert!(limiter.check("bob", addr).is_ok());
            limiter.failed("bob", addr);
        }
        assert!(limiter.check("bob", addr).is_err());
        assert!(
            limiter.check("alice", addr).is_ok(),
            "other accounts are not locked"
        );
        limiter.succeeded("bob");
        assert!(limiter.check("bob", addr).is_ok());
    }
}
