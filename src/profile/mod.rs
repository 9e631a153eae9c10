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
    #[error("cannot read profile {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub name: String,
    pub version: String,
    pub source_date_epoch: u64,
    pub hostname: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// A kernel image (bzImage or vmlinux) built elsewhere.
    pub prebuilt: PathBuf,
    /// Its `.config`, when known.
    pub config: Option<PathBuf>,
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
}

/// Compression algorithms the Linux zram driver knows.
pub const ZRAM_ALGORITHMS: &[&str] = &["lzo", "lzo-rle", "lz4", "lz4hc", "zstd", "deflate", "842"];

impl Profile {
    /// Reads and validates a profile file.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let bytes = std::fs::read(path).map_err(|source| ProfileError::Read {
            path: path.to_owned(),
            source,
        })?;
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
    let image = Image {
        name: name.into_inner(),
        version: version.into_inner(),
        source_date_epoch,
        hostname,
    };

    // [kernel]
    let k = raw.kernel;
    let prebuilt = match k.prebuilt {
        Some(p) => existing_file(cx, dir, &p, "kernel.prebuilt")?,
        None => {
            return Err(cx.at(
                0..0,
                "kernel.prebuilt",
                "missing: set it to a kernel image (bzImage or vmlinux), relative to the profile",
            ));
        }
    };
    let config = k
        .config
        .map(|c| existing_file(cx, dir, &c, "kernel.config"))
        .transpose()?;
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
        prebuilt,
        config,
        modules_dir,
        modules,
        cmdline,
    };

    // [init]
    let i = raw.init;
    let argv_span = i.argv.span();
    let argv = i.argv.into_inner();
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
    if let Some(e) = i.env {
        for (k, v) in e.get_ref() {
            if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
                return Err(cx.at(e.span(), format!("init.env.{k}"), "environment names cannot be empty or contain '=' or NUL; values cannot contain NUL"));
            }
            env.insert(k.clone(), v.clone());
        }
    }
    let cwd = match i.cwd {
        Some(c) => image_path(cx, &c, "init.cwd")?,
        None => ImagePath::root(),
    };
    let init = Init {
        argv,
        env,
        cwd,
        uid: id(cx, i.uid.as_ref(), "init.uid")?,
        gid: id(cx, i.gid.as_ref(), "init.gid")?,
    };

    // [[overlay]]
    let mut overlays = Vec::new();
    for (n, o) in raw.overlay.iter().enumerate() {
        let key = format!("overlay[{n}]");
        let source = existing_dir(cx, dir, &o.path, &format!("{key}.path"))?;
        let name = source
            .file_name()
            .and_then(|s| s.to_str())
            .filter(|s| !s.is_empty())
            .unwrap_or("overlay")
            .to_owned();
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
            Some(Packages { debian, lock })
        }
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
    })
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
