//! What a client decodes from a server: frames split off a byte stream,
//! and typed server frames (replies and events). Must never panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sotto_proto::{FrameDecoder, ServerFrame};

fuzz_target!(|data: &[u8]| {
    let decoder = FrameDecoder::new(64 * 1024);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(raw)) = decoder.decode(&mut buf) {
        let _ = ServerFrame::decode(&raw);
    }
});
