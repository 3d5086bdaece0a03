//! netmonctl: the scriptable client of netmond. This file only sets up the
//! runtime and turns errors into messages and exit codes (design.md §3).

mod cli;
mod commands;
mod error;
mod json;
mod notify;
mod output;
mod units;
mod when;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::error::CtlError;

fn main() -> ExitCode {
    if let Some(code) =
        netmon_proto::cli_assets::run_if_requested(<cli::Cli as clap::CommandFactory>::command, "1")
    {
        return code;
    }
    let cli = cli::Cli::parse();
    if let Some(error) = when::init_zone(cli.utc) {
        eprintln!("netmonctl: warning: {error}; showing UTC");
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(&err),
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    runtime.block_on(commands::run(cli, &mut out))?;
    out.flush()?;
    Ok(())
}

fn report(err: &anyhow::Error) -> ExitCode {
    let ctl = err.downcast_ref::<CtlError>();
    let broken_pipe = match ctl {
        Some(e) => e.is_broken_pipe(),
        None => err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe),
    };
    if broken_pipe {
        return ExitCode::SUCCESS;
    }
    let msg = err
        .chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    let code = ctl.map_or(1, CtlError::exit_code);
    if code == 2 {
        eprintln!("netmonctl: error: {msg}\n\nFor more information, try '--help'.");
    } else {
        eprintln!("netmonctl: {msg}");
    }
    ExitCode::from(code)
}
