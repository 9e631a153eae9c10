//! Everything a build checks before its first expensive step, and `stratos build --check`.

use super::{compile_seccomp, init_binary, prepare::check_kernel_config, BuildError, BuildOptions};
use crate::profile::Profile;
use crate::progress::Progress;

/// What a build checked before its first expensive step.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// `.deb` files the lock pins, each in the cache (or fetched into it now).
    pub debs: usize,
    /// Pinned wheels, likewise.
    pub wheels: usize,
    /// npm tarballs, likewise.
    pub npm: usize,
    /// Go module files (zips and go.mod files) go.sum pins, likewise.
    pub go_modules: usize,
    /// crates.io crates Cargo.lock pins, likewise.
    pub crates: usize,
}

/// Every input a build reads, checked before the first expensive step (the kernel compile, the
/// image assembly), so a missing lock or a `.deb` absent under `--offline` is found in seconds,
/// not after a kernel build: the seccomp policy parses for the runtime; the Debian lock pins
/// every package the profile names; every `.deb`, wheel and npm tarball the locks pin, and every
/// Go module go.sum pins (with the toolchain the module asks for), is in the cache, or fetched into it now (offline: reported missing, naming it). The profile's own
/// paths (overlays, host files, fragments, the kernel source) were checked when it was loaded;
/// the kernel's config is checked next, by [`prepare_kernel`], before it compiles anything.
pub fn preflight(
    profile: &Profile,
    sources: &crate::packages::fetch::Sources,
    progress: &Progress,
) -> Result<Checked, BuildError> {
    let step = progress.step("checking the inputs");
    if let Some(spec) = &profile.seccomp {
        // The kernel's version is not known yet: the policy is checked again, against it,
        // when the image is assembled.
        let target = crate::seccomp::Target::new(profile.image.arch, profile.init.uid, None);
        if let Some(note) = compile_seccomp(spec, &target)?.note {
            progress.warn(note);
        }
    }
    let mut checked = Checked::default();
    if let Some(pkgs) = &profile.packages {
        let arch = profile.image.arch;
        checked.debs = crate::packages::debian::preflight(profile, pkgs, arch, sources)?;
        checked.wheels = crate::packages::python::preflight(profile, pkgs, arch, sources)?;
        checked.npm = crate::packages::npm::preflight(profile, pkgs, arch, sources)?;
    }
    checked.go_modules = crate::packages::go::preflight(profile, sources)
        .map_err(crate::packages::PackageError::from)?;
    checked.crates = crate::packages::cargo::preflight(profile, sources)
        .map_err(crate::packages::PackageError::from)?;
    step.done();
    Ok(checked)
}

/// `stratos build --check`: the checks of [`preflight`], then the kernel's: a prebuilt kernel
/// is read and its config parsed; a kernel from source has its config resolved (base +
/// fragments + `olddefconfig`, cached) and every fragment option checked — nothing is
/// compiled, assembled or written.
pub fn check(
    profile: &Profile,
    opts: &BuildOptions,
    progress: &Progress,
) -> Result<Checked, BuildError> {
    init_binary::load(&opts.init_binary, profile.image.arch)?;
    let checked = preflight(profile, &opts.sources, progress)?;
    check_kernel_config(
        profile,
        opts.allow_config_drift,
        &opts.sources.cache,
        progress,
    )?;
    Ok(checked)
}
