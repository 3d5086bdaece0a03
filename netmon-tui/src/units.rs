//! Display of byte amounts, rates and durations with binary units
//! (`1.5 MiB/s`), as netmonctl prints them. Pure functions only.

use std::fmt;

const BINARY_UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// `512 B`, `1.5 KiB`, `12.0 GiB`: binary units, one decimal above bytes.
pub fn format_bytes(bytes: u64) -> String {
    Binary(bytes).to_string()
}

/// `1.5 MiB/s`.
pub fn format_rate(bps: u64) -> String {
    format!("{}/s", Binary(bps))
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

/// `HH:MM:SS` UTC of a time in ms since the epoch.
pub fn clock_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

struct Binary(u64);

impl fmt::Display for Binary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        #[allow(
            clippy::cast_precision_loss,
            reason = "display only, one decimal shown"
        )]
        let mut v = self.0 as f64;
        let mut unit = 0;
        while v >= 1024.0 && unit < BINARY_UNITS.len() - 1 {
            v /= 1024.0;
            unit += 1;
        }
        // 1023.96 KiB would print as "1024.0 KiB": carry into the next unit.
        if v >= 1023.95 && unit < BINARY_UNITS.len() - 1 {
            v /= 1024.0;
            unit += 1;
        }
        write!(f, "{v:.1} {}", BINARY_UNITS[unit])
    }
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
    fn formats_durations_and_clock() {
        assert_eq!(format_duration(42), "42s");
        assert_eq!(format_duration(187), "3m07s");
        assert_eq!(format_duration(3723), "1h02m03s");
        assert_eq!(format_duration(2 * 86_400 + 4 * 3600), "2d04h");
        assert_eq!(clock_utc(1_763_769_600_000 + 3_723_000), "01:02:03");
    }
}
