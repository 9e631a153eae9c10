//! `stratos update`: the node side: checking a channel, fetching and staging its image, and
//! (in `node_state`) applying it behind a boot test, rolling back, the rejected list.

use std::path::PathBuf;
use std::time::Duration;

use super::channel_args::*;
use super::node_state::{ApplyArgs, StateArgs};
use super::CliResult;
use crate::arch::Arch;
use crate::channel::node::{bootstrap, Decision, Failure, Node, Source};
use crate::channel::{self, ChannelName};

/// The node side: check a channel for an update, fetch, verify and stage it, put it in service
/// behind a boot test, or roll back.
#[derive(Debug, clap::Args)]
pub struct Args {
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
    pub channel: ChannelName,
    /// This node's stable id (e.g. /etc/machine-id); decides its cohort.
    #[arg(long)]
    pub node_id: String,
    /// This node's architecture ("x86_64", "aarch64"): only the channel's image for it is
    /// checked and staged; a channel carrying none has nothing for this node. [default: this
    /// machine's]
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<Arch>,
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
    /// Network deadline for http:// repositories, 1s to 1h: for connecting, for any silence
    /// from the server, and as the grace period after which every download must average at
    /// least 64 KiB/s (so a file of N bytes takes at most DURATION + N / 64 KiB/s). A duration
    /// such as 30s or 2m (a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = network_deadline)]
    pub network_timeout: Duration,
    /// Print the decision as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Fetch the artifacts the node does not boot from too: an EROFS image's rootfs.tar.zst
    /// (for inspecting or diffing the image on the node). Without it they are skipped, and
    /// the staged image verifies without them. It applies to the image a fetch stages (one
    /// already staged or running is not fetched again).
    #[arg(long)]
    pub all_artifacts: bool,
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
    /// and stage it under STATE/images/ (staged.json names it). Only the channel's image for
    /// the node's architecture (--arch, this machine's by default) is ever staged. Only what
    /// the node lacks is downloaded: artifacts it holds are linked or copied, a root image
    /// comes block by block when the node holds an earlier one.
    #[command(
        after_help = "Example:\n  stratos update fetch --repo releases/ --channel stable --node-id node-17 --state /var/lib/stratos --json\n\nHow each artifact comes: reused (the node holds one with the same sha256), blocks (a\nverity-protected root image, when the node holds an earlier one: its hash tree (the parts\nit lacks), checked against the signed root hash, then only the 4 KiB blocks the node does not hold, with HTTP\nRange requests, each checked against its hash), delta (a kernel patched from the node's own\ncopy of an older one, when the channel lists a delta), or full (compressed when the\nrepository has it compressed). Blocks, a delta or a compressed copy served wrong fall back to\nthe artifact itself; the artifact served wrong is refused. An EROFS image's rootfs.tar.zst is skipped (see\n--all-artifacts).\n\nDownloads are assembled in STATE/.partial-<manifest sha256> and moved into place when\ncomplete and verified. A fetch that fails (a transfer cut short, a timeout) or is killed\nleaves it, a refused one removes it: the next fetch of the same image goes on from there (what it holds is checked again; a partial download continues with\na Range request). Each artifact is listed with its size, how it came and the bytes received\nfor it, then the total: \"received N bytes of M (X%)\", N counting the metadata too, M the\nsize of the artifacts the node holds (\"transfer\" in --json). STATE/last-fetch.json keeps\nthese figures; `update status` shows them."
    )]
    Fetch(FetchArgs),
    /// Boot-test the staged image on this node (refusing one of another architecture than
    /// --arch, this machine's by default); if it passes, put it in service atomically
    /// (current.json), keeping the image it replaces as previous.json; if it fails, reject it
    /// (never staged or applied again until `update clear-rejected`) and leave current as it is.
    #[command(
        after_help = "Example:\n  stratos update apply --state /var/lib/stratos --slo first_response.p50=5s \\\n      --node-id $(cat /etc/machine-id) --report reports/$(cat /etc/machine-id).json --node-key node.key\n\nExit 0 when the staged image went into service (or nothing was staged), 1 when its boot\ntest failed and it was rejected, 2 on bad input or a state file that cannot be read, 3 when\nthe staged image cannot be read or its boot cannot run (QEMU missing: nothing is rejected),\n130 when interrupted (the VM is stopped, nothing is rejected).\nEvery step is write-temp, fsync, rename; a run interrupted at any point is finished by the\nnext `stratos update` command."
    )]
    Apply(ApplyArgs),
    /// Put the previous image back in service (the current one becomes previous), atomically.
    #[command(after_help = "Example:\n  stratos update rollback --state /var/lib/stratos")]
    Rollback(StateArgs),
    /// Show the current, previous and staged images, the rejected ones, and what the last fetch
    /// that staged an image received.
    #[command(after_help = "Example:\n  stratos update status --state /var/lib/stratos --json")]
    Status(StateArgs),
    /// Forget a rejection (or all, with --all), so the image may be staged and applied again.
    #[command(
        after_help = "Example:\n  stratos update clear-rejected --state /var/lib/stratos --digest 3f1c…"
    )]
    ClearRejected {
        #[command(flatten)]
        state: StateArgs,
        /// The rejected image's manifest sha256 (from `update status`).
        #[arg(long, value_name = "SHA256", required_unless_present = "all")]
        digest: Option<String>,
        /// Every rejection.
        #[arg(long, conflicts_with = "digest")]
        all: bool,
    },
}

pub fn run(a: Args) -> CliResult {
    let (n, fetch, all_artifacts) = match a.command {
        UpdateSub::Check(n) => (n, false, false),
        UpdateSub::Fetch(f) => (f.node, true, f.all_artifacts),
        UpdateSub::Apply(a) => return super::node_state::apply(a),
        UpdateSub::Rollback(s) => return super::node_state::rollback(s),
        UpdateSub::Status(s) => return super::node_state::status(s),
        UpdateSub::ClearRejected { state, digest, all } => {
            return super::node_state::clear_rejected(state, if all { None } else { digest })
        }
    };
    let node = Node {
        all_artifacts,
        ..node(&n)?
    };
    let r = if fetch {
        node.fetch_update()
    } else {
        node.check()
    };
    match r {
        Ok(d) => {
            print_decision(&d, &n);
            Ok(())
        }
        Err(e) => {
            if n.json {
                print_sorted_json(&Failure::of(&n.channel, &e));
            }
            Err(map(e))
        }
    }
}

/// The node the flags describe, its state bootstrapped from `--bootstrap-root` if given.
fn node(n: &NodeArgs) -> Result<Node, super::CliError> {
    if n.node_id.is_empty() {
        return Err(input("--node-id must not be empty".into()));
    }
    let max_age = duration(&n.max_age, "--max-age", 60, channel::MAX_VALIDITY)?;
    let source = Source::parse(&n.repo)
        .map_err(map)?
        .with_timeout(n.network_timeout);
    if let Some(b) = &n.bootstrap_root {
        bootstrap(&n.state, b).map_err(map)?;
    }
    Ok(Node {
        source,
        channel: n.channel.clone(),
        node_id: n.node_id.clone(),
        arch: node_arch(n.arch)?,
        state: n.state.clone(),
        now: channel::now(),
        max_artifact_bytes: n.max_artifact_mib.saturating_mul(1 << 20),
        all_artifacts: false,
        max_age,
    })
}

/// `--arch`, or the architecture of this machine.
pub(super) fn node_arch(arch: Option<Arch>) -> Result<Arch, super::CliError> {
    arch.or_else(Arch::host).ok_or_else(|| {
        input(format!(
            "this machine's architecture ({}) is not one StratOS builds for; say which images this node runs with --arch ({})",
            std::env::consts::ARCH,
            Arch::allowed()
        ))
    })
}

fn print_decision(d: &Decision, n: &NodeArgs) {
    for note in &d.notes {
        eprintln!("note: {note}");
    }
    if n.json {
        println!("{}", serde_json::to_string_pretty(d).expect("serialisable"));
        return;
    }
    if d.image.is_empty() {
        println!(
            "channel {} version {}: {}",
            d.channel, d.channel_version, d.reason
        );
    } else {
        println!(
            "channel {} version {}: {} {} ({}): {}",
            d.channel,
            d.channel_version,
            d.image,
            d.image_version,
            d.arch.name(),
            d.reason
        );
    }
    if let Some(t) = &d.transfer {
        for line in t.lines() {
            println!("{line}");
        }
        println!("{}", t.total());
    }
    if let Some(s) = &d.staged {
        println!("staged at {}", n.state.join(s).display());
    }
}

/// `--network-timeout`: a deadline of 1s to 1h.
fn network_deadline(s: &str) -> Result<Duration, String> {
    let d = super::vocab::deadline(s)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(3600) {
        return Err(format!("{s:?}: must be between 1s and 1h"));
    }
    Ok(d)
}
