//! Time as the documents carry it (Unix seconds) and as messages show it.

/// Longest validity an operator may give a root or channel document (`--expires`): 10 years.
pub const MAX_VALIDITY: u64 = 3650 * 86_400;
/// How far beyond [`MAX_VALIDITY`] a node still accepts an expiry (operator clocks ahead).
pub const CLOCK_SKEW: u64 = 86_400;
/// Oldest channel document a node accepts by default (`update --max-age`): a week. The
/// operator re-signs channels at least that often (`stratos repo refresh`, e.g. daily from cron).
pub const DEFAULT_MAX_AGE: u64 = 7 * 86_400;

/// Seconds since the epoch, now. A clock set before 1970 reads as 0 (no error to report
/// there: documents signed then expire at once, and nodes reach no rollout).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `8d 2h`, `3h 5m`, `45s`: an age or a duration for messages.
pub fn fmt_age(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// `YYYY-MM-DD HH:MM UTC` from Unix seconds (the raw number past the year 9999).
pub fn fmt_time(t: u64) -> String {
    // 9999-12-31T23:59:59Z
    if t > 253_402_300_799 {
        return format!("{t} (after the year 9999)");
    }
    let s = crate::sbom::rfc3339(t); // YYYY-MM-DDTHH:MM:SSZ
    format!("{} {} UTC", &s[..10], &s[11..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(fmt_age(45), "45s");
        assert_eq!(fmt_age(8 * 86_400 + 2 * 3600 + 5), "8d 2h");
        assert_eq!(fmt_age(3 * 3600 + 5 * 60), "3h 5m");
        assert_eq!(fmt_age(7 * 86_400), "7d");
    }

    #[test]
    fn times() {
        assert_eq!(fmt_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(fmt_time(1_795_392_000), "2026-11-23 00:00 UTC");
        assert_eq!(fmt_time(951_782_400), "2000-02-29 00:00 UTC");
    }
}
