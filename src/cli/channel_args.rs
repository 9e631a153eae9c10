//! What the release commands share: signing and rollout flags, error mapping, and how a channel
//! document is shown.

use std::path::{Path, PathBuf};

use super::CliError;
use crate::arch::Arch;
use crate::channel::operator::{keys, waves, Repo};
use crate::channel::{self, ChannelError, ChannelName, Rollout};
use crate::sign::{PublicKey, SecretKey};

/// Bad input exits 2; a rejection, an I/O or a repository failure exits 1.
pub(super) fn map(e: ChannelError) -> CliError {
    if e.is_bad_input() {
        CliError::input(e)
    } else {
        CliError::check(e)
    }
}

/// Bad input (exit 2) with this message.
pub(super) fn input(message: String) -> CliError {
    CliError::input(anyhow::anyhow!(message))
}

/// Secret keys for `flag`; a key of the wrong kind (or unreadable) names the flag.
pub(super) fn secret_keys(paths: &[PathBuf], flag: &str) -> Result<Vec<SecretKey>, CliError> {
    keys::secret_keys(paths, flag).map_err(|e| key_error(e, flag))
}

/// Public keys for `flag`, as [`secret_keys`].
pub(super) fn public_keys(paths: &[PathBuf], flag: &str) -> Result<Vec<PublicKey>, CliError> {
    keys::public_keys(paths, flag).map_err(|e| key_error(e, flag))
}

fn key_error(e: ChannelError, flag: &str) -> CliError {
    match e {
        ChannelError::Key(k) => CliError::input(anyhow::Error::new(k).context(flag.to_owned())),
        e => map(e),
    }
}

/// A duration flag between `min` and `max` seconds (`90m`, `12h`, `30d`).
pub(super) fn duration(s: &str, flag: &str, min: u64, max: u64) -> Result<u64, CliError> {
    waves::parse_duration_within(s, min, max).map_err(|e| input(format!("{flag} {e}")))
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
        match &self.waves {
            Some(w) => Ok(Rollout::waves(waves::load(w, "--waves").map_err(map)?, now)),
            None => Ok(Rollout::percent(self.percent.unwrap_or(100), now)),
        }
    }
}

/// Signing options shared by every command that writes a channel document.
#[derive(Debug, Clone, clap::Args)]
pub struct ChannelSigning {
    /// A channel key, secret (PREFIX.key from `stratos keygen`; one the root trusts for the
    /// channel role): signs the channel document. Repeat to meet the role's threshold.
    #[arg(long = "channel-key", value_name = "FILE", required = true)]
    pub channel_keys: Vec<PathBuf>,
    /// How long the new channel document stays valid; nodes reject it after that (at most
    /// 3650d). Nodes also refuse a document signed longer ago than their --max-age (7d by
    /// default): re-sign unchanged channels with `stratos repo refresh`.
    #[arg(long, value_name = "DURATION", default_value = "30d")]
    pub expires: String,
}

impl ChannelSigning {
    /// The `--channel-key` keys and the `--expires` time.
    pub(super) fn load(&self) -> Result<(Vec<SecretKey>, u64), CliError> {
        let keys = secret_keys(&self.channel_keys, "--channel-key")?;
        Ok((keys, expiry(&self.expires, "--expires")?))
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The release repository.
    #[arg(long)]
    pub repo: PathBuf,
    /// The channel to change.
    #[arg(long)]
    pub channel: ChannelName,
    #[command(flatten)]
    pub arch: ArchArg,
    #[command(flatten)]
    pub signing: ChannelSigning,
}

/// `--arch` of the commands that change one architecture's image or rollout in a channel.
#[derive(Debug, Clone, clap::Args)]
pub struct ArchArg {
    /// The architecture whose image and rollout to change ("x86_64", "aarch64"): a channel
    /// carries one image per architecture, each rolled out on its own. [default: the only
    /// one the channel carries; with two, say which]
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<Arch>,
}

/// The architecture a command that succeeded acted on (see [`channel::Channel::pick`]).
pub(super) fn picked(c: &channel::Channel, arch: Option<Arch>) -> Arch {
    c.pick(arch)
        .expect("the command picked it from these tracks")
}

/// Prints the new version of channel `c` and where its `arch` image now is (`None`: the one
/// it carries, or each of them).
pub(super) fn print_channel(c: &channel::Channel, arch: Option<Arch>, what: &str) {
    for t in c
        .tracks
        .iter()
        .filter(|t| arch.map_or(true, |a| a == t.arch()))
    {
        print_track(c, t, what);
    }
}

fn print_track(c: &channel::Channel, t: &channel::Track, what: &str) {
    let plan = if t.rollout.waves.len() == 1 {
        format!("{}% of the fleet", t.rollout.waves[0].fleet_percent)
    } else {
        format!(
            "{} waves: {}",
            t.rollout.waves.len(),
            t.rollout
                .waves
                .iter()
                .map(|w| format!("{}% after {}s", w.fleet_percent, w.start_after))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    println!(
        "{what}: channel {} version {} -> {} {} for {} ({plan}{}), expires {}",
        c.channel,
        c.version,
        t.image.name,
        t.image.version,
        t.arch().name(),
        if t.halted { ", HALTED" } else { "" },
        channel::fmt_time(c.expires)
    );
}

/// `value` as pretty JSON with its keys sorted (through [`serde_json::Value`], whose maps
/// are sorted), as these documents have always been printed.
pub(super) fn print_sorted_json<T: serde::Serialize>(value: &T) {
    let v = serde_json::to_value(value).expect("serialisable");
    println!(
        "{}",
        serde_json::to_string_pretty(&v).expect("serialisable")
    );
}
