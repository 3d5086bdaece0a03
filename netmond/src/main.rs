//! netmond binary: parses flags and hands over to `netmond::daemon::run`.

use clap::{CommandFactory, Parser};

fn main() -> std::process::ExitCode {
    if let Some(code) =
        netmon_proto::cli_assets::run_if_requested(netmond::daemon::Cli::command, "8")
    {
        return code;
    }
    let cli = netmond::daemon::Cli::parse();
    match netmond::daemon::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netmond: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
