//! netmond binary: parses flags and hands over to `netmond::daemon::run`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = netmond::daemon::Cli::parse();
    match netmond::daemon::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netmond: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
