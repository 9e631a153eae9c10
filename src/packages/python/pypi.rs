//! The package index (PyPI's simple API, PEP 691 JSON) and the wheels a requirement pins: found
//! in the cache, in the prefetch directory, or (unless offline) downloaded from the index, every
//! byte checked against the pinned hashes.

use std::path::Path;

use super::platform::{Platform, WheelName};
use super::requirements::Requirement;
use super::PypiError;
use crate::digest::Sha256;
use crate::packages::fetch::{self, Sources, Store};

/// The cache's folder of wheels: `<sha256>/<file name>`.
pub const STORE: &str = "wheels/sha256";

/// A wheel chosen for a requirement.
pub struct Fetched {
    pub file_name: String,
    pub sha256: Sha256,
    pub bytes: Vec<u8>,
}

/// Finds the requirement's best-fitting wheel among the files its hashes pin: in the cache,
/// in the prefetch directory (`wheels/`), or (unless offline) on the index. Every byte is
/// checked against the pinned hashes.
pub fn fetch(
    r: &Requirement,
    platform: &Platform,
    file: &Path,
    index: &str,
    sources: &Sources,
    max_bytes: u64,
) -> Result<Fetched, PypiError> {
    let store = sources.store(STORE);
    let (mut local, unpinned) = local_wheels(r, platform, &store, sources, max_bytes)?;
    local.sort_by(|a, b| a.order().cmp(&b.order()));
    if let Some(best) = local.first().filter(|c| c.rank.is_some()) {
        let fetched = Fetched {
            file_name: best.name.clone(),
            sha256: Sha256::of(&best.bytes),
            bytes: best.bytes.clone(),
        };
        if !best.stored {
            store_in_cache(r, &store, &fetched)?;
        }
        return Ok(fetched);
    }
    if sources.offline {
        return Err(offline_error(r, platform, file, &store, &local, &unpinned));
    }
    from_index(r, platform, file, index, &store, max_bytes)
}

/// A wheel file found on this machine whose content a requirement pins.
struct Candidate {
    /// How well it fits the image ([`Platform::fits`]); `None`: not at all.
    rank: Option<u32>,
    name: String,
    bytes: Vec<u8>,
    /// Found in the cache (not to be stored again).
    stored: bool,
}

impl Candidate {
    fn new(platform: &Platform, name: String, bytes: Vec<u8>, stored: bool) -> Candidate {
        let rank = WheelName::parse(&name).and_then(|w| platform.fits(&w));
        Candidate {
            rank,
            name,
            bytes,
            stored,
        }
    }

    /// Fitting files first, best rank first, then by name.
    fn order(&self) -> (bool, Option<u32>, &str) {
        (self.rank.is_none(), self.rank, &self.name)
    }
}

/// The pinned wheels in the cache and the prefetch directory, and (for messages) the files of
/// the requirement's name and version in the prefetch directory whose content it does not pin.
fn local_wheels(
    r: &Requirement,
    platform: &Platform,
    store: &Store,
    sources: &Sources,
    max_bytes: u64,
) -> Result<(Vec<Candidate>, Vec<String>), PypiError> {
    let mut local: Vec<Candidate> = Vec::new();
    for h in &r.hashes {
        let dir = h.to_string();
        for name in store.files_in(&dir)? {
            let bytes = store.read(&format!("{dir}/{name}"), max_bytes, "a wheel")?;
            if let Some(b) = bytes.filter(|b| Sha256::of(b) == *h) {
                local.push(Candidate::new(platform, name, b, true));
            }
        }
    }
    // Files of this name and version whose content the requirement does not pin.
    let mut unpinned: Vec<String> = Vec::new();
    let prefix = format!("{}-{}-", r.normalized().replace('-', "_"), r.version);
    for p in fetch::local_files(&sources.prefetch.join("wheels"), &prefix) {
        let Some(b) = fetch::read_local(&p, max_bytes, "a wheel") else {
            continue;
        };
        let sha = Sha256::of(&b);
        if r.hashes.contains(&sha) {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            local.push(Candidate::new(platform, name.to_owned(), b, false));
        } else {
            unpinned.push(format!("{} (sha256 {sha})", p.display()));
        }
    }
    Ok((local, unpinned))
}

/// Why `--offline` cannot go on: what was found instead, else that nothing was.
fn offline_error(
    r: &Requirement,
    platform: &Platform,
    file: &Path,
    store: &Store,
    local: &[Candidate],
    unpinned: &[String],
) -> PypiError {
    let wheel_err = |why: String| PypiError::Wheel {
        name: r.name.clone(),
        version: r.version.clone(),
        why,
    };
    if !local.is_empty() {
        let names: Vec<&str> = local.iter().map(|l| l.name.as_str()).collect();
        if let Some(e) = no_wheel_for_arch(r, platform, file, &names) {
            return e;
        }
        return wheel_err(format!(
            "no cached file fits this image, which needs {}; cached: {}",
            platform.describe(),
            names.join(", ")
        ));
    }
    if !unpinned.is_empty() {
        return wheel_err(format!(
            "{} does not pin {}: its hashes are not the file's. If the wheel is the one you meant, re-pin it (`pip-compile --generate-hashes`); otherwise it was replaced",
            file.display(),
            unpinned.join(", ")
        ));
    }
    PypiError::Offline {
        name: r.name.clone(),
        version: r.version.clone(),
        file: file.to_owned(),
        cache: store.dir.clone(),
    }
}

/// A file the index offers whose sha256 the requirement pins.
struct Offered {
    rank: Option<u32>,
    name: String,
    href: String,
    sha256: Sha256,
}

/// The best-fitting pinned wheel from the index (PEP 691), downloaded, checked and cached.
fn from_index(
    r: &Requirement,
    platform: &Platform,
    file: &Path,
    index: &str,
    store: &Store,
    max_bytes: u64,
) -> Result<Fetched, PypiError> {
    let wheel_err = |why: String| PypiError::Wheel {
        name: r.name.clone(),
        version: r.version.clone(),
        why,
    };
    let fetch_err = |why: String| PypiError::Fetch {
        name: r.name.clone(),
        version: r.version.clone(),
        why,
    };
    let url = format!("{}/{}/", index.trim_end_matches('/'), r.normalized());
    let mut offered = index_files(r, platform, &url).map_err(fetch_err)?;
    offered.sort_by(|a, b| {
        (a.rank.is_none(), a.rank, &a.name).cmp(&(b.rank.is_none(), b.rank, &b.name))
    });
    let Some(Offered {
        name,
        href,
        sha256: sha,
        ..
    }) = offered.first().filter(|o| o.rank.is_some())
    else {
        let names: Vec<&str> = offered.iter().map(|o| o.name.as_str()).collect();
        if let Some(e) = no_wheel_for_arch(r, platform, file, &names) {
            return Err(e);
        }
        return Err(wheel_err(nothing_fits(platform, &url, &offered)));
    };
    let href = resolve_url(&url, href);
    let bytes = fetch::download(&href, max_bytes, None).map_err(fetch_err)?;
    let actual = Sha256::of(&bytes);
    if actual != *sha {
        return Err(wheel_err(format!(
            "{href} has sha256 {actual}, but {} pins {sha}; the index served another file",
            file.display()
        )));
    }
    let fetched = Fetched {
        file_name: name.clone(),
        sha256: *sha,
        bytes,
    };
    store_in_cache(r, store, &fetched)?;
    Ok(fetched)
}

/// The project's files on the index page at `url` (PEP 691: with their hashes) that the
/// requirement pins.
fn index_files(r: &Requirement, platform: &Platform, url: &str) -> Result<Vec<Offered>, String> {
    let page = fetch::download(url, 64 << 20, Some("application/vnd.pypi.simple.v1+json"))?;
    let page: serde_json::Value = serde_json::from_slice(&page)
        .map_err(|e| format!("{url}: not a PEP 691 JSON answer: {e}"))?;
    let mut offered = Vec::new();
    for f in page["files"].as_array().into_iter().flatten() {
        let (Some(name), Some(href), Some(sha)) = (
            f["filename"].as_str(),
            f["url"].as_str(),
            f["hashes"]["sha256"].as_str(),
        ) else {
            continue;
        };
        // The index may write it in either case; a malformed one pins nothing.
        let Some(sha) = Sha256::parse(&sha.to_ascii_lowercase())
            .ok()
            .filter(|sha| r.hashes.contains(sha))
        else {
            continue;
        };
        offered.push(Offered {
            rank: WheelName::parse(name).and_then(|w| platform.fits(&w)),
            name: name.to_owned(),
            href: href.to_owned(),
            sha256: sha,
        });
    }
    Ok(offered)
}

/// When the pinned files include wheels but none built for the image's architecture (only
/// x86_64 ones for an aarch64 image, or another system's): the error naming what is pinned.
fn no_wheel_for_arch(
    r: &Requirement,
    platform: &Platform,
    file: &Path,
    names: &[&str],
) -> Option<PypiError> {
    let wheels: Vec<(&str, WheelName)> = names
        .iter()
        .filter_map(|n| WheelName::parse(n).map(|w| (*n, w)))
        .collect();
    if wheels.is_empty() || wheels.iter().any(|(_, w)| platform.same_machine(w)) {
        return None;
    }
    let mut platforms: Vec<&str> = wheels
        .iter()
        .flat_map(|(_, w)| w.tags.iter().map(|(_, _, plat)| plat.as_str()))
        .collect();
    platforms.sort_unstable();
    platforms.dedup();
    let mut files: Vec<&str> = wheels.iter().map(|(n, _)| *n).collect();
    files.sort_unstable();
    Some(PypiError::NoWheelForArch {
        file: file.to_owned(),
        name: r.name.clone(),
        version: r.version.clone(),
        arch: platform.arch,
        pinned: format!("{} ({})", platforms.join(", "), files.join(", ")),
    })
}

/// Why none of the index's pinned files can be installed.
fn nothing_fits(platform: &Platform, url: &str, offered: &[Offered]) -> String {
    let names: Vec<&str> = offered.iter().map(|o| o.name.as_str()).collect();
    if names.is_empty() {
        format!(
            "the index ({url}) lists no file with a pinned hash; check the version and the hashes"
        )
    } else if names.iter().all(|n| !n.ends_with(".whl")) {
        format!("only source distributions are pinned ({}); StratOS installs wheels only (no build step): pin the wheel's hash", names.join(", "))
    } else {
        format!(
            "no pinned wheel fits this image, which needs {}; pinned: {}",
            platform.describe(),
            names.join(", ")
        )
    }
}

/// Keeps a wheel in the cache under its digest and file name.
fn store_in_cache(r: &Requirement, store: &Store, f: &Fetched) -> Result<(), PypiError> {
    if !f.file_name.ends_with(".whl") || f.file_name.contains('/') || f.file_name.starts_with('.') {
        return Err(PypiError::Fetch {
            name: r.name.clone(),
            version: r.version.clone(),
            why: format!("{:?} is not a wheel file name", f.file_name),
        });
    }
    Ok(store.put(&format!("{}/{}", f.sha256, f.file_name), &f.bytes)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;
    use crate::cache::Cache;

    /// Offline sources over a fresh cache holding `files` (name, bytes) under their sha256,
    /// and the requirement pinning them all.
    fn cached(files: &[(&str, &[u8])]) -> (tempfile::TempDir, Sources, Requirement) {
        let dir = tempfile::tempdir().unwrap();
        let sources = Sources {
            cache: Cache::new(dir.path().join("cache")),
            prefetch: dir.path().join("prefetch"),
            offline: true,
            go_proxy: None,
        };
        let store = sources.store(STORE);
        let mut hashes = std::collections::BTreeSet::new();
        for (name, bytes) in files {
            let sha = Sha256::of(bytes);
            store.put(&format!("{sha}/{name}"), bytes).unwrap();
            hashes.insert(sha);
        }
        let r = Requirement {
            name: "MarkupSafe".into(),
            version: "2.1.5".into(),
            hashes,
            line: 1,
        };
        (dir, sources, r)
    }

    fn platform(arch: Arch) -> Platform {
        Platform {
            arch,
            python: (3, 11),
            glibc: Some((2, 36)),
        }
    }

    const X86: &str = "MarkupSafe-2.1.5-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl";
    const ARM: &str =
        "MarkupSafe-2.1.5-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl";
    const MAC: &str = "MarkupSafe-2.1.5-cp311-cp311-macosx_10_9_universal2.whl";

    #[test]
    fn each_architecture_takes_its_own_wheel() {
        let (_d, sources, r) = cached(&[(X86, b"x86"), (ARM, b"arm"), (MAC, b"mac")]);
        let file = Path::new("req.txt");
        for (arch, want) in [(Arch::X86_64, X86), (Arch::Aarch64, ARM)] {
            let f = fetch(&r, &platform(arch), file, "-", &sources, 1 << 20).unwrap();
            assert_eq!(f.file_name, want, "{arch}");
        }
    }

    #[test]
    fn no_wheel_for_the_architecture_names_the_file_the_package_and_what_is_pinned() {
        let (_d, sources, r) = cached(&[(X86, b"x86"), (MAC, b"mac")]);
        let file = Path::new("profiles/api.requirements.txt");
        let e = fetch(&r, &platform(Arch::Aarch64), file, "-", &sources, 1 << 20)
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            format!("profiles/api.requirements.txt: MarkupSafe 2.1.5: no wheel for aarch64: only macosx_10_9_universal2, manylinux2014_x86_64, manylinux_2_17_x86_64 ({MAC}, {X86}); pin the hash of its manylinux aarch64 wheel in profiles/api.requirements.txt too (`pip download --only-binary=:all: --platform manylinux2014_aarch64 MarkupSafe==2.1.5`, then `pip hash`), or do not build this profile for aarch64 ([image] arch)")
        );
        assert!(!e.is_environment());
        // An aarch64 wheel that does not fit for another reason (musl) keeps the general
        // message: the architecture is not what is missing.
        let musl = "MarkupSafe-2.1.5-cp311-cp311-musllinux_1_1_aarch64.whl";
        let (_d, sources, r) = cached(&[(X86, b"x86"), (musl, b"musl")]);
        let e = fetch(&r, &platform(Arch::Aarch64), file, "-", &sources, 1 << 20)
            .err()
            .unwrap();
        assert!(
            e.to_string().starts_with(
                "MarkupSafe 2.1.5: no cached file fits this image, which needs cp311 (or abi3) for manylinux_2_36_aarch64"
            ),
            "{e}"
        );
    }
}
