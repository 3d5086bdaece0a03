//! Command line of netmon-tui: where the daemon is and where to log.
//! Parsing only; no I/O.

use std::path::PathBuf;

use clap::Parser;

/// Live dashboard of netmond: per-process network rates, connections,
/// remote hosts, interfaces and history. Keys: h or ? inside.
#[derive(Debug, Parser)]
#[command(name = "netmon-tui", version, about)]
pub struct Cli {
    /// netmond's socket [default: $NETMON_SOCKET, else /run/netmon/netmond.sock]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Append a log to FILE (nothing is ever logged to the terminal)
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Show times and today's history in UTC instead of the local time zone
    #[arg(long)]
    pub utc: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn socket_and_log_flags_parse() {
        let cli = Cli::parse_from(["netmon-tui", "--socket", "/tmp/s.sock", "--log", "/tmp/l"]);
        assert_eq!(cli.socket, Some(PathBuf::from("/tmp/s.sock")));
        assert_eq!(cli.log, Some(PathBuf::from("/tmp/l")));
    }
}
