//! Waves files: a rollout as data (Bottlerocket's `waves/*.toml` shape).
//!
//! ```toml
//! [[wave]]
//! start-after = "0s"
//! fleet-percent = 1
//! [[wave]]
//! start-after = "1h"
//! fleet-percent = 10
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::channel::doc::{fmt_age, Wave};
use crate::channel::error::{ChannelError, WaveFault, WavesError};
use crate::fsio::{self, caps};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    wave: Vec<RawWave>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawWave {
    start_after: String,
    fleet_percent: i64,
}

/// `90s`, `30m`, `1h`, `6d` (or plain seconds), in whole seconds ([`crate::duration`]).
pub fn parse_duration(s: &str) -> Option<u64> {
    crate::duration::parse(s)
        .ok()
        .filter(|d| d.subsec_nanos() == 0)
        .map(|d| d.as_secs())
}

/// A duration that is not one, or out of bounds (the caller prefixes the flag it came from).
#[derive(Debug, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?}: expected a duration like 90m, 12h or 30d")]
    Malformed(String),
    #[error("{text:?}: must be between {} and {}", fmt_age(*min), fmt_age(*max))]
    OutOfBounds { text: String, min: u64, max: u64 },
}

/// A duration between `min` and `max` seconds (`90m`, `12h`, `30d`).
pub fn parse_duration_within(s: &str, min: u64, max: u64) -> Result<u64, DurationError> {
    let d = parse_duration(s).ok_or_else(|| DurationError::Malformed(s.to_owned()))?;
    if d < min || d > max {
        return Err(DurationError::OutOfBounds {
            text: s.to_owned(),
            min,
            max,
        });
    }
    Ok(d)
}

/// Reads and parses a waves file (`flag` names the option it came from in read errors).
pub fn load(path: &Path, flag: &str) -> Result<Vec<Wave>, ChannelError> {
    let text =
        fsio::read_text(path, caps::PROFILE, "a waves file").map_err(ChannelError::flag(flag))?;
    parse(&text, &path.display().to_string())
}

pub fn parse(text: &str, path: &str) -> Result<Vec<Wave>, ChannelError> {
    let f: File = toml::from_str(text).map_err(|e| {
        let (line, col) = e
            .span()
            .map_or((0, 0), |s| crate::profile::line_col(text, s.start));
        WavesError::Syntax {
            path: path.to_owned(),
            line,
            col,
            message: e.message().to_owned(),
        }
    })?;
    let bad = |index, fault| WavesError::BadWave {
        path: path.to_owned(),
        index,
        fault,
    };
    let mut out: Vec<Wave> = Vec::new();
    for (i, w) in f.wave.iter().enumerate() {
        let start_after = parse_duration(&w.start_after)
            .ok_or_else(|| bad(i, WaveFault::NotADuration(w.start_after.clone())))?;
        let fleet_percent = u32::try_from(w.fleet_percent)
            .ok()
            .filter(|p| (1..=100).contains(p))
            .ok_or_else(|| bad(i, WaveFault::PercentOutOfRange))?;
        if let Some(prev) = out.last() {
            if start_after <= prev.start_after {
                return Err(bad(i, WaveFault::NotLater).into());
            }
            if fleet_percent <= prev.fleet_percent {
                return Err(bad(i, WaveFault::NotLarger).into());
            }
        }
        out.push(Wave {
            start_after,
            fleet_percent,
        });
    }
    if out.is_empty() {
        return Err(WavesError::NoWaves {
            path: path.to_owned(),
        }
        .into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let w = parse("[[wave]]\nstart-after = \"0s\"\nfleet-percent = 1\n[[wave]]\nstart-after = \"1h\"\nfleet-percent = 100\n", "w.toml").unwrap();
        assert_eq!(
            w[1],
            Wave {
                start_after: 3600,
                fleet_percent: 100
            }
        );
        let wave = |e: ChannelError| match e {
            ChannelError::Waves(WavesError::BadWave { index, fault, .. }) => (index, fault),
            e => panic!("{e:?}"),
        };
        for (bad, want, text) in [
            ("[[wave]]\nstart-after = \"soon\"\nfleet-percent = 1\n", (0, WaveFault::NotADuration("soon".into())), "w.toml: wave[0].start-after \"soon\" is not a duration like 90s, 30m, 1h or 6d"),
            ("[[wave]]\nstart-after = \"0s\"\nfleet-percent = 101\n", (0, WaveFault::PercentOutOfRange), "w.toml: wave[0].fleet-percent must be between 1 and 100"),
            ("[[wave]]\nstart-after = \"1h\"\nfleet-percent = 1\n[[wave]]\nstart-after = \"1h\"\nfleet-percent = 5\n", (1, WaveFault::NotLater), "w.toml: wave[1] must start after wave[0] (start-after values must increase)"),
            ("[[wave]]\nstart-after = \"1h\"\nfleet-percent = 10\n[[wave]]\nstart-after = \"2h\"\nfleet-percent = 5\n", (1, WaveFault::NotLarger), "w.toml: wave[1].fleet-percent must be larger than wave[0]'s"),
        ] {
            let e = parse(bad, "w.toml").unwrap_err();
            assert_eq!(e.to_string(), text);
            assert_eq!(wave(e), want);
        }
        let e = parse("[[wave]]\nstart = \"1h\"\n", "w.toml").unwrap_err();
        assert!(
            matches!(&e, ChannelError::Waves(WavesError::Syntax { line: 2, message, .. }) if message.contains("unknown field")),
            "{e:?}"
        );
        assert!(matches!(
            parse("", "w.toml").unwrap_err(),
            ChannelError::Waves(WavesError::NoWaves { .. } | WavesError::Syntax { .. })
        ));
        assert_eq!(parse_duration("6d"), Some(518_400));
        assert_eq!(
            parse_duration_within("7d", 60, 30 * 86_400).unwrap(),
            604_800
        );
        let e = parse_duration_within("30s", 60, 86_400).unwrap_err();
        assert_eq!(e.to_string(), "\"30s\": must be between 1m and 1d");
        let e = parse_duration_within("soon", 60, 86_400).unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"soon\": expected a duration like 90m, 12h or 30d"
        );
    }
}
