//! `stratos rollout`: set a channel's rollout, or halt, resume or advance it.

use std::path::PathBuf;

use super::channel_args::*;
use super::CliResult;
use crate::channel::operator::{Gate, ReportGate, Widen};
use crate::channel::{self, ChannelName};

/// Set a channel's rollout (`--waves FILE` or `--percent N`, starting now), or halt, resume or
/// advance it.
#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  stratos rollout --repo releases/ --channel stable --waves waves.toml --channel-key keys/root.key\n  stratos rollout halt --repo releases/ --channel stable --channel-key keys/root.key\n  stratos rollout advance --repo releases/ --channel stable --gate boot.json --channel-key keys/root.key\n  stratos rollout advance --repo releases/ --channel stable --gate-reports reports/ --node-keys node-keys/ \\\n      --min-reports 3 --max-failures 0% --channel-key keys/root.key\n\nA channel carrying images for two architectures rolls each out on its own: say which with\n--arch (the other's rollout does not move):\n  stratos rollout advance --repo releases/ --channel stable --arch aarch64 \\\n      --gate boot-aarch64.json --channel-key keys/root.key\n\nwaves.toml:\n  [[wave]]\n  start-after = \"0s\"\n  fleet-percent = 1\n  [[wave]]\n  start-after = \"6h\"\n  fleet-percent = 25\n  [[wave]]\n  start-after = \"1d\"\n  fleet-percent = 100"
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
    pub arch: ArchArg,
    #[command(flatten)]
    pub plan: RolloutPlan,
    /// A channel key, secret (PREFIX.key from `stratos keygen`; one the root trusts for the
    /// channel role): signs the channel document. Repeat to meet the role's threshold.
    #[arg(long = "channel-key", value_name = "FILE")]
    pub channel_keys: Vec<PathBuf>,
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
    /// given with --gate is for this image and met all its objectives, or (--gate-reports)
    /// enough canaries of the rollout reported this image healthy.
    Advance {
        #[command(flatten)]
        target: Target,
        /// A `stratos boot-test --json-out` result for the image the channel carries.
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "gate_reports",
            conflicts_with = "gate_reports"
        )]
        gate: Option<PathBuf>,
        /// A directory of health reports (`stratos update apply --report`): only reports signed
        /// by a key in --node-keys, for this channel and this exact image, from nodes the
        /// rollout reached count (a node's latest once: by channel version, then the node's
        /// own report `seq`, never by its clock; two different reports that tie are an error).
        #[arg(long, value_name = "DIR", requires = "node_keys")]
        gate_reports: Option<PathBuf>,
        /// A directory of the nodes' public keys, one `<node id>.pub` per node (from `stratos
        /// keygen --out DIR/<node id>`): a report counts only if the node it names signed it.
        #[arg(long, value_name = "DIR")]
        node_keys: Option<PathBuf>,
        /// Reports needed before the rollout may widen.
        #[arg(long, value_name = "N", default_value_t = 1, requires = "gate_reports")]
        min_reports: usize,
        /// Largest share of failed reports allowed, e.g. 0% (the default) or 5%.
        #[arg(
            long,
            value_name = "PERCENT%",
            default_value = "0%",
            requires = "gate_reports"
        )]
        max_failures: String,
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
            gate_reports,
            node_keys,
            min_reports,
            max_failures,
            percent,
        }) => {
            let how = percent.map_or(Widen::NextWave, Widen::Percent);
            let gate = match (gate, gate_reports) {
                (Some(g), _) => Gate::BootTest(g),
                (None, Some(dir)) => Gate::Reports(report_gate(
                    dir,
                    node_keys.as_deref(),
                    min_reports,
                    &max_failures,
                )?),
                (None, None) => unreachable!("clap requires --gate or --gate-reports"),
            };
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
    let keys = secret_keys(&a.channel_keys, "--channel-key")?;
    let plan = a.plan.resolve()?;
    let exp = expiry(&a.expires, "--expires")?;
    let c = r
        .set_rollout(&channel, a.arch.arch, &keys, exp, plan)
        .map_err(map)?;
    let arch = picked(&c, a.arch.arch);
    print_channel(&c, Some(arch), "rollout set");
    if c.track(arch).is_some_and(|t| t.halted) {
        println!("note: the channel is halted; `stratos rollout resume` lets nodes update again");
    }
    Ok(())
}

enum Verb {
    Halt,
    Resume,
    Advance(Gate, Widen),
}

/// `--gate-reports DIR --node-keys DIR --min-reports N --max-failures P%`.
fn report_gate(
    dir: PathBuf,
    keys_dir: Option<&std::path::Path>,
    min_reports: usize,
    max_failures: &str,
) -> Result<ReportGate, super::CliError> {
    let keys_dir = keys_dir.expect("clap requires --node-keys");
    let max = max_failures
        .strip_suffix('%')
        .and_then(|p| p.trim().parse::<f64>().ok())
        .filter(|p| (0.0..=100.0).contains(p))
        .ok_or_else(|| {
            input(format!(
                "--max-failures {max_failures:?}: expected a percentage from 0% to 100%"
            ))
        })?;
    if min_reports == 0 {
        return Err(input("--min-reports must be at least 1".into()));
    }
    // DIR/<node id>.pub: a report counts only when the node it names signed it.
    ReportGate::load(dir, keys_dir, min_reports, max).map_err(map)
}

/// `halt`, `resume` or `advance`: a new version of the channel, then where the rollout is now.
fn change(t: Target, verb: Verb) -> CliResult {
    let r = open(&t.repo)?;
    let (keys, exp) = t.signing.load()?;
    let now = channel::now();
    let arch = t.arch.arch;
    let (c, what) = match verb {
        Verb::Halt => (r.halt(&t.channel, arch, &keys, exp).map_err(map)?, "halted"),
        Verb::Resume => (
            r.resume(&t.channel, arch, &keys, exp).map_err(map)?,
            "resumed",
        ),
        Verb::Advance(gate, how) => {
            let adv = r
                .advance(&t.channel, arch, &keys, exp, &gate, how, now)
                .map_err(map)?;
            println!("gate passed: {}", adv.gate);
            (adv.channel, "advanced")
        }
    };
    let arch = picked(&c, arch);
    print_channel(&c, Some(arch), what);
    let reached = c.track(arch).map_or(0, |tr| tr.rollout.reached_bp(now));
    println!(
        "reached now: {:.2}% of the fleet",
        f64::from(reached) / 100.0
    );
    Ok(())
}
