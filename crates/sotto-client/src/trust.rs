//! Which device keys this client trusts, and which devices get room keys.
//!
//! Every device of every contact is pinned the first time the key
//! directory lists it, or (for a device that writes first) from the
//! directory's keys the server delivers with its to-device message: never
//! from what a message says about itself. A device whose identity keys
//! changed is refused (its old keys stay pinned) until the user resets the
//! pins after checking out of band (`@verify USER reset`). A device the
//! directory no longer lists was removed, and is not encrypted to (if it
//! comes back, it is a new device again).
//!
//! Who gets room keys:
//! - A contact the user never verified: every pinned device (trust on first
//!   use), and a new device is announced.
//! - A contact the user verified (compared the safety number and confirmed
//!   it): the devices they had then, and later ones only once the user
//!   accepts them (`@devices USER trust ID`, or verifying again).
//! - The user's own account: only the devices the user accepted, so a
//!   device the server adds to the account gets nothing.
//!
//! Sans-IO: the caller feeds it directory listings and stores it (inside
//! the encrypted local store).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sotto_crypto::e2e::{safety_number, verify_device_keys};
use sotto_proto::e2e::{DeviceKeys, PublicKey};
use sotto_proto::{DeviceId, Username};

/// Pinned devices, per user.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Trust {
    users: BTreeMap<Username, UserTrust>,
    /// This account, whose devices get keys only once accepted.
    #[serde(default)]
    me: Option<Username>,
    /// This device (never counted as removed).
    #[serde(default)]
    this_device: Option<DeviceId>,
    /// What may be accepted from verified contacts without asking.
    #[serde(default)]
    auto_accept: AutoAccept,
    /// Something was pinned or verified since [`Trust::take_changed`].
    #[serde(skip)]
    changed: bool,
}

/// What the user lets verified contacts do without asking (`@auto`): both
/// off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoAccept {
    /// Join the groups they invite this user to.
    #[serde(default)]
    pub groups: bool,
    /// Save the files they send.
    #[serde(default)]
    pub files: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct UserTrust {
    devices: BTreeMap<DeviceId, DeviceKeys>,
    /// The Ed25519 keys of the devices the user accepted (all the pinned
    /// ones when verifying, or one by one). `Some` once the user verified
    /// this contact (always, for this account): from then on a device gets
    /// room keys only if its key is in here.
    verified: Option<BTreeSet<PublicKey>>,
    /// Devices that were pinned and then removed from the account.
    #[serde(default)]
    removed: BTreeMap<DeviceId, DeviceKeys>,
}

impl UserTrust {
    fn accepts(&self, keys: &DeviceKeys) -> bool {
        self.verified
            .as_ref()
            .is_none_or(|accepted| accepted.contains(&keys.ed25519))
    }

    /// Verified while every current device was accepted (a removed device
    /// does not undo it; a new one does until it is accepted).
    fn is_verified(&self) -> bool {
        self.verified.as_ref().is_some_and(|accepted| {
            !self.devices.is_empty() && self.devices.values().all(|d| accepted.contains(&d.ed25519))
        })
    }
}

/// Something the user should be told about a contact's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustWarning {
    /// A user has a device this client had not seen. `waits` says that it
    /// gets no room keys until accepted (a verified contact's or this
    /// account's); `mine` that it is this account's.
    NewDevice {
        user: Username,
        device: DeviceId,
        fingerprint: String,
        waits: bool,
        mine: bool,
    },
    /// A device's identity keys are not the ones pinned for it: the new keys
    /// are not used.
    ChangedKeys { user: Username, device: DeviceId },
    /// The directory returned keys whose signature does not check.
    BadSignature { user: Username, device: DeviceId },
    /// A contact's device is no longer listed: it was removed from their
    /// account, and gets no keys for what is sent from now on.
    DeviceRemoved { user: Username, device: DeviceId },
}

impl std::fmt::Display for TrustWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrustWarning::NewDevice {
                device,
                fingerprint,
                mine: true,
                ..
            } => write!(
                f,
                "your account has a new device {device} (fingerprint {fingerprint}). It gets \
                 no keys from this device until you accept it: if @devices on that device shows \
                 the same fingerprint, type @devices trust {device}; if it is not yours, \
                 @devices remove {device}"
            ),
            TrustWarning::NewDevice {
                user,
                device,
                fingerprint,
                waits: true,
                ..
            } => write!(
                f,
                "{user} has a new device {device} (fingerprint {fingerprint}). You verified \
                 {user}, so it gets no keys until you accept it: check the fingerprint with \
                 {user}, then @devices {user} trust {device} (or @verify {user} again)"
            ),
            TrustWarning::NewDevice {
                user,
                device,
                fingerprint,
                ..
            } => write!(
                f,
                "{user} has a new device {device} (fingerprint {fingerprint}); \
                 if you did not expect it, check with {user}"
            ),
            TrustWarning::ChangedKeys { user, device } => write!(
                f,
                "the keys of {user}'s device {device} CHANGED; messages are not encrypted \
                 to the new keys. Check with {user} (@verify {user}); if they really \
                 changed, @verify {user} reset"
            ),
            TrustWarning::BadSignature { user, device } => write!(
                f,
                "the server listed keys for {user}'s device {device} with an invalid \
                 signature; that device is ignored"
            ),
            TrustWarning::DeviceRemoved { user, device } => write!(
                f,
                "{user} removed device {device}; it cannot read what is sent from now on"
            ),
        }
    }
}

/// What a directory listing of one user means for sending to them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Pinned, listed and accepted: these get room keys.
    pub usable: Vec<DeviceKeys>,
    /// Pinned and listed, but not accepted yet: these get no room keys.
    pub waiting: Vec<DeviceKeys>,
    pub warnings: Vec<TrustWarning>,
}

/// Why a trust change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("{user} has no device {device} (see @devices {user})")]
    NoSuchDevice { user: Username, device: DeviceId },
    #[error("{0} has no device with published keys yet: nothing to verify")]
    NothingToVerify(Username),
    #[error(
        "that is not the safety number this device computes for you and {user} now; \
         their devices or yours may have changed: run @verify {user} again and compare anew"
    )]
    NumberMismatch { user: Username },
    #[error(
        "{user} is not verified, so all of {user}'s devices already get keys; \
         @verify {user} to compare safety numbers"
    )]
    NotVerified { user: Username },
    #[error("your own devices are listed by @devices; remove one with @devices remove ID")]
    OwnAccount,
}

/// A pinned device as `@devices` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub user: Username,
    pub device: DeviceId,
    pub fingerprint: String,
    /// The user was verified, and this device is one of those compared
    /// then or accepted since.
    pub verified: bool,
    /// It gets room keys from this device (accepted, or the user was never
    /// verified).
    pub gets_keys: bool,
    /// The device this client runs as.
    pub this_device: bool,
}

/// A device's fingerprint: its Ed25519 key in hex, in groups of four.
pub fn fingerprint(keys: &DeviceKeys) -> String {
    let hex = hex::encode(keys.ed25519);
    hex.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

impl Trust {
    /// What verified contacts may do without asking.
    pub fn auto_accept(&self) -> AutoAccept {
        self.auto_accept
    }

    /// Changes what verified contacts may do without asking.
    pub fn set_auto_accept(&mut self, auto: AutoAccept) {
        if self.auto_accept != auto {
            self.auto_accept = auto;
            self.changed = true;
        }
    }

    /// Pins this device (`own`) as this account's first accepted one: the
    /// account's other devices get keys only once accepted.
    pub fn set_me(&mut self, own: &DeviceKeys) {
        if self.me.as_ref() != Some(&own.user) || self.this_device.as_ref() != Some(&own.device) {
            self.me = Some(own.user.clone());
            self.this_device = Some(own.device.clone());
            self.changed = true;
        }
        let entry = self.users.entry(own.user.clone()).or_default();
        if !entry.devices.contains_key(&own.device) {
            entry.devices.insert(own.device.clone(), own.clone());
            self.changed = true;
        }
        let accepted = entry.verified.get_or_insert_with(BTreeSet::new);
        if accepted.insert(own.ed25519) {
            self.changed = true;
        }
    }

    fn is_me(&self, user: &Username) -> bool {
        self.me.as_ref() == Some(user)
    }

    /// Takes in the directory's listing of all of `user`'s devices: pins
    /// new ones, and counts a pinned device missing from the listing as
    /// removed.
    pub fn observe(&mut self, user: &Username, listed: &[DeviceKeys]) -> Observed {
        let mut observed = self.observe_devices(user, listed);
        let this = self
            .this_device
            .as_ref()
            .filter(|_| self.me.as_ref() == Some(user))
            .cloned();
        let entry = self.users.entry(user.clone()).or_default();
        let gone: Vec<DeviceId> = entry
            .devices
            .keys()
            .filter(|id| !listed.iter().any(|k| k.user == *user && k.device == **id))
            .filter(|id| this.as_ref() != Some(*id))
            .cloned()
            .collect();
        for device in gone {
            if let Some(keys) = entry.devices.remove(&device) {
                // Back later, it is a new device to accept again.
                if let Some(accepted) = entry.verified.as_mut() {
                    accepted.remove(&keys.ed25519);
                }
                entry.removed.insert(device.clone(), keys);
                self.changed = true;
                observed.warnings.push(TrustWarning::DeviceRemoved {
                    user: user.clone(),
                    device,
                });
            }
        }
        observed
    }

    /// Takes in one device's keys as the directory publishes them (sent
    /// with a message from that device): pins it on first sight, as
    /// [`Trust::observe`] does, but says nothing about the user's other
    /// devices. `Err` when other keys are pinned for it.
    pub fn observe_device(&mut self, keys: &DeviceKeys) -> Result<Vec<TrustWarning>, TrustWarning> {
        let observed = self.observe_devices(&keys.user, std::slice::from_ref(keys));
        if observed.usable.contains(keys) || observed.waiting.contains(keys) {
            Ok(observed.warnings)
        } else {
            Err(observed
                .warnings
                .into_iter()
                .next()
                .unwrap_or(TrustWarning::ChangedKeys {
                    user: keys.user.clone(),
                    device: keys.device.clone(),
                }))
        }
    }

    fn observe_devices(&mut self, user: &Username, listed: &[DeviceKeys]) -> Observed {
        let mine = self.is_me(user);
        let entry = self.users.entry(user.clone()).or_default();
        let first_sight = entry.devices.is_empty();
        let mut observed = Observed::default();
        for keys in listed {
            if keys.user != *user {
                continue;
            }
            // Keys identical to the pinned ones were verified when pinned
            // (the local store they are kept in is authenticated): checking
            // the signature again on every message cost two Ed25519
            // verifications per private message (perf: half of a client's
            // CPU when sending).
            let as_pinned = entry.devices.get(&keys.device) == Some(keys);
            if !as_pinned && verify_device_keys(keys).is_err() {
                observed.warnings.push(TrustWarning::BadSignature {
                    user: user.clone(),
                    device: keys.device.clone(),
                });
                continue;
            }
            match entry.devices.get(&keys.device) {
                Some(pinned) if pinned != keys => {
                    observed.warnings.push(TrustWarning::ChangedKeys {
                        user: user.clone(),
                        device: keys.device.clone(),
                    });
                    continue;
                }
                Some(_) => {}
                None => {
                    entry.devices.insert(keys.device.clone(), keys.clone());
                    // A removed device that is listed again is a new one.
                    let returned = entry.removed.remove(&keys.device).is_some();
                    self.changed = true;
                    if !first_sight || returned || entry.verified.is_some() {
                        observed.warnings.push(TrustWarning::NewDevice {
                            user: user.clone(),
                            device: keys.device.clone(),
                            fingerprint: fingerprint(keys),
                            waits: !entry.accepts(keys),
                            mine,
                        });
                    }
                }
            }
            if entry.accepts(keys) {
                observed.usable.push(keys.clone());
            } else {
                observed.waiting.push(keys.clone());
            }
        }
        observed
    }

    /// The pinned keys of a device, if any.
    pub fn pinned(&self, user: &Username, device: &DeviceId) -> Option<&DeviceKeys> {
        self.users.get(user)?.devices.get(device)
    }

    /// Whether `user`'s device `device` is pinned but waits for the user's
    /// acceptance (a verified contact's, or this account's).
    pub fn waits(&self, user: &Username, device: &DeviceId) -> bool {
        self.users.get(user).is_some_and(|entry| {
            entry
                .devices
                .get(device)
                .is_some_and(|keys| !entry.accepts(keys))
        })
    }

    /// Whether this pinned device gets room keys.
    pub fn gets_keys(&self, keys: &DeviceKeys) -> bool {
        self.users.get(&keys.user).is_some_and(|entry| {
            entry.devices.get(&keys.device) == Some(keys) && entry.accepts(keys)
        })
    }

    /// Whether `keys` is one of this account's own devices that the user
    /// accepted (it may ask for the keys of this account's past messages).
    pub fn is_own_accepted(&self, keys: &DeviceKeys) -> bool {
        self.is_me(&keys.user) && self.gets_keys(keys)
    }

    /// The Ed25519 keys of the devices of this account that the user
    /// accepted (this one included): this account's half of a safety
    /// number.
    fn own_accepted(&self) -> Vec<PublicKey> {
        let Some(me) = &self.me else {
            return Vec::new();
        };
        self.users.get(me).map_or_else(Vec::new, |entry| {
            entry
                .devices
                .values()
                .filter(|d| entry.accepts(d))
                .map(|d| d.ed25519)
                .collect()
        })
    }

    /// The safety number between this account (its accepted devices) and
    /// all of `user`'s pinned devices.
    pub fn safety_number(&self, user: &Username) -> Result<String, TrustError> {
        let me = self.me.as_ref().ok_or(TrustError::OwnAccount)?;
        if me == user {
            return Err(TrustError::OwnAccount);
        }
        let theirs: Vec<PublicKey> = self
            .users
            .get(user)
            .map(|entry| entry.devices.values().map(|d| d.ed25519).collect())
            .unwrap_or_default();
        if theirs.is_empty() {
            return Err(TrustError::NothingToVerify(user.clone()));
        }
        Ok(safety_number((me, &self.own_accepted()), (user, &theirs)))
    }

    /// Marks `user` verified with every device pinned for them now, if
    /// `compared` is the safety number computed from exactly those keys
    /// (spaces and dashes aside). Returns the devices that were waiting
    /// and are accepted now.
    pub fn verify(
        &mut self,
        user: &Username,
        compared: &str,
    ) -> Result<Vec<DeviceKeys>, TrustError> {
        let expected = self.safety_number(user)?;
        let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
        if digits(compared) != digits(&expected) || digits(compared).is_empty() {
            return Err(TrustError::NumberMismatch { user: user.clone() });
        }
        let entry = self.users.entry(user.clone()).or_default();
        let newly: Vec<DeviceKeys> = entry
            .devices
            .values()
            .filter(|d| {
                entry
                    .verified
                    .as_ref()
                    .is_some_and(|a| !a.contains(&d.ed25519))
            })
            .cloned()
            .collect();
        entry.verified = Some(entry.devices.values().map(|d| d.ed25519).collect());
        self.changed = true;
        Ok(newly)
    }

    /// Accepts one pinned device of `user` (a verified contact, or this
    /// account): it gets room keys from now on. Returns its keys.
    pub fn accept(&mut self, user: &Username, device: &DeviceId) -> Result<DeviceKeys, TrustError> {
        let entry = self
            .users
            .get_mut(user)
            .ok_or_else(|| TrustError::NoSuchDevice {
                user: user.clone(),
                device: device.clone(),
            })?;
        let keys = entry
            .devices
            .get(device)
            .cloned()
            .ok_or_else(|| TrustError::NoSuchDevice {
                user: user.clone(),
                device: device.clone(),
            })?;
        // (Always `Some` for this account: see `set_me`.)
        let Some(accepted) = entry.verified.as_mut() else {
            return Err(TrustError::NotVerified { user: user.clone() });
        };
        if accepted.insert(keys.ed25519) {
            self.changed = true;
        }
        Ok(keys)
    }

    /// Forgets everything pinned for `user` (after they confirmed out of
    /// band that their keys changed): the next listing pins their devices
    /// afresh, unverified. Not for this account.
    pub fn reset(&mut self, user: &Username) -> Result<(), TrustError> {
        if self.is_me(user) {
            return Err(TrustError::OwnAccount);
        }
        if self.users.remove(user).is_some() {
            self.changed = true;
        }
        Ok(())
    }

    /// Whether something was pinned or verified since the last call (to
    /// save it).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Counts everything as changed (to save it all, in a new store).
    pub fn mark_changed(&mut self) {
        self.changed = true;
    }

    pub fn is_verified(&self, user: &Username) -> bool {
        self.users.get(user).is_some_and(UserTrust::is_verified)
    }

    /// Every pinned device of `user`, for `@devices`.
    pub fn devices(&self, user: &Username) -> Vec<DeviceInfo> {
        let Some(entry) = self.users.get(user) else {
            return Vec::new();
        };
        let mine = self.is_me(user);
        entry
            .devices
            .values()
            .map(|keys| DeviceInfo {
                user: user.clone(),
                device: keys.device.clone(),
                fingerprint: fingerprint(keys),
                verified: !mine && entry.verified.is_some() && entry.accepts(keys),
                gets_keys: entry.accepts(keys),
                this_device: false,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
