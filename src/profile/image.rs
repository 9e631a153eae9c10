//! `[image]`: the image's name, version, build epoch, hostname, size limits, root format and
//! verity salt.

use super::spanned::Spanned;

use super::checks::{bytes_value, choice, IntOrString};
use super::{Ctx, Named, ProfileError};
use crate::arch::Arch;
use crate::archive::verity;
use crate::rootfs::ExpandLimits;

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawImage {
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
    /// With root = "erofs": the dm-verity salt, 64 lowercase hex digits (32 bytes). Default: sha256 of
    /// "stratos-verity-salt\0" and the image name. It is public (in the signed kernel command
    /// line) and stays the same from one version to the next.
    #[serde(default)]
    pub verity_salt: Option<Spanned<String>>,
    /// The architecture: "x86_64" (default) or "aarch64"; or a list of those the profile builds
    /// for, the first the default (`stratos build --arch` picks another).
    #[serde(default)]
    pub arch: Option<Spanned<RawArch>>,
}

/// `[image] arch`: one architecture or a list.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(super) enum RawArch {
    One(String),
    Several(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub name: String,
    pub version: String,
    pub source_date_epoch: u64,
    pub hostname: String,
    /// What the contents may expand to (`max-file-size`, `max-package-size`, `max-image-size`).
    pub limits: ExpandLimits,
    /// The root filesystem the kernel boots.
    pub root: RootFormat,
    /// The salt of the dm-verity tree (with an EROFS root): `verity-salt`, else derived from the
    /// name, so it does not change with the image's contents.
    pub verity_salt: [u8; verity::SALT_LEN],
    /// The architecture this build is for: `--arch`, else the first of `[image] arch`.
    pub arch: Arch,
    /// Every architecture the profile builds for (`[image] arch`), the default first.
    pub arches: Vec<Arch>,
}

/// `[image] root`: how the kernel gets its root filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootFormat {
    /// An initramfs the kernel unpacks into RAM (for VMMs without block devices).
    Initramfs,
    /// A read-only EROFS image on a virtio block device, checked block by block by dm-verity.
    Erofs,
}

impl Named for RootFormat {
    const ALL: &'static [(&'static str, Self)] = &[
        ("initramfs", RootFormat::Initramfs),
        ("erofs", RootFormat::Erofs),
    ];
}

/// `[image]`.
pub(super) fn validate_image(
    cx: &Ctx,
    img: RawImage,
    env_epoch: Option<&str>,
) -> Result<Image, ProfileError> {
    let name = image_name(cx, &img.name)?;
    let (arch, arches) = image_arch(cx, img.arch.as_ref())?;
    let root = choice(cx, img.root.as_ref(), "image.root")?;
    Ok(Image {
        arch,
        arches,
        version: image_version(cx, &img.version)?,
        source_date_epoch: source_date_epoch(cx, img.source_date_epoch.as_ref(), env_epoch)?,
        hostname: hostname(cx, img.hostname.as_ref(), &name)?,
        limits: expand_limits(cx, &img)?,
        verity_salt: verity_salt(cx, img.verity_salt.as_ref(), root, &name)?,
        root,
        name,
    })
}

/// `verity-salt` (64 hex digits, only with an EROFS root), else the name's salt.
fn verity_salt(
    cx: &Ctx,
    salt: Option<&Spanned<String>>,
    root: RootFormat,
    name: &str,
) -> Result<[u8; verity::SALT_LEN], ProfileError> {
    let Some(salt) = salt else {
        return Ok(verity::name_salt(name));
    };
    if root != RootFormat::Erofs {
        return Err(cx.at(
            salt.span(),
            "image.verity-salt",
            "only an EROFS root has a dm-verity tree: add root = \"erofs\" or remove verity-salt",
        ));
    }
    let s = salt.get_ref();
    let mut out = [0u8; verity::SALT_LEN];
    if s.len() != 2 * verity::SALT_LEN
        || !s
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        || hex::decode_to_slice(s, &mut out).is_err()
    {
        return Err(cx.at(
            salt.span(),
            "image.verity-salt",
            format!(
                "{s:?} is not a salt: use exactly 64 lowercase hex digits (32 bytes), e.g. the output of `openssl rand -hex 32`, or remove the key to derive it from the image name"
            ),
        ));
    }
    Ok(out)
}

/// `[image] arch` and the architecture asked for (`cx.arch`): the one built and every one allowed.
fn image_arch(cx: &Ctx, raw: Option<&Spanned<RawArch>>) -> Result<(Arch, Vec<Arch>), ProfileError> {
    let words: Vec<&str> = match raw.map(Spanned::get_ref) {
        None => vec![Arch::default().name()],
        Some(RawArch::One(w)) => vec![w.as_str()],
        Some(RawArch::Several(ws)) => ws.iter().map(String::as_str).collect(),
    };
    let span = raw.map_or(0..0, Spanned::span);
    if words.is_empty() {
        return Err(cx.at(
            span,
            "image.arch",
            "lists no architecture; use \"x86_64\", \"aarch64\" or both",
        ));
    }
    let mut arches = Vec::new();
    for w in words {
        let a = Arch::parse(w).ok_or_else(|| {
            cx.at(
                span.clone(),
                "image.arch",
                format!(
                    "{w:?} is not an architecture StratOS builds; use {}",
                    Arch::allowed()
                ),
            )
        })?;
        if arches.contains(&a) {
            return Err(cx.at(span, "image.arch", format!("{} is listed twice", a.name())));
        }
        arches.push(a);
    }
    let arch = match cx.arch {
        None => arches[0],
        Some(want) if arches.contains(&want) => want,
        Some(want) => {
            let listed: Vec<&str> = arches.iter().map(|a| a.name()).collect();
            return Err(cx.at(
                span,
                "image.arch",
                format!(
                    "this profile builds for {} only, not {}: add \"{}\" to [image] arch (with its kernel parts under [kernel.{}]) to build it for {}",
                    listed.join(" and "),
                    want.name(),
                    want.name(),
                    want.name(),
                    want.name()
                ),
            ));
        }
    };
    Ok((arch, arches))
}

fn image_name(cx: &Ctx, name: &Spanned<String>) -> Result<String, ProfileError> {
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
    Ok(name.get_ref().clone())
}

/// Whether `s` may name an image: 1-64 of a-z, 0-9, `.`, `_`, `-`, starting with a letter or digit.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

fn image_version(cx: &Ctx, version: &Spanned<String>) -> Result<String, ProfileError> {
    let v = version.get_ref();
    if v.is_empty()
        || v.len() > 128
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-~".contains(c))
    {
        return Err(cx.at(
            version.span(),
            "image.version",
            format!(
                "{v:?} is not a valid version: use 1-128 of A-Z, a-z, 0-9, '.', '_', '+', '-', '~'"
            ),
        ));
    }
    Ok(v.clone())
}

/// The profile's, else `$SOURCE_DATE_EPOCH`, else 0.
fn source_date_epoch(
    cx: &Ctx,
    e: Option<&Spanned<i64>>,
    env_epoch: Option<&str>,
) -> Result<u64, ProfileError> {
    match (e, env_epoch) {
        (Some(e), _) => u64::try_from(*e.get_ref()).map_err(|_| {
            cx.at(
                e.span(),
                "image.source-date-epoch",
                "must be a non-negative number of seconds",
            )
        }),
        (None, Some(s)) => s.trim().parse::<u64>().map_err(|_| {
            cx.at(
                0..0,
                "image.source-date-epoch",
                format!(
                    "the profile sets none and $SOURCE_DATE_EPOCH={s:?} is not a number of seconds"
                ),
            )
        }),
        (None, None) => Ok(0),
    }
}

/// The profile's, else the image name with `.` and `_` as `-`.
fn hostname(cx: &Ctx, h: Option<&Spanned<String>>, name: &str) -> Result<String, ProfileError> {
    match h {
        None => Ok(name.replace(['.', '_'], "-")),
        Some(h) if is_hostname(h.get_ref()) => Ok(h.get_ref().clone()),
        Some(h) => Err(cx.at(
            h.span(),
            "image.hostname",
            format!(
                "{:?} is not a valid hostname (1-63 of a-z, 0-9, '-')",
                h.get_ref()
            ),
        )),
    }
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// `max-file-size`, `max-package-size`, `max-image-size` over the defaults.
fn expand_limits(cx: &Ctx, img: &RawImage) -> Result<ExpandLimits, ProfileError> {
    let mut expand = ExpandLimits::default();
    for (v, key, slot) in [
        (&img.max_file_size, "image.max-file-size", &mut expand.file),
        (
            &img.max_package_size,
            "image.max-package-size",
            &mut expand.package,
        ),
        (
            &img.max_image_size,
            "image.max-image-size",
            &mut expand.image,
        ),
    ] {
        if let Some(v) = v {
            *slot = bytes_value(cx, v, key)?;
        }
    }
    Ok(expand)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::profile::tests::{Fixture, BASE};
    use crate::profile::Profile;

    #[test]
    fn epoch_from_environment() {
        let f = Fixture::new();
        let text = BASE.replace("source-date-epoch = 1700000000\n", "");
        let p = Profile::parse(&text, Path::new("p.toml"), f.dir.path(), Some("42")).unwrap();
        assert_eq!(p.image.source_date_epoch, 42);
        let p = Profile::parse(&text, Path::new("p.toml"), f.dir.path(), None).unwrap();
        assert_eq!(p.image.source_date_epoch, 0);
    }

    #[test]
    fn verity_salt_from_the_name_or_declared() {
        let f = Fixture::new();
        let p = f.parse(BASE).unwrap();
        assert_eq!(
            p.image.verity_salt,
            crate::archive::verity::name_salt("hello")
        );
        let salt = "0123456789abcdef".repeat(4);
        let text = BASE.replace(
            "[kernel]",
            &format!("root = \"erofs\"\nverity-salt = \"{salt}\"\n[kernel]"),
        );
        let p = f.parse(&text).unwrap();
        assert_eq!(hex::encode(p.image.verity_salt), salt);
    }

    #[test]
    fn bad_verity_salt() {
        let f = Fixture::new();
        for bad in [
            "abc",
            &"0".repeat(63),
            &"0".repeat(66),
            &"AB".repeat(32),
            &"g0".repeat(32),
        ] {
            let e = f.err(&BASE.replace(
                "[kernel]",
                &format!("root = \"erofs\"\nverity-salt = \"{bad}\"\n[kernel]"),
            ));
            assert!(
                e.starts_with("p.toml:7:15: image.verity-salt: "),
                "{bad}: {e}"
            );
            assert!(e.contains("64 lowercase hex digits"), "{bad}: {e}");
        }
        let e = f.err(&BASE.replace(
            "[kernel]",
            &format!("verity-salt = \"{}\"\n[kernel]", "00".repeat(32)),
        ));
        assert!(e.contains("image.verity-salt: only an EROFS root"), "{e}");
    }

    #[test]
    fn bad_name() {
        let f = Fixture::new();
        let e = f.err(&BASE.replace("hello", "Hello World"));
        assert!(e.contains("image.name"), "{e}");
    }
}
