//! `[kernel]`: a prebuilt kernel or one built from source, its modules and command line.

use std::path::{Path, PathBuf};

use super::spanned::Spanned;

use super::checks::{choice, existing_dir, existing_file};
use super::{Ctx, Named, ProfileError};
use crate::arch::Arch;
use crate::digest::Sha256;

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawKernel {
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
    /// What only an x86-64 build adds or changes: more fragments, the format, the command line.
    #[serde(default, rename = "x86_64")]
    pub x86_64: Option<RawKernelArch>,
    /// What only an aarch64 build adds or changes: more fragments, the format, the command line.
    #[serde(default)]
    pub aarch64: Option<RawKernelArch>,
}

/// `[kernel.<arch>]`: fragments appended to `[kernel] fragments`; a prebuilt kernel (and its
/// config), a format and a command line that replace `[kernel]`'s.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawKernelArch {
    /// A prebuilt kernel for this architecture (and its `.config`), in place of `[kernel]`'s.
    #[serde(default)]
    pub prebuilt: Option<Spanned<String>>,
    #[serde(default)]
    pub config: Option<Spanned<String>>,
    #[serde(default)]
    pub fragments: Vec<Spanned<String>>,
    #[serde(default)]
    pub format: Option<Spanned<String>>,
    #[serde(default)]
    pub cmdline: Option<Spanned<String>>,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawKernelSource {
    pub tarball: String,
    #[serde(default)]
    pub sha256: Option<String>,
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

impl KernelOrigin {
    /// Which of the two it is, as the manifest records it.
    pub fn kind(&self) -> KernelOriginKind {
        match self {
            KernelOrigin::Prebuilt { .. } => KernelOriginKind::Prebuilt,
            KernelOrigin::Source(_) => KernelOriginKind::Source,
        }
    }
}

/// Where an image's kernel came from, without the details (`[kernel] prebuilt` or `source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelOriginKind {
    Prebuilt,
    Source,
}

impl Named for KernelOriginKind {
    const ALL: &'static [(&'static str, Self)] = &[
        ("prebuilt", KernelOriginKind::Prebuilt),
        ("source", KernelOriginKind::Source),
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSourceSpec {
    pub tarball: PathBuf,
    /// Pinned sha256 of the tarball, if the profile pins it.
    pub sha256: Option<Sha256>,
    /// The Kconfig target the config starts from.
    pub base: KernelBase,
    /// Config fragments, merged in order on top of the base.
    pub fragments: Vec<PathBuf>,
    pub format: KernelFormat,
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
    /// arm64's boot image (`arch/arm64/boot/Image`): uncompressed, loaded by QEMU at the
    /// offset its header names.
    Image,
}

impl Named for KernelFormat {
    const ALL: &'static [(&'static str, Self)] = &[
        ("bzImage", KernelFormat::BzImage),
        ("vmlinux", KernelFormat::Vmlinux),
        ("Image", KernelFormat::Image),
    ];
}

impl KernelFormat {
    /// The architecture whose boot protocol the format is.
    pub fn arch(self) -> Arch {
        match self {
            KernelFormat::BzImage | KernelFormat::Vmlinux => Arch::X86_64,
            KernelFormat::Image => Arch::Aarch64,
        }
    }

    /// What a kernel for `arch` is built as when the profile does not say.
    pub fn default_for(arch: Arch) -> KernelFormat {
        match arch {
            Arch::X86_64 => KernelFormat::BzImage,
            Arch::Aarch64 => KernelFormat::Image,
        }
    }
}

/// `[kernel]`, with `[kernel.<arch>]` for `arch` merged in (the other architectures' parts are
/// checked, not used).
pub(super) fn validate_kernel(
    cx: &Ctx,
    mut k: RawKernel,
    dir: &Path,
    arch: Arch,
) -> Result<Kernel, ProfileError> {
    let mut cmdline_key = "kernel.cmdline".to_owned();
    let mut format_key = "kernel.format".to_owned();
    for a in Arch::ALL {
        let part = match a {
            Arch::X86_64 => k.x86_64.take(),
            Arch::Aarch64 => k.aarch64.take(),
        };
        let Some(part) = part else { continue };
        let section = format!("kernel.{}", a.name());
        if *a != arch {
            for (i, f) in part.fragments.iter().enumerate() {
                existing_file(cx, dir, f, &format!("{section}.fragments[{i}]"))?;
            }
            for (key, f) in [("prebuilt", &part.prebuilt), ("config", &part.config)] {
                if let Some(f) = f {
                    existing_file(cx, dir, f, &format!("{section}.{key}"))?;
                }
            }
            continue;
        }
        if let Some(p) = part.prebuilt {
            if let Some(src) = &k.source {
                return Err(cx.at(
                    src.span(),
                    "kernel.source",
                    format!("{section}.prebuilt replaces a prebuilt kernel, not one built from source: move kernel.source under the other architecture's section, or drop {section}.prebuilt"),
                ));
            }
            k.prebuilt = Some(p);
            k.config = part.config;
        } else if let Some(c) = part.config {
            return Err(cx.at(
                c.span(),
                format!("{section}.config"),
                format!("goes with {section}.prebuilt"),
            ));
        }
        k.fragments.extend(part.fragments);
        if part.format.is_some() {
            k.format = part.format;
            format_key = format!("{section}.format");
        }
        if part.cmdline.is_some() {
            k.cmdline = part.cmdline;
            cmdline_key = format!("{section}.cmdline");
        }
    }
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
        (Some(p), None) => prebuilt_kernel(cx, &k, p, dir)?,
        (None, Some(src)) => kernel_from_source(cx, &k, src, dir, arch, &format_key)?,
    };
    let modules_dir = k
        .modules_dir
        .as_ref()
        .map(|m| existing_dir(cx, dir, m, "kernel.modules-dir"))
        .transpose()?;
    Ok(Kernel {
        origin,
        modules: kernel_modules(cx, &k.modules, modules_dir.is_some())?,
        modules_dir,
        cmdline: kernel_cmdline(cx, k.cmdline, arch, &cmdline_key)?,
    })
}

fn prebuilt_kernel(
    cx: &Ctx,
    k: &RawKernel,
    image: &Spanned<String>,
    dir: &Path,
) -> Result<KernelOrigin, ProfileError> {
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
    Ok(KernelOrigin::Prebuilt {
        image: existing_file(cx, dir, image, "kernel.prebuilt")?,
        config: k
            .config
            .as_ref()
            .map(|c| existing_file(cx, dir, c, "kernel.config"))
            .transpose()?,
    })
}

fn kernel_from_source(
    cx: &Ctx,
    k: &RawKernel,
    src: &Spanned<RawKernelSource>,
    dir: &Path,
    arch: Arch,
    format_key: &str,
) -> Result<KernelOrigin, ProfileError> {
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
    // Either case is accepted here (people paste digests), and stored as the digest it names.
    let sha256 = raw_src
        .sha256
        .as_ref()
        .map(|h| {
            Sha256::parse(&h.to_ascii_lowercase()).map_err(|_| {
                cx.at(
                    span.clone(),
                    "kernel.source.sha256",
                    "must be 64 hex digits",
                )
            })
        })
        .transpose()?;
    let mut fragments = Vec::new();
    for (i, f) in k.fragments.iter().enumerate() {
        fragments.push(existing_file(
            cx,
            dir,
            f,
            &format!("kernel.fragments[{i}]"),
        )?);
    }
    Ok(KernelOrigin::Source(KernelSourceSpec {
        tarball,
        sha256,
        base: choice(cx, k.base.as_ref(), "kernel.base")?,
        fragments,
        format: kernel_format(cx, k.format.as_ref(), arch, format_key)?,
    }))
}

/// The format asked for (or the architecture's default), refused if it is another
/// architecture's boot protocol.
fn kernel_format(
    cx: &Ctx,
    v: Option<&Spanned<String>>,
    arch: Arch,
    key: &str,
) -> Result<KernelFormat, ProfileError> {
    let Some(v) = v else {
        return Ok(KernelFormat::default_for(arch));
    };
    let f: KernelFormat = choice(cx, Some(v), key)?;
    if f.arch() != arch {
        return Err(cx.at(
            v.span(),
            key,
            format!(
                "\"{f}\" boots {} only; an {} kernel is built as \"{}\" (set it under [kernel.{}], and this one under [kernel.{}])",
                f.arch().name(),
                arch.name(),
                KernelFormat::default_for(arch),
                arch.name(),
                f.arch().name()
            ),
        ));
    }
    Ok(f)
}

fn kernel_modules(
    cx: &Ctx,
    list: &[Spanned<String>],
    have_dir: bool,
) -> Result<Vec<String>, ProfileError> {
    let mut modules = Vec::new();
    for (i, m) in list.iter().enumerate() {
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
        if !have_dir {
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
    Ok(modules)
}

fn kernel_cmdline(
    cx: &Ctx,
    c: Option<Spanned<String>>,
    arch: Arch,
    key: &str,
) -> Result<String, ProfileError> {
    match c {
        Some(c) if c.get_ref().contains(['\n', '\0']) || c.get_ref().len() > 2048 => {
            Err(cx.at(c.span(), key, "must be one line of at most 2048 bytes"))
        }
        Some(c) => {
            // Another architecture's serial port: the kernel would print nowhere.
            for other in Arch::ALL.iter().filter(|a| **a != arch) {
                let theirs = format!("console={}", other.serial_console());
                if c.get_ref()
                    .split_whitespace()
                    .any(|w| w == theirs || w.starts_with(&format!("{theirs},")))
                {
                    return Err(cx.at(
                        c.span(),
                        key,
                        format!(
                            "{theirs} is {}'s serial console; an {} kernel's is console={} (give each architecture its command line under [kernel.<arch>] cmdline)",
                            other.name(),
                            arch.name(),
                            arch.serial_console()
                        ),
                    ));
                }
            }
            Ok(c.into_inner())
        }
        None => Ok(format!("console={}", arch.serial_console())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::{Fixture, BASE};
    use crate::profile::Profile;

    #[test]
    fn kernel_from_source() {
        let f = Fixture::new();
        std::fs::write(f.dir.path().join("linux.tar.xz"), b"x").unwrap();
        std::fs::write(f.dir.path().join("a.config"), b"CONFIG_A=y\n").unwrap();
        let text = BASE.replace(
            "prebuilt = \"vmlinuz\"",
            "source = { tarball = \"linux.tar.xz\" }\nfragments = [\"a.config\"]\nformat = \"vmlinux\"",
        );
        let p = f.parse(&text).unwrap();
        let KernelOrigin::Source(s) = p.kernel.origin else {
            panic!()
        };
        assert_eq!(s.base, KernelBase::Tinyconfig);
        assert_eq!(s.format, KernelFormat::Vmlinux);
        assert_eq!(s.fragments, [f.dir.path().join("a.config")]);
        let e = f.err(&BASE.replace(
            "prebuilt = \"vmlinuz\"",
            "prebuilt = \"vmlinuz\"\nsource = { tarball = \"linux.tar.xz\" }",
        ));
        assert!(e.contains("not both"), "{e}");
        let e = f.err(&text.replace("format = \"vmlinux\"", "format = \"zImage\""));
        assert!(e.contains("kernel.format"), "{e}");
        let e = f.err(&text.replace("a.config", "missing.config"));
        assert!(e.contains("kernel.fragments[0]"), "{e}");
    }

    #[test]
    fn a_pinned_source_digest_is_any_case_and_64_hex_digits() {
        let f = Fixture::new();
        std::fs::write(f.dir.path().join("linux.tar.xz"), b"x").unwrap();
        let digest = crate::digest::Sha256::of(b"x");
        let with = |sha: &str| {
            BASE.replace(
                "prebuilt = \"vmlinuz\"",
                &format!("source = {{ tarball = \"linux.tar.xz\", sha256 = \"{sha}\" }}"),
            )
        };
        let p = f.parse(&with(&digest.hex().to_uppercase())).unwrap();
        let KernelOrigin::Source(s) = p.kernel.origin else {
            panic!()
        };
        assert_eq!(s.sha256, Some(digest));
        let e = f.err(&with(&digest.short(63)));
        assert!(
            e.contains("kernel.source.sha256: must be 64 hex digits"),
            "{e}"
        );
    }

    /// A source kernel for two architectures: what each build gets, and what is refused.
    #[test]
    fn per_architecture_parts_merge_into_that_architecture_s_build() {
        let f = Fixture::new();
        for n in ["linux.tar.xz", "common.config", "x86.config", "arm.config"] {
            std::fs::write(f.dir.path().join(n), b"CONFIG_A=y\n").unwrap();
        }
        let text = BASE
            .replace(
                "source-date-epoch = 1700000000",
                "source-date-epoch = 1700000000\narch = [\"x86_64\", \"aarch64\"]",
            )
            .replace(
                "prebuilt = \"vmlinuz\"",
                "source = { tarball = \"linux.tar.xz\" }\nfragments = [\"common.config\"]\n\
                 [kernel.x86_64]\nfragments = [\"x86.config\"]\nformat = \"vmlinux\"\ncmdline = \"console=ttyS0 quiet\"\n\
                 [kernel.aarch64]\nfragments = [\"arm.config\"]\ncmdline = \"console=ttyAMA0 quiet\"",
            );
        let parse = |arch| Profile::parse_for(&text, Path::new("p.toml"), f.dir.path(), None, arch);
        let spec = |p: &Profile| match &p.kernel.origin {
            KernelOrigin::Source(s) => s.clone(),
            KernelOrigin::Prebuilt { .. } => panic!(),
        };
        // The default is the first listed.
        let x = parse(None).unwrap();
        assert_eq!(x.image.arch, Arch::X86_64);
        assert_eq!(x.image.arches, [Arch::X86_64, Arch::Aarch64]);
        assert_eq!(spec(&x).format, KernelFormat::Vmlinux);
        assert_eq!(
            spec(&x).fragments,
            [
                f.dir.path().join("common.config"),
                f.dir.path().join("x86.config")
            ]
        );
        assert_eq!(x.kernel.cmdline, "console=ttyS0 quiet");
        let a = parse(Some(Arch::Aarch64)).unwrap();
        assert_eq!(a.image.arch, Arch::Aarch64);
        assert_eq!(spec(&a).format, KernelFormat::Image);
        assert_eq!(
            spec(&a).fragments,
            [
                f.dir.path().join("common.config"),
                f.dir.path().join("arm.config")
            ]
        );
        assert_eq!(a.kernel.cmdline, "console=ttyAMA0 quiet");
        // The lock is per architecture.
        let lock = |p: &Profile| p.packages.as_ref().map(|k| k.lock.clone());
        assert_eq!(lock(&a), None);

        // For aarch64, the error a variant of the profile gets.
        let arm_err = |t: &str| {
            Profile::parse_for(
                t,
                Path::new("p.toml"),
                f.dir.path(),
                None,
                Some(Arch::Aarch64),
            )
            .unwrap_err()
            .to_string()
        };
        // An architecture the profile does not list.
        let e = arm_err(&text.replace("arch = [\"x86_64\", \"aarch64\"]", "arch = \"x86_64\""));
        assert!(
            e.contains("image.arch") && e.contains("x86_64 only, not aarch64"),
            "{e}"
        );
        // Another architecture's format or console.
        let e = arm_err(&text.replace(
            "cmdline = \"console=ttyAMA0 quiet\"",
            "format = \"vmlinux\"",
        ));
        assert!(
            e.contains("kernel.aarch64.format") && e.contains("\"Image\""),
            "{e}"
        );
        let e = arm_err(&text.replace("console=ttyAMA0 quiet", "console=ttyS0"));
        assert!(
            e.contains("kernel.aarch64.cmdline") && e.contains("console=ttyAMA0"),
            "{e}"
        );
        // A missing fragment of the other architecture is still an error.
        let e = f.err(&text.replace("\"arm.config\"", "\"gone.config\""));
        assert!(e.contains("kernel.aarch64.fragments[0]"), "{e}");
        // An unknown architecture.
        let e = f.err(&text.replace("\"aarch64\"]", "\"riscv64\"]"));
        assert!(e.contains("\"riscv64\" is not an architecture"), "{e}");
    }

    #[test]
    fn an_aarch64_build_reads_its_own_lock() {
        use crate::profile::packages::lock_for_arch;
        let p = Path::new("/p/python-fn.lock");
        assert_eq!(lock_for_arch(p, Arch::X86_64), p);
        assert_eq!(
            lock_for_arch(p, Arch::Aarch64),
            Path::new("/p/python-fn.aarch64.lock")
        );
    }

    #[test]
    fn a_prebuilt_kernel_per_architecture() {
        let f = Fixture::new();
        std::fs::write(f.dir.path().join("Image"), b"k").unwrap();
        let text = BASE
            .replace(
                "source-date-epoch = 1700000000",
                "source-date-epoch = 1700000000\narch = [\"x86_64\", \"aarch64\"]",
            )
            .replace(
                "[init]",
                "[kernel.aarch64]\nprebuilt = \"Image\"\ncmdline = \"console=ttyAMA0\"\n[init]",
            );
        let image =
            |arch| match Profile::parse_for(&text, Path::new("p.toml"), f.dir.path(), None, arch)
                .unwrap()
                .kernel
                .origin
            {
                KernelOrigin::Prebuilt { image, .. } => image,
                KernelOrigin::Source(_) => panic!(),
            };
        assert_eq!(image(None), f.dir.path().join("vmlinuz"));
        assert_eq!(image(Some(Arch::Aarch64)), f.dir.path().join("Image"));
        let e = f.err(&text.replace("prebuilt = \"Image\"", "prebuilt = \"gone\""));
        assert!(e.contains("kernel.aarch64.prebuilt"), "{e}");
    }
}
