//! Building a kernel from a source tarball: extract (once per tarball digest), resolve the
//! config (base + fragments + `olddefconfig`, cached), verify every requested option, compile
//! (cached by source digest, final config and compiler), reproducibly.
//!
//! Cache layout under `<cache>/kernels/`:
//! `digests/` tarball digests by (path, size, mtime, inode); `src/<digest>/` extracted trees;
//! `configs/<key>.config` resolved configs; `<key>/` built kernels (`kernel`, `config`,
//! `build.log`, `meta.json`); `work/` build directories while building; `locks/`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use super::config::{Config, Value};
use super::kconfig::Kconfig;
use crate::profile::{KernelFormat, KernelSourceSpec, Named};
use crate::progress::Progress;

/// Fixed build identity: the kernel's banner and `uname -v` do not depend on who built it,
/// where or when.
pub const KBUILD_ENV: [(&str, &str); 4] = [
    ("KBUILD_BUILD_TIMESTAMP", "Thu Jan  1 00:00:00 UTC 1970"),
    ("KBUILD_BUILD_USER", "stratos"),
    ("KBUILD_BUILD_HOST", "stratos"),
    ("KBUILD_BUILD_VERSION", "1"),
];

/// Bumped whenever the way kernels are configured or built changes (invalidates the cache).
const RECIPE: &str = "stratos-kernel-recipe-2";

/// What `make` sees of the environment: nothing of the caller's but `PATH` (so `LLVM`,
/// `CROSS_COMPILE`, `LOCALVERSION`, `KCPPFLAGS`, `CC`, ... cannot change the output behind the
/// cache's back), a fixed locale and time zone, and the fixed build identity.
pub fn build_env(c: &mut Command) -> &mut Command {
    c.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        c.env("PATH", path);
    }
    c.env("LC_ALL", "C").env("TZ", "UTC");
    for (k, v) in KBUILD_ENV {
        c.env(k, v);
    }
    c
}

/// The host tools whose versions reach the output: the kernel banner embeds the compiler's and
/// the linker's versions, and `.config` records them (`CC_VERSION_TEXT`, `LD_VERSION`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Toolchain {
    pub gcc: String,
    pub ld: String,
}

impl Toolchain {
    /// `gcc --version` and `ld --version` (first lines), run as `make` will run them.
    pub fn detect() -> Result<Toolchain, KernelBuildError> {
        let first_line = |tool: &str| -> Result<String, KernelBuildError> {
            let out = build_env(Command::new(tool).arg("--version"))
                .output()
                .map_err(io(format!(
                    "running {tool} --version (install the kernel build tools with ci/setup)"
                )))?;
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .filter(|l| out.status.success() && !l.trim().is_empty())
                .map(str::to_owned)
                .ok_or_else(|| KernelBuildError::Io {
                    what: format!("{tool} --version printed no version"),
                    source: std::io::Error::other(out.status.to_string()),
                })
        };
        Ok(Toolchain {
            gcc: first_line("gcc")?,
            ld: first_line("ld")?,
        })
    }

    fn describe(&self) -> String {
        format!("gcc: {}\nld: {}", self.gcc, self.ld)
    }
}

/// The key of a resolved config: the source, the base target, every fragment's bytes and the
/// toolchain (`olddefconfig` asks the compiler what it supports).
pub fn config_key(
    source_digest: &str,
    base: &str,
    fragments: &[Vec<u8>],
    tools: &Toolchain,
) -> String {
    let mut key = Sha256::new();
    key.update(format!(
        "{RECIPE}\n{source_digest}\n{base}\n{}\n",
        tools.describe()
    ));
    for f in fragments {
        key.update(Sha256::digest(f));
    }
    hex::encode(key.finalize())
}

/// The key of a built kernel: everything that reaches its bytes.
pub fn build_key(source_digest: &str, format: &str, tools: &Toolchain, config: &str) -> String {
    hex::encode(Sha256::digest(
        format!(
            "{RECIPE}\n{source_digest}\n{format}\n{}\n{KBUILD_ENV:?}\n{config}",
            tools.describe()
        )
        .as_bytes(),
    ))
}

impl KernelBuildError {
    /// A failure of the machine (make, tar or the file system), not of the profile.
    pub fn is_environment(&self) -> bool {
        matches!(self, Self::Io { .. } | Self::Command { .. })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KernelBuildError {
    #[error("kernel source {path}: sha256 is {actual}, the profile pins {expected}")]
    SourceDigest {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed (exit {status}); last lines of {log}:\n{tail}")]
    Command {
        what: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("config fragment {path}: {why}")]
    Fragment { path: PathBuf, why: String },
    #[error("the resolved kernel config does not hold what the fragments ask for ({} option(s)); pass --allow-config-drift to build anyway:\n{}", .0.len(), render_mismatches(.0))]
    Drift(Vec<Mismatch>),
}

/// One requested option that did not come out as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub option: String,
    pub asked: String,
    pub got: String,
    /// The fragment that asked for it.
    pub fragment: String,
    pub why: String,
}

pub fn render_mismatches(ms: &[Mismatch]) -> String {
    ms.iter()
        .map(|m| {
            format!(
                "  CONFIG_{}: asked {} ({}), got {}: {}",
                m.option, m.asked, m.fragment, m.got, m.why
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> KernelBuildError {
    let what = what.into();
    move |source| KernelBuildError::Io { what, source }
}

pub fn kernels_dir() -> PathBuf {
    crate::cache::root().join("kernels")
}

/// An exclusive lock on `name` under the kernel cache, held while the guard lives.
pub struct Lock {
    _file: std::fs::File,
}

pub fn lock(name: &str, progress: &Progress) -> Result<Lock, KernelBuildError> {
    let dir = kernels_dir().join("locks");
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let path = dir.join(format!("{name}.lock"));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(format!("opening {}", path.display())))?;
    if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        progress.info(format!(
            "waiting for another stratos process working on {name}"
        ));
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            KernelBuildError::Io {
                what: format!("locking {}", path.display()),
                source: e.into(),
            }
        })?;
    }
    Ok(Lock { _file: f })
}

/// sha256 of the tarball, remembered by path, size, mtime and inode.
pub fn source_digest(tarball: &Path) -> Result<String, KernelBuildError> {
    let meta = std::fs::metadata(tarball).map_err(io(format!("reading {}", tarball.display())))?;
    let abs =
        std::fs::canonicalize(tarball).map_err(io(format!("reading {}", tarball.display())))?;
    let key = hex::encode(Sha256::digest(
        format!(
            "{}|{}|{}|{}|{}",
            abs.display(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ino()
        )
        .as_bytes(),
    ));
    let memo = kernels_dir().join("digests").join(&key);
    if let Ok(d) = std::fs::read_to_string(&memo) {
        if d.len() == 64 {
            return Ok(d);
        }
    }
    let mut f =
        std::fs::File::open(tarball).map_err(io(format!("reading {}", tarball.display())))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(io(format!("reading {}", tarball.display())))?;
    let d = hex::encode(h.finalize());
    // A memo only saves hashing 140 MB next time: a cache that cannot take it is reported,
    // not fatal.
    if let Err(e) = std::fs::create_dir_all(memo.parent().expect("has parent"))
        .and_then(|()| crate::fsio::write_atomic(&memo, d.as_bytes(), 0o644))
    {
        eprintln!(
            "stratos: warning: cannot record the source digest in {}: {e}",
            memo.display()
        );
    }
    Ok(d)
}

/// Extracts the tarball once per digest; returns the source tree (the tarball's top directory).
pub fn extract(
    tarball: &Path,
    digest: &str,
    progress: &Progress,
) -> Result<PathBuf, KernelBuildError> {
    let dest = kernels_dir().join("src").join(digest);
    let tree = |d: &Path| -> Option<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(d)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        dirs.into_iter()
            .find(|p| p.join("Makefile").is_file() && p.join("Kconfig").is_file())
    };
    if dest.join(".complete").is_file() {
        if let Some(t) = tree(&dest) {
            return Ok(t);
        }
    }
    let _l = lock(&format!("src-{digest}"), progress)?;
    if dest.join(".complete").is_file() {
        if let Some(t) = tree(&dest) {
            return Ok(t);
        }
    }
    let parent = dest.parent().expect("has parent");
    std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    let tmp = tempfile::Builder::new()
        .prefix(".extract-")
        .tempdir_in(parent)
        .map_err(io(format!("creating a directory in {}", parent.display())))?;
    let step = progress.step(format!("extracting {}", tarball.display()));
    let out = Command::new("tar")
        .arg("-xf")
        .arg(tarball)
        .arg("-C")
        .arg(tmp.path())
        .output()
        .map_err(io("running tar (install it with ci/setup)"))?;
    if !out.status.success() {
        return Err(KernelBuildError::Command {
            what: format!("extracting {}", tarball.display()),
            status: out.status.to_string(),
            log: tarball.to_owned(),
            tail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    step.done();
    std::fs::write(tmp.path().join(".complete"), b"")
        .map_err(io("marking the extraction complete"))?;
    // An incomplete extraction (no .complete) may be in the way.
    clear_scratch(&dest)?;
    let kept = tmp.keep();
    std::fs::rename(&kept, &dest)
        .map_err(io(format!("moving the source to {}", dest.display())))?;
    tree(&dest).ok_or_else(|| KernelBuildError::Io {
        what: format!(
            "{}: no kernel source tree (Makefile + Kconfig) at its top level",
            tarball.display()
        ),
        source: std::io::ErrorKind::NotFound.into(),
    })
}

/// A fragment: the options it sets, in order, with the file's name.
pub fn read_fragment(path: &Path) -> Result<Config, KernelBuildError> {
    let text = crate::fsio::read_text(path, crate::fsio::caps::KERNEL_CONFIG, "a config fragment")
        .map_err(|e| KernelBuildError::Fragment {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    Config::parse(&text).map_err(|e| KernelBuildError::Fragment {
        path: path.to_owned(),
        why: e.to_string(),
    })
}

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

fn make(src: &Path, obj: &Path) -> Command {
    let mut c = Command::new("make");
    build_env(&mut c)
        .arg("-C")
        .arg(src)
        .arg(format!("O={}", obj.display()))
        .arg("ARCH=x86_64");
    c
}

fn run_logged(mut cmd: Command, what: &str, log: &Path) -> Result<(), KernelBuildError> {
    let out = cmd.output().map_err(io(format!(
        "running make for {what} (install build tools with ci/setup)"
    )))?;
    let mut text = out.stdout.clone();
    text.extend_from_slice(&out.stderr);
    std::fs::write(log, &text).map_err(io(format!("writing {}", log.display())))?;
    if !out.status.success() {
        return Err(KernelBuildError::Command {
            what: what.to_owned(),
            status: out.status.to_string(),
            log: log.to_owned(),
            tail: tail(&String::from_utf8_lossy(&text), 40),
        });
    }
    Ok(())
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The resolved config of a profile's kernel, and what was asked of it.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub source_dir: PathBuf,
    pub source_digest: String,
    /// `make <base>` output (what `kernel config` diffs against).
    pub base_config: Config,
    pub config_text: String,
    pub config: Config,
    pub fragments: Vec<(String, Config)>,
    pub mismatches: Vec<Mismatch>,
}

/// Extracts the source and resolves base + fragments into a final `.config` (cached), then
/// checks every requested option, explaining mismatches from the Kconfig files.
pub fn resolve(spec: &KernelSourceSpec, progress: &Progress) -> Result<Resolved, KernelBuildError> {
    let digest = source_digest(&spec.tarball)?;
    if let Some(want) = &spec.sha256 {
        if *want != digest {
            return Err(KernelBuildError::SourceDigest {
                path: spec.tarball.clone(),
                expected: want.to_string(),
                actual: digest,
            });
        }
    }
    let src = extract(&spec.tarball, &digest, progress)?;
    let tools = Toolchain::detect()?;
    let (fragments, texts) = read_fragments(&spec.fragments)?;
    let key = config_key(&digest, spec.base.as_str(), &texts, &tools);
    let cfg_dir = kernels_dir().join("configs");
    let cached = cfg_dir.join(format!("{key}.config"));
    let cached_base = cfg_dir.join(format!("{key}.base"));
    let (config_text, base_text) = match (
        std::fs::read_to_string(&cached),
        std::fs::read_to_string(&cached_base),
    ) {
        (Ok(c), Ok(b)) => (c, b),
        _ => {
            let _l = lock(&format!("config-{key}"), progress)?;
            let (config_text, base_text) = run_config(spec, &src, &fragments, &key, progress)?;
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
    let mismatches = mismatches(&src, &fragments, &config)?;
    Ok(Resolved {
        source_dir: src,
        source_digest: digest,
        base_config,
        config_text,
        config,
        fragments,
        mismatches,
    })
}

/// Each fragment parsed and named (by its file name), with its bytes (for the cache key).
#[allow(clippy::type_complexity)]
fn read_fragments(
    paths: &[PathBuf],
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
        texts.push(text);
        fragments.push((name, parsed));
    }
    Ok((fragments, texts))
}

/// `make BASE`, the fragments merged in, `make olddefconfig`: the final and the base
/// `.config` texts.
fn run_config(
    spec: &KernelSourceSpec,
    src: &Path,
    fragments: &[(String, Config)],
    key: &str,
    progress: &Progress,
) -> Result<(String, String), KernelBuildError> {
    let step = progress.step(format!(
        "resolving the kernel config ({} + {} fragments)",
        spec.base,
        fragments.len()
    ));
    let work = kernels_dir().join("work").join(format!("config-{key}"));
    clear_scratch(&work)?;
    std::fs::create_dir_all(&work).map_err(io(format!("creating {}", work.display())))?;
    let log = work.join("config.log");
    let mut c = make(src, &work);
    c.arg(spec.base.as_str());
    run_logged(c, &format!("make {}", spec.base), &log)?;
    let base_text =
        std::fs::read_to_string(work.join(".config")).map_err(io("reading the base .config"))?;
    std::fs::write(work.join(".config"), merge(&base_text, fragments))
        .map_err(io("writing the merged .config"))?;
    let mut c = make(src, &work);
    c.arg("olddefconfig");
    run_logged(c, "make olddefconfig", &log)?;
    let config_text =
        std::fs::read_to_string(work.join(".config")).map_err(io("reading the final .config"))?;
    clear_scratch(&work)?;
    step.done();
    Ok((config_text, base_text))
}

/// Every option a fragment set that the final config does not hold, each explained from the
/// Kconfig files (the unmet `depends on`).
fn mismatches(
    src: &Path,
    fragments: &[(String, Config)],
    config: &Config,
) -> Result<Vec<Mismatch>, KernelBuildError> {
    let raw = verify(fragments, config);
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    let kconfig = Kconfig::load(src, "x86").map_err(io("reading the Kconfig files"))?;
    Ok(raw
        .into_iter()
        .map(|(option, asked, got, fragment)| Mismatch {
            why: kconfig.explain(&option, &asked, &got, config),
            asked: asked.to_string(),
            got: got.to_string(),
            option,
            fragment,
        })
        .collect())
}

/// A built kernel.
#[derive(Debug, Clone)]
pub struct Built {
    pub image: Vec<u8>,
    pub config_text: String,
    pub source_digest: String,
    /// The cache entry's directory (holds `build.log`).
    pub dir: PathBuf,
    pub cache_hit: bool,
    pub build_seconds: Option<f64>,
}

/// Removes a scratch directory of ours if it is there (a leftover of an interrupted run).
fn clear_scratch(dir: &Path) -> Result<(), KernelBuildError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io(format!("removing {}", dir.display()))(e))
        }
        _ => Ok(()),
    }
}

/// Builds (or takes from the cache) the kernel for a resolved config: the cache entry keyed by
/// everything that reaches the kernel's bytes; else, under a lock, `make` in a scratch
/// directory, stripped for `vmlinux`, stored as a complete entry in one rename.
pub fn build(
    spec: &KernelSourceSpec,
    r: &Resolved,
    progress: &Progress,
) -> Result<Built, KernelBuildError> {
    let tools = Toolchain::detect()?;
    let key = build_key(
        &r.source_digest,
        spec.format.as_str(),
        &tools,
        &r.config_text,
    );
    let entry = kernels_dir().join(&key);
    if let Some(b) = cached(&entry, r, progress) {
        return Ok(b);
    }
    let _lock = lock(&format!("build-{key}"), progress)?;
    if let Some(b) = cached(&entry, r, progress) {
        return Ok(b);
    }
    let start = std::time::Instant::now();
    let work = kernels_dir().join("work").join(&key);
    clear_scratch(&work)?;
    std::fs::create_dir_all(&work).map_err(io(format!("creating {}", work.display())))?;
    std::fs::write(work.join(".config"), &r.config_text).map_err(io("writing .config"))?;
    let compiled = run_make(spec, r, &work, &key, progress)?;
    let image = built_image(spec, &work)?;
    let seconds = start.elapsed().as_secs_f64();
    store_entry(
        &entry, &key, &work, &image, r, spec, &tools, compiled, seconds,
    )?;
    clear_scratch(&work)?;
    progress.info(format!(
        "kernel built in {:.0} s ({} objects), cached in {}",
        seconds,
        compiled,
        entry.display()
    ));
    Ok(Built {
        image,
        config_text: r.config_text.clone(),
        source_digest: r.source_digest.clone(),
        dir: entry,
        cache_hit: false,
        build_seconds: Some(seconds),
    })
}

/// A complete cache entry, if there is one and it reads back. A damaged entry is reported and
/// rebuilt.
fn cached(entry: &Path, r: &Resolved, progress: &Progress) -> Option<Built> {
    let marker = entry.join(".complete");
    if !marker.is_file() {
        return None;
    }
    let read = || -> std::io::Result<(Vec<u8>, String)> {
        Ok((
            std::fs::read(entry.join("kernel"))?,
            std::fs::read_to_string(entry.join("config"))?,
        ))
    };
    let (image, config_text) = match read() {
        Ok(x) => x,
        Err(e) => {
            progress.warn(format!(
                "kernel cache entry {} is damaged ({e}); rebuilding it",
                entry.display()
            ));
            return None;
        }
    };
    // Record the use, for `stratos cache gc`; a cache we cannot touch still serves the build.
    if let Err(e) = std::fs::File::options()
        .write(true)
        .open(&marker)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()))
    {
        progress.warn(format!(
            "cannot record the use of {}: {e}",
            marker.display()
        ));
    }
    Some(Built {
        image,
        config_text,
        source_digest: r.source_digest.clone(),
        dir: entry.to_owned(),
        cache_hit: true,
        build_seconds: None,
    })
}

/// `make -jN bzImage|vmlinux` in `work`, with a progress bar over the objects compiled (the
/// count of the last build is the estimate), the whole output in `work/build.log`. On failure
/// the log is kept under `kernels/failed/`. Returns the objects compiled.
fn run_make(
    spec: &KernelSourceSpec,
    r: &Resolved,
    work: &Path,
    key: &str,
    progress: &Progress,
) -> Result<u64, KernelBuildError> {
    let log_path = work.join("build.log");
    let mut log =
        std::fs::File::create(&log_path).map_err(io(format!("creating {}", log_path.display())))?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let target = spec.format.as_str();
    let target = if target == "vmlinux" {
        "vmlinux"
    } else {
        "bzImage"
    };
    let mut c = make(&r.source_dir, work);
    // Keep the build directory and the source path out of the binary.
    let kcflags = format!(
        "-ffile-prefix-map={}=. -ffile-prefix-map={}=.",
        r.source_dir.display(),
        work.display()
    );
    c.arg(format!("-j{jobs}"))
        .arg(format!("KCFLAGS={kcflags}"))
        .arg(format!("KAFLAGS={kcflags}"))
        .arg(target);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .map_err(io("running make (install build tools with ci/setup)"))?;
    let stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            s.push_str(&l);
            s.push('\n');
        }
        s
    });
    let estimate_path = kernels_dir().join("objects-estimate");
    let estimate: u64 = std::fs::read_to_string(&estimate_path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1400);
    let mut bar = progress.bar(
        format!(
            "building the kernel (make -j{jobs} {target}, log: {})",
            log_path.display()
        ),
        estimate,
    );
    let mut compiled = 0u64;
    let log_err = io(format!("writing {}", log_path.display()));
    let mut log_result = Ok(());
    for line in BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .map_while(Result::ok)
    {
        if log_result.is_ok() {
            log_result = writeln!(log, "{line}");
        }
        let t = line.trim_start();
        if t.starts_with("CC ") || t.starts_with("AS ") {
            compiled += 1;
            bar.set(compiled);
        }
    }
    let status = child.wait().map_err(io("waiting for make"))?;
    let errs = err_thread.join().unwrap_or_default();
    log_result
        .and_then(|()| log.write_all(errs.as_bytes()))
        .map_err(log_err)?;
    bar.finish();
    if !status.success() {
        let all = std::fs::read_to_string(&log_path)
            .map_err(io(format!("reading {}", log_path.display())))?;
        // Keep the log where the user can read it.
        let failed_dir = kernels_dir().join("failed");
        std::fs::create_dir_all(&failed_dir)
            .map_err(io(format!("creating {}", failed_dir.display())))?;
        let kept = failed_dir.join(format!("{key}.log"));
        std::fs::copy(&log_path, &kept)
            .map_err(io(format!("keeping the log as {}", kept.display())))?;
        return Err(KernelBuildError::Command {
            what: format!("building the kernel (make {target})"),
            status: status.to_string(),
            log: kept,
            tail: tail(&all, 40),
        });
    }
    if compiled > 0 {
        // Only the next progress bar's estimate: not worth failing a build over.
        if let Err(e) = std::fs::write(&estimate_path, compiled.to_string()) {
            progress.warn(format!("cannot write {}: {e}", estimate_path.display()));
        }
    }
    Ok(compiled)
}

/// The image `make` produced (`vmlinux` stripped of symbols: the VMM needs only the loadable
/// segments and the PVH note).
fn built_image(spec: &KernelSourceSpec, work: &Path) -> Result<Vec<u8>, KernelBuildError> {
    let built = if spec.format == KernelFormat::Vmlinux {
        let built = work.join("vmlinux");
        let stripped = work.join("vmlinux.stripped");
        let mut c = Command::new("objcopy");
        c.arg("--strip-all").arg(&built).arg(&stripped);
        run_logged(c, "stripping vmlinux (objcopy)", &work.join("strip.log"))?;
        std::fs::rename(&stripped, &built).map_err(io("replacing vmlinux"))?;
        built
    } else {
        work.join("arch/x86/boot/bzImage")
    };
    std::fs::read(&built).map_err(io(format!("reading {}", built.display())))
}

/// Writes the cache entry in a scratch directory next to it, then renames it into place.
#[allow(clippy::too_many_arguments)]
fn store_entry(
    entry: &Path,
    key: &str,
    work: &Path,
    image: &[u8],
    r: &Resolved,
    spec: &KernelSourceSpec,
    tools: &Toolchain,
    compiled: u64,
    seconds: f64,
) -> Result<(), KernelBuildError> {
    let tmp = kernels_dir().join(format!(".entry-{key}"));
    clear_scratch(&tmp)?;
    std::fs::create_dir_all(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    std::fs::write(tmp.join("kernel"), image).map_err(io("caching the kernel"))?;
    std::fs::write(tmp.join("config"), &r.config_text).map_err(io("caching the config"))?;
    std::fs::copy(work.join("build.log"), tmp.join("build.log"))
        .map_err(io("caching the build log"))?;
    let meta = serde_json::json!({
        "source_sha256": r.source_digest,
        "format": spec.format.as_str(),
        "compiler": tools.gcc,
        "linker": tools.ld,
        "objects": compiled,
        "build_seconds": seconds.round() as u64,
        "size": image.len(),
    });
    std::fs::write(tmp.join("meta.json"), format!("{meta:#}\n"))
        .map_err(io("caching the build metadata"))?;
    std::fs::write(tmp.join(".complete"), b"").map_err(io("marking the cache entry complete"))?;
    // A damaged entry (no .complete) may be in the way.
    clear_scratch(entry)?;
    std::fs::rename(&tmp, entry).map_err(io(format!("moving the kernel to {}", entry.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_sees_none_of_the_callers_toolchain_variables() {
        let mut c = Command::new("env");
        // Set on the command itself: env_clear must drop these too.
        for k in [
            "LLVM",
            "CROSS_COMPILE",
            "LOCALVERSION",
            "KCPPFLAGS",
            "CC",
            "KCFLAGS",
        ] {
            c.env(k, "poison");
        }
        let out = build_env(&mut c).output().unwrap();
        let env = String::from_utf8(out.stdout).unwrap();
        assert!(!env.contains("poison"), "{env}");
        assert!(env.contains("KBUILD_BUILD_USER=stratos"), "{env}");
        assert!(env.contains("LC_ALL=C"), "{env}");
        // make itself gets the same environment.
        let m = make(Path::new("/src"), Path::new("/obj"));
        let names: Vec<_> = m
            .get_envs()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert!(
            names.contains(&"KBUILD_BUILD_TIMESTAMP".to_owned()),
            "{names:?}"
        );
    }

    #[test]
    fn cache_keys_cover_the_linker_and_the_compiler() {
        let a = Toolchain {
            gcc: "gcc (Debian 12.2.0-14) 12.2.0".into(),
            ld: "GNU ld (GNU Binutils for Debian) 2.40".into(),
        };
        let b = Toolchain {
            ld: "GNU ld (GNU Binutils for Debian) 2.41".into(),
            ..a.clone()
        };
        let c = Toolchain {
            gcc: "gcc (Debian 13.2.0-1) 13.2.0".into(),
            ..a.clone()
        };
        let frag = vec![b"CONFIG_A=y\n".to_vec()];
        assert_ne!(
            build_key("s", "bzImage", &a, "cfg"),
            build_key("s", "bzImage", &b, "cfg")
        );
        assert_ne!(
            build_key("s", "bzImage", &a, "cfg"),
            build_key("s", "bzImage", &c, "cfg")
        );
        assert_ne!(
            config_key("s", "tinyconfig", &frag, &a),
            config_key("s", "tinyconfig", &frag, &c)
        );
        assert_ne!(
            config_key("s", "tinyconfig", &frag, &a),
            config_key("s", "tinyconfig", &frag, &b)
        );
        assert_eq!(
            config_key("s", "tinyconfig", &frag, &a),
            config_key("s", "tinyconfig", &frag, &a.clone())
        );
    }

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
}
