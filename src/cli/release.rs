//! Release channels: `stratos repo`, `publish`, `promote`, `rollout`, `rollback` (the operator
//! side) and `stratos update` (the node side).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{CliError, CliResult};
use crate::channel::client::{bootstrap, Node};
use crate::channel::repo::Repo;
use crate::channel::transport::Source;
use crate::channel::{self, waves, ChannelError, Rollout};
use crate::fsio::{self, caps};
use crate::sign::{PublicKey, SecretKey};

fn map(e: ChannelError) -> CliError {
    match e {
        ChannelError::Input(_) => CliError::input(e),
        ChannelError::Rejected(_) | ChannelError::Io { .. } | ChannelError::Http(_) => {
            CliError::check(e)
        }
    }
}

/// An error whose message already says its cause, without a `source()` chain (the command line
/// prints the chain, so a cause would otherwise appear twice).
fn flat(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn secret_keys(paths: &[PathBuf], flag: &str) -> Result<Vec<SecretKey>, CliError> {
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

fn public_keys(paths: &[PathBuf], flag: &str) -> Result<Vec<PublicKey>, CliError> {
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
fn key_file(p: &Path, flag: &str) -> Result<(), CliError> {
    fsio::read_file(p, caps::KEY, "a key file")
        .map(drop)
        .map_err(|e| CliError::input(flat(format!("{flag}: {e}"))))
}

/// A duration flag between `min` and `max` seconds (`90m`, `12h`, `30d`).
fn duration(s: &str, flag: &str, min: u64, max: u64) -> Result<u64, CliError> {
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
fn expiry(s: &str, flag: &str) -> Result<u64, CliError> {
    Ok(channel::now() + duration(s, flag, 1, channel::MAX_VALIDITY)?)
}

fn open(dir: &Path) -> Result<Repo, CliError> {
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
    fn given(&self) -> bool {
        self.waves.is_some() || self.percent.is_some()
    }

    fn resolve(&self) -> Result<Rollout, CliError> {
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

/// Manage a release repository: create it, show its channels, rotate its root keys.
#[derive(Debug, clap::Args)]
pub struct RepoArgs {
    #[command(subcommand)]
    pub command: RepoSub,
}

#[derive(Debug, clap::Subcommand)]
pub enum RepoSub {
    /// Create a release repository: root.json (version 1) signed by the root keys.
    #[command(
        after_help = "Example:\n  stratos keygen --out keys/root\n  stratos repo init releases/ --root-key keys/root.key\n\nWithout --channel-key / --image-key the root keys also sign channels and are trusted for\nimages. Keep root keys offline; give the channel role its own key in production."
    )]
    Init {
        /// Directory to create the repository in (created if missing; must not hold one).
        dir: PathBuf,
        /// Root secret key (repeatable).
        #[arg(long = "root-key", value_name = "FILE", required = true)]
        root_keys: Vec<PathBuf>,
        /// Root signatures required on a root document.
        #[arg(long, default_value_t = 1)]
        threshold: u32,
        /// Public key allowed to sign channel documents (repeatable; default: the root keys).
        #[arg(long = "channel-key", value_name = "FILE")]
        channel_keys: Vec<PathBuf>,
        /// Channel signatures required on a channel document.
        #[arg(long, default_value_t = 1)]
        channel_threshold: u32,
        /// Public key trusted to have signed published images (repeatable; default: the root keys).
        #[arg(long = "image-key", value_name = "FILE")]
        image_keys: Vec<PathBuf>,
        /// How long root.json stays valid (at most 3650d).
        #[arg(long, value_name = "DURATION", default_value = "365d")]
        expires: String,
    },
    /// A table of channels: version, image, share of the fleet reached now, halted, expiry.
    #[command(after_help = "Example:\n  stratos repo status --repo releases/")]
    Status {
        /// The release repository.
        #[arg(long)]
        repo: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Replace the root keys: a new root version signed by the old keys (meeting the old
    /// threshold) and by the new keys (meeting the new threshold). Nodes follow the chain.
    #[command(
        after_help = "Example:\n  stratos keygen --out keys/root2\n  stratos repo rotate-key --repo releases/ --old-key keys/root.key \\\n      --new-key keys/root2.key --also channel,image\n\nRoles other than root (channel, image) that trust a retired root key keep trusting it\nunless named with --also: the command warns about them. With --also channel every channel\ndocument is re-signed with the new key(s) at once; with --also image, images signed by the\nretired key can no longer be staged by nodes: publish images signed by a trusted key."
    )]
    RotateKey {
        /// The release repository.
        #[arg(long)]
        repo: PathBuf,
        /// A current root secret key (repeat to meet the current threshold).
        #[arg(long = "old-key", value_name = "FILE", required = true)]
        old_keys: Vec<PathBuf>,
        /// A new root secret key (repeatable).
        #[arg(long = "new-key", value_name = "FILE", required = true)]
        new_keys: Vec<PathBuf>,
        /// Root signatures the new root requires.
        #[arg(long, default_value_t = 1)]
        threshold: u32,
        /// Also replace the retired root key(s) by the new one(s) in these roles
        /// (comma-separated or repeated).
        #[arg(long, value_name = "ROLE", value_delimiter = ',', value_parser = ["channel", "image"])]
        also: Vec<String>,
        /// How long the new root.json stays valid (at most 3650d).
        #[arg(long, value_name = "DURATION", default_value = "365d")]
        expires: String,
    },
    /// Re-sign channel documents unchanged (a new version, timestamp and expiry). Nodes refuse
    /// a channel document signed longer ago than their --max-age (7 days by default), so that a
    /// mirror cannot freeze them on an old one: refresh every channel more often than that,
    /// e.g. daily from cron, even when nothing changes.
    #[command(
        after_help = "Examples:\n  stratos repo refresh --repo releases/ --channel stable --sign-key keys/channel.key\n  stratos repo refresh --repo releases/ --all --sign-key keys/channel.key --expires 30d"
    )]
    Refresh {
        /// The release repository.
        #[arg(long)]
        repo: PathBuf,
        /// A channel to re-sign (repeatable).
        #[arg(long, value_name = "NAME", required_unless_present = "all")]
        channel: Vec<String>,
        /// Re-sign every channel of the repository.
        #[arg(long, conflicts_with = "channel")]
        all: bool,
        #[command(flatten)]
        signing: ChannelSigning,
    },
}

pub fn run_repo(a: RepoArgs) -> CliResult {
    match a.command {
        RepoSub::Init {
            dir,
            root_keys,
            threshold,
            channel_keys,
            channel_threshold,
            image_keys,
            expires,
        } => {
            let roots = secret_keys(&root_keys, "--root-key")?;
            let ch = public_keys(&channel_keys, "--channel-key")?;
            let im = public_keys(&image_keys, "--image-key")?;
            let exp = expiry(&expires, "--expires")?;
            let root = Repo::init(&dir, &roots, threshold, &ch, channel_threshold, &im, exp)
                .map_err(map)?;
            println!(
                "created release repository {} (root version {}, {} root key(s), threshold {})",
                dir.display(),
                root.version,
                roots.len(),
                threshold
            );
            println!(
                "nodes bootstrap their trust from {}",
                dir.join("root.json").display()
            );
            Ok(())
        }
        RepoSub::Status { repo, json } => {
            let r = open(&repo)?;
            let root = r.root().map_err(map)?;
            let rows = r.status().map_err(map)?;
            if json {
                let v = serde_json::json!({"root_version": root.version, "root_expires": root.expires, "channels": rows});
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).expect("serialisable")
                );
                return Ok(());
            }
            println!(
                "root version {} (expires {})",
                root.version,
                fmt_time(root.expires)
            );
            if rows.is_empty() {
                println!("no channels yet; publish one with `stratos publish IMAGE --repo {} --channel NAME`", repo.display());
                return Ok(());
            }
            println!(
                "{:<12} {:>7}  {:<28} {:>8}  {:<8} {:<9} EXPIRES",
                "CHANNEL", "VERSION", "IMAGE", "REACHED", "STATE", "SIGNED"
            );
            let now = channel::now();
            for row in rows {
                let age = now.saturating_sub(row.timestamp);
                println!(
                    "{:<12} {:>7}  {:<28} {:>7.2}%  {:<8} {:<9} {}{}",
                    row.channel,
                    row.version,
                    format!("{} {}", row.image, row.image_version),
                    row.reached_percent,
                    if row.halted { "halted" } else { "active" },
                    format!("{} ago", channel::fmt_age(age)),
                    fmt_time(row.expires),
                    if row.expired {
                        " (EXPIRED: nodes reject it; re-sign with `stratos repo refresh`)"
                    } else if age > channel::DEFAULT_MAX_AGE {
                        " (STALE: nodes with the default --max-age 7d refuse it; run `stratos repo refresh`)"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
        RepoSub::RotateKey {
            repo,
            old_keys,
            new_keys,
            threshold,
            also,
            expires,
        } => {
            let r = open(&repo)?;
            let old = secret_keys(&old_keys, "--old-key")?;
            let new = secret_keys(&new_keys, "--new-key")?;
            let rot = r
                .rotate(&old, &new, threshold, expiry(&expires, "--expires")?, &also)
                .map_err(map)?;
            let ids = |ids: &[crate::sign::KeyId]| {
                ids.iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "root version {}: root keys {} (threshold {})",
                rot.root.version,
                ids(&rot.root.roles["root"].key_ids),
                threshold
            );
            for role in &rot.rotated {
                println!(
                    "the {role} role now trusts {} instead of {}",
                    ids(&rot.root.roles[role].key_ids),
                    ids(&rot.retired)
                );
            }
            for name in &rot.resigned {
                println!("re-signed channel {name} with the new key(s)");
            }
            if rot.rotated.iter().any(|r| r == "image") {
                eprintln!(
                    "note: nodes no longer stage images signed by {}; publish images signed by a key the image role trusts",
                    ids(&rot.retired)
                );
            }
            if !rot.still_trusting.is_empty() {
                let roles: Vec<&str> = rot.still_trusting.iter().map(|(r, _)| r.as_str()).collect();
                let keys: Vec<crate::sign::KeyId> = rot
                    .still_trusting
                    .iter()
                    .flat_map(|(_, k)| k.iter().cloned())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                eprintln!(
                    "warning: the {} role{} still trust{} the retired root key {}: whoever holds it can still sign {}. To replace it there too, run the rotation with --also {}",
                    roles.join(" and "),
                    if roles.len() > 1 { "s" } else { "" },
                    if roles.len() > 1 { "" } else { "s" },
                    ids(&keys),
                    roles
                        .iter()
                        .map(|r| match *r {
                            "channel" => "channel documents",
                            "image" => "images nodes will stage",
                            other => other,
                        })
                        .collect::<Vec<_>>()
                        .join(" and "),
                    roles.join(",")
                );
            }
            Ok(())
        }
        RepoSub::Refresh {
            repo,
            channel: names,
            all,
            signing,
        } => {
            let r = open(&repo)?;
            let keys = secret_keys(&signing.sign_keys, "--sign-key")?;
            let exp = expiry(&signing.expires, "--expires")?;
            let names = if all {
                r.channel_names().map_err(map)?
            } else {
                names
            };
            if names.is_empty() {
                return Err(CliError::input(anyhow::anyhow!(
                    "{} has no channels to refresh",
                    repo.display()
                )));
            }
            for n in &names {
                let c = r.refresh(n, &keys, exp).map_err(map)?;
                print_channel(&c, "refreshed");
            }
            Ok(())
        }
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

fn print_channel(c: &channel::Channel, what: &str) {
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

/// Publish a signed image to a channel: copy its artifacts into the repository's object store
/// and sign a new channel version pointing at it.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  stratos publish out/hello --repo releases/ --channel canary --percent 10 --sign-key keys/root.key\n\nRefuses unsigned images and images whose signature does not verify against a key the\nrepository's root trusts for images. Objects are written before the channel document."
)]
pub struct PublishArgs {
    /// The image directory (from `stratos build --sign-key`).
    pub image: PathBuf,
    /// The release repository (a directory made by `stratos repo init`).
    #[arg(long)]
    pub repo: PathBuf,
    /// The channel to publish to (created on first publish).
    #[arg(long)]
    pub channel: String,
    #[command(flatten)]
    pub plan: RolloutPlan,
    #[command(flatten)]
    pub signing: ChannelSigning,
}

pub fn run_publish(a: PublishArgs) -> CliResult {
    let r = open(&a.repo)?;
    let keys = secret_keys(&a.signing.sign_keys, "--sign-key")?;
    let exp = expiry(&a.signing.expires, "--expires")?;
    let c = r
        .publish(&a.image, &a.channel, &keys, a.plan.resolve()?, exp)
        .map_err(map)?;
    print_channel(&c, "published");
    Ok(())
}

/// Point a channel at the image another channel carries (e.g. canary → stable).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  stratos promote --repo releases/ --from canary --to stable --waves waves.toml --sign-key keys/root.key"
)]
pub struct PromoteArgs {
    /// The release repository.
    #[arg(long)]
    pub repo: PathBuf,
    /// The channel whose image is promoted.
    #[arg(long)]
    pub from: String,
    /// The channel that gets it (created if missing).
    #[arg(long)]
    pub to: String,
    #[command(flatten)]
    pub plan: RolloutPlan,
    #[command(flatten)]
    pub signing: ChannelSigning,
}

pub fn run_promote(a: PromoteArgs) -> CliResult {
    let r = open(&a.repo)?;
    let keys = secret_keys(&a.signing.sign_keys, "--sign-key")?;
    let exp = expiry(&a.signing.expires, "--expires")?;
    let c = r
        .promote(&a.from, &a.to, &keys, a.plan.resolve()?, exp)
        .map_err(map)?;
    print_channel(&c, &format!("promoted from {}", a.from));
    Ok(())
}

/// Set a channel's rollout (`--waves FILE` or `--percent N`, starting now), or halt, resume or
/// advance it.
#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  stratos rollout --repo releases/ --channel stable --waves waves.toml --sign-key keys/root.key\n  stratos rollout halt --repo releases/ --channel stable --sign-key keys/root.key\n  stratos rollout advance --repo releases/ --channel stable --gate boot.json --sign-key keys/root.key\n\nwaves.toml:\n  [[wave]]\n  start-after = \"0s\"\n  fleet-percent = 1\n  [[wave]]\n  start-after = \"6h\"\n  fleet-percent = 25\n  [[wave]]\n  start-after = \"1d\"\n  fleet-percent = 100"
)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub command: Option<RolloutSub>,
    /// The release repository.
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// The channel whose rollout is set.
    #[arg(long)]
    pub channel: Option<String>,
    #[command(flatten)]
    pub plan: RolloutPlan,
    /// Secret key of the root's channel role (repeat to meet its threshold).
    #[arg(long = "sign-key", value_name = "FILE")]
    pub sign_keys: Vec<PathBuf>,
    /// How long the new channel document stays valid; nodes reject it after that (at most
    /// 3650d).
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

#[derive(Debug, clap::Subcommand)]
pub enum RolloutSub {
    /// Stop selecting new nodes (nodes already updated stay updated).
    Halt(Target),
    /// Continue a halted rollout where its schedule now is.
    Resume(Target),
    /// Widen the rollout to its next wave now (or to --percent), only if the boot-test result
    /// given with --gate is for this image and met all its objectives.
    Advance {
        #[command(flatten)]
        target: Target,
        /// A `stratos boot-test --json` result for the image the channel carries.
        #[arg(long, value_name = "FILE")]
        gate: PathBuf,
        /// Widen to this share of the fleet instead of the next wave.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
        percent: Option<u32>,
    },
}

pub fn run_rollout(a: RolloutArgs) -> CliResult {
    let (t, verb) = match a.command {
        None => {
            let (Some(repo), Some(channel)) = (a.repo, a.channel) else {
                return Err(CliError::input(anyhow::anyhow!(
                    "rollout needs --repo DIR --channel NAME and --waves FILE or --percent N (or a subcommand: halt, resume, advance)"
                )));
            };
            if !a.plan.given() {
                return Err(CliError::input(anyhow::anyhow!(
                    "rollout: say how far with --waves FILE or --percent N"
                )));
            }
            let r = open(&repo)?;
            let keys = secret_keys(&a.sign_keys, "--sign-key")?;
            let plan = a.plan.resolve()?;
            let c = r
                .update(&channel, &keys, expiry(&a.expires, "--expires")?, |c| {
                    c.rollout = plan;
                    Ok(())
                })
                .map_err(map)?;
            print_channel(&c, "rollout set");
            if c.halted {
                println!(
                    "note: the channel is halted; `stratos rollout resume` lets nodes update again"
                );
            }
            return Ok(());
        }
        Some(RolloutSub::Halt(t)) => (t, Verb::Halt),
        Some(RolloutSub::Resume(t)) => (t, Verb::Resume),
        Some(RolloutSub::Advance {
            target,
            gate,
            percent,
        }) => (target, Verb::Advance(gate, percent)),
    };
    let r = open(&t.repo)?;
    let keys = secret_keys(&t.signing.sign_keys, "--sign-key")?;
    let exp = expiry(&t.signing.expires, "--expires")?;
    let now = channel::now();
    let mut note = String::new();
    let c = r
        .update(&t.channel, &keys, exp, |c| match &verb {
            Verb::Halt => {
                if c.halted {
                    return Err(ChannelError::input(format!("channel {} is already halted", c.channel)));
                }
                c.halted = true;
                Ok(())
            }
            Verb::Resume => {
                if !c.halted {
                    return Err(ChannelError::input(format!("channel {} is not halted", c.channel)));
                }
                c.halted = false;
                Ok(())
            }
            Verb::Advance(gate, percent) => {
                if c.halted {
                    return Err(ChannelError::input(format!(
                        "channel {} is halted; resume it before widening the rollout",
                        c.channel
                    )));
                }
                let bytes = fsio::read_file(gate, caps::REPORT, "a boot-test result")
                    .map_err(|e| ChannelError::input(format!("--gate: {e}")))?;
                note = channel::gate::check(&bytes, &gate.display().to_string(), &c.image)?;
                let reached = c.rollout.reached_bp(now);
                match percent {
                    Some(p) => {
                        if p * 100 <= reached {
                            return Err(ChannelError::input(format!(
                                "the rollout already reaches {:.2}% of the fleet; --percent {p} would not widen it",
                                f64::from(reached) / 100.0
                            )));
                        }
                        c.rollout = Rollout::percent(*p, now);
                    }
                    None => {
                        let next = c
                            .rollout
                            .waves
                            .iter()
                            .find(|w| w.fleet_percent * 100 > reached)
                            .cloned()
                            .ok_or_else(|| {
                                ChannelError::input(format!(
                                    "the rollout already reaches {:.2}% of the fleet, its last wave; nothing to advance",
                                    f64::from(reached) / 100.0
                                ))
                            })?;
                        // Re-base the schedule so the next wave starts now; later waves keep
                        // their spacing.
                        c.rollout.started_at = now.saturating_sub(next.start_after);
                    }
                }
                Ok(())
            }
        })
        .map_err(map)?;
    let what = match verb {
        Verb::Halt => "halted",
        Verb::Resume => "resumed",
        Verb::Advance(..) => "advanced",
    };
    if !note.is_empty() {
        println!("gate passed: {note}");
    }
    print_channel(&c, what);
    println!(
        "reached now: {:.2}% of the fleet",
        f64::from(c.rollout.reached_bp(now)) / 100.0
    );
    Ok(())
}

enum Verb {
    Halt,
    Resume,
    Advance(PathBuf, Option<u32>),
}

/// Point a channel back at the image it carried before, as a new, higher version (nodes
/// accept it; a replay of the old document is still rejected).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  stratos rollback --repo releases/ --channel stable --sign-key keys/root.key"
)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub target: Target,
}

pub fn run_rollback(a: RollbackArgs) -> CliResult {
    let t = a.target;
    let r = open(&t.repo)?;
    let keys = secret_keys(&t.signing.sign_keys, "--sign-key")?;
    let c = r
        .rollback(&t.channel, &keys, expiry(&t.signing.expires, "--expires")?)
        .map_err(map)?;
    print_channel(&c, "rolled back");
    Ok(())
}

/// The node side: check a channel for an update, or fetch, verify and stage it.
#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    #[command(subcommand)]
    pub command: UpdateSub,
}

#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// The repository: a directory, file:///path, or http://host[:port]/path.
    #[arg(long)]
    pub repo: String,
    /// The channel this node follows.
    #[arg(long)]
    pub channel: String,
    /// This node's stable id (e.g. /etc/machine-id); decides its cohort.
    #[arg(long)]
    pub node_id: String,
    /// The node's update state directory (trusted metadata, staged images).
    #[arg(long)]
    pub state: PathBuf,
    /// A root.json to trust when the state has none yet (e.g. the one shipped in the image).
    #[arg(long, value_name = "FILE")]
    pub bootstrap_root: Option<PathBuf>,
    /// Largest artifact to download, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub max_artifact_mib: u64,
    /// Refuse a channel document signed longer ago than this (freeze protection: a mirror
    /// serving an old but unexpired document cannot keep this node from updating). The
    /// operator re-signs channels more often with `stratos repo refresh`.
    #[arg(long, value_name = "DURATION", default_value = "7d")]
    pub max_age: String,
    /// Network time-out in seconds, for http:// repositories: for connecting, for any silence
    /// from the server, and as the grace period after which every download must average at
    /// least 64 KiB/s (so a file of N bytes takes at most SECS + N / 64 KiB seconds).
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Print the decision as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum UpdateSub {
    /// Verify the channel (and the signed manifest it points at) and say whether this node is
    /// selected; download no artifact.
    #[command(
        after_help = "Example:\n  stratos update check --repo http://updates.example/releases --channel stable \\\n      --node-id $(cat /etc/machine-id) --state /var/lib/stratos\n\nExit 0 when the check succeeded (selected or not), 1 when verification rejected\nsomething or the repository failed or timed out (the reason is printed; the state is left\nuntouched), 2 on bad usage.\n\nRefused: documents not signed by the trusted root's keys, older versions (replay), expired\ndocuments, documents valid for more than 10 years, channel documents signed longer ago\nthan --max-age (freeze), and channel documents whose image name or version differ from\nthe signed manifest they point at."
    )]
    Check(NodeArgs),
    /// Like check; when selected, download the image, verify every digest and its signature,
    /// and stage it under STATE/images/ (staged.json names it).
    #[command(
        after_help = "Example:\n  stratos update fetch --repo releases/ --channel stable --node-id node-17 --state /var/lib/stratos --json\n\nDownloads are assembled in STATE/.staging-XXXXXX and moved into place when complete; one\nleft by an interrupted fetch is removed at the next run (with a note on stderr)."
    )]
    Fetch(NodeArgs),
}

pub fn run_update(a: UpdateArgs) -> CliResult {
    let (n, fetch) = match a.command {
        UpdateSub::Check(n) => (n, false),
        UpdateSub::Fetch(n) => (n, true),
    };
    if !channel::valid_channel_name(&n.channel) {
        return Err(CliError::input(anyhow::anyhow!(
            "--channel {:?} is not a channel name (1-64 of a-z, 0-9, -, _)",
            n.channel
        )));
    }
    if n.node_id.is_empty() {
        return Err(CliError::input(anyhow::anyhow!(
            "--node-id must not be empty"
        )));
    }
    let max_age = duration(&n.max_age, "--max-age", 60, channel::MAX_VALIDITY)?;
    let source = Source::parse(&n.repo)
        .map_err(map)?
        .with_timeout(Duration::from_secs(n.timeout));
    if let Some(b) = &n.bootstrap_root {
        bootstrap(&n.state, b).map_err(map)?;
    }
    let node = Node {
        source,
        channel: n.channel.clone(),
        node_id: n.node_id.clone(),
        state: n.state.clone(),
        now: channel::now(),
        max_artifact_bytes: n.max_artifact_mib.saturating_mul(1 << 20),
        max_age,
    };
    let r = if fetch {
        node.fetch_update()
    } else {
        node.check()
    };
    match r {
        Ok(d) => {
            for note in &d.notes {
                eprintln!("note: {note}");
            }
            if n.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&d).expect("serialisable")
                );
            } else {
                println!(
                    "channel {} version {}: {} {}: {}",
                    d.channel, d.channel_version, d.image, d.image_version, d.reason
                );
                if let Some(s) = &d.staged {
                    println!("staged at {}", n.state.join(s).display());
                }
            }
            Ok(())
        }
        Err(e) => {
            if n.json {
                // `rejected`: verification refused something; a failed or slow repository
                // or a local error is not a rejection (the exit code is 1 or 2 all the same).
                let v = serde_json::json!({
                    "selected": false,
                    "rejected": matches!(e, ChannelError::Rejected(_)),
                    "reason": e.to_string(),
                    "channel": n.channel,
                    "channel_version": null,
                    "image_version": null,
                });
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).expect("serialisable")
                );
            }
            Err(map(e))
        }
    }
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
