//! Display of byte amounts, rates and durations with binary units
//! (`1.5 MiB/s`, shared with netmonctl in `netmon_proto::units`). Pure.

pub use netmon_proto::units::{format_bytes, format_rate};

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
