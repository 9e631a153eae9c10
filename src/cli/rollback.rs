//! `stratos rollback`: a channel back to the image it carried before.

use super::channel_args::*;
use super::CliResult;

/// Point a channel back at the image it carried before, as a new, higher version (nodes
/// accept it; a replay of the old document is still rejected).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  stratos rollback --repo releases/ --channel stable --channel-key keys/root.key\n\nOne architecture's image at a time: --arch, when the channel carries two."
)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
}

pub fn run(a: Args) -> CliResult {
    let t = a.target;
    let r = open(&t.repo)?;
    let (keys, exp) = t.signing.load()?;
    let c = r
        .rollback(&t.channel, t.arch.arch, &keys, exp)
        .map_err(map)?;
    print_channel(&c, Some(picked(&c, t.arch.arch)), "rolled back");
    Ok(())
}
