//! netmon-tui: the live terminal dashboard of netmond. This file parses the
//! command line, sets up the optional log file and the runtime, and reports errors.

mod app;
mod cli;
mod conn;
mod input;
mod run;
mod series;
mod term;
mod ui;
mod units;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

fn main() -> ExitCode {
    if let Some(code) =
        netmon_proto::cli_assets::run_if_requested(<cli::Cli as clap::CommandFactory>::command, "1")
    {
        return code;
    }
    let cli = cli::Cli::parse();
    match start(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("netmon-tui: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn start(cli: &cli::Cli) -> anyhow::Result<()> {
    if let Some(path) = &cli.log {
        init_log(path)?;
    }
    if let Some(error) = units::init_zone(cli.utc) {
        // Never on the terminal: the status bar's clock says "UTC".
        tracing::warn!(%error, "showing UTC");
    }
    let socket = netmon_proto::resolve_socket(cli.socket.as_deref());
    let color = ui::style::color_from_env();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run::run(socket, color))
}

fn init_log(path: &Path) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open log file '{}'", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .init();
    Ok(())
}
