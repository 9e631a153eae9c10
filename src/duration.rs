//! Durations as people write them, on the command line and in the files they edit: `500ms`,
//! `30s`, `5m`, `2h`, `7d`, or a decimal such as `1.5s`. A bare number is seconds. One parser
//! for every flag (`--timeout`, `--network-timeout`, `--expires`, `--max-age`, ...) and the
//! waves file's `start-after`.

use std::time::Duration;

/// A text that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration: write a number and a unit, like 500ms, 30s, 5m, 2h or 7d (a bare number is seconds)")]
pub struct DurationError(pub String);

/// The units, longest suffix first (`ms` before `m` and `s`), with their length in seconds.
const UNITS: [(&str, f64); 5] = [
    ("ms", 1e-3),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
    ("d", 86_400.0),
];

/// Parses `500ms`, `30s`, `5m`, `2h`, `7d`, `1.5s` or `30` (seconds).
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError(text.to_owned());
    let s = text.trim();
    let (number, seconds_per_unit) = UNITS
        .iter()
        .find_map(|(unit, secs)| s.strip_suffix(unit).map(|n| (n.trim_end(), *secs)))
        .unwrap_or((s, 1.0));
    // Digits with at most one decimal point: no sign, exponent, `inf` or `NaN`.
    let mut parts = number.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let fraction = parts.next();
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || fraction.is_some_and(|f| f.is_empty() || !digits(f)) {
        return Err(bad());
    }
    if fraction.is_none() && seconds_per_unit >= 1.0 {
        // Whole units: exact, with overflow refused rather than rounded.
        let n: u64 = whole.parse().map_err(|_| bad())?;
        let secs = n.checked_mul(seconds_per_unit as u64).ok_or_else(bad)?;
        return Ok(Duration::from_secs(secs));
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_unit_and_bare_seconds() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse("120"), Ok(Duration::from_secs(120)));
        assert_eq!(parse(" 1.5s "), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("0.25m"), Ok(Duration::from_secs(15)));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for t in [
            "",
            "s",
            "ms",
            "-5s",
            "+5s",
            "5 minutes",
            "5x",
            "1e3s",
            "inf",
            "NaN",
            ".5s",
            "5.s",
            "1.2.3s",
            "99999999999999999999d",
        ] {
            let e = parse(t).unwrap_err();
            assert_eq!(e, DurationError(t.to_owned()), "{t:?}");
        }
        assert!(parse("5x")
            .unwrap_err()
            .to_string()
            .contains("like 500ms, 30s, 5m"));
    }
}
