//! An npm tarball: fetched and checked against the lock's integrity, unpacked (regular files
//! and directories only) under its `node_modules` path, its commands linked.

use std::io::Read;

use super::lock::{name_of_key, LockedPackage};
use super::NpmError;
use crate::packages::fetch::{self, Digest, FetchError, Pin, Places, Sources};
use crate::packages::unpack::Capped;
use crate::rootfs::{Budget, Entry, ImagePath, Origin, Tree};

/// The cache's folder of tarballs: `<sha512 hex>.tgz`.
pub const STORE: &str = "npm/sha512";

/// The tarball of `p`, from the cache, the prefetch directory (`npm/<sha512 hex>.tgz`, what
/// `ci/fetch-pinned` writes: by digest, so two packages whose URLs end alike cannot collide
/// there) or (unless offline) its URL; always checked against the lock's integrity.
pub fn fetch(p: &LockedPackage, sources: &Sources, max_bytes: u64) -> Result<Vec<u8>, NpmError> {
    let hex = hex::encode(&p.sha512);
    let store = sources.store(STORE);
    let pin = Pin {
        digest: Digest::Sha512(p.sha512.clone()),
        max_bytes,
        what: "an npm tarball",
    };
    let places = Places {
        store: &store,
        key: format!("{hex}.tgz"),
        local: vec![sources.prefetch.join("npm").join(format!("{hex}.tgz"))],
        offline: sources.offline,
    };
    let fetch_err = |why: String| NpmError::Fetch {
        name: p.name.clone(),
        version: p.version.clone(),
        why,
    };
    let download = || crate::packages::fetch::download(&p.resolved, max_bytes, None);
    fetch::fetch(&pin, &places, download).map_err(|e| match e {
        FetchError::Store(e) => NpmError::Store(e),
        FetchError::Offline { rejected } => match rejected.first() {
            Some(path) => tarball_error(p, format!(
                "{} does not match the lock's integrity (sha512): it was replaced, or the lock is wrong (re-run `npm install --package-lock-only`)",
                path.display()
            )),
            None => NpmError::Offline {
                name: p.name.clone(),
                version: p.version.clone(),
                cache: store.dir.clone(),
            },
        },
        FetchError::Download(why) => fetch_err(why),
        FetchError::Mismatch { .. } => tarball_error(p, format!(
            "{} does not match the lock's integrity (sha512): the registry served another file, or the lock is wrong",
            p.resolved
        )),
    })
}

/// What unpacking a tarball put in the tree.
pub struct Installed {
    pub files: usize,
    pub bytes: u64,
    pub license: Option<String>,
    pub description: Option<String>,
    /// `binding.gyp` or compiled `.node` files: a native addon.
    pub native: Vec<ImagePath>,
}

fn safe_rel(base: &ImagePath, rel: &str) -> Result<ImagePath, String> {
    crate::packages::unpack::join_under(base, rel, false, "the package's directory")
}

/// Unpacks `tgz` (the first path component stripped, as npm does) into `dest`. Regular files
/// and directories only: links, devices and names leaving `dest` are refused.
pub fn unpack(
    p: &LockedPackage,
    tgz: &[u8],
    dest: &ImagePath,
    tree: &mut Tree,
    origin: &Origin,
    budget: Budget,
) -> Result<Installed, NpmError> {
    let bad = |why: String| tarball_error(p, why);
    let limits = budget.limits;
    let stream_cap = limits
        .package
        .saturating_add(limits.package / 4)
        .saturating_add(16 << 20);
    let mut ar = tar::Archive::new(Capped::new(flate2::read::GzDecoder::new(tgz), stream_cap));
    let fail = |e: std::io::Error| read_error(p, e);
    let mut out = Installed {
        files: 0,
        bytes: 0,
        license: None,
        description: None,
        native: Vec::new(),
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut manifest: Option<serde_json::Value> = None;
    for entry in ar.entries().map_err(fail)? {
        let mut entry = entry.map_err(fail)?;
        let Some(Member { raw, rel, path }) = member(p, &entry, dest)? else {
            continue;
        };
        if !seen.insert(path.clone()) {
            return Err(bad(format!("refusing member {raw:?}: it appears twice")));
        }
        let left = limits.package.saturating_sub(out.bytes);
        let image_left = limits.image.saturating_sub(budget.image_used + out.bytes);
        let cap = limits.file.min(left).min(image_left);
        let data = read_member(p, &mut entry, &raw, cap)?;
        let mode = entry.header().mode().unwrap_or(0o644);
        let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
        if rel == "package.json" {
            manifest = serde_json::from_slice(&data).ok();
        }
        if rel.ends_with(".node") || rel == "binding.gyp" || data.starts_with(b"\x7fELF") {
            out.native.push(path.clone());
        }
        out.bytes += data.len() as u64;
        out.files += 1;
        tree.insert(&path, Entry::file(data, mode, origin))
            .map_err(|e| bad(e.to_string()))?;
    }
    let m = manifest.ok_or_else(|| bad("the tarball has no package.json".into()))?;
    read_manifest(p, &m, &mut out)?;
    Ok(out)
}

fn tarball_error(p: &LockedPackage, why: String) -> NpmError {
    NpmError::Tarball {
        name: p.name.clone(),
        version: p.version.clone(),
        why,
    }
}

/// A failure to read the archive: the expansion cap, or not a gzip'd tar at all.
fn read_error(p: &LockedPackage, e: std::io::Error) -> NpmError {
    tarball_error(
        p,
        match Capped::<&[u8]>::exceeded(&e) {
            Some(limit) => {
                format!("the tarball expands past {limit} bytes ([image] max-package-size)")
            }
            None => format!("not a gzip'd tar archive: {e}"),
        },
    )
}

/// A file member of the tarball: its name as written, relative to the package, and where it
/// goes.
struct Member {
    raw: String,
    rel: String,
    path: ImagePath,
}

/// Where a member goes, `None` for a directory; links, devices and names leaving `dest` are
/// refused.
fn member<R: Read>(
    p: &LockedPackage,
    entry: &tar::Entry<R>,
    dest: &ImagePath,
) -> Result<Option<Member>, NpmError> {
    let bad = |why: String| tarball_error(p, why);
    let raw = String::from_utf8(entry.path_bytes().into_owned())
        .map_err(|_| bad("a member name that is not UTF-8".into()))?;
    // npm strips the first component, whatever it is called (usually `package/`).
    let rel = match raw.split_once('/') {
        Some((_, r)) => r.trim_end_matches('/'),
        None => "",
    };
    let kind = entry.header().entry_type();
    if rel.is_empty() && kind.is_dir() {
        return Ok(None);
    }
    let path = safe_rel(dest, rel).map_err(|why| bad(format!("refusing member {raw:?}: {why}")))?;
    if path == *dest {
        return Err(bad(format!(
            "refusing member {raw:?}: it would replace the package's directory"
        )));
    }
    if kind.is_dir() {
        return Ok(None);
    }
    if kind.is_symlink() || kind.is_hard_link() {
        let target = entry
            .link_name()
            .ok()
            .flatten()
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Err(bad(format!(
            "refusing member {raw:?}: a link (to {target:?}); npm installs no links from a package tarball, and one could point out of node_modules"
        )));
    }
    if !(kind.is_file() || kind == tar::EntryType::Continuous) {
        return Err(bad(format!(
            "refusing member {raw:?}: neither a file nor a directory ({kind:?})"
        )));
    }
    Ok(Some(Member {
        rel: rel.to_owned(),
        raw,
        path,
    }))
}

/// A member's bytes, at most `cap` of them.
fn read_member<R: Read>(
    p: &LockedPackage,
    entry: &mut tar::Entry<R>,
    raw: &str,
    cap: u64,
) -> Result<Vec<u8>, NpmError> {
    let bad = |why: String| tarball_error(p, why);
    let too_large = || {
        bad(format!(
            "member {raw:?} is larger than {cap} bytes ([image] max-file-size, max-package-size, max-image-size)"
        ))
    };
    // The size the tar header gives bounds what the entry yields: a member over the cap is
    // refused before a byte of it is decompressed or a buffer allocated (a 7 MB .tgz holds
    // gigabytes of zeros). The buffer grows with what is read, not with what the header
    // claims.
    let declared = entry.size();
    if declared > cap {
        return Err(too_large());
    }
    let mut data = Vec::new();
    entry
        .take(cap + 1)
        .read_to_end(&mut data)
        .map_err(|e| read_error(p, e))?;
    if data.len() as u64 > cap {
        return Err(too_large());
    }
    if data.len() as u64 != declared {
        return Err(bad(format!(
            "member {raw:?}: its header declares {declared} bytes but the archive holds {}",
            data.len()
        )));
    }
    Ok(data)
}

/// The tarball's `package.json` must name the locked package; its licence (else the lock's,
/// when an SPDX expression) and description go to the SBOM.
fn read_manifest(
    p: &LockedPackage,
    m: &serde_json::Value,
    out: &mut Installed,
) -> Result<(), NpmError> {
    let (name, version) = (m["name"].as_str(), m["version"].as_str());
    if name != Some(p.name.as_str()) || version != Some(p.version.as_str()) {
        return Err(tarball_error(
            p,
            format!(
                "the tarball's package.json is {} {}, not what the lock names",
                name.unwrap_or("<no name>"),
                version.unwrap_or("<no version>")
            ),
        ));
    }
    out.license = match &m["license"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("type").and_then(|t| t.as_str()).map(str::to_owned),
        _ => None,
    }
    .or_else(|| p.license.clone())
    .filter(|l| crate::packages::spdx::is_spdx_expression(l));
    out.description = m["description"]
        .as_str()
        .map(|s| s.chars().take(200).collect());
    Ok(())
}

/// `node_modules/.bin/CMD` links for a package's `bin` entries, in the `node_modules` that holds
/// it; each must point at a file the package installed.
pub fn link_bins(
    p: &LockedPackage,
    pkg_dir: &ImagePath,
    tree: &mut Tree,
    origin: &Origin,
) -> Result<(), NpmError> {
    let bad = |why: String| NpmError::Tarball {
        name: p.name.clone(),
        version: p.version.clone(),
        why,
    };
    if p.bin.is_empty() {
        return Ok(());
    }
    // The node_modules directory: one level up, two for a scoped path (the lock's path, not
    // the package's name: an alias installs `@s/b` at `node_modules/b`).
    let mut nm = pkg_dir.parent().expect("under node_modules");
    if name_of_key(&p.key).is_some_and(|n| n.starts_with('@')) {
        nm = nm.parent().expect("under node_modules");
    }
    let depth_name = pkg_dir.as_str()[nm.as_str().len() + 1..].to_owned();
    for (cmd, target) in &p.bin {
        let file = safe_rel(pkg_dir, target).map_err(|why| bad(format!("bin {cmd}: {why}")))?;
        if !matches!(
            tree.get(&file).map(|e| &e.kind),
            Some(crate::rootfs::Kind::File(_))
        ) {
            return Err(bad(format!(
                "bin {cmd}: {target} is not a file of the package"
            )));
        }
        let link = nm
            .join(".bin")
            .and_then(|b| b.join(cmd))
            .map_err(|e| bad(format!("bin {cmd}: {e}")))?;
        let rel = format!(
            "../{depth_name}/{}",
            &file.as_str()[pkg_dir.as_str().len() + 1..]
        );
        tree.insert(&link, Entry::symlink(rel, origin))
            .map_err(|e| bad(e.to_string()))?;
        // npm makes the target executable.
        if let Some(e) = tree.get(&file).cloned() {
            let mut e = e;
            e.mode = 0o755;
            tree.insert(&file, e).map_err(|e| bad(e.to_string()))?;
        }
    }
    Ok(())
}
