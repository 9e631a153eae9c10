//! Resolving a kernel's config: the base target, the fragments merged in, `olddefconfig`
//! (cached by source, fragments and toolchain), then every requested option checked against
//! the result, a mismatch explained from the Kconfig files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::cache::{clear_scratch, config_key, KernelCache, Lock};
use super::error::{io, KernelBuildError, Mismatch};
use super::make::{make, run_logged};
use super::source::{extract, source_digest};
use super::toolchain::Toolchain;
use crate::arch::Arch;
use crate::cache::Cache;
use crate::kernel::config::{Config, Value};
use crate::kernel::kconfig::Kconfig;
use crate::kernel::shipped;
use crate::profile::{KernelSourceSpec, Named};
use crate::progress::Progress;

fn config_line(name: &str, v: &Value) -> String {
    match v {
        Value::No => format!("# CONFIG_{name} is not set"),
        other => format!("CONFIG_{name}={other}"),
    }
}

/// Merges fragment options into a `.config` text: each option's old line is dropped and the
/// new one appended (what `scripts/kconfig/merge_config.sh` does).
pub fn merge(base: &str, fragments: &[(String, Config)]) -> String {
    let mut set: BTreeMap<&str, &Value> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for (_, f) in fragments {
        for (k, v) in &f.options {
            if set.insert(k, v).is_none() {
                order.push(k);
            }
        }
    }
    let mut out = String::new();
    for line in base.lines() {
        let name = line
            .strip_prefix("CONFIG_")
            .and_then(|l| l.split('=').next())
            .or_else(|| {
                line.strip_prefix("# CONFIG_")
                    .and_then(|l| l.strip_suffix(" is not set"))
            });
        if name.is_some_and(|n| set.contains_key(n)) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for k in order {
        out.push_str(&config_line(k, set[k]));
        out.push('\n');
    }
    out
}

/// Every option the fragments set that the final config does not hold (the last fragment
/// setting an option wins).
pub fn verify(
    fragments: &[(String, Config)],
    final_cfg: &Config,
) -> Vec<(String, Value, Value, String)> {
    let mut wanted: BTreeMap<String, (Value, String)> = BTreeMap::new();
    for (name, f) in fragments {
        for (k, v) in &f.options {
            wanted.insert(k.clone(), (v.clone(), name.clone()));
        }
    }
    let mut out = Vec::new();
    for (k, (asked, frag)) in wanted {
        let got = final_cfg.get(&k).cloned().unwrap_or(Value::No);
        let same = match (&asked, &got) {
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Num(a), Value::Num(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        };
        if !same {
            out.push((k, asked, got, frag));
        }
    }
    out
}

/// The resolved config of a profile's kernel, and what was asked of it.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The architecture it is configured for (and the kernel is built for).
    pub arch: Arch,
    pub source_dir: PathBuf,
    pub source_digest: String,
    /// `make <base>` output (what `kernel config` diffs against).
    pub base_config: Config,
    pub config_text: String,
    pub config: Config,
    pub fragments: Vec<(String, Config)>,
    pub mismatches: Vec<Mismatch>,
}

/// Extracts the source and resolves base + fragments into a final `.config` for `arch`
/// (cached), then checks every requested option, explaining mismatches from the Kconfig files.
pub fn resolve(
    spec: &KernelSourceSpec,
    cache: &Cache,
    arch: Arch,
    progress: &Progress,
) -> Result<Resolved, KernelBuildError> {
    // First: a fragment of another architecture fails before the source is read.
    let (fragments, texts) = read_fragments(&spec.fragments, arch)?;
    let kernels = KernelCache::new(cache);
    let digest = source_digest(&kernels, &spec.tarball)?;
    if let Some(want) = &spec.sha256 {
        if *want != digest {
            return Err(KernelBuildError::SourceDigest {
                path: spec.tarball.clone(),
                expected: want.to_string(),
                actual: digest,
            });
        }
    }
    let src = extract(&kernels, &spec.tarball, &digest, progress)?;
    let tools = Toolchain::detect(arch)?;
    let key = config_key(arch, &digest, spec.base.as_str(), &texts, &tools);
    let cfg_dir = kernels.configs();
    let cached = cfg_dir.join(format!("{key}.config"));
    let cached_base = cfg_dir.join(format!("{key}.base"));
    let (config_text, base_text) = match (
        std::fs::read_to_string(&cached),
        std::fs::read_to_string(&cached_base),
    ) {
        (Ok(c), Ok(b)) => (c, b),
        _ => {
            let lock = kernels.lock(&format!("config-{key}"), progress)?;
            let (config_text, base_text) = run_config(
                spec,
                &src,
                arch,
                &fragments,
                (&kernels.work(&format!("config-{key}")), &lock),
                progress,
            )?;
            std::fs::create_dir_all(&cfg_dir)
                .map_err(io(format!("creating {}", cfg_dir.display())))?;
            crate::fsio::write_atomic(&cached_base, base_text.as_bytes(), 0o644)
                .map_err(io("caching the base config"))?;
            crate::fsio::write_atomic(&cached, config_text.as_bytes(), 0o644)
                .map_err(io("caching the config"))?;
            (config_text, base_text)
        }
    };
    let parse = |text: &str, path: &Path| {
        Config::parse(text).map_err(|e| KernelBuildError::Fragment {
            path: path.to_owned(),
            why: e.to_string(),
        })
    };
    let config = parse(&config_text, &cached)?;
    let base_config = parse(&base_text, &cached_base)?;
    let mismatches = mismatches(&src, arch, &fragments, &config)?;
    Ok(Resolved {
        arch,
        source_dir: src,
        source_digest: digest,
        base_config,
        config_text,
        config,
        fragments,
        mismatches,
    })
}

/// The comment that restricts a fragment to architectures: `# stratos-arch: x86_64`.
pub const FRAGMENT_ARCH: &str = "# stratos-arch:";

/// The architectures a fragment is for, when it says (its `# stratos-arch:` line).
pub fn fragment_arches(text: &str) -> Option<Vec<Arch>> {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(FRAGMENT_ARCH))?;
    Some(
        line.split([' ', ','])
            .filter(|w| !w.is_empty())
            .filter_map(Arch::parse)
            .collect(),
    )
}

/// Each fragment parsed and named (by its file name), with its bytes (for the cache key).
#[allow(clippy::type_complexity)]
fn read_fragments(
    paths: &[PathBuf],
    arch: Arch,
) -> Result<(Vec<(String, Config)>, Vec<Vec<u8>>), KernelBuildError> {
    let mut fragments = Vec::new();
    let mut texts = Vec::new();
    for f in paths {
        let bad = |why: String| KernelBuildError::Fragment {
            path: f.clone(),
            why,
        };
        let text = crate::fsio::read_file(f, crate::fsio::caps::KERNEL_CONFIG, "a config fragment")
            .map_err(|e| bad(e.to_string()))?;
        let name = f
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("fragment")
            .to_owned();
        let parsed =
            Config::parse(&String::from_utf8_lossy(&text)).map_err(|e| bad(e.to_string()))?;
        if let Some(only) = fragment_arches(&String::from_utf8_lossy(&text)) {
            if !only.contains(&arch) {
                let names: Vec<&str> = only.iter().map(|a| a.name()).collect();
                return Err(bad(format!(
                    "is for {} only (its `{FRAGMENT_ARCH} {}` line), and this kernel is {}: list it under [kernel.{}] fragments in the profile, not [kernel] fragments",
                    names.join(" and "),
                    names.join(" "),
                    arch.name(),
                    names[0]
                )));
            }
        }
        texts.push(text);
        fragments.push((name, parsed));
    }
    Ok((fragments, texts))
}

/// `make BASE`, the fragments merged in, `make olddefconfig`, in the scratch directory `work`
/// (each `make` holding its `lock` as long as it runs): the final and the base `.config` texts.
fn run_config(
    spec: &KernelSourceSpec,
    src: &Path,
    arch: Arch,
    fragments: &[(String, Config)],
    (work, lock): (&Path, &Lock),
    progress: &Progress,
) -> Result<(String, String), KernelBuildError> {
    let step = progress.step(format!(
        "resolving the kernel config ({} + {} fragments)",
        spec.base,
        fragments.len()
    ));
    clear_scratch(work)?;
    std::fs::create_dir_all(work).map_err(io(format!("creating {}", work.display())))?;
    let log = work.join("config.log");
    let mut c = make(src, work, arch);
    c.arg(spec.base.as_str()).stdin(lock.for_child()?);
    run_logged(c, &format!("make {}", spec.base), &log)?;
    let base_text =
        std::fs::read_to_string(work.join(".config")).map_err(io("reading the base .config"))?;
    std::fs::write(work.join(".config"), merge(&base_text, fragments))
        .map_err(io("writing the merged .config"))?;
    let mut c = make(src, work, arch);
    c.arg("olddefconfig").stdin(lock.for_child()?);
    run_logged(c, "make olddefconfig", &log)?;
    let config_text =
        std::fs::read_to_string(work.join(".config")).map_err(io("reading the final .config"))?;
    clear_scratch(work)?;
    step.done();
    Ok((config_text, base_text))
}

/// Every option a fragment set that the final config does not hold, each explained from the
/// Kconfig files (the unmet `depends on`).
fn mismatches(
    src: &Path,
    arch: Arch,
    fragments: &[(String, Config)],
    config: &Config,
) -> Result<Vec<Mismatch>, KernelBuildError> {
    let raw = verify(fragments, config);
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    let kconfig = Kconfig::load(src, arch).map_err(io("reading the Kconfig files"))?;
    let mut in_use: Vec<&str> = fragments.iter().map(|(name, _)| name.as_str()).collect();
    // Another architecture's shipped fragments are never proposed.
    for (name, text) in shipped::SHIPPED {
        if fragment_arches(text).is_some_and(|only| !only.contains(&arch)) {
            in_use.push(name);
        }
    }
    Ok(raw
        .into_iter()
        .map(|(option, asked, got, fragment)| {
            let turned_off = matches!(asked, Value::Yes | Value::Module)
                && !matches!(got, Value::Yes | Value::Module);
            let fix = turned_off
                .then(|| kconfig.unmet_symbols(&option, config))
                .and_then(|unmet| shipped::advice(&option, &unmet, &in_use));
            Mismatch {
                why: kconfig.explain(&option, &asked, &got, config),
                asked: asked.to_string(),
                got: got.to_string(),
                option,
                fragment,
                fix,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn merge_replaces_and_appends() {
        let base = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x\"\n";
        let f = Config::parse("CONFIG_B=y\n# CONFIG_A is not set\nCONFIG_D=m\n").unwrap();
        let merged = merge(base, &[("f".into(), f)]);
        let c = Config::parse(&merged).unwrap();
        assert_eq!(c.get("A"), Some(&Value::No));
        assert_eq!(c.get("B"), Some(&Value::Yes));
        assert_eq!(c.get("C"), Some(&Value::Str("x".into())));
        assert_eq!(c.get("D"), Some(&Value::Module));
        assert_eq!(merged.matches("CONFIG_A").count(), 1);
    }
    #[test]
    fn verify_reports_only_what_differs() {
        let f1 = Config::parse("CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_N=0x10\n")
            .unwrap();
        let f2 = Config::parse("# CONFIG_B is not set\n").unwrap();
        let fin = Config::parse("CONFIG_A=y\nCONFIG_C=y\nCONFIG_N=0x10\n").unwrap();
        let ms = verify(&[("one".into(), f1), ("two".into(), f2)], &fin);
        assert_eq!(ms, vec![("C".into(), Value::No, Value::Yes, "one".into())]);
    }

    #[test]
    fn a_fragment_says_which_architectures_it_is_for() {
        assert_eq!(fragment_arches("CONFIG_A=y\n"), None);
        assert_eq!(
            fragment_arches("# stratos-arch: x86_64\n# x86 only\nCONFIG_PVH=y\n"),
            Some(vec![Arch::X86_64])
        );
        assert_eq!(
            fragment_arches("# stratos-arch: x86_64, aarch64\n"),
            Some(vec![Arch::X86_64, Arch::Aarch64])
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("serial-console.config");
        std::fs::write(&f, "# stratos-arch: x86_64\nCONFIG_SERIAL_8250=y\n").unwrap();
        assert!(read_fragments(std::slice::from_ref(&f), Arch::X86_64).is_ok());
        let e = read_fragments(std::slice::from_ref(&f), Arch::Aarch64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("serial-console.config"), "{e}");
        assert!(e.contains("is for x86_64 only"), "{e}");
        assert!(e.contains("[kernel.x86_64] fragments"), "{e}");
        // The shipped fragments say so.
        for (name, text) in crate::kernel::shipped::SHIPPED {
            let want = match *name {
                "x86-microvm.config" | "serial-console.config" => Some(vec![Arch::X86_64]),
                "arm64-virt.config" => Some(vec![Arch::Aarch64]),
                _ => None,
            };
            assert_eq!(fragment_arches(text), want, "{name}");
        }
    }
}
