//! `stratos rollout`: set a channel's rollout, or halt, resume or advance it.

use std::path::PathBuf;

use super::channel_args::*;
use super::CliResult;
use crate::channel::{self, rollout::Widen, ChannelName};

/// Set a channel's rollout (`--waves FILE` or `--percent N`, starting now), or halt, resume or
/// advance it.
#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  stratos rollout --repo releases/ --channel stable --waves waves.toml --sign-key keys/root.key\n  stratos rollout halt --repo releases/ --channel stable --sign-key keys/root.key\n  stratos rollout advance --repo releases/ --channel stable --gate boot.json --sign-key keys/root.key\n\nwaves.toml:\n  [[wave]]\n  start-after = \"0s\"\n  fleet-percent = 1\n  [[wave]]\n  start-after = \"6h\"\n  fleet-percent = 25\n  [[wave]]\n  start-after = \"1d\"\n  fleet-percent = 100"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<RolloutSub>,
    /// The release repository.
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// The channel whose rollout is set.
    #[arg(long)]
    pub channel: Option<ChannelName>,
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

pub fn run(a: Args) -> CliResult {
    match a.command {
        None => set(a),
        Some(RolloutSub::Halt(t)) => change(t, Verb::Halt),
        Some(RolloutSub::Resume(t)) => change(t, Verb::Resume),
        Some(RolloutSub::Advance {
            target,
            gate,
            percent,
        }) => {
            let how = percent.map_or(Widen::NextWave, Widen::Percent);
            change(target, Verb::Advance(gate, how))
        }
    }
}

/// `stratos rollout --waves FILE | --percent N`: a new rollout, starting now.
fn set(a: Args) -> CliResult {
    let (Some(repo), Some(channel)) = (a.repo, a.channel) else {
        return Err(input(
            "rollout needs --repo DIR --channel NAME and --waves FILE or --percent N (or a subcommand: halt, resume, advance)".into(),
        ));
    };
    if !a.plan.given() {
        return Err(input(
            "rollout: say how far with --waves FILE or --percent N".into(),
        ));
    }
    let r = open(&repo)?;
    let keys = secret_keys(&a.sign_keys, "--sign-key")?;
    let plan = a.plan.resolve()?;
    let exp = expiry(&a.expires, "--expires")?;
    let c = r.set_rollout(&channel, &keys, exp, plan).map_err(map)?;
    print_channel(&c, "rollout set");
    if c.halted {
        println!("note: the channel is halted; `stratos rollout resume` lets nodes update again");
    }
    Ok(())
}

enum Verb {
    Halt,
    Resume,
    Advance(PathBuf, Widen),
}

/// `halt`, `resume` or `advance`: a new version of the channel, then where the rollout is now.
fn change(t: Target, verb: Verb) -> CliResult {
    let r = open(&t.repo)?;
    let (keys, exp) = t.signing.load()?;
    let now = channel::now();
    let (c, what) = match verb {
        Verb::Halt => (r.halt(&t.channel, &keys, exp).map_err(map)?, "halted"),
        Verb::Resume => (r.resume(&t.channel, &keys, exp).map_err(map)?, "resumed"),
        Verb::Advance(gate, how) => {
            let adv = r
                .advance(&t.channel, &keys, exp, &gate, how, now)
                .map_err(map)?;
            println!("gate passed: {}", adv.gate);
            (adv.channel, "advanced")
        }
    };
    print_channel(&c, what);
    println!(
        "reached now: {:.2}% of the fleet",
        f64::from(c.rollout.reached_bp(now)) / 100.0
    );
    Ok(())
}
