//! What a client parses of a server's OPAQUE messages: the registration
//! response and the login response (KE2). Must never panic, and a forged
//! KE2 must never complete a login.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sotto_crypto::opaque::{self, Stretch};

const SERVER_ID: &[u8] = b"fuzz server id!!";

fuzz_target!(|data: &[u8]| {
    let Some((which, message)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        let (state, _) = opaque::client_register_start("password").unwrap();
        let _ = state.finish("password", message, "alice", SERVER_ID, Stretch::NoneForBenchmarks);
    } else {
        let (state, _) = opaque::client_login_start("password").unwrap();
        let finished =
            state.finish("password", message, "alice", SERVER_ID, Stretch::NoneForBenchmarks);
        assert!(finished.is_err(), "a forged KE2 completed a login");
    }
});
