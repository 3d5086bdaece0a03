//! Points in time and durations as typed (`30m`, `2h`, `7d`, `1w`,
//! `2026-03-01`, RFC 3339) and the timestamps we print. Every time is UTC:
//! a bare date means midnight UTC, and output is RFC 3339 with a `Z`.

use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

pub const WHEN_FORMS: &str = "accepted forms: a duration back from now (45s, 30m, 2h, 7d, 1w, \
or combined like 1h30m), a date YYYY-MM-DD (midnight UTC), or RFC 3339 (2026-03-01T12:00:00Z)";

pub const DUR_FORMS: &str = "accepted forms: 45s, 30m, 2h, 7d, 1w, or combined like 1h30m";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhenError {
    #[error("invalid time '{0}'; {WHEN_FORMS}")]
    When(String),
    #[error("invalid duration '{0}'; {DUR_FORMS}")]
    Duration(String),
}

/// A time as typed, resolved against "now" only when the request is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Ago(Duration),
    /// Milliseconds since the Unix epoch.
    At(i64),
}

impl When {
    pub fn to_ms(self, now_ms: i64) -> i64 {
        match self {
            When::Ago(d) => now_ms
                .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .max(0),
            When::At(ms) => ms,
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

/// A day `YYYY-MM-DD`, as the UTC half-open range `[midnight, next midnight)` in ms.
pub fn parse_day(input: &str) -> Result<(i64, i64), WhenError> {
    let date = Date::parse(input.trim(), format_description!("[year]-[month]-[day]"))
        .map_err(|_| WhenError::When(input.to_owned()))?;
    let start = PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc();
    let ms =
        |t: OffsetDateTime| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    Ok((ms(start), ms(start + time::Duration::DAY)))
}

pub fn parse_when(input: &str) -> Result<When, WhenError> {
    let s = input.trim();
    if let Ok(d) = parse_duration(s) {
        return Ok(When::Ago(d));
    }
    if let Ok((start, _)) = parse_day(s) {
        return Ok(When::At(start));
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

/// Human time: RFC 3339 UTC to the second, `-` for none.
pub fn human_time(ms: i64) -> String {
    if ms == 0 {
        return "-".to_owned();
    }
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    from_ms(ms)
        .and_then(|t| t.format(fmt).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// Human clock time for frames that repeat every second: `HH:MM:SS` UTC.
pub fn human_clock(ms: i64) -> String {
    let fmt = format_description!("[hour]:[minute]:[second]Z");
    from_ms(ms)
        .and_then(|t| t.format(fmt).ok())
        .unwrap_or_else(|| "-".to_owned())
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
            assert_eq!(when.to_ms(NOW), NOW - secs * 1000, "{input}");
        }
    }

    #[test]
    fn dates_are_midnight_utc() {
        assert_eq!(parse_when("2026-01-01"), Ok(When::At(NOW)));
        assert_eq!(parse_day("2025-12-31"), Ok((NOW - 86_400_000, NOW)));
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
        assert_eq!(human_time(NOW), "2026-01-01T00:00:00Z");
        assert_eq!(human_time(0), "-");
        assert_eq!(human_duration(93_784), "1d 2h 3m 4s");
        assert_eq!(human_duration(59), "59s");
    }
}
