//! Wall-clock helpers: the one place that turns system time into the API's
//! milliseconds since the Unix epoch, and that reads the daemon's time zone.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use netmon_proto::zone::Zone;

static ZONE: OnceLock<Zone> = OnceLock::new();

/// The daemon's time zone (TZ, else /etc/localtime), read once at start:
/// daily quotas and reports that name no zone follow it. A zone that
/// cannot be read is UTC, with a warning.
pub fn zone() -> &'static Zone {
    ZONE.get_or_init(|| {
        let (zone, error) = Zone::pick(false);
        if let Some(error) = error {
            tracing::warn!(%error, "using UTC");
        }
        zone
    })
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
