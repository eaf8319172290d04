//! Nothing unreadable after restarts (issue 9), through the real `sotto`
//! binary for the server and the clients: messages sent right after a
//! graceful server restart, after the server was killed, and while a
//! client was killed in the middle of a conversation, are each readable on
//! every recipient the moment they arrive. "Unable to decrypt" anywhere
//! fails the test.

use std::collections::BTreeSet;
use std::io::Write;

use serde_json::Value;

use crate::binary::{Chat, Server, chat, serve, wait_exit};

/// Where everyone's data lives.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn server_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("server")
    }

    fn chat(&self, server: &Server, user: &str) -> Chat {
        chat(server, user, &self.dir.path().join(user))
    }
}

/// Reads `chat`'s events until every text in `wanted` arrived as a private
/// or group message; any message that could not be decrypted fails.
fn expect_readable(chat: &mut Chat, who: &str, wanted: &[String]) {
    let mut missing: BTreeSet<String> = wanted.iter().cloned().collect();
    while !missing.is_empty() {
        let event = chat.expect(|v| {
            matches!(
                v["type"].as_str(),
                Some("private" | "group" | "undecodable")
            )
        });
        assert_ne!(
            event["type"], "undecodable",
            "{who} could not read: {event}"
        );
        if let Some(text) = event["text"].as_str() {
            missing.remove(text);
        }
    }
}

/// A short conversation: room keys and Olm sessions exist, and every
/// client has acknowledged what it read (the server forgets delivered
/// to-device messages once acknowledged).
fn converse(alice: &mut Chat, bob: &mut Chat, carol: &mut Chat) {
    alice.say("@group set crew bob,carol");
    alice.expect(|v| v["type"] == "ok");
    for member in [&mut *bob, &mut *carol] {
        member.expect(|v| v["type"] == "invited" && v["group"] == "crew");
        member.say("@group accept crew");
        member.expect(|v| v["type"] == "joined");
    }
    alice.say("@bob hello bob");
    expect_readable(bob, "bob", &["hello bob".into()]);
    bob.say("@alice hello alice");
    expect_readable(alice, "alice", &["hello alice".into()]);
    alice.say("@group send crew hello crew");
    expect_readable(bob, "bob", &["hello crew".into()]);
    expect_readable(carol, "carol", &["hello crew".into()]);
}

/// Everyone quits (acknowledging what they read first); `watcher` sees
/// them go offline, which the server announces only after it took in
/// their acknowledgements.
fn everyone_quits(watcher: &mut Chat, chats: Vec<(&str, Chat)>) {
    for (name, mut chat) in chats {
        chat.say("@quit");
        assert!(wait_exit(&mut chat.child).success());
        watcher.expect(|v: &Value| {
            v["type"] == "presence" && v["user"] == name && v["change"] == "offline"
        });
    }
}

/// After the restart: twelve messages at once, private both ways and to
/// the group from all three, each readable on arrival everywhere.
fn twelve_messages(alice: &mut Chat, bob: &mut Chat, carol: &mut Chat) {
    let mut to_alice = Vec::new();
    let mut to_bob = Vec::new();
    let mut to_carol = Vec::new();
    for i in 0..3 {
        let (a, b) = (format!("a{i}"), format!("b{i}"));
        alice.say(&format!("@bob {a}"));
        bob.say(&format!("@alice {b}"));
        to_bob.push(a);
        to_alice.push(b);
        let (ga, gc) = (format!("ga{i}"), format!("gc{i}"));
        alice.say(&format!("@group send crew {ga}"));
        carol.say(&format!("@group send crew {gc}"));
        to_bob.extend([ga.clone(), gc.clone()]);
        to_alice.push(gc);
        to_carol.push(ga);
    }
    expect_readable(bob, "bob", &to_bob);
    expect_readable(alice, "alice", &to_alice);
    expect_readable(carol, "carol", &to_carol);
}

/// A conversation, everyone leaves, the server is stopped by `stop` and
/// started again on the same data dir and address: then twelve messages.
fn messages_after_a_server_restart(stop: impl FnOnce(&mut Server)) {
    let setup = Setup::new();
    let mut server = serve(&setup.server_dir(), "127.0.0.1:0");
    let mut watcher = setup.chat(&server, "dave");
    let (mut alice, mut bob, mut carol) = (
        setup.chat(&server, "alice"),
        setup.chat(&server, "bob"),
        setup.chat(&server, "carol"),
    );
    converse(&mut alice, &mut bob, &mut carol);
    everyone_quits(
        &mut watcher,
        vec![("alice", alice), ("bob", bob), ("carol", carol)],
    );
    stop(&mut server);
    let _ = watcher.child.kill();

    let mut server = serve(&setup.server_dir(), &server.addr);
    let (mut alice, mut bob, mut carol) = (
        setup.chat(&server, "alice"),
        setup.chat(&server, "bob"),
        setup.chat(&server, "carol"),
    );
    twelve_messages(&mut alice, &mut bob, &mut carol);
    for mut chat in [alice, bob, carol] {
        let _ = chat.child.kill();
    }
    let _ = server.child.kill();
}

#[test]
fn every_message_sent_after_a_graceful_server_restart_is_readable_on_arrival() {
    // `q`: the server writes every acknowledged position (and forgets the
    // to-device messages they cover) as it stops.
    messages_after_a_server_restart(|server| {
        let mut stdin = server.stdin.take().unwrap();
        writeln!(stdin, "q").unwrap();
        stdin.flush().unwrap();
        assert!(wait_exit(&mut server.child).success());
    });
}

#[test]
fn every_message_sent_after_the_server_was_killed_is_readable_on_arrival() {
    messages_after_a_server_restart(|server| {
        server.child.kill().unwrap();
        server.child.wait().unwrap();
    });
}

#[test]
fn a_client_killed_in_the_middle_of_a_conversation_reads_everything_when_it_returns() {
    let setup = Setup::new();
    let mut server = serve(&setup.server_dir(), "127.0.0.1:0");
    let (mut alice, mut bob, mut carol) = (
        setup.chat(&server, "alice"),
        setup.chat(&server, "bob"),
        setup.chat(&server, "carol"),
    );
    converse(&mut alice, &mut bob, &mut carol);
    // Alice writes on while bob is killed (kill -9: nothing saved that was
    // not saved already) part way through.
    let mut wanted = Vec::new();
    for i in 0..10 {
        let private = format!("p{i}");
        let group = format!("g{i}");
        alice.say(&format!("@bob {private}"));
        alice.say(&format!("@group send crew {group}"));
        alice.expect(|v| v["type"] == "sent");
        alice.expect(|v| v["type"] == "sent");
        wanted.extend([private, group]);
        if i == 4 {
            bob.child.kill().unwrap();
            bob.child.wait().unwrap();
        }
    }
    // Carol read all of alice's group messages meanwhile.
    let to_carol: Vec<String> = wanted
        .iter()
        .filter(|t| t.starts_with('g'))
        .cloned()
        .collect();
    expect_readable(&mut carol, "carol", &to_carol);
    // Bob comes back: everything he had not acknowledged arrives again,
    // readable (what he did read before the kill is not shown twice).
    let mut bob = setup.chat(&server, "bob");
    let after_kill: Vec<String> = wanted[10..].to_vec();
    expect_readable(&mut bob, "bob", &after_kill);
    // And he writes back on the same sessions.
    bob.say("@alice back");
    expect_readable(&mut alice, "alice", &["back".into()]);
    bob.say("@group send crew back, all");
    expect_readable(&mut carol, "carol", &["back, all".into()]);
    for mut chat in [alice, bob, carol] {
        let _ = chat.child.kill();
    }
    let _ = server.child.kill();
}
