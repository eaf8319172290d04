//! `sotto chat`: the full-screen terminal UI (`sotto-tui`) when standard
//! input and output are a terminal, else (or with `--plain`) the line-mode
//! client: reads one command per line from standard input (the seeds'
//! `@command` syntax, parsed by `sotto_client::command`), prints one line
//! per event, or one JSON object per line with `--json`.

mod render;

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use sotto_client::command::{self, Command};
use sotto_client::dispatch;
use sotto_client::{Client, ClientEvent, ConnectOptions, Events, TrustPolicy};
use sotto_crypto::Fingerprint;
use sotto_proto::{Password, Username};
use tokio::sync::mpsc;

use crate::serve::{default_data_dir, read_secret_file};
use render::Renderer;

/// Flags of `sotto chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Server address.
    #[arg(long, env = "SOTTO_SERVER", default_value = "127.0.0.1:7443")]
    server: String,
    /// Your username (1-32 of a-z 0-9 _ - .; case-insensitive).
    #[arg(long, env = "SOTTO_USER")]
    user: String,
    /// File holding your password (else $SOTTO_PASSWORD, else a prompt).
    #[arg(long, env = "SOTTO_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
    /// File holding the server password, if the server has one.
    #[arg(long, env = "SOTTO_SERVER_PASSWORD_FILE")]
    server_password_file: Option<PathBuf>,
    /// Where known servers, device ids and received files live [default:
    /// the platform data dir, e.g. ~/.local/share/sotto-client].
    #[arg(long, env = "SOTTO_CLIENT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Line mode even on a terminal (the full-screen UI is the default there).
    #[arg(long)]
    plain: bool,
    /// Print one JSON object per line per event (implies line mode).
    #[arg(long)]
    json: bool,
    /// Trust a server seen for the first time without asking.
    #[arg(long)]
    trust_new_server: bool,
    /// Trust a server seen for the first time only if its certificate has
    /// this fingerprint (as printed by `sotto serve`).
    #[arg(long, value_name = "SHA256:...")]
    server_fingerprint: Option<String>,
    /// Only create a new account; fail if the name is taken.
    #[arg(long)]
    register: bool,
    /// Verbose logs (on standard error in line mode; in the full-screen
    /// UI, in `sotto-tui.log` in the data dir).
    #[arg(long, env = "SOTTO_DEBUG")]
    debug: bool,
}

fn password(args: &ChatArgs) -> anyhow::Result<Password> {
    if let Some(path) = &args.password_file {
        return read_secret_file(path);
    }
    if let Ok(text) = std::env::var("SOTTO_PASSWORD") {
        return Password::new(text).context("SOTTO_PASSWORD");
    }
    if std::io::stdin().is_terminal() {
        let text = rpassword::prompt_password(format!("Password for {}: ", args.user))?;
        return Password::new(text).context("password");
    }
    bail!("no password: use --password-file, SOTTO_PASSWORD, or run on a terminal to be asked")
}

fn trust_policy(args: &ChatArgs) -> anyhow::Result<TrustPolicy> {
    if let Some(text) = &args.server_fingerprint {
        let fp = Fingerprint::parse(text)
            .context("--server-fingerprint must look like SHA256:<64 hex digits>")?;
        return Ok(TrustPolicy::Fingerprint(fp));
    }
    if args.trust_new_server {
        return Ok(TrustPolicy::TrustNew);
    }
    if std::io::stdin().is_terminal() {
        return Ok(TrustPolicy::Ask(Box::new(
            |server: &str, fp: &Fingerprint| {
                eprintln!("The server {server} is new to this client.");
                eprintln!("Its certificate fingerprint is {fp}");
                eprintln!(
                    "Compare it with the one the server printed at start (ask its operator)."
                );
                eprint!("Trust this server and remember it? [y/N] ");
                let _ = std::io::stderr().flush();
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer).is_ok()
                    && matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
            },
        )));
    }
    Ok(TrustPolicy::RefuseUnknown)
}

pub async fn chat(args: ChatArgs) -> anyhow::Result<()> {
    let full_screen = !args.plain
        && !args.json
        && std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal();
    let user =
        Username::parse(&args.user).with_context(|| format!("invalid username '{}'", args.user))?;
    let data_dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => default_data_dir("sotto-client")?,
    };
    if full_screen {
        // Logs would garble the screen: they go to a file.
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        crate::init_logging_to(args.debug, "warn", &data_dir.join("sotto-tui.log"))?;
    } else {
        crate::init_logging(args.debug, "warn");
    }
    let server_password = args
        .server_password_file
        .as_deref()
        .map(read_secret_file)
        .transpose()?;
    let options = ConnectOptions {
        server: args.server.clone(),
        user,
        secret: sotto_client::Secret::Password(password(&args)?),
        server_password,
        data_dir,
        trust: trust_policy(&args)?,
        register_only: args.register,
        sign_in_only: false,
    };
    let (client, events) = sotto_client::connect(options).await?;
    if full_screen {
        let options = sotto_tui::Options {
            server: args.server.clone(),
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        };
        sotto_tui::run(client, events, options).await?;
        return Ok(());
    }
    let mut out = Renderer::new(args.json, client.session().user.clone());
    // On a terminal: line editing and history, output above the line typed.
    let mut _raw = None;
    let lines = if !args.json && std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        let (lines, printer, raw) = sotto_tui::line::start()?;
        _raw = Some(raw);
        out = out.with_printer(printer);
        Input {
            lines,
            prompted: true,
        }
    } else {
        Input {
            lines: stdin_lines(),
            prompted: false,
        }
    };
    let out = Arc::new(out);
    out.connected(&args.server, client.session());
    run(client, events, out, lines).await
}

/// Input lines, and whether passwords were already asked for with a
/// prompt of their own.
struct Input {
    lines: mpsc::Receiver<String>,
    prompted: bool,
}

/// Reads standard input on a thread of its own (blocking reads cannot be
/// cancelled) and hands lines over a bounded channel.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Prints events while a separate task runs the commands read from
/// standard input, in order. Commands must not block event reading: replies
/// arrive behind events on the same connection.
async fn run(
    client: Client,
    mut events: Events,
    out: Arc<Renderer>,
    input: Input,
) -> anyhow::Result<()> {
    let commands = tokio::spawn({
        let (client, out) = (client.clone(), out.clone());
        async move {
            let Input {
                mut lines,
                prompted,
            } = input;
            // Private messages queued and not answered yet, oldest first.
            let mut sending = VecDeque::new();
            loop {
                let line = tokio::select! {
                    biased;
                    Some(outcome) = next_reply(&mut sending), if !sending.is_empty() => {
                        show(&out, outcome);
                        continue;
                    }
                    line = lines.recv(), if sending.len() < MAX_IN_FLIGHT => line,
                };
                let Some(line) = line else { break };
                let parsed = command::parse(&line);
                if let Ok(command @ Command::Private { .. }) = parsed {
                    match dispatch::start(&client, command).await {
                        Ok(dispatch::Started::Sending(pending)) => sending.push_back(pending),
                        Ok(dispatch::Started::Done(outcome)) => {
                            finish(&mut sending, &out).await;
                            show(&out, Ok(outcome));
                        }
                        Err(e) => {
                            finish(&mut sending, &out).await;
                            show(&out, Err(e));
                        }
                    }
                    continue;
                }
                // Anything else waits for the messages before it, so what
                // is shown stays in input order.
                finish(&mut sending, &out).await;
                if matches!(parsed, Ok(Command::Password)) {
                    change_password(&client, &mut lines, &out, prompted).await;
                    continue;
                }
                if !line.trim().is_empty() && !execute(&client, &line, &out).await {
                    break;
                }
            }
            finish(&mut sending, &out).await;
            // `@quit` or end of input.
            let _ = client.quit().await;
        }
    });
    drop(client);
    while let Some(event) = events.next().await {
        out.event(&event);
        if let ClientEvent::Disconnected { .. } = event {
            if !commands.is_finished() {
                // Shown just above; the exit status says it too.
                return Err(Reported.into());
            }
            break;
        }
    }
    Ok(())
}

/// Private messages from piped input in flight at once: each is stored
/// before its reply, so sending one at a time would take a round trip and
/// a commit per line.
const MAX_IN_FLIGHT: usize = 128;

/// The oldest queued message's reply, once it comes.
async fn next_reply(
    sending: &mut VecDeque<dispatch::Pending>,
) -> Option<Result<dispatch::Outcome, sotto_client::ClientError>> {
    let outcome = sending.front_mut()?.await;
    sending.pop_front();
    Some(outcome)
}

/// Waits for every queued message's reply, showing each in order.
async fn finish(sending: &mut VecDeque<dispatch::Pending>, out: &Renderer) {
    while let Some(pending) = sending.pop_front() {
        show(out, pending.await);
    }
}

fn show(out: &Renderer, outcome: Result<dispatch::Outcome, sotto_client::ClientError>) {
    match outcome {
        Ok(outcome) => out.outcome(&outcome),
        Err(e) => out.client_error(&e),
    }
}

/// An error already shown to the user: the process only exits non-zero.
#[derive(Debug)]
pub struct Reported;

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("disconnected")
    }
}

impl std::error::Error for Reported {}

/// `@password`: the current password and the new one (twice) are the
/// next input lines, not echoed on a terminal (`prompted`: the line
/// editor asked for them already).
async fn change_password(
    client: &Client,
    lines: &mut mpsc::Receiver<String>,
    out: &Renderer,
    prompted: bool,
) {
    let _quiet = (!prompted).then(echo::Off::new);
    let mut ask = async |prompt: &str| -> Option<String> {
        if !prompted {
            out.prompt(prompt);
        }
        lines.recv().await
    };
    let (Some(old), Some(new), Some(again)) = (
        ask("Current password: ").await,
        ask("New password: ").await,
        ask("New password again: ").await,
    ) else {
        return;
    };
    drop(_quiet);
    if new != again {
        out.error(
            "invalid",
            "the two new passwords differ; nothing was changed",
        );
        return;
    }
    let (old, new) = match (Password::new(old), Password::new(new)) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(e), _) | (_, Err(e)) => {
            out.error("invalid", &format!("{e}; nothing was changed"));
            return;
        }
    };
    match client.change_password(old, new).await {
        Ok(()) => out.password_changed(),
        Err(e) => out.client_error(&e),
    }
}

/// Terminal echo, off while a password is typed.
mod echo {
    /// Turns echo off on a terminal standard input until dropped.
    pub struct Off {
        #[cfg(unix)]
        saved: Option<rustix::termios::Termios>,
    }

    impl Off {
        pub fn new() -> Self {
            #[cfg(unix)]
            {
                use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
                let stdin = std::io::stdin();
                let saved = tcgetattr(&stdin).ok();
                if let Some(saved) = &saved {
                    let mut quiet = saved.clone();
                    quiet.local_modes.remove(LocalModes::ECHO);
                    quiet.local_modes.insert(LocalModes::ECHONL);
                    let _ = tcsetattr(&stdin, OptionalActions::Now, &quiet);
                }
                Self { saved }
            }
            #[cfg(not(unix))]
            Self {}
        }
    }

    impl Drop for Off {
        fn drop(&mut self) {
            #[cfg(unix)]
            if let Some(saved) = &self.saved {
                let _ = rustix::termios::tcsetattr(
                    std::io::stdin(),
                    rustix::termios::OptionalActions::Now,
                    saved,
                );
            }
        }
    }
}

/// Runs one input line. Returns `false` on `@quit`.
async fn execute(client: &Client, line: &str, out: &Renderer) -> bool {
    let command = match command::parse(line) {
        Ok(command) => command,
        Err(e) => {
            out.error("invalid_command", &e.to_string());
            return true;
        }
    };
    if matches!(command, Command::Quit) {
        return false;
    }
    match dispatch::execute(client, command).await {
        Ok(outcome) => out.outcome(&outcome),
        Err(e) => out.client_error(&e),
    }
    true
}
