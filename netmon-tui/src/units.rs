//! Display of byte amounts, rates and durations with binary units
//! (`1.5 MiB/s`, shared with netmonctl in `netmon_proto::units`), and clock
//! times in the display zone (local, or UTC with `--utc`), set once by main.

pub use netmon_proto::units::{format_bytes, format_rate};
pub use netmon_proto::zone::{display as zone, init_display as init_zone};
use netmon_proto::zone::{offset_text, Zone};

use crate::app::RateUnit;

/// A rate in the unit the user chose: `1.5 MiB/s`, or `12.6 Mbit/s` as
/// packet tools show it (decimal prefixes, 1 Mbit = 1,000,000 bits).
pub fn format_rate_as(bps: u64, unit: RateUnit) -> String {
    match unit {
        RateUnit::Bytes => format_rate(bps),
        RateUnit::Bits => format_bits(bps.saturating_mul(8)),
    }
}

fn format_bits(bits: u64) -> String {
    const UNITS: [&str; 5] = ["kbit/s", "Mbit/s", "Gbit/s", "Tbit/s", "Pbit/s"];
    if bits < 1000 {
        return format!("{bits} bit/s");
    }
    #[allow(clippy::cast_precision_loss, reason = "one decimal shown")]
    let mut v = bits as f64 / 1000.0;
    let mut i = 0;
    while v >= 999.95 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

/// `42s`, `3m07s`, `1h02m03s`, `2d04h`.
pub fn format_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// `HH:MM:SS` in the display zone of a time in ms since the epoch.
pub fn clock(ms: i64) -> String {
    zone().clock(ms)
}

/// `HH:MM:SS UTC` or `HH:MM:SS +09:00`: a clock that says its zone.
pub fn clock_with_zone(ms: i64) -> String {
    clock_in(zone(), ms)
}

/// `UTC`, or the local zone's offset at `ms` (`+09:00`).
pub fn zone_label(ms: i64) -> String {
    label_in(zone(), ms)
}

fn label_in(zone: &Zone, ms: i64) -> String {
    if zone.is_utc() {
        return "UTC".to_owned();
    }
    offset_text(zone.offset_secs(ms))
}

fn clock_in(zone: &Zone, ms: i64) -> String {
    format!("{} {}", zone.clock(ms), label_in(zone, ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_binary_units() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(1_048_575), "1.0 MiB");
        assert_eq!(format_rate(1_572_864), "1.5 MiB/s");
    }

    #[test]
    fn formats_bits_with_decimal_prefixes() {
        assert_eq!(format_rate_as(100, RateUnit::Bits), "800 bit/s");
        assert_eq!(format_rate_as(125, RateUnit::Bits), "1.0 kbit/s");
        assert_eq!(format_rate_as(2_500_000, RateUnit::Bits), "20.0 Mbit/s");
        assert_eq!(format_rate_as(124_999_999, RateUnit::Bits), "1.0 Gbit/s");
        assert_eq!(format_rate_as(1_572_864, RateUnit::Bytes), "1.5 MiB/s");
        assert_eq!(format_rate_as(u64::MAX, RateUnit::Bits), "18446.7 Pbit/s");
    }

    #[test]
    fn formats_durations_and_clock() {
        assert_eq!(format_duration(42), "42s");
        assert_eq!(format_duration(187), "3m07s");
        assert_eq!(format_duration(3723), "1h02m03s");
        assert_eq!(format_duration(2 * 86_400 + 4 * 3600), "2d04h");
        assert_eq!(clock(1_763_769_600_000 + 3_723_000), "01:02:03");
        let t = 1_763_769_600_000 + 3_723_000;
        assert_eq!(clock_in(&Zone::utc(), t), "01:02:03 UTC");
        let la = Zone::named("America/Los_Angeles").expect("tzdata");
        assert_eq!(clock_in(&la, t), "17:02:03 -08:00");
    }
}
