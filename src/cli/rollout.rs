//! `stratos rollout`: set a channel's rollout, or halt, resume or advance it.

use std::path::PathBuf;

use super::channel_args::*;
use super::{CliError, CliResult};
use crate::channel::{self, ChannelError, Rollout};
use crate::fsio::{self, caps};

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
