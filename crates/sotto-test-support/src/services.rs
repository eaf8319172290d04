//! PostgreSQL and NATS servers of a test's own, for tests that stop and
//! start them (the shared ones `scripts/test` starts serve every other
//! test and must stay up).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

/// A PostgreSQL server of its own: data in a temp dir, listening on a Unix
/// socket there only, trust authentication.
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: TempDir,
    bin: PathBuf,
    /// Run as the `postgres` user (PostgreSQL refuses to run as root).
    as_postgres: bool,
    /// A connection string for its `postgres` database.
    pub url: String,
}

impl PrivatePostgres {
    /// Creates and starts one (Debian's `postgresql` package installed).
    pub fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (/usr/lib/postgresql)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("an initdb");
        let dir = tempfile::tempdir().expect("a temp dir");
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown").arg("postgres:").arg(dir.path()));
        }
        let data = dir.path().join("data");
        let pg = Self {
            url: format!(
                "host={} user=postgres dbname=postgres",
                dir.path().display()
            ),
            dir,
            bin,
            as_postgres,
        };
        run(pg.command("initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]));
        pg.start_again();
        pg
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    /// Starts it (again), waiting until it takes connections.
    pub fn start_again(&self) {
        let options = format!(
            "-c listen_addresses='' -k {} -c fsync=off",
            self.dir.path().display()
        );
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-o", &options, "start"]));
    }

    /// Stops it at once, as a crash would (`pg_ctl -m immediate`).
    pub fn crash(&self) {
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"]));
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

fn run(command: &mut Command) {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A NATS server of its own on a fixed loopback port (so it can be
/// stopped and started again on it).
#[derive(Debug)]
pub struct PrivateNats {
    child: Option<Child>,
    port: u16,
    /// Its address, `nats://127.0.0.1:PORT`.
    pub url: String,
}

impl PrivateNats {
    pub fn start() -> Self {
        // Below the ephemeral ports (32768 and up on Linux): while the
        // server is down, the nodes dialing it again would otherwise, now
        // and then, be given its port as their own and connect to
        // themselves, taking the port it needs to start again.
        let port = (0..1000)
            .map(|_| 20_000 + rand::random::<u16>() % 12_000)
            .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
            .expect("a free port");
        let mut nats = Self {
            child: None,
            port,
            url: format!("nats://127.0.0.1:{port}"),
        };
        nats.start_again();
        nats
    }

    /// Starts it (again), waiting until it takes connections.
    pub fn start_again(&mut self) {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + crate::PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nats-server starts");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Kills it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}
