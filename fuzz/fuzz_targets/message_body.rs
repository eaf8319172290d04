//! What a client decodes from another client's envelope payload. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_proto::MessageBody;

fuzz_target!(|data: &[u8]| {
    let _ = MessageBody::decode(data);
});
