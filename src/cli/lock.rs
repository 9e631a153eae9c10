//! `stratos lock`: resolve a profile's Debian packages and pin them in its lock file.

use std::path::PathBuf;

use super::{CliError, CliResult};
use crate::packages::lock::{LockFile, LockedPackage, LOCK_VERSION};
use crate::packages::resolve::{machine_index, resolve_with};
use crate::profile::Profile;

/// Resolve the profile's `[packages] debian` list (Depends and Pre-Depends, alternatives,
/// virtual packages, version constraints) from this machine's apt indexes, download every .deb
/// into the package cache, and write the lock file next to the profile.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  stratos lock profiles/python-fn.toml            # create the lock, or add what the profile now lists\n  stratos lock profiles/python-fn.toml --update   # re-resolve everything against today's indexes; shows what changed\n\nRun `apt-get update` first for current indexes. `stratos build` installs exactly the lock\nand never resolves anything itself."
)]
pub struct Args {
    pub profile: PathBuf,
    /// Re-resolve every package against the current indexes, even if the lock covers the profile.
    #[arg(long)]
    pub update: bool,
}

pub fn run(a: Args) -> CliResult {
    let profile = Profile::load(&a.profile).map_err(CliError::input)?;
    let pkgs = profile.packages.as_ref().ok_or_else(|| {
        CliError::input(anyhow::anyhow!(
            "{}: no [packages] section; add `[packages] debian = [\"...\"]` first",
            a.profile.display()
        ))
    })?;
    let old = if pkgs.lock.exists() {
        Some(LockFile::load(&pkgs.lock).map_err(CliError::input)?)
    } else {
        None
    };
    if let (Some(old), false) = (&old, a.update) {
        let missing: Vec<&String> = pkgs
            .debian
            .iter()
            .filter(|n| !old.packages.iter().any(|p| &p.name == *n))
            .collect();
        // A lock made before the profile pinned an origin or version is stale: resolve again.
        let unpinned: Vec<String> = old
            .packages
            .iter()
            .filter(|p| !pkgs.policy.allows_build(&p.name, &p.version, &p.origin))
            .map(|p| format!("{} {}", p.name, p.version))
            .collect();
        if !unpinned.is_empty() {
            eprintln!(
                "stratos: the lock holds what the profile's origins/pins no longer allow ({}); resolving again",
                unpinned.join(", ")
            );
        }
        if missing.is_empty() && unpinned.is_empty() {
            println!(
                "{} is up to date ({} packages); `--update` re-resolves against today's indexes",
                pkgs.lock.display(),
                old.packages.len()
            );
            return Ok(());
        }
    }
    eprintln!(
        "stratos: resolving {} from the apt indexes",
        pkgs.debian.join(", ")
    );
    let index = machine_index("amd64").map_err(CliError::env)?;
    let r = resolve_with(&index, &pkgs.debian, &pkgs.policy)
        .map_err(|e| CliError::input(anyhow::anyhow!("{}: {e}", a.profile.display())))?;
    let mut lock = LockFile {
        lock_version: LOCK_VERSION,
        packages: Vec::new(),
    };
    for (name, p) in &r.packages {
        if p.sha256.len() != 64 || p.size == 0 {
            return Err(CliError::input(anyhow::anyhow!(
                "{name} {}: the apt index gives no SHA256/Size for it; cannot pin it",
                p.version
            )));
        }
        lock.packages.push(LockedPackage {
            name: name.clone(),
            version: p.version.clone(),
            arch: p.arch.clone(),
            sha256: p.sha256.clone(),
            size: p.size,
            required_by: r
                .required_by
                .get(name)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default(),
            origin: p.origin.clone(),
        });
    }
    // Download and check each .deb now, so the build can run offline.
    let mut total = 0u64;
    for p in &lock.packages {
        crate::packages::fetch(p, &pkgs.lock, false)
            .map_err(|e| CliError::input_or_env(e.is_environment(), e))?;
        total += p.size;
        eprintln!(
            "stratos: fetched {} {} ({} KiB)",
            p.name,
            p.version,
            p.size / 1024
        );
    }
    let changes = crate::packages::lock::diff(old.as_ref(), &lock);
    for c in &changes {
        println!("{c}");
    }
    let changes = changes.len();
    crate::fsio::write_atomic(&pkgs.lock, lock.to_toml().as_bytes(), 0o644)
        .map_err(super::writing(&pkgs.lock))?;
    println!(
        "{}: {} packages, {} KiB of .debs; {changes} change(s)",
        pkgs.lock.display(),
        lock.packages.len(),
        total / 1024
    );
    Ok(())
}
