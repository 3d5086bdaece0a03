//! Privacy switches (`[privacy]`): whether history keeps remote hosts. Pure:
//! the store applies it (host writes dropped). `export_addresses` is
//! accepted for old configs only: exports carry no remote addresses.

use serde::Deserialize;

/// `[privacy]` section of `FileConfig`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacySection {
    /// Keep remote addresses and host names in history; false keeps only per-process totals.
    pub history_hosts: bool,
    /// Deprecated, no effect: export rows are per-process samples with no
    /// remote address or name to mask. Still parsed (a bad value is still an
    /// error) so that configs written for it keep starting, with a warning.
    pub export_addresses: Option<AddrExport>,
}

impl Default for PrivacySection {
    fn default() -> Self {
        Self {
            history_hosts: true,
            export_addresses: None,
        }
    }
}

impl PrivacySection {
    /// The warning to log at start for deprecated keys, if any is set.
    pub fn deprecation(&self) -> Option<String> {
        self.export_addresses.map(|m| {
            format!(
                "privacy.export_addresses = '{}' has no effect and is deprecated: exports carry no \
                 remote addresses or host names (one row per process per minute); remove the key",
                m.as_str()
            )
        })
    }
}

/// The values `export_addresses` took.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AddrExport {
    Full,
    Hash,
    Truncate,
}

impl AddrExport {
    pub fn as_str(self) -> &'static str {
        match self {
            AddrExport::Full => "full",
            AddrExport::Hash => "hash",
            AddrExport::Truncate => "truncate",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_addresses_is_accepted_but_warned_about() {
        let p: PrivacySection =
            toml::from_str("history_hosts = false\nexport_addresses = \"hash\"\n").expect("parses");
        assert!(!p.history_hosts);
        assert_eq!(p.export_addresses, Some(AddrExport::Hash));
        let w = p.deprecation().expect("a warning");
        assert!(
            w.contains("export_addresses") && w.contains("'hash'") && w.contains("no effect"),
            "{w}"
        );
        let e = toml::from_str::<PrivacySection>("export_addresses = \"rot13\"\n")
            .expect_err("bad mode")
            .to_string();
        assert!(e.contains("rot13"), "{e}");
        let d = PrivacySection::default();
        assert!(d.history_hosts && d.deprecation().is_none());
    }
}
