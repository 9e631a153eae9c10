//! Dependency resolution over Debian `Packages` indexes: what `stratos lock` pins.
//!
//! Follows `Depends` and `Pre-Depends` (alternatives in order, virtual packages through
//! `Provides`, version constraints with dpkg's ordering). `Recommends`, `Suggests`,
//! `Conflicts` and `Breaks` are not considered: an image holds only what is needed to run and
//! nothing is installed twice. Deterministic: the same indexes and roots give the same set.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::index::{compare_versions, Dep, Index, Op, Pkg};

/// What a profile allows (`[packages] origins`, `[packages.pin]`); how it applies is below.
pub use crate::profile::{Pin, Policy};

impl Policy {
    /// Whether the profile allows this build of a package.
    pub fn allows(&self, p: &Pkg) -> bool {
        self.allows_build(&p.name, &p.version, &p.origin)
    }

    /// Whether the profile allows `name` `version` from `origin`.
    pub fn allows_build(&self, name: &str, version: &str, origin: &str) -> bool {
        let pin = self.pins.get(name);
        let origin_ok = match pin.and_then(|p| p.origin.as_deref()) {
            Some(o) => origin == o,
            None => self.origins.is_empty() || self.origins.iter().any(|o| o == origin),
        };
        let version_ok = pin
            .and_then(|p| p.version.as_deref())
            .map_or(true, |pat| glob_match(pat, version));
        origin_ok && version_ok
    }

    /// Why a build is not allowed, for errors.
    fn rule_for(&self, name: &str) -> String {
        match self.pins.get(name) {
            Some(pin) => {
                let mut parts = Vec::new();
                if let Some(o) = &pin.origin {
                    parts.push(format!("origin = {o:?}"));
                }
                if let Some(v) = &pin.version {
                    parts.push(format!("version = {v:?}"));
                }
                format!("[packages.pin] {name} = {{ {} }}", parts.join(", "))
            }
            None => format!("[packages] origins = {:?}", self.origins),
        }
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

fn satisfies(version: &str, constraint: &Option<(Op, String)>) -> bool {
    match constraint {
        None => true,
        Some((op, v)) => op.holds(compare_versions(version, v)),
    }
}

/// A resolved set: each chosen package and what pulled it in (`profile` for roots).
#[derive(Debug, Clone)]
pub struct Resolution {
    pub packages: BTreeMap<String, Pkg>,
    pub required_by: BTreeMap<String, BTreeSet<String>>,
}

/// Why a set of packages could not be resolved or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("{name} is a virtual package; name one of its providers: {providers}")]
    Virtual { name: String, providers: String },
    #[error("package {0} is not in the apt indexes (run `apt-get update`, check the name)")]
    Unknown(String),
    #[error("{needer} needs {dep}, but {name} {version} was already chosen ({chain})")]
    Conflict {
        needer: String,
        dep: String,
        name: String,
        version: String,
        chain: String,
    },
    #[error(
        "cannot satisfy {needer}'s dependency on {alternatives} ({chain}); available: {available}"
    )]
    Unsatisfiable {
        needer: String,
        alternatives: String,
        chain: String,
        available: String,
    },
    #[error("{name} is offered by more than one origin ({offers}); say which one the image takes in the profile: [packages.pin] {name} = {{ origin = \"...\" }}, or [packages] origins = [\"...\"]")]
    AmbiguousOrigin { name: String, offers: String },
    #[error("{name}: no build of it is allowed by {rule} ({chain}); the indexes offer: {offers}")]
    Excluded {
        name: String,
        rule: String,
        chain: String,
        offers: String,
    },
    /// A malformed index (the message names the file and line) or apt itself failing.
    #[error("{0}")]
    Index(String),
}

impl From<String> for ResolveError {
    fn from(s: String) -> Self {
        ResolveError::Index(s)
    }
}

/// Resolves the closure of `roots`: each root at its best version, then breadth first every
/// dependency group: satisfied by something already chosen, else its first alternative that
/// exists (a real package, then a provider).
pub fn resolve(index: &Index, roots: &[String]) -> Result<Resolution, ResolveError> {
    resolve_with(index, roots, &Policy::default())
}

/// [`resolve`] taking only the builds `policy` allows.
pub fn resolve_with(
    index: &Index,
    roots: &[String],
    policy: &Policy,
) -> Result<Resolution, ResolveError> {
    let mut r = Resolver {
        index,
        policy,
        chosen: BTreeMap::new(),
        required_by: BTreeMap::new(),
        chain: BTreeMap::new(),
        queue: VecDeque::new(),
    };
    for root in roots {
        r.add_root(root)?;
    }
    while let Some(name) = r.queue.pop_front() {
        let pkg = r.chosen[&name].clone();
        for group in &pkg.depends {
            if let Some(s) = r.satisfied(group) {
                if s != name {
                    r.required_by.entry(s).or_default().insert(name.clone());
                }
                continue;
            }
            let p = r.pick(&name, group)?;
            r.choose(p, &name);
        }
    }
    Ok(Resolution {
        packages: r.chosen,
        required_by: r.required_by,
    })
}

/// The state of one resolution.
struct Resolver<'a> {
    index: &'a Index,
    policy: &'a Policy,
    chosen: BTreeMap<String, Pkg>,
    required_by: BTreeMap<String, BTreeSet<String>>,
    /// package → who pulled it in first (for "profile -> a -> b" in errors).
    chain: BTreeMap<String, String>,
    queue: VecDeque<String>,
}

impl<'a> Resolver<'a> {
    fn add_root(&mut self, root: &str) -> Result<(), ResolveError> {
        let p = self.best(root, &None)?.ok_or_else(|| {
            if self.index.providers.contains_key(root) {
                ResolveError::Virtual {
                    name: root.to_owned(),
                    providers: providers_of(self.index, root),
                }
            } else {
                ResolveError::Unknown(root.to_owned())
            }
        })?;
        self.required_by
            .entry(root.to_owned())
            .or_default()
            .insert("profile".into());
        if !self.chosen.contains_key(root) {
            self.chosen.insert(root.to_owned(), p.clone());
            self.queue.push_back(root.to_owned());
        }
        Ok(())
    }

    /// The highest version of `name` satisfying `constraint` among the builds the policy
    /// allows; an error when the policy allows none of several, or several origins offer it.
    fn best(
        &self,
        name: &str,
        constraint: &Option<(Op, String)>,
    ) -> Result<Option<&'a Pkg>, ResolveError> {
        let index: &'a Index = self.index;
        let Some(all) = index.packages.get(name) else {
            return Ok(None);
        };
        let fitting: Vec<&Pkg> = all
            .iter()
            .filter(|p| satisfies(&p.version, constraint))
            .collect();
        let allowed: Vec<&Pkg> = fitting
            .iter()
            .copied()
            .filter(|p| self.policy.allows(p))
            .collect();
        let offers = |list: &[&Pkg]| {
            let mut v: Vec<String> = list
                .iter()
                .map(|p| {
                    let origin = if p.origin.is_empty() {
                        "unknown origin"
                    } else {
                        &p.origin
                    };
                    format!("{origin} {}", p.version)
                })
                .collect();
            v.sort();
            v.join(", ")
        };
        if allowed.is_empty() {
            if fitting.is_empty() {
                return Ok(None);
            }
            return Err(ResolveError::Excluded {
                name: name.to_owned(),
                rule: self.policy.rule_for(name),
                chain: self.why(name),
                offers: offers(&fitting),
            });
        }
        let origins: BTreeSet<&str> = allowed.iter().map(|p| p.origin.as_str()).collect();
        if origins.len() > 1 {
            return Err(ResolveError::AmbiguousOrigin {
                name: name.to_owned(),
                offers: offers(&allowed),
            });
        }
        Ok(allowed
            .into_iter()
            .max_by(|a, b| compare_versions(&a.version, &b.version)))
    }

    /// How `name` came to be needed: `profile -> a -> name`.
    fn why(&self, name: &str) -> String {
        let mut n = name.to_owned();
        let mut path = vec![n.clone()];
        while let Some(parent) = self.chain.get(&n) {
            if path.contains(parent) {
                break;
            }
            path.push(parent.clone());
            n = parent.clone();
        }
        path.reverse();
        format!("profile -> {}", path.join(" -> "))
    }

    /// The chosen package (itself or a provider) that already satisfies the group, if any.
    fn satisfied(&self, group: &[Dep]) -> Option<String> {
        group.iter().find_map(|d| {
            if let Some(c) = self.chosen.get(&d.name) {
                if satisfies(&c.version, &d.constraint) {
                    return Some(c.name.clone());
                }
            }
            self.chosen
                .values()
                .find(|c| {
                    c.provides
                        .iter()
                        .any(|(v, pv)| v == &d.name && provided_satisfies(pv, &d.constraint))
                })
                .map(|c| c.name.clone())
        })
    }

    /// The first alternative of `group` that can be satisfied: a real package, then the first
    /// provider by name.
    fn pick(&self, needer: &str, group: &[Dep]) -> Result<Pkg, ResolveError> {
        for d in group {
            if let Some(p) = self.best(&d.name, &d.constraint)? {
                if let Some(c) = self.chosen.get(&p.name) {
                    // Another version was already chosen and does not satisfy this.
                    return Err(ResolveError::Conflict {
                        needer: needer.to_owned(),
                        dep: d.to_string(),
                        name: c.name.clone(),
                        version: c.version.clone(),
                        chain: self.why(needer),
                    });
                }
                return Ok(p.clone());
            }
            if let Some(p) = self.provider(d) {
                return Ok(p.clone());
            }
        }
        let available: Vec<String> = group
            .iter()
            .filter_map(|d| self.index.packages.get(&d.name))
            .flatten()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect();
        Err(ResolveError::Unsatisfiable {
            needer: needer.to_owned(),
            alternatives: group
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" | "),
            chain: self.why(needer),
            available: if available.is_empty() {
                "none".to_owned()
            } else {
                available.join(", ")
            },
        })
    }

    /// The first provider (by name, then version) of a virtual dependency.
    fn provider(&self, d: &Dep) -> Option<&Pkg> {
        let mut provs: Vec<&(String, String, Option<String>)> = self
            .index
            .providers
            .get(&d.name)
            .map(|v| {
                v.iter()
                    .filter(|(_, _, pv)| provided_satisfies(pv, &d.constraint))
                    .collect()
            })
            .unwrap_or_default();
        provs.sort();
        provs.iter().find_map(|(pn, pv, _)| {
            self.index
                .packages
                .get(pn)?
                .iter()
                .find(|p| &p.version == pv && self.policy.allows(p))
        })
    }

    fn choose(&mut self, p: Pkg, needer: &str) {
        self.required_by
            .entry(p.name.clone())
            .or_default()
            .insert(needer.to_owned());
        self.chain.insert(p.name.clone(), needer.to_owned());
        self.queue.push_back(p.name.clone());
        self.chosen.insert(p.name.clone(), p);
    }
}

/// Whether a provided version (`Provides: v (= 1)`, or none) meets a constraint: an
/// unversioned provide satisfies only unversioned dependencies.
fn provided_satisfies(provided: &Option<String>, constraint: &Option<(Op, String)>) -> bool {
    match (constraint, provided) {
        (None, _) => true,
        (Some(_), Some(pv)) => satisfies(pv, constraint),
        (Some(_), None) => false,
    }
}

fn providers_of(index: &Index, v: &str) -> String {
    let mut names: Vec<&str> = index
        .providers
        .get(v)
        .map(|p| p.iter().map(|(n, _, _)| n.as_str()).collect())
        .unwrap_or_default();
    names.sort_unstable();
    names.dedup();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;

    const PACKAGES: &str = "\
Package: app
Version: 1.0-1
Architecture: amd64
Depends: libc6 (>= 2.36), mta | mail-transport-agent, libfoo (>= 2) | libfoo-compat, libgcc-s1 (<< 13) [amd64] <!nocheck>
Pre-Depends: dpkg-helper
Filename: pool/a/app_1.0-1_amd64.deb
Size: 100
SHA256: aa

Package: libc6
Version: 2.36-9
Architecture: amd64
Depends: libgcc-s1
Size: 10
SHA256: bb

Package: libc6
Version: 2.36-9+deb12u4
Architecture: amd64
Depends: libgcc-s1
Size: 11
SHA256: cc

Package: libgcc-s1
Version: 12.2.0-14
Architecture: amd64
Depends: libc6 (>= 2.35)
SHA256: dd

Package: postfix
Version: 3.7
Architecture: amd64
Provides: mail-transport-agent
SHA256: ee

Package: exim4
Version: 4.96
Architecture: amd64
Provides: mail-transport-agent
SHA256: ff

Package: libfoo
Version: 1.5
Architecture: amd64
SHA256: 11

Package: libfoo-compat
Version: 1.0
Architecture: all
SHA256: 22

Package: dpkg-helper
Version: 1~rc1
Architecture: amd64
SHA256: 33

Package: broken
Version: 1
Architecture: amd64
Depends: libc6 (>= 3.0)
SHA256: 44

Package: other-arch
Version: 1
Architecture: arm64
SHA256: 55
";

    fn index() -> Index {
        let mut i = Index::default();
        i.add(PACKAGES, "Packages", Arch::X86_64).unwrap();
        i
    }

    #[test]
    fn resolves_alternatives_virtuals_constraints_and_cycles() {
        let r = resolve(&index(), &["app".into()]).unwrap();
        let names: Vec<&str> = r.packages.keys().map(String::as_str).collect();
        // mta does not exist: mail-transport-agent's providers, first by name (exim4);
        // libfoo 1.5 is too old for (>= 2): libfoo-compat. libc6 <-> libgcc-s1 is a cycle.
        assert_eq!(
            names,
            [
                "app",
                "dpkg-helper",
                "exim4",
                "libc6",
                "libfoo-compat",
                "libgcc-s1"
            ]
        );
        assert_eq!(r.packages["libc6"].version, "2.36-9+deb12u4");
        assert_eq!(
            r.required_by["libc6"],
            ["app", "libgcc-s1"].into_iter().map(String::from).collect()
        );
        assert_eq!(
            r.required_by["app"],
            ["profile".to_owned()].into_iter().collect()
        );
        // A provider already chosen satisfies the virtual package.
        let r = resolve(&index(), &["postfix".into(), "app".into()]).unwrap();
        assert!(r.packages.contains_key("postfix") && !r.packages.contains_key("exim4"));
    }

    #[test]
    fn unsatisfiable_and_unknown_are_clear_errors() {
        let e = resolve(&index(), &["broken".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot satisfy broken's dependency on libc6 (>= 3.0)"),
            "{e}"
        );
        assert!(
            e.contains("available: libc6 2.36-9, libc6 2.36-9+deb12u4"),
            "{e}"
        );
        let e = resolve(&index(), &["nope".into()]).unwrap_err().to_string();
        assert!(e.contains("not in the apt indexes"), "{e}");
        let e = resolve(&index(), &["mail-transport-agent".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("virtual package; name one of its providers: exim4, postfix"),
            "{e}"
        );
        assert!(resolve(&index(), &["other-arch".into()]).is_err());
    }

    const DEBIAN: &str = "\
Package: nodejs
Version: 18.20.4+dfsg-1~deb12u3
Architecture: amd64
Depends: libc6, libnode108 (= 18.20.4+dfsg-1~deb12u3)
Filename: pool/n/nodejs.deb
Size: 1
SHA256: aa

Package: libnode108
Version: 18.20.4+dfsg-1~deb12u3
Architecture: amd64
Depends: libc6
Filename: pool/l/libnode108.deb
Size: 1
SHA256: bb

Package: libc6
Version: 2.36-9+deb12u14
Architecture: amd64
Filename: pool/l/libc6.deb
Size: 1
SHA256: cc
";

    const VENDOR: &str = "\
Package: nodejs
Version: 20.20.2-1nodesource1
Architecture: amd64
Depends: libc6
Filename: pool/n/nodejs-20.deb
Size: 1
SHA256: dd
";

    fn two_origins() -> Index {
        let mut i = Index::default();
        i.add_from(DEBIAN, "debian", "Debian", Arch::X86_64)
            .unwrap();
        i.add_from(VENDOR, "vendor", "Nodesource", Arch::X86_64)
            .unwrap();
        i
    }

    fn pin(origin: Option<&str>, version: Option<&str>) -> Pin {
        Pin {
            origin: origin.map(str::to_owned),
            version: version.map(str::to_owned),
        }
    }

    #[test]
    fn a_package_offered_by_two_origins_is_refused_until_the_profile_says_which() {
        let i = two_origins();
        let e = resolve(&i, &["nodejs".into()]).unwrap_err();
        assert_eq!(
            e,
            ResolveError::AmbiguousOrigin {
                name: "nodejs".into(),
                offers: "Debian 18.20.4+dfsg-1~deb12u3, Nodesource 20.20.2-1nodesource1".into()
            }
        );
        assert!(e
            .to_string()
            .contains("[packages.pin] nodejs = { origin = \"...\" }"));
        // Pinned to Debian's, the lower version is taken, with its Debian dependencies.
        let mut p = Policy::default();
        p.pins.insert("nodejs".into(), pin(Some("Debian"), None));
        let r = resolve_with(&i, &["nodejs".into()], &p).unwrap();
        assert_eq!(r.packages["nodejs"].version, "18.20.4+dfsg-1~deb12u3");
        assert_eq!(r.packages["nodejs"].origin, "Debian");
        assert!(r.packages.contains_key("libnode108"));
        // The same through the profile-wide origins.
        let p = Policy {
            origins: vec!["Debian".into()],
            ..Policy::default()
        };
        let r = resolve_with(&i, &["nodejs".into()], &p).unwrap();
        assert_eq!(r.packages["nodejs"].version, "18.20.4+dfsg-1~deb12u3");
        // Or the vendor's, by version pattern and origin.
        let mut p = Policy::default();
        p.pins
            .insert("nodejs".into(), pin(Some("Nodesource"), Some("20.*")));
        let r = resolve_with(&i, &["nodejs".into()], &p).unwrap();
        assert_eq!(r.packages["nodejs"].version, "20.20.2-1nodesource1");
        assert!(!r.packages.contains_key("libnode108"));
        // A version pattern alone narrows the choice to one origin here.
        let mut p = Policy::default();
        p.pins.insert("nodejs".into(), pin(None, Some("18.*")));
        let r = resolve_with(&i, &["nodejs".into()], &p).unwrap();
        assert_eq!(r.packages["nodejs"].origin, "Debian");
    }

    #[test]
    fn a_pin_nothing_matches_names_what_is_offered() {
        let i = two_origins();
        let mut p = Policy::default();
        p.pins.insert("nodejs".into(), pin(Some("Ubuntu"), None));
        let e = resolve_with(&i, &["nodejs".into()], &p).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("nodejs: no build of it is allowed by [packages.pin] nodejs = { origin = \"Ubuntu\" }")
                && m.contains("Debian 18.20.4+dfsg-1~deb12u3, Nodesource 20.20.2-1nodesource1"),
            "{m}"
        );
        // A dependency outside the allowed origins is refused too, naming the chain.
        let mut i = Index::default();
        i.add_from(DEBIAN, "debian", "Debian", Arch::X86_64)
            .unwrap();
        let p = Policy {
            origins: vec!["Nodesource".into()],
            ..Policy::default()
        };
        let e = resolve_with(&i, &["nodejs".into()], &p).unwrap_err();
        assert!(matches!(e, ResolveError::Excluded { .. }), "{e}");
    }

    #[test]
    fn version_patterns() {
        assert!(glob_match("18.*", "18.20.4+dfsg-1~deb12u3"));
        assert!(!glob_match("18.*", "20.20.2"));
        assert!(glob_match("*deb12u*", "18.20.4+dfsg-1~deb12u3"));
        assert!(glob_match("*", ""));
        assert!(glob_match("1.0", "1.0"));
        assert!(!glob_match("1.0", "1.0.1"));
        assert!(!glob_match("a*b*c", "ac"));
        assert!(glob_match("a*b*c", "abc"));
        assert!(!glob_match("ab*ba", "aba"));
    }
}
