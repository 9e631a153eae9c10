//! `stratos lock`: resolve a profile's Debian packages and pin them in its lock file.

use std::path::PathBuf;

use super::{CliError, CliResult};
use crate::packages::debian::apt::machine_index;
use crate::packages::fetch::Sources;
use crate::packages::lock::{self, LockFile};
use crate::packages::resolve::resolve_with;
use crate::profile::{Packages, Profile};

/// Resolve the profile's `[packages] debian` list (Depends and Pre-Depends, alternatives,
/// virtual packages, version constraints) from this machine's apt indexes, fetch every .deb
/// the package cache does not already hold (checked against the index's sha256), and write the
/// lock file next to the profile.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  stratos lock profiles/python-fn.toml            # create the lock, or add what the profile now lists\n  stratos lock profiles/python-fn.toml --update   # re-resolve everything against today's indexes; shows what changed\n  stratos lock profiles/python-fn.toml --offline  # no network: the indexes and .debs this machine already has\n\nThe indexes are apt's own (`apt-get update` refreshes them; stratos never downloads them).\nA .deb already in the package cache or apt's archives with the sha256 the index names is\nreused, not downloaded again. `stratos build` installs exactly the lock and never resolves\nanything itself."
)]
pub struct Args {
    pub profile: PathBuf,
    /// The architecture to lock for (its lock is `NAME.lock` for x86_64, `NAME.ARCH.lock`
    /// for another), one the profile's `[image] arch` lists ("x86_64",
    /// "aarch64") [default: the first it lists].
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<crate::arch::Arch>,
    /// Re-resolve every package against the current indexes, even if the lock covers the profile.
    #[arg(long)]
    pub update: bool,
    /// Never download: resolve from the apt indexes already on this machine and take every
    /// .deb from the package cache (or apt's archives); fails naming what is missing and the
    /// command that fetches it, and writes no lock.
    #[arg(long)]
    pub offline: bool,
}

pub fn run(a: Args) -> CliResult {
    let profile = Profile::load_for(&a.profile, a.arch).map_err(CliError::input)?;
    let pkgs = profile.packages.as_ref().ok_or_else(|| {
        CliError::input(anyhow::anyhow!(
            "{}: no [packages] section; add `[packages] debian = [\"...\"]` first",
            a.profile.display()
        ))
    })?;
    let arch = profile.image.arch;
    let old = if pkgs.lock.exists() {
        Some(LockFile::load(&pkgs.lock, arch).map_err(CliError::input)?)
    } else {
        None
    };
    if let (Some(old), false) = (&old, a.update) {
        if is_current(old, pkgs) {
            return Ok(());
        }
    }
    eprintln!(
        "stratos: resolving {} from the apt indexes",
        pkgs.debian.join(", ")
    );
    let index = machine_index(arch).map_err(CliError::env)?;
    let r = resolve_with(&index, &pkgs.debian, &pkgs.policy)
        .map_err(|e| CliError::input(anyhow::anyhow!("{}: {e}", a.profile.display())))?;
    let new = LockFile::from_resolution(&r).map_err(CliError::input)?;
    let total = fetch_all(&new, &pkgs.lock, &a)?;
    let changes = lock::diff(old.as_ref(), &new);
    for c in &changes {
        println!("{c}");
    }
    crate::fsio::write_atomic(&pkgs.lock, new.to_toml().as_bytes(), 0o644)
        .map_err(super::writing(&pkgs.lock))?;
    println!(
        "{}: {} packages, {} KiB of .debs; {} change(s)",
        pkgs.lock.display(),
        new.packages.len(),
        total / 1024,
        changes.len()
    );
    Ok(())
}

/// Checks each .deb of the new lock now (from the cache, else downloaded unless --offline), so
/// the build can run offline; returns their total size. Under --offline, every package the
/// cache lacks is named at once.
fn fetch_all(new: &LockFile, lock_path: &std::path::Path, a: &Args) -> Result<u64, CliError> {
    let cached = Sources::from_env(true);
    let online = Sources::from_env(false);
    let fail = |e: crate::packages::PackageError| CliError::input_or_env(e.is_environment(), e);
    let (mut total, mut missing) = (0u64, Vec::new());
    for p in &new.packages {
        let how = match crate::packages::debian::fetch(p, lock_path, &cached) {
            Ok(_) => "in the package cache",
            Err(crate::packages::PackageError::Offline { .. }) if a.offline => {
                missing.push(format!("{} {}", p.name, p.version));
                continue;
            }
            Err(crate::packages::PackageError::Offline { .. }) => {
                crate::packages::debian::fetch(p, lock_path, &online).map_err(fail)?;
                "downloaded"
            }
            Err(e) => return Err(fail(e)),
        };
        total += p.size;
        eprintln!(
            "stratos: {} {} ({} KiB): {how}",
            p.name,
            p.version,
            p.size / 1024
        );
    }
    if !missing.is_empty() {
        return Err(CliError::input(anyhow::anyhow!(
            "--offline: {} package(s) the lock needs are not in the package cache ({}) nor in apt's archives: {}; run `stratos lock {}` without --offline to download them (the lock is not written)",
            missing.len(),
            online.store(crate::packages::debian::STORE).dir.display(),
            missing.join(", "),
            a.profile.display()
        )));
    }
    Ok(total)
}

/// Whether the existing lock still covers the profile (then says so); a lock the profile's
/// origins or pins no longer allow is named and resolved again.
fn is_current(old: &LockFile, pkgs: &Packages) -> bool {
    let short = lock::shortfall(old, pkgs);
    if !short.disallowed.is_empty() {
        eprintln!(
            "stratos: the lock holds what the profile's origins/pins no longer allow ({}); resolving again",
            short.disallowed.join(", ")
        );
    }
    if short.is_empty() {
        println!(
            "{} is up to date ({} packages); `--update` re-resolves against today's indexes",
            pkgs.lock.display(),
            old.packages.len()
        );
    }
    short.is_empty()
}
