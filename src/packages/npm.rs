//! npm dependencies: a `package-lock.json` (lockfile v2 or v3) installed the way `npm ci
//! --omit=dev --ignore-scripts` would, without npm: every tarball fetched from its `resolved`
//! URL into the cache once, checked against its `integrity` (sha512), unpacked at the lock's
//! `node_modules` paths; no install script ever runs.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::Digest;

use super::deb::Capped;
use crate::rootfs::{Budget, Entry, ImagePath, Origin, Tree};
use crate::sbom::{prop, ComponentSpec};

#[derive(Debug, thiserror::Error)]
pub enum NpmError {
    #[error("{file}: {why}")]
    Lock { file: PathBuf, why: String },
    #[error("{file}: packages[{key:?}]: {why}")]
    Entry {
        file: PathBuf,
        key: String,
        why: String,
    },
    #[error("{name} {version}: {why}")]
    Tarball {
        name: String,
        version: String,
        why: String,
    },
    #[error("{name} {version}: its tarball is not in the cache ({cache}) and --offline forbids downloading it; run the build once without --offline (or ci/setup)")]
    Offline {
        name: String,
        version: String,
        cache: PathBuf,
    },
    #[error("{name} {version}: {why}")]
    Fetch {
        name: String,
        version: String,
        why: String,
    },
}

impl NpmError {
    /// A failure of the machine or the network, not of the input.
    pub fn is_environment(&self) -> bool {
        matches!(self, Self::Fetch { .. })
    }
}

/// One package of the lock to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedPackage {
    /// The lock's key, e.g. `node_modules/a/node_modules/@s/b`.
    pub key: String,
    /// The package's own name (`@s/b`).
    pub name: String,
    pub version: String,
    pub resolved: String,
    /// The sha512 digest (raw bytes) the tarball must have.
    pub sha512: Vec<u8>,
    pub license: Option<String>,
    pub has_install_script: bool,
    /// `bin` entries: command name → path inside the package.
    pub bin: BTreeMap<String, String>,
}

/// What the lock says to install, and what it says to leave out.
#[derive(Debug, Default)]
pub struct Plan {
    pub packages: Vec<LockedPackage>,
    /// Keys left out: development-only, bundled inside a parent, or optional for another
    /// platform (with the reason).
    pub skipped: Vec<(String, &'static str)>,
}

fn is_npm_name(s: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 214
            && !p.starts_with('.')
            && p.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b"-._~".contains(&b)
                    || b.is_ascii_uppercase()
            })
    };
    match s.strip_prefix('@') {
        Some(scoped) => {
            matches!(scoped.split_once('/'), Some((scope, name)) if part(scope) && part(name))
        }
        None => part(s),
    }
}

/// The package name at the end of a lock key (`node_modules/a/node_modules/@s/b` → `@s/b`).
fn name_of_key(key: &str) -> Option<&str> {
    let last = key.rsplit_once("node_modules/").map(|(_, n)| n)?;
    Some(last)
}

fn decode_integrity(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    s.split_whitespace().find_map(|h| {
        let b64 = h.strip_prefix("sha512-")?;
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        (raw.len() == 64).then_some(raw)
    })
}

/// Reads a lockfile (v2/v3) into what to install, in lock order (sorted keys).
pub fn plan(text: &[u8], file: &Path) -> Result<Plan, NpmError> {
    let lock_err = |why: String| NpmError::Lock {
        file: file.to_owned(),
        why,
    };
    let v: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| lock_err(format!("not JSON: {e}")))?;
    match v["lockfileVersion"].as_u64() {
        Some(2 | 3) => {}
        Some(n) => return Err(lock_err(format!("lockfileVersion {n}: only versions 2 and 3 (npm 7 and later) list every package with its path; run `npm install --package-lock-only` with a current npm"))),
        None => return Err(lock_err("no lockfileVersion: not a package-lock.json".into())),
    }
    let packages = v["packages"]
        .as_object()
        .ok_or_else(|| lock_err("no \"packages\" object".into()))?;
    let mut out = Plan::default();
    for (key, p) in packages.iter().filter(|(key, _)| !key.is_empty()) {
        let planned = plan_entry(key, p).map_err(|why| NpmError::Entry {
            file: file.to_owned(),
            key: key.clone(),
            why,
        })?;
        match planned {
            Planned::Install(pkg) => out.packages.push(pkg),
            Planned::Skip(why) => out.skipped.push((key.clone(), why)),
        }
    }
    Ok(out)
}

/// What the lock says to do with one of its packages.
enum Planned {
    Install(LockedPackage),
    Skip(&'static str),
}

/// One `packages` entry: where it goes, whether it is installed, and what pins it.
fn plan_entry(key: &str, p: &serde_json::Value) -> Result<Planned, String> {
    check_key(key)?;
    let flag = |k: &str| p[k].as_bool().unwrap_or(false);
    if flag("link") {
        return Err(
            "a link to a local folder (\"link\": true); StratOS installs registry packages only"
                .into(),
        );
    }
    if flag("dev") || flag("devOptional") {
        return Ok(Planned::Skip("development only"));
    }
    if flag("inBundle") {
        return Ok(Planned::Skip("bundled in its parent's tarball"));
    }
    if !fits(p, "os", "linux") || !fits(p, "cpu", "x64") {
        if flag("optional") {
            return Ok(Planned::Skip("optional, for another platform"));
        }
        return Err(format!(
            "not for Linux x64 (os {}, cpu {}) and not optional",
            p["os"], p["cpu"]
        ));
    }
    let key_name = name_of_key(key).unwrap_or_default();
    let name = p["name"].as_str().unwrap_or(key_name).to_owned();
    if !is_npm_name(&name) {
        return Err(format!("{name:?} is not a package name"));
    }
    let version = p["version"]
        .as_str()
        .filter(|v| !v.is_empty() && v.len() < 256)
        .ok_or_else(|| "no version".to_owned())?
        .to_owned();
    let resolved = resolved_url(p, &name, &version)?;
    let integrity = p["integrity"]
        .as_str()
        .ok_or_else(|| "no \"integrity\": the tarball is not pinned by hash".to_owned())?;
    let sha512 = decode_integrity(integrity).ok_or_else(|| {
        format!("integrity {integrity:?} has no sha512 digest (a sha1-only lock predates npm 5: regenerate it)")
    })?;
    let license = match &p["license"] {
        serde_json::Value::String(s) => Some(s.clone()),
        _ => None,
    };
    Ok(Planned::Install(LockedPackage {
        key: key.to_owned(),
        name,
        version,
        resolved,
        sha512,
        license,
        has_install_script: flag("hasInstallScript"),
        bin: parse_bin(p)?,
    }))
}

/// Every path segment between `node_modules/` of a lock key is a package name.
fn check_key(key: &str) -> Result<(), String> {
    if !key.starts_with("node_modules/") {
        return Err("not under node_modules/ (workspaces and local folders are not installed; publish them as packages)".into());
    }
    let mut rest = key;
    while let Some(r) = rest.strip_prefix("node_modules/") {
        let (name, next) = match r.find("/node_modules/") {
            Some(i) => (&r[..i], &r[i + 1..]),
            None => (r, ""),
        };
        if !is_npm_name(name) {
            return Err(format!("{name:?} is not a package name"));
        }
        rest = next;
    }
    if !rest.is_empty() {
        return Err("not a node_modules path".into());
    }
    Ok(())
}

/// Whether the entry's `os`/`cpu` list (`k`) admits `want`: no list, or `want` listed (or
/// only others negated) and not negated.
fn fits(p: &serde_json::Value, k: &str, want: &str) -> bool {
    match p[k].as_array() {
        None => true,
        Some(list) => {
            let list: Vec<&str> = list.iter().filter_map(|x| x.as_str()).collect();
            let negated = list.iter().any(|x| x.strip_prefix('!') == Some(want));
            let positive: Vec<&&str> = list.iter().filter(|x| !x.starts_with('!')).collect();
            !negated && (positive.is_empty() || positive.iter().any(|x| **x == want))
        }
    }
}

/// The tarball's URL: `resolved`, or where npm itself would look on the default registry when
/// a lock written with omit-lockfile-registry-resolved names none. HTTPS only.
fn resolved_url(p: &serde_json::Value, name: &str, version: &str) -> Result<String, String> {
    let resolved = match p["resolved"].as_str() {
        Some(r) => r.to_owned(),
        None => {
            let base = name.rsplit('/').next().unwrap_or(name);
            format!("{DEFAULT_REGISTRY}{name}/-/{base}-{version}.tgz")
        }
    };
    if !resolved.starts_with("https://") {
        return Err(format!(
            "resolved {resolved:?}: only https:// registry tarballs are fetched"
        ));
    }
    Ok(resolved)
}

/// `bin`: command name → path inside the package.
fn parse_bin(p: &serde_json::Value) -> Result<BTreeMap<String, String>, String> {
    let mut bin = BTreeMap::new();
    let Some(b) = p["bin"].as_object() else {
        return Ok(bin);
    };
    for (cmd, target) in b {
        let target = target.as_str().unwrap_or_default();
        if cmd.is_empty() || cmd.contains('/') || cmd.starts_with('.') || target.is_empty() {
            return Err(format!(
                "bin {cmd:?} -> {target:?} is not a command name and a path"
            ));
        }
        // A name becomes a file in node_modules/.bin and is printed in messages: a
        // control character would reach a terminal or a listing raw.
        if cmd.chars().chain(target.chars()).any(char::is_control) {
            return Err(format!(
                "\"bin\": {cmd:?} -> {target:?} holds a control character; no command name or path has one"
            ));
        }
        bin.insert(cmd.clone(), target.to_owned());
    }
    Ok(bin)
}

/// Where a package without a `resolved` URL comes from (npm's own default).
pub const DEFAULT_REGISTRY: &str = "https://registry.npmjs.org/";

/// Where tarballs are kept: `npm/sha512/<hex>.tgz`.
pub fn cache_dir() -> PathBuf {
    crate::cache::root().join("npm/sha512")
}

/// The tarball of `p`, from the cache, the prefetch directory (`npm/<sha512 hex>.tgz`;
/// [`super::registry::prefetch_dir`]) or (unless `offline`) its URL;
/// always checked against the lock's integrity.
pub fn fetch(p: &LockedPackage, offline: bool, max_bytes: u64) -> Result<Vec<u8>, NpmError> {
    let hex = hex::encode(&p.sha512);
    let cached = cache_dir().join(format!("{hex}.tgz"));
    let ok = |b: &[u8]| sha2::Sha512::digest(b).as_slice() == p.sha512.as_slice();
    let read = |path: &Path| {
        crate::fsio::read_regular(
            path,
            max_bytes,
            "an npm tarball",
            crate::fsio::Links::Follow,
        )
        .ok()
        .filter(|b| ok(b))
    };
    if let Some(b) = read(&cached) {
        return Ok(b);
    }
    let fetch_err = |why: String| NpmError::Fetch {
        name: p.name.clone(),
        version: p.version.clone(),
        why,
    };
    // The prefetch directory holds tarballs by digest (`npm/<sha512 hex>.tgz`, what
    // ci/fetch-pinned writes): two packages whose URLs end alike cannot collide there.
    let mut local = None;
    let path = super::registry::prefetch_dir()
        .join("npm")
        .join(format!("{hex}.tgz"));
    if let Ok(b) = crate::fsio::read_regular(
        &path,
        max_bytes,
        "an npm tarball",
        crate::fsio::Links::Follow,
    ) {
        if ok(&b) {
            local = Some(b);
        } else if offline {
            return Err(NpmError::Tarball {
                name: p.name.clone(),
                version: p.version.clone(),
                why: format!(
                    "{} does not match the lock's integrity (sha512): it was replaced, or the lock is wrong (re-run `npm install --package-lock-only`)",
                    path.display()
                ),
            });
        }
    }
    let bytes = match local {
        Some(b) => b,
        None if offline => {
            return Err(NpmError::Offline {
                name: p.name.clone(),
                version: p.version.clone(),
                cache: cache_dir(),
            })
        }
        None => {
            let b = super::registry::download(&p.resolved, max_bytes, None).map_err(fetch_err)?;
            if !ok(&b) {
                return Err(NpmError::Tarball {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    why: format!(
                        "{} does not match the lock's integrity (sha512): the registry served another file, or the lock is wrong",
                        p.resolved
                    ),
                });
            }
            b
        }
    };
    super::registry::store(&cached, &bytes).map_err(fetch_err)?;
    Ok(bytes)
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
    super::registry::join_under(base, rel, false, "the package's directory")
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
    .filter(|l| super::pypi::is_spdx_expression(l));
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

/// `pkg:npm/NAME@VERSION`, a scope as the percent-encoded namespace (`pkg:npm/%40s/b@1`).
pub fn purl(name: &str, version: &str) -> String {
    let enc = |s: &str| s.replace('%', "%25").replace('@', "%40");
    match name.split_once('/') {
        Some((scope, n)) => format!("pkg:npm/{}/{}@{}", enc(scope), enc(n), enc(version)),
        None => format!("pkg:npm/{}@{}", enc(name), enc(version)),
    }
}

/// The SBOM component of an installed npm package.
pub fn component(p: &LockedPackage, inst: &Installed, tarball_sha256: String) -> ComponentSpec {
    let purl = purl(&p.name, &p.version);
    ComponentSpec {
        bom_ref: format!("{purl}#{}", p.key),
        classification: "library",
        name: p.name.clone(),
        version: p.version.clone(),
        description: Some(match &inst.description {
            Some(d) => format!("npm package {} ({d})", p.key),
            None => format!("npm package {}", p.key),
        }),
        purl: Some(purl),
        license: inst.license.clone(),
        sha256: tarball_sha256,
        files: Vec::new(),
        properties: vec![
            (prop::ORIGIN.into(), "npm-package".into()),
            (prop::BYTES_INSTALLED.into(), inst.bytes.to_string()),
            (
                "stratos:npm-integrity-sha512".into(),
                hex::encode(&p.sha512),
            ),
            ("stratos:npm-resolved".into(), p.resolved.clone()),
        ],
        depends_on: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integrity(b: &[u8]) -> String {
        use base64::Engine;
        format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(b))
        )
    }

    fn lock(packages: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "name": "fn", "lockfileVersion": 3, "requires": true, "packages": packages
        }))
        .unwrap()
    }

    #[test]
    fn plans_what_npm_ci_omit_dev_installs() {
        let i = integrity(b"x");
        let l = lock(serde_json::json!({
            "": {"name": "fn", "dependencies": {"a": "1"}},
            "node_modules/a": {"version": "1.0.0", "resolved": "https://registry.npmjs.org/a/-/a-1.0.0.tgz", "integrity": i, "license": "MIT", "bin": {"a": "cli.js"}},
            "node_modules/a/node_modules/@s/b": {"version": "2.0.0", "resolved": "https://registry.npmjs.org/@s/b/-/b-2.0.0.tgz", "integrity": i, "hasInstallScript": true},
            "node_modules/dev": {"version": "1.0.0", "resolved": "https://r/x.tgz", "integrity": i, "dev": true},
            "node_modules/mac": {"version": "1.0.0", "resolved": "https://r/x.tgz", "integrity": i, "optional": true, "os": ["darwin"]},
        }));
        let p = plan(&l, Path::new("package-lock.json")).unwrap();
        assert_eq!(p.packages.len(), 2);
        assert_eq!(p.packages[1].name, "@s/b");
        assert!(p.packages[1].has_install_script);
        assert_eq!(p.packages[0].bin["a"], "cli.js");
        assert_eq!(p.skipped.len(), 2);
        assert_eq!(purl("@s/b", "2.0.0"), "pkg:npm/%40s/b@2.0.0");
        // Without `resolved` (omit-lockfile-registry-resolved): npm's default registry.
        let l =
            lock(serde_json::json!({"node_modules/@s/c": {"version": "3.0.0", "integrity": i}}));
        let p = plan(&l, Path::new("package-lock.json")).unwrap();
        assert_eq!(
            p.packages[0].resolved,
            "https://registry.npmjs.org/@s/c/-/c-3.0.0.tgz"
        );
    }

    #[test]
    fn bad_locks_name_the_entry() {
        let i = integrity(b"x");
        for (pkgs, want) in [
            (
                serde_json::json!({"node_modules/a": {"version": "1", "resolved": "https://r/a.tgz", "integrity": "sha1-AAAA"}}),
                "no sha512",
            ),
            (
                serde_json::json!({"node_modules/a": {"version": "1", "resolved": "http://r/a.tgz", "integrity": i}}),
                "only https://",
            ),
            (
                serde_json::json!({"node_modules/../../etc": {"version": "1", "resolved": "https://r/a.tgz", "integrity": i}}),
                "is not a package name",
            ),
            (
                serde_json::json!({"packages/local": {"link": true}}),
                "not under node_modules/",
            ),
            (
                serde_json::json!({"node_modules/a": {"link": true, "resolved": "packages/a"}}),
                "a link to a local folder",
            ),
            (
                serde_json::json!({"node_modules/w": {"version": "1", "resolved": "https://r/a.tgz", "integrity": i, "os": ["win32"]}}),
                "not for Linux x64",
            ),
            (
                serde_json::json!({"node_modules/evil": {"version": "1", "resolved": "https://r/a.tgz", "integrity": i, "bin": {"ls\u{1b}]0;pwned\u{7}": "cli.js"}}}),
                "packages[\"node_modules/evil\"]: \"bin\": \"ls\\u{1b}]0;pwned\\u{7}\" -> \"cli.js\" holds a control character",
            ),
            (
                serde_json::json!({"node_modules/evil": {"version": "1", "resolved": "https://r/a.tgz", "integrity": i, "bin": {"evil": "cli\n.js"}}}),
                "\"bin\": \"evil\" -> \"cli\\n.js\" holds a control character",
            ),
        ] {
            let e = plan(&lock(pkgs.clone()), Path::new("l.json"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{pkgs}: {e}");
            assert!(e.starts_with("l.json"), "{e}");
        }
        let v1 = serde_json::to_vec(&serde_json::json!({"lockfileVersion": 1, "dependencies": {}}))
            .unwrap();
        assert!(plan(&v1, Path::new("l.json"))
            .unwrap_err()
            .to_string()
            .contains("lockfileVersion 1"));
    }
}
