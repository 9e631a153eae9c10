//! `stratos publish`: a signed image into a channel.

use std::path::PathBuf;

use super::channel_args::*;
use super::CliResult;
use crate::channel::operator::DeltaNote;
use crate::channel::{ChannelName, ImageRef};

/// Publish a signed image to a channel: copy its artifacts into the repository's object store
/// and sign a new channel version pointing at it.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  stratos publish out/hello --repo releases/ --channel canary --percent 10 --channel-key keys/root.key\n\nRefuses unsigned images and images whose signature does not verify against a key the\nrepository's root trusts for images. Objects are written before the channel document.\n\nEach artifact is stored by its sha256 and, when zstd makes it smaller, compressed next to\nit (<sha256>.zst). When the track carried other images, a delta from each of their kernels\n(the track's image and its previous one) to the new kernel is written and listed in the\nchannel, if it is smaller than the compressed kernel; one line per delta says its size.\n\nA channel carries one image per architecture: the image takes its own architecture's place\n(its manifest's `image.arch`) with its own rollout; the other architecture's image and\nrollout are kept. The aarch64 build of a version goes next to its x86_64 build:\n  stratos publish out/hello-aarch64 --repo releases/ --channel canary --percent 10 \\\n      --channel-key keys/root.key"
)]
pub struct Args {
    /// The image directory (from `stratos build --image-key`).
    pub image: PathBuf,
    /// The release repository (a directory made by `stratos repo init`).
    #[arg(long)]
    pub repo: PathBuf,
    /// The channel to publish to (created on first publish).
    #[arg(long)]
    pub channel: ChannelName,
    #[command(flatten)]
    pub plan: RolloutPlan,
    #[command(flatten)]
    pub signing: ChannelSigning,
}

pub fn run(a: Args) -> CliResult {
    let r = open(&a.repo)?;
    let (keys, exp) = a.signing.load()?;
    let p = r
        .publish(&a.image, &a.channel, &keys, a.plan.resolve()?, exp)
        .map_err(map)?;
    for note in &p.deltas {
        print_delta(note);
    }
    print_channel(&p.channel, Some(p.arch), "published");
    Ok(())
}

/// One line per kernel delta written, or not written and why; nothing for one kept as it was.
fn print_delta(note: &DeltaNote) {
    let image = |i: &ImageRef| format!("{} {}", i.name, i.version);
    let pct = |a: u64, b: u64| 100.0 * a as f64 / b.max(1) as f64;
    match note {
        DeltaNote::Written {
            from,
            delta,
            compressed,
        } => println!(
            "kernel delta from {}: {} bytes ({:.1}% of the compressed kernel's {compressed}), object {}",
            image(from),
            delta.size,
            pct(delta.size, *compressed),
            delta.sha256.short(12),
        ),
        DeltaNote::Kept { .. } => {}
        DeltaNote::NotSmaller {
            from,
            size,
            compressed,
        } => println!(
            "no kernel delta from {}: {size} bytes, not smaller than the compressed kernel's {compressed}",
            image(from)
        ),
        DeltaNote::Unavailable { from, why } => eprintln!(
            "stratos: warning: no kernel delta from {}: {why}",
            image(from)
        ),
    }
}
