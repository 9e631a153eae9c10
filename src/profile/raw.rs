//! The profile exactly as written: serde types, strict about unknown keys, nothing checked yet.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawProfile {
    pub schema: Spanned<i64>,
    pub image: RawImage,
    pub kernel: RawKernel,
    pub init: RawInit,
    #[serde(default)]
    pub overlay: Vec<RawOverlay>,
    #[serde(default)]
    pub file: Vec<RawFile>,
    #[serde(default)]
    pub sysctl: Option<Spanned<toml::Table>>,
    #[serde(default)]
    pub zram: Option<RawZram>,
    #[serde(default)]
    pub network: Option<RawNetwork>,
    #[serde(default)]
    pub packages: Option<RawPackages>,
    #[serde(default)]
    pub seccomp: Option<RawSeccomp>,
    #[serde(default)]
    pub runtime: Option<RawRuntime>,
    #[serde(default)]
    pub observe: Option<RawObserve>,
}

/// `[observe]`: what the init observes of the runtime with eBPF.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawObserve {
    #[serde(default)]
    pub syscalls: Option<Spanned<bool>>,
    #[serde(default)]
    pub latency: Option<Spanned<bool>>,
}

/// `[runtime.*]`: build steps for the language runtime in the image.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRuntime {
    #[serde(default)]
    pub python: Option<RawPython>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPython {
    /// The interpreter (default: the runtime, when it is a `python*`).
    #[serde(default)]
    pub interpreter: Option<Spanned<String>>,
    /// Compile every `.py` to `__pycache__/*.pyc` at build time.
    #[serde(default)]
    pub bytecode: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSeccomp {
    pub policy: Spanned<String>,
    #[serde(default)]
    pub mode: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawImage {
    pub name: Spanned<String>,
    pub version: Spanned<String>,
    #[serde(default)]
    pub source_date_epoch: Option<Spanned<i64>>,
    #[serde(default)]
    pub hostname: Option<Spanned<String>>,
    /// The largest file the image may hold (package members, overlay files, [[file]]s).
    #[serde(default)]
    pub max_file_size: Option<Spanned<IntOrString>>,
    /// What one package may expand to.
    #[serde(default)]
    pub max_package_size: Option<Spanned<IntOrString>>,
    /// All file contents of the image together.
    #[serde(default)]
    pub max_image_size: Option<Spanned<IntOrString>>,
    /// What the kernel boots: "initramfs" (default) or "erofs" (a verified block device).
    #[serde(default)]
    pub root: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawKernel {
    #[serde(default)]
    pub prebuilt: Option<Spanned<String>>,
    #[serde(default)]
    pub source: Option<Spanned<RawKernelSource>>,
    #[serde(default)]
    pub base: Option<Spanned<String>>,
    #[serde(default)]
    pub fragments: Vec<Spanned<String>>,
    #[serde(default)]
    pub format: Option<Spanned<String>>,
    #[serde(default)]
    pub config: Option<Spanned<String>>,
    #[serde(default)]
    pub modules_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub modules: Vec<Spanned<String>>,
    #[serde(default)]
    pub cmdline: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawKernelSource {
    pub tarball: String,
    #[serde(default)]
    pub sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawInit {
    pub argv: Spanned<Vec<String>>,
    #[serde(default)]
    pub env: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    pub cwd: Option<Spanned<String>>,
    #[serde(default)]
    pub uid: Option<Spanned<i64>>,
    #[serde(default)]
    pub gid: Option<Spanned<i64>>,
    #[serde(default)]
    pub readiness: Option<Spanned<RawReadiness>>,
    #[serde(default)]
    pub restart: Option<Spanned<String>>,
    #[serde(default)]
    pub max_restarts: Option<Spanned<i64>>,
    #[serde(default)]
    pub restart_backoff_ms: Option<Spanned<i64>>,
    #[serde(default)]
    pub restart_backoff_max_ms: Option<Spanned<i64>>,
    #[serde(default)]
    pub stop_timeout_ms: Option<Spanned<i64>>,
    #[serde(default)]
    pub tmpfs: Option<Vec<Spanned<RawTmpfs>>>,
    #[serde(default)]
    pub read_only_root: Option<bool>,
    #[serde(default)]
    pub preload: Vec<Spanned<String>>,
    /// Whether the runtime's executable and its shared-library closure are warmed (default true).
    #[serde(default)]
    pub preload_runtime: Option<bool>,
    #[serde(default)]
    pub stdio: Option<Spanned<String>>,
    #[serde(default)]
    pub limits: Option<RawLimits>,
    /// After a snapshot restore: "SIGUSR1" or "SIGUSR2" to the runtime, or "none".
    #[serde(default)]
    pub on_restore: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawReadiness {
    #[serde(default)]
    pub tcp: Option<i64>,
    #[serde(default)]
    pub notify: Option<bool>,
    #[serde(default)]
    pub timeout_ms: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawTmpfs {
    Path(String),
    Table {
        path: String,
        #[serde(default)]
        size: Option<IntOrString>,
        #[serde(default)]
        mode: Option<IntOrString>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLimits {
    #[serde(default)]
    pub memory_max: Option<Spanned<IntOrString>>,
    #[serde(default)]
    pub memory_high: Option<Spanned<IntOrString>>,
    /// CPUs (0.5 = half a CPU) as a float or integer.
    #[serde(default)]
    pub cpus: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub pids_max: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawOverlay {
    pub path: Spanned<String>,
    #[serde(default)]
    pub target: Option<Spanned<String>>,
    #[serde(default)]
    pub uid: Option<Spanned<i64>>,
    #[serde(default)]
    pub gid: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawFile {
    pub source: Spanned<String>,
    pub path: Spanned<String>,
    #[serde(default)]
    pub mode: Option<Spanned<IntOrString>>,
    #[serde(default)]
    pub uid: Option<Spanned<i64>>,
    #[serde(default)]
    pub gid: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    Str(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawZram {
    pub size: Spanned<IntOrString>,
    #[serde(default)]
    pub algorithm: Option<Spanned<String>>,
    #[serde(default)]
    pub priority: Option<Spanned<i64>>,
    #[serde(default)]
    pub required: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNetwork {
    #[serde(default)]
    pub interface: Option<Spanned<String>>,
    pub address: Spanned<String>,
    #[serde(default)]
    pub gateway: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPackages {
    /// Debian binary package names; the exact versions come from the lock file.
    #[serde(default)]
    pub debian: Vec<Spanned<String>>,
    /// The lock file, relative to the profile (default: the profile's name with `.lock`).
    #[serde(default)]
    pub lock: Option<Spanned<String>>,
    /// Globs of installed paths to drop (on top of the defaults).
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    /// Globs of installed paths to keep even if excluded.
    #[serde(default)]
    pub keep: Vec<Spanned<String>>,
    /// Whether the default excludes (docs, man pages, locales, bytecode caches) apply.
    #[serde(default)]
    pub default_excludes: Option<bool>,
    /// The repository origins (apt's `Origin`) every package may come from.
    #[serde(default)]
    pub origins: Vec<Spanned<String>>,
    /// Per package: the origin and versions it may come from.
    #[serde(default)]
    pub pin: BTreeMap<String, Spanned<RawPin>>,
    /// `[packages.python]`: wheels pinned by a hashed requirements file.
    #[serde(default)]
    pub python: Option<RawPythonDeps>,
    /// `[packages.npm]`: packages pinned by a package-lock.json.
    #[serde(default)]
    pub npm: Option<RawNpmDeps>,
}

/// `[packages.python] requirements = "requirements.txt"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPythonDeps {
    pub requirements: Spanned<String>,
    /// The simple API the wheels are fetched from (default PyPI's).
    #[serde(default)]
    pub index: Option<Spanned<String>>,
}

/// `[packages.npm] lock = "package-lock.json", into = "/srv/fn"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNpmDeps {
    pub lock: Spanned<String>,
    /// The in-image directory whose `node_modules` the lock describes.
    pub into: Spanned<String>,
    /// Packages allowed to carry a native addon (prebuilt; nothing is compiled).
    #[serde(default)]
    pub allow_native: Vec<Spanned<String>>,
}

/// `[packages.pin] NAME = { origin = "Debian", version = "18.*" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPin {
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}
