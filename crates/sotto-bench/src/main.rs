//! `sotto-bench`: the load generator. Glue only: parse flags, build a
//! runtime, run the scenario, print its report, map errors to an exit code.
//!
//! See `sotto-bench --help` and `issues show 3` for what each scenario
//! measures; `bench/compare.sh` drives it against Sotto and IRC servers.

mod cli;
mod e2e;
mod engine;
mod idle;
mod irc;
mod payload;
mod procfs;
mod report;
mod scenarios;
mod session;
mod setup;
mod slow;
mod tls;

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Scenario};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Start the latency clock before any client exists.
    payload::epoch();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sotto-bench: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sotto-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (report, json) = match cli.scenario {
        Scenario::Fanout(args) => {
            let json = args.common.json;
            (scenarios::fanout(args).await?, json)
        }
        Scenario::Direct(args) => {
            let json = args.common.json;
            (scenarios::direct(args).await?, json)
        }
        Scenario::Idle(args) => {
            let json = args.common.json;
            (idle::idle(args).await?, json)
        }
        Scenario::Login(args) => {
            let json = args.common.json;
            (scenarios::login(args).await?, json)
        }
        Scenario::SlowConsumer(args) => {
            let json = args.common.json;
            (slow::slow_consumer(args).await?, json)
        }
        Scenario::IdleWorker(args) => return idle::worker(args).await,
    };
    report.print(json);
    Ok(())
}
