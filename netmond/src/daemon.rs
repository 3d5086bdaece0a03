//! Daemon lifecycle: flags, config, logging, socket, store, engine, signals,
//! and an orderly shutdown. `main.rs` only calls `run`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use nix::unistd::Group;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::{Config, Overrides};
use crate::engine::{spawn_ticker, Engine};
use crate::reload::LogLevelHook;
use crate::service::{self, Access};
use crate::store::Store;

/// netmond: per-process network bandwidth monitor daemon.
#[derive(Debug, Parser)]
#[command(name = "netmond", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file [default: /etc/netmon/netmond.toml if present].
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Unix socket to serve the API on (beats the config file).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// SQLite database file (beats the config file).
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Interface to capture; repeat for several (beats the config file).
    #[arg(long = "interface", short = 'i', value_name = "IF")]
    pub interfaces: Vec<String>,
    /// Group allowed to use the socket [default: netmon].
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Check the configuration, print the resolved values and exit.
    #[arg(long)]
    pub check_config: bool,
    /// Print an example configuration file with every key and exit.
    #[arg(long)]
    pub print_example_config: bool,
}

/// Installs the log subscriber; returns how to change its filter later
/// (`daemon.log_level` on reload).
fn init_logging(level: &str) -> LogLevelHook {
    use tracing_subscriber::EnvFilter;
    // RUST_LOG, when set, beats the config file at start and on reload.
    let (filter, from_env) = match EnvFilter::try_from_default_env() {
        Ok(f) => (f, true),
        Err(_) => (
            EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info")),
            false,
        ),
    };
    // Under systemd journald stamps every line itself.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    if journald {
        let b = builder.without_time().with_filter_reloading();
        let handle = b.reload_handle();
        b.init();
        level_hook(handle, from_env)
    } else {
        let b = builder.with_filter_reloading();
        let handle = b.reload_handle();
        b.init();
        level_hook(handle, from_env)
    }
}

fn level_hook<S: 'static>(
    handle: tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, S>,
    from_env: bool,
) -> LogLevelHook {
    Box::new(move |level: &str| {
        if from_env {
            return Err("RUST_LOG is set and beats daemon.log_level".to_owned());
        }
        let filter = tracing_subscriber::EnvFilter::try_new(level)
            .map_err(|e| format!("invalid daemon.log_level '{level}': {e}"))?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}

fn group_gid(name: &str, key: &str) -> anyhow::Result<u32> {
    match Group::from_name(name).with_context(|| format!("cannot look up group '{name}'"))? {
        Some(g) => Ok(g.gid.as_raw()),
        None => bail!(
            "group '{name}' ({key}) does not exist; create it with `groupadd --system {name}` and add users with `usermod -aG {name} USER`"
        ),
    }
}

/// Runs the daemon until SIGTERM/SIGINT. Errors are fatal start-up problems.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.print_example_config {
        print!("{}", crate::config::FileConfig::example());
        return Ok(());
    }
    crate::memory::limit_arenas();
    let flags = Overrides {
        socket: cli.socket,
        db: cli.db,
        interfaces: cli.interfaces,
        group: cli.group,
    };
    let source = crate::reload::Source {
        path: cli.config.clone(),
        flags: flags.clone(),
    };
    let cfg = Config::load(cli.config.as_deref(), flags)?;
    if cli.check_config {
        println!("{cfg:#?}");
        return Ok(());
    }
    let log_level_hook = init_logging(&cfg.daemon.log_level);
    if let Some(w) = cfg.privacy.deprecation() {
        warn!("{w}");
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o027));
    if !nix::unistd::geteuid().is_root() {
        warn!("not running as root: packet capture and attribution will not work");
    }
    let read_gid = group_gid(&cfg.daemon.group, "daemon.group")?;
    let control_gid = cfg
        .daemon
        .control_group
        .as_deref()
        .map(|g| group_gid(g, "daemon.control_group"))
        .transpose()?;

    let nofile = service::limits::raise_fd_limit();
    let limits = service::limits::Limits::for_fd_limit(nofile);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("netmond-rt")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        // First: a SIGTERM or SIGHUP during start-up (loading eBPF takes a
        // moment) waits for the loop below instead of killing the process
        // with its socket left behind.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let bound = service::socket::bind(&cfg.daemon.socket, nix::unistd::Gid::from_raw(read_gid))?;
        info!(socket = %bound.path().display(), version = env!("CARGO_PKG_VERSION"), "netmond listening");
        let zone = crate::clock::zone();
        info!(zone = zone.name(), offset = %netmon_proto::zone::offset_text(zone.offset_secs(crate::clock::now_ms())), "time zone for days and quotas");
        let store = Store::start(&cfg.store.path, cfg.store_options());
        let autostart = cfg.daemon.autostart;
        let metrics_cfg = cfg.metrics.clone();
        let engine = Engine::new(cfg, store);
        engine.set_reload_source(source, Some(log_level_hook));
        let (stop_tx, stop_rx) = watch::channel(false);
        // Off unless `[metrics] listen` is set; a taken port is a start-up
        // error, reported before monitoring starts.
        crate::metrics::start(engine.clone(), &metrics_cfg, stop_rx.clone()).await?;
        if autostart {
            let e = engine.clone();
            match tokio::task::spawn_blocking(move || e.start(Vec::new())).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => error!(error = %e, "monitoring did not start; the daemon keeps serving"),
                Err(e) => error!(%e, "monitoring start panicked"),
            }
        }
        let ticker = spawn_ticker(&engine);
        let listener = bound.listener.try_clone().context("cannot duplicate the listening socket")?;
        let server = tokio::spawn(service::serve(engine.clone(), listener, Access { read_gid, control_gid }, limits, stop_rx));
        let mut server = server;
        loop {
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
                _ = int.recv() => { info!("SIGINT: shutting down"); break; }
                _ = hup.recv() => {
                    info!("SIGHUP: reloading the configuration");
                    let e = engine.clone();
                    // The outcome is logged by `reload` itself.
                    if let Err(e) = tokio::task::spawn_blocking(move || e.reload()).await {
                        error!(%e, "reload panicked");
                    }
                }
                r = &mut server => {
                    match r {
                        Ok(Ok(())) => warn!("server ended unexpectedly"),
                        Ok(Err(e)) => error!(error = %e, "server failed"),
                        Err(e) => error!(%e, "server task failed"),
                    }
                    break;
                }
            }
        }
        let _ = stop_tx.send(true);
        ticker.abort();
        // Stop accepting first: the socket goes before the final flush.
        drop(bound);
        let e = engine.clone();
        let _ = tokio::task::spawn_blocking(move || e.stop()).await;
        engine.shutdown().await;
        info!("netmond stopped");
        anyhow::Ok(())
    })
}
