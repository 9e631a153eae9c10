//! Finding the `stratos-init` binary that becomes the image's `/init`.

use std::path::{Path, PathBuf};

use crate::arch::Arch;

#[derive(Debug, thiserror::Error)]
pub enum InitBinaryError {
    #[error("stratos-init for {arch} was not found (looked at {looked}); {fix}")]
    NotFound {
        arch: Arch,
        looked: String,
        fix: String,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the init: {0}")]
    File(#[from] crate::fsio::ReadError),
    #[error("{path} is not a usable init: {why}")]
    Unusable { path: PathBuf, why: String },
}

/// The variable naming the init for `arch` (`STRATOS_INIT_AARCH64`); `STRATOS_INIT` is the
/// host architecture's.
pub fn env_var(arch: Arch) -> String {
    if Some(arch) == Arch::host() {
        "STRATOS_INIT".to_owned()
    } else {
        format!("STRATOS_INIT_{}", arch.name().to_ascii_uppercase())
    }
}

/// The init for `arch`: `$STRATOS_INIT` (`$STRATOS_INIT_AARCH64` for another architecture than
/// the host's), else next to the running executable (or one directory up, for test binaries
/// under `deps/`): `stratos-init` for the host's architecture; for another, `stratos-init-ARCH`
/// (an installed pair), or the same Cargo profile's build for that target
/// (`target/<host triple>/debug/` → `target/aarch64-unknown-linux-gnu/debug/stratos-init`).
pub fn locate(arch: Arch) -> Result<PathBuf, InitBinaryError> {
    let var = env_var(arch);
    if let Some(p) = std::env::var_os(&var) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|source| InitBinaryError::Read {
        path: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    let native = Some(arch) == Arch::host();
    let mut looked = Vec::new();
    let mut dir = exe.parent();
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let mut candidates = Vec::new();
        if native {
            candidates.push(d.join("stratos-init"));
        } else {
            candidates.push(d.join(format!("stratos-init-{}", arch.name())));
            // target/<host triple>/<profile>/ → target/<arch triple>/<profile>/
            if let (Some(profile), Some(triple_dir)) = (d.file_name(), d.parent()) {
                if let Some(target) = triple_dir.parent() {
                    candidates.push(
                        target
                            .join(arch.rust_target())
                            .join(profile)
                            .join("stratos-init"),
                    );
                }
            }
        }
        for candidate in candidates {
            if candidate.is_file() {
                return Ok(candidate);
            }
            looked.push(candidate.display().to_string());
        }
        dir = d.parent();
    }
    let fix = if native {
        "build the workspace with `cargo build --release` (it builds `stratos` and `stratos-init` side by side) or set STRATOS_INIT to its path".to_owned()
    } else {
        format!(
            "cross-build it with `cargo build --release -p stratos-init --target {}` (ci/setup installs the target and Debian's {}) or set {var} to its path",
            arch.rust_target(),
            arch.cross_gcc_package()
        )
    };
    Err(InitBinaryError::NotFound {
        arch,
        looked: looked.join(", "),
        fix,
    })
}

/// Reads the init and checks it is a static ELF executable for `arch` (no `PT_INTERP`: there is
/// no dynamic loader in the image to run it).
pub fn load(path: &Path, arch: Arch) -> Result<Vec<u8>, InitBinaryError> {
    let bytes = crate::fsio::read_file(path, 64 << 20, "the init executable")?;
    check_static(&bytes, arch).map_err(|why| InitBinaryError::Unusable {
        path: path.to_owned(),
        why,
    })?;
    Ok(bytes)
}

/// Whether an ELF is a statically linked executable for `arch`.
pub fn check_static(bytes: &[u8], arch: Arch) -> Result<(), String> {
    let elf = goblin::elf::Elf::parse(bytes).map_err(|e| format!("not an ELF file ({e})"))?;
    if elf.header.e_machine != arch.elf_machine() {
        return Err(format!("not an {arch} executable"));
    }
    if let Some(interp) = elf.interpreter {
        return Err(format!(
            "it is dynamically linked (program interpreter {interp}); build it with -C target-feature=+crt-static (the workspace's .cargo/config.toml does)"
        ));
    }
    if elf.header.e_type != goblin::elf::header::ET_EXEC
        && elf.header.e_type != goblin::elf::header::ET_DYN
    {
        return Err("not an executable".into());
    }
    Ok(())
}
