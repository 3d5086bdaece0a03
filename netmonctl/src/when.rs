//! Points in time and durations as typed (`30m`, `2h`, `7d`, `1w`,
//! `2026-03-01`, RFC 3339) and the timestamps we print. Shown times and bare
//! dates are in the display zone (the machine's, or UTC with `--utc`), set
//! once by main; JSON times are RFC 3339 UTC whatever the zone.

use std::time::Duration;

use netmon_proto::zone::{Date, Zone};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

pub const WHEN_FORMS: &str = "accepted forms: a duration back from now (45s, 30m, 2h, 7d, 1w, \
or combined like 1h30m), a date YYYY-MM-DD (local midnight, UTC with --utc), or RFC 3339 \
(2026-03-01T12:00:00Z)";

pub use netmon_proto::zone::{display as zone, init_display as init_zone};

pub const DUR_FORMS: &str = "accepted forms: 45s, 30m, 2h, 7d, 1w, or combined like 1h30m";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhenError {
    #[error("invalid time '{0}'; {WHEN_FORMS}")]
    When(String),
    #[error("invalid duration '{0}'; {DUR_FORMS}")]
    Duration(String),
}

/// A time as typed, resolved against "now" and the display zone only when
/// the request is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Ago(Duration),
    /// Milliseconds since the Unix epoch.
    At(i64),
    /// The start of this date in the display zone.
    Day(Date),
}

impl When {
    pub fn to_ms(self, now_ms: i64, zone: &Zone) -> i64 {
        match self {
            When::Ago(d) => now_ms
                .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .max(0),
            When::At(ms) => ms,
            When::Day(date) => zone.day_start(date),
        }
    }
}

/// `30m`, `2h`, `1h30m`, `7d`, `1w`.
pub fn parse_duration(input: &str) -> Result<Duration, WhenError> {
    let err = || WhenError::Duration(input.to_owned());
    let s = input.trim();
    if s.is_empty() {
        return Err(err());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits_end = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        if digits_end == 0 {
            return Err(err());
        }
        let n: u64 = rest[..digits_end].parse().map_err(|_| err())?;
        let unit = rest[digits_end..].chars().next().ok_or_else(err)?;
        let secs = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(err()),
        };
        total = n
            .checked_mul(secs)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
        rest = &rest[digits_end + unit.len_utf8()..];
    }
    Ok(Duration::from_secs(total))
}

/// A day `YYYY-MM-DD`; its range depends on the zone (`day_range`).
pub fn parse_day(input: &str) -> Result<Date, WhenError> {
    let s = input.trim();
    // Only the strict form: jiff would also take an RFC 3339 time here.
    if s.len() != 10 {
        return Err(WhenError::When(input.to_owned()));
    }
    s.parse().map_err(|_| WhenError::When(input.to_owned()))
}

/// `date` in `zone` as the half-open range `[start, next day's start)` in
/// ms: 23 or 25 hours across a DST change.
pub fn day_range(date: Date, zone: &Zone) -> (i64, i64) {
    let next = date.tomorrow().map_or(i64::MAX, |d| zone.day_start(d));
    (zone.day_start(date), next)
}

pub fn parse_when(input: &str) -> Result<When, WhenError> {
    let s = input.trim();
    if let Ok(d) = parse_duration(s) {
        return Ok(When::Ago(d));
    }
    if let Ok(date) = parse_day(s) {
        return Ok(When::Day(date));
    }
    let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| WhenError::When(input.to_owned()))?;
    let ms = t.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms)
        .map(When::At)
        .map_err(|_| WhenError::When(input.to_owned()))
}

pub fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// JSON time: RFC 3339 UTC with milliseconds; 0 ("none" in the API) is `None`.
pub fn rfc3339_ms(ms: i64) -> Option<String> {
    if ms == 0 {
        return None;
    }
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    from_ms(ms).and_then(|t| t.format(fmt).ok())
}

/// Human time in the display zone to the second with its offset
/// (`2026-03-01T09:00:00+09:00`, `...Z` with `--utc`), `-` for none.
pub fn human_time(ms: i64) -> String {
    if ms == 0 {
        return "-".to_owned();
    }
    zone().human_time(ms)
}

/// Human clock time for frames that repeat every second: local `HH:MM:SS`
/// (`HH:MM:SSZ` with `--utc`).
pub fn human_clock(ms: i64) -> String {
    let z = if zone().is_utc() { "Z" } else { "" };
    format!("{}{z}", zone().clock(ms))
}

/// `3d 4h 5m 6s`, leading zero units omitted.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m {s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    #[test]
    fn durations_go_back_from_now() {
        let cases: &[(&str, i64)] = &[
            ("45s", 45),
            ("30m", 30 * 60),
            ("2h", 2 * 3600),
            ("7d", 7 * 86_400),
            ("1w", 7 * 86_400),
            ("1h30m", 5400),
        ];
        for &(input, secs) in cases {
            let when = parse_when(input).expect(input);
            assert_eq!(when.to_ms(NOW, &Zone::utc()), NOW - secs * 1000, "{input}");
        }
    }

    #[test]
    fn dates_are_midnight_in_the_zone() {
        let date = parse_day("2026-01-01").unwrap();
        assert_eq!(parse_when("2026-01-01"), Ok(When::Day(date)));
        assert_eq!(When::Day(date).to_ms(0, &Zone::utc()), NOW);
        let tokyo = Zone::named("Asia/Tokyo").unwrap();
        assert_eq!(When::Day(date).to_ms(0, &tokyo), NOW - 9 * 3_600_000);
        let la = Zone::named("America/Los_Angeles").unwrap();
        let dec31 = parse_day("2025-12-31").unwrap();
        assert_eq!(day_range(dec31, &Zone::utc()), (NOW - 86_400_000, NOW));
        assert_eq!(
            day_range(dec31, &la),
            (NOW - 16 * 3_600_000, NOW + 8 * 3_600_000)
        );
        // 2026-03-08 is 23 hours long in Los Angeles.
        let (s, e) = day_range(parse_day("2026-03-08").unwrap(), &la);
        assert_eq!(e - s, 23 * 3_600_000);
    }

    #[test]
    fn rfc3339_keeps_its_offset() {
        assert_eq!(parse_when("2026-01-01T00:00:00Z"), Ok(When::At(NOW)));
        assert_eq!(parse_when("2026-01-01T01:00:00+01:00"), Ok(When::At(NOW)));
        assert_eq!(
            parse_when("2026-01-01T00:00:00.250Z"),
            Ok(When::At(NOW + 250))
        );
    }

    #[test]
    fn garbage_is_rejected_with_the_forms() {
        for input in [
            "",
            "yesterday",
            "30",
            "m",
            "2026-13-01",
            "5x",
            "2026-01-01 00:00",
            "-5m",
        ] {
            let err = parse_when(input).expect_err(input);
            assert!(err.to_string().contains("accepted forms"), "{input}: {err}");
        }
        assert!(parse_duration("2026-01-01").is_err());
    }

    #[test]
    fn formats_utc_and_none() {
        assert_eq!(rfc3339_ms(0), None);
        assert_eq!(
            rfc3339_ms(NOW + 5).as_deref(),
            Some("2026-01-01T00:00:00.005Z")
        );
        assert_eq!(human_time(0), "-");
        assert_eq!(human_duration(93_784), "1d 2h 3m 4s");
        assert_eq!(human_duration(59), "59s");
    }
}
