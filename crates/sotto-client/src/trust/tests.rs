//! Tests of pinning, verification and acceptance.

use sotto_crypto::e2e::E2e;

use super::*;

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn device(name: &str, id: &str) -> E2e {
    E2e::new(user(name), DeviceId::parse(id).unwrap())
}

fn with_me(me: &E2e) -> Trust {
    let mut trust = Trust::default();
    trust.set_me(&me.device_keys());
    trust
}

#[test]
fn first_sight_pins_silently_and_a_new_device_warns() {
    let mut trust = with_me(&device("alice", "laptop-alice"));
    let (laptop, phone) = (device("bob", "laptop-bob"), device("bob", "phone-bob"));
    let seen = trust.observe(&user("bob"), &[laptop.device_keys()]);
    assert_eq!(seen.usable, vec![laptop.device_keys()]);
    assert!(seen.warnings.is_empty() && seen.waiting.is_empty());
    let seen = trust.observe(&user("bob"), &[laptop.device_keys(), phone.device_keys()]);
    assert_eq!(seen.usable.len(), 2, "not verified: every device gets keys");
    assert!(
        matches!(&seen.warnings[..], [TrustWarning::NewDevice { device, waits: false, .. }] if device.as_str() == "phone-bob")
    );
    // Seen before: no more warnings.
    let seen = trust.observe(&user("bob"), &[laptop.device_keys(), phone.device_keys()]);
    assert!(seen.warnings.is_empty());
}

#[test]
fn changed_keys_are_refused_until_reset_and_bad_signatures_ignored() {
    let mut trust = with_me(&device("alice", "laptop-alice"));
    let original = device("bob", "laptop-bob");
    trust.observe(&user("bob"), &[original.device_keys()]);
    // Same device id, new identity (a server swapping keys).
    let impostor = device("bob", "laptop-bob");
    let seen = trust.observe(&user("bob"), &[impostor.device_keys()]);
    assert!(seen.usable.is_empty());
    assert!(matches!(
        &seen.warnings[..],
        [TrustWarning::ChangedKeys { .. }]
    ));
    assert!(seen.warnings[0].to_string().contains("@verify bob reset"));
    assert!(trust.observe_device(&impostor.device_keys()).is_err());
    assert_eq!(
        trust.pinned(&user("bob"), original.device()),
        Some(&original.device_keys())
    );
    let mut forged = device("bob", "tablet-bob").device_keys();
    forged.curve25519[0] ^= 1;
    let seen = trust.observe(&user("bob"), &[original.device_keys(), forged]);
    assert_eq!(seen.usable, vec![original.device_keys()]);
    assert!(matches!(
        &seen.warnings[..],
        [TrustWarning::BadSignature { .. }]
    ));
    assert!(seen.warnings[0].to_string().contains("invalid signature"));
    // After checking with bob, the user resets: the new keys are pinned.
    trust.reset(&user("bob")).unwrap();
    let seen = trust.observe(&user("bob"), &[impostor.device_keys()]);
    assert_eq!(seen.usable, vec![impostor.device_keys()]);
    assert!(
        trust.reset(&user("alice")).is_err(),
        "not one's own account"
    );
}

#[test]
fn verifying_needs_the_number_compared_and_new_devices_then_wait() {
    let me = device("alice", "phone-alice");
    let mut trust = with_me(&me);
    let laptop = device("bob", "laptop-bob");
    let bob = user("bob");
    assert!(matches!(
        trust.verify(&bob, "1"),
        Err(TrustError::NothingToVerify(_))
    ));
    trust.observe(&bob, &[laptop.device_keys()]);
    let number = trust.safety_number(&bob).unwrap();
    assert!(matches!(
        trust.verify(&bob, "12345 67890"),
        Err(TrustError::NumberMismatch { .. })
    ));
    assert!(!trust.is_verified(&bob));
    trust.verify(&bob, &number.replace(' ', "-")).unwrap();
    assert!(trust.is_verified(&bob));
    assert!(trust.devices(&bob).iter().all(|d| d.verified));

    // A new device of a verified contact gets nothing until accepted.
    let phone = device("bob", "phone-bob");
    let seen = trust.observe(&bob, &[laptop.device_keys(), phone.device_keys()]);
    assert_eq!(seen.usable, vec![laptop.device_keys()]);
    assert_eq!(seen.waiting, vec![phone.device_keys()]);
    assert!(
        matches!(
            &seen.warnings[..],
            [TrustWarning::NewDevice { waits: true, .. }]
        ),
        "{seen:?}"
    );
    assert!(
        seen.warnings[0]
            .to_string()
            .contains("@devices bob trust phone-bob")
    );
    assert!(!trust.is_verified(&bob));
    assert!(!trust.gets_keys(&phone.device_keys()));
    // The old number no longer verifies: the keys changed.
    assert!(trust.verify(&bob, &number).is_err());
    trust.accept(&bob, phone.device()).unwrap();
    assert!(trust.gets_keys(&phone.device_keys()));
    assert!(trust.is_verified(&bob));
    // Or verifying again accepts every device pinned then.
    let tablet = device("bob", "tablet-bob");
    trust.observe(
        &bob,
        &[
            laptop.device_keys(),
            phone.device_keys(),
            tablet.device_keys(),
        ],
    );
    assert!(!trust.gets_keys(&tablet.device_keys()));
    let again = trust.safety_number(&bob).unwrap();
    assert_eq!(
        trust.verify(&bob, &again).unwrap(),
        vec![tablet.device_keys()]
    );
    assert!(trust.gets_keys(&tablet.device_keys()));
    // Accepting a device of a contact never verified means nothing.
    let carol = device("carol", "carol-phone");
    trust.observe(&user("carol"), &[carol.device_keys()]);
    assert!(matches!(
        trust.accept(&user("carol"), carol.device()),
        Err(TrustError::NotVerified { .. })
    ));
}

#[test]
fn this_accounts_other_devices_get_keys_only_once_accepted() {
    let me = device("alice", "phone-alice");
    let mut trust = with_me(&me);
    let laptop = device("alice", "laptop-alice");
    let seen = trust.observe(&user("alice"), &[me.device_keys(), laptop.device_keys()]);
    assert_eq!(seen.usable, vec![me.device_keys()]);
    assert_eq!(seen.waiting, vec![laptop.device_keys()]);
    assert!(
        matches!(
            &seen.warnings[..],
            [TrustWarning::NewDevice { mine: true, .. }]
        ),
        "{seen:?}"
    );
    assert!(
        seen.warnings[0]
            .to_string()
            .contains("@devices trust laptop-alice")
    );
    assert!(!trust.is_own_accepted(&laptop.device_keys()));
    trust.accept(&user("alice"), laptop.device()).unwrap();
    assert!(trust.is_own_accepted(&laptop.device_keys()));
    // A device pinned from a to-device message of its own.
    let tablet = device("alice", "tablet-alice");
    assert!(trust.observe_device(&tablet.device_keys()).is_ok());
    assert!(!trust.gets_keys(&tablet.device_keys()));
}

#[test]
fn a_device_no_longer_listed_is_removed_and_comes_back_as_new() {
    let mut trust = with_me(&device("alice", "laptop-alice"));
    let bob = user("bob");
    let (laptop, phone) = (device("bob", "laptop-bob"), device("bob", "phone-bob"));
    trust.observe(&bob, &[laptop.device_keys(), phone.device_keys()]);
    let number = trust.safety_number(&bob).unwrap();
    trust.verify(&bob, &number).unwrap();
    let seen = trust.observe(&bob, &[laptop.device_keys()]);
    assert_eq!(seen.usable, vec![laptop.device_keys()]);
    assert_eq!(
        seen.warnings,
        vec![TrustWarning::DeviceRemoved {
            user: bob.clone(),
            device: phone.device().clone()
        }]
    );
    assert!(
        seen.warnings[0]
            .to_string()
            .contains("removed device phone-bob")
    );
    // Fewer devices: still verified, and @devices no longer lists it.
    assert!(trust.is_verified(&bob));
    assert_eq!(trust.devices(&bob).len(), 1);
    assert!(trust.pinned(&bob, phone.device()).is_none());
    // A message from one device says nothing about the others.
    assert!(
        trust
            .observe_device(&laptop.device_keys())
            .unwrap()
            .is_empty()
    );
    assert_eq!(trust.devices(&bob).len(), 1);
    // Listed again, it is a new device to accept again (a removed
    // device that comes back may be in other hands).
    let seen = trust.observe(&bob, &[laptop.device_keys(), phone.device_keys()]);
    assert!(
        matches!(&seen.warnings[..], [TrustWarning::NewDevice { device, waits: true, .. }] if device == phone.device()),
        "{seen:?}"
    );
    assert!(!trust.is_verified(&bob));
    trust.accept(&bob, phone.device()).unwrap();
    assert!(trust.is_verified(&bob));
}

#[test]
fn trust_survives_serialization() {
    let mut trust = with_me(&device("alice", "laptop-alice"));
    let laptop = device("bob", "laptop-bob");
    trust.observe(&user("bob"), &[laptop.device_keys()]);
    let number = trust.safety_number(&user("bob")).unwrap();
    trust.verify(&user("bob"), &number).unwrap();
    let again: Trust = serde_json::from_str(&serde_json::to_string(&trust).unwrap()).unwrap();
    assert!(again.is_verified(&user("bob")));
    assert_eq!(again.devices(&user("bob")), trust.devices(&user("bob")));
    assert_eq!(again.safety_number(&user("bob")).unwrap(), number);
}
