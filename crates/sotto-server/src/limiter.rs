//! Login attempts: what a stranger guessing passwords gets, without being
//! able to lock the real user out.
//!
//! Each attempt is counted from the moment it begins (an [`Attempt`] is
//! taken before any work), so attempts sent at the same moment cannot
//! race past the budget: the ones in flight count as failures until they
//! end. Counting is per (account, address) and per address, where an
//! address is an IPv4 address or an IPv6 /64 (one subscriber's prefix).
//! Past a few free failures each further failure doubles the delay before
//! the next attempt is allowed (5 s, 10 s, 20 s, ... at most 15 min), and only
//! one attempt at a time is then let through. The account's real user, at
//! another address, is not slowed at all. Wrong server passwords count per
//! address only.
//!
//! In a cluster every node counts every attempt: each one's end is told to
//! the other nodes on the bus ([`LoginLimiter::join_bus`]), which count it
//! as if it had ended there ([`LoginLimiter::count_remote`]), so spreading
//! guesses over the nodes gains nothing.
//!
//! A std `Mutex` is right here: it is held for a hash-map lookup, never
//! across an `.await`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sotto_proto::cluster::{LoginOutcome, NodeNote};
use tokio::sync::mpsc;

use crate::core::Outgoing;

/// Failures of one account from one address before delays begin.
pub const FREE_ACCOUNT_FAILURES: u32 = 5;
/// Failures from one address (over every account) before delays begin.
pub const FREE_ADDRESS_FAILURES: u32 = 20;
/// Wrong server passwords from one address before delays begin.
pub const FREE_SERVER_PASSWORD_FAILURES: u32 = 5;
/// The delay after the first failure past the free ones; it doubles with
/// each further failure.
pub const FIRST_DELAY: Duration = Duration::from_secs(5);
/// The longest delay.
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// A key with no attempt for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Keys kept before quiet ones are swept.
const SWEEP_AT: usize = 50_000;

/// Where attempts come from: an IPv4 address, or the /64 of an IPv6 one
/// (IPv4-mapped IPv6 addresses count as IPv4).
pub use sotto_proto::cluster::Origin;

/// What an attempt is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String, Origin),
    Address(Origin),
    ServerPassword(Origin),
}

impl Key {
    fn free(&self) -> u32 {
        match self {
            Key::Account(..) => FREE_ACCOUNT_FAILURES,
            Key::Address(_) => FREE_ADDRESS_FAILURES,
            Key::ServerPassword(_) => FREE_SERVER_PASSWORD_FAILURES,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    in_flight: u32,
    /// No attempt past the free ones before this.
    until: Instant,
    last: Instant,
}

impl Entry {
    /// `Err(wait)` if a new attempt must wait.
    fn admits(&self, free: u32, now: Instant) -> Result<(), Duration> {
        if self.failures.saturating_add(self.in_flight) < free {
            return Ok(());
        }
        if self.in_flight > 0 {
            // Past the free ones, one at a time.
            return Err(FIRST_DELAY.max(self.until.saturating_duration_since(now)));
        }
        if now < self.until {
            return Err(self.until - now);
        }
        Ok(())
    }
}

/// Counts login attempts; cheap to clone (shared state).
#[derive(Debug, Clone, Default)]
pub struct LoginLimiter {
    entries: Arc<Mutex<HashMap<Key, Entry>>>,
    registrations: Arc<Mutex<HashMap<Origin, Window>>>,
    /// In a cluster: this node, and the bus to tell the others.
    bus: Arc<OnceLock<(u64, mpsc::Sender<Outgoing>)>>,
}

/// How long [`LoginLimiter::begin_registration`] counts registrations.
pub const REGISTRATION_WINDOW: Duration = Duration::from_secs(60 * 60);

/// Registrations from one origin in the current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    done: u32,
    in_flight: u32,
}

/// A registration in flight; it counts once [`Registration::succeeded`].
#[derive(Debug)]
pub struct Registration {
    limiter: LoginLimiter,
    origin: Origin,
    succeeded: bool,
}

impl Registration {
    pub fn succeeded(mut self) {
        self.succeeded = true;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut windows) = self.limiter.registrations.lock()
            && let Some(window) = windows.get_mut(&self.origin)
        {
            window.in_flight = window.in_flight.saturating_sub(1);
            if self.succeeded {
                window.done = window.done.saturating_add(1);
            }
        }
        if self.succeeded {
            self.limiter
                .tell_bus(self.origin, None, LoginOutcome::Registered);
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Failed,
    Succeeded,
    /// Nothing was tried (a name taken, registration closed, an upgrade
    /// asked for): not a failure.
    Neutral,
}

/// An attempt in flight. Dropping it counts a failure, unless it was
/// marked [`Attempt::succeeded`] or [`Attempt::neutral`] first: a
/// connection that goes away mid-login has failed.
#[derive(Debug)]
pub struct Attempt {
    limiter: LoginLimiter,
    keys: Vec<Key>,
    outcome: Outcome,
}

impl Attempt {
    /// The login succeeded: the account's failures from this address are
    /// forgotten.
    pub fn succeeded(mut self) {
        self.outcome = Outcome::Succeeded;
    }

    /// Nothing was tried: the attempt does not count.
    pub fn neutral(mut self) {
        self.outcome = Outcome::Neutral;
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.limiter.end(&self.keys, self.outcome);
    }
}

/// The wait after the `failures`-th failure, `free` being free.
fn delay_after(failures: u32, free: u32) -> Option<Duration> {
    let past = failures.checked_sub(free)?;
    Some(FIRST_DELAY.saturating_mul(1 << past.min(20)).min(MAX_DELAY))
}

/// Seconds to tell a refused client to wait (at least 1).
pub fn seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

impl LoginLimiter {
    /// Begins a login attempt for `account` from `ip`; `Err(wait)` if it
    /// must wait.
    pub fn begin_login(&self, account: &str, ip: IpAddr) -> Result<Attempt, Duration> {
        let origin = Origin::from(ip);
        self.begin(vec![
            Key::Account(account.to_owned(), origin),
            Key::Address(origin),
        ])
    }

    /// Begins registering an account from `ip`, at most `per_hour` an hour
    /// (those in flight count); `Err(wait)` if the address has used them.
    pub fn begin_registration(&self, ip: IpAddr, per_hour: u32) -> Result<Registration, Duration> {
        let origin = Origin::from(ip);
        let now = Instant::now();
        if let Ok(mut windows) = self.registrations.lock() {
            if windows.len() > SWEEP_AT {
                windows.retain(|_, w| {
                    w.in_flight > 0 || now.duration_since(w.started) < REGISTRATION_WINDOW
                });
            }
            let window = windows.entry(origin).or_insert(Window {
                started: now,
                done: 0,
                in_flight: 0,
            });
            if now.duration_since(window.started) >= REGISTRATION_WINDOW {
                window.started = now;
                window.done = 0;
            }
            if window.done.saturating_add(window.in_flight) >= per_hour {
                return Err((window.started + REGISTRATION_WINDOW).saturating_duration_since(now));
            }
            window.in_flight += 1;
        }
        Ok(Registration {
            limiter: self.clone(),
            origin,
            succeeded: false,
        })
    }

    /// Begins a server password check from `ip`.
    pub fn begin_server_password(&self, ip: IpAddr) -> Result<Attempt, Duration> {
        self.begin(vec![Key::ServerPassword(Origin::from(ip))])
    }

    fn begin(&self, keys: Vec<Key>) -> Result<Attempt, Duration> {
        let now = Instant::now();
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() > SWEEP_AT {
                entries.retain(|_, e| e.in_flight > 0 || now.duration_since(e.last) < FORGET_AFTER);
            }
            let mut wait = Duration::ZERO;
            for key in &keys {
                if let Some(entry) = entries.get(key)
                    && now.duration_since(entry.last) < FORGET_AFTER
                    && let Err(w) = entry.admits(key.free(), now)
                {
                    wait = wait.max(w);
                }
            }
            if !wait.is_zero() {
                return Err(wait);
            }
            for key in &keys {
                let entry = entries.entry(key.clone()).or_insert(Entry {
                    failures: 0,
                    in_flight: 0,
                    until: now,
                    last: now,
                });
                if now.duration_since(entry.last) >= FORGET_AFTER && entry.in_flight == 0 {
                    entry.failures = 0;
                }
                entry.in_flight += 1;
                entry.last = now;
            }
        }
        Ok(Attempt {
            limiter: self.clone(),
            keys,
            outcome: Outcome::Failed,
        })
    }

    fn end(&self, keys: &[Key], outcome: Outcome) {
        let now = Instant::now();
        if let Ok(mut entries) = self.entries.lock() {
            for key in keys {
                if let Some(entry) = entries.get_mut(key) {
                    entry.in_flight = entry.in_flight.saturating_sub(1);
                }
                count(&mut entries, key, outcome, now);
            }
        }
        // Told to the other nodes of a cluster.
        let (account, origin, server_password) = match keys.first() {
            Some(Key::Account(account, origin)) => (Some(account.clone()), *origin, false),
            Some(Key::ServerPassword(origin)) => (None, *origin, true),
            Some(Key::Address(origin)) => (None, *origin, false),
            None => return,
        };
        let told = match (outcome, server_password) {
            (Outcome::Neutral, _) => return,
            (Outcome::Failed, true) => LoginOutcome::ServerPasswordFailed,
            (Outcome::Failed, false) => LoginOutcome::Failed,
            (Outcome::Succeeded, _) => LoginOutcome::Succeeded,
        };
        self.tell_bus(origin, account, told);
    }

    /// Joins a cluster's bus: attempts ending here are told to the other
    /// nodes as `node`.
    pub(crate) fn join_bus(&self, node: u64, bus: mpsc::Sender<Outgoing>) {
        let _ = self.bus.set((node, bus));
    }

    fn tell_bus(&self, origin: Origin, account: Option<String>, outcome: LoginOutcome) {
        let Some((node, bus)) = self.bus.get() else {
            return;
        };
        let note = NodeNote::Login {
            node: *node,
            origin,
            account,
            outcome,
        };
        if let Ok(bytes) = note.encode()
            && bus.try_send(Outgoing::Presence(bytes)).is_err()
        {
            tracing::debug!("bus queue full: a login attempt is counted here only");
        }
    }

    /// Counts an attempt that ended on another node of the cluster.
    pub(crate) fn count_remote(
        &self,
        origin: Origin,
        account: Option<&str>,
        outcome: LoginOutcome,
    ) {
        let now = Instant::now();
        if outcome == LoginOutcome::Registered {
            if let Ok(mut windows) = self.registrations.lock() {
                let window = windows.entry(origin).or_insert(Window {
                    started: now,
                    done: 0,
                    in_flight: 0,
                });
                if now.duration_since(window.started) >= REGISTRATION_WINDOW {
                    window.started = now;
                    window.done = 0;
                }
                window.done = window.done.saturating_add(1);
            }
            return;
        }
        let (keys, counted) = match (outcome, account) {
            (LoginOutcome::ServerPasswordFailed, _) => {
                (vec![Key::ServerPassword(origin)], Outcome::Failed)
            }
            (LoginOutcome::Succeeded, None) => {
                (vec![Key::ServerPassword(origin)], Outcome::Succeeded)
            }
            (outcome, Some(account)) => (
                vec![
                    Key::Account(account.to_owned(), origin),
                    Key::Address(origin),
                ],
                if outcome == LoginOutcome::Succeeded {
                    Outcome::Succeeded
                } else {
                    Outcome::Failed
                },
            ),
            (_, None) => (vec![Key::Address(origin)], Outcome::Failed),
        };
        if let Ok(mut entries) = self.entries.lock() {
            for key in &keys {
                count(&mut entries, key, counted, now);
            }
        }
    }
}

/// Counts how an attempt on `key` ended (the attempt no longer in flight).
fn count(entries: &mut HashMap<Key, Entry>, key: &Key, outcome: Outcome, now: Instant) {
    let entry = entries.entry(key.clone()).or_insert(Entry {
        failures: 0,
        in_flight: 0,
        until: now,
        last: now,
    });
    entry.last = now;
    match outcome {
        Outcome::Neutral => {}
        Outcome::Succeeded => {
            if matches!(key, Key::Account(..) | Key::ServerPassword(_)) {
                entry.failures = 0;
                entry.until = now;
            }
        }
        Outcome::Failed => {
            entry.failures = entry.failures.saturating_add(1);
            if let Some(delay) = delay_after(entry.failures, key.free()) {
                entry.until = now + delay;
            }
        }
    }
    if entry.in_flight == 0 && entry.failures == 0 {
        entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn attempts_in_flight_count_against_the_budget() {
        let limiter = LoginLimiter::default();
        let held: Vec<Attempt> = (0..FREE_ACCOUNT_FAILURES)
            .map(|_| limiter.begin_login("bob", ip("192.0.2.1")).unwrap())
            .collect();
        assert!(limiter.begin_login("bob", ip("192.0.2.1")).is_err());
        drop(held);
        // All five failed: now one at a time, after a delay.
        let wait = limiter.begin_login("bob", ip("192.0.2.1")).unwrap_err();
        assert!(wait >= Duration::from_millis(900), "{wait:?}");
    }

    #[test]
    fn the_real_user_at_another_address_is_not_slowed() {
        let limiter = LoginLimiter::default();
        for _ in 0..FREE_ACCOUNT_FAILURES + 3 {
            if let Ok(attempt) = limiter.begin_login("bob", ip("192.0.2.1")) {
                drop(attempt);
            }
        }
        assert!(limiter.begin_login("bob", ip("192.0.2.1")).is_err());
        limiter
            .begin_login("bob", ip("198.51.100.7"))
            .unwrap()
            .succeeded();
        // And the attacker's other targets are limited by address.
        assert!(limiter.begin_login("carol", ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn delays_double_and_are_capped() {
        assert_eq!(delay_after(4, 5), None);
        assert_eq!(delay_after(5, 5), Some(FIRST_DELAY));
        assert_eq!(delay_after(6, 5), Some(FIRST_DELAY * 2));
        assert_eq!(delay_after(7, 5), Some(FIRST_DELAY * 4));
        assert_eq!(delay_after(40, 5), Some(MAX_DELAY));
        assert_eq!(delay_after(u32::MAX, 5), Some(MAX_DELAY));
    }

    #[test]
    fn success_and_neutral_outcomes_do_not_count() {
        let limiter = LoginLimiter::default();
        for _ in 0..FREE_ACCOUNT_FAILURES * 3 {
            limiter
                .begin_login("bob", ip("192.0.2.1"))
                .unwrap()
                .neutral();
        }
        for _ in 0..FREE_ACCOUNT_FAILURES - 1 {
            drop(limiter.begin_login("bob", ip("192.0.2.1")).unwrap());
        }
        limiter
            .begin_login("bob", ip("192.0.2.1"))
            .unwrap()
            .succeeded();
        for _ in 0..FREE_ACCOUNT_FAILURES - 1 {
            drop(limiter.begin_login("bob", ip("192.0.2.1")).unwrap());
        }
        assert!(limiter.begin_login("bob", ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn registrations_per_address_count_those_in_flight() {
        let limiter = LoginLimiter::default();
        let first = limiter.begin_registration(ip("192.0.2.1"), 2).unwrap();
        let second = limiter.begin_registration(ip("192.0.2.1"), 2).unwrap();
        assert!(limiter.begin_registration(ip("192.0.2.1"), 2).is_err());
        drop(second);
        first.succeeded();
        limiter
            .begin_registration(ip("192.0.2.1"), 2)
            .unwrap()
            .succeeded();
        let wait = limiter.begin_registration(ip("192.0.2.1"), 2).unwrap_err();
        assert!(wait > Duration::from_secs(59 * 60), "{wait:?}");
        assert!(limiter.begin_registration(ip("192.0.2.2"), 2).is_ok());
    }

    #[test]
    fn server_passwords_count_per_address() {
        let limiter = LoginLimiter::default();
        for _ in 0..FREE_SERVER_PASSWORD_FAILURES {
            drop(limiter.begin_server_password(ip("192.0.2.1")).unwrap());
        }
        assert!(limiter.begin_server_password(ip("192.0.2.1")).is_err());
        assert!(limiter.begin_server_password(ip("192.0.2.2")).is_ok());
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            Origin::from(ip("2001:db8:1:2:aaaa::1")),
            Origin::from(ip("2001:db8:1:2:ffff:1:2:3"))
        );
        assert_ne!(
            Origin::from(ip("2001:db8:1:2::1")),
            Origin::from(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Origin::from(ip("::ffff:192.0.2.1")),
            Origin::from(ip("192.0.2.1"))
        );
        let limiter = LoginLimiter::default();
        for n in 0..FREE_SERVER_PASSWORD_FAILURES {
            let from = ip(&format!("2001:db8:1:2::{}", n + 1));
            drop(limiter.begin_server_password(from).unwrap());
        }
        assert!(
            limiter
                .begin_server_password(ip("2001:db8:1:2:dead::beef"))
                .is_err()
        );
    }
}
