//! Privacy switches (`[privacy]`): whether history keeps remote hosts, and how
//! exports show addresses (full, keyed-hash pseudonyms, or truncated). Pure: the
//! store applies it (host writes dropped, export rows masked).

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;

use serde::Deserialize;

/// `[privacy]` section of `FileConfig`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacySection {
    /// Keep remote addresses and host names in history; false keeps only per-process totals.
    pub history_hosts: bool,
    /// How exports show remote addresses: "full", "hash" or "truncate".
    pub export_addresses: AddrExport,
}

impl Default for PrivacySection {
    fn default() -> Self {
        Self {
            history_hosts: true,
            export_addresses: AddrExport::Full,
        }
    }
}

/// How exported rows show remote addresses.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AddrExport {
    /// As they are.
    #[default]
    Full,
    /// `h-` and 16 hex digits of a SipHash keyed per export: equal addresses
    /// stay equal within one export, nothing links them across exports.
    Hash,
    /// The /24 (IPv4) or /48 (IPv6) network.
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

/// The network of `ip`: /24 for IPv4, /48 for IPv6.
pub fn truncate(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0);
            format!("{net}/48")
        }
    }
}

/// Masks the addresses and names of one export run.
pub struct ExportMask {
    mode: AddrExport,
    key: std::collections::hash_map::RandomState,
}

impl ExportMask {
    /// A mask with a fresh random key (for `Hash`).
    pub fn new(mode: AddrExport) -> ExportMask {
        ExportMask {
            mode,
            key: std::collections::hash_map::RandomState::new(),
        }
    }

    /// An address as the export shows it. Text that is not an address is
    /// hashed (`Hash`) or dropped (`Truncate`) rather than passed through.
    pub fn address(&self, addr: &str) -> String {
        match (self.mode, addr.parse::<IpAddr>()) {
            (AddrExport::Full, _) => addr.to_owned(),
            (_, _) if addr.is_empty() => String::new(),
            (AddrExport::Truncate, Ok(ip)) => truncate(ip),
            (AddrExport::Truncate, Err(_)) => String::new(),
            (AddrExport::Hash, Ok(ip)) => self.hash(&ip.to_string()),
            (AddrExport::Hash, Err(_)) => self.hash(addr),
        }
    }

    /// A host name as the export shows it: only in `Full` mode, since a
    /// name gives the address away.
    pub fn name(&self, name: &str) -> String {
        match self.mode {
            AddrExport::Full => name.to_owned(),
            AddrExport::Hash | AddrExport::Truncate => String::new(),
        }
    }

    /// Masks the remote end of one export row in place.
    pub fn row(&self, row: &mut netmon_proto::v1::ExportRow) {
        if self.mode == AddrExport::Full {
            return;
        }
        row.remote_addr = self.address(&row.remote_addr);
        row.remote_name = self.name(&row.remote_name);
    }

    fn hash(&self, s: &str) -> String {
        let mut h = self.key.build_hasher();
        h.write(s.as_bytes());
        format!("h-{:016x}", h.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_parses_and_rejects_unknown_modes() {
        let p: PrivacySection =
            toml::from_str("history_hosts = false\nexport_addresses = \"hash\"\n").expect("parses");
        assert!(!p.history_hosts);
        assert_eq!(p.export_addresses, AddrExport::Hash);
        let e = toml::from_str::<PrivacySection>("export_addresses = \"rot13\"\n")
            .expect_err("bad mode")
            .to_string();
        assert!(e.contains("rot13"), "{e}");
        let d = PrivacySection::default();
        assert!(d.history_hosts && d.export_addresses == AddrExport::Full);
    }

    #[test]
    fn full_mode_passes_through() {
        let m = ExportMask::new(AddrExport::Full);
        assert_eq!(m.address("10.1.2.3"), "10.1.2.3");
        assert_eq!(m.name("github.com"), "github.com");
    }

    #[test]
    fn truncate_keeps_the_network_only() {
        let m = ExportMask::new(AddrExport::Truncate);
        assert_eq!(m.address("10.1.2.3"), "10.1.2.0/24");
        assert_eq!(m.address("2001:db8:1:2:3::4"), "2001:db8:1::/48");
        assert_eq!(m.address("not an address"), "");
        assert_eq!(m.name("github.com"), "");
    }

    #[test]
    fn hash_is_stable_within_an_export_and_differs_across() {
        let a = ExportMask::new(AddrExport::Hash);
        let b = ExportMask::new(AddrExport::Hash);
        let x = a.address("192.0.2.7");
        assert!(x.starts_with("h-") && x.len() == 18, "{x}");
        assert!(!x.contains("192"));
        // Two spellings of one address are one pseudonym.
        assert_eq!(a.address("2001:db8::1"), a.address("2001:0db8:0::1"));
        assert_ne!(x, a.address("192.0.2.8"));
        assert_ne!(x, b.address("192.0.2.7"));
        assert_eq!(a.address(""), "");
        assert_eq!(a.name("github.com"), "");
    }

    #[test]
    fn export_rows_lose_remote_names_and_full_addresses() {
        let row = || netmon_proto::v1::ExportRow {
            remote_addr: "192.0.2.7".into(),
            remote_name: "example.com".into(),
            up_bytes: 5,
            ..Default::default()
        };
        let mut r = row();
        ExportMask::new(AddrExport::Full).row(&mut r);
        assert_eq!(r, row());
        let mut r = row();
        ExportMask::new(AddrExport::Truncate).row(&mut r);
        assert_eq!(
            (r.remote_addr.as_str(), r.remote_name.as_str()),
            ("192.0.2.0/24", "")
        );
        assert_eq!(r.up_bytes, 5);
        let mut r = row();
        ExportMask::new(AddrExport::Hash).row(&mut r);
        assert!(
            r.remote_addr.starts_with("h-") && r.remote_name.is_empty(),
            "{r:?}"
        );
    }
}
