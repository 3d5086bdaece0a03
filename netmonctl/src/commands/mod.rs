//! Dispatch from the parsed command line to one module per command group.
//! Arguments are checked before connecting, so a usage error is exit 2 even
//! when the daemon is down.

mod control;
mod follow;
mod history;
mod live;
mod stats;
mod threshold;

use std::io::Write;
use std::path::Path;

use netmon_proto::v1::netmon_client::NetmonClient;
use tonic::transport::Channel;

use crate::cli::{Cli, Command, ReportBy, ThresholdCmd};
use crate::error::{CtlError, Result};

pub type Client = NetmonClient<Channel>;

async fn connect(socket: Option<&Path>) -> Result<Client> {
    Ok(netmon_proto::connect(&netmon_proto::resolve_socket(socket)).await?)
}

pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<()> {
    let socket = cli.socket.as_deref();
    let json = cli.json;
    match cli.command {
        Command::Status => control::status(connect(socket).await?, json, out).await,
        Command::Start { interfaces } => {
            control::start(connect(socket).await?, interfaces, json, out).await
        }
        Command::Stop => control::stop(connect(socket).await?, json, out).await,
        Command::Reset => control::reset(connect(socket).await?, json, out).await,
        Command::Top {
            limit,
            sort,
            only_alive,
        } => live::top(connect(socket).await?, limit, sort, only_alive, json, out).await,
        Command::Watch { interval, limit } => {
            live::watch(connect(socket).await?, interval, limit, json, out).await
        }
        Command::Connections { pid, limit } => {
            live::connections(connect(socket).await?, pid, limit, json, out).await
        }
        Command::Interfaces => live::interfaces(connect(socket).await?, json, out).await,
        Command::Hosts { limit } => live::hosts(connect(socket).await?, limit, json, out).await,
        Command::Stats { limit } => stats::stats(connect(socket).await?, limit, json, out).await,
        Command::Threshold(ThresholdCmd::List) => {
            threshold::list(connect(socket).await?, json, out).await
        }
        Command::Threshold(ThresholdCmd::Set(args)) => {
            let req = threshold::set_request(&args)?;
            threshold::set(connect(socket).await?, req, json, out).await
        }
        Command::Threshold(ThresholdCmd::Clear(args)) => {
            threshold::clear(
                connect(socket).await?,
                threshold::clear_request(&args),
                json,
                out,
            )
            .await
        }
        Command::Alerts { follow, notify, .. } if follow || notify => {
            follow::follow(socket, json, notify, out).await
        }
        Command::Alerts { since, limit, .. } => {
            history::alerts(connect(socket).await?, since, limit, json, out).await
        }
        Command::Sessions { since, limit } => {
            history::sessions(connect(socket).await?, since, limit, json, out).await
        }
        Command::Report {
            day,
            since,
            by,
            limit,
            every,
            process,
        } => {
            if process.is_some() && !matches!(by, Some(ReportBy::Host | ReportBy::Category)) {
                return Err(CtlError::Usage(
                    "--process needs --by host or --by category".into(),
                ));
            }
            let req = history::report_request(
                history::ReportArgs {
                    day,
                    since,
                    by: by.unwrap_or(ReportBy::Process),
                    limit,
                    every,
                    process,
                },
                crate::when::now_ms(),
                crate::when::zone(),
            );
            history::report(connect(socket).await?, req, by, every, json, out).await
        }
        Command::Export {
            format,
            since,
            until,
            output,
        } => {
            let req =
                history::export_request(since, until, crate::when::now_ms(), crate::when::zone())?;
            history::export(connect(socket).await?, req, format, output.as_deref(), out).await
        }
    }
}
