//! What vodozemac parses for a client: hostile Olm ciphertext (pre-key and
//! normal) from a device it knows, and hostile Megolm ciphertext for a room
//! session it holds, through sotto-crypto's decrypt paths. Must never
//! panic, and must never accept what it was not sent.
#![no_main]

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use sotto_crypto::e2e::{E2e, ReadMode};
use sotto_proto::e2e::{DeviceKeys, MegolmEnvelope, OlmEnvelope};
use sotto_proto::{DeviceId, MessageBody, Username};

const ROOM: u64 = 7;
const NOW: i64 = 1_800_000_000_000;

struct World {
    bob: E2e,
    alice_keys: DeviceKeys,
    session_id: String,
}

fn device(name: &str) -> E2e {
    E2e::new(
        Username::parse(name).unwrap(),
        DeviceId::parse(&format!("{}DEVICE1", name.to_uppercase())).unwrap(),
    )
}

/// Alice shares a room key with Bob over Olm, as the tests do.
fn world() -> &'static Mutex<World> {
    static WORLD: OnceLock<Mutex<World>> = OnceLock::new();
    WORLD.get_or_init(|| {
        let mut alice = device("alice");
        let mut bob = device("bob");
        let bob_recipient = (
            bob.user().clone(),
            bob.device().clone(),
            bob.identity().curve25519,
        );
        let recipients = BTreeSet::from([bob_recipient.clone()]);
        let prepared = alice
            .prepare_room(ROOM, &recipients, &BTreeSet::new(), NOW)
            .unwrap();
        let upload = bob.keys_to_upload(0);
        bob.mark_keys_published();
        let one_time = upload.one_time_keys.into_iter().next().unwrap();
        alice.start_olm_session(&bob.device_keys(), &one_time).unwrap();
        let envelope = alice
            .room_key_for(ROOM, &prepared, &bob.device_keys())
            .unwrap();
        bob.decrypt_to_device(&alice.device_keys(), &envelope)
            .unwrap();
        alice.mark_room_key_shared(ROOM, &prepared, &[bob_recipient]);
        let (sample, _) = alice
            .encrypt_room(ROOM, NOW, MessageBody::Text { text: "hi".into() })
            .unwrap();
        Mutex::new(World {
            bob,
            alice_keys: alice.device_keys(),
            session_id: sample.session_id,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((which, ciphertext)) = data.split_first() else {
        return;
    };
    let mut world = world().lock().unwrap();
    let World {
        bob,
        alice_keys,
        session_id,
    } = &mut *world;
    if which % 2 == 0 {
        let envelope = OlmEnvelope {
            sender_key: alice_keys.curve25519,
            message_type: (which >> 1) & 1,
            ciphertext: ciphertext.to_vec(),
        };
        let _ = bob.decrypt_to_device(alice_keys, &envelope);
    } else {
        let envelope = MegolmEnvelope {
            sender_key: alice_keys.curve25519,
            session_id: session_id.clone(),
            ciphertext: ciphertext.to_vec(),
        };
        let _ = bob.decrypt_room(
            ROOM,
            &alice_keys.user,
            &alice_keys.device,
            &envelope,
            ReadMode::Live,
        );
    }
});
