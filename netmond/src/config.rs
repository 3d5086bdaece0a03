//! Configuration: the TOML file (`FileConfig`, pure serde, no I/O) and the
//! flags merged over it into the resolved `Config`. Nothing else reads config.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default path of the configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/netmon/netmond.toml";
/// Default path of the SQLite database.
pub const DEFAULT_DB: &str = "/var/lib/netmon/netmon.db";
/// Default group allowed to open the socket.
pub const DEFAULT_GROUP: &str = "netmon";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file '{}'", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// toml's message names the key, the line and the column.
    #[error("invalid config file '{}': {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for '{key}': {message}")]
    Value { key: &'static str, message: String },
}

/// `[daemon]` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSection {
    /// Unix socket the API is served on.
    pub socket: PathBuf,
    /// Group that may open the socket (read access).
    pub group: String,
    /// If set, only root and members of this group may start/stop/reset and change thresholds.
    pub control_group: Option<String>,
    /// Start monitoring as soon as the daemon starts.
    pub autostart: bool,
    /// Aggregation tick in milliseconds: rates are bytes per tick scaled to seconds.
    pub tick_ms: u64,
    /// Log filter (tracing env-filter syntax), overridden by RUST_LOG.
    pub log_level: String,
}

impl Default for DaemonSection {
    fn default() -> Self {
        Self {
            socket: PathBuf::from(netmon_proto::DEFAULT_SOCKET),
            group: DEFAULT_GROUP.to_owned(),
            control_group: None,
            autostart: true,
            tick_ms: 1000,
            log_level: "info".to_owned(),
        }
    }
}

/// `[capture]` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureSection {
    /// Interfaces to capture; empty = every interface that is up except loopback, including ones that appear later.
    pub interfaces: Vec<String>,
    /// Also count loopback traffic (each byte is then seen twice: once per end).
    pub include_loopback: bool,
    /// Bytes captured per packet: headers only.
    pub snaplen: u32,
    /// Kernel capture buffer per interface, MiB.
    pub buffer_mib: u32,
    /// Most flows tracked at once; beyond this the idlest are evicted (and counted).
    pub max_flows: usize,
    /// Seconds without a packet after which a flow is forgotten.
    pub flow_idle_secs: u64,
}

impl Default for CaptureSection {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            include_loopback: false,
            snaplen: 192,
            buffer_mib: 32,
            max_flows: 200_000,
            flow_idle_secs: 120,
        }
    }
}

/// `[store]` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// SQLite database file.
    pub path: PathBuf,
    /// Seconds between batched writes.
    pub flush_interval_secs: u64,
    /// Days per-minute samples are kept.
    pub minute_retention_days: u32,
    /// Days hourly rollups are kept.
    pub hourly_retention_days: u32,
    /// Days daily rollups (and closed alerts) are kept.
    pub daily_retention_days: u32,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_DB),
            flush_interval_secs: 10,
            minute_retention_days: 7,
            hourly_retention_days: 90,
            daily_retention_days: 365,
        }
    }
}

/// The file as written by the user. Unknown keys are errors.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub daemon: DaemonSection,
    pub capture: CaptureSection,
    pub store: StoreSection,
}

impl FileConfig {
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " | "),
        })
    }

    /// The example file shipped as `/etc/netmon/netmond.toml`: every key,
    /// commented out, at its default value.
    pub fn example() -> String {
        let d = FileConfig::default();
        let mut out = String::from(
            "# netmond configuration. Every key is shown at its default value, commented out.\n\
             # Command-line flags beat this file. Unknown keys are an error.\n",
        );
        let mut section = |name: &str, keys: &[(&str, &str, String)]| {
            out.push_str(&format!("\n[{name}]\n"));
            for (key, doc, value) in keys {
                out.push_str(&format!("## {doc}\n# {key} = {value}\n"));
            }
        };
        let q = |s: &str| format!("{s:?}");
        section(
            "daemon",
            &[
                (
                    "socket",
                    "Unix socket the API is served on (root:group, mode 0660).",
                    q(&d.daemon.socket.display().to_string()),
                ),
                (
                    "group",
                    "Group whose members may read from the socket.",
                    q(&d.daemon.group),
                ),
                (
                    "control_group",
                    "If set, only root and this group may start/stop/reset and change thresholds.",
                    q("netmon-admin"),
                ),
                (
                    "autostart",
                    "Start monitoring when the daemon starts.",
                    d.daemon.autostart.to_string(),
                ),
                (
                    "tick_ms",
                    "Aggregation tick in milliseconds; rates are per second over the last tick.",
                    d.daemon.tick_ms.to_string(),
                ),
                (
                    "log_level",
                    "Log filter (tracing env-filter syntax); RUST_LOG overrides it.",
                    q(&d.daemon.log_level),
                ),
            ],
        );
        section(
            "capture",
            &[
                ("interfaces", "Interfaces to capture; empty = every interface that is up except loopback, also ones that appear later.", "[]".to_owned()),
                ("include_loopback", "Count loopback traffic too (each byte is then seen at both ends).", d.capture.include_loopback.to_string()),
                ("snaplen", "Bytes captured per packet: headers and the first payload bytes only.", d.capture.snaplen.to_string()),
                ("buffer_mib", "Kernel capture buffer per interface, MiB.", d.capture.buffer_mib.to_string()),
                ("max_flows", "Most flows tracked at once; the idlest are evicted beyond it (counted in status).", d.capture.max_flows.to_string()),
                ("flow_idle_secs", "Seconds without a packet after which a flow is forgotten.", d.capture.flow_idle_secs.to_string()),
            ],
        );
        section(
            "store",
            &[
                (
                    "path",
                    "SQLite database file.",
                    q(&d.store.path.display().to_string()),
                ),
                (
                    "flush_interval_secs",
                    "Seconds between batched writes to the database.",
                    d.store.flush_interval_secs.to_string(),
                ),
                (
                    "minute_retention_days",
                    "Days per-minute samples are kept (reports and export at minute resolution).",
                    d.store.minute_retention_days.to_string(),
                ),
                (
                    "hourly_retention_days",
                    "Days hourly rollups are kept.",
                    d.store.hourly_retention_days.to_string(),
                ),
                (
                    "daily_retention_days",
                    "Days daily rollups and closed alerts are kept.",
                    d.store.daily_retention_days.to_string(),
                ),
            ],
        );
        out
    }
}

/// Flags that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub socket: Option<PathBuf>,
    pub db: Option<PathBuf>,
    pub interfaces: Vec<String>,
    pub group: Option<String>,
}

/// The configuration the daemon runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub config_path: Option<PathBuf>,
    pub daemon: DaemonSection,
    pub capture: CaptureSection,
    pub store: StoreSection,
}

impl Config {
    /// What the store runs with.
    pub fn store_options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions {
            flush_interval: std::time::Duration::from_secs(self.store.flush_interval_secs),
            retention: crate::store::Retention {
                minute_days: self.store.minute_retention_days,
                hour_days: self.store.hourly_retention_days,
                day_days: self.store.daily_retention_days,
            },
        }
    }

    /// Reads `path` (a missing default file is fine; a missing explicit file
    /// is not), merges the flags over it and validates values.
    pub fn load(path: Option<&Path>, flags: Overrides) -> Result<Config, ConfigError> {
        let (file, used) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                (FileConfig::parse(&text, p)?, Some(p.to_path_buf()))
            }
            None => {
                let p = Path::new(DEFAULT_CONFIG);
                match std::fs::read_to_string(p) {
                    Ok(text) => (FileConfig::parse(&text, p)?, Some(p.to_path_buf())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        (FileConfig::default(), None)
                    }
                    Err(source) => {
                        return Err(ConfigError::Read {
                            path: p.to_path_buf(),
                            source,
                        })
                    }
                }
            }
        };
        Self::resolve(file, used, flags)
    }

    pub fn resolve(
        file: FileConfig,
        config_path: Option<PathBuf>,
        flags: Overrides,
    ) -> Result<Config, ConfigError> {
        let mut c = Config {
            config_path,
            daemon: file.daemon,
            capture: file.capture,
            store: file.store,
        };
        if let Some(s) = flags.socket {
            c.daemon.socket = s;
        }
        if let Some(d) = flags.db {
            c.store.path = d;
        }
        if !flags.interfaces.is_empty() {
            c.capture.interfaces = flags.interfaces;
        }
        if let Some(g) = flags.group {
            c.daemon.group = g;
        }
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, message: &str| {
            Err(ConfigError::Value {
                key,
                message: message.to_owned(),
            })
        };
        if !(100..=60_000).contains(&self.daemon.tick_ms) {
            return bad("daemon.tick_ms", "must be between 100 and 60000");
        }
        if self.daemon.group.is_empty() {
            return bad("daemon.group", "must not be empty");
        }
        if self.daemon.control_group.as_deref() == Some("") {
            return bad(
                "daemon.control_group",
                "must not be empty when set (remove the key instead)",
            );
        }
        if self.daemon.socket.as_os_str().is_empty() || self.daemon.socket.file_name().is_none() {
            return bad("daemon.socket", "must be a file path");
        }
        if !(64..=65_535).contains(&self.capture.snaplen) {
            return bad("capture.snaplen", "must be between 64 and 65535");
        }
        if !(1..=2048).contains(&self.capture.buffer_mib) {
            return bad("capture.buffer_mib", "must be between 1 and 2048");
        }
        if !(1_000..=10_000_000).contains(&self.capture.max_flows) {
            return bad("capture.max_flows", "must be between 1000 and 10000000");
        }
        if self.capture.flow_idle_secs == 0 {
            return bad("capture.flow_idle_secs", "must be at least 1");
        }
        if self.store.flush_interval_secs == 0 || self.store.flush_interval_secs > 3600 {
            return bad("store.flush_interval_secs", "must be between 1 and 3600");
        }
        for (key, days) in [
            (
                "store.minute_retention_days",
                self.store.minute_retention_days,
            ),
            (
                "store.hourly_retention_days",
                self.store.hourly_retention_days,
            ),
            (
                "store.daily_retention_days",
                self.store.daily_retention_days,
            ),
        ] {
            if !(1..=36_500).contains(&days) {
                return bad(key, "must be between 1 and 36500 days");
            }
        }
        if let Some(i) = self
            .capture
            .interfaces
            .iter()
            .find(|i| i.is_empty() || i.len() > 15 || i.contains('/'))
        {
            return Err(ConfigError::Value {
                key: "capture.interfaces",
                message: format!("'{i}' is not an interface name"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = FileConfig::parse(
            "[daemon]\nautostart = true\nsokcet = \"/x\"\n",
            Path::new("t.toml"),
        )
        .expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains("sokcet"), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn bad_value_type_names_key() {
        let msg = FileConfig::parse("[capture]\nsnaplen = \"big\"\n", Path::new("t.toml"))
            .expect_err("must fail")
            .to_string();
        assert!(msg.contains("snaplen") && msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn flags_beat_file() {
        let file = FileConfig::parse(
            "[daemon]\nsocket = \"/a.sock\"\n[store]\npath = \"/a.db\"\n",
            Path::new("t"),
        )
        .expect("parses");
        let c = Config::resolve(
            file,
            None,
            Overrides {
                socket: Some("/b.sock".into()),
                interfaces: vec!["eth0".into()],
                ..Default::default()
            },
        )
        .expect("valid");
        assert_eq!(c.daemon.socket, PathBuf::from("/b.sock"));
        assert_eq!(c.store.path, PathBuf::from("/a.db"));
        assert_eq!(c.capture.interfaces, vec!["eth0".to_owned()]);
    }

    #[test]
    fn out_of_range_value_is_rejected_with_key() {
        let file = FileConfig::parse("[daemon]\ntick_ms = 5\n", Path::new("t")).expect("parses");
        let msg = Config::resolve(file, None, Overrides::default())
            .expect_err("invalid")
            .to_string();
        assert!(msg.contains("daemon.tick_ms"), "{msg}");
    }

    #[test]
    fn example_parses_to_defaults_when_uncommented() {
        let uncommented: String = FileConfig::example()
            .lines()
            .filter_map(|l| {
                l.strip_prefix("# ")
                    .filter(|l| l.contains(" = "))
                    .or(l.starts_with('[').then_some(l))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let parsed = FileConfig::parse(&uncommented, Path::new("example")).expect("example parses");
        let mut want = FileConfig::default();
        want.daemon.control_group = Some("netmon-admin".to_owned());
        assert_eq!(parsed, want);
    }

    #[test]
    fn shipped_example_config_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/netmond.toml");
        let generated = FileConfig::example();
        if std::env::var_os("NETMON_BLESS").is_some() {
            std::fs::write(path, &generated).expect("write example");
        }
        let shipped = std::fs::read_to_string(path).expect("packaging/netmond.toml exists");
        assert_eq!(
            shipped, generated,
            "packaging/netmond.toml is stale: rerun with NETMON_BLESS=1"
        );
    }
}
