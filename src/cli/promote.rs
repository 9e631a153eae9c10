//! `stratos promote`: one channel's image into another channel.

use std::path::PathBuf;

use super::channel_args::*;
use super::CliResult;
use crate::channel::ChannelName;

/// Point a channel at the image another channel carries (e.g. canary → stable).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  stratos promote --repo releases/ --from canary --to stable --waves waves.toml --channel-key keys/root.key\n\nA channel carries one image per architecture; one is promoted at a time (--arch, when\n--from carries two), and the other's image and rollout in --to stay as they are:\n  stratos promote --repo releases/ --from canary --to stable --arch aarch64 --percent 1 \\\n      --channel-key keys/root.key"
)]
pub struct Args {
    /// The release repository.
    #[arg(long)]
    pub repo: PathBuf,
    /// The channel whose image is promoted.
    #[arg(long)]
    pub from: ChannelName,
    /// The channel that gets it (created if missing).
    #[arg(long)]
    pub to: ChannelName,
    /// The architecture whose image is promoted ("x86_64", "aarch64"); the other
    /// architecture's image in --to is left as it is. [default: the only one --from carries;
    /// with two, say which]
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<crate::arch::Arch>,
    #[command(flatten)]
    pub plan: RolloutPlan,
    #[command(flatten)]
    pub signing: ChannelSigning,
}

pub fn run(a: Args) -> CliResult {
    let r = open(&a.repo)?;
    let (keys, exp) = a.signing.load()?;
    let (c, arch) = r
        .promote(&a.from, &a.to, a.arch, &keys, a.plan.resolve()?, exp)
        .map_err(map)?;
    print_channel(&c, Some(arch), &format!("promoted from {}", a.from));
    Ok(())
}
