//! Debian's `Packages` indexes: their paragraphs (`Package`, `Version`, `Depends`, `Provides`,
//! ...) read into packages, and dpkg's version ordering.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::arch::Arch;
use crate::digest::Sha256;

/// One binary package of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkg {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub depends: Vec<Vec<Dep>>,
    pub provides: Vec<(String, Option<String>)>,
    pub filename: String,
    /// The `.deb`'s `SHA256`, when the index gives a well-formed one.
    pub sha256: Option<Sha256>,
    pub size: u64,
    /// The `Origin` of the repository whose index listed it (e.g. `Debian`); empty if unknown.
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    pub name: String,
    pub constraint: Option<(Op, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Op {
    pub(super) fn text(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }

    pub(super) fn holds(self, o: Ordering) -> bool {
        match self {
            Op::Lt => o.is_lt(),
            Op::Le => o.is_le(),
            Op::Eq => o.is_eq(),
            Op::Ge => o.is_ge(),
            Op::Gt => o.is_gt(),
        }
    }
}

impl std::fmt::Display for Dep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.constraint {
            Some((op, v)) => write!(f, "{} ({} {v})", self.name, op.text()),
            None => f.write_str(&self.name),
        }
    }
}

/// dpkg's version ordering: `[epoch:]upstream[-revision]`, `~` before everything, digits
/// compared as numbers.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) if e.bytes().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
            _ => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((u, r)) => (epoch, u, r),
            None => (epoch, rest, ""),
        }
    }
    fn order(c: Option<u8>) -> i32 {
        match c {
            None => 0,
            Some(b'~') => -1,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => i32::from(c),
            Some(c) => i32::from(c) + 256,
        }
    }
    fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let mut first_diff = 0;
            while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit())
            {
                let ac = order(a.get(i).copied().filter(|c| !c.is_ascii_digit()));
                let bc = order(b.get(j).copied().filter(|c| !c.is_ascii_digit()));
                if ac != bc {
                    return ac.cmp(&bc);
                }
                if i < a.len() && !a[i].is_ascii_digit() {
                    i += 1;
                }
                if j < b.len() && !b[j].is_ascii_digit() {
                    j += 1;
                }
            }
            while i < a.len() && a[i] == b'0' {
                i += 1;
            }
            while j < b.len() && b[j] == b'0' {
                j += 1;
            }
            while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
                if first_diff == 0 {
                    first_diff = i32::from(a[i]) - i32::from(b[j]);
                }
                i += 1;
                j += 1;
            }
            if i < a.len() && a[i].is_ascii_digit() {
                return Ordering::Greater;
            }
            if j < b.len() && b[j].is_ascii_digit() {
                return Ordering::Less;
            }
            if first_diff != 0 {
                return first_diff.cmp(&0);
            }
        }
        Ordering::Equal
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua.as_bytes(), ub.as_bytes()))
        .then_with(|| verrevcmp(ra.as_bytes(), rb.as_bytes()))
}

/// Parses a `Depends`-style field: `a (>= 1), b | c:any (<< 2)`.
pub fn parse_depends(field: &str) -> Result<Vec<Vec<Dep>>, String> {
    let mut out = Vec::new();
    for group in field.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        let mut alts = Vec::new();
        for alt in group.split('|').map(str::trim) {
            // Drop architecture restrictions `[amd64]` and build profiles `<!nocheck>`, which
            // come after the name and the version constraint.
            let alt = match (alt.find('('), alt.find(')')) {
                (Some(_), Some(close)) => &alt[..=close],
                _ => alt.split(['[', '<']).next().unwrap_or(""),
            }
            .trim();
            let (name, constraint) = match alt.split_once('(') {
                Some((n, rest)) => {
                    let inner = rest
                        .strip_suffix(')')
                        .ok_or_else(|| format!("unbalanced parenthesis in {alt:?}"))?
                        .trim();
                    let (op, v) = [
                        ("<<", Op::Lt),
                        ("<=", Op::Le),
                        (">=", Op::Ge),
                        (">>", Op::Gt),
                        ("=", Op::Eq),
                        ("<", Op::Le),
                        (">", Op::Ge),
                    ]
                    .iter()
                    .find_map(|(t, op)| inner.strip_prefix(t).map(|v| (*op, v.trim())))
                    .ok_or_else(|| format!("bad version constraint in {alt:?}"))?;
                    if v.is_empty() {
                        return Err(format!("empty version in {alt:?}"));
                    }
                    (n.trim(), Some((op, v.to_owned())))
                }
                None => (alt, None),
            };
            // `name:any`, `name:arm64`: the qualifier is dropped, as the index holds one
            // architecture's packages (and `all`).
            let name = name.split(':').next().unwrap_or("").trim();
            if name.is_empty() {
                return Err(format!("empty package name in {group:?}"));
            }
            alts.push(Dep {
                name: name.to_owned(),
                constraint,
            });
        }
        out.push(alts);
    }
    Ok(out)
}

/// All packages of one or more `Packages` files, for one architecture (plus `all`).
#[derive(Debug, Default)]
pub struct Index {
    /// name → every version seen.
    pub packages: BTreeMap<String, Vec<Pkg>>,
    /// virtual name → (provider name, provider version, provided version).
    pub providers: BTreeMap<String, Vec<(String, String, Option<String>)>>,
}

impl Index {
    /// Adds the paragraphs of a `Packages` file of unknown origin. `what` names it in errors.
    pub fn add(&mut self, text: &str, what: &str, arch: Arch) -> Result<(), String> {
        self.add_from(text, what, "", arch)
    }

    /// Adds the paragraphs of a `Packages` file from the repository whose `Origin` is
    /// `origin`. `what` names it in errors.
    pub fn add_from(
        &mut self,
        text: &str,
        what: &str,
        origin: &str,
        arch: Arch,
    ) -> Result<(), String> {
        let mut line_no = 0usize;
        let mut para_start = 1usize;
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in text.lines().chain(std::iter::once("")) {
            line_no += 1;
            if line.trim().is_empty() {
                if !fields.is_empty() {
                    self.add_paragraph(&fields, origin, arch)
                        .map_err(|e| format!("{what}:{para_start}: {e}"))?;
                    fields.clear();
                }
                para_start = line_no + 1;
                continue;
            }
            if line.starts_with([' ', '\t']) {
                match fields.last_mut() {
                    Some((_, v)) => {
                        v.push('\n');
                        v.push_str(line.trim());
                    }
                    None => {
                        return Err(format!(
                            "{what}:{line_no}: a continuation line with no field"
                        ))
                    }
                }
                continue;
            }
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| format!("{what}:{line_no}: expected `Field: value`"))?;
            fields.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        Ok(())
    }

    fn add_paragraph(
        &mut self,
        fields: &[(String, String)],
        origin: &str,
        arch: Arch,
    ) -> Result<(), String> {
        let get = |k: &str| {
            fields
                .iter()
                .find(|(f, _)| f.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        let name = get("Package").ok_or("a paragraph without Package")?;
        let a = get("Architecture").unwrap_or("");
        if a != arch.debian() && a != "all" {
            return Ok(());
        }
        let version = get("Version").ok_or_else(|| format!("{name}: no Version"))?;
        let mut depends = Vec::new();
        for f in ["Pre-Depends", "Depends"] {
            if let Some(v) = get(f) {
                depends.extend(parse_depends(v).map_err(|e| format!("{name} {f}: {e}"))?);
            }
        }
        let provides = match get("Provides") {
            Some(v) => parse_depends(v)
                .map_err(|e| format!("{name} Provides: {e}"))?
                .into_iter()
                .flatten()
                .map(|d| {
                    (
                        d.name,
                        d.constraint.filter(|(op, _)| *op == Op::Eq).map(|(_, v)| v),
                    )
                })
                .collect(),
            None => Vec::new(),
        };
        let pkg = Pkg {
            name: name.to_owned(),
            version: version.to_owned(),
            arch: a.to_owned(),
            depends,
            provides,
            filename: get("Filename").unwrap_or("").to_owned(),
            sha256: get("SHA256").and_then(|h| Sha256::parse(h).ok()),
            size: get("Size").and_then(|s| s.parse().ok()).unwrap_or(0),
            origin: origin.to_owned(),
        };
        for (v, pv) in &pkg.provides {
            self.providers.entry(v.clone()).or_default().push((
                pkg.name.clone(),
                pkg.version.clone(),
                pv.clone(),
            ));
        }
        let versions = self.packages.entry(pkg.name.clone()).or_default();
        if !versions
            .iter()
            .any(|p| p.version == pkg.version && p.origin == pkg.origin)
        {
            versions.push(pkg);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_version_order() {
        use Ordering::*;
        for (a, b, o) in [
            ("1.0", "1.0", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0", "1.0+b1", Less),
            ("1:1.0", "2.0", Greater),
            ("2.36-9+deb12u4", "2.36-9", Greater),
            ("1.10", "1.9", Greater),
            ("1.0-1", "1.0-1~bpo", Greater),
            ("1.0a", "1.0", Greater),
            ("3.11.2-6+deb12u6", "3.11.2-6", Greater),
            ("0:1.2", "1.2", Equal),
        ] {
            assert_eq!(compare_versions(a, b), o, "{a} vs {b}");
        }
    }

    #[test]
    fn an_index_holds_its_architecture_and_all() {
        let text = "Package: a\nVersion: 1\nArchitecture: amd64\n\n\
                    Package: a\nVersion: 2\nArchitecture: arm64\nDepends: d\n\n\
                    Package: d\nVersion: 1\nArchitecture: all\n\n\
                    Package: e\nVersion: 1\nArchitecture: armhf\n";
        for (arch, a) in [
            (Arch::X86_64, ("1", "amd64")),
            (Arch::Aarch64, ("2", "arm64")),
        ] {
            let mut i = Index::default();
            i.add(text, "P", arch).unwrap();
            let got: Vec<(&str, &str, &str)> = i
                .packages
                .values()
                .flatten()
                .map(|p| (p.name.as_str(), p.version.as_str(), p.arch.as_str()))
                .collect();
            assert_eq!(got, [("a", a.0, a.1), ("d", "1", "all")], "{arch}");
        }
    }

    #[test]
    fn malformed_indexes_name_the_line() {
        let mut i = Index::default();
        let e = i
            .add(
                "Package: a\nVersion: 1\nArchitecture: amd64\nDepends: b (>= \n",
                "P",
                Arch::X86_64,
            )
            .unwrap_err();
        assert!(e.starts_with("P:1: a Depends"), "{e}");
        let e = i
            .add("Package: a\nno colon here\n", "P", Arch::X86_64)
            .unwrap_err();
        assert!(e.starts_with("P:2:"), "{e}");
    }
}
