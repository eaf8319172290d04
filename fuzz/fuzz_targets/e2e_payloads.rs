//! What a client decodes from another device's end-to-end payloads: the
//! directory's device and one-time keys, Olm and Megolm envelopes, and the
//! plaintexts inside them. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_proto::e2e::{
    DeviceKeys, MegolmEnvelope, OlmEnvelope, RoomPlaintext, SignedOneTimeKey, ToDevicePlaintext,
};

fuzz_target!(|data: &[u8]| {
    let Some((which, bytes)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => drop(DeviceKeys::decode(bytes)),
        1 => drop(SignedOneTimeKey::decode(bytes)),
        2 => drop(MegolmEnvelope::decode(bytes)),
        3 => drop(RoomPlaintext::decode(bytes)),
        4 => drop(OlmEnvelope::decode(bytes)),
        _ => drop(ToDevicePlaintext::decode(bytes)),
    }
});
