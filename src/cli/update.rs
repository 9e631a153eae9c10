//! `stratos update`: the node side, checking a channel or fetching and staging its image.

use std::path::PathBuf;
use std::time::Duration;

use super::channel_args::*;
use super::CliResult;
use crate::channel::client::{bootstrap, Decision, Failure, Node};
use crate::channel::transport::Source;
use crate::channel::{self, ChannelName};

/// The node side: check a channel for an update, or fetch, verify and stage it.
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

pub fn run(a: Args) -> CliResult {
    let (n, fetch) = match a.command {
        UpdateSub::Check(n) => (n, false),
        UpdateSub::Fetch(n) => (n, true),
    };
    let node = node(&n)?;
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
        .with_timeout(Duration::from_secs(n.timeout));
    if let Some(b) = &n.bootstrap_root {
        bootstrap(&n.state, b).map_err(map)?;
    }
    Ok(Node {
        source,
        channel: n.channel.clone(),
        node_id: n.node_id.clone(),
        state: n.state.clone(),
        now: channel::now(),
        max_artifact_bytes: n.max_artifact_mib.saturating_mul(1 << 20),
        max_age,
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
    println!(
        "channel {} version {}: {} {}: {}",
        d.channel, d.channel_version, d.image, d.image_version, d.reason
    );
    if let Some(s) = &d.staged {
        println!("staged at {}", n.state.join(s).display());
    }
}
