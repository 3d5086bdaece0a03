//! The time zone netmon shows times in and groups history by: the machine's
//! (`TZ`, else `/etc/localtime`, read from the system tzdb) or UTC. Shared by
//! netmond, netmonctl and netmon-tui so that all three cut days alike.
//! Times stay milliseconds since the Unix epoch (UTC) everywhere else.

pub use jiff::civil::Date;
use std::sync::OnceLock;

use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;

/// What a report request names to mean "group by UTC".
pub const UTC_NAME: &str = "UTC";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error("unknown time zone '{0}': give an IANA name such as 'Europe/Paris', a POSIX TZ string, or 'UTC'")]
    Unknown(String),
    #[error("cannot read the system time zone (TZ or /etc/localtime): {0}")]
    System(String),
    #[error("invalid date '{0}': expected YYYY-MM-DD")]
    Date(String),
}

/// Calendar periods a range can be split into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Hour,
    Day,
    Month,
}

/// A time zone and the name it goes by on the wire.
#[derive(Debug, Clone)]
pub struct Zone {
    tz: TimeZone,
    /// IANA name, POSIX TZ string or `UTC`; empty when the system zone has
    /// no name we can send (a copied `/etc/localtime`).
    name: String,
    utc: bool,
}

impl Zone {
    pub fn utc() -> Zone {
        Zone {
            tz: TimeZone::UTC,
            name: UTC_NAME.to_owned(),
            utc: true,
        }
    }

    /// The machine's zone: `TZ` if set, else `/etc/localtime`.
    pub fn system() -> Result<Zone, ZoneError> {
        let tz = TimeZone::try_system().map_err(|e| ZoneError::System(e.to_string()))?;
        let name = match tz.iana_name() {
            Some(n) => n.to_owned(),
            // A POSIX rule such as `JST-9` has no IANA name: send it as given.
            None => std::env::var("TZ")
                .ok()
                .map(|v| v.trim_start_matches(':').to_owned())
                .filter(|v| TimeZone::posix(v).is_ok())
                .unwrap_or_default(),
        };
        Ok(Zone {
            tz,
            name,
            utc: false,
        })
    }

    /// `--utc` or the machine's zone; a zone that cannot be read is UTC (and
    /// the error is returned beside it for the caller to report).
    pub fn pick(utc: bool) -> (Zone, Option<ZoneError>) {
        if utc {
            return (Zone::utc(), None);
        }
        match Zone::system() {
            Ok(z) => (z, None),
            Err(e) => (Zone::utc(), Some(e)),
        }
    }

    /// A zone as named in a request: `UTC`, an IANA name or a POSIX TZ string.
    pub fn named(name: &str) -> Result<Zone, ZoneError> {
        if name == UTC_NAME {
            return Ok(Zone::utc());
        }
        let tz = TimeZone::get(name)
            .or_else(|_| TimeZone::posix(name))
            .map_err(|_| ZoneError::Unknown(name.to_owned()))?;
        Ok(Zone {
            tz,
            name: name.to_owned(),
            utc: false,
        })
    }

    /// The name to send in a request; empty means "the daemon's zone".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True for `--utc`: times print with `Z`.
    pub fn is_utc(&self) -> bool {
        self.utc
    }

    /// The UTC offset in seconds at `ms`.
    pub fn offset_secs(&self, ms: i64) -> i32 {
        self.offset(ms).seconds()
    }

    fn offset(&self, ms: i64) -> Offset {
        self.tz.to_offset(ts(ms))
    }

    /// The first instant of local `date`; midnight, or the first time that
    /// exists when a change of offset skips midnight.
    pub fn day_start(&self, date: Date) -> i64 {
        date.to_zoned(self.tz.clone())
            .and_then(|z| z.start_of_day())
            .map_or(i64::MAX, |z| z.timestamp().as_millisecond())
    }

    /// Local `YYYY-MM-DD` as the half-open range `[start, next day's start)`
    /// in ms: 23 or 25 hours long across a DST change.
    pub fn parse_day(&self, input: &str) -> Result<(i64, i64), ZoneError> {
        let date: Date = input
            .trim()
            .parse()
            .map_err(|_| ZoneError::Date(input.to_owned()))?;
        let next = date
            .tomorrow()
            .map_err(|_| ZoneError::Date(input.to_owned()))?;
        Ok((self.day_start(date), self.day_start(next)))
    }

    /// The local date holding `ms`.
    pub fn date(&self, ms: i64) -> Date {
        self.tz.to_datetime(ts(ms)).date()
    }

    /// The start of the local day holding `ms`.
    pub fn start_of_day(&self, ms: i64) -> i64 {
        self.day_start(self.date(ms))
    }

    /// The local day `days` days from the one holding `ms` (negative: back),
    /// as its date and the half-open range `[start, next day's start)`: 23
    /// or 25 hours long across a DST change.
    pub fn day_at(&self, ms: i64, days: i32) -> (Date, i64, i64) {
        let base = self.date(ms);
        let date = base
            .checked_add(jiff::Span::new().days(i64::from(days)))
            .unwrap_or(base);
        let next = date.tomorrow().unwrap_or(date);
        (date, self.day_start(date), self.day_start(next))
    }

    /// The start of the local hour, day or month after the one holding `ms`.
    /// Hours end where the local clock shows a whole hour or the offset
    /// changes, so every real hour is in exactly one period: the repeated
    /// hour of a DST end is two periods, a skipped hour none, and a 30-minute
    /// change (Lord Howe) makes one half-hour period.
    pub fn next_period(&self, ms: i64, every: Period) -> i64 {
        match every {
            Period::Hour => {
                const HOUR: i64 = 3_600_000;
                let local = ms.saturating_add(i64::from(self.offset_secs(ms)) * 1000);
                let next = ms.saturating_add(HOUR - local.rem_euclid(HOUR));
                let change = self
                    .tz
                    .following(ts(ms))
                    .next()
                    .map(|t| t.timestamp().as_millisecond());
                match change {
                    Some(c) if c > ms && c < next => c,
                    _ => next,
                }
            }
            Period::Day => self
                .date(ms)
                .tomorrow()
                .map_or(i64::MAX, |d| self.day_start(d)),
            Period::Month => {
                let d = self.date(ms);
                d.first_of_month()
                    .checked_add(jiff::Span::new().months(1))
                    .map_or(i64::MAX, |d| self.day_start(d))
            }
        }
    }

    /// Human time to the second with its offset (`2026-03-01T09:00:00+09:00`),
    /// or `Z` in UTC.
    pub fn human_time(&self, ms: i64) -> String {
        self.format(ms, "%Y-%m-%dT%H:%M:%S")
    }

    /// Human time to the minute with its offset (`2026-03-01 09:00+09:00`).
    pub fn human_minute(&self, ms: i64) -> String {
        self.format(ms, "%Y-%m-%d %H:%M")
    }

    /// `HH:MM:SS` clock time in the zone, without the zone.
    pub fn clock(&self, ms: i64) -> String {
        let t = self.tz.to_datetime(ts(ms));
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    }

    fn format(&self, ms: i64, fmt: &str) -> String {
        let t = self.tz.to_datetime(ts(ms));
        let text = t.strftime(fmt).to_string();
        if self.utc {
            return format!("{text}Z");
        }
        format!("{text}{}", offset_text(self.offset_secs(ms)))
    }
}

/// `+09:00`, `-07:00`, `+10:30`.
pub fn offset_text(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let m = secs.unsigned_abs() / 60;
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

static DISPLAY: OnceLock<Zone> = OnceLock::new();

/// Sets the zone a client shows times in, once per process: UTC with
/// `--utc`, else TZ or /etc/localtime (UTC, and the error returned for a
/// warning, when it cannot be read).
pub fn init_display(utc: bool) -> Option<ZoneError> {
    let (zone, error) = Zone::pick(utc);
    let _ = DISPLAY.set(zone);
    error
}

/// The zone a client shows times in (UTC until `init_display`, as in tests).
pub fn display() -> &'static Zone {
    DISPLAY.get_or_init(Zone::utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn zone(name: &str) -> Zone {
        Zone::named(name).expect("tzdata in /usr/share/zoneinfo")
    }

    fn utc_ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn hours(z: &Zone, from: i64, to: i64) -> Vec<i64> {
        let mut out = vec![from];
        let mut t = from;
        while t < to {
            t = z.next_period(t, Period::Hour);
            out.push(t);
        }
        out
    }

    #[test]
    fn tokyo_days_start_at_15_utc() {
        let z = zone("Asia/Tokyo");
        let (s, e) = z.parse_day("2026-03-01").unwrap();
        assert_eq!(s, utc_ms("2026-02-28T15:00:00Z"));
        assert_eq!(e - s, 24 * H);
        assert_eq!(z.start_of_day(utc_ms("2026-03-01T14:59:59Z")), s);
        assert_eq!(z.start_of_day(utc_ms("2026-03-01T15:00:00Z")), e);
        assert_eq!(
            z.next_period(s + 5, Period::Month),
            utc_ms("2026-03-31T15:00:00Z")
        );
        assert_eq!(z.human_time(s), "2026-03-01T00:00:00+09:00");
        assert_eq!(Zone::utc().human_time(s), "2026-02-28T15:00:00Z");
    }

    #[test]
    fn los_angeles_march_day_is_23_hours_and_november_25() {
        let z = zone("America/Los_Angeles");
        let (s, e) = z.parse_day("2026-03-08").unwrap();
        assert_eq!(s, utc_ms("2026-03-08T08:00:00Z"));
        assert_eq!(e, utc_ms("2026-03-09T07:00:00Z"));
        assert_eq!(z.next_period(s, Period::Day), e);
        // Hourly periods: one per real hour, no hour lost.
        let hs = hours(&z, s, e);
        assert_eq!(hs.len(), 24);
        assert!(hs.windows(2).all(|w| w[1] - w[0] == H));
        assert_eq!(z.human_time(hs[2]), "2026-03-08T03:00:00-07:00");

        let (s, e) = z.parse_day("2026-11-01").unwrap();
        assert_eq!(s, utc_ms("2026-11-01T07:00:00Z"));
        assert_eq!(e - s, 25 * H);
        let hs = hours(&z, s, e);
        assert_eq!(hs.len(), 26);
        assert!(hs.windows(2).all(|w| w[1] - w[0] == H));
        // The repeated 01:00 is two periods with their own offsets.
        assert_eq!(z.human_time(hs[1]), "2026-11-01T01:00:00-07:00");
        assert_eq!(z.human_time(hs[2]), "2026-11-01T01:00:00-08:00");
    }

    #[test]
    fn days_back_from_now_follow_local_dates_across_dst() {
        let z = zone("America/Los_Angeles");
        let now = utc_ms("2026-03-09T20:00:00Z");
        let (date, s, e) = z.day_at(now, -1);
        assert_eq!(date.to_string(), "2026-03-08");
        assert_eq!((s, e), z.parse_day("2026-03-08").unwrap());
        assert_eq!(e - s, 23 * H);
        let (today, s0, _) = z.day_at(now, 0);
        assert_eq!((today.to_string(), s0), ("2026-03-09".to_owned(), e));
    }

    #[test]
    fn los_angeles_months_follow_local_midnight() {
        let z = zone("America/Los_Angeles");
        let oct = z.parse_day("2026-10-01").unwrap().0;
        let nov = z.next_period(oct, Period::Month);
        assert_eq!(nov, utc_ms("2026-11-01T07:00:00Z"));
        assert_eq!(
            z.next_period(nov, Period::Month),
            utc_ms("2026-12-01T08:00:00Z")
        );
    }

    #[test]
    fn lord_howe_half_hour_change_loses_and_doubles_nothing() {
        let z = zone("Australia/Lord_Howe");
        // DST starts 2026-10-04 02:00 +10:30 -> 02:30 +11:00.
        let (s, e) = z.parse_day("2026-10-04").unwrap();
        assert_eq!(e - s, 23 * H + H / 2);
        let hs = hours(&z, s, e);
        let lens: Vec<i64> = hs.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(lens.iter().sum::<i64>(), e - s);
        assert_eq!(lens.iter().filter(|&&l| l == H / 2).count(), 1);
        assert!(lens.iter().all(|&l| l == H || l == H / 2));
        assert_eq!(z.human_time(hs[2]), "2026-10-04T02:30:00+11:00");
        // DST ends 2026-04-05 02:00 +11:00 -> 01:30 +10:30.
        let (s, e) = z.parse_day("2026-04-05").unwrap();
        assert_eq!(e - s, 24 * H + H / 2);
        let lens: Vec<i64> = hours(&z, s, e).windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(lens.iter().sum::<i64>(), e - s);
        assert_eq!(lens.iter().filter(|&&l| l == H / 2).count(), 1);
        assert_eq!(offset_text(z.offset_secs(e)), "+10:30");
    }

    #[test]
    fn names_round_trip_and_garbage_is_refused() {
        assert_eq!(zone("Asia/Tokyo").name(), "Asia/Tokyo");
        assert!(zone("UTC").is_utc());
        let posix = zone("JST-9");
        assert_eq!(posix.offset_secs(0), 9 * 3600);
        assert!(matches!(
            Zone::named("Mars/Olympus"),
            Err(ZoneError::Unknown(_))
        ));
        assert!(zone("Asia/Tokyo").parse_day("2026-13-01").is_err());
        assert_eq!(offset_text(-(7 * 3600)), "-07:00");
        let t = utc_ms("2026-01-01T01:02:03Z");
        assert_eq!(Zone::utc().clock(t), "01:02:03");
        assert_eq!(zone("Asia/Tokyo").clock(t), "10:02:03");
    }
}
