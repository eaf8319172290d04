//! What the server decodes from a client: frames split off a byte stream,
//! then typed client frames. Must never panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sotto_proto::{ClientFrame, FrameDecoder};

fuzz_target!(|data: &[u8]| {
    let decoder = FrameDecoder::new(64 * 1024);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(raw)) = decoder.decode(&mut buf) {
        let _ = ClientFrame::decode(&raw);
    }
});
