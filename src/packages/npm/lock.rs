//! What a `package-lock.json` says to install: every package at its `node_modules` path, pinned
//! by its sha512 integrity; development-only and other platforms' optional packages left out.

use std::collections::BTreeMap;
use std::path::Path;

use super::NpmError;
use crate::arch::Arch;

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
pub(super) fn name_of_key(key: &str) -> Option<&str> {
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

/// Reads a lockfile (v2/v3) into what to install in an `arch` image, in lock order (sorted
/// keys).
pub fn plan(text: &[u8], file: &Path, arch: Arch) -> Result<Plan, NpmError> {
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
        let planned = plan_entry(key, p, arch).map_err(|why| NpmError::Entry {
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
fn plan_entry(key: &str, p: &serde_json::Value, arch: Arch) -> Result<Planned, String> {
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
    let cpu = arch.npm_cpu();
    if !fits(p, "os", "linux") || !fits(p, "cpu", cpu) {
        if flag("optional") {
            return Ok(Planned::Skip("optional, for another platform"));
        }
        return Err(format!(
            "not for Linux {cpu} (os {}, cpu {}) and not optional",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packages::npm::purl;
    use sha2::Digest;

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
        let p = plan(&l, Path::new("package-lock.json"), Arch::X86_64).unwrap();
        assert_eq!(p.packages.len(), 2);
        assert_eq!(p.packages[1].name, "@s/b");
        assert!(p.packages[1].has_install_script);
        assert_eq!(p.packages[0].bin["a"], "cli.js");
        assert_eq!(p.skipped.len(), 2);
        assert_eq!(purl("@s/b", "2.0.0"), "pkg:npm/%40s/b@2.0.0");
        // Without `resolved` (omit-lockfile-registry-resolved): npm's default registry.
        let l =
            lock(serde_json::json!({"node_modules/@s/c": {"version": "3.0.0", "integrity": i}}));
        let p = plan(&l, Path::new("package-lock.json"), Arch::X86_64).unwrap();
        assert_eq!(
            p.packages[0].resolved,
            "https://registry.npmjs.org/@s/c/-/c-3.0.0.tgz"
        );
    }

    #[test]
    fn the_cpu_field_is_matched_with_the_image_architecture() {
        let i = integrity(b"x");
        let entry = |cpu: serde_json::Value, optional: bool| serde_json::json!({"version": "1.0.0", "resolved": "https://r/x.tgz", "integrity": i, "optional": optional, "os": ["linux"], "cpu": cpu});
        let l = lock(serde_json::json!({
            "node_modules/any": {"version": "1.0.0", "resolved": "https://r/x.tgz", "integrity": i},
            "node_modules/arm": entry(serde_json::json!(["arm64"]), true),
            "node_modules/x64": entry(serde_json::json!(["x64"]), true),
            "node_modules/not-arm": entry(serde_json::json!(["!arm64"]), true),
        }));
        let installed = |arch| {
            plan(&l, Path::new("package-lock.json"), arch)
                .unwrap()
                .packages
                .into_iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(installed(Arch::Aarch64), ["any", "arm"]);
        assert_eq!(installed(Arch::X86_64), ["any", "not-arm", "x64"]);
        // Not optional: a package for the other architecture is an error naming this one.
        let l =
            lock(serde_json::json!({"node_modules/x64": entry(serde_json::json!(["x64"]), false)}));
        let e = plan(&l, Path::new("l.json"), Arch::Aarch64).unwrap_err();
        assert_eq!(
            e.to_string(),
            "l.json: packages[\"node_modules/x64\"]: not for Linux arm64 (os [\"linux\"], cpu [\"x64\"]) and not optional"
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
            let e = plan(&lock(pkgs.clone()), Path::new("l.json"), Arch::X86_64)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{pkgs}: {e}");
            assert!(e.starts_with("l.json"), "{e}");
        }
        let v1 = serde_json::to_vec(&serde_json::json!({"lockfileVersion": 1, "dependencies": {}}))
            .unwrap();
        assert!(plan(&v1, Path::new("l.json"), Arch::X86_64)
            .unwrap_err()
            .to_string()
            .contains("lockfileVersion 1"));
    }
}
