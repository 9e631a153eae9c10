//! Checks shared by the section validators: numbers, sizes, ids, names, paths, choices.

use std::path::{Path, PathBuf};

use super::spanned::Spanned;

use super::{Ctx, Named, ProfileError};
use crate::rootfs::ImagePath;

/// A size or a mode: a TOML integer or a string (`"64M"`, `"0755"`).
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(super) enum IntOrString {
    Int(i64),
    Str(String),
}

pub(super) fn positive_ms(cx: &Ctx, v: &Spanned<i64>, key: &str) -> Result<u64, ProfileError> {
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

pub(super) fn bytes_value(
    cx: &Ctx,
    v: &Spanned<IntOrString>,
    key: &str,
) -> Result<u64, ProfileError> {
    match (v.get_ref(), parse_size_bytes(v.get_ref())) {
        (_, Some(b)) => Ok(b),
        _ => Err(cx.at(
            v.span(),
            key,
            "must be bytes or a size like \"256M\" or \"1G\"",
        )),
    }
}

pub(super) fn parse_size_bytes(v: &IntOrString) -> Option<u64> {
    match v {
        IntOrString::Int(i) => u64::try_from(*i).ok().filter(|&b| b >= 4096),
        IntOrString::Str(s) => match parse_size(s)? {
            ZramSize::Bytes(b) => Some(b),
            ZramSize::PercentOfRam(_) => None,
        },
    }
}

pub(super) fn id(cx: &Ctx, v: Option<&Spanned<i64>>, key: &str) -> Result<u32, ProfileError> {
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

pub(super) fn image_path(
    cx: &Ctx,
    s: &Spanned<String>,
    key: &str,
) -> Result<ImagePath, ProfileError> {
    ImagePath::parse(s.get_ref()).map_err(|e| cx.at(s.span(), key, e.to_string()))
}

pub(super) fn resolve(dir: &Path, s: &str) -> PathBuf {
    let p = Path::new(s);
    if p.is_absolute() {
        p.to_owned()
    } else {
        dir.join(p)
    }
}

/// What the profile's path `s` (relative to its directory) is on the host, following links.
fn host_metadata(
    cx: &Ctx,
    dir: &Path,
    s: &Spanned<String>,
    key: &str,
) -> Result<(PathBuf, std::fs::Metadata), ProfileError> {
    let path = resolve(dir, s.get_ref());
    match std::fs::metadata(&path) {
        Ok(m) => Ok((path, m)),
        Err(e) => Err(cx.at(
            s.span(),
            key,
            format!(
                "{} does not exist or cannot be read ({e}); paths are relative to the profile's directory",
                path.display()
            ),
        )),
    }
}

pub(super) fn existing_file(
    cx: &Ctx,
    dir: &Path,
    s: &Spanned<String>,
    key: &str,
) -> Result<PathBuf, ProfileError> {
    let (path, m) = host_metadata(cx, dir, s, key)?;
    if m.is_file() {
        return Ok(path);
    }
    Err(cx.at(
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
    ))
}

pub(super) fn existing_dir(
    cx: &Ctx,
    dir: &Path,
    s: &Spanned<String>,
    key: &str,
) -> Result<PathBuf, ProfileError> {
    let (path, m) = host_metadata(cx, dir, s, key)?;
    if m.is_dir() {
        return Ok(path);
    }
    Err(cx.at(
        s.span(),
        key,
        format!("{} is not a directory", path.display()),
    ))
}

/// `uid` and `gid` of an entry (default 0).
pub(super) fn owner(
    cx: &Ctx,
    uid: Option<&Spanned<i64>>,
    gid: Option<&Spanned<i64>>,
    key: &str,
) -> Result<(u32, u32), ProfileError> {
    Ok((
        id(cx, uid, &format!("{key}.uid"))?,
        id(cx, gid, &format!("{key}.gid"))?,
    ))
}

pub(super) fn parse_mode(
    cx: &Ctx,
    m: &Spanned<IntOrString>,
    key: &str,
) -> Result<u32, ProfileError> {
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

/// A size as written: bytes, or a share of the RAM (which only `[zram] size` accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZramSize {
    Bytes(u64),
    PercentOfRam(u32),
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

/// One of a fixed set of words (an enum's [`Named::ALL`]); `None` gives the default (the first).
/// The error lists what is allowed.
pub(super) fn choice<T: Named>(
    cx: &Ctx,
    v: Option<&Spanned<String>>,
    key: &str,
) -> Result<T, ProfileError> {
    let Some(v) = v else {
        return Ok(T::ALL[0].1);
    };
    T::from_name(v.get_ref()).ok_or_else(|| {
        cx.at(
            v.span(),
            key,
            format!(
                "{:?} is not allowed here; use {}",
                v.get_ref(),
                T::allowed()
            ),
        )
    })
}

/// A compiled function's `output` (`[runtime.go]`, `[runtime.cargo]`): an image path, the one
/// `[init] argv` runs.
pub(super) fn compiled_output(
    cx: &Ctx,
    output: &Spanned<String>,
    key: &str,
    argv0: &str,
) -> Result<ImagePath, ProfileError> {
    let path = image_path(cx, output, key)?;
    if path.to_string() != argv0 {
        return Err(cx.at(
            output.span(),
            key,
            format!(
                "the binary goes to {path} but [init] argv starts {argv0:?}: make argv[0] the binary's path"
            ),
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Some(ZramSize::Bytes(512 << 20)));
        assert_eq!(parse_size("1G"), Some(ZramSize::Bytes(1 << 30)));
        assert_eq!(parse_size("8192"), Some(ZramSize::Bytes(8192)));
        assert_eq!(parse_size("25%"), Some(ZramSize::PercentOfRam(25)));
        assert_eq!(parse_size("0%"), None);
        assert_eq!(parse_size("12X"), None);
        assert_eq!(parse_size("100"), None);
    }
}
