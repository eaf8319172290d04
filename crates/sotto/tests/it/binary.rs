//! The real `sotto` binary: `serve` with its flags, `q` on standard input,
//! `kill -9` losing nothing acknowledged, and `chat --json` driven through
//! standard input like a script would.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// A running `sotto serve`.
pub(crate) struct Server {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub addr: String,
    pub fingerprint: String,
}

/// A test that fails part-way leaves no server running behind it.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn serve(data_dir: &Path, listen: &str) -> Server {
    serve_with(data_dir, listen, &[], Stdio::null())
}

fn serve_with(data_dir: &Path, listen: &str, extra: &[&str], stderr: Stdio) -> Server {
    let database = sotto_test_support::test_database_for(data_dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_sotto"))
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data_dir)
        .args(database.iter().flat_map(|url| ["--database", url]))
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start sotto serve");
    let stdin = child.stdin.take();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut addr, mut fingerprint) = (None, None);
    while addr.is_none() || fingerprint.is_none() {
        let line = rx
            .recv_timeout(PATIENCE)
            .expect("server prints its address and fingerprint");
        if let Some(rest) = line.strip_prefix("Sotto server listening on ") {
            addr = rest.split_whitespace().next().map(String::from);
        }
        if let Some(rest) = line.strip_prefix("Certificate fingerprint: ") {
            fingerprint = Some(rest.trim().to_owned());
        }
    }
    Server {
        child,
        stdin,
        addr: addr.unwrap(),
        fingerprint: fingerprint.unwrap(),
    }
}

/// A running `sotto chat --json`, with its output lines parsed.
pub(crate) struct Chat {
    pub child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Value>,
}

pub(crate) fn chat(server: &Server, user: &str, dir: &Path) -> Chat {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sotto"))
        .args([
            "chat",
            "--json",
            "--server",
            &server.addr,
            "--user",
            user,
            "--server-fingerprint",
            &server.fingerprint,
        ])
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
            let value: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
            if tx.send(value).is_err() {
                break;
            }
        }
    });
    let mut chat = Chat {
        child,
        stdin,
        lines: rx,
    };
    chat.expect(|v| v["type"] == "connected");
    chat
}

impl Drop for Chat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Chat {
    pub(crate) fn say(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    pub(crate) fn expect(&mut self, matches: impl Fn(&Value) -> bool) -> Value {
        loop {
            let value = self.lines.recv_timeout(PATIENCE).expect("expected output");
            if matches(&value) {
                return value;
            }
        }
    }
}

pub(crate) fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn chat_commands_through_the_real_binary_and_q_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(&dir.path().join("server"), "127.0.0.1:0");
    let mut alice = chat(&server, "alice", &dir.path().join("alice"));
    let mut bob = chat(&server, "bob", &dir.path().join("bob"));
    alice.expect(|v| v["type"] == "presence" && v["user"] == "bob" && v["change"] == "online");

    alice.say("hello lobby :wave:");
    let got = bob.expect(|v| v["type"] == "lobby");
    assert_eq!(got["from"], "alice");
    assert_eq!(got["text"], "hello lobby 👋");

    alice.say("@bob psst");
    let got = bob.expect(|v| v["type"] == "private");
    assert_eq!(
        (
            got["from"].as_str(),
            got["to"].as_str(),
            got["text"].as_str()
        ),
        (Some("alice"), Some("bob"), Some("psst"))
    );

    alice.say("@group set team bob");
    bob.expect(|v| v["type"] == "invited" && v["group"] == "team" && v["from"] == "alice");
    bob.say("@group accept team");
    bob.expect(|v| v["type"] == "joined" && v["group"] == "team");
    alice.expect(|v| v["type"] == "member_joined" && v["user"] == "bob");
    alice.say("@group send team hi team");
    let got = bob.expect(|v| v["type"] == "group");
    assert_eq!(got["text"], "hi team");

    bob.say("@names");
    let got = bob.expect(|v| v["type"] == "names");
    assert_eq!(got["users"].as_array().unwrap().len(), 2);

    bob.say("@nobody hello");
    let got = bob.expect(|v| v["type"] == "error");
    assert_eq!(got["code"], "unknown_user");
    bob.say("@frobnicate");
    bob.expect(|v| v["type"] == "error");

    bob.say("@history 3");
    let got = bob.expect(|v| v["type"] == "history");
    let texts: Vec<&str> = got["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["text"].as_str())
        .collect();
    assert!(texts.contains(&"hi team"), "{got}");

    // `q` on the server's standard input: clients are told, the server exits 0.
    let mut stdin = server.stdin.take().unwrap();
    writeln!(stdin, "q").unwrap();
    stdin.flush().unwrap();
    alice.expect(|v| v["type"] == "shutdown");
    bob.expect(|v| v["type"] == "shutdown");
    assert!(wait_exit(&mut server.child).success());
    // The clients wait for the server to come back; `@quit` still works.
    for chat in [&mut alice, &mut bob] {
        chat.expect(|v| v["type"] == "reconnecting");
        chat.say("@quit");
        assert!(wait_exit(&mut chat.child).success());
    }
}

#[test]
fn piped_private_messages_are_pipelined_in_order_and_a_command_waits_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&dir.path().join("server"), "127.0.0.1:0");
    let mut bob = chat(&server, "bob", &dir.path().join("bob"));
    let mut alice = chat(&server, "alice", &dir.path().join("alice"));
    // All at once, as piped input comes: the messages are in flight
    // together, then `@names` and another message.
    let mut input = String::new();
    for i in 0..300 {
        input.push_str(&format!("@bob message {i}\n"));
    }
    input.push_str("@names\n@bob last\n");
    alice.stdin.write_all(input.as_bytes()).unwrap();
    alice.stdin.flush().unwrap();
    // Alice sees each one stored, in input order, and `@names` after them.
    for i in 0..300 {
        let got = alice.expect(|v| v["type"] == "sent" || v["type"] == "names");
        assert_eq!(got["type"], "sent", "line {i}: {got}");
    }
    alice.expect(|v| v["type"] == "names");
    alice.expect(|v| v["type"] == "sent");
    // Bob gets every one, in order.
    for i in 0..300 {
        let got = bob.expect(|v| v["type"] == "private");
        assert_eq!(got["text"], format!("message {i}"));
    }
    assert_eq!(bob.expect(|v| v["type"] == "private")["text"], "last");
}

#[test]
fn kill_9_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let mut server = serve(&data, "127.0.0.1:0");
    // Bob registers, then leaves.
    let mut bob = chat(&server, "bob", &dir.path().join("bob"));
    bob.say("@quit");
    assert!(wait_exit(&mut bob.child).success());
    let mut alice = chat(&server, "alice", &dir.path().join("alice"));
    for i in 0..20 {
        alice.say(&format!("@bob message {i}"));
        alice.expect(|v| v["type"] == "sent");
    }
    // Every send was acknowledged: now the server dies without warning.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let _ = alice.child.kill();

    let server = serve(&data, &server.addr);
    let mut bob = chat(&server, "bob", &dir.path().join("bob"));
    for i in 0..20 {
        let got = bob.expect(|v| v["type"] == "private");
        assert_eq!(got["text"], format!("message {i}"));
    }
    let mut server = server;
    let _ = server.child.kill();
    let _ = bob.child.kill();
}

#[test]
fn sigterm_stops_gracefully_and_debug_logs_hold_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = serve_with(
        &dir.path().join("server"),
        "127.0.0.1:0",
        &["--debug"],
        Stdio::from(log),
    );
    let mut alice = chat(&server, "alice", &dir.path().join("alice"));
    let mut bob = chat(&server, "bob", &dir.path().join("bob"));
    alice.say("lobby-body-4711");
    bob.expect(|v| v["type"] == "lobby");
    alice.say("@bob private-body-4711");
    bob.expect(|v| v["type"] == "private");
    alice.say("@group set crew bob");
    bob.expect(|v| v["type"] == "invited");
    bob.say("@group accept crew");
    bob.expect(|v| v["type"] == "joined");
    alice.say("@group send crew group-body-4711");
    bob.expect(|v| v["type"] == "group");
    alice.say("@secret bob passphrase-4711 sealed-body-4711");
    bob.expect(|v| v["type"] == "sealed");

    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    alice.expect(|v| v["type"] == "shutdown");
    assert!(wait_exit(&mut server.child).success(), "SIGTERM exits 0");
    let _ = alice.child.kill();
    let _ = bob.child.kill();

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("logged in"), "debug logging is on: {log}");
    for secret in [
        "lobby-body-4711",
        "private-body-4711",
        "group-body-4711",
        "sealed-body-4711",
        "passphrase-4711",
        "pw-alice",
        "pw-bob",
    ] {
        assert!(!log.contains(secret), "the log contains {secret}");
    }
}

#[test]
fn a_second_server_on_the_same_data_dir_refuses_and_the_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let mut first = serve(&data, "127.0.0.1:0");
    // A message makes the database write its WAL.
    let mut alice = chat(&first, "alice", &dir.path().join("alice"));
    alice.say("hello");
    alice.expect(|v| v["type"] == "sent");
    let mut second = Command::new(env!("CARGO_BIN_EXE_sotto"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run a second sotto serve");
    let deadline = std::time::Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second server started on the same data dir");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("another Sotto server") && stderr.contains(&first.child.id().to_string()),
        "{stderr}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        let mut files = vec!["cert.pem", "key.pem", "lock"];
        if sotto_test_support::test_database_for(&data).is_none() {
            files.extend(["sotto.db", "sotto.db-wal"]);
        }
        for name in files {
            assert_eq!(mode(&data.join(name)), 0o600, "{name}");
        }
    }
    let _ = alice.child.kill();
    let _ = first.child.kill();
}
