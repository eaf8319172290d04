use super::*;

const SERVER: &[u8] = b"server-id-16byte";
// Fast enough for many runs; the Argon2id stretch has its own test.
const FAST: Stretch = Stretch::NoneForBenchmarks;

fn register(keys: &ServerKeys, user: &str, password: &str, stretch: Stretch) -> Record {
    let (state, request) = client_register_start(password).unwrap();
    let response = server_register_start(keys, &request, user).unwrap();
    let upload = state
        .finish(password, &response, user, SERVER, stretch)
        .unwrap();
    server_register_finish(&upload).unwrap()
}

/// The whole login; `Err` says which side refused.
fn login(
    keys: &ServerKeys,
    record: Option<&Record>,
    user: &str,
    password: &str,
    stretch: Stretch,
) -> Result<(), &'static str> {
    let (state, request) = client_login_start(password).unwrap();
    let (server, response) = server_login_start(keys, record, &request, user, SERVER).unwrap();
    let finalization = state
        .finish(password, &response, user, SERVER, stretch)
        .map_err(|_| "client")?;
    server.finish(&finalization).map_err(|_| "server")
}

#[test]
fn the_right_password_logs_in_and_a_wrong_one_does_not() {
    let keys = ServerKeys::generate();
    let record = register(&keys, "alice", "correct horse", FAST);
    assert_eq!(
        login(&keys, Some(&record), "alice", "correct horse", FAST),
        Ok(())
    );
    assert_eq!(
        login(&keys, Some(&record), "alice", "wrong horse", FAST),
        Err("client")
    );
}

#[test]
fn the_record_holds_nothing_of_the_password() {
    let keys = ServerKeys::generate();
    let record = register(&keys, "alice", "correct horse battery", FAST);
    let bytes = record.as_bytes();
    assert!(!bytes.windows(5).any(|w| w == b"horse"));
}

#[test]
fn a_name_without_a_record_gets_an_answer_of_the_same_shape_and_fails() {
    let keys = ServerKeys::generate();
    let record = register(&keys, "alice", "pw", FAST);
    let (_, request) = client_login_start("pw").unwrap();
    let (_, real) = server_login_start(&keys, Some(&record), &request, "alice", SERVER).unwrap();
    let (_, fake) = server_login_start(&keys, None, &request, "nobody", SERVER).unwrap();
    assert_eq!(real.len(), fake.len());
    assert_eq!(login(&keys, None, "nobody", "pw", FAST), Err("client"));
}

#[test]
fn a_record_is_bound_to_its_name_its_server_and_its_stretch() {
    let keys = ServerKeys::generate();
    let record = register(&keys, "alice", "pw", FAST);
    // Served under another name.
    assert!(login(&keys, Some(&record), "mallory", "pw", FAST).is_err());
    // Another server's keys.
    assert!(login(&ServerKeys::generate(), Some(&record), "alice", "pw", FAST).is_err());
    // Another server id.
    let (state, request) = client_login_start("pw").unwrap();
    let (_, response) =
        server_login_start(&keys, Some(&record), &request, "alice", b"another-server!!").unwrap();
    assert!(
        state
            .finish("pw", &response, "alice", SERVER, FAST)
            .is_err()
    );
    // Another stretch.
    assert!(login(&keys, Some(&record), "alice", "pw", Stretch::Argon2id).is_err());
}

#[test]
fn argon2id_stretching_works_end_to_end() {
    let keys = ServerKeys::generate();
    let record = register(&keys, "alice", "pw", Stretch::Argon2id);
    assert_eq!(
        login(&keys, Some(&record), "alice", "pw", Stretch::Argon2id),
        Ok(())
    );
}

#[test]
fn a_finalization_from_another_run_is_refused() {
    let keys = ServerKeys::generate();
    let record = register(&keys, "alice", "pw", FAST);
    let (state, request) = client_login_start("pw").unwrap();
    let (_, response) =
        server_login_start(&keys, Some(&record), &request, "alice", SERVER).unwrap();
    let finalization = state
        .finish("pw", &response, "alice", SERVER, FAST)
        .unwrap();
    // The server started a second run; the first run's answer does not fit it.
    let (_, request2) = client_login_start("pw").unwrap();
    let (server2, _) =
        server_login_start(&keys, Some(&record), &request2, "alice", SERVER).unwrap();
    assert_eq!(
        server2.finish(&finalization),
        Err(OpaqueError::WrongPassword)
    );
}

#[test]
fn keys_survive_storage_and_damaged_bytes_are_refused() {
    let keys = ServerKeys::generate();
    let record = register(&keys, "alice", "pw", FAST);
    let keys = ServerKeys::from_bytes(&keys.to_bytes()).unwrap();
    let record = Record::from_bytes(record.as_bytes()).unwrap();
    assert_eq!(login(&keys, Some(&record), "alice", "pw", FAST), Ok(()));
    assert!(ServerKeys::from_bytes(b"short").is_err());
    assert!(Record::from_bytes(&[0; 7]).is_err());
}

#[test]
fn malformed_messages_are_errors_not_panics() {
    let keys = ServerKeys::generate();
    for bytes in [&[][..], &[0; 31][..], &[0xff; 96][..], &[0; 5000][..]] {
        assert!(server_register_start(&keys, bytes, "alice").is_err());
        assert!(server_register_finish(bytes).is_err());
        assert!(server_login_start(&keys, None, bytes, "alice", SERVER).is_err());
        let (state, _) = client_login_start("pw").unwrap();
        assert!(state.finish("pw", bytes, "alice", SERVER, FAST).is_err());
        let (state, _) = client_register_start("pw").unwrap();
        assert!(state.finish("pw", bytes, "alice", SERVER, FAST).is_err());
    }
}
