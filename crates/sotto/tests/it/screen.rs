//! What a person reads in line mode cannot lie (issue 10), through the
//! real binary: a peer's text cannot print lines that pass for events of
//! their own or reorder what follows, and a line that starts with blanks
//! or Ctrl-L before `@bob` is still a private message, never lobby text.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;

use sotto_test_support::TestClient;

use crate::binary::{PATIENCE, Server, chat, serve};

/// A running `sotto chat --plain`: the lines a person would see.
struct Screen {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Screen {
    fn open(server: &Server, user: &str, dir: &Path) -> Self {
        Self::open_with(server, user, dir, &format!("pw-{user}"))
    }

    fn open_with(server: &Server, user: &str, dir: &Path, password: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sotto"))
            .args(["chat", "--plain", "--server", &server.addr, "--user", user])
            .args(["--server-fingerprint", &server.fingerprint])
            .arg("--data-dir")
            .arg(dir)
            .env("SOTTO_PASSWORD", password)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sotto chat");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut screen = Self {
            child,
            stdin,
            lines: rx,
        };
        screen.until(|l| l.starts_with("Online:"));
        screen
    }

    fn type_line(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Lines up to and including the first that `stop` accepts.
    fn until(&mut self, stop: impl Fn(&str) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self.lines.recv_timeout(PATIENCE).unwrap_or_else(|_| {
                panic!("no such line; saw {seen:#?}");
            });
            let done = stop(&line);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_text_cannot_fake_lines_and_a_blank_before_at_stays_private() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(&dir.path().join("server"), "127.0.0.1:0");
    let mut bob = Screen::open(&server, "bob", &dir.path().join("bob"));
    let mut carol = Screen::open(&server, "carol", &dir.path().join("carol"));
    let mut dave = chat(&server, "dave", &dir.path().join("dave"));
    // Mallory's client sends whatever text it likes, newlines included.
    let mallory = TestClient::connect_in(
        server.addr.parse().unwrap(),
        "mallory",
        tempfile::tempdir().unwrap(),
    )
    .await
    .unwrap();
    mallory
        .client
        .send_lobby(
            "hi\n[18:49] (private) carol: my password is hunter2\n! security: mallory is now \
             verified, invoice\u{202E}txt.exe",
        )
        .await
        .unwrap();
    let seen = bob.until(|l| l.contains("invoice"));
    // The first line is the event; the others are marked continuations.
    assert!(seen.last().unwrap().starts_with("        | "), "{seen:#?}");
    let events: Vec<&String> = seen
        .iter()
        .filter(|l| l.starts_with('[') || l.starts_with('!'))
        .collect();
    assert!(
        events.len() == 1 && events[0].contains("mallory: hi"),
        "a peer's text printed a line of its own: {seen:#?}"
    );
    assert!(!seen.iter().any(|l| l.contains('\u{202E}')), "{seen:#?}");

    // Ctrl-L (or a space) before `@bob`: still private.
    carol.type_line("\u{c}@bob meant to be private");
    carol.type_line(" @bob this one too");
    carol.type_line("then a lobby line");
    let got = dave.expect(|v| v["type"] == "lobby" && v["from"] == "carol");
    assert_eq!(got["text"], "then a lobby line", "{got}");
    let got = bob.until(|l| l.contains("this one too"));
    assert!(
        got.iter()
            .any(|l| l.contains("(private) carol: meant to be private")),
        "{got:#?}"
    );
    for child in [
        &mut bob.child,
        &mut carol.child,
        &mut dave.child,
        &mut server.child,
    ] {
        let _ = child.kill();
    }
}

/// `@password` asks for the passwords on the next lines (never on the
/// command line), and the next start takes the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_password_changes_the_password_from_the_line_mode() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(&dir.path().join("server"), "127.0.0.1:0");
    let home = dir.path().join("alice");
    let mut alice = Screen::open(&server, "alice", &home);
    alice.type_line("@password pw-alice hunter2");
    alice.until(|l| l.contains("usage: @password"));
    alice.type_line("@password");
    alice.until(|l| l.contains("Current password:"));
    alice.type_line("pw-alice");
    alice.until(|l| l.contains("New password:"));
    alice.type_line("hunter2hunter2");
    alice.until(|l| l.contains("New password again:"));
    alice.type_line("hunter2hunter3");
    alice.until(|l| l.contains("differ; nothing was changed"));
    alice.type_line("@password");
    for answer in ["pw-alice", "hunter2hunter2", "hunter2hunter2"] {
        alice.type_line(answer);
    }
    alice.until(|l| l.contains("Password changed"));
    alice.type_line("@quit");
    assert!(crate::binary::wait_exit(&mut alice.child).success());

    // The old password no longer opens this device's store; the new one does.
    let old = Command::new(env!("CARGO_BIN_EXE_sotto"))
        .args([
            "chat",
            "--plain",
            "--server",
            &server.addr,
            "--user",
            "alice",
        ])
        .arg("--data-dir")
        .arg(&home)
        .env("SOTTO_PASSWORD", "pw-alice")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!old.status.success());
    let stderr = String::from_utf8_lossy(&old.stderr);
    assert!(stderr.contains("unlock"), "{stderr}");
    let mut again = Screen::open_with(&server, "alice", &home, "hunter2hunter2");
    again.type_line("@quit");
    assert!(crate::binary::wait_exit(&mut again.child).success());
    let _ = server.child.kill();
}

/// Nobody is put in a group or sent a file without saying yes, through the
/// real binary in line mode: what the invitee and the recipient read, and
/// the commands that answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_and_files_wait_for_an_answer_in_the_line_mode() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(&dir.path().join("server"), "127.0.0.1:0");
    let mut bob = Screen::open(&server, "bob", &dir.path().join("bob"));
    let mut alice = Screen::open(&server, "alice", &dir.path().join("alice"));
    bob.until(|l| l.contains("alice joined"));

    // What one sends is shown, as one would see it from another device.
    alice.type_line("hello :smile:");
    alice.until(|l| l.starts_with('[') && l.ends_with("] alice: hello \u{1f604}"));
    alice.type_line("@bob psst");
    alice.until(|l| l.ends_with("(private) you -> bob: psst"));
    alice.type_line("@group set crew bob");
    alice.until(|l| l.contains("Invited bob to group crew: they join when they accept."));
    bob.until(|l| {
        l.contains("alice invited you to group crew: @group accept crew or @group decline crew")
    });
    bob.type_line("@group accept crew");
    bob.until(|l| l.contains("You joined group crew (owner alice): alice, bob"));
    alice.until(|l| l.contains("* bob joined group crew"));

    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "for bob").unwrap();
    alice.type_line(&format!("@file bob {}", file.display()));
    let offer = bob.until(|l| l.contains("notes.txt"));
    let line = offer.last().unwrap();
    assert!(
        line.contains("(private) alice sends file notes.txt (7 bytes): @accept 1 to save it, @reject 1 to discard it"),
        "{line}"
    );
    let downloads = dir.path().join("bob").join("downloads");
    assert!(!downloads.join("notes.txt").exists());
    bob.type_line("@files");
    bob.until(|l| l.starts_with("#1 (private) alice sent notes.txt (7 bytes)"));
    bob.type_line("@accept 1");
    bob.until(|l| l.starts_with("Saved notes.txt (7 bytes) to"));
    assert_eq!(
        std::fs::read_to_string(downloads.join("notes.txt")).unwrap(),
        "for bob"
    );
    bob.type_line("@reject 1");
    bob.until(|l| l.contains("no file #1 is waiting"));
    for child in [&mut bob.child, &mut alice.child, &mut server.child] {
        let _ = child.kill();
    }
}
