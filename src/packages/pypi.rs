//! Python dependencies: a hash-pinned `requirements.txt` (what `pip-compile --generate-hashes`
//! and `uv pip compile --generate-hashes` write), wheels only, fetched into the cache once and
//! installed into the image's `dist-packages` without running any of their code: every member
//! checked against the wheel's `RECORD`, nothing outside the install scheme.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sha2::Digest;

use super::zip::{Zip, ZipError};
use crate::rootfs::{Budget, Entry, ImagePath, Origin, Tree};
use crate::sbom::{prop, ComponentSpec};
use crate::sign::sha256_hex;

#[derive(Debug, thiserror::Error)]
pub enum PypiError {
    #[error("{file}:{line}: {why}")]
    Requirements {
        file: PathBuf,
        line: usize,
        why: String,
    },
    #[error("{file}: {why}")]
    File { file: PathBuf, why: String },
    #[error("{name} {version}: {why}")]
    Wheel {
        name: String,
        version: String,
        why: String,
    },
    #[error("{name} {version}: no wheel pinned by {file} is in the cache ({cache}) and --offline forbids downloading; run the build once without --offline (or ci/setup)")]
    Offline {
        name: String,
        version: String,
        file: PathBuf,
        cache: PathBuf,
    },
    #[error("{name} {version}: {why}")]
    Fetch {
        name: String,
        version: String,
        why: String,
    },
    #[error(transparent)]
    Zip(#[from] ZipError),
}

impl PypiError {
    /// A failure of the machine or the network, not of the input.
    pub fn is_environment(&self) -> bool {
        matches!(self, Self::Fetch { .. })
    }
}

/// One pinned requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// As written.
    pub name: String,
    pub version: String,
    /// Allowed sha256 digests (hex, lower case) of the files that may be installed.
    pub hashes: BTreeSet<String>,
    pub line: usize,
}

impl Requirement {
    /// PEP 503 normal form: lower case, runs of `-_.` as one `-`.
    pub fn normalized(&self) -> String {
        normalize(&self.name)
    }
}

pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

fn is_project_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 200
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Parses a requirements file: every requirement `name==version` with at least one
/// `--hash=sha256:…`; comments and blank lines; `\` continues a line. Anything else (ranges,
/// markers, URLs, editable installs, options, other files) is an error naming the line.
pub fn parse_requirements(text: &str, file: &Path) -> Result<Vec<Requirement>, PypiError> {
    let err = |line: usize, why: String| PypiError::Requirements {
        file: file.to_owned(),
        line,
        why,
    };
    // Logical lines: (first physical line number, text).
    let mut logical: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        // A comment starts at a '#' at the start or after whitespace.
        let mut body = raw;
        for (at, _) in raw.match_indices('#') {
            if at == 0 || raw[..at].ends_with(char::is_whitespace) {
                body = &raw[..at];
                break;
            }
        }
        let (body, continued) = match body.trim_end().strip_suffix('\\') {
            Some(b) => (b, true),
            None => (body, false),
        };
        let (start, mut acc) = pending.take().unwrap_or((n, String::new()));
        acc.push(' ');
        acc.push_str(body);
        if continued {
            pending = Some((start, acc));
        } else if !acc.trim().is_empty() {
            logical.push((start, acc));
        }
    }
    if let Some((start, acc)) = pending {
        if !acc.trim().is_empty() {
            logical.push((start, acc));
        }
    }
    let mut out: Vec<Requirement> = Vec::new();
    for (line, text) in logical {
        let mut tokens = text.split_whitespace().peekable();
        let first = tokens.next().expect("non-empty line");
        if first.starts_with('-') {
            return Err(err(
                line,
                format!("option {first:?}: StratOS reads only pinned requirements (`name==version --hash=sha256:…`); indexes, constraints and other files are not followed (pip-compile's header options can go: the build fetches from PyPI's simple API)"),
            ));
        }
        // `name==version`, tolerating spaces around `==`.
        let mut spec = first.to_owned();
        while let Some(t) = tokens.peek() {
            if t.starts_with("--") {
                break;
            }
            spec.push_str(tokens.next().unwrap());
        }
        if spec.contains(';') {
            return Err(err(line, format!("{spec:?}: environment markers are not supported; compile the requirements for the image's platform (Linux x86-64, the image's Python) so every line applies")));
        }
        if spec.contains('@') || spec.contains("://") {
            return Err(err(line, format!("{spec:?}: a direct URL; pin the package from the index with name==version and its hashes")));
        }
        let Some((name_part, version)) = spec.split_once("==") else {
            return Err(err(line, format!("{spec:?} is not pinned: write name==version with its --hash=sha256:… (`pip-compile --generate-hashes` or `uv pip compile --generate-hashes` write exactly that)")));
        };
        let version = version.trim_start_matches('=');
        // Extras select dependencies, which are pinned on their own lines.
        let name = name_part.split('[').next().unwrap_or("");
        if !is_project_name(name) {
            return Err(err(line, format!("{name:?} is not a project name")));
        }
        if version.is_empty()
            || version.contains('*')
            || !version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_' | '!'))
        {
            return Err(err(
                line,
                format!("{spec:?}: an exact version is needed (no wildcards or ranges)"),
            ));
        }
        let mut hashes = BTreeSet::new();
        while let Some(t) = tokens.next() {
            let value = match t.strip_prefix("--hash") {
                Some(rest) if rest.starts_with('=') => rest[1..].to_owned(),
                Some("") => tokens.next().unwrap_or("").to_owned(),
                _ => {
                    return Err(err(
                        line,
                        format!("{t:?}: only --hash=sha256:… may follow a requirement"),
                    ))
                }
            };
            let Some(hex) = value.strip_prefix("sha256:") else {
                return Err(err(
                    line,
                    format!("--hash={value}: only sha256 hashes are accepted"),
                ));
            };
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err(line, format!("--hash=sha256:{hex}: not 64 hex digits")));
            }
            hashes.insert(hex.to_ascii_lowercase());
        }
        if hashes.is_empty() {
            return Err(err(line, format!("{name}=={version} has no --hash: every requirement is pinned by hash (`pip-compile --generate-hashes`), so a changed file on the index cannot slip in")));
        }
        let r = Requirement {
            name: name.to_owned(),
            version: version.to_owned(),
            hashes,
            line,
        };
        if let Some(prev) = out.iter().find(|p| p.normalized() == r.normalized()) {
            return Err(err(
                line,
                format!("{} is already required on line {}", r.name, prev.line),
            ));
        }
        out.push(r);
    }
    Ok(out)
}

/// A wheel file name's parts (`{dist}-{version}(-{build})?-{python}-{abi}-{platform}.whl`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelName {
    pub dist: String,
    pub version: String,
    /// Every (python, abi, platform) the compressed tag set expands to.
    pub tags: Vec<(String, String, String)>,
}

impl WheelName {
    pub fn parse(file: &str) -> Option<WheelName> {
        let stem = file.strip_suffix(".whl")?;
        let parts: Vec<&str> = stem.split('-').collect();
        let (dist, version, py, abi, plat) = match parts.as_slice() {
            [d, v, p, a, pl] | [d, v, _, p, a, pl] => (*d, *v, *p, *a, *pl),
            _ => return None,
        };
        let mut tags = Vec::new();
        for p in py.split('.') {
            for a in abi.split('.') {
                for pl in plat.split('.') {
                    tags.push((p.to_owned(), a.to_owned(), pl.to_owned()));
                }
            }
        }
        Some(WheelName {
            dist: dist.to_owned(),
            version: version.to_owned(),
            tags,
        })
    }
}

/// What the image can run: its Python (major, minor) and glibc (major, minor); `None` when the
/// image has no glibc (then only pure wheels fit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Platform {
    pub python: (u32, u32),
    pub glibc: Option<(u32, u32)>,
}

impl Platform {
    /// How well a tag fits: lower is better; `None` if it does not fit at all.
    fn rank(&self, (py, abi, plat): &(String, String, String)) -> Option<u32> {
        let (maj, min) = self.python;
        let cp = format!("cp{maj}{min}");
        let plat_rank = if plat == "any" {
            Some(1000)
        } else {
            self.glibc.and_then(|g| {
                manylinux(plat)
                    .filter(|m| *m <= g)
                    .map(|m| 100 - m.1.min(99))
            })
        }?;
        let py_minor = |p: &str, prefix: &str| -> Option<u32> {
            let rest = p.strip_prefix(prefix)?;
            if rest == maj.to_string() {
                return Some(99);
            }
            let m: u32 = rest.strip_prefix(&maj.to_string())?.parse().ok()?;
            (m <= min).then_some(m)
        };
        let class = if *py == cp && *abi == cp {
            0
        } else if abi == "abi3" && py_minor(py, "cp").is_some_and(|m| m != 99) {
            1
        } else if abi == "none" && *py == cp {
            2
        } else if abi == "none" && py_minor(py, "py").is_some() {
            3
        } else {
            return None;
        };
        Some(class * 10_000 + plat_rank)
    }

    /// The best rank of any of the wheel's tags.
    pub fn fits(&self, w: &WheelName) -> Option<u32> {
        w.tags.iter().filter_map(|t| self.rank(t)).min()
    }

    /// What fits, for messages.
    pub fn describe(&self) -> String {
        let (maj, min) = self.python;
        match self.glibc {
            Some((a, b)) => format!(
                "cp{maj}{min} (or abi3) for manylinux_{a}_{b}_x86_64 or older, or a pure py3-none-any wheel"
            ),
            None => "a pure py3-none-any wheel (the image has no glibc for compiled ones)".into(),
        }
    }
}

/// The glibc version a manylinux platform tag needs, for x86-64 only.
fn manylinux(plat: &str) -> Option<(u32, u32)> {
    match plat {
        "manylinux1_x86_64" => return Some((2, 5)),
        "manylinux2010_x86_64" => return Some((2, 12)),
        "manylinux2014_x86_64" => return Some((2, 17)),
        _ => {}
    }
    let rest = plat.strip_prefix("manylinux_")?.strip_suffix("_x86_64")?;
    let (a, b) = rest.split_once('_')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Where wheels are kept: `wheels/sha256/<hex>/<file name>`.
pub fn cache_dir() -> PathBuf {
    crate::cache::root().join("wheels/sha256")
}

/// A wheel chosen for a requirement.
pub struct Fetched {
    pub file_name: String,
    pub sha256: String,
    pub bytes: Vec<u8>,
}

/// Finds the requirement's best-fitting wheel among the files its hashes pin: in the cache,
/// in the prefetch directory (`wheels/`; [`super::registry::prefetch_dir`]), or (unless `offline`) on the index. Every byte is checked against
/// the pinned hashes.
pub fn fetch(
    r: &Requirement,
    platform: &Platform,
    file: &Path,
    index: &str,
    offline: bool,
    max_bytes: u64,
) -> Result<Fetched, PypiError> {
    let wheel_err = |why: String| PypiError::Wheel {
        name: r.name.clone(),
        version: r.version.clone(),
        why,
    };
    let read = |p: &Path| {
        crate::fsio::read_regular(p, max_bytes, "a wheel", crate::fsio::Links::Follow).ok()
    };
    // (rank, file name, path) of local files whose content is pinned.
    let mut local: Vec<(Option<u32>, String, Vec<u8>)> = Vec::new();
    for h in &r.hashes {
        for p in super::registry::candidates(&cache_dir().join(h), "") {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_owned();
            if let Some(b) = read(&p).filter(|b| sha256_hex(b) == *h) {
                let rank = WheelName::parse(&name).and_then(|w| platform.fits(&w));
                local.push((rank, name, b));
            }
        }
    }
    // Files of this name and version whose content the requirement does not pin.
    let mut unpinned: Vec<String> = Vec::new();
    let prefix = format!("{}-{}-", r.normalized().replace('-', "_"), r.version);
    for p in super::registry::candidates(&super::registry::prefetch_dir().join("wheels"), &prefix) {
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_owned();
        let Some(b) = read(&p) else { continue };
        let sha = sha256_hex(&b);
        if r.hashes.contains(&sha) {
            let rank = WheelName::parse(&name).and_then(|w| platform.fits(&w));
            local.push((rank, name, b));
        } else {
            unpinned.push(format!("{} (sha256 {sha})", p.display()));
        }
    }
    local.sort_by(|a, b| (a.0.is_none(), a.0, &a.1).cmp(&(b.0.is_none(), b.0, &b.1)));
    if let Some((Some(_), name, bytes)) = local.first() {
        let sha = sha256_hex(bytes);
        let fetched = Fetched {
            file_name: name.clone(),
            sha256: sha.clone(),
            bytes: bytes.clone(),
        };
        store_in_cache(&fetched).map_err(|why| PypiError::Fetch {
            name: r.name.clone(),
            version: r.version.clone(),
            why,
        })?;
        return Ok(fetched);
    }
    if offline {
        if !local.is_empty() {
            let names: Vec<&str> = local.iter().map(|l| l.1.as_str()).collect();
            return Err(wheel_err(format!(
                "no cached file fits this image, which needs {}; cached: {}",
                platform.describe(),
                names.join(", ")
            )));
        }
        if !unpinned.is_empty() {
            return Err(wheel_err(format!(
                "{} does not pin {}: its hashes are not the file's. If the wheel is the one you meant, re-pin it (`pip-compile --generate-hashes`); otherwise it was replaced",
                file.display(),
                unpinned.join(", ")
            )));
        }
        return Err(PypiError::Offline {
            name: r.name.clone(),
            version: r.version.clone(),
            file: file.to_owned(),
            cache: cache_dir(),
        });
    }
    let fetch_err = |why: String| PypiError::Fetch {
        name: r.name.clone(),
        version: r.version.clone(),
        why,
    };
    // PEP 691: the project's files with their hashes.
    let url = format!("{}/{}/", index.trim_end_matches('/'), r.normalized());
    let page =
        super::registry::download(&url, 64 << 20, Some("application/vnd.pypi.simple.v1+json"))
            .map_err(fetch_err)?;
    let page: serde_json::Value = serde_json::from_slice(&page)
        .map_err(|e| fetch_err(format!("{url}: not a PEP 691 JSON answer: {e}")))?;
    let mut offered: Vec<(Option<u32>, String, String, String)> = Vec::new();
    for f in page["files"].as_array().into_iter().flatten() {
        let (Some(name), Some(href), Some(sha)) = (
            f["filename"].as_str(),
            f["url"].as_str(),
            f["hashes"]["sha256"].as_str(),
        ) else {
            continue;
        };
        if !r.hashes.contains(&sha.to_ascii_lowercase()) {
            continue;
        }
        let rank = WheelName::parse(name).and_then(|w| platform.fits(&w));
        offered.push((
            rank,
            name.to_owned(),
            href.to_owned(),
            sha.to_ascii_lowercase(),
        ));
    }
    offered.sort_by(|a, b| (a.0.is_none(), a.0, &a.1).cmp(&(b.0.is_none(), b.0, &b.1)));
    let Some((Some(_), name, href, sha)) = offered.first().cloned() else {
        let names: Vec<&str> = offered.iter().map(|o| o.1.as_str()).collect();
        return Err(wheel_err(if names.is_empty() {
            format!("the index ({url}) lists no file with a pinned hash; check the version and the hashes")
        } else if names.iter().all(|n| !n.ends_with(".whl")) {
            format!("only source distributions are pinned ({}); StratOS installs wheels only (no build step): pin the wheel's hash", names.join(", "))
        } else {
            format!(
                "no pinned wheel fits this image, which needs {}; pinned: {}",
                platform.describe(),
                names.join(", ")
            )
        }));
    };
    let href = resolve_url(&url, &href);
    let bytes = super::registry::download(&href, max_bytes, None).map_err(fetch_err)?;
    let actual = sha256_hex(&bytes);
    if actual != sha {
        return Err(wheel_err(format!(
            "{href} has sha256 {actual}, but {} pins {sha}; the index served another file",
            file.display()
        )));
    }
    let fetched = Fetched {
        file_name: name,
        sha256: sha,
        bytes,
    };
    store_in_cache(&fetched).map_err(fetch_err)?;
    Ok(fetched)
}

fn store_in_cache(f: &Fetched) -> Result<(), String> {
    if !f.file_name.ends_with(".whl") || f.file_name.contains('/') || f.file_name.starts_with('.') {
        return Err(format!("{:?} is not a wheel file name", f.file_name));
    }
    let path = cache_dir().join(&f.sha256).join(&f.file_name);
    if path.is_file() {
        return Ok(());
    }
    super::registry::store(&path, &f.bytes)
}

/// An index link, absolute or relative to the page.
fn resolve_url(page: &str, href: &str) -> String {
    if href.starts_with("https://") || href.starts_with("http://") {
        return href.to_owned();
    }
    let origin_end = page
        .find("://")
        .and_then(|i| page[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(page.len());
    if href.starts_with('/') {
        format!("{}{href}", &page[..origin_end])
    } else {
        format!(
            "{}{href}",
            &page[..page.rfind('/').map_or(page.len(), |i| i + 1)]
        )
    }
}

/// Where a wheel's parts go in the image (Debian's scheme for locally installed packages).
pub struct Scheme {
    pub site: ImagePath,
    pub scripts: ImagePath,
    pub data: ImagePath,
    pub headers: ImagePath,
    /// The interpreter `#!python` scripts are pointed at.
    pub interpreter: String,
}

impl Scheme {
    pub fn debian_local(python: (u32, u32), interpreter: &str) -> Scheme {
        let (a, b) = python;
        let p = |s: &str| ImagePath::parse(s).expect("static path");
        Scheme {
            site: p(&format!("/usr/local/lib/python{a}.{b}/dist-packages")),
            scripts: p("/usr/local/bin"),
            data: p("/usr/local"),
            headers: p(&format!("/usr/local/include/python{a}.{b}")),
            interpreter: interpreter.to_owned(),
        }
    }
}

/// What installing a wheel put in the tree.
pub struct Installed {
    pub files: usize,
    pub bytes: u64,
    /// Compiled extension modules and libraries (checked for their system libraries).
    pub native: Vec<ImagePath>,
    pub license: Option<String>,
    pub summary: Option<String>,
}

/// Joins a wheel member's relative name under `base`, refusing anything that could leave it
/// (a wheel lists files only: empty and `.` components are malformed too).
fn safe_join(base: &ImagePath, rel: &str) -> Result<ImagePath, String> {
    super::registry::join_under(base, rel, true, "the install scheme")
}

/// A `RECORD` row's hash: (algorithm, urlsafe-base64 digest, size).
type RecordHash = (String, String, Option<u64>);

/// The `RECORD` file's rows: path → (algorithm, urlsafe-base64 digest, size), for rows with a
/// hash (RECORD itself and signatures have none).
fn parse_record(text: &str) -> Result<BTreeMap<String, Option<RecordHash>>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields =
            csv_fields(line).ok_or_else(|| format!("RECORD line {}: malformed CSV", i + 1))?;
        let [path, hash, size] = fields.as_slice() else {
            return Err(format!("RECORD line {}: expected path,hash,size", i + 1));
        };
        let entry = if hash.is_empty() {
            None
        } else {
            let (algo, digest) = hash.split_once('=').ok_or_else(|| {
                format!("RECORD line {}: hash {hash:?} is not algo=digest", i + 1)
            })?;
            let size = if size.is_empty() {
                None
            } else {
                Some(
                    size.parse::<u64>()
                        .map_err(|_| format!("RECORD line {}: size {size:?}", i + 1))?,
                )
            };
            Some((algo.to_owned(), digest.to_owned(), size))
        };
        if out.insert(path.clone(), entry).is_some() {
            return Err(format!("RECORD lists {path:?} twice"));
        }
    }
    Ok(out)
}

/// One CSV line (RFC 4180 quoting).
fn csv_fields(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '"') if at_start => {
                quoted = true;
                at_start = false;
            }
            (true, '"') => {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            }
            (false, ',') => {
                out.push(std::mem::take(&mut cur));
                at_start = true;
            }
            (_, c) => {
                cur.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return None;
    }
    out.push(cur);
    Some(out)
}

fn record_digest(algo: &str, data: &[u8]) -> Option<String> {
    use base64::Engine;
    let d: Vec<u8> = match algo {
        "sha256" => sha2::Sha256::digest(data).to_vec(),
        "sha384" => sha2::Sha384::digest(data).to_vec(),
        "sha512" => sha2::Sha512::digest(data).to_vec(),
        _ => return None,
    };
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d))
}

/// Headers of an RFC 822-style metadata file (up to the body), repeated keys kept in order.
fn metadata_headers(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push('\n');
                last.1.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    out
}

/// The SPDX expression of a wheel's licence: `License-Expression`, else a `License` field that
/// is already one, else the licence classifiers that map to one.
pub fn license_of(metadata: &str) -> Option<String> {
    let h = metadata_headers(metadata);
    let get = |k: &str| h.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    if let Some(e) = get("license-expression").filter(|e| is_spdx_expression(e)) {
        return Some(e);
    }
    if let Some(l) = get("license").filter(|l| is_spdx_expression(l) && l.len() < 64) {
        return Some(l);
    }
    const CLASSIFIERS: &[(&str, &str)] = &[
        ("License :: OSI Approved :: MIT License", "MIT"),
        (
            "License :: OSI Approved :: Apache Software License",
            "Apache-2.0",
        ),
        ("License :: OSI Approved :: BSD License", "BSD-3-Clause"),
        ("License :: OSI Approved :: ISC License (ISCL)", "ISC"),
        (
            "License :: OSI Approved :: Python Software Foundation License",
            "PSF-2.0",
        ),
        (
            "License :: OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)",
            "MPL-2.0",
        ),
    ];
    let found: Vec<&str> = h
        .iter()
        .filter(|(k, _)| k == "classifier")
        .filter_map(|(_, v)| CLASSIFIERS.iter().find(|(c, _)| c == v).map(|(_, id)| *id))
        .collect();
    match found.as_slice() {
        [one] => Some((*one).to_owned()),
        _ => None,
    }
}

/// An expression made of licence ids joined by AND/OR/WITH, optionally parenthesised.
pub fn is_spdx_expression(s: &str) -> bool {
    let words: Vec<&str> = s
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|w| !w.is_empty())
        .collect();
    !words.is_empty()
        && words.iter().enumerate().all(|(i, w)| {
            if i % 2 == 1 {
                matches!(*w, "AND" | "OR" | "WITH")
            } else {
                w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
                    && !matches!(*w, "AND" | "OR" | "WITH")
            }
        })
        && words.len() % 2 == 1
}

/// Unpacks a wheel into `tree` under `scheme`: the `.dist-info` must be the requirement's,
/// every member must be in `RECORD` with a matching hash and every hashed row must be a member;
/// `.data/` directories go to their scheme paths; no code runs.
pub fn install(
    r: &Requirement,
    wheel: &Fetched,
    scheme: &Scheme,
    tree: &mut Tree,
    origin: &Origin,
    budget: Budget,
) -> Result<Installed, PypiError> {
    let bad = |why: String| PypiError::Wheel {
        name: r.name.clone(),
        version: r.version.clone(),
        why: format!("{}: {why}", wheel.file_name),
    };
    let wname =
        WheelName::parse(&wheel.file_name).ok_or_else(|| bad("not a wheel file name".into()))?;
    if normalize(&wname.dist) != r.normalized() || wname.version != r.version {
        return Err(bad(format!(
            "the file is for {} {}",
            wname.dist, wname.version
        )));
    }
    let zip = Zip::open(&wheel.bytes, &wheel.file_name)?;
    let limits = budget.limits;
    // The .dist-info directory: exactly one, for this distribution and version.
    let infos: BTreeSet<&str> = zip
        .members
        .iter()
        .filter_map(|m| m.name.split('/').next())
        .filter(|top| top.ends_with(".dist-info"))
        .collect();
    let info = match infos.iter().collect::<Vec<_>>().as_slice() {
        [one] => (*one).to_owned(),
        _ => {
            return Err(bad(format!(
                "expected one .dist-info directory, found {infos:?}"
            )))
        }
    };
    let info_stem = info.trim_end_matches(".dist-info");
    let (idist, iver) = info_stem
        .rsplit_once('-')
        .ok_or_else(|| bad(format!("{info}: not NAME-VERSION.dist-info")))?;
    if normalize(idist) != r.normalized() || iver != r.version {
        return Err(bad(format!("{info} is not {} {}", r.name, r.version)));
    }
    let data_dir = format!("{info_stem}.data/");
    let member = |name: &str| zip.members.iter().find(|m| m.name == name);
    let read_text = |name: &str| -> Result<String, PypiError> {
        let m = member(name).ok_or_else(|| bad(format!("no {name}")))?;
        let bytes = zip.read(m, 16 << 20, "the 16 MiB cap on wheel metadata")?;
        String::from_utf8(bytes).map_err(|_| bad(format!("{name} is not UTF-8")))
    };
    let wheel_meta = read_text(&format!("{info}/WHEEL"))?;
    let wv = metadata_headers(&wheel_meta)
        .into_iter()
        .find(|(k, _)| k == "wheel-version")
        .map(|(_, v)| v)
        .ok_or_else(|| bad("WHEEL names no Wheel-Version".into()))?;
    if !wv.starts_with("1.") {
        return Err(bad(format!(
            "Wheel-Version {wv}: only version 1 wheels are understood"
        )));
    }
    let record_name = format!("{info}/RECORD");
    let record = parse_record(&read_text(&record_name)?).map_err(|e| bad(e.to_string()))?;
    let metadata = read_text(&format!("{info}/METADATA"))?;
    let mut listed: BTreeSet<&str> = record
        .iter()
        .filter(|(_, h)| h.is_some())
        .map(|(p, _)| p.as_str())
        .collect();
    let mut out = Installed {
        files: 0,
        bytes: 0,
        native: Vec::new(),
        license: license_of(&metadata),
        summary: metadata_headers(&metadata)
            .into_iter()
            .find(|(k, _)| k == "summary")
            .map(|(_, v)| v),
    };
    for m in &zip.members {
        if m.is_dir {
            continue;
        }
        let signature =
            m.name == format!("{info}/RECORD.jws") || m.name == format!("{info}/RECORD.p7s");
        // Where it goes: the scheme path for .data/ members, the site directory for the rest.
        let dest = match m.name.strip_prefix(&data_dir) {
            Some(rest) => {
                let (key, rel) = rest
                    .split_once('/')
                    .ok_or_else(|| bad(format!("{:?}: a file directly in {data_dir}", m.name)))?;
                let base = match key {
                    "purelib" | "platlib" => scheme.site.clone(),
                    "scripts" => scheme.scripts.clone(),
                    "data" => scheme.data.clone(),
                    "headers" => scheme
                        .headers
                        .join(&normalize(&r.name))
                        .map_err(|e| bad(e.to_string()))?,
                    other => {
                        return Err(bad(format!(
                            "{:?}: unknown scheme directory {other:?}",
                            m.name
                        )))
                    }
                };
                safe_join(&base, rel)
            }
            None => safe_join(&scheme.site, &m.name),
        }
        .map_err(|why| bad(format!("refusing member {:?}: {why}", m.name)))?;
        let budget_left = limits.package.saturating_sub(out.bytes);
        let image_left = limits.image.saturating_sub(budget.image_used + out.bytes);
        let (cap, key) = if limits.file <= budget_left.min(image_left) {
            (limits.file, "[image] max-file-size")
        } else if budget_left <= image_left {
            (budget_left, "[image] max-package-size")
        } else {
            (image_left, "[image] max-image-size")
        };
        let mut data = zip.read(m, cap, key)?;
        if m.name != record_name && !signature {
            match record.get(&m.name) {
                Some(Some((algo, digest, size))) => {
                    let actual = record_digest(algo, &data).ok_or_else(|| {
                        bad(format!(
                            "RECORD hashes {:?} with {algo}; sha256, sha384 or sha512 are checked",
                            m.name
                        ))
                    })?;
                    if &actual != digest || size.is_some_and(|s| s != data.len() as u64) {
                        return Err(bad(format!(
                            "{:?} does not match its RECORD entry ({algo}={digest}, {} bytes): the wheel was altered after it was built",
                            m.name,
                            size.map_or("no size".into(), |s| s.to_string())
                        )));
                    }
                    listed.remove(m.name.as_str());
                }
                _ => {
                    return Err(bad(format!(
                    "{:?} is not in RECORD with a hash: a file was added after the wheel was built",
                    m.name
                )))
                }
            }
        }
        let mut mode = if m.mode & 0o111 != 0 { 0o755 } else { 0o644 };
        if m.name.starts_with(&format!("{data_dir}scripts/")) {
            mode = 0o755;
            // `#!python` means "the interpreter this is installed for".
            if let Some(rest) = data.strip_prefix(b"#!python") {
                let nl = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
                let mut fixed = format!("#!{}", scheme.interpreter).into_bytes();
                fixed.extend_from_slice(&rest[nl..]);
                data = fixed;
            }
        }
        if data.starts_with(b"\x7fELF") {
            out.native.push(dest.clone());
        }
        out.bytes += data.len() as u64;
        out.files += 1;
        tree.insert(&dest, Entry::file(data, mode, origin))
            .map_err(|e| bad(e.to_string()))?;
    }
    if let Some(missing) = listed.iter().find(|p| **p != record_name) {
        return Err(bad(format!(
            "RECORD lists {missing:?}, which the wheel does not hold"
        )));
    }
    // Installed by us, not by pip: tools that ask (pip list, importlib.metadata) see that.
    let installer = safe_join(&scheme.site, &format!("{info}/INSTALLER")).map_err(&bad)?;
    tree.insert(
        &installer,
        Entry::file(b"stratos\n".to_vec(), 0o644, origin),
    )
    .map_err(|e| bad(e.to_string()))?;
    Ok(out)
}

/// The SBOM component of an installed wheel.
pub fn component(r: &Requirement, w: &Fetched, inst: &Installed, purl: &str) -> ComponentSpec {
    ComponentSpec {
        bom_ref: purl.to_owned(),
        classification: "library",
        name: r.normalized(),
        version: r.version.clone(),
        description: Some(match &inst.summary {
            Some(s) => format!("Python wheel {} ({s})", w.file_name),
            None => format!("Python wheel {}", w.file_name),
        }),
        purl: Some(purl.to_owned()),
        license: inst.license.clone(),
        sha256: w.sha256.clone(),
        files: Vec::new(),
        properties: vec![
            (prop::ORIGIN.into(), "python-wheel".into()),
            (prop::BYTES_INSTALLED.into(), inst.bytes.to_string()),
            ("stratos:wheel".into(), w.file_name.clone()),
        ],
        depends_on: Vec::new(),
    }
}

/// `pkg:pypi/NAME@VERSION`, the name in PEP 503 form (the purl spec's rule for PyPI).
pub fn purl(r: &Requirement) -> String {
    format!("pkg:pypi/{}@{}", r.normalized(), r.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Vec<Requirement>, PypiError> {
        parse_requirements(s, Path::new("req.txt"))
    }

    #[test]
    fn pip_compile_output_parses() {
        let h1 = "a".repeat(64);
        let h2 = "B".repeat(64);
        let text = format!(
            "#\n# This file is autogenerated by pip-compile\n#\nMarkupSafe==2.1.5 \\\n    --hash=sha256:{h1} \\\n    --hash=sha256:{h2}\n    # via jinja2\nidna[all] == 3.7 --hash sha256:{h1}  # comment\n"
        );
        let r = parse(&text).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].name, "MarkupSafe");
        assert_eq!(r[0].normalized(), "markupsafe");
        assert_eq!(r[0].line, 4);
        assert!(r[0].hashes.contains(&"b".repeat(64)));
        assert_eq!(r[1].version, "3.7");
        assert_eq!(r[1].line, 8);
    }

    #[test]
    fn unpinned_unhashed_and_unsupported_lines_name_the_line() {
        let h = "a".repeat(64);
        for (text, want) in [
            (
                "idna>=3\n".to_owned(),
                "req.txt:1: \"idna>=3\" is not pinned",
            ),
            (
                "\nidna==3.7\n".to_owned(),
                "req.txt:2: idna==3.7 has no --hash",
            ),
            (format!("idna==3.7 --hash=md5:{h}\n"), "only sha256"),
            (
                format!("idna==3.7 ; python_version<'3' --hash=sha256:{h}\n"),
                "environment markers",
            ),
            ("-r other.txt\n".to_owned(), "req.txt:1: option \"-r\""),
            (format!("idna==3.* --hash=sha256:{h}\n"), "exact version"),
            (
                format!("idna==3.7 --hash=sha256:{h}\nIDNA==3.7 --hash=sha256:{h}\n"),
                "req.txt:2: IDNA is already required on line 1",
            ),
            ("idna @ https://x/y.whl\n".to_owned(), "direct URL"),
        ] {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn wheel_tags_fit_the_image() {
        let p = Platform {
            python: (3, 11),
            glibc: Some((2, 36)),
        };
        let fit = |f: &str| WheelName::parse(f).and_then(|w| p.fits(&w));
        assert!(
            fit("MarkupSafe-2.1.5-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
                .is_some()
        );
        assert!(fit("idna-3.7-py3-none-any.whl").is_some());
        assert!(fit("six-1.16.0-py2.py3-none-any.whl").is_some());
        assert!(fit("x-1-cp38-abi3-manylinux2014_x86_64.whl").is_some());
        assert!(fit("x-1-cp312-cp312-manylinux_2_17_x86_64.whl").is_none());
        assert!(fit("x-1-cp311-cp311-manylinux_2_38_x86_64.whl").is_none());
        assert!(fit("x-1-cp311-cp311-musllinux_1_1_x86_64.whl").is_none());
        assert!(fit("x-1-cp311-cp311-manylinux_2_17_aarch64.whl").is_none());
        assert!(fit("x-1-cp311-cp311-win_amd64.whl").is_none());
        assert!(fit("x-1-py312-none-any.whl").is_none());
        // The platform wheel is preferred over the pure one.
        assert!(fit("x-1-cp311-cp311-manylinux2014_x86_64.whl") < fit("x-1-py3-none-any.whl"));
        let no_libc = Platform { glibc: None, ..p };
        assert!(WheelName::parse("x-1-cp311-cp311-manylinux2014_x86_64.whl")
            .and_then(|w| no_libc.fits(&w))
            .is_none());
    }

    #[test]
    fn record_csv_and_licences() {
        let r =
            parse_record("a/b.py,sha256=abc,12\n\"we,ird.py\",sha256=x,\nx.dist-info/RECORD,,\n")
                .unwrap();
        assert_eq!(r["a/b.py"], Some(("sha256".into(), "abc".into(), Some(12))));
        assert!(r.contains_key("we,ird.py"));
        assert_eq!(r["x.dist-info/RECORD"], None);
        assert!(parse_record("a,b\n").is_err());
        assert!(parse_record("a,sha256=x,1\na,sha256=x,1\n").is_err());
        assert_eq!(
            license_of("Name: x\nLicense-Expression: MIT OR Apache-2.0\n"),
            Some("MIT OR Apache-2.0".into())
        );
        assert_eq!(
            license_of("Name: x\nLicense: BSD-3-Clause\n"),
            Some("BSD-3-Clause".into())
        );
        assert_eq!(license_of("License: Copyright 2001 someone, all rights\nClassifier: License :: OSI Approved :: MIT License\n"), Some("MIT".into()));
        assert_eq!(license_of("License: see file\n"), None);
        assert!(!is_spdx_expression("MIT OR"));
        assert!(is_spdx_expression("(MIT OR Apache-2.0) AND BSD-3-Clause"));
    }

    #[test]
    fn hostile_requirement_files_never_panic() {
        let seeds = [
            "a==1 --hash=sha256:".to_owned() + &"a".repeat(64),
            "\\\n\\\n#x\n-".into(),
            "a[==1;@ \\".into(),
        ];
        for s in &seeds {
            for cut in 0..=s.len() {
                if s.is_char_boundary(cut) {
                    let _ = parse(&s[..cut]);
                }
            }
        }
    }
}
