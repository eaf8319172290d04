//! The connect screen: trusting a server, errors, remember me, a changed
//! certificate.

use egui_kittest::kittest::Queryable;
use sotto_test_support::TestServer;

use crate::{app, open, runtime};

#[test]
fn a_first_connection_shows_the_fingerprint_to_trust_and_remember_me_signs_in_again_alone() {
    let rt = runtime();
    let server = rt.block_on(TestServer::start());
    let mut alice = app(&server, "alice");
    // A wrong address says so in words.
    alice.retype("Server", "127.0.0.1:1");
    alice.type_into("Password", "pw-alice");
    alice.click("Connect");
    alice.wait_for_part("Cannot reach 127.0.0.1:1");
    // The right one: the fingerprint is shown to compare, then trusted.
    alice.retype("Server", &server.addr.to_string());
    alice.click("Remember me on this device");
    // A name not known is refused unless the user means to create it.
    alice.click("Connect");
    alice.wait_for("Trust and connect");
    let grouped = sotto_desktop::connect::grouped(&server.fingerprint);
    alice.harness.get_by_label(&grouped);
    alice.click("Trust and connect");
    alice.wait_for_part("New on this server?");
    alice.click("Create a new account with this name");
    alice.click("Connect");
    alice.wait_for("connected");
    assert!(alice.state().settings().remember);
    // Nothing the app keeps holds the password.
    let dir = alice.dir.path().to_owned();
    assert!(!contains(&dir, b"pw-alice"), "the password is on disk");
    let crate::App { harness, dir, .. } = alice;
    drop(harness);
    // Started again: signed in by itself, with no question and no password.
    let mut again = open(dir);
    again.wait_for("connected");
    assert!(again.harness.query_by_label("Trust and connect").is_none());
    // Signing out forgets the device: the next start asks for the password.
    again.click("Sotto");
    again.click("Sign out (forget this device's sign-in)");
    again.wait_for("Signed out.");
    let crate::App { harness, dir, .. } = again;
    drop(harness);
    let mut third = open(dir);
    for _ in 0..5 {
        third.harness.step();
    }
    assert!(third.harness.query_by_label("connected").is_none());
    third.harness.get_by_label("Connect");
}

#[test]
fn a_wrong_password_and_a_missing_server_password_are_said_on_the_form() {
    let rt = runtime();
    let server = rt.block_on(TestServer::start_with(|config| {
        config.server_password = Some(sotto_proto::Password::new("letmein".into()).unwrap());
    }));
    let mut bob = app(&server, "bob");
    bob.type_into("Password", "pw-bob");
    bob.click("Create a new account with this name");
    bob.click("Connect");
    bob.wait_for("Trust and connect");
    bob.click("Trust and connect");
    bob.wait_for_part("needs a server password");
    bob.type_into("Server password", "letmein");
    bob.click("Connect");
    bob.wait_for("connected");
    drop(bob);
    // Bob's account exists now; a wrong password is refused on the form.
    let mut other = app(&server, "bob");
    other.type_into("Password", "not-bobs");
    other.click("This server has a server password");
    other.type_into("Server password", "letmein");
    other.click("Connect");
    other.wait_for("Trust and connect");
    other.click("Trust and connect");
    other.wait_for_part("wrong name or password for bob");
    assert!(other.harness.query_by_label("connected").is_none());
}

#[test]
fn a_changed_certificate_is_refused_with_a_warning_until_the_user_trusts_the_new_one() {
    let rt = runtime();
    let mut server = rt.block_on(TestServer::start());
    let mut carol = app(&server, "carol");
    carol.sign_in(&server, "pw-carol");
    let crate::App { harness, dir, .. } = carol;
    drop(harness);
    // The server's certificate is made anew.
    rt.block_on(server.stop());
    for file in ["cert.pem", "key.pem"] {
        std::fs::remove_file(server.config.data_dir.join(file)).unwrap();
    }
    rt.block_on(server.restart());
    let mut carol = open(dir);
    carol.type_into("Password", "pw-carol");
    carol.click("Connect");
    carol.wait_for("Warning: the server's identity changed");
    let grouped = sotto_desktop::connect::grouped(&server.fingerprint);
    carol.harness.get_by_label(&grouped);
    carol.click("The operator confirmed it: trust the new certificate");
    carol.wait_for("The new certificate is trusted: connect again.");
    carol.click("Connect");
    carol.wait_for("connected");
}

/// Whether any file under `dir` contains `needle`.
fn contains(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            contains(&path, needle)
        } else {
            std::fs::read(&path)
                .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        }
    })
}
