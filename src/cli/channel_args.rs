//! What the release commands share: signing and rollout flags, key loading, error mapping
//! and how a channel document is shown.

use std::path::{Path, PathBuf};

use super::CliError;
use crate::channel::repo::Repo;
use crate::channel::{self, waves, ChannelError, Rollout};
use crate::fsio::{self, caps};
use crate::sign::{PublicKey, SecretKey};

pub(super) fn map(e: ChannelError) -> CliError {
    match e {
        ChannelError::Input(_) => CliError::input(e),
        ChannelError::Rejected(_) | ChannelError::Io { .. } | ChannelError::Http(_) => {
            CliError::check(e)
        }
    }
}

/// An error whose message already says its cause, without a `source()` chain (the command line
/// prints the chain, so a cause would otherwise appear twice).
pub(super) fn flat(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

pub(super) fn secret_keys(paths: &[PathBuf], flag: &str) -> Result<Vec<SecretKey>, CliError> {
    if paths.is_empty() {
        return Err(CliError::input(anyhow::anyhow!(
            "no signing key: pass {flag} FILE (a key from `stratos keygen`)"
        )));
    }
    paths
        .iter()
        .map(|p| {
            key_file(p, flag)?;
            SecretKey::load(p).map_err(|e| CliError::input(flat(e)))
        })
        .collect()
}

pub(super) fn public_keys(paths: &[PathBuf], flag: &str) -> Result<Vec<PublicKey>, CliError> {
    paths
        .iter()
        .map(|p| {
            key_file(p, flag)?;
            PublicKey::load(p).map_err(|e| CliError::input(flat(e)))
        })
        .collect()
}

/// A key file must be a regular file of key size before it is loaded (a FIFO would block the
/// load forever, a device fill memory).
pub(super) fn key_file(p: &Path, flag: &str) -> Result<(), CliError> {
    fsio::read_file(p, caps::KEY, "a key file")
        .map(drop)
        .map_err(|e| CliError::input(flat(format!("{flag}: {e}"))))
}

/// A duration flag between `min` and `max` seconds (`90m`, `12h`, `30d`).
pub(super) fn duration(s: &str, flag: &str, min: u64, max: u64) -> Result<u64, CliError> {
    let d = waves::parse_duration(s).ok_or_else(|| {
        CliError::input(anyhow::anyhow!(
            "{flag} {s:?}: expected a duration like 90m, 12h or 30d"
        ))
    })?;
    if d < min || d > max {
        return Err(CliError::input(anyhow::anyhow!(
            "{flag} {s:?}: must be between {} and {}",
            channel::fmt_age(min),
            channel::fmt_age(max)
        )));
    }
    Ok(d)
}

/// The expiry time `--expires DURATION` from now gives: at most 10 years ahead
/// ([`channel::MAX_VALIDITY`]); nodes refuse documents valid for longer.
pub(super) fn expiry(s: &str, flag: &str) -> Result<u64, CliError> {
    Ok(channel::now() + duration(s, flag, 1, channel::MAX_VALIDITY)?)
}

pub(super) fn open(dir: &Path) -> Result<Repo, CliError> {
    Repo::open(dir).map_err(map)
}

/// `--waves FILE | --percent N` → a rollout starting now (100% when neither is given).
#[derive(Debug, Clone, clap::Args)]
pub struct RolloutPlan {
    /// Roll out in waves: a TOML file of `[[wave]] start-after = "1h"  fleet-percent = 10`.
    #[arg(long, value_name = "FILE", conflicts_with = "percent")]
    pub waves: Option<PathBuf>,
    /// Roll out to a fixed share of the channel's fleet at once (0-100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=100))]
    pub percent: Option<u32>,
}

impl RolloutPlan {
    pub(super) fn given(&self) -> bool {
        self.waves.is_some() || self.percent.is_some()
    }

    pub(super) fn resolve(&self) -> Result<Rollout, CliError> {
        let now = channel::now();
        if let Some(w) = &self.waves {
            let text = fsio::read_text(w, caps::PROFILE, "a waves file")
                .map_err(|e| CliError::input(flat(format!("--waves: {e}"))))?;
            let waves = waves::parse(&text, &w.display().to_string()).map_err(map)?;
            return Ok(Rollout {
                started_at: now,
                waves,
            });
        }
        Ok(Rollout::percent(self.percent.unwrap_or(100), now))
    }
}

/// Signing options shared by every command that writes a channel document.
#[derive(Debug, Clone, clap::Args)]
pub struct ChannelSigning {
    /// Secret key of the root's channel role (repeat to meet its threshold).
    #[arg(long = "sign-key", value_name = "FILE", required = true)]
    pub sign_keys: Vec<PathBuf>,
    /// How long the new channel document stays valid; nodes reject it after that (at most
    /// 3650d). Nodes also refuse a document signed longer ago than their --max-age (7d by
    /// default): re-sign unchanged channels with `stratos repo refresh`.
    #[arg(long, value_name = "DURATION", default_value = "30d")]
    pub expires: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The release repository.
    #[arg(long)]
    pub repo: PathBuf,
    /// The channel to change.
    #[arg(long)]
    pub channel: String,
    #[command(flatten)]
    pub signing: ChannelSigning,
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

pub(super) fn print_channel(c: &channel::Channel, what: &str) {
    let plan = if c.rollout.waves.len() == 1 {
        format!("{}% of the fleet", c.rollout.waves[0].fleet_percent)
    } else {
        format!(
            "{} waves: {}",
            c.rollout.waves.len(),
            c.rollout
                .waves
                .iter()
                .map(|w| format!("{}% after {}s", w.fleet_percent, w.start_after))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    println!(
        "{what}: channel {} version {} -> {} {} ({plan}{}), expires {}",
        c.channel,
        c.version,
        c.image.name,
        c.image.version,
        if c.halted { ", HALTED" } else { "" },
        fmt_time(c.expires)
    );
}

#[cfg(test)]
mod tests {
    use super::fmt_time;

    #[test]
    fn times() {
        assert_eq!(fmt_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(fmt_time(1_795_392_000), "2026-11-23 00:00 UTC");
        assert_eq!(fmt_time(951_782_400), "2000-02-29 00:00 UTC");
    }
}
