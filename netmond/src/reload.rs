//! Configuration reload (SIGHUP and the `Reload` RPC): which settings of a
//! newly read config differ, and which of them can apply to a running daemon.
//! Pure; the engine applies, the daemon reads the file.

use std::path::PathBuf;

use crate::config::{Config, ConfigError, Overrides};

/// Where the running config came from, to read it again the same way
/// (the same file, the same flags over it).
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// `--config`, or None for the default path.
    pub path: Option<PathBuf>,
    pub flags: Overrides,
}

impl Source {
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(self.path.as_deref(), self.flags.clone())
    }
}

/// Applies a new `daemon.log_level` to the running logger; an error says why not.
pub type LogLevelHook = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What a reload changes, as config keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Applied at once: the alert rules and hysteresis.
    pub applied: Vec<String>,
    /// Differ from what runs but take effect only after a restart.
    pub needs_restart: Vec<String>,
}

impl Changes {
    /// One line for the log and the RPC reply.
    pub fn summary(&self) -> String {
        match (self.applied.is_empty(), self.needs_restart.is_empty()) {
            (true, true) => "no change".to_owned(),
            (false, true) => format!("applied {}", self.applied.join(", ")),
            (true, false) => format!(
                "nothing applied; needs a restart: {}",
                self.needs_restart.join(", ")
            ),
            (false, false) => format!(
                "applied {}; needs a restart: {}",
                self.applied.join(", "),
                self.needs_restart.join(", ")
            ),
        }
    }
}

/// `applied`: what differs between the last applied config and `new` among
/// the live settings (`daemon.log_level` is left to the caller, who owns the
/// logger: see [`LogLevelHook`]). `needs_restart`: what differs between the config the
/// daemon started with (`running`) and `new` everywhere else, so a second
/// reload still says a restart is pending.
pub fn diff(last: &Config, running: &Config, new: &Config) -> Changes {
    let mut c = Changes::default();
    let (a, b) = (&last.alerts, &new.alerts);
    let live = [
        (
            "alerts.open_after_ticks",
            a.settings.open_after_ticks != b.settings.open_after_ticks,
        ),
        (
            "alerts.close_after_ticks",
            a.settings.close_after_ticks != b.settings.close_after_ticks,
        ),
        (
            "alerts.default_process_rate",
            a.rules.default_process_rate != b.rules.default_process_rate,
        ),
        ("alerts.host_rate", a.rules.host_rate != b.rules.host_rate),
        (
            "alerts.default_daily_quota",
            a.rules.default_daily_quota != b.rules.default_daily_quota,
        ),
        (
            "alerts.new_process_notice",
            a.rules.new_process_notice != b.rules.new_process_notice,
        ),
    ];
    c.applied = keys(&live);
    let (r, n) = (running, new);
    let d = (&r.daemon, &n.daemon);
    let restart = [
        ("daemon.socket", d.0.socket != d.1.socket),
        ("daemon.group", d.0.group != d.1.group),
        (
            "daemon.control_group",
            d.0.control_group != d.1.control_group,
        ),
        ("daemon.autostart", d.0.autostart != d.1.autostart),
        ("daemon.tick_ms", d.0.tick_ms != d.1.tick_ms),
        (
            "daemon.exited_keep_secs",
            d.0.exited_keep_secs != d.1.exited_keep_secs,
        ),
        (
            "daemon.exited_keep_max",
            d.0.exited_keep_max != d.1.exited_keep_max,
        ),
        (
            "alerts.hook",
            r.alerts.hook != n.alerts.hook
                || r.alerts.hook_timeout != n.alerts.hook_timeout
                || r.alerts.hook_user != n.alerts.hook_user,
        ),
        ("[capture]", r.capture != n.capture),
        ("[store]", r.store != n.store),
        (
            "[names]",
            r.names != n.names || r.categories != n.categories,
        ),
        ("[privacy]", r.privacy != n.privacy),
        ("[metrics]", r.metrics != n.metrics),
    ];
    c.needs_restart = keys(&restart);
    c
}

fn keys(list: &[(&str, bool)]) -> Vec<String> {
    list.iter()
        .filter(|(_, changed)| *changed)
        .map(|(k, _)| (*k).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileConfig;

    fn config(toml: &str) -> Config {
        let file = FileConfig::parse(toml, std::path::Path::new("t.toml")).expect("parses");
        Config::resolve(file, None, Overrides::default()).expect("valid")
    }

    #[test]
    fn alert_settings_apply_and_the_rest_waits_for_a_restart() {
        let old = config("[alerts]\nopen_after_ticks = 3\n");
        let new = config(
            "[daemon]\ntick_ms = 500\n[alerts]\nopen_after_ticks = 1\nhost_rate = \"1MiB/s\"\n",
        );
        let c = diff(&old, &old, &new);
        assert_eq!(c.applied, ["alerts.open_after_ticks", "alerts.host_rate"]);
        assert_eq!(c.needs_restart, ["daemon.tick_ms"]);
        assert_eq!(
            c.summary(),
            "applied alerts.open_after_ticks, alerts.host_rate; needs a restart: daemon.tick_ms"
        );
        // Reloading the same file again: nothing new applies, the restart is still due.
        let again = diff(&new, &old, &new);
        assert!(again.applied.is_empty());
        assert_eq!(again.needs_restart, ["daemon.tick_ms"]);
        assert_eq!(diff(&old, &old, &old).summary(), "no change");
    }
}
