//! Kernel modules from a kernel package's `lib/modules/<version>`: `modules.dep` parsing and the
//! dependency closure of the modules a profile asks for, in load order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: malformed modules.dep line")]
    Malformed { path: PathBuf, line: usize },
    #[error("kernel module {name:?} is not in {dir} (neither in modules.dep nor built in); check the name with `find {dir} -name '{name}.ko*'`")]
    Missing { name: String, dir: PathBuf },
    #[error("kernel module {name:?} depends on {dep:?}, which modules.dep does not list")]
    MissingDep { name: String, dep: String },
}

/// Canonical module name of a path: `kernel/drivers/net/virtio_net.ko.xz` → `virtio_net`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file
        .strip_suffix(".ko")
        .or_else(|| file.strip_suffix(".ko.xz"))
        .or_else(|| file.strip_suffix(".ko.zst"))
        .or_else(|| file.strip_suffix(".ko.gz"))
        .unwrap_or(file);
    stem.replace('-', "_")
}

/// `modules.dep` and `modules.builtin` of one kernel.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    /// name → (relative path, names of direct and indirect dependencies as listed)
    deps: BTreeMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
}

/// One module to install: its name and path relative to the modules directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    pub name: String,
    pub rel_path: String,
}

impl ModuleIndex {
    pub fn load(dir: &Path) -> Result<Self, ModuleError> {
        let dep_path = dir.join("modules.dep");
        let text = std::fs::read_to_string(&dep_path).map_err(|source| ModuleError::Read {
            path: dep_path.clone(),
            source,
        })?;
        let builtin = match std::fs::read_to_string(dir.join("modules.builtin")) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(ModuleError::Read {
                    path: dir.join("modules.builtin"),
                    source,
                })
            }
        };
        Self::parse(&text, &builtin).map_err(|line| ModuleError::Malformed {
            path: dep_path,
            line,
        })
    }

    /// Parses `modules.dep` and `modules.builtin` text; the error is the bad line number.
    pub fn parse(dep: &str, builtin: &str) -> Result<Self, usize> {
        let mut deps = BTreeMap::new();
        for (i, line) in dep.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (module, rest) = line.split_once(':').ok_or(i + 1)?;
            let module = module.trim();
            if module.is_empty() || module.contains("..") || module.starts_with('/') {
                return Err(i + 1);
            }
            let listed: Vec<String> = rest.split_whitespace().map(module_name).collect();
            deps.insert(module_name(module), (module.to_owned(), listed));
        }
        let builtin = builtin
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| module_name(l.trim()))
            .collect();
        Ok(ModuleIndex { deps, builtin })
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&name.replace('-', "_"))
    }

    /// The modules to load for `wanted`, dependencies first, each once. Built-in modules are
    /// skipped (they need no loading).
    pub fn closure(&self, wanted: &[String], dir: &Path) -> Result<Vec<ModuleFile>, ModuleError> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for w in wanted {
            let w = w.replace('-', "_");
            if self.is_builtin(&w) {
                continue;
            }
            if !self.deps.contains_key(&w) {
                return Err(ModuleError::Missing {
                    name: w,
                    dir: dir.to_owned(),
                });
            }
            self.visit(&w, &mut seen, &mut out)?;
        }
        Ok(out)
    }

    fn visit(
        &self,
        name: &str,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<ModuleFile>,
    ) -> Result<(), ModuleError> {
        if !seen.insert(name.to_owned()) {
            return Ok(());
        }
        let (rel, listed) = &self.deps[name];
        for d in listed {
            if !self.deps.contains_key(d) {
                return Err(ModuleError::MissingDep {
                    name: name.to_owned(),
                    dep: d.clone(),
                });
            }
            self.visit(d, seen, out)?;
        }
        out.push(ModuleFile {
            name: name.to_owned(),
            rel_path: rel.clone(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n\
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
kernel/net/core/failover.ko:\n\
kernel/drivers/block/zram/zram.ko.xz: kernel/mm/zsmalloc.ko.xz\n\
kernel/mm/zsmalloc.ko.xz:\n";

    #[test]
    fn closure_in_load_order() {
        let idx = ModuleIndex::parse(DEP, "kernel/drivers/virtio/virtio.ko\n").unwrap();
        let got = idx
            .closure(
                &["virtio-net".into(), "zram".into(), "virtio".into()],
                Path::new("/m"),
            )
            .unwrap();
        let names: Vec<&str> = got.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["failover", "net_failover", "virtio_net", "zsmalloc", "zram"]
        );
        assert_eq!(got[4].rel_path, "kernel/drivers/block/zram/zram.ko.xz");
    }

    #[test]
    fn missing_module_is_named() {
        let idx = ModuleIndex::parse(DEP, "").unwrap();
        let e = idx
            .closure(&["nope".into()], Path::new("/m"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"nope\""), "{e}");
    }

    #[test]
    fn malformed_lines() {
        assert_eq!(ModuleIndex::parse("no colon here\n", "").unwrap_err(), 1);
        assert_eq!(
            ModuleIndex::parse("ok.ko:\n../evil.ko:\n", "").unwrap_err(),
            2
        );
    }
}
