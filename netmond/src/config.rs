//! Configuration: the TOML file (`FileConfig`, pure serde, no I/O) and the
//! flags merged over it into the resolved `Config`. Nothing else reads config.

use std::collections::BTreeMap;
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
    #[error("invalid host categories")]
    Categories(#[source] crate::hostnames::category::RulesError),
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
    /// Seconds an exited process keeps its own row in the live table before
    /// its totals fold into its program's row.
    pub exited_keep_secs: u64,
    /// Most exited processes kept as their own rows; beyond it the longest
    /// gone fold into their programs' rows first.
    pub exited_keep_max: usize,
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
            exited_keep_secs: 600,
            exited_keep_max: 1000,
        }
    }
}

/// `[capture]` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureSection {
    /// "auto": capture, falling back to basic mode when capture cannot start;
    /// "capture": capture or fail; "basic": no capture, kernel TCP counters only.
    pub mode: CaptureMode,
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
    /// Who owns the bytes: eBPF socket accounting or socket lookups.
    pub attribution: Attribution,
    /// Named network namespaces (`ip netns` names, /run/netns) whose sockets are
    /// not this host's: their bytes are neither credited nor totalled.
    pub exclude_netns: Vec<String>,
}

impl Default for CaptureSection {
    fn default() -> Self {
        Self {
            mode: CaptureMode::Auto,
            interfaces: Vec::new(),
            include_loopback: false,
            snaplen: 192,
            buffer_mib: 16,
            max_flows: 100_000,
            flow_idle_secs: 120,
            attribution: Attribution::Auto,
            exclude_netns: Vec::new(),
        }
    }
}

/// How per-process bytes are measured.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CaptureMode {
    /// Packet capture; basic mode when capture cannot start on any interface.
    #[default]
    Auto,
    /// Packet capture only: an error when it cannot start.
    Capture,
    /// No capture: interface counters plus per-process TCP payload bytes from the
    /// kernel's per-socket statistics (sock_diag `tcp_info`).
    Basic,
}

impl CaptureMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureMode::Auto => "auto",
            CaptureMode::Capture => "capture",
            CaptureMode::Basic => "basic",
        }
    }
}

/// How bytes are tied to processes in capture mode.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Attribution {
    /// eBPF socket accounting where the kernel allows it, socket lookups elsewhere.
    #[default]
    Auto,
    /// eBPF socket accounting or fail to start monitoring.
    Ebpf,
    /// Per-flow sock_diag lookups and the /proc inode index.
    SocketLookup,
}

impl Attribution {
    pub fn as_str(self) -> &'static str {
        match self {
            Attribution::Auto => "auto",
            Attribution::Ebpf => "ebpf",
            Attribution::SocketLookup => "socket-lookup",
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
    /// Remote hosts kept per process per minute; the rest are summed in one
    /// "other hosts" row.
    pub process_hosts_per_minute: u32,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_DB),
            flush_interval_secs: 10,
            minute_retention_days: 7,
            hourly_retention_days: 90,
            daily_retention_days: 365,
            process_hosts_per_minute: 20,
        }
    }
}

/// `[names]` section: host names and categories (issue 4).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NamesSection {
    /// Learn remote host names passively from DNS answers, TLS SNI and HTTP Host headers.
    pub enabled: bool,
    /// Ask the system resolver for PTR names of remote hosts (sends DNS queries).
    pub reverse_dns: bool,
    /// Extra category rules (`category = ["suffix", ...]`) over the built-in ones.
    pub categories_file: Option<PathBuf>,
    /// Bytes captured per packet by the name capture (DNS answers, ClientHellos).
    pub snaplen: u32,
    /// Most addresses whose names are kept.
    pub max_entries: usize,
    /// Inline rules, `"suffix" = "category"`, applied last.
    pub categories: BTreeMap<String, String>,
}

impl Default for NamesSection {
    fn default() -> Self {
        Self {
            enabled: true,
            reverse_dns: false,
            categories_file: None,
            snaplen: 1500,
            max_entries: 50_000,
            categories: BTreeMap::new(),
        }
    }
}

/// A byte amount in the file: an integer (bytes) or text with a unit
/// (`"1MiB/s"`, `"2GiB"`), the forms `netmonctl threshold set` accepts.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum AmountValue {
    Bytes(u64),
    Text(String),
}

impl AmountValue {
    fn bytes(&self, key: &'static str, want_rate: bool) -> Result<u64, ConfigError> {
        let n = match self {
            AmountValue::Bytes(n) => *n,
            AmountValue::Text(t) => {
                let a = netmon_proto::units::parse_amount(t).map_err(|e| ConfigError::Value {
                    key,
                    message: e.to_string(),
                })?;
                if a.per_second && !want_rate {
                    return Err(ConfigError::Value {
                        key,
                        message: format!(
                            "'{t}' is a rate; a quota is an amount per day, like \"2GiB\""
                        ),
                    });
                }
                a.bytes
            }
        };
        if n == 0 {
            return Err(ConfigError::Value {
                key,
                message: "must be greater than 0 (remove the key to disable it)".into(),
            });
        }
        Ok(n)
    }
}

/// `[alerts]` section: defaults for thresholds and what to do on an alert.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsSection {
    /// Consecutive ticks above a threshold before an alert opens.
    pub open_after_ticks: u32,
    /// Consecutive ticks below before it closes.
    pub close_after_ticks: u32,
    /// Rate limit for every program (direction total), unless a name rule overrides it.
    pub default_process_rate: Option<AmountValue>,
    /// Rate limit for the whole host (direction total).
    pub host_rate: Option<AmountValue>,
    /// Bytes per UTC day per process name (direction total).
    pub default_daily_quota: Option<AmountValue>,
    /// Notice the first time an executable sends on the network.
    pub new_process_notice: bool,
    /// Command run for every opened/closed alert: argv, no shell.
    pub hook: Option<Vec<String>>,
    /// Seconds the hook may run before it is killed.
    pub hook_timeout_secs: u64,
    /// The unprivileged user the hook runs as.
    pub hook_user: String,
}

impl Default for AlertsSection {
    fn default() -> Self {
        Self {
            open_after_ticks: 3,
            close_after_ticks: 3,
            default_process_rate: None,
            host_rate: None,
            default_daily_quota: None,
            new_process_notice: false,
            hook: None,
            hook_timeout_secs: 10,
            hook_user: "nobody".to_owned(),
        }
    }
}

/// `[alerts]` resolved: amounts in bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    pub settings: crate::alerts::Settings,
    pub rules: crate::alerts::ConfigRules,
    /// Empty = no hook.
    pub hook: Vec<String>,
    pub hook_timeout: std::time::Duration,
    /// Who the hook runs as (never root).
    pub hook_user: crate::alerts::hook::HookUser,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            settings: crate::alerts::Settings::default(),
            rules: crate::alerts::ConfigRules::default(),
            hook: Vec::new(),
            hook_timeout: std::time::Duration::from_secs(10),
            hook_user: crate::alerts::hook::HookUser::NOBODY,
        }
    }
}

impl AlertsSection {
    fn resolve(&self) -> Result<AlertsConfig, ConfigError> {
        let bad = |key, message: &str| ConfigError::Value {
            key,
            message: message.to_owned(),
        };
        if !(1..=3600).contains(&self.open_after_ticks) {
            return Err(bad("alerts.open_after_ticks", "must be between 1 and 3600"));
        }
        if !(1..=3600).contains(&self.close_after_ticks) {
            return Err(bad(
                "alerts.close_after_ticks",
                "must be between 1 and 3600",
            ));
        }
        if !(1..=3600).contains(&self.hook_timeout_secs) {
            return Err(bad(
                "alerts.hook_timeout_secs",
                "must be between 1 and 3600",
            ));
        }
        let hook = self.hook.clone().unwrap_or_default();
        if self.hook.is_some() && hook.first().is_none_or(|p| p.is_empty()) {
            return Err(bad(
                "alerts.hook",
                "must name a program: [\"/path/to/program\", \"arg\", ...] (remove the key for no hook)",
            ));
        }
        if hook.first().is_some_and(|p| !p.starts_with('/')) {
            return Err(bad("alerts.hook", "the program must be an absolute path"));
        }
        // Looked up only when a hook is set: no hook, no need for the user.
        let hook_user = if hook.is_empty() {
            crate::alerts::hook::HookUser::NOBODY
        } else {
            crate::alerts::hook::HookUser::lookup(&self.hook_user)
                .map_err(|m| bad("alerts.hook_user", &m))?
        };
        let amount =
            |v: &Option<AmountValue>, key, rate| v.as_ref().map(|a| a.bytes(key, rate)).transpose();
        Ok(AlertsConfig {
            settings: crate::alerts::Settings {
                open_after_ticks: self.open_after_ticks,
                close_after_ticks: self.close_after_ticks,
            },
            rules: crate::alerts::ConfigRules {
                default_process_rate: amount(
                    &self.default_process_rate,
                    "alerts.default_process_rate",
                    true,
                )?,
                host_rate: amount(&self.host_rate, "alerts.host_rate", true)?,
                default_daily_quota: amount(
                    &self.default_daily_quota,
                    "alerts.default_daily_quota",
                    false,
                )?,
                new_process_notice: self.new_process_notice,
            },
            hook,
            hook_timeout: std::time::Duration::from_secs(self.hook_timeout_secs),
            hook_user,
        })
    }
}

/// `[metrics]` section: the Prometheus endpoint (issue 9).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Address (`ip:port`) of the HTTP endpoint serving `/metrics`; absent = off.
    pub listen: Option<String>,
    /// Processes (by name, user and unit) that keep their own series; the rest are "other".
    pub top_processes: usize,
    /// Also export per-remote-host series, capped like processes (addresses and names leave the machine).
    pub include_hosts: bool,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            listen: None,
            top_processes: 50,
            include_hosts: false,
        }
    }
}

/// `[metrics]` resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// None = no endpoint.
    pub listen: Option<std::net::SocketAddr>,
    pub top_processes: usize,
    pub include_hosts: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            top_processes: 50,
            include_hosts: false,
        }
    }
}

impl MetricsSection {
    fn resolve(&self) -> Result<MetricsConfig, ConfigError> {
        let listen = self
            .listen
            .as_deref()
            .map(|a| {
                a.parse::<std::net::SocketAddr>()
                    .map_err(|e| ConfigError::Value {
                        key: "metrics.listen",
                        message: format!(
                            "'{a}' is not an address and port like \"127.0.0.1:9559\" or \"[::1]:9559\": {e}"
                        ),
                    })
            })
            .transpose()?;
        if self.top_processes > 1000 {
            return Err(ConfigError::Value {
                key: "metrics.top_processes",
                message: "must be between 0 and 1000".into(),
            });
        }
        Ok(MetricsConfig {
            listen,
            top_processes: self.top_processes,
            include_hosts: self.include_hosts,
        })
    }
}

/// The file as written by the user. Unknown keys are errors.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub daemon: DaemonSection,
    pub capture: CaptureSection,
    pub store: StoreSection,
    pub alerts: AlertsSection,
    pub names: NamesSection,
    pub metrics: MetricsSection,
    pub privacy: crate::privacy::PrivacySection,
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
                (
                    "exited_keep_secs",
                    "Seconds an exited process keeps its own row in live totals; then its bytes fold into its program's row (name, exe, user, unit, container). The history database keeps every process.",
                    d.daemon.exited_keep_secs.to_string(),
                ),
                (
                    "exited_keep_max",
                    "Most exited processes kept as their own rows; beyond it the longest gone fold into their programs' rows sooner.",
                    d.daemon.exited_keep_max.to_string(),
                ),
            ],
        );
        section(
            "capture",
            &[
                ("mode", "\"auto\" (capture; basic mode when capture cannot start on any interface), \"capture\" (capture or fail) or \"basic\" (no capture: interface counters plus per-process TCP payload bytes from the kernel's tcp_info; no UDP, no packet statistics).", q(d.capture.mode.as_str())),
                ("interfaces", "Interfaces to capture; empty = every interface that is up except loopback, also ones that appear later.", "[]".to_owned()),
                ("include_loopback", "Count loopback traffic too (each byte is then seen at both ends).", d.capture.include_loopback.to_string()),
                ("snaplen", "Bytes captured per packet: headers and the first payload bytes only.", d.capture.snaplen.to_string()),
                ("buffer_mib", "Kernel capture buffer per interface, MiB.", d.capture.buffer_mib.to_string()),
                ("max_flows", "Most flows tracked at once; the idlest are evicted beyond it (counted in status).", d.capture.max_flows.to_string()),
                ("flow_idle_secs", "Seconds without a packet after which a flow is forgotten.", d.capture.flow_idle_secs.to_string()),
                ("attribution", "Who owns the bytes: \"auto\" (eBPF socket accounting where the kernel allows it, else socket lookups; status says which and why), \"ebpf\" (or fail to start) or \"socket-lookup\" (sock_diag lookups per flow and the /proc inode index).", q(d.capture.attribution.as_str())),
                ("exclude_netns", "Named network namespaces (as `ip netns` lists them) whose sockets are not this host's, e.g. test peers: their bytes are neither credited nor totalled.", "[]".to_owned()),
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
                (
                    "process_hosts_per_minute",
                    "Remote hosts kept per process per minute (`report --by host --process NAME`); the rest of its bytes are summed in one \"other hosts\" row, so totals stay exact.",
                    d.store.process_hosts_per_minute.to_string(),
                ),
            ],
        );
        let a = &d.alerts;
        section(
            "alerts",
            &[
                ("open_after_ticks", "Consecutive ticks above a threshold before an alert opens.", a.open_after_ticks.to_string()),
                ("close_after_ticks", "Consecutive ticks below it before the alert closes.", a.close_after_ticks.to_string()),
                ("default_process_rate", "Rate limit for every program (its processes of one name and exe summed, up + down), unless a rule for its name overrides it; a pid rule judges its process alone. Bytes/s or a rate like \"1MiB/s\", \"20Mbit/s\". Not set: none.", q("5MiB/s")),
                ("host_rate", "Rate limit for the whole host (up + down). Not set: none.", q("50MiB/s")),
                ("default_daily_quota", "Bytes per UTC day per process name (up + down); override per name with `netmonctl threshold set --kind quota --process NAME`. Not set: none.", q("2GiB")),
                ("new_process_notice", "Notice the first time an executable sends on the network.", a.new_process_notice.to_string()),
                ("hook", "Command run for each alert opened or closed, with NETMON_ALERT_* variables; an argv array, never run through a shell. Not set: none.", "[\"/usr/local/bin/netmon-alert\", \"--notify\"]".to_owned()),
                ("hook_timeout_secs", "Seconds the hook may run before it is killed.", a.hook_timeout_secs.to_string()),
                ("hook_user", "The unprivileged user the hook runs as, with no capabilities and no inherited descriptors; root is refused.", q(&a.hook_user)),
            ],
        );
        section(
            "names",
            &[
                ("enabled", "Learn remote host names passively from the DNS answers, TLS SNI and HTTP Host headers this machine sees (a small extra capture).", d.names.enabled.to_string()),
                ("reverse_dns", "Also ask the system resolver for reverse (PTR) names, at most 10 a second. Off by default: it sends queries the user did not ask for.", d.names.reverse_dns.to_string()),
                ("categories_file", "Extra host category rules, `category = [\"suffix\", ...]`, over the built-in ones.", q("/etc/netmon/categories.toml")),
                ("snaplen", "Bytes captured per packet by the name capture.", d.names.snaplen.to_string()),
                ("max_entries", "Most addresses whose names are kept; the soonest to expire go first.", d.names.max_entries.to_string()),
            ],
        );
        section(
            "metrics",
            &[
                ("listen", "Serve Prometheus metrics over HTTP at this address (GET /metrics). Not set: off. Keep it on loopback unless a firewall guards it: it is outside the group-restricted socket.", q("127.0.0.1:9559")),
                ("top_processes", "Processes (by name, user and unit) that keep their own series; the rest add up in process=\"other\".", d.metrics.top_processes.to_string()),
                ("include_hosts", "Also export per-remote-host series (names, else addresses; the top_processes hosts by volume, the rest \"other\"); off keeps them on this machine.", d.metrics.include_hosts.to_string()),
            ],
        );
        section(
            "names.categories",
            &[(
                "\"example.com\"",
                "Inline category rules, `\"suffix\" = \"category\"`, applied last (longest suffix wins).",
                q("work"),
            )],
        );
        section(
            "privacy",
            &[
                ("history_hosts", "Keep remote addresses and host names in the history database; false stores only per-process (and per-interface) totals.", d.privacy.history_hosts.to_string()),
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
    pub alerts: AlertsConfig,
    pub names: NamesSection,
    pub privacy: crate::privacy::PrivacySection,
    /// Built-in rules, then `names.categories_file`, then `names.categories`.
    pub categories: crate::hostnames::Categories,
    pub metrics: MetricsConfig,
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
            history_hosts: self.privacy.history_hosts,
            process_hosts_per_minute: self.store.process_hosts_per_minute,
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
            alerts: file.alerts.resolve()?,
            categories: crate::hostnames::Categories::default(),
            names: file.names,
            metrics: file.metrics.resolve()?,
            privacy: file.privacy,
        };
        c.categories = load_categories(&c.names)?;
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
        if self.daemon.exited_keep_max > 1_000_000 {
            return bad("daemon.exited_keep_max", "must be at most 1000000");
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
        if !(1..=1000).contains(&self.store.process_hosts_per_minute) {
            return bad(
                "store.process_hosts_per_minute",
                "must be between 1 and 1000",
            );
        }
        if !(256..=65_535).contains(&self.names.snaplen) {
            return bad("names.snaplen", "must be between 256 and 65535");
        }
        if !(1_000..=1_000_000).contains(&self.names.max_entries) {
            return bad("names.max_entries", "must be between 1000 and 1000000");
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

/// The category rules: built in, then the rules file, then inline rules.
fn load_categories(names: &NamesSection) -> Result<crate::hostnames::Categories, ConfigError> {
    use crate::hostnames::category::RulesError;
    let mut c = crate::hostnames::Categories::builtin();
    if let Some(p) = &names.categories_file {
        let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        c.add_rules(&text, &p.display().to_string())
            .map_err(ConfigError::Categories)?;
    }
    for (suffix, cat) in &names.categories {
        c.add(suffix, cat).map_err(|message| {
            ConfigError::Categories(RulesError {
                origin: "names.categories".to_owned(),
                message,
            })
        })?;
    }
    Ok(c)
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privacy_section_parses_and_reaches_the_store_options() {
        let f = FileConfig::parse(
            "[privacy]\nhistory_hosts = false\nexport_addresses = \"truncate\"\n",
            Path::new("t"),
        )
        .unwrap();
        let c = Config::resolve(f, None, Overrides::default()).unwrap();
        let o = c.store_options();
        assert!(!o.history_hosts);
        assert!(
            c.privacy.deprecation().is_some(),
            "export_addresses is warned about"
        );
        assert!(crate::store::StoreOptions::default().history_hosts);
        let msg = FileConfig::parse("[privacy]\nhistory_hosts = 1\n", Path::new("t"))
            .expect_err("bad value")
            .to_string();
        assert!(
            msg.contains("history_hosts") && msg.contains("line 2"),
            "{msg}"
        );
    }

    #[test]
    fn capture_mode_parses_and_rejects_unknown_values() {
        let c = FileConfig::parse("[capture]\nmode = \"basic\"\n", Path::new("t")).unwrap();
        assert_eq!(c.capture.mode, CaptureMode::Basic);
        assert_eq!(FileConfig::default().capture.mode, CaptureMode::Auto);
        let msg = FileConfig::parse("[capture]\nmode = \"fast\"\n", Path::new("t"))
            .expect_err("bad mode")
            .to_string();
        assert!(msg.contains("mode") && msg.contains("line 2"), "{msg}");
    }

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

    /// The example file with every key line uncommented.
    pub(super) fn uncommented_example() -> String {
        FileConfig::example()
            .lines()
            .filter_map(|l| {
                l.strip_prefix("# ")
                    .filter(|l| l.contains(" = "))
                    .or(l.starts_with('[').then_some(l))
            })
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn example_parses_to_defaults_when_uncommented() {
        let uncommented = uncommented_example();
        let parsed = FileConfig::parse(&uncommented, Path::new("example")).expect("example parses");
        let mut want = FileConfig::default();
        want.daemon.control_group = Some("netmon-admin".to_owned());
        want.alerts.default_process_rate = Some(AmountValue::Text("5MiB/s".into()));
        want.alerts.host_rate = Some(AmountValue::Text("50MiB/s".into()));
        want.alerts.default_daily_quota = Some(AmountValue::Text("2GiB".into()));
        want.alerts.hook = Some(vec![
            "/usr/local/bin/netmon-alert".into(),
            "--notify".into(),
        ]);
        want.names.categories_file = Some("/etc/netmon/categories.toml".into());
        want.metrics.listen = Some("127.0.0.1:9559".into());
        want.names
            .categories
            .insert("example.com".to_owned(), "work".to_owned());
        assert_eq!(parsed, want);
        let mut parsed = parsed;
        // The example's rules file need not exist on the test machine.
        parsed.names.categories_file = None;
        Config::resolve(parsed, None, Overrides::default()).expect("the example values are valid");
    }

    #[test]
    fn alerts_amounts_take_units_or_bytes() {
        let file = FileConfig::parse(
            "[alerts]\ndefault_process_rate = \"1MiB/s\"\nhost_rate = 1000\ndefault_daily_quota = \"2GiB\"\nhook = [\"/bin/true\"]\n",
            Path::new("t"),
        )
        .expect("parses");
        let c = Config::resolve(file, None, Overrides::default()).expect("valid");
        assert_eq!(c.alerts.rules.default_process_rate, Some(1 << 20));
        assert_eq!(c.alerts.rules.host_rate, Some(1000));
        assert_eq!(c.alerts.rules.default_daily_quota, Some(2 << 30));
        assert_eq!(c.alerts.hook, vec!["/bin/true".to_owned()]);
        assert_eq!(c.alerts.hook_user, crate::alerts::hook::HookUser::NOBODY);
    }

    #[test]
    fn bad_alert_values_name_the_key() {
        for (text, key) in [
            (
                "[alerts]\ndefault_process_rate = \"12 parsecs\"\n",
                "alerts.default_process_rate",
            ),
            (
                "[alerts]\ndefault_daily_quota = \"1MiB/s\"\n",
                "alerts.default_daily_quota",
            ),
            (
                "[alerts]\nopen_after_ticks = 0\n",
                "alerts.open_after_ticks",
            ),
            ("[alerts]\nhook = []\n", "alerts.hook"),
            ("[alerts]\nhook = [\"notify-send\"]\n", "alerts.hook"),
            (
                "[alerts]\nhook = [\"/bin/true\"]\nhook_user = \"root\"\n",
                "alerts.hook_user",
            ),
            (
                "[alerts]\nhook = [\"/bin/true\"]\nhook_user = \"no-such-user-netmon\"\n",
                "alerts.hook_user",
            ),
        ] {
            let file = FileConfig::parse(text, Path::new("t")).expect("parses");
            let msg = Config::resolve(file, None, Overrides::default())
                .expect_err("invalid")
                .to_string();
            assert!(msg.contains(key), "{text}: {msg}");
        }
    }

    #[test]
    fn names_section_parses_and_categories_layer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = dir.path().join("cats.toml");
        std::fs::write(
            &rules,
            "games = [\"example.net\"]\nsocial = [\"github.com\"]\n",
        )
        .expect("write");
        let text = format!(
            "[names]\nenabled = false\nreverse_dns = true\nsnaplen = 2000\n\
             categories_file = {:?}\n[names.categories]\n\"example.com\" = \"work\"\n\
             \"api.github.com\" = \"work\"\n",
            rules.display().to_string()
        );
        let file = FileConfig::parse(&text, Path::new("t")).expect("parses");
        assert!(!file.names.enabled && file.names.reverse_dns);
        assert_eq!(file.names.snaplen, 2000);
        let c = Config::resolve(file, None, Overrides::default()).expect("valid");
        let cat = |n: &str| c.categories.category(n).map(|s| s.to_string());
        assert_eq!(cat("www.example.com").as_deref(), Some("work"));
        assert_eq!(cat("cdn.example.net").as_deref(), Some("games"));
        assert_eq!(cat("github.com").as_deref(), Some("social"));
        assert_eq!(cat("api.github.com").as_deref(), Some("work"));
        assert_eq!(cat("www.netflix.com").as_deref(), Some("streaming"));
    }

    #[test]
    fn names_defaults_and_bad_values() {
        let d = NamesSection::default();
        assert!(d.enabled && !d.reverse_dns && d.categories_file.is_none());
        let msg = FileConfig::parse("[names]\nreverse = true\n", Path::new("t"))
            .expect_err("unknown key")
            .to_string();
        assert!(msg.contains("reverse") && msg.contains("line 2"), "{msg}");
        let file = FileConfig::parse("[names]\nsnaplen = 10\n", Path::new("t")).expect("parses");
        let msg = Config::resolve(file, None, Overrides::default())
            .expect_err("invalid")
            .to_string();
        assert!(msg.contains("names.snaplen"), "{msg}");
        let file = FileConfig::parse(
            "[names]\ncategories_file = \"/nonexistent/c.toml\"\n",
            Path::new("t"),
        )
        .expect("parses");
        let msg = Config::resolve(file, None, Overrides::default())
            .expect_err("missing file")
            .to_string();
        assert!(msg.contains("/nonexistent/c.toml"), "{msg}");
        let file = FileConfig::parse("[names.categories]\n\" \" = \"x\"\n", Path::new("t"))
            .expect("parses");
        let err = Config::resolve(file, None, Overrides::default()).expect_err("bad rule");
        assert!(format!("{:#}", anyhow::Error::from(err)).contains("names.categories"));
    }

    #[test]
    fn metrics_are_off_by_default_and_bad_values_name_the_key() {
        let c = Config::resolve(FileConfig::default(), None, Overrides::default()).expect("valid");
        assert_eq!(c.metrics, MetricsConfig::default());
        assert!(
            c.metrics.listen.is_none(),
            "nothing listens unless configured"
        );
        let file = FileConfig::parse(
            "[metrics]\nlisten = \"[::1]:9559\"\ntop_processes = 5\ninclude_hosts = true\n",
            Path::new("t"),
        )
        .expect("parses");
        let c = Config::resolve(file, None, Overrides::default()).expect("valid");
        assert_eq!(c.metrics.listen, Some("[::1]:9559".parse().expect("addr")));
        assert_eq!(c.metrics.top_processes, 5);
        assert!(c.metrics.include_hosts);
        for (text, key) in [
            ("[metrics]\nlisten = \"localhost\"\n", "metrics.listen"),
            ("[metrics]\ntop_processes = 5000\n", "metrics.top_processes"),
        ] {
            let file = FileConfig::parse(text, Path::new("t")).expect("parses");
            let msg = Config::resolve(file, None, Overrides::default())
                .expect_err("invalid")
                .to_string();
            assert!(msg.contains(key), "{text}: {msg}");
        }
        let msg = FileConfig::parse("[metrics]\nport = 1\n", Path::new("t"))
            .expect_err("unknown key")
            .to_string();
        assert!(msg.contains("port") && msg.contains("line 2"), "{msg}");
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
