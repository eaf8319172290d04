//! Which device keys this client trusts: every device of every contact is
//! pinned the first time the key directory lists it (trust on first use,
//! like SSH's `known_hosts`). A contact's new device is accepted with a
//! warning; a device whose identity keys changed is refused (its old keys
//! stay pinned); a device the directory no longer lists was removed, and
//! is not encrypted to (if it comes back, it is a new device again).
//! Comparing safety numbers out of band and confirming marks a contact
//! verified, until a device they did not have then appears.
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
    /// Something was pinned or verified since [`Trust::take_changed`].
    #[serde(skip)]
    changed: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct UserTrust {
    devices: BTreeMap<DeviceId, DeviceKeys>,
    /// The Ed25519 keys of the user's devices when they were verified.
    verified: Option<BTreeSet<PublicKey>>,
    /// Devices that were pinned and then removed from the account.
    #[serde(default)]
    removed: BTreeMap<DeviceId, DeviceKeys>,
}

/// Something the user should be told about a contact's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustWarning {
    /// A contact has a device this client had not seen.
    NewDevice {
        user: Username,
        device: DeviceId,
        fingerprint: String,
    },
    /// A device's identity keys are not the ones pinned for it: the new keys
    /// are not used.
    ChangedKeys { user: Username, device: DeviceId },
    /// The directory returned keys whose signature does not check.
    BadSignature { user: Username, device: DeviceId },
    /// A verified contact's devices changed: verify again.
    VerificationLost { user: Username },
    /// A contact's device is no longer listed: it was removed from their
    /// account, and gets no keys for what is sent from now on.
    DeviceRemoved { user: Username, device: DeviceId },
}

impl std::fmt::Display for TrustWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrustWarning::NewDevice {
                user,
                device,
                fingerprint,
            } => write!(
                f,
                "{user} has a new device {device} (fingerprint {fingerprint}); \
                 if you did not expect it, check with {user}"
            ),
            TrustWarning::ChangedKeys { user, device } => write!(
                f,
                "the keys of {user}'s device {device} CHANGED; messages are not encrypted \
                 to the new keys. Check with {user} (@verify {user})"
            ),
            TrustWarning::BadSignature { user, device } => write!(
                f,
                "the server listed keys for {user}'s device {device} with an invalid \
                 signature; that device is ignored"
            ),
            TrustWarning::VerificationLost { user } => write!(
                f,
                "{user}'s devices changed since you verified them: @verify {user} again"
            ),
            TrustWarning::DeviceRemoved { user, device } => write!(
                f,
                "{user} removed device {device}; it cannot read what is sent from now on"
            ),
        }
    }
}

/// A pinned device as `@devices` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub user: Username,
    pub device: DeviceId,
    pub fingerprint: String,
    pub verified: bool,
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
    /// Takes in the directory's listing of all of `user`'s devices. Returns
    /// the devices to encrypt to (pinned, and still listed) and the
    /// warnings to show. A pinned device missing from the listing counts as
    /// removed.
    pub fn observe(
        &mut self,
        user: &Username,
        listed: &[DeviceKeys],
    ) -> (Vec<DeviceKeys>, Vec<TrustWarning>) {
        let (usable, mut warnings) = self.observe_devices(user, listed);
        let entry = self.users.entry(user.clone()).or_default();
        let gone: Vec<DeviceId> = entry
            .devices
            .keys()
            .filter(|id| !listed.iter().any(|k| k.user == *user && k.device == **id))
            .cloned()
            .collect();
        for device in gone {
            if let Some(keys) = entry.devices.remove(&device) {
                entry.removed.insert(device.clone(), keys);
                self.changed = true;
                warnings.push(TrustWarning::DeviceRemoved {
                    user: user.clone(),
                    device,
                });
            }
        }
        (usable, warnings)
    }

    /// Takes in one device's keys (from a message it sent): pins it on
    /// first sight, as [`Trust::observe`] does, but says nothing about the
    /// user's other devices.
    pub fn observe_device(&mut self, keys: &DeviceKeys) -> (bool, Vec<TrustWarning>) {
        let (usable, warnings) = self.observe_devices(&keys.user, std::slice::from_ref(keys));
        (usable.contains(keys), warnings)
    }

    fn observe_devices(
        &mut self,
        user: &Username,
        listed: &[DeviceKeys],
    ) -> (Vec<DeviceKeys>, Vec<TrustWarning>) {
        let entry = self.users.entry(user.clone()).or_default();
        let first_sight = entry.devices.is_empty();
        let verified_before = entry.verified.is_some() && is_verified(entry);
        let mut usable = Vec::new();
        let mut warnings = Vec::new();
        for keys in listed {
            if keys.user != *user {
                continue;
            }
            if verify_device_keys(keys).is_err() {
                warnings.push(TrustWarning::BadSignature {
                    user: user.clone(),
                    device: keys.device.clone(),
                });
                continue;
            }
            match entry.devices.get(&keys.device) {
                Some(pinned) if pinned == keys => usable.push(keys.clone()),
                Some(_) => warnings.push(TrustWarning::ChangedKeys {
                    user: user.clone(),
                    device: keys.device.clone(),
                }),
                None => {
                    entry.devices.insert(keys.device.clone(), keys.clone());
                    // A removed device that is listed again is a new one.
                    let returned = entry.removed.remove(&keys.device).is_some();
                    self.changed = true;
                    if !first_sight || returned {
                        warnings.push(TrustWarning::NewDevice {
                            user: user.clone(),
                            device: keys.device.clone(),
                            fingerprint: fingerprint(keys),
                        });
                    }
                    usable.push(keys.clone());
                }
            }
        }
        if verified_before && !is_verified(entry) {
            warnings.push(TrustWarning::VerificationLost { user: user.clone() });
        }
        (usable, warnings)
    }

    /// The pinned keys of a device, if any.
    pub fn pinned(&self, user: &Username, device: &DeviceId) -> Option<&DeviceKeys> {
        self.users.get(user)?.devices.get(device)
    }

    /// The safety number between this account (`me`, with its devices'
    /// keys) and `user`, from the keys pinned for `user`.
    pub fn safety_number(
        &self,
        me: &Username,
        my_keys: &[PublicKey],
        user: &Username,
    ) -> Option<String> {
        let theirs: Vec<PublicKey> = self
            .users
            .get(user)?
            .devices
            .values()
            .map(|d| d.ed25519)
            .collect();
        if theirs.is_empty() {
            return None;
        }
        Some(safety_number((me, my_keys), (user, &theirs)))
    }

    /// Marks `user` verified with their currently pinned devices. False if
    /// no device of theirs is known yet.
    pub fn verify(&mut self, user: &Username) -> bool {
        let Some(entry) = self.users.get_mut(user) else {
            return false;
        };
        if entry.devices.is_empty() {
            return false;
        }
        entry.verified = Some(entry.devices.values().map(|d| d.ed25519).collect());
        self.changed = true;
        true
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
        self.users.get(user).is_some_and(is_verified)
    }

    /// Every pinned device of `user`, for `@devices`.
    pub fn devices(&self, user: &Username) -> Vec<DeviceInfo> {
        let Some(entry) = self.users.get(user) else {
            return Vec::new();
        };
        let verified = is_verified(entry);
        entry
            .devices
            .values()
            .map(|keys| DeviceInfo {
                user: user.clone(),
                device: keys.device.clone(),
                fingerprint: fingerprint(keys),
                verified,
                this_device: false,
            })
            .collect()
    }
}

/// Verified while every current device was among those verified (a
/// removed device does not undo it; a new one does).
fn is_verified(entry: &UserTrust) -> bool {
    let current: BTreeSet<PublicKey> = entry.devices.values().map(|d| d.ed25519).collect();
    entry
        .verified
        .as_ref()
        .is_some_and(|verified| !current.is_empty() && current.is_subset(verified))
}

#[cfg(test)]
mod tests {
    use sotto_crypto::e2e::E2e;

    use super::*;

    fn user(name: &str) -> Username {
        Username::parse(name).unwrap()
    }

    fn device(name: &str, id: &str) -> E2e {
        E2e::new(user(name), DeviceId::parse(id).unwrap())
    }

    #[test]
    fn first_sight_pins_silently_and_a_new_device_warns() {
        let mut trust = Trust::default();
        let (laptop, phone) = (device("bob", "laptop-bob"), device("bob", "phone-bob"));
        let (usable, warnings) = trust.observe(&user("bob"), &[laptop.device_keys()]);
        assert_eq!(usable, vec![laptop.device_keys()]);
        assert!(warnings.is_empty());
        let (usable, warnings) =
            trust.observe(&user("bob"), &[laptop.device_keys(), phone.device_keys()]);
        assert_eq!(usable.len(), 2);
        assert!(
            matches!(&warnings[..], [TrustWarning::NewDevice { device, .. }] if device.as_str() == "phone-bob")
        );
        // Seen before: no more warnings.
        let (_, warnings) =
            trust.observe(&user("bob"), &[laptop.device_keys(), phone.device_keys()]);
        assert!(warnings.is_empty());
    }

    #[test]
    fn changed_keys_are_refused_and_bad_signatures_ignored() {
        let mut trust = Trust::default();
        let original = device("bob", "laptop-bob");
        trust.observe(&user("bob"), &[original.device_keys()]);
        // Same device id, new identity (a server swapping keys).
        let impostor = device("bob", "laptop-bob");
        let (usable, warnings) = trust.observe(&user("bob"), &[impostor.device_keys()]);
        assert!(usable.is_empty());
        assert!(matches!(&warnings[..], [TrustWarning::ChangedKeys { .. }]));
        assert_eq!(
            trust.pinned(&user("bob"), original.device()),
            Some(&original.device_keys())
        );
        let mut forged = device("bob", "tablet-bob").device_keys();
        forged.curve25519[0] ^= 1;
        let (usable, warnings) = trust.observe(&user("bob"), &[original.device_keys(), forged]);
        assert_eq!(usable, vec![original.device_keys()]);
        assert!(matches!(&warnings[..], [TrustWarning::BadSignature { .. }]));
        assert!(warnings[0].to_string().contains("invalid signature"));
    }

    #[test]
    fn verification_holds_until_the_devices_change() {
        let mut trust = Trust::default();
        let me = device("alice", "phone-alice");
        let laptop = device("bob", "laptop-bob");
        let bob = user("bob");
        assert!(
            !trust.verify(&bob),
            "nothing to verify before any key is known"
        );
        trust.observe(&bob, &[laptop.device_keys()]);
        let mine = [me.identity().ed25519];
        let number = trust.safety_number(&user("alice"), &mine, &bob).unwrap();
        assert!(trust.verify(&bob));
        assert!(trust.is_verified(&bob));
        assert!(trust.devices(&bob).iter().all(|d| d.verified));

        let phone = device("bob", "phone-bob");
        let (_, warnings) = trust.observe(&bob, &[laptop.device_keys(), phone.device_keys()]);
        assert!(warnings.contains(&TrustWarning::VerificationLost { user: bob.clone() }));
        assert!(!trust.is_verified(&bob));
        assert_ne!(
            trust.safety_number(&user("alice"), &mine, &bob).unwrap(),
            number
        );
    }

    #[test]
    fn a_device_no_longer_listed_is_removed_and_comes_back_as_new() {
        let mut trust = Trust::default();
        let bob = user("bob");
        let (laptop, phone) = (device("bob", "laptop-bob"), device("bob", "phone-bob"));
        trust.observe(&bob, &[laptop.device_keys(), phone.device_keys()]);
        trust.verify(&bob);
        let (usable, warnings) = trust.observe(&bob, &[laptop.device_keys()]);
        assert_eq!(usable, vec![laptop.device_keys()]);
        assert_eq!(
            warnings,
            vec![TrustWarning::DeviceRemoved {
                user: bob.clone(),
                device: phone.device().clone()
            }]
        );
        assert!(warnings[0].to_string().contains("removed device phone-bob"));
        // Fewer devices: still verified, and @devices no longer lists it.
        assert!(trust.is_verified(&bob));
        assert_eq!(trust.devices(&bob).len(), 1);
        assert!(trust.pinned(&bob, phone.device()).is_none());
        // A message from one device says nothing about the others.
        let (usable, warnings) = trust.observe_device(&laptop.device_keys());
        assert!(usable && warnings.is_empty());
        assert_eq!(trust.devices(&bob).len(), 1);
        // Listed again, it is announced as a new device (still the keys
        // that were verified, so the verification holds).
        let (_, warnings) = trust.observe(&bob, &[laptop.device_keys(), phone.device_keys()]);
        assert!(
            matches!(&warnings[..], [TrustWarning::NewDevice { device, .. }] if device == phone.device()),
            "{warnings:?}"
        );
        assert!(trust.is_verified(&bob));
        // A device never verified undoes it.
        let tablet = device("bob", "tablet-bob");
        let (_, warnings) = trust.observe(
            &bob,
            &[
                laptop.device_keys(),
                phone.device_keys(),
                tablet.device_keys(),
            ],
        );
        assert!(warnings.contains(&TrustWarning::VerificationLost { user: bob.clone() }));
    }

    #[test]
    fn trust_survives_serialization() {
        let mut trust = Trust::default();
        let laptop = device("bob", "laptop-bob");
        trust.observe(&user("bob"), &[laptop.device_keys()]);
        trust.verify(&user("bob"));
        let again: Trust = serde_json::from_str(&serde_json::to_string(&trust).unwrap()).unwrap();
        assert!(again.is_verified(&user("bob")));
        assert_eq!(again.devices(&user("bob")), trust.devices(&user("bob")));
    }
}
