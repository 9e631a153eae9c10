//! The kernel an image carries: a prebuilt one read, or one built from source after its
//! config was resolved and checked; and what the profile asks of it beyond booting.

use std::path::{Path, PathBuf};

use super::BuildError;
use crate::kernel;
use crate::profile::{KernelOrigin, Profile};
use crate::progress::Progress;

/// The kernel image and config an image will carry.
#[derive(Debug, Clone)]
pub struct PreparedKernel {
    pub image: Vec<u8>,
    pub config: Option<Vec<u8>>,
    /// Where it came from (for messages).
    pub path: PathBuf,
    pub origin: crate::profile::KernelOriginKind,
    pub source_sha256: Option<crate::digest::Sha256>,
}

/// Reads the prebuilt kernel, or builds it from source (verifying the config).
pub fn prepare_kernel(
    profile: &Profile,
    allow_config_drift: bool,
    cache: &crate::cache::Cache,
    progress: &Progress,
) -> Result<PreparedKernel, BuildError> {
    match &profile.kernel.origin {
        KernelOrigin::Prebuilt { image, config } => {
            let bytes = read_host(image)?;
            let cfg = config.as_deref().map(read_host).transpose()?;
            if let (Some(c), Some(path)) = (&cfg, config) {
                kernel::Config::parse(&String::from_utf8_lossy(c)).map_err(|e| {
                    BuildError::Kernel {
                        path: path.clone(),
                        why: format!("not a kernel .config: {e}"),
                    }
                })?;
            }
            Ok(PreparedKernel {
                image: bytes,
                config: cfg,
                path: image.clone(),
                origin: profile.kernel.origin.kind(),
                source_sha256: None,
            })
        }
        KernelOrigin::Source(spec) => {
            let resolved = resolve_kernel_config(
                spec,
                profile.image.arch,
                allow_config_drift,
                cache,
                progress,
            )?;
            let built = kernel::build::build(spec, &resolved, cache, progress)?;
            if built.cache_hit {
                progress.info(format!("kernel: cache hit ({})", built.dir.display()));
            }
            Ok(PreparedKernel {
                image: built.image,
                config: Some(built.config_text.into_bytes()),
                path: spec.tarball.clone(),
                origin: profile.kernel.origin.kind(),
                source_sha256: Some(crate::digest::Sha256::parse(&built.source_digest).map_err(
                    |e| BuildError::Kernel {
                        path: spec.tarball.clone(),
                        why: format!("its digest: {e}"),
                    },
                )?),
            })
        }
    }
}

/// A source kernel's config resolved (base + fragments + `olddefconfig`) and checked: every
/// fragment option held, or (`allow_config_drift`) a warning naming those that did not.
fn resolve_kernel_config(
    spec: &crate::profile::KernelSourceSpec,
    arch: crate::arch::Arch,
    allow_config_drift: bool,
    cache: &crate::cache::Cache,
    progress: &Progress,
) -> Result<kernel::build::Resolved, BuildError> {
    let resolved = kernel::build::resolve(spec, cache, arch, progress)?;
    if !resolved.mismatches.is_empty() {
        if allow_config_drift {
            progress.warn(format!(
                "--allow-config-drift: building a kernel whose config does NOT hold what the fragments ask:\n{}",
                kernel::build::render_mismatches(&resolved.mismatches)
            ));
        } else {
            return Err(kernel::build::KernelBuildError::Drift(resolved.mismatches).into());
        }
    }
    Ok(resolved)
}

/// The kernel's part of `--check`: a prebuilt kernel (and its config) read and parsed, a
/// source kernel's config resolved and checked; nothing compiled.
pub(super) fn check_kernel_config(
    profile: &Profile,
    allow_config_drift: bool,
    cache: &crate::cache::Cache,
    progress: &Progress,
) -> Result<(), BuildError> {
    match &profile.kernel.origin {
        KernelOrigin::Prebuilt { .. } => {
            prepare_kernel(profile, allow_config_drift, cache, progress).map(drop)
        }
        KernelOrigin::Source(spec) => resolve_kernel_config(
            spec,
            profile.image.arch,
            allow_config_drift,
            cache,
            progress,
        )
        .map(drop),
    }
}

/// Kernel options `[observe]` cannot work without, and why.
pub const OBSERVE_OPTIONS: &[(&str, &str)] = &[
    ("BPF_SYSCALL", "the bpf() system call"),
    ("BPF_EVENTS", "eBPF programs on raw tracepoints"),
    (
        "CGROUPS",
        "the runtime's cgroup, which the programs filter on",
    ),
];

/// What the profile asks of the kernel beyond booting, checked against its config: a feature
/// the kernel cannot provide is a build error, not a silent no-op at boot.
pub fn check_kernel_features(profile: &Profile, kern: &PreparedKernel) -> Result<(), BuildError> {
    check_control_channel(profile, kern)?;
    if profile.observe.is_none() {
        return Ok(());
    }
    let fix = "add kernel-configs/observability.config to [kernel] fragments, or remove [observe]";
    let Some(text) = &kern.config else {
        return Err(BuildError::Kernel {
            path: kern.path.clone(),
            why: format!("[observe] needs a kernel with eBPF support, and this prebuilt kernel has no config to check it against: give [kernel] config = \"...\" (its .config), or {fix}"),
        });
    };
    let config =
        kernel::Config::parse(&String::from_utf8_lossy(text)).map_err(|e| BuildError::Kernel {
            path: kern.path.clone(),
            why: format!("its config: {e}"),
        })?;
    let missing: Vec<String> = OBSERVE_OPTIONS
        .iter()
        .filter(|(o, _)| !config.is_builtin(o))
        .map(|(o, why)| format!("CONFIG_{o}=y ({why})"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(BuildError::Kernel {
        path: kern.path.clone(),
        why: format!(
            "[observe] is on but the kernel lacks {}: {fix}",
            missing.join(", ")
        ),
    })
}

/// The init reports to the host over a virtio-serial port (the control channel): without
/// `VIRTIO_CONSOLE` (built in, or a module the image loads) no boot of the image could be
/// measured or gated. A prebuilt kernel without a config is taken on trust.
fn check_control_channel(profile: &Profile, kern: &PreparedKernel) -> Result<(), BuildError> {
    let Some(text) = &kern.config else {
        return Ok(());
    };
    let config =
        kernel::Config::parse(&String::from_utf8_lossy(text)).map_err(|e| BuildError::Kernel {
            path: kern.path.clone(),
            why: format!("its config: {e}"),
        })?;
    if config.is_builtin("VIRTIO_CONSOLE") {
        return Ok(());
    }
    let listed = profile.kernel.modules.iter().any(|m| m == "virtio_console");
    if config.get("VIRTIO_CONSOLE") == Some(&kernel::config::Value::Module) && listed {
        return Ok(());
    }
    let fix = if config.get("VIRTIO_CONSOLE") == Some(&kernel::config::Value::Module) {
        "add \"virtio_console\" to [kernel] modules"
    } else {
        "add kernel-configs/virtio.config to [kernel] fragments (CONFIG_VIRTIO_CONSOLE=y)"
    };
    Err(BuildError::Kernel {
        path: kern.path.clone(),
        why: format!(
            "the init reports phases, readiness and how the runtime ended over a virtio-serial port (the control channel), and this kernel has no CONFIG_VIRTIO_CONSOLE: {fix}"
        ),
    })
}

fn read_host(path: &Path) -> Result<Vec<u8>, BuildError> {
    crate::fsio::read_file(path, crate::fsio::caps::KERNEL_IMAGE, "a kernel").map_err(|e| {
        BuildError::Kernel {
            path: path.to_owned(),
            why: e.to_string(),
        }
    })
}
