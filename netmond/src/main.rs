//! netmond binary: parses flags and hands over to `netmond::daemon::run`.

use clap::{CommandFactory, Parser};

fn main() -> std::process::ExitCode {
    if let Some(dir) = netmon_proto::cli_assets::requested() {
        return match netmon_proto::cli_assets::generate(netmond::daemon::Cli::command(), "8", &dir) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("netmond: cannot write man page and completions to '{}': {e}", dir.display());
                std::process::ExitCode::FAILURE
            }
        };
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
