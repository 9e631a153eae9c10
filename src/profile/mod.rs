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
use toml::Spanned;

use crate::rootfs::ImagePath;
use raw::{IntOrString, RawProfile};

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
struct Ctx<'a> {
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
    /// `enforce` or `log`.
    pub mode: String,
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
    pub base: String,
    /// Config fragments, merged in order on top of the base.
    pub fragments: Vec<PathBuf>,
    /// `bzImage` or `vmlinux`.
    pub format: String,
}

/// Kconfig targets a kernel config may start from.
pub const KERNEL_BASES: &[&str] = &["tinyconfig", "allnoconfig"];

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
                    "{} (see the profile reference in README.md)",
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

    // [image]
    let name = raw.image.name;
    if !is_name(name.get_ref()) {
        return Err(cx.at(
            name.span(),
            "image.name",
            format!(
                "{:?} is not a valid image name: use 1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
                name.get_ref()
            ),
        ));
    }
    let version = raw.image.version;
    if version.get_ref().is_empty()
        || version.get_ref().len() > 128
        || !version
            .get_ref()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-~".contains(c))
    {
        return Err(cx.at(
            version.span(),
            "image.version",
            format!(
                "{:?} is not a valid version: use 1-128 of A-Z, a-z, 0-9, '.', '_', '+', '-', '~'",
                version.get_ref()
            ),
        ));
    }
    let source_date_epoch = match raw.image.source_date_epoch {
        Some(e) => u64::try_from(*e.get_ref())
            .map_err(|_| cx.at(e.span(), "image.source-date-epoch", "must be a non-negative number of seconds"))?,
        None => match env_epoch {
            Some(s) => s.trim().parse::<u64>().map_err(|_| {
                cx.at(0..0, "image.source-date-epoch", format!("the profile sets none and $SOURCE_DATE_EPOCH={s:?} is not a number of seconds"))
            })?,
            None => 0,
        },
    };
    let hostname = match raw.image.hostname {
        Some(h) => {
            if !is_hostname(h.get_ref()) {
                return Err(cx.at(
                    h.span(),
                    "image.hostname",
                    format!(
                        "{:?} is not a valid hostname (1-63 of a-z, 0-9, '-')",
                        h.get_ref()
                    ),
                ));
            }
            h.into_inner()
        }
        None => name.get_ref().replace(['.', '_'], "-"),
    };
    let mut expand = crate::rootfs::ExpandLimits::default();
    for (v, key, slot) in [
        (
            &raw.image.max_file_size,
            "image.max-file-size",
            &mut expand.file,
        ),
        (
            &raw.image.max_package_size,
            "image.max-package-size",
            &mut expand.package,
        ),
        (
            &raw.image.max_image_size,
            "image.max-image-size",
            &mut expand.image,
        ),
    ] {
        if let Some(v) = v {
            *slot = bytes_value(cx, v, key)?;
        }
    }
    let root = match &raw.image.root {
        None => RootFormat::Initramfs,
        Some(r) if r.get_ref() == "initramfs" => RootFormat::Initramfs,
        Some(r) if r.get_ref() == "erofs" => RootFormat::Erofs,
        Some(r) => {
            return Err(cx.at(
                r.span(),
                "image.root",
                format!(
                    "{:?} is not a root format: use \"erofs\" (a verified block device) or \"initramfs\"",
                    r.get_ref()
                ),
            ))
        }
    };
    let image = Image {
        name: name.into_inner(),
        version: version.into_inner(),
        source_date_epoch,
        hostname,
        limits: expand,
        root,
    };

    // [kernel]
    let k = raw.kernel;
    let origin = match (&k.prebuilt, &k.source) {
        (Some(_), Some(src)) => {
            return Err(cx.at(
                src.span(),
                "kernel.source",
                "set either kernel.prebuilt or kernel.source, not both",
            ));
        }
        (None, None) => {
            return Err(cx.at(
                0..0,
                "kernel",
                "needs either prebuilt = \"path/to/bzImage\" or source = { tarball = \"...\" } with fragments",
            ));
        }
        (Some(p), None) => {
            for (key, present) in [
                ("kernel.base", k.base.as_ref().map(|b| b.span())),
                ("kernel.format", k.format.as_ref().map(|b| b.span())),
                ("kernel.fragments", k.fragments.first().map(|f| f.span())),
            ] {
                if let Some(span) = present {
                    return Err(cx.at(
                        span,
                        key,
                        "only applies to kernels built from source (kernel.source)",
                    ));
                }
            }
            KernelOrigin::Prebuilt {
                image: existing_file(cx, dir, p, "kernel.prebuilt")?,
                config: k
                    .config
                    .as_ref()
                    .map(|c| existing_file(cx, dir, c, "kernel.config"))
                    .transpose()?,
            }
        }
        (None, Some(src)) => {
            if let Some(c) = &k.config {
                return Err(cx.at(
                    c.span(),
                    "kernel.config",
                    "a kernel built from source gets its config from base and fragments",
                ));
            }
            let span = src.span();
            let raw_src = src.get_ref();
            let tarball_sp = Spanned::new(span.clone(), raw_src.tarball.clone());
            let tarball = existing_file(cx, dir, &tarball_sp, "kernel.source.tarball")?;
            let sha256 = match &raw_src.sha256 {
                Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    Some(h.to_ascii_lowercase())
                }
                Some(_) => {
                    return Err(cx.at(span, "kernel.source.sha256", "must be 64 hex digits"))
                }
                None => None,
            };
            let base = match &k.base {
                Some(b) if KERNEL_BASES.contains(&b.get_ref().as_str()) => b.get_ref().clone(),
                Some(b) => {
                    return Err(cx.at(
                        b.span(),
                        "kernel.base",
                        format!(
                            "{:?} is not a base; use one of {}",
                            b.get_ref(),
                            KERNEL_BASES.join(", ")
                        ),
                    ));
                }
                None => "tinyconfig".to_owned(),
            };
            let mut fragments = Vec::new();
            for (i, f) in k.fragments.iter().enumerate() {
                fragments.push(existing_file(
                    cx,
                    dir,
                    f,
                    &format!("kernel.fragments[{i}]"),
                )?);
            }
            let format = match &k.format {
                Some(f) if f.get_ref() == "bzImage" || f.get_ref() == "vmlinux" => {
                    f.get_ref().clone()
                }
                Some(f) => {
                    return Err(cx.at(
                        f.span(),
                        "kernel.format",
                        "must be \"bzImage\" or \"vmlinux\"",
                    ))
                }
                None => "bzImage".to_owned(),
            };
            KernelOrigin::Source(KernelSourceSpec {
                tarball,
                sha256,
                base,
                fragments,
                format,
            })
        }
    };
    let modules_dir = k
        .modules_dir
        .map(|m| existing_dir(cx, dir, &m, "kernel.modules-dir"))
        .transpose()?;
    let mut modules = Vec::new();
    for (i, m) in k.modules.iter().enumerate() {
        let key = format!("kernel.modules[{i}]");
        let n = m.get_ref();
        if n.is_empty()
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(cx.at(
                m.span(),
                key,
                format!("{n:?} is not a module name (like virtio_net)"),
            ));
        }
        if modules_dir.is_none() {
            return Err(cx.at(
                m.span(),
                key,
                "modules need kernel.modules-dir (the kernel package's lib/modules/<version>)",
            ));
        }
        let n = n.replace('-', "_");
        if modules.contains(&n) {
            return Err(cx.at(m.span(), key, format!("module {n:?} is listed twice")));
        }
        modules.push(n);
    }
    let cmdline = match k.cmdline {
        Some(c) => {
            if c.get_ref().contains(['\n', '\0']) || c.get_ref().len() > 2048 {
                return Err(cx.at(
                    c.span(),
                    "kernel.cmdline",
                    "must be one line of at most 2048 bytes",
                ));
            }
            c.into_inner()
        }
        None => "console=ttyS0".to_owned(),
    };
    let kernel = Kernel {
        origin,
        modules_dir,
        modules,
        cmdline,
    };

    // [init]
    let i = raw.init;
    let argv_span = i.argv.span();
    let argv = i.argv.get_ref().clone();
    match argv.first() {
        None => {
            return Err(cx.at(
                argv_span,
                "init.argv",
                "must name the runtime to start, e.g. [\"/bin/busybox\", \"httpd\", \"-f\"]",
            ))
        }
        Some(a0) => {
            ImagePath::parse(a0).map_err(|e| {
                cx.at(
                    argv_span.clone(),
                    "init.argv[0]",
                    format!("{e} (the runtime is executed without a PATH search)"),
                )
            })?;
        }
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(cx.at(argv_span, "init.argv", "arguments cannot contain NUL bytes"));
    }
    let mut env = BTreeMap::new();
    if let Some(e) = &i.env {
        for (k, v) in e.get_ref() {
            if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
                return Err(cx.at(e.span(), format!("init.env.{k}"), "environment names cannot be empty or contain '=' or NUL; values cannot contain NUL"));
            }
            env.insert(k.clone(), v.clone());
        }
    }
    let cwd = match &i.cwd {
        Some(c) => image_path(cx, c, "init.cwd")?,
        None => ImagePath::root(),
    };
    let init = Init {
        argv,
        env,
        cwd,
        uid: id(cx, i.uid.as_ref(), "init.uid")?,
        gid: id(cx, i.gid.as_ref(), "init.gid")?,
        readiness: readiness(cx, i.readiness.as_ref())?,
        restart: restart(cx, &i)?,
        stop_timeout_ms: match &i.stop_timeout_ms {
            Some(v) => positive_ms(cx, v, "init.stop-timeout-ms")?,
            None => 10_000,
        },
        tmpfs: tmpfs(cx, i.tmpfs.as_deref())?,
        read_only_root: i.read_only_root.unwrap_or(true),
        preload: i
            .preload
            .iter()
            .enumerate()
            .map(|(n, p)| image_path(cx, p, &format!("init.preload[{n}]")))
            .collect::<Result<_, _>>()?,
        preload_runtime: i.preload_runtime.unwrap_or(true),
        stdio: match &i.stdio {
            None => stratos_wire::Stdio::Console,
            Some(s) if s.get_ref() == "console" => stratos_wire::Stdio::Console,
            Some(s) if s.get_ref() == "null" => stratos_wire::Stdio::Null,
            Some(s) => {
                return Err(cx.at(s.span(), "init.stdio", "must be \"console\" or \"null\""))
            }
        },
        limits: limits(cx, i.limits.as_ref())?,
    };

    // [[overlay]]
    let mut overlays = Vec::new();
    for (n, o) in raw.overlay.iter().enumerate() {
        let key = format!("overlay[{n}]");
        let source = existing_dir(cx, dir, &o.path, &format!("{key}.path"))?;
        let name = overlay_name(o.path.get_ref(), n);
        if overlays.iter().any(|x: &Overlay| x.name == name) {
            return Err(cx.at(o.path.span(), format!("{key}.path"), format!("another overlay is also named {name:?}; overlay directory names must be distinct (they name SBOM components)")));
        }
        let target = match &o.target {
            Some(t) => image_path(cx, t, &format!("{key}.target"))?,
            None => ImagePath::root(),
        };
        overlays.push(Overlay {
            source,
            name,
            target,
            uid: id(cx, o.uid.as_ref(), &format!("{key}.uid"))?,
            gid: id(cx, o.gid.as_ref(), &format!("{key}.gid"))?,
        });
    }

    // [[file]]
    let mut files = Vec::new();
    for (n, f) in raw.file.iter().enumerate() {
        let key = format!("file[{n}]");
        let source = existing_file(cx, dir, &f.source, &format!("{key}.source"))?;
        let dest = image_path(cx, &f.path, &format!("{key}.path"))?;
        if dest.is_root() {
            return Err(cx.at(
                f.path.span(),
                format!("{key}.path"),
                "must name a file, not /",
            ));
        }
        let mode = f
            .mode
            .as_ref()
            .map(|m| parse_mode(cx, m, &format!("{key}.mode")))
            .transpose()?;
        files.push(HostFile {
            source,
            dest,
            mode,
            uid: id(cx, f.uid.as_ref(), &format!("{key}.uid"))?,
            gid: id(cx, f.gid.as_ref(), &format!("{key}.gid"))?,
        });
    }

    // [sysctl]
    let mut sysctl = BTreeMap::new();
    if let Some(table) = &raw.sysctl {
        flatten_sysctl(cx, table.get_ref(), "", &mut sysctl)?;
    }

    // [zram]
    let zram = raw.zram.map(|z| validate_zram(cx, z)).transpose()?;

    // [network]
    let network = raw.network.map(|n| validate_network(cx, n)).transpose()?;

    // [packages]
    let packages = match raw.packages {
        None => None,
        Some(p) => {
            let mut debian = Vec::new();
            for (i, d) in p.debian.iter().enumerate() {
                if !is_debian_name(d.get_ref()) {
                    return Err(cx.at(
                        d.span(),
                        format!("packages.debian[{i}]"),
                        format!("{:?} is not a Debian package name", d.get_ref()),
                    ));
                }
                debian.push(d.get_ref().clone());
            }
            let lock = match &p.lock {
                Some(l) => dir.join(l.get_ref()),
                None => {
                    let stem = cx
                        .file
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or("profile");
                    dir.join(format!("{stem}.lock"))
                }
            };
            let globs = |list: &[Spanned<String>],
                         key: &str|
             -> Result<Vec<String>, ProfileError> {
                let mut out = Vec::new();
                for (i, g) in list.iter().enumerate() {
                    if !g.get_ref().starts_with('/') && !g.get_ref().starts_with("**") {
                        return Err(cx.at(
                            g.span(),
                            format!("packages.{key}[{i}]"),
                            "a glob of in-image paths must start with / or ** (e.g. \"/usr/share/doc/**\")",
                        ));
                    }
                    out.push(g.get_ref().clone());
                }
                Ok(out)
            };
            let exclude = globs(&p.exclude, "exclude")?;
            let keep = globs(&p.keep, "keep")?;
            Some(Packages {
                debian,
                lock,
                exclude,
                keep,
                default_excludes: p.default_excludes.unwrap_or(true),
            })
        }
    };

    let seccomp = match &raw.seccomp {
        None => None,
        Some(s) => Some(SeccompSpec {
            policy: existing_file(cx, dir, &s.policy, "seccomp.policy")?,
            mode: match &s.mode {
                None => "enforce".to_owned(),
                Some(m) if m.get_ref() == "enforce" || m.get_ref() == "log" => m.get_ref().clone(),
                Some(m) => {
                    return Err(cx.at(m.span(), "seccomp.mode", "must be \"enforce\" or \"log\""))
                }
            },
        }),
    };

    let python = match raw.runtime.and_then(|r| r.python) {
        None => None,
        Some(py) => Some(validate_python(cx, py, &init.argv[0])?),
    };

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
    })
}

fn validate_python(
    cx: &Ctx,
    py: raw::RawPython,
    runtime: &str,
) -> Result<PythonSpec, ProfileError> {
    let interpreter = match &py.interpreter {
        Some(i) => image_path(cx, i, "runtime.python.interpreter")?,
        None => crate::packages::bytecode::default_interpreter(runtime).ok_or_else(|| {
            cx.near(
                "[runtime.python]",
                "runtime.python.interpreter",
                format!("the runtime {runtime:?} is not a python interpreter: set interpreter = \"/usr/bin/python3.11\" (the image's interpreter)"),
            )
        })?,
    };
    Ok(PythonSpec {
        interpreter,
        bytecode: py.bytecode.unwrap_or(false),
    })
}

fn positive_ms(cx: &Ctx, v: &Spanned<i64>, key: &str) -> Result<u64, ProfileError> {
    u64::try_from(*v.get_ref())
        .ok()
        .filter(|&n| (1..=86_400_000).contains(&n))
        .ok_or_else(|| {
            cx.at(
                v.span(),
                key,
                "must be a number of milliseconds between 1 and 86400000",
            )
        })
}

fn readiness(
    cx: &Ctx,
    r: Option<&Spanned<raw::RawReadiness>>,
) -> Result<Option<stratos_wire::Readiness>, ProfileError> {
    let Some(r) = r else { return Ok(None) };
    let span = r.span();
    let v = r.get_ref();
    let timeout_ms = match v.timeout_ms {
        Some(t) => u64::try_from(t)
            .ok()
            .filter(|&n| (1..=3_600_000).contains(&n))
            .ok_or_else(|| {
                cx.at(
                    span.clone(),
                    "init.readiness.timeout-ms",
                    "must be between 1 and 3600000",
                )
            })?,
        None => 30_000,
    };
    match (v.tcp, v.notify) {
        (Some(port), None | Some(false)) => {
            let port = u16::try_from(port).ok().filter(|&p| p > 0).ok_or_else(|| {
                cx.at(
                    span.clone(),
                    "init.readiness.tcp",
                    "must be a TCP port (1-65535)",
                )
            })?;
            Ok(Some(stratos_wire::Readiness::Tcp { port, timeout_ms }))
        }
        (None, Some(true)) => Ok(Some(stratos_wire::Readiness::Notify { timeout_ms })),
        _ => Err(cx.at(
            span,
            "init.readiness",
            "use either { tcp = PORT } or { notify = true }",
        )),
    }
}

fn restart(cx: &Ctx, i: &raw::RawInit) -> Result<stratos_wire::Restart, ProfileError> {
    let mut r = stratos_wire::Restart::default();
    if let Some(p) = &i.restart {
        r.policy = match p.get_ref().as_str() {
            "never" => stratos_wire::RestartPolicy::Never,
            "on-failure" => stratos_wire::RestartPolicy::OnFailure,
            "always" => stratos_wire::RestartPolicy::Always,
            _ => {
                return Err(cx.at(
                    p.span(),
                    "init.restart",
                    "must be \"never\", \"on-failure\" or \"always\"",
                ))
            }
        };
    }
    if let Some(m) = &i.max_restarts {
        r.max_restarts = u32::try_from(*m.get_ref())
            .ok()
            .filter(|&n| n <= 1000)
            .ok_or_else(|| cx.at(m.span(), "init.max-restarts", "must be between 0 and 1000"))?;
    }
    if let Some(b) = &i.restart_backoff_ms {
        r.backoff_initial_ms = positive_ms(cx, b, "init.restart-backoff-ms")?;
    }
    if let Some(b) = &i.restart_backoff_max_ms {
        r.backoff_max_ms = positive_ms(cx, b, "init.restart-backoff-max-ms")?;
    }
    if r.backoff_max_ms < r.backoff_initial_ms {
        r.backoff_max_ms = r.backoff_initial_ms;
    }
    Ok(r)
}

fn bytes_value(cx: &Ctx, v: &Spanned<IntOrString>, key: &str) -> Result<u64, ProfileError> {
    match (v.get_ref(), parse_size_bytes(v.get_ref())) {
        (_, Some(b)) => Ok(b),
        _ => Err(cx.at(
            v.span(),
            key,
            "must be bytes or a size like \"256M\" or \"1G\"",
        )),
    }
}

fn parse_size_bytes(v: &IntOrString) -> Option<u64> {
    match v {
        IntOrString::Int(i) => u64::try_from(*i).ok().filter(|&b| b >= 4096),
        IntOrString::Str(s) => match parse_size(s)? {
            ZramSize::Bytes(b) => Some(b),
            ZramSize::PercentOfRam(_) => None,
        },
    }
}

fn tmpfs(
    cx: &Ctx,
    list: Option<&[Spanned<raw::RawTmpfs>]>,
) -> Result<Vec<stratos_wire::Tmpfs>, ProfileError> {
    let Some(list) = list else {
        return Ok(vec![
            stratos_wire::Tmpfs {
                path: "/run".into(),
                mode: 0o755,
                size: 0,
            },
            stratos_wire::Tmpfs {
                path: "/tmp".into(),
                mode: 0o1777,
                size: 0,
            },
        ]);
    };
    let mut out: Vec<stratos_wire::Tmpfs> = Vec::new();
    for (n, t) in list.iter().enumerate() {
        let key = format!("init.tmpfs[{n}]");
        let (path, size, mode) = match t.get_ref() {
            raw::RawTmpfs::Path(p) => (p.clone(), None, None),
            raw::RawTmpfs::Table { path, size, mode } => {
                (path.clone(), size.as_ref(), mode.as_ref())
            }
        };
        let p = ImagePath::parse(&path).map_err(|e| cx.at(t.span(), key.clone(), e.to_string()))?;
        if p.is_root()
            || ["/proc", "/sys", "/dev"]
                .iter()
                .any(|k| p.starts_with(&ImagePath::parse(k).expect("static")))
        {
            return Err(cx.at(
                t.span(),
                key,
                format!(
                    "{p} cannot be a tmpfs mount (the init mounts /, /proc, /sys and /dev itself)"
                ),
            ));
        }
        let size = match size {
            None => 0,
            Some(s) => parse_size_bytes(s).ok_or_else(|| {
                cx.at(
                    t.span(),
                    format!("{key}.size"),
                    "must be bytes or a size like \"64M\"",
                )
            })?,
        };
        let mode = match mode {
            None => {
                if p.as_str() == "/tmp" {
                    0o1777
                } else {
                    0o755
                }
            }
            Some(IntOrString::Int(i)) => u32::try_from(*i)
                .ok()
                .filter(|&m| m <= 0o7777)
                .ok_or_else(|| {
                    cx.at(
                        t.span(),
                        format!("{key}.mode"),
                        "must be octal permission bits",
                    )
                })?,
            Some(IntOrString::Str(s)) => u32::from_str_radix(s.trim_start_matches("0o"), 8)
                .ok()
                .filter(|&m| m <= 0o7777)
                .ok_or_else(|| {
                    cx.at(
                        t.span(),
                        format!("{key}.mode"),
                        "must be octal permission bits",
                    )
                })?,
        };
        if out.iter().any(|o| o.path == p.as_str()) {
            return Err(cx.at(t.span(), key, format!("{p} is listed twice")));
        }
        out.push(stratos_wire::Tmpfs {
            path: p.to_string(),
            mode,
            size,
        });
    }
    Ok(out)
}

fn limits(cx: &Ctx, l: Option<&raw::RawLimits>) -> Result<stratos_wire::Limits, ProfileError> {
    let Some(l) = l else {
        return Ok(stratos_wire::Limits::default());
    };
    let cpu_max = match &l.cpus {
        None => None,
        Some(v) => {
            let cpus = match v.get_ref() {
                toml::Value::Float(f) => *f,
                toml::Value::Integer(i) => *i as f64,
                _ => -1.0,
            };
            if !(0.01..=1024.0).contains(&cpus) {
                return Err(cx.at(
                    v.span(),
                    "init.limits.cpus",
                    "must be a number of CPUs between 0.01 and 1024, e.g. 0.5",
                ));
            }
            Some(((cpus * 100_000.0).round() as u64, 100_000))
        }
    };
    Ok(stratos_wire::Limits {
        memory_max: l
            .memory_max
            .as_ref()
            .map(|v| bytes_value(cx, v, "init.limits.memory-max"))
            .transpose()?,
        memory_high: l
            .memory_high
            .as_ref()
            .map(|v| bytes_value(cx, v, "init.limits.memory-high"))
            .transpose()?,
        cpu_max,
        pids_max: l
            .pids_max
            .as_ref()
            .map(|v| {
                u64::try_from(*v.get_ref())
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| cx.at(v.span(), "init.limits.pids-max", "must be at least 1"))
            })
            .transpose()?,
    })
}

/// An overlay's SBOM name, from its path as written in the profile (never from the resolved
/// host path, which depends on the working directory and on how the profile's path was typed):
/// the last component left after resolving `.` and `..` lexically, else `overlay-N`.
pub fn overlay_name(written: &str, index: usize) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in written.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                // Above the profile's directory: what is there has no name we can know.
                if parts.pop().is_none() {
                    parts.clear();
                }
            }
            name => parts.push(name),
        }
    }
    parts
        .last()
        .map_or_else(|| format!("overlay-{index}"), |s| (*s).to_owned())
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Debian policy §5.6.7: lower case letters, digits, '+', '-', '.'; at least two characters,
/// starting with an alphanumeric.
pub fn is_debian_name(s: &str) -> bool {
    s.len() >= 2
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

fn id(cx: &Ctx, v: Option<&Spanned<i64>>, key: &str) -> Result<u32, ProfileError> {
    match v {
        None => Ok(0),
        Some(v) => u32::try_from(*v.get_ref())
            .ok()
            .filter(|&n| n != u32::MAX)
            .ok_or_else(|| {
                cx.at(
                    v.span(),
                    key,
                    format!(
                        "{} is not a valid user or group id (0..4294967294)",
                        v.get_ref()
                    ),
                )
            }),
    }
}

fn image_path(cx: &Ctx, s: &Spanned<String>, key: &str) -> Result<ImagePath, ProfileError> {
    ImagePath::parse(s.get_ref()).map_err(|e| cx.at(s.span(), key, e.to_string()))
}

fn resolve(dir: &Path, s: &str) -> PathBuf {
    let p = Path::new(s);
    if p.is_absolute() {
        p.to_owned()
    } else {
        dir.join(p)
    }
}

fn existing_file(
    cx: &Ctx,
    dir: &Path,
    s: &Spanned<String>,
    key: &str,
) -> Result<PathBuf, ProfileError> {
    let path = resolve(dir, s.get_ref());
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        Ok(m) => Err(cx.at(
            s.span(),
            key,
            format!(
                "{} is a {}, not a regular file",
                path.display(),
                if m.is_dir() {
                    "directory"
                } else {
                    "special file"
                }
            ),
        )),
        Err(e) => Err(cx.at(
            s.span(),
            key,
            format!(
                "{}: {e} (paths are relative to the profile's directory)",
                path.display()
            ),
        )),
    }
}

fn existing_dir(
    cx: &Ctx,
    dir: &Path,
    s: &Spanned<String>,
    key: &str,
) -> Result<PathBuf, ProfileError> {
    let path = resolve(dir, s.get_ref());
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => Ok(path),
        Ok(_) => Err(cx.at(s.span(), key, format!("{} is not a directory", path.display()))),
        Err(e) => Err(cx.at(
            s.span(),
            key,
            format!("{} does not exist or cannot be read ({e}); paths are relative to the profile's directory", path.display()),
        )),
    }
}

fn parse_mode(cx: &Ctx, m: &Spanned<IntOrString>, key: &str) -> Result<u32, ProfileError> {
    let bad = || {
        cx.at(
            m.span(),
            key,
            "must be octal permission bits, e.g. 0o755 (TOML integer) or \"0755\"",
        )
    };
    let v = match m.get_ref() {
        IntOrString::Int(i) => u32::try_from(*i).map_err(|_| bad())?,
        IntOrString::Str(s) => {
            let s = s.strip_prefix("0o").unwrap_or(s);
            u32::from_str_radix(s, 8).map_err(|_| bad())?
        }
    };
    if v > 0o7777 {
        return Err(bad());
    }
    Ok(v)
}

fn flatten_sysctl(
    cx: &Ctx,
    table: &toml::Table,
    prefix: &str,
    out: &mut BTreeMap<String, String>,
) -> Result<(), ProfileError> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let ok = !key.is_empty()
            && key.split(['.', '/']).all(|seg| {
                !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !ok {
            return Err(cx.near(
                k,
                format!("sysctl.{key}"),
                "not a sysctl key: use dotted names like vm.swappiness",
            ));
        }
        let value = match v {
            toml::Value::Table(t) => {
                flatten_sysctl(cx, t, &key, out)?;
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => u8::from(*b).to_string(),
            _ => {
                return Err(cx.near(
                    k,
                    format!("sysctl.{key}"),
                    "value must be a string, an integer or a boolean",
                ));
            }
        };
        if value.contains(['\n', '\0']) {
            return Err(cx.near(k, format!("sysctl.{key}"), "value must be one line"));
        }
        let canonical = key.replace('/', ".");
        if out.insert(canonical.clone(), value).is_some() {
            return Err(cx.near(
                k,
                format!("sysctl.{key}"),
                format!("{canonical} is set twice"),
            ));
        }
    }
    Ok(())
}

/// Parses `512M`, `1G`, `1048576`, `50%`.
pub fn parse_size(s: &str) -> Option<ZramSize> {
    let s = s.trim();
    if let Some(p) = s.strip_suffix('%') {
        let p: u32 = p.trim().parse().ok()?;
        return (1..=400).contains(&p).then_some(ZramSize::PercentOfRam(p));
    }
    let (num, mult) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (s, 1u64),
        Some((i, _)) => {
            let mult = match s[i..].trim() {
                "K" | "k" | "KiB" => 1 << 10,
                "M" | "MiB" => 1 << 20,
                "G" | "GiB" => 1 << 30,
                _ => return None,
            };
            (&s[..i], mult)
        }
    };
    let n: u64 = num.parse().ok()?;
    n.checked_mul(mult)
        .filter(|&b| b >= 4096)
        .map(ZramSize::Bytes)
}

fn validate_zram(cx: &Ctx, z: raw::RawZram) -> Result<Zram, ProfileError> {
    let size = match z.size.get_ref() {
        IntOrString::Int(i) => u64::try_from(*i).ok().filter(|&b| b >= 4096).map(ZramSize::Bytes),
        IntOrString::Str(s) => parse_size(s),
    }
    .ok_or_else(|| cx.at(z.size.span(), "zram.size", "must be bytes (at least 4096), a size like \"512M\" or \"1G\", or a percentage of RAM like \"50%\" (1-400)"))?;
    let algorithm = match z.algorithm {
        Some(a) => {
            if !ZRAM_ALGORITHMS.contains(&a.get_ref().as_str()) {
                return Err(cx.at(
                    a.span(),
                    "zram.algorithm",
                    format!(
                        "{:?} is not a zram algorithm; use one of {}",
                        a.get_ref(),
                        ZRAM_ALGORITHMS.join(", ")
                    ),
                ));
            }
            a.into_inner()
        }
        None => "lzo-rle".to_owned(),
    };
    let priority = match z.priority {
        Some(p) => i32::try_from(*p.get_ref())
            .ok()
            .filter(|v| (-1..=32767).contains(v))
            .ok_or_else(|| cx.at(p.span(), "zram.priority", "must be between -1 and 32767"))?,
        None => 100,
    };
    Ok(Zram {
        size,
        algorithm,
        priority,
        required: z.required.unwrap_or(false),
    })
}

fn validate_network(cx: &Ctx, n: raw::RawNetwork) -> Result<Network, ProfileError> {
    let interface = match n.interface {
        Some(i) => {
            let s = i.get_ref();
            if s.is_empty() || s.len() > 15 || s.contains(['/', ' ', '\0']) {
                return Err(cx.at(
                    i.span(),
                    "network.interface",
                    format!("{s:?} is not an interface name"),
                ));
            }
            i.into_inner()
        }
        None => "eth0".to_owned(),
    };
    let bad_addr = || {
        cx.at(
            n.address.span(),
            "network.address",
            "must be an IPv4 address with a prefix length, e.g. \"10.0.2.15/24\"",
        )
    };
    let (addr, prefix) = n.address.get_ref().split_once('/').ok_or_else(bad_addr)?;
    let address: Ipv4Addr = addr.parse().map_err(|_| bad_addr())?;
    let prefix_len: u8 = prefix
        .parse()
        .ok()
        .filter(|&p| p <= 32)
        .ok_or_else(bad_addr)?;
    let gateway = n
        .gateway
        .map(|g| {
            g.get_ref().parse::<Ipv4Addr>().map_err(|_| {
                cx.at(
                    g.span(),
                    "network.gateway",
                    "must be an IPv4 address, e.g. \"10.0.2.2\"",
                )
            })
        })
        .transpose()?;
    Ok(Network {
        interface,
        address,
        prefix_len,
        gateway,
    })
}

#[cfg(test)]
mod tests;
