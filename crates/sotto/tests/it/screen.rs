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
        let mut child = Command::new(env!("CARGO_BIN_EXE_sotto"))
            .args(["chat", "--plain", "--server", &server.addr, "--user", user])
            .args(["--server-fingerprint", &server.fingerprint])
            .arg("--data-dir")
            .arg(dir)
            .env("SOTTO_PASSWORD", format!("pw-{user}"))
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
