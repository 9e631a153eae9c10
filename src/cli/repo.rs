//! `stratos repo`: create a release repository, show its channels, rotate its root keys,
//! re-sign its channels.

use std::path::PathBuf;

use super::channel_args::*;
use super::CliResult;
use crate::channel::operator::{Repo, Rotation, Status};
use crate::channel::{self, ChannelName, RoleName};
use crate::sign::KeyId;

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
        after_help = "Example:\n  stratos keygen --out keys/root\n  stratos repo init --repo releases/ --root-key keys/root.key\n\n--root-key takes secret keys (they sign root.json); --channel-key and --image-key take public\nkeys (the keys trusted for those roles). Without --channel-key / --image-key the root keys\nalso sign channels and are trusted for images. Keep root keys offline; give the channel role its own key in production."
    )]
    Init(InitArgs),
    /// A table of channels, a row per architecture each carries an image for: version, image,
    /// share of the fleet reached now, halted, expiry.
    #[command(after_help = "Example:\n  stratos repo status --repo releases/")]
    Status(StatusArgs),
    /// Replace the root keys: a new root version signed by the old keys (meeting the old
    /// threshold) and by the new keys (meeting the new threshold). Nodes follow the chain.
    #[command(
        after_help = "Example:\n  stratos keygen --out keys/root2\n  stratos repo rotate-key --repo releases/ --old-root-key keys/root.key \\\n      --new-root-key keys/root2.key --also channel,image\n\nRoles other than root (channel, image) that trust a retired root key keep trusting it\nunless named with --also: the command warns about them. With --also channel every channel\ndocument is re-signed with the new key(s) at once; with --also image, images signed by the\nretired key can no longer be staged by nodes: publish images signed by a trusted key."
    )]
    RotateKey(RotateKeyArgs),
    /// Re-sign channel documents unchanged (a new version, timestamp and expiry). Nodes refuse
    /// a channel document signed longer ago than their --max-age (7 days by default), so that a
    /// mirror cannot freeze them on an old one: refresh every channel more often than that,
    /// e.g. daily from cron, even when nothing changes.
    #[command(
        after_help = "Examples:\n  stratos repo refresh --repo releases/ --channel stable --channel-key keys/channel.key\n  stratos repo refresh --repo releases/ --all --channel-key keys/channel.key --expires 30d"
    )]
    Refresh(RefreshArgs),
}

// The flags of each subcommand (no doc comment: the variant's is its help).
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Directory to create the repository in (created if missing; must not hold one).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "dir",
        conflicts_with = "dir"
    )]
    pub repo: Option<PathBuf>,
    /// The old spelling of --repo (`repo init DIR`): still read, with a warning.
    #[arg(hide = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// A root key, secret (PREFIX.key from `stratos keygen`): signs root.json (repeatable).
    #[arg(long = "root-key", value_name = "FILE", required = true)]
    pub root_keys: Vec<PathBuf>,
    /// Root signatures required on a root document.
    #[arg(long, default_value_t = 1)]
    pub threshold: u32,
    /// A channel key, public (PREFIX.pub): trusted to sign channel documents (repeatable;
    /// default: the root keys).
    #[arg(long = "channel-key", value_name = "FILE")]
    pub channel_keys: Vec<PathBuf>,
    /// Channel signatures required on a channel document.
    #[arg(long, default_value_t = 1)]
    pub channel_threshold: u32,
    /// An image key, public (PREFIX.pub): trusted to have signed published images
    /// (repeatable; default: the root keys).
    #[arg(long = "image-key", value_name = "FILE")]
    pub image_keys: Vec<PathBuf>,
    /// How long root.json stays valid (at most 3650d).
    #[arg(long, value_name = "DURATION", default_value = "365d")]
    pub expires: String,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The release repository.
    #[arg(long)]
    pub repo: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The roles that can follow the root keys in a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AlsoRole {
    Channel,
    Image,
}

impl From<AlsoRole> for RoleName {
    fn from(r: AlsoRole) -> RoleName {
        match r {
            AlsoRole::Channel => RoleName::Channel,
            AlsoRole::Image => RoleName::Image,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct RotateKeyArgs {
    /// The release repository.
    #[arg(long)]
    pub repo: PathBuf,
    /// A current root key, secret (repeat to meet the current threshold).
    #[arg(long = "old-root-key", value_name = "FILE", required = true)]
    pub old_keys: Vec<PathBuf>,
    /// A new root key, secret (repeatable).
    #[arg(long = "new-root-key", value_name = "FILE", required = true)]
    pub new_keys: Vec<PathBuf>,
    /// Root signatures the new root requires.
    #[arg(long, default_value_t = 1)]
    pub threshold: u32,
    /// Also replace the retired root key(s) by the new one(s) in these roles
    /// (comma-separated or repeated).
    #[arg(long, value_name = "ROLE", value_delimiter = ',', value_enum)]
    pub also: Vec<AlsoRole>,
    /// How long the new root.json stays valid (at most 3650d).
    #[arg(long, value_name = "DURATION", default_value = "365d")]
    pub expires: String,
}

#[derive(Debug, clap::Args)]
pub struct RefreshArgs {
    /// The release repository.
    #[arg(long)]
    pub repo: PathBuf,
    /// A channel to re-sign (repeatable).
    #[arg(long, value_name = "NAME", required_unless_present = "all")]
    pub channel: Vec<ChannelName>,
    /// Re-sign every channel of the repository.
    #[arg(long, conflicts_with = "channel")]
    pub all: bool,
    #[command(flatten)]
    pub signing: ChannelSigning,
}

pub fn run(a: Args) -> CliResult {
    match a.command {
        RepoSub::Init(a) => init(a),
        RepoSub::Status(a) => status(a),
        RepoSub::RotateKey(a) => rotate_key(a),
        RepoSub::Refresh(a) => refresh(a),
    }
}

fn init(a: InitArgs) -> CliResult {
    let dir = match (&a.repo, &a.dir) {
        (Some(d), _) => d.clone(),
        (None, Some(d)) => {
            eprintln!(
                "stratos: warning: `repo init DIR` is now `repo init --repo DIR`; the old spelling will be removed in the next release"
            );
            d.clone()
        }
        (None, None) => unreachable!("clap requires --repo"),
    };
    let roots = secret_keys(&a.root_keys, "--root-key")?;
    let ch = public_keys(&a.channel_keys, "--channel-key")?;
    let im = public_keys(&a.image_keys, "--image-key")?;
    let exp = expiry(&a.expires, "--expires")?;
    let root = Repo::init(
        &dir,
        &roots,
        a.threshold,
        &ch,
        a.channel_threshold,
        &im,
        exp,
    )
    .map_err(map)?;
    println!(
        "created release repository {} (root version {}, {} root key(s), threshold {})",
        dir.display(),
        root.version,
        roots.len(),
        a.threshold
    );
    println!(
        "nodes bootstrap their trust from {}",
        dir.join("root.json").display()
    );
    Ok(())
}

fn status(a: StatusArgs) -> CliResult {
    let st = open(&a.repo)?.status().map_err(map)?;
    if a.json {
        print_sorted_json(&st);
    } else {
        print_status(&st, &a);
    }
    Ok(())
}

fn print_status(st: &Status, a: &StatusArgs) {
    println!(
        "root version {} (expires {})",
        st.root_version,
        channel::fmt_time(st.root_expires)
    );
    if st.channels.is_empty() {
        println!(
            "no channels yet; publish one with `stratos publish IMAGE --repo {} --channel NAME`",
            a.repo.display()
        );
        return;
    }
    println!(
        "{:<12} {:<8} {:>7}  {:<28} {:>8}  {:<8} {:<9} EXPIRES",
        "CHANNEL", "ARCH", "VERSION", "IMAGE", "REACHED", "STATE", "SIGNED"
    );
    let now = channel::now();
    for row in &st.channels {
        let age = now.saturating_sub(row.timestamp);
        println!(
            "{:<12} {:<8} {:>7}  {:<28} {:>7.2}%  {:<8} {:<9} {}{}",
            row.channel,
            row.arch.name(),
            row.version,
            format!("{} {}", row.image, row.image_version),
            row.reached_percent,
            if row.halted { "halted" } else { "active" },
            format!("{} ago", channel::fmt_age(age)),
            channel::fmt_time(row.expires),
            if row.expired {
                " (EXPIRED: nodes reject it; re-sign with `stratos repo refresh`)"
            } else if age > channel::DEFAULT_MAX_AGE {
                " (STALE: nodes with the default --max-age 7d refuse it; run `stratos repo refresh`)"
            } else {
                ""
            }
        );
    }
}

fn rotate_key(a: RotateKeyArgs) -> CliResult {
    let r = open(&a.repo)?;
    let old = secret_keys(&a.old_keys, "--old-root-key")?;
    let new = secret_keys(&a.new_keys, "--new-root-key")?;
    let exp = expiry(&a.expires, "--expires")?;
    let also: Vec<RoleName> = a.also.iter().map(|&r| r.into()).collect();
    let rot = r.rotate(&old, &new, a.threshold, exp, &also).map_err(map)?;
    print_rotation(&rot, a.threshold);
    if let Some(w) = still_trusting_warning(&rot) {
        eprintln!("{w}");
    }
    Ok(())
}

fn ids(ids: &[KeyId]) -> String {
    ids.iter().map(KeyId::as_str).collect::<Vec<_>>().join(", ")
}

fn print_rotation(rot: &Rotation, threshold: u32) {
    println!(
        "root version {}: root keys {} (threshold {})",
        rot.root.version,
        ids(&rot.root.roles.root.key_ids),
        threshold
    );
    for &role in &rot.rotated {
        println!(
            "the {role} role now trusts {} instead of {}",
            ids(&rot.root.roles.get(role).key_ids),
            ids(&rot.retired)
        );
    }
    for name in &rot.resigned {
        println!("re-signed channel {name} with the new key(s)");
    }
    if rot.rotated.contains(&RoleName::Image) {
        eprintln!(
            "note: nodes no longer stage images signed by {}; publish images signed by a key the image role trusts",
            ids(&rot.retired)
        );
    }
}

/// The warning for roles that still trust a retired root key (`None` when none does).
fn still_trusting_warning(rot: &Rotation) -> Option<String> {
    if rot.still_trusting.is_empty() {
        return None;
    }
    let roles: Vec<RoleName> = rot.still_trusting.iter().map(|(r, _)| *r).collect();
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    let keys: Vec<KeyId> = rot
        .still_trusting
        .iter()
        .flat_map(|(_, k)| k.iter().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let plural = roles.len() > 1;
    Some(format!(
        "warning: the {} role{} still trust{} the retired root key {}: whoever holds it can still sign {}. To replace it there too, run the rotation with --also {}",
        names.join(" and "),
        if plural { "s" } else { "" },
        if plural { "" } else { "s" },
        ids(&keys),
        roles
            .iter()
            .map(|r| r.what_it_signs())
            .collect::<Vec<_>>()
            .join(" and "),
        names.join(",")
    ))
}

fn refresh(a: RefreshArgs) -> CliResult {
    let r = open(&a.repo)?;
    let (keys, exp) = a.signing.load()?;
    let names = if a.all {
        r.channel_names().map_err(map)?
    } else {
        a.channel
    };
    if names.is_empty() {
        return Err(input(format!(
            "{} has no channels to refresh",
            a.repo.display()
        )));
    }
    for n in &names {
        let c = r.refresh(n, &keys, exp).map_err(map)?;
        print_channel(&c, None, "refreshed");
    }
    Ok(())
}
