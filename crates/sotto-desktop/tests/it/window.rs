//! The real window: the `sotto-desktop` binary under Xvfb (software
//! OpenGL), typed into with xdotool as a person would, against a real
//! server, with a picture of it at the end (`import`, ImageMagick). The
//! CI installs Xvfb, xdotool, ImageMagick, Mesa and fonts; so does
//! `scripts/desktop-screenshot.sh`, which runs this test to refresh
//! `docs/desktop.png` (`SOTTO_SCREENSHOT` names the file to write).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sotto_client::ClientEvent;
use sotto_proto::{PresenceChange, Username};
use sotto_test_support::{PATIENCE, TestServer};

use crate::runtime;

/// A process killed when the test ends, whatever happens.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An X server of the test's own; its display name.
fn xvfb() -> (Killed, String) {
    let mut child = Command::new("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "1100x760x24",
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("Xvfb runs (the CI installs it)");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("Xvfb says its display");
    (Killed(child), format!(":{}", line.trim()))
}

/// Runs `xdotool` on `display`; its output.
fn xdotool(display: &str, args: &[&str]) -> String {
    let out = Command::new("xdotool")
        .args(args)
        .env("DISPLAY", display)
        .output()
        .expect("xdotool runs (the CI installs it)");
    assert!(out.status.success(), "xdotool {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Waits until `log` has `count` lines containing `text`.
fn wait_for_log(log: &Path, text: &str, count: usize) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let found = std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches(text)
            .count();
        if found >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {text:?} in {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_real_window_signs_in_and_chats_under_xvfb() {
    let rt = runtime();
    let server = rt.block_on(TestServer::start());
    let mut bob = rt.block_on(server.client("bob"));
    let carol = rt.block_on(server.client("carol"));
    let (_x, display) = xvfb();
    // Alice used this app on this server before: this device has her
    // account, knows the server and pinned its certificate, and asks
    // only for her password.
    let earlier = rt
        .block_on(sotto_test_support::TestClient::connect_in(
            server.addr,
            "alice",
            tempfile::tempdir().unwrap(),
        ))
        .unwrap();
    rt.block_on(earlier.client.quit()).unwrap();
    let dir = earlier.dir;
    let settings = sotto_desktop::settings::Settings {
        server: server.addr.to_string(),
        user: "alice".into(),
        window: Some([1100.0, 760.0]),
        ..Default::default()
    };
    settings
        .save(&sotto_desktop::settings::file(dir.path()))
        .unwrap();
    let _app = Killed(
        Command::new(env!("CARGO_BIN_EXE_sotto-desktop"))
            .args(["--data-dir", dir.path().to_str().unwrap(), "--debug"])
            .env("DISPLAY", &display)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let window = xdotool(&display, &["search", "--sync", "--name", "^Sotto"]);
    let window = window.lines().next().unwrap().to_owned();
    xdotool(&display, &["windowfocus", "--sync", &window]);
    // The password field has the focus (the first empty one).
    xdotool(&display, &["type", "--delay", "20", "pw-alice"]);
    xdotool(&display, &["key", "Return"]);
    let alice = Username::parse("alice").unwrap();
    rt.block_on(bob.expect("alice online", |e| match e {
        ClientEvent::Presence {
            user,
            change: PresenceChange::Online(_),
        } if *user == alice => Some(()),
        _ => None,
    }));
    let log = dir.path().join("sotto-desktop.log");
    rt.block_on(carol.client.send_lobby("the meeting moved to 3 pm ⏰"))
        .unwrap();
    rt.block_on(bob.client.send_lobby("thanks carol 👍"))
        .unwrap();
    rt.block_on(
        bob.client
            .send_private(alice.clone(), "hi alice, is the new app working? 🙂"),
    )
    .unwrap();
    wait_for_log(&log, "conversation=@bob", 1);
    // `@bob` alone opens the conversation; the reply is typed there (with
    // a shortcode: xdotool types only what the keyboard has).
    for line in ["@bob", "yes! and everything is end-to-end encrypted :lock:"] {
        xdotool(&display, &["type", "--delay", "15", line]);
        xdotool(&display, &["key", "Return"]);
    }
    let (from, text) = rt.block_on(bob.expect_private());
    assert_eq!(
        (from.as_str(), text.as_str()),
        ("alice", "yes! and everything is end-to-end encrypted 🔒")
    );
    rt.block_on(
        bob.client
            .send_private(alice.clone(), "great, see you at 3"),
    )
    .unwrap();
    wait_for_log(&log, "conversation=@bob", 2);
    // One more frame for the last message, then the picture.
    std::thread::sleep(Duration::from_millis(500));
    let picture = std::env::var_os("SOTTO_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.path().join("desktop.png"));
    let status = Command::new("import")
        .args(["-window", &window])
        .arg(&picture)
        .env("DISPLAY", &display)
        .status()
        .expect("import runs (ImageMagick; the CI installs it)");
    assert!(status.success());
    let size = std::fs::metadata(&picture).unwrap().len();
    assert!(size > 20_000, "a picture of {size} bytes is no window");
}
