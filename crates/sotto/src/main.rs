//! The `sotto` binary: `sotto serve` runs a server, `sotto chat` a client.
//! Glue only: flags, logging, signals and terminal I/O; the logic lives in
//! `sotto-server` and `sotto-client`.

mod chat;
mod serve;

use clap::{Parser, Subcommand};

/// Sotto: self-hosted, end-to-end encrypted chat.
#[derive(Debug, Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a server (embedded database, self-signed TLS, no setup).
    Serve(Box<serve::ServeArgs>),
    /// Connect to a server and chat: full screen on a terminal, else (or
    /// with --plain, --json) one command per line.
    Chat(chat::ChatArgs),
}

/// Sends logs to standard error: `quiet_level` normally (`info` for the
/// server, `warn` for the chat client), `debug` with `--debug`; `RUST_LOG`
/// overrides both.
pub(crate) fn init_logging(debug: bool, quiet_level: &str) {
    use tracing_subscriber::EnvFilter;
    let default = if debug {
        "debug,rustls=info"
    } else {
        quiet_level
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Logs to a file (the full-screen UI owns the terminal).
pub(crate) fn init_logging_to(
    debug: bool,
    quiet_level: &str,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use tracing_subscriber::EnvFilter;
    let default = if debug {
        "debug,rustls=info"
    } else {
        quiet_level
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the log file {}", path.display()))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sotto: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::serve(*args).await,
            Command::Chat(args) => chat::chat(args).await,
        }
    });
    // Do not wait for a blocked stdin reader.
    runtime.shutdown_background();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<chat::Reported>().is_some() => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sotto: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
