//! Profiles: `RawProfile` (serde, strict) → validated [`Profile`] (newtypes, resolved paths).
//!
//! Every error names the profile file, the line and column, and the key.

pub mod raw;

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::rootfs::ImagePath;
use raw::RawProfile;

/// The profile schema this builder reads.
pub const SCHEMA: i64 = 1;

/// A profile that could not be read, parsed or validated.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read the profile: {0}")]
    Read(#[from] crate::fsio::ReadError),
    #[error("{0}")]
    Invalid(Located),
}

/// A message tied to a place in a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub file: PathBuf,
    /// 1-based; 0 when the place is unknown.
    pub line: usize,
    pub column: usize,
    /// The offending key, e.g. `overlay[1].path` (empty when unknown).
    pub key: String,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, col)
}

/// Error context while validating: the file and its text.
pub(crate) struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn at(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ProfileError {
        let (line, column) = line_col(self.text, span.start);
        ProfileError::Invalid(Located {
            file: self.file.to_owned(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        })
    }

    /// For keys whose spans serde does not keep (nested sysctl tables): the first line
    /// that mentions the key's last segment.
    fn near(
        &self,
        needle: &str,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ProfileError {
        let offset = self.text.find(needle).unwrap_or(0);
        self.at(offset..offset, key, message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The profile file as given.
    pub path: PathBuf,
    /// Its directory; relative paths resolve against it.
    pub dir: PathBuf,
    /// sha256 of the profile file's bytes.
    pub digest: [u8; 32],
    pub image: Image,
    pub kernel: Kernel,
    pub init: Init,
    pub overlays: Vec<Overlay>,
    pub files: Vec<HostFile>,
    /// Dotted keys (`vm.swappiness`) in key order.
    pub sysctl: BTreeMap<String, String>,
    pub zram: Option<Zram>,
    pub network: Option<Network>,
    pub packages: Option<Packages>,
    pub seccomp: Option<SeccompSpec>,
    /// `[runtime.python]`.
    pub python: Option<PythonSpec>,
    /// `[observe]` (when it observes anything).
    pub observe: Option<stratos_wire::Observe>,
}

/// `[runtime.python]`: what the builder does for a Python runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonSpec {
    /// The image's interpreter, run on the build host through the image's loader.
    pub interpreter: ImagePath,
    /// Compile every `.py` of the image to bytecode at build time.
    pub bytecode: bool,
}

/// `[seccomp]`: an OCI/Docker seccomp policy compiled at build time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompSpec {
    pub policy: PathBuf,
    pub mode: SeccompMode,
}

/// What a profile value may be, with the words a profile uses for it.
pub trait Named: Sized + Copy + 'static {
    /// Every value and its name, the default first.
    const ALL: &'static [(&'static str, Self)];

    fn as_str(self) -> &'static str
    where
        Self: PartialEq,
    {
        Self::ALL
            .iter()
            .find(|(_, v)| *v == self)
            .map(|(n, _)| *n)
            .expect("every value is named")
    }
}

/// `[seccomp] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeccompMode {
    /// Denied calls get the policy's action.
    Enforce,
    /// Denied calls are allowed and reported (for deriving a baseline).
    Log,
}

impl Named for SeccompMode {
    const ALL: &'static [(&'static str, Self)] =
        &[("enforce", SeccompMode::Enforce), ("log", SeccompMode::Log)];
}

/// `[kernel] base`: the Kconfig target the config starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelBase {
    Tinyconfig,
    Allnoconfig,
}

impl Named for KernelBase {
    const ALL: &'static [(&'static str, Self)] = &[
        ("tinyconfig", KernelBase::Tinyconfig),
        ("allnoconfig", KernelBase::Allnoconfig),
    ];
}

/// `[kernel] format`: what the build produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// A compressed, self-decompressing image.
    BzImage,
    /// The uncompressed ELF, loaded by the VMM through the PVH entry point.
    Vmlinux,
}

impl Named for KernelFormat {
    const ALL: &'static [(&'static str, Self)] = &[
        ("bzImage", KernelFormat::BzImage),
        ("vmlinux", KernelFormat::Vmlinux),
    ];
}

/// Displays a [`Named`] value as the word a profile uses for it.
macro_rules! display_named {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
display_named!(SeccompMode, KernelBase, KernelFormat, RootFormat);

impl Named for RootFormat {
    const ALL: &'static [(&'static str, Self)] = &[
        ("initramfs", RootFormat::Initramfs),
        ("erofs", RootFormat::Erofs),
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub name: String,
    pub version: String,
    pub source_date_epoch: u64,
    pub hostname: String,
    /// What the contents may expand to (`max-file-size`, `max-package-size`, `max-image-size`).
    pub limits: crate::rootfs::ExpandLimits,
    /// The root filesystem the kernel boots.
    pub root: RootFormat,
}

/// `[image] root`: how the kernel gets its root filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootFormat {
    /// An initramfs the kernel unpacks into RAM (for VMMs without block devices).
    Initramfs,
    /// A read-only EROFS image on a virtio block device, checked block by block by dm-verity.
    Erofs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub origin: KernelOrigin,
    /// `lib/modules/<version>` of the kernel package (holding `modules.dep`).
    pub modules_dir: Option<PathBuf>,
    /// Module names to put in the image and load at boot (with their dependencies).
    pub modules: Vec<String>,
    pub cmdline: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Init {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: ImagePath,
    pub uid: u32,
    pub gid: u32,
    pub readiness: Option<stratos_wire::Readiness>,
    pub restart: stratos_wire::Restart,
    pub stop_timeout_ms: u64,
    pub tmpfs: Vec<stratos_wire::Tmpfs>,
    pub read_only_root: bool,
    pub preload: Vec<ImagePath>,
    /// Warm the runtime's executable and its shared-library closure (default true).
    pub preload_runtime: bool,
    pub stdio: stratos_wire::Stdio,
    pub limits: stratos_wire::Limits,
    /// The signal the runtime gets after a snapshot restore (reseeded, clock set).
    pub on_restore: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// Resolved host directory.
    pub source: PathBuf,
    /// The name of its SBOM component (`overlay:<name>`): the directory's file name.
    pub name: String,
    pub target: ImagePath,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFile {
    pub source: PathBuf,
    pub dest: ImagePath,
    /// Explicit permission bits, or `None` for the normalised host mode.
    pub mode: Option<u32>,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZramSize {
    Bytes(u64),
    PercentOfRam(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zram {
    pub size: ZramSize,
    pub algorithm: String,
    pub priority: i32,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub interface: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packages {
    pub debian: Vec<String>,
    pub lock: PathBuf,
    /// Installed paths to drop (globs: `*`, `?`, `**`), on top of the defaults.
    pub exclude: Vec<String>,
    /// Installed paths kept even when excluded.
    pub keep: Vec<String>,
    pub default_excludes: bool,
    /// Where packages may come from (`origins`, `[packages.pin]`), for `stratos lock`.
    pub policy: crate::packages::resolve::Policy,
    /// `[packages.python]`: wheels from a hashed requirements file.
    pub python: Option<PythonDeps>,
    /// `[packages.npm]`: packages from a package-lock.json.
    pub npm: Option<NpmDeps>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonDeps {
    pub requirements: PathBuf,
    /// The simple API (PEP 691) wheels are fetched from.
    pub index: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpmDeps {
    pub lock: PathBuf,
    /// The directory whose `node_modules` the lock describes.
    pub into: ImagePath,
    pub allow_native: Vec<String>,
}

/// Where the kernel comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelOrigin {
    /// A kernel image (bzImage or vmlinux) built elsewhere, and its `.config` when known.
    Prebuilt {
        image: PathBuf,
        config: Option<PathBuf>,
    },
    /// Built from a Linux source tarball with our config fragments.
    Source(KernelSourceSpec),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSourceSpec {
    pub tarball: PathBuf,
    /// Pinned sha256 of the tarball (hex), if the profile pins it.
    pub sha256: Option<String>,
    /// The Kconfig target the config starts from.
    pub base: KernelBase,
    /// Config fragments, merged in order on top of the base.
    pub fragments: Vec<PathBuf>,
    pub format: KernelFormat,
}

/// Compression algorithms the Linux zram driver knows.
pub const ZRAM_ALGORITHMS: &[&str] = &["lzo", "lzo-rle", "lz4", "lz4hc", "zstd", "deflate", "842"];

impl Profile {
    /// Reads and validates a profile file.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let bytes = crate::fsio::read_file(path, crate::fsio::caps::PROFILE, "a profile")?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let (line, column) = line_col(
                &String::from_utf8_lossy(e.as_bytes()),
                e.utf8_error().valid_up_to(),
            );
            ProfileError::Invalid(Located {
                file: path.to_owned(),
                line,
                column,
                key: String::new(),
                message: "the profile is not valid UTF-8".into(),
            })
        })?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned();
        Self::parse(
            &text,
            path,
            &dir,
            std::env::var("SOURCE_DATE_EPOCH").ok().as_deref(),
        )
    }

    /// Parses and validates profile text. `file` is used in messages, `dir` to resolve relative
    /// paths (which must exist), `env_epoch` is `$SOURCE_DATE_EPOCH` when the profile sets none.
    pub fn parse(
        text: &str,
        file: &Path,
        dir: &Path,
        env_epoch: Option<&str>,
    ) -> Result<Profile, ProfileError> {
        let cx = Ctx { file, text };
        let raw: RawProfile = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
            ProfileError::Invalid(Located {
                file: file.to_owned(),
                line,
                column,
                key: String::new(),
                message: format!(
                    "{} (see the profile reference in docs/profile.md)",
                    e.message().trim_end()
                ),
            })
        })?;
        validate(&cx, raw, dir, env_epoch).map(|mut p| {
            p.path = file.to_owned();
            p.dir = dir.to_owned();
            p.digest = Sha256::digest(text.as_bytes()).into();
            p
        })
    }
}

fn validate(
    cx: &Ctx,
    raw: RawProfile,
    dir: &Path,
    env_epoch: Option<&str>,
) -> Result<Profile, ProfileError> {
    if *raw.schema.get_ref() != SCHEMA {
        return Err(cx.at(
            raw.schema.span(),
            "schema",
            format!(
                "schema = {} is not supported; this stratos reads schema = {SCHEMA}",
                raw.schema.get_ref()
            ),
        ));
    }

    let image = sections::validate_image(cx, raw.image, env_epoch)?;
    let kernel = sections::validate_kernel(cx, raw.kernel, dir)?;
    let init = sections::validate_init(cx, raw.init)?;
    let overlays = sections::validate_overlays(cx, &raw.overlay, dir)?;
    let files = sections::validate_files(cx, &raw.file, dir)?;
    let sysctl = match &raw.sysctl {
        Some(table) => sections::validate_sysctl(cx, table.get_ref())?,
        None => BTreeMap::new(),
    };
    let zram = raw
        .zram
        .map(|z| sections::validate_zram(cx, z))
        .transpose()?;
    let network = raw
        .network
        .map(|n| sections::validate_network(cx, n))
        .transpose()?;
    let packages = raw
        .packages
        .map(|p| sections::validate_packages(cx, p, dir))
        .transpose()?;
    let seccomp = raw
        .seccomp
        .as_ref()
        .map(|s| sections::validate_seccomp(cx, s, dir))
        .transpose()?;
    let python = raw
        .runtime
        .and_then(|r| r.python)
        .map(|py| sections::validate_python(cx, py, &init.argv[0]))
        .transpose()?;
    let observe = raw
        .observe
        .map(|o| sections::validate_observe(cx, o))
        .transpose()?
        .flatten();
    Ok(Profile {
        path: PathBuf::new(),
        dir: PathBuf::new(),
        digest: [0; 32],
        image,
        kernel,
        init,
        overlays,
        files,
        sysctl,
        zram,
        network,
        packages,
        seccomp,
        python,
        observe,
    })
}

mod checks;
mod sections;

pub use checks::{is_debian_name, overlay_name, parse_size};

#[cfg(test)]
mod tests;
