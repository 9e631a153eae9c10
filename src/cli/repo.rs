//! `stratos repo`: create a release repository, show its channels, rotate its root keys,
//! re-sign its channels.

use std::path::PathBuf;

use super::channel_args::*;
use super::{CliError, CliResult};
use crate::channel;
use crate::channel::repo::Repo;

/// Manage a release repository: create it, show its channels, rotate its root keys.
#[derive(Debug, clap::Args)]
pub struct Args {
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

pub fn run(a: Args) -> CliResult {
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
