//! What the server parses of a client's OPAQUE messages: the registration
//! request and upload, the login request (KE1) for a registered user and
//! for an unknown one, and the login finalization (KE3). Must never panic,
//! and a hostile KE3 must never log in.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sotto_crypto::opaque::{self, Record, ServerKeys, Stretch};

const SERVER_ID: &[u8] = b"fuzz server id!!";

fn setup() -> &'static (ServerKeys, Record, Vec<u8>) {
    static SETUP: OnceLock<(ServerKeys, Record, Vec<u8>)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let keys = ServerKeys::generate();
        let (state, request) = opaque::client_register_start("password").unwrap();
        let response = opaque::server_register_start(&keys, &request, "alice").unwrap();
        let upload = state
            .finish("password", &response, "alice", SERVER_ID, Stretch::NoneForBenchmarks)
            .unwrap();
        let record = opaque::server_register_finish(&upload).unwrap();
        let (_, ke1) = opaque::client_login_start("password").unwrap();
        (keys, record, ke1)
    })
}

fuzz_target!(|data: &[u8]| {
    let (keys, record, ke1) = setup();
    let Some((which, message)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => drop(opaque::server_register_start(keys, message, "alice")),
        1 => drop(opaque::server_register_finish(message)),
        2 => {
            let record = (which & 4 == 0).then_some(record);
            drop(opaque::server_login_start(keys, record, message, "alice", SERVER_ID));
        }
        _ => {
            let (state, _) =
                opaque::server_login_start(keys, Some(record), ke1, "alice", SERVER_ID).unwrap();
            assert!(state.finish(message).is_err(), "a forged KE3 logged in");
        }
    }
});
