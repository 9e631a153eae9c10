//! `stratos inspect`: what is inside an image.

use std::path::PathBuf;

use super::{human_bytes, CliError, CliResult};
use crate::inspect::{report, Report};

/// Summarise an image: name, kernel, artifact sizes, SBOM components, the largest files, and
/// which layer won where two put the same path. Does not verify (use `stratos verify`).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  stratos inspect out/hello\n  stratos inspect out/hello --json | jq .largest_files"
)]
pub struct Args {
    /// The image directory.
    pub dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Only list the image's entries that no SBOM component claims; exit 1 if there are any.
    #[arg(long)]
    pub orphans: bool,
}

pub fn run(a: Args) -> CliResult {
    let r = report(&a.dir).map_err(CliError::input)?;
    if a.orphans {
        return print_orphans(&r);
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).expect("report serialises")
        );
        return Ok(());
    }
    print_image(&r);
    print_contents(&r);
    Ok(())
}

/// `--orphans`: the entries no SBOM component claims, one a line; an error if there are any.
fn print_orphans(r: &Report) -> CliResult {
    for o in &r.orphans {
        println!("{o}");
    }
    if r.orphans.is_empty() {
        eprintln!("no orphans: every entry of the root filesystem belongs to an SBOM component");
        return Ok(());
    }
    Err(CliError::check(anyhow::anyhow!(
        "{} entries belong to no SBOM component",
        r.orphans.len()
    )))
}

/// What the image is: name, builder, kernel, root, observation.
fn print_image(r: &Report) {
    println!(
        "image:    {} {} for {} ({})",
        r.image,
        r.version,
        r.arch.name(),
        if r.signed { "signed" } else { "UNSIGNED" }
    );
    println!(
        "builder:  stratos {}, source date epoch {}",
        r.builder_version, r.source_date_epoch
    );
    if r.dev {
        println!(
            "build:    dev (zstd -{}) -- {}",
            r.compression_level,
            super::verify::DEV_NOTE
        );
    }
    println!(
        "kernel:   {} {} | cmdline: {}",
        r.kernel.format,
        r.kernel.version.as_deref().unwrap_or("(version unknown)"),
        r.kernel.cmdline
    );
    match &r.root {
        Some(root) => println!(
            "root:     {} in {} ({} blocks), dm-verity sha256 root hash {} (salt {}), hash tree at byte {}",
            root.format,
            root.artifact,
            root.verity.data_blocks,
            root.verity.root_hash,
            root.verity.salt,
            root.verity.hash_offset
        ),
        None => println!("root:     initramfs (unpacked into RAM by the kernel)"),
    }
    if let Some(o) = &r.observe {
        println!(
            "observe:  the runtime's system calls counted{} by eBPF in the init (stratos-metrics lines)",
            if o.latency { " and timed" } else { "" }
        );
    }
    if let Some(g) = &r.go {
        println!(
            "go:       {} compiled by {} into {} (one static binary)",
            g.module, g.toolchain, g.binary
        );
    }
    if let Some(g) = &r.rust {
        println!(
            "rust:     {} compiled by {} into {} (one static binary)",
            g.package, g.toolchain, g.binary
        );
    }
}

/// What it holds: artifacts, components, the largest files, overridden paths.
fn print_contents(r: &Report) {
    println!("artifacts:");
    for art in &r.artifacts {
        println!("  {:<20} {:>10}", art.name, human_bytes(art.size));
    }
    println!(
        "contents: {} entries, {} of file data",
        r.files,
        human_bytes(r.content_bytes)
    );
    println!("components ({}):", r.components.len());
    for c in &r.components {
        let trim = match (c.bytes_installed, c.bytes_trimmed) {
            (Some(i), Some(t)) => format!(
                "  {} installed, {} after trim",
                human_bytes(i),
                human_bytes(i.saturating_sub(t))
            ),
            _ => String::new(),
        };
        println!(
            "  {:<60} {:>6} files  {}{trim}",
            c.bom_ref, c.files, c.version
        );
    }
    println!("largest files:");
    for f in &r.largest_files {
        println!("  {:>10}  {}", human_bytes(f.size), f.path);
    }
    if !r.overrides.is_empty() {
        println!("paths provided by more than one layer (the later one is in the image):");
        for o in &r.overrides {
            println!("  {o}");
        }
    }
}
