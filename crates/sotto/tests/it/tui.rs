//! The full-screen UI through the real `sotto` binary in a real terminal
//! (tmux gives it a pseudo-terminal and reads back the screen): log in,
//! read and write the lobby, answer a private message in its own
//! conversation, survive a server killed with SIGKILL, and quit with
//! Ctrl-C leaving the terminal as it was.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::binary::{PATIENCE, Server, chat, serve, wait_exit};

/// A tmux server of the test's own, with one window running a command.
struct Terminal {
    socket: String,
}

impl Terminal {
    fn start(command: &str) -> Self {
        let socket = format!("sotto-test-{}-{}", std::process::id(), rand_suffix());
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "80",
                "-y",
                "24",
            ])
            .args(["-s", "t", command])
            .env_remove("TMUX")
            .status()
            .expect("tmux runs (the CI installs it)");
        assert!(status.success());
        Self { socket }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` (literally), then Enter if `enter`.
    fn type_text(&self, text: &str, enter: bool) {
        self.tmux(&["send-keys", "-t", "t", "-l", text]);
        if enter {
            self.tmux(&["send-keys", "-t", "t", "Enter"]);
        }
    }

    fn key(&self, key: &str) {
        self.tmux(&["send-keys", "-t", "t", key]);
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t"])
    }

    /// Waits until the screen shows `text`; returns the screen.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {text:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish() % 1_000_000
}

/// `sotto chat` for `user` in a terminal; when it exits, the terminal's
/// settings are written to `stty.txt` in `dir`.
fn tui(server: &Server, user: &str, dir: &Path) -> Terminal {
    std::fs::create_dir_all(dir).unwrap();
    let command = format!(
        "SOTTO_PASSWORD=pw-{user} {bin} chat --server {addr} --user {user} \
         --server-fingerprint {fp} --data-dir {dir}; stty -a > {dir}/stty.txt; sleep 60",
        bin = env!("CARGO_BIN_EXE_sotto"),
        addr = server.addr,
        fp = server.fingerprint,
        dir = dir.display(),
    );
    Terminal::start(&command)
}

#[test]
fn the_full_screen_ui_in_a_real_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let mut server = serve(&server_dir, "127.0.0.1:0");
    let mut bob = chat(&server, "bob", &dir.path().join("bob"));
    let alice_dir = dir.path().join("alice");
    let alice = tui(&server, "alice", &alice_dir);
    let screen = alice.wait_for("● connected");
    assert!(
        screen.contains("Conversations") && screen.contains("bob"),
        "{screen}"
    );

    // The lobby, both ways.
    bob.say("hello from bob");
    alice.wait_for("bob: hello from bob");
    alice.type_text("hi all", true);
    bob.expect(|v| v["type"] == "lobby" && v["from"] == "alice" && v["text"] == "hi all");

    // A private message gets its own conversation, with a badge; Alt+1
    // (the most recent) opens it, and what is typed there goes to bob.
    bob.say("@alice psst");
    let screen = alice.wait_for("@bob ");
    assert!(screen.contains("@bob"), "{screen}");
    alice.key("M-1");
    alice.wait_for("bob: psst");
    alice.type_text("hey bob", true);
    bob.expect(|v| v["type"] == "private" && v["from"] == "alice" && v["text"] == "hey bob");

    // The server is killed and started again: the UI says so and comes back.
    server.child.kill().unwrap();
    wait_exit(&mut server.child);
    alice.wait_for("reconnecting");
    let mut server = serve(&server_dir, &server.addr);
    alice.wait_for("● connected");
    bob.expect(|v| v["type"] == "reconnected");
    bob.say("@alice after the restart");
    let screen = alice.wait_for("bob: after the restart");
    assert_eq!(screen.matches("after the restart").count(), 1, "{screen}");

    // Ctrl-C quits and gives the terminal back as it was.
    alice.key("C-c");
    let stty = alice_dir.join("stty.txt");
    let deadline = Instant::now() + PATIENCE;
    while !stty.exists() {
        assert!(
            Instant::now() < deadline,
            "sotto chat did not exit:\n{}",
            alice.screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let settings = std::fs::read_to_string(&stty).unwrap();
    let modes: Vec<&str> = settings.split_whitespace().collect();
    for mode in ["icanon", "echo", "isig", "opost"] {
        assert!(modes.contains(&mode), "{mode} not restored: {settings}");
    }
    bob.say("@quit");
    let _ = server.child.kill();
}

/// `sotto chat --plain` on a terminal: arrow keys edit the line, Up brings
/// back the last one, output goes above what is being typed, and a paste
/// over the message limit is refused with a message instead of cut.
#[test]
fn line_mode_on_a_terminal_edits_and_remembers_lines() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&dir.path().join("server"), "127.0.0.1:0");
    let mut bob = chat(&server, "bob", &dir.path().join("bob"));
    let alice_dir = dir.path().join("alice");
    std::fs::create_dir_all(&alice_dir).unwrap();
    let alice = Terminal::start(&format!(
        "SOTTO_PASSWORD=pw-alice {bin} chat --plain --server {addr} --user alice \
         --server-fingerprint {fp} --data-dir {dir}; sleep 60",
        bin = env!("CARGO_BIN_EXE_sotto"),
        addr = server.addr,
        fp = server.fingerprint,
        dir = alice_dir.display(),
    ));
    alice.wait_for("Type @help");
    alice.type_text("typo hellp", false);
    // "typo hell|p": two characters back, then "l": "typo help".
    alice.key("Left");
    alice.key("BSpace");
    alice.key("BSpace");
    alice.type_text("l", true);
    bob.expect(|v| v["type"] == "lobby" && v["text"] == "typo help");
    // Half a line typed while a message comes in: both stay readable.
    alice.type_text("half typed", false);
    bob.say("@alice incoming");
    let screen = alice.wait_for("bob: incoming");
    let last = screen.lines().rfind(|l| !l.trim().is_empty()).unwrap();
    assert_eq!(last.trim_end(), "> half typed", "{screen}");
    alice.key("C-u");
    alice.key("Up");
    alice.key("Enter");
    bob.expect(|v| v["type"] == "lobby" && v["text"] == "typo help");
    let long = format!("@bob {}", "x".repeat(5_000));
    let buffer = alice_dir.join("paste.txt");
    std::fs::write(&buffer, &long).unwrap();
    alice.tmux(&["load-buffer", buffer.to_str().unwrap()]);
    alice.tmux(&["paste-buffer", "-p", "-t", "t"]);
    alice.wait_for("not pasted: 5005 bytes");
    bob.say("@quit");
}
