//! The command line (design.md §3), as clap derive types. Values that clap
//! can check alone are parsed here, so a bad one is a usage error (exit 2).

use std::path::PathBuf;

use clap::{ArgGroup, Parser, Subcommand, ValueEnum};

use netmon_proto::zone::Date;

use crate::when::{self, When};

#[derive(Debug, Parser)]
#[command(
    name = "netmonctl",
    version,
    about = "Control and query netmond, the per-process network monitor"
)]
#[command(
    after_help = "Exit codes: 0 ok, 1 the daemon refused or failed, 2 usage error, 3 netmond cannot be reached.\n\
Times are shown and days cut in the local time zone (TZ, else /etc/localtime): a bare date \
means local midnight and shown times carry their UTC offset; with --utc, UTC throughout. \
JSON times are always RFC 3339 UTC."
)]
pub struct Cli {
    /// netmond's socket [default: $NETMON_SOCKET, else /run/netmon/netmond.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print one JSON document on stdout (JSON lines for `watch` and `alerts --follow`)
    #[arg(long, global = true)]
    pub json: bool,
    /// Show times and cut days, hours and months in UTC instead of the local time zone
    #[arg(long, global = true)]
    pub utc: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Daemon state, version, uptime, interfaces, session, counters and storage health
    Status,
    /// Start monitoring (idempotent)
    Start {
        /// Interface to capture; repeat for more [default: every interface that is up but loopback]
        #[arg(long = "interface", short = 'i', value_name = "IF")]
        interfaces: Vec<String>,
    },
    /// Stop monitoring (idempotent)
    Stop,
    /// Zero the live totals (history is untouched)
    Reset,
    /// One snapshot of the per-process table
    Top {
        /// Show at most N processes (0 = all)
        #[arg(long, short = 'n', default_value_t = 20, value_name = "N")]
        limit: u32,
        #[arg(long, value_enum, default_value_t = SortKey::Total)]
        sort: SortKey,
        /// Leave out processes that have exited
        #[arg(long)]
        only_alive: bool,
    },
    /// Stream updates until interrupted (JSON lines with --json)
    Watch {
        /// Seconds between updates (rounded to whole daemon ticks)
        #[arg(long, default_value_t = 1, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..))]
        interval: u32,
        /// Processes shown per update in the human output
        #[arg(long, short = 'n', default_value_t = 10, value_name = "N")]
        limit: u32,
    },
    /// List, set or clear alert thresholds
    #[command(subcommand)]
    Threshold(ThresholdCmd),
    /// Live flows
    Connections {
        /// Only flows owned by this process
        #[arg(long)]
        pid: Option<u32>,
        /// Show at most N flows (0 = all)
        #[arg(long, short = 'n', default_value_t = 0, value_name = "N")]
        limit: u32,
    },
    /// Per-interface counters: the kernel's and netmond's
    Interfaces,
    /// Top remote hosts
    Hosts {
        #[arg(long, short = 'n', default_value_t = 20, value_name = "N")]
        limit: u32,
    },
    /// Packet statistics of the last tick: packets/s per protocol, protocol shares, size histogram, top talkers
    Stats {
        /// Top talkers shown (0 = all)
        #[arg(long, short = 'n', default_value_t = 10, value_name = "N")]
        limit: u32,
    },
    /// Alerts opened or closed since WHEN, or as they happen (--follow)
    Alerts {
        /// A duration back (30m, 2h, 7d, 1w), a date YYYY-MM-DD (local midnight) or RFC 3339 [default: 1d]
        #[arg(long, value_name = "WHEN", value_parser = when::parse_when)]
        since: Option<When>,
        #[arg(long, short = 'n', default_value_t = 0, value_name = "N")]
        limit: u32,
        /// Print one line per alert opened or closed from now on (JSON lines with
        /// --json) until interrupted; reconnects when netmond restarts
        #[arg(long, short = 'f', conflicts_with_all = ["since", "limit"])]
        follow: bool,
        /// Follow, and also show each alert opened or closed as a desktop
        /// notification (session D-Bus: DBUS_SESSION_BUS_ADDRESS, else
        /// $XDG_RUNTIME_DIR/bus); exit 4 when there is none
        #[arg(long, conflicts_with_all = ["since", "limit"])]
        notify: bool,
    },
    /// Monitoring sessions
    Sessions {
        /// A duration back, a date YYYY-MM-DD (local midnight) or RFC 3339 [default: all]
        #[arg(long, value_name = "WHEN", value_parser = when::parse_when)]
        since: Option<When>,
        #[arg(long, short = 'n', default_value_t = 0, value_name = "N")]
        limit: u32,
    },
    /// Traffic report over a day or a recent span [default: today]
    Report {
        /// A local day, midnight to midnight (23 or 25 hours across a DST change)
        #[arg(long, value_name = "YYYY-MM-DD", value_parser = when::parse_day, conflicts_with = "since")]
        day: Option<Date>,
        /// The last DUR (30m, 2h, 7d, 1w)
        #[arg(long, value_name = "DUR", value_parser = when::parse_duration)]
        since: Option<std::time::Duration>,
        /// What a row is [default: process]
        #[arg(long, value_enum)]
        by: Option<ReportBy>,
        /// Rows (per period with --every)
        #[arg(long, short = 'n', default_value_t = 10, value_name = "N")]
        limit: u32,
        /// One row of totals per local hour, day or calendar month (UTC with --utc); with --by, each period's top rows
        #[arg(long, value_enum, value_name = "PERIOD")]
        every: Option<Every>,
        /// Only this program's traffic (its name, as `top` shows it), by the hosts it talked to: with --by host or --by category
        #[arg(long, value_name = "NAME")]
        process: Option<String>,
    },
    /// Export per-minute history as CSV or JSON, streamed
    Export {
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// A duration back, a date YYYY-MM-DD (local midnight) or RFC 3339 [default: everything]
        #[arg(long, value_name = "WHEN", value_parser = when::parse_when)]
        since: Option<When>,
        /// End of the range, exclusive [default: now]
        #[arg(long, value_name = "WHEN", value_parser = when::parse_when)]
        until: Option<When>,
        /// Write here instead of stdout (replaced only once the export completed)
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ThresholdCmd {
    /// Show the thresholds in force
    List,
    /// Add or replace a threshold
    Set(SetArgs),
    /// Remove thresholds
    Clear(ClearArgs),
}

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// Rate: 500KB/s, 500kB/s, 1MiB/s, 1.5MiB/s, 20Mbit/s, 20Mbps or bytes/s;
    /// for --kind quota an amount per day (2GiB); not used by --kind new-process
    #[arg(value_name = "RATE")]
    pub rate: Option<String>,
    /// Only processes with this name (comm)
    #[arg(long, value_name = "NAME", conflicts_with = "pid")]
    pub process: Option<String>,
    /// Only this process
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    #[arg(long, value_enum, default_value_t = DirectionArg::Total)]
    pub direction: DirectionArg,
    #[arg(long, value_enum, default_value_t = KindArg::Rate)]
    pub kind: KindArg,
}

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("what").required(true).args(["all", "id", "process", "pid", "default"])))]
pub struct ClearArgs {
    /// Every threshold set through the API
    #[arg(long)]
    pub all: bool,
    #[arg(long, value_name = "N")]
    pub id: Option<u64>,
    #[arg(long, value_name = "NAME")]
    pub process: Option<String>,
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// The default rule (no process selector)
    #[arg(long)]
    pub default: bool,
    /// Only thresholds of this kind
    #[arg(long, value_enum)]
    pub kind: Option<KindArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SortKey {
    Up,
    Down,
    Total,
    Name,
}

impl SortKey {
    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Up => "up",
            SortKey::Down => "down",
            SortKey::Total => "total",
            SortKey::Name => "name",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    Up,
    Down,
    Total,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// Rate of one process, or the default for every process
    Rate,
    /// Rate of the whole host
    Host,
    /// Bytes per process per day
    Quota,
    /// Notice the first time an executable is seen on the network
    NewProcess,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportBy {
    Process,
    Host,
    Protocol,
    Interface,
    User,
    Category,
    Container,
}

/// Calendar periods of `report --every`, in the display zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Every {
    Hour,
    Day,
    Month,
}

impl Every {
    pub fn as_str(self) -> &'static str {
        match self {
            Every::Hour => "hour",
            Every::Day => "day",
            Every::Month => "month",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// RFC 4180 CSV with a header row
    Csv,
    /// One JSON array, written row by row
    Json,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn globals_work_after_the_command() {
        let cli = Cli::try_parse_from(["netmonctl", "top", "--json", "--socket", "/tmp/s"])
            .expect("parses");
        assert!(cli.json);
        assert_eq!(cli.socket.as_deref(), Some(std::path::Path::new("/tmp/s")));
    }

    #[test]
    fn clear_needs_exactly_one_selector() {
        assert!(Cli::try_parse_from(["netmonctl", "threshold", "clear"]).is_err());
        assert!(
            Cli::try_parse_from(["netmonctl", "threshold", "clear", "--all", "--pid", "3"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["netmonctl", "threshold", "clear", "--pid", "3"]).is_ok());
    }

    /// A flag as written in a synopsis: its values (`[]` for a switch;
    /// `["N"]`, or the choices `["up", "down"]`).
    type Flags = std::collections::BTreeMap<String, Vec<String>>;

    /// The flags of one synopsis segment (`top [--limit N] [--sort up|down]`,
    /// `--all|--id N|--pid PID`): a flag's values are the leading
    /// non-flag alternatives of the next word.
    fn synopsis_flags(words: &[&str]) -> Flags {
        let mut flags = Flags::new();
        for (i, w) in words.iter().enumerate() {
            let pieces: Vec<&str> = w.split('|').collect();
            for (k, p) in pieces.iter().enumerate() {
                let Some(name) = p.strip_prefix("--") else {
                    continue;
                };
                // A value is inside the flag's brackets: `[--json] <command>` has none.
                let values = match words.get(i + 1).filter(|n| **n != "]") {
                    Some(next) if k == pieces.len() - 1 => next
                        .split('|')
                        .take_while(|v| !v.starts_with("--"))
                        .map(str::to_owned)
                        .collect(),
                    _ => Vec::new(),
                };
                flags.insert(name.to_owned(), values);
            }
        }
        flags
    }

    /// `netmonctl` commands in README's synopsis: "top" or "threshold set"
    /// -> its flags; "" -> the global ones.
    fn readme_synopsis() -> std::collections::BTreeMap<String, Flags> {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("```\nnetmonctl [")
            .expect("README has the netmonctl synopsis block");
        let block = &readme[start + 4..];
        let block = &block[..block.find("```").expect("the block ends")];
        // Continuation lines start with '|' or '['.
        let mut lines: Vec<String> = Vec::new();
        for l in block.lines() {
            let t = l.trim();
            match lines.last_mut() {
                Some(last) if t.starts_with('|') || t.starts_with('[') => {
                    last.push(' ');
                    last.push_str(t);
                }
                _ => lines.push(t.to_owned()),
            }
        }
        let top: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect();
        let mut out = std::collections::BTreeMap::new();
        let clean = |s: &str| s.replace('[', " ").replace(']', " ] ").replace("...", " ");
        let first = clean(&lines[0]);
        let words: Vec<&str> = first.split_whitespace().collect();
        out.insert(String::new(), synopsis_flags(&words));
        for line in &lines[1..] {
            let mut parent = String::new();
            for seg in line.split(" | ") {
                let seg = clean(seg);
                let words: Vec<&str> = seg.split_whitespace().collect();
                let Some(&name) = words.first() else { continue };
                let (key, rest) = if top.iter().any(|t| t == name) {
                    parent = name.to_owned();
                    let sub = Cli::command()
                        .find_subcommand(name)
                        .is_some_and(|c| c.has_subcommands());
                    if sub {
                        (format!("{name} {}", words[1]), &words[2..])
                    } else {
                        (name.to_owned(), &words[1..])
                    }
                } else {
                    (format!("{parent} {name}"), &words[1..])
                };
                assert!(
                    out.insert(key.clone(), synopsis_flags(rest)).is_none(),
                    "{key} twice"
                );
            }
        }
        out
    }

    /// The same from clap: every leaf command's long flags and their values.
    fn clap_synopsis() -> std::collections::BTreeMap<String, Flags> {
        let mut cmd = Cli::command();
        cmd.build();
        let flags = |c: &clap::Command, globals: bool| -> Flags {
            c.get_arguments()
                .filter(|a| a.is_global_set() == globals)
                .filter_map(|a| {
                    let long = a.get_long()?;
                    if matches!(long, "help" | "version") {
                        return None;
                    }
                    let values = if !a.get_action().takes_values() {
                        Vec::new()
                    } else if !a.get_possible_values().is_empty() {
                        a.get_possible_values()
                            .iter()
                            .map(|v| v.get_name().to_owned())
                            .collect()
                    } else {
                        a.get_value_names()
                            .map(|v| v.iter().map(ToString::to_string).collect())
                            .unwrap_or_else(|| vec![a.get_id().as_str().to_uppercase()])
                    };
                    Some((long.to_owned(), values))
                })
                .collect()
        };
        let mut out = std::collections::BTreeMap::new();
        out.insert(String::new(), flags(&cmd, true));
        for c in cmd.get_subcommands().filter(|c| c.get_name() != "help") {
            if c.has_subcommands() {
                for s in c.get_subcommands().filter(|s| s.get_name() != "help") {
                    out.insert(
                        format!("{} {}", c.get_name(), s.get_name()),
                        flags(s, false),
                    );
                }
            } else {
                out.insert(c.get_name().to_owned(), flags(c, false));
            }
        }
        out
    }

    #[test]
    fn readme_synopsis_is_the_help() {
        let readme = readme_synopsis();
        let clap = clap_synopsis();
        for (cmd, want) in &clap {
            let got = readme
                .get(cmd)
                .unwrap_or_else(|| panic!("README's synopsis lacks '{cmd}'"));
            assert_eq!(
                got, want,
                "README's synopsis of '{cmd}' differs from --help"
            );
        }
        for cmd in readme.keys() {
            assert!(
                clap.contains_key(cmd),
                "README's synopsis has '{cmd}', --help does not"
            );
        }
    }

    #[test]
    fn report_day_and_since_conflict() {
        assert!(Cli::try_parse_from([
            "netmonctl",
            "report",
            "--day",
            "2026-01-01",
            "--since",
            "2h"
        ])
        .is_err());
        assert!(Cli::try_parse_from(["netmonctl", "report", "--day", "2026-1-1x"]).is_err());
    }
}
