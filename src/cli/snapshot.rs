//! `stratos snapshot`: boot an image once and save the VM, for restores instead of boots.

use std::path::PathBuf;
use std::time::Duration;

use super::{human_bytes, CliError, CliResult};
use crate::boot::snapshot::{self, CreateOptions};
use crate::boot::vm::AccelChoice;
use crate::boot::BootImage;
use crate::cache::{self, Cache};

/// Boot an image, wait until its runtime is ready (and for the warm-up calls), pause it and
/// save the VM: its RAM as a file and its device state, described by a signed
/// snapshot.json. `stratos boot IMAGE --snapshot DIR` (and `boot-test --snapshot DIR`) then
/// restore it instead of booting; every restore maps the RAM file copy-on-write and gets fresh
/// entropy and the time from the host.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  stratos snapshot out/python-fn --out out/python-fn.snap --warm /?name=warm --image-key keys/release.key\n  stratos boot out/python-fn --snapshot out/python-fn.snap --invoke /?name=restored\n\nThe snapshot holds the guest's memory, including whatever the function read at start: its\nfiles are mode 0600. It restores only for the same image, QEMU version and machine."
)]
pub struct Args {
    /// The image directory.
    pub image: PathBuf,
    /// Where to write the snapshot [default: IMAGE.snap next to the image].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Guest memory in MiB (every restore gets the same).
    #[arg(long, default_value_t = 512)]
    pub memory: u32,
    /// Call PATH on the function once it is ready, before saving (repeatable): lazy imports
    /// and JIT happen once, not on every restore. A GET; for a Lambda function a POST of the
    /// event {} (an answer with X-Amz-Function-Error fails the snapshot).
    #[arg(long, value_name = "PATH")]
    pub warm: Vec<String>,
    /// The function's port in the guest [default: 8080, or a Lambda function's invoke port].
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// The image key, secret (PREFIX.key from `stratos keygen`): signs snapshot.json
    /// [env: STRATOS_SIGNING_KEY].
    #[arg(long, value_name = "FILE")]
    pub image_key: Option<PathBuf>,
    /// Accelerator (restores run on the same one).
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Give up (and stop QEMU) when the runtime is not ready by then: a duration such as
    /// 90s or 5m (a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = super::vocab::deadline)]
    pub timeout: Duration,
    /// Copy nothing to stdout. Without it, what the function prints (the `fn> ` lines) is
    /// copied; -v (or STRATOS_CONSOLE=all) copies the whole console.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(a: Args) -> CliResult {
    for w in &a.warm {
        if !w.starts_with('/') {
            return Err(CliError::input(anyhow::anyhow!(
                "--warm {w:?}: the path must start with '/'"
            )));
        }
    }
    let key = super::vocab::image_secret_key(a.image_key.as_deref())?;
    let image = BootImage::open(&a.image)?;
    crate::boot::handle_stop_signals().map_err(CliError::env)?;
    let (accel, why) = image
        .choose_accel(a.accel, &Cache::new(cache::root()))
        .map_err(CliError::env)?;
    if let Some(why) = why {
        eprintln!("stratos: KVM unavailable ({why}); using TCG (software emulation)");
    }
    let out = a.out.clone().unwrap_or_else(|| {
        let mut p = a.image.clone().into_os_string();
        p.push(".snap");
        PathBuf::from(p)
    });
    eprintln!(
        "stratos: snapshotting {} {} ({}, {} MiB) into {}",
        image.manifest.image.name,
        image.manifest.image.version,
        accel.name(),
        a.memory,
        out.display()
    );
    let meta = snapshot::create(
        &image,
        &CreateOptions {
            out: out.clone(),
            accel,
            memory_mib: a.memory,
            guest_port: image.function_port(a.port),
            warm: a.warm.clone(),
            timeout: a.timeout,
            sign_key: key.as_ref(),
            echo: super::boot::echo(a.quiet, false),
        },
    )
    .map_err(|e| {
        if crate::boot::stop_requested() {
            CliError::interrupted("the VM was stopped; the snapshot was not taken")
        } else {
            if !a.quiet && !crate::progress::verbose() {
                eprintln!("stratos: `stratos -v snapshot …` shows the whole console");
            }
            CliError::input_or_env(e.is_environment(), e)
        }
    })?;
    println!(
        "snapshot of {} {} -> {}",
        meta.image.name,
        meta.image.version,
        out.display()
    );
    for f in &meta.files {
        println!(
            "  {:<8} {:>10}  sha256:{}",
            f.name,
            human_bytes(f.size),
            f.sha256
        );
    }
    match &key {
        Some(k) => println!("signed with key {}", k.id()),
        None => eprintln!(
            "stratos: WARNING: NO SIGNING KEY (--image-key or $STRATOS_SIGNING_KEY): the snapshot is UNSIGNED and `stratos boot --snapshot --verify` will refuse it"
        ),
    }
    Ok(())
}
