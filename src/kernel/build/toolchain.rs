//! What reaches a kernel's bytes from the host: the environment `make` runs in (nothing of
//! the caller's) and the compiler and linker versions.

use std::process::Command;

use super::error::{io, KernelBuildError};
use crate::arch::Arch;
use crate::progress::Traced;

/// Fixed build identity: the kernel's banner and `uname -v` do not depend on who built it,
/// where or when.
pub const KBUILD_ENV: [(&str, &str); 4] = [
    ("KBUILD_BUILD_TIMESTAMP", "Thu Jan  1 00:00:00 UTC 1970"),
    ("KBUILD_BUILD_USER", "stratos"),
    ("KBUILD_BUILD_HOST", "stratos"),
    ("KBUILD_BUILD_VERSION", "1"),
];

/// What `make` sees of the environment: nothing of the caller's but `PATH` (so `LLVM`,
/// `CROSS_COMPILE`, `LOCALVERSION`, `KCPPFLAGS`, `CC`, ... cannot change the output behind the
/// cache's back), a fixed locale and time zone, and the fixed build identity.
pub fn build_env(c: &mut Command) -> &mut Command {
    c.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        c.env("PATH", path);
    }
    c.env("LC_ALL", "C").env("TZ", "UTC");
    for (k, v) in KBUILD_ENV {
        c.env(k, v);
    }
    c
}

/// The host tools whose versions reach the output: the kernel banner embeds the compiler's and
/// the linker's versions, and `.config` records them (`CC_VERSION_TEXT`, `LD_VERSION`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Toolchain {
    pub gcc: String,
    pub ld: String,
}

impl Toolchain {
    /// `gcc --version` and `ld --version` (first lines), run as `make` will run them: for
    /// another architecture than the host's, the cross toolchain's (`CROSS_COMPILE`).
    pub fn detect(arch: Arch) -> Result<Toolchain, KernelBuildError> {
        let prefix = arch.cross_compile().unwrap_or("");
        let first_line = |tool: &str| -> Result<String, KernelBuildError> {
            let tool = format!("{prefix}{tool}");
            let install = match arch.cross_compile() {
                Some(_) => format!(
                    "install the {} cross toolchain with ci/setup (Debian: apt-get install {} binutils-{})",
                    arch.name(),
                    arch.cross_gcc_package(),
                    prefix.trim_end_matches('-')
                ),
                None => "install the kernel build tools with ci/setup".to_owned(),
            };
            let out = build_env(Command::new(&tool).arg("--version"))
                .traced()
                .output()
                .map_err(io(format!("running {tool} --version ({install})")))?;
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .filter(|l| out.status.success() && !l.trim().is_empty())
                .map(str::to_owned)
                .ok_or_else(|| KernelBuildError::Io {
                    what: format!("{tool} --version printed no version"),
                    source: std::io::Error::other(out.status.to_string()),
                })
        };
        Ok(Toolchain {
            gcc: first_line("gcc")?,
            ld: first_line("ld")?,
        })
    }

    pub(super) fn describe(&self) -> String {
        format!("gcc: {}\nld: {}", self.gcc, self.ld)
    }
}
