//! Finding the `stratos-init` binary that becomes the image's `/init`.

use std::path::{Path, PathBuf};

use crate::arch::Arch;

#[derive(Debug, thiserror::Error)]
pub enum InitBinaryError {
    #[error("stratos-init was not found (looked at {looked}); build the workspace with `cargo build --release` (it builds `stratos` and `stratos-init` side by side) or set STRATOS_INIT to its path")]
    NotFound { looked: String },
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

/// `$STRATOS_INIT`, else `stratos-init` next to the running executable (or one directory up,
/// for test binaries under `deps/`).
pub fn locate() -> Result<PathBuf, InitBinaryError> {
    if let Some(p) = std::env::var_os("STRATOS_INIT") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|source| InitBinaryError::Read {
        path: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    let mut looked = Vec::new();
    let mut dir = exe.parent();
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join("stratos-init");
        if candidate.is_file() {
            return Ok(candidate);
        }
        looked.push(candidate.display().to_string());
        dir = d.parent();
    }
    Err(InitBinaryError::NotFound {
        looked: looked.join(", "),
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
