//! The main window against a real server: the lobby and private
//! messages both ways, conversations switched, a group made, files sent
//! by dialog and by drag and drop, a sealed message opened, a contact
//! verified and a security notice seen.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use eframe::egui::{self, ViewportId};
use egui_kittest::kittest::Queryable;
use sotto_client::model::{Content, ConversationId, SendState};
use sotto_client::{ClientEvent, Passphrase, Target};
use sotto_proto::Username;
use sotto_test_support::TestServer;

use crate::{App, app, runtime};

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

/// Whether the window has the keyboard focus (notifications are for
/// when it has not).
fn focused(app: &mut App, focused: bool) {
    let input = app.harness.input_mut();
    input.focused = focused;
    if let Some(viewport) = input.viewports.get_mut(&ViewportId::ROOT) {
        viewport.focused = Some(focused);
    }
}

#[test]
fn lobby_and_private_messages_go_both_ways_and_a_private_one_elsewhere_is_notified() {
    let rt = runtime();
    let server = rt.block_on(TestServer::start());
    let mut bob = rt.block_on(server.client("bob"));
    let mut alice = app(&server, "alice");
    alice.sign_in(&server, "pw-alice");
    // The lobby, both ways.
    rt.block_on(bob.client.send_lobby("hello from bob"))
        .unwrap();
    alice.wait_for("hello from bob");
    alice.say("hi bob, in the lobby");
    let (from, text) = rt.block_on(bob.expect_lobby());
    assert_eq!(
        (from.as_str(), text.as_str()),
        ("alice", "hi bob, in the lobby")
    );
    // A private message while the window is not focused: a badge and a
    // notification.
    focused(&mut alice, false);
    rt.block_on(bob.client.send_private(user("alice"), "psst alice"))
        .unwrap();
    alice.wait_for("@bob  (1)");
    let shown = alice.notifications.0.lock().unwrap().clone();
    assert_eq!(shown, vec![("bob".to_owned(), "psst alice".to_owned())]);
    // A lobby message names nobody: no notification.
    rt.block_on(bob.client.send_lobby("anyone for lunch?"))
        .unwrap();
    alice.wait_for("anyone for lunch?");
    assert_eq!(alice.notifications.0.lock().unwrap().len(), 1);
    focused(&mut alice, true);
    // Switching to the conversation shows it; a reply goes privately.
    alice.click("@bob  (1)");
    alice.wait_for("psst alice");
    assert!(alice.harness.query_by_label("anyone for lunch?").is_none());
    alice.say("hi bob, privately");
    let (from, text) = rt.block_on(bob.expect_private());
    assert_eq!(
        (from.as_str(), text.as_str()),
        ("alice", "hi bob, privately")
    );
    let bob_id = ConversationId::Direct(user("bob"));
    alice.wait_until("the reply marked stored", |h| {
        crate::newest_in(h, &bob_id).is_some_and(|e| e.state == Some(SendState::Sent))
    });
    // A draft stays with its conversation: half a reply to bob does not
    // follow into the lobby.
    let composer = alice.harness.get_by_label_contains("Message to");
    composer.focus();
    alice.harness.step();
    alice
        .harness
        .get_by_label_contains("Message to")
        .type_text("half written");
    alice.harness.step();
    alice.click("lobby");
    assert_eq!(alice.state().chat().unwrap().composer.text, "");
    // Alt+1 shows the conversation listed first (the most recent), and
    // types no "1" (some systems send the digit as text too).
    alice.harness.input_mut().events.extend([
        egui::Event::Key {
            key: egui::Key::Num1,
            physical_key: None,
            pressed: true,
            repeat: false,
            modifiers: egui::Modifiers::ALT,
        },
        egui::Event::Text("1".into()),
    ]);
    alice.harness.step();
    alice.harness.step();
    let chat = alice.state().chat().unwrap();
    assert_eq!(chat.front.model.selected(), &bob_id);
    assert_eq!(chat.composer.text, "half written");
}

/// A dropped file, for the window.
#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

#[test]
fn a_group_is_made_files_go_by_dialog_and_by_drop_and_a_sealed_message_opens() {
    let rt = runtime();
    let server = rt.block_on(TestServer::start());
    let mut bob = rt.block_on(server.client("bob"));
    let mut alice = app(&server, "alice");
    alice.sign_in(&server, "pw-alice");
    // A group, from its dialog; bob accepts the invitation.
    alice.click("+ New group");
    alice.type_into("Name", "project");
    alice.type_into("Members (a, b, c)", "bob");
    alice.click("Create");
    alice.wait_for_part("invited (they must accept): bob");
    rt.block_on(bob.accept_invitation("project"));
    alice.wait_for("joined");
    alice.say("welcome to the project");
    let (group, from, text) = rt.block_on(bob.expect_group());
    assert_eq!(
        (group.as_str(), from.as_str(), text.as_str()),
        ("project", "alice", "welcome to the project")
    );
    // A file by the dialog: large enough to be written in steps.
    let files = tempfile::tempdir().unwrap();
    let report = files.path().join("report.bin");
    std::fs::write(&report, vec![7u8; 3 * 1024 * 1024]).unwrap();
    alice.click("Send a file…");
    alice.type_into("File", &report.display().to_string());
    alice.click("Send file");
    let project = ConversationId::Group("project".parse().unwrap());
    alice.wait_until("the file stored and its progress ended", |h| {
        let chat = h.state().chat().unwrap();
        let entry = crate::newest_in(h, &project);
        chat.front.model.transfers.is_empty()
            && entry.is_some_and(|e| {
                e.state == Some(SendState::Sent)
                    && e.content == Content::Text("📎 report.bin".into())
            })
    });
    let offered = rt.block_on(bob.expect("the file", |e| match e {
        ClientEvent::FileOffered { name, size, .. } => Some((name.clone(), *size)),
        _ => None,
    }));
    assert_eq!(offered, ("report.bin".to_owned(), 3 * 1024 * 1024));
    // A file dropped on the window goes to the conversation shown.
    let notes = files.path().join("notes.txt");
    std::fs::write(&notes, "minutes of the meeting").unwrap();
    alice
        .harness
        .input_mut()
        .dropped_files
        .push(Arc::new(Dropped(notes.clone())));
    alice.harness.step();
    let offered = rt.block_on(bob.expect("the dropped file", |e| match e {
        ClientEvent::FileOffered { name, .. } => Some(name.clone()),
        _ => None,
    }));
    assert_eq!(offered, "notes.txt");
    alice.wait_until("the dropped file stored", |h| {
        crate::newest_in(h, &project).is_some_and(|e| e.state == Some(SendState::Sent))
    });
    assert_eq!(
        alice.newest(&project).expect("an entry").content,
        Content::Text("📎 notes.txt".into())
    );
    // A sealed message from bob, opened with its passphrase.
    let key = Passphrase::new("open sesame").unwrap();
    rt.block_on(
        bob.client
            .send_secret(Target::User(user("alice")), key, "the plan is on"),
    )
    .unwrap();
    alice.wait_for("@bob  (1)");
    alice.click("@bob  (1)");
    alice.wait_for("Open…");
    alice.click("Open…");
    alice.type_into("Passphrase", "wrong one");
    alice.click("Open");
    alice.wait_for_part("wrong key");
    alice.retype("Passphrase", "open sesame");
    alice.click("Open");
    alice.wait_for("the plan is on");
    alice.click("Close");
    // The owner removes bob from the group, from its members' list.
    alice.click("#project");
    alice.harness.step();
    alice.click("Members…");
    alice.click("Remove bob…");
    alice.click("Yes, remove");
    let group = rt.block_on(bob.expect("removed from the group", |e| match e {
        ClientEvent::RemovedFromGroup { group, .. } => Some(group.to_string()),
        _ => None,
    }));
    assert_eq!(group, "project");
}

#[test]
fn a_contact_is_verified_side_by_side_and_a_security_notice_stays_until_seen() {
    let rt = runtime();
    let server = rt.block_on(TestServer::start());
    let mut bob = rt.block_on(server.client("bob"));
    let mut alice = app(&server, "alice");
    alice.sign_in(&server, "pw-alice");
    rt.block_on(bob.client.send_private(user("alice"), "hello alice"))
        .unwrap();
    alice.wait_for("@bob  (1)");
    alice.click("@bob  (1)");
    // The safety number, shown for both screens; confirmed.
    alice.click("Verify…");
    alice.wait_for("Safety number for you and bob");
    let number = rt
        .block_on(bob.client.safety_number(&user("alice")))
        .unwrap()
        .safety_number;
    let first_row: Vec<&str> = number.split_whitespace().take(4).collect();
    // The number bob's screen shows for the two of them.
    alice.harness.get_by_label(&first_row.join("  "));
    alice.click("They match: mark verified");
    alice.wait_for("✔ bob is verified");
    alice.click("Close");
    // Bob adds a device alice has not accepted: it gets no key, and alice
    // is told in a banner that stays until she marks it seen.
    let _bob2 = rt.block_on(server.client("bob"));
    alice.say("only for the devices I checked");
    let (_, text) = rt.block_on(bob.expect_private());
    assert_eq!(text, "only for the devices I checked");
    alice.wait_for_part("gets no key");
    for _ in 0..5 {
        alice.harness.step();
    }
    alice.harness.get_by_label_contains("gets no key");
    alice.click("Seen (Ctrl+O)");
    assert!(
        alice
            .harness
            .query_by_label_contains("gets no key")
            .is_none()
    );
}
