//! PostgreSQL's timestamps (microseconds since 2000-01-01 UTC) as `SystemTime`, and the
//! lag of an applied transaction behind its commit.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 2000-01-01 00:00:00 UTC, in seconds since the Unix epoch.
const PG_EPOCH_UNIX_SECS: u64 = 946_684_800;

/// A server timestamp as a `SystemTime`; `None` before the Unix epoch or out of range.
pub(crate) fn pg_time(micros: i64) -> Option<SystemTime> {
    let epoch = UNIX_EPOCH.checked_add(Duration::from_secs(PG_EPOCH_UNIX_SECS))?;
    if micros >= 0 {
        epoch.checked_add(Duration::from_micros(micros.unsigned_abs()))
    } else {
        epoch
            .checked_sub(Duration::from_micros(micros.unsigned_abs()))
            .filter(|t| *t >= UNIX_EPOCH)
    }
}

/// How long after `committed` (server clock) `now` (this machine's clock) is: zero when the
/// clocks disagree the other way.
pub(crate) fn lag(committed: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(committed).unwrap_or(Duration::ZERO)
}

/// Microseconds since the Unix epoch (0 for earlier times).
pub(crate) fn unix_micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_server_timestamps_and_never_panics() {
        let t = pg_time(1_000_000).unwrap();
        assert_eq!(unix_micros(t), (PG_EPOCH_UNIX_SECS + 1) * 1_000_000);
        assert_eq!(
            unix_micros(pg_time(-1_000_000).unwrap()),
            (PG_EPOCH_UNIX_SECS - 1) * 1_000_000
        );
        assert_eq!(pg_time(i64::MIN), None, "before the Unix epoch");
        let _ = pg_time(i64::MAX); // far future: some or none, no panic
        let later = t + Duration::from_millis(5);
        assert_eq!(lag(t, later), Duration::from_millis(5));
        assert_eq!(
            lag(later, t),
            Duration::ZERO,
            "clock skew is no negative lag"
        );
    }
}
