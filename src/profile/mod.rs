//! Profiles: `RawProfile` (serde, strict) → validated [`Profile`] (newtypes, resolved paths).
//!
//! Every error names the profile file, the line and column, and the key.
//!
//! One file per section, each holding the section's raw (serde) table, its validated type, its
//! validator and their tests: `image`, `kernel`, `init`, `overlays`, `files`, `sysctl`, `zram`,
//! `network`, `packages`, `seccomp`, `python` (`[runtime.python]`), `go` (`[runtime.go]`) and
//! `observe`. This file
//! holds the profile as a whole (reading, parsing, the order the sections are validated in)
//! and the error type; `checks` holds the checks the sections share.

mod cargo;
mod checks;
mod files;
mod go;
mod image;
mod init;
mod kernel;
mod network;
mod observe;
mod overlays;
mod packages;
mod python;
mod schema;
mod seccomp;
mod spanned;
mod sysctl;
mod zram;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use spanned::Spanned;

pub use cargo::CargoSpec;
pub use checks::{parse_size, ZramSize};
pub use files::HostFile;
pub use go::{
    GoProxy, GoSpec, DEFAULT_PROXY as DEFAULT_GO_PROXY, DEFAULT_TOOLCHAIN as DEFAULT_GO_TOOLCHAIN,
};
pub use image::{is_name as is_image_name, Image, RootFormat};
pub use init::{Init, LambdaInit, LAMBDA_API_PORT};
pub use kernel::{
    Kernel, KernelBase, KernelFormat, KernelOrigin, KernelOriginKind, KernelSourceSpec,
};
pub use network::Network;
pub use overlays::{overlay_name, Overlay};
pub use packages::{is_debian_name, NpmDeps, Packages, Pin, Policy, PythonDeps};
pub use python::PythonSpec;
pub use schema::{json_schema, json_schema_text};
pub use seccomp::{SeccompMode, SeccompSpec};
pub use zram::{Zram, ZRAM_ALGORITHMS};

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
    /// The architecture asked for (`stratos build --arch`); `None`: the profile's default.
    arch: Option<crate::arch::Arch>,
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

/// The profile exactly as written: serde types, strict about unknown keys, nothing checked yet.
/// Each section's table is defined next to its validator.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawProfile {
    /// The profile format: 1.
    schema: Spanned<i64>,
    /// The image: its name, version, timestamp, root format and size limits.
    image: image::RawImage,
    /// The kernel: built from a source tarball with config fragments, or prebuilt.
    kernel: kernel::RawKernel,
    /// The runtime the init starts: argv, environment, user, readiness, restarts, limits.
    init: init::RawInit,
    /// Directories laid onto the image's root, in order.
    #[serde(default)]
    overlay: Vec<overlays::RawOverlay>,
    /// Single host files put at an in-image path.
    #[serde(default)]
    file: Vec<files::RawFile>,
    #[serde(default)]
    #[schemars(schema_with = "sysctl::schema")]
    sysctl: Option<Spanned<toml::Table>>,
    /// A compressed swap device in RAM.
    #[serde(default)]
    zram: Option<zram::RawZram>,
    /// The guest's network interface (without it the function has no address).
    #[serde(default)]
    network: Option<network::RawNetwork>,
    /// Debian packages (pinned by the lock file), wheels and npm packages.
    #[serde(default)]
    packages: Option<packages::RawPackages>,
    /// The seccomp baseline the runtime runs under.
    #[serde(default)]
    seccomp: Option<seccomp::RawSeccomp>,
    /// Runtime-specific build steps (`[runtime.python]`, `[runtime.go]`, `[runtime.cargo]`).
    #[serde(default)]
    runtime: Option<python::RawRuntime>,
    /// System-call counting and timing by eBPF in the init.
    #[serde(default)]
    observe: Option<observe::RawObserve>,
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
    /// `[runtime.go]`.
    pub go: Option<GoSpec>,
    /// `[runtime.cargo]`.
    pub cargo: Option<CargoSpec>,
    /// `[observe]` (when it observes anything).
    pub observe: Option<stratos_wire::Observe>,
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

    /// The value a word names.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// The words, for messages: `"a" or "b"`.
    fn allowed() -> String {
        Self::ALL
            .iter()
            .map(|(n, _)| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(" or ")
    }
}

/// Displays a [`Named`] value as the word a profile uses for it (padded like that string).
macro_rules! display_named {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    )*};
}
display_named!(
    SeccompMode,
    KernelBase,
    KernelFormat,
    KernelOriginKind,
    RootFormat
);

/// (De)serialises a [`Named`] value as its word: the signed manifest records what was built
/// with these (`kernel.format`, `kernel.origin`, `seccomp.mode`, `root.format`).
macro_rules! serde_named {
    ($($t:ty),*) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let word = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                <$t>::from_name(&word).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "{word:?} is not allowed here; use {}",
                        <$t>::allowed()
                    ))
                })
            }
        }
    )*};
}
serde_named!(SeccompMode, KernelFormat, KernelOriginKind, RootFormat);

impl Profile {
    /// Reads and validates a profile file.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        Self::load_for(path, None)
    }

    /// Reads and validates a profile file for an architecture (`None`: the profile's default,
    /// the first of `[image] arch`), its `[kernel.<arch>]` parts merged in.
    pub fn load_for(path: &Path, arch: Option<crate::arch::Arch>) -> Result<Profile, ProfileError> {
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
        Self::parse_for(
            &text,
            path,
            &dir,
            std::env::var("SOURCE_DATE_EPOCH").ok().as_deref(),
            arch,
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
        Self::parse_for(text, file, dir, env_epoch, None)
    }

    /// [`Profile::parse`] for an architecture (see [`Profile::load_for`]).
    pub fn parse_for(
        text: &str,
        file: &Path,
        dir: &Path,
        env_epoch: Option<&str>,
        arch: Option<crate::arch::Arch>,
    ) -> Result<Profile, ProfileError> {
        let cx = Ctx { file, text, arch };
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

    let image = image::validate_image(cx, raw.image, env_epoch)?;
    let kernel = kernel::validate_kernel(cx, raw.kernel, dir, image.arch)?;
    let init = init::validate_init(cx, raw.init)?;
    let overlays = overlays::validate_overlays(cx, &raw.overlay, dir)?;
    let files = files::validate_files(cx, &raw.file, dir)?;
    let sysctl = match &raw.sysctl {
        Some(table) => sysctl::validate_sysctl(cx, table.get_ref())?,
        None => BTreeMap::new(),
    };
    let zram = raw.zram.map(|z| zram::validate_zram(cx, z)).transpose()?;
    let network = raw
        .network
        .map(|n| network::validate_network(cx, n))
        .transpose()?;
    let packages = raw
        .packages
        .map(|p| packages::validate_packages(cx, p, dir, image.arch))
        .transpose()?;
    let seccomp = raw
        .seccomp
        .as_ref()
        .map(|s| seccomp::validate_seccomp(cx, s, dir))
        .transpose()?;
    let (python, go, cargo) = match raw.runtime {
        Some(r) => {
            if r.go.is_some() && r.cargo.is_some() {
                return Err(cx.at(
                    0..0,
                    "runtime",
                    "[runtime.go] and [runtime.cargo] both: an image holds one compiled function; keep one",
                ));
            }
            (
                r.python
                    .map(|py| python::validate_python(cx, py, &init.argv[0]))
                    .transpose()?,
                r.go.map(|g| go::validate_go(cx, g, dir, &init.argv[0]))
                    .transpose()?,
                r.cargo
                    .map(|c| cargo::validate_cargo(cx, c, dir, &init.argv[0]))
                    .transpose()?,
            )
        }
        None => (None, None, None),
    };
    let observe = raw
        .observe
        .map(|o| observe::validate_observe(cx, o))
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
        go,
        cargo,
        observe,
    })
}

#[cfg(test)]
mod tests;
