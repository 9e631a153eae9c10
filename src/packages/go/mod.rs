//! Go functions, compiled ahead of time (`[runtime.go]`): one static binary, built at image
//! build time from the function's module, is all the runtime the image carries.
//!
//! Pinned: go.sum is the pin of every module. StratOS reads go.mod and go.sum itself, fetches
//! each pinned module's zip and go.mod (from the cache, else the profile's module proxy, never
//! under `--offline`), checks each against its `h1:` line before it is stored or used, and
//! serves exactly those files to `go` as a `file://` proxy; `go` checks them against go.sum
//! again. A go.mod asking for a newer Go than the toolchain, or replacing a module by a
//! directory outside the source, is refused before `go` runs (Go 1.19 would not say).
//!
//! Built in the sandbox (the function's source is untrusted): `go build` runs as `nobody` in
//! new namespaces, without network, seeing only its scratch directory and, read-only, the
//! host's `/usr` (the toolchain and the libraries it links); its environment is set whole
//! (`CGO_ENABLED=0`, `-trimpath`, `-buildvcs=false`, no build id, a fresh module cache and
//! build cache), so two builds from two paths, users or times give the same binary.

pub mod buildinfo;
pub mod h1;
pub mod modfile;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use super::fetch::{self, Digest, FetchError, Pin, Places, Sources, StoreError};
use crate::arch::Arch;
use crate::profile::{GoProxy, GoSpec, Profile};
use crate::progress::{Progress, Traced};
use crate::rootfs::{Entry, Origin, Tree};
use crate::sbom::{prop, ComponentSpec};
use modfile::{GoMod, SumLine};

#[derive(Debug, thiserror::Error)]
pub enum GoError {
    #[error("{}{}: {why}", file.display(), at_line(*line))]
    File {
        file: PathBuf,
        line: usize,
        why: String,
    },
    #[error("{file}:{line}: the module asks for {asked}, and the toolchain {toolchain} is {have}: install that Go and name its GOROOT in [runtime.go] toolchain (a build never downloads a toolchain)")]
    Toolchain {
        file: PathBuf,
        line: usize,
        asked: String,
        toolchain: PathBuf,
        have: String,
    },
    #[error("{module}@{version}: {why}")]
    Module {
        module: String,
        version: String,
        why: String,
    },
    #[error("{module}@{version}: its {what} is not in the cache ({cache}) and --offline forbids downloading it; run the build once without --offline (it fetches from {proxy})")]
    Offline {
        module: String,
        version: String,
        what: &'static str,
        cache: PathBuf,
        proxy: String,
    },
    #[error("the Go toolchain {path}: {why}; install Debian's with `apt-get install golang-go` (or run ./ci/setup), or name another GOROOT in [runtime.go] toolchain")]
    NoToolchain { path: PathBuf, why: String },
    #[error("go build of {module_dir} failed ({status}); its output:\n{output}")]
    Build {
        module_dir: PathBuf,
        status: String,
        output: String,
    },
    #[error("the Go build's sandbox could not start: {0}")]
    SandboxSetup(String),
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl GoError {
    /// A failure of the machine or the network, not of the input.
    pub fn is_environment(&self) -> bool {
        matches!(
            self,
            Self::NoToolchain { .. }
                | Self::SandboxSetup(_)
                | Self::Io(_)
                | Self::Sandbox(_)
                | Self::Store(_)
        )
    }
}

/// `:N` for a line number, nothing for 0 (the whole file).
fn at_line(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(":{line}")
    }
}

/// The largest go.mod / go.sum / source tree StratOS reads.
const MAX_MOD_FILE: u64 = 1 << 20;
const MAX_SOURCE_BYTES: u64 = 256 << 20;
/// How much of `go`'s output an error carries.
const MAX_OUTPUT: usize = 16 << 10;

/// `GOARCH` of an image's architecture.
pub fn goarch(arch: Arch) -> &'static str {
    arch.debian()
}

/// The toolchain's version (`go1.19.8`), from `$GOROOT/VERSION`, after checking `bin/go` is
/// there.
pub fn toolchain_version(goroot: &Path) -> Result<String, GoError> {
    let missing = |why: String| GoError::NoToolchain {
        path: goroot.to_owned(),
        why,
    };
    if !goroot.join("bin/go").is_file() {
        return Err(missing("it has no bin/go".into()));
    }
    let v = crate::fsio::read_file(&goroot.join("VERSION"), 4096, "the Go toolchain's VERSION")
        .map_err(|e| missing(e.to_string()))?;
    let v = String::from_utf8_lossy(&v);
    let first = v.lines().next().unwrap_or("").trim();
    if modfile::release(first).is_none() || !first.starts_with("go") {
        return Err(missing(format!("VERSION says {first:?}, not a Go release")));
    }
    Ok(first.to_owned())
}

/// The function's module, read and checked against the toolchain.
#[derive(Debug, Clone)]
pub struct Module {
    pub go_mod: GoMod,
    pub sums: Vec<SumLine>,
    pub toolchain: String,
}

/// go.mod or go.sum: a regular file, not a link (it could lead out of the source).
fn read_text(path: &Path) -> Result<Option<String>, GoError> {
    match crate::fsio::read_regular(
        path,
        MAX_MOD_FILE,
        "a Go module file",
        crate::fsio::Links::Refuse,
    ) {
        Ok(b) => String::from_utf8(b).map(Some).map_err(|_| GoError::File {
            file: path.to_owned(),
            line: 0,
            why: "not UTF-8".into(),
        }),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(GoError::Io(e.to_string())),
    }
}

/// Reads go.mod and go.sum, and refuses what `go` 1.19 would let through: a newer `go` or
/// `toolchain` line, a directory replacement outside the source, a requirement go.sum does
/// not pin.
pub fn check_module(spec: &GoSpec) -> Result<Module, GoError> {
    let toolchain = toolchain_version(&spec.toolchain)?;
    let mod_path = spec.source.join("go.mod");
    let sum_path = spec.source.join("go.sum");
    let at = |file: &Path, e: modfile::LineError| GoError::File {
        file: file.to_owned(),
        line: e.line,
        why: e.message,
    };
    let text = read_text(&mod_path)?.ok_or_else(|| GoError::File {
        file: mod_path.clone(),
        line: 0,
        why: "missing".into(),
    })?;
    let go_mod = modfile::parse_go_mod(&text).map_err(|e| at(&mod_path, e))?;
    let sums = match read_text(&sum_path)? {
        Some(t) => modfile::parse_go_sum(&t).map_err(|e| at(&sum_path, e))?,
        None => Vec::new(),
    };
    let newer = |asked: &str| newer_than(asked, &toolchain);
    if let Some((v, line)) = &go_mod.go {
        if newer(v) {
            return Err(GoError::Toolchain {
                file: mod_path,
                line: *line,
                asked: format!("go {v}"),
                toolchain: spec.toolchain.clone(),
                have: toolchain,
            });
        }
    }
    if let Some((v, line)) = &go_mod.toolchain {
        if v != &toolchain && (newer(v) || modfile::release(v).is_none()) {
            return Err(GoError::Toolchain {
                file: mod_path,
                line: *line,
                asked: format!("toolchain {v}"),
                toolchain: spec.toolchain.clone(),
                have: toolchain,
            });
        }
    }
    let source = spec
        .source
        .canonicalize()
        .map_err(|e| GoError::Io(format!("{}: {e}", spec.source.display())))?;
    for r in go_mod.replace.iter().filter(|r| r.is_dir()) {
        if r.new.starts_with('/') {
            return Err(GoError::File {
                file: mod_path,
                line: r.line,
                why: format!(
                    "replace {} => {}: an absolute directory cannot be built in the sandbox (and would name this machine in the binary); use a path relative to the module, inside it (./{})",
                    r.old,
                    r.new,
                    Path::new(&r.new).file_name().and_then(|n| n.to_str()).unwrap_or("dir")
                ),
            });
        }
        let target = source.join(&r.new);
        let inside = target.canonicalize().is_ok_and(|t| t.starts_with(&source));
        if !inside {
            return Err(GoError::File {
                file: mod_path,
                line: r.line,
                why: format!(
                    "replace {} => {}: the directory is not inside the module's source ({}); move it inside, or pin it as a module in go.sum",
                    r.old,
                    r.new,
                    source.display()
                ),
            });
        }
    }
    for (path, (version, line)) in &go_mod.require {
        let (p, v) = match go_mod.replacement(path, version) {
            Some(r) if r.is_dir() => continue,
            Some(r) => (r.new.as_str(), r.new_version.as_deref().unwrap_or(version)),
            None => (path.as_str(), version.as_str()),
        };
        if !sums.iter().any(|s| s.path == p && s.version == v) {
            return Err(GoError::File {
                file: mod_path,
                line: *line,
                why: format!(
                    "{p} {v} is required but go.sum does not pin it; run `go mod tidy` where the module can be fetched, and commit go.sum"
                ),
            });
        }
    }
    Ok(Module {
        go_mod,
        sums,
        toolchain,
    })
}

/// One pinned file of a module, as the proxy protocol names it.
#[derive(Debug, Clone)]
pub struct ModuleFile {
    pub module: String,
    pub version: String,
    /// `zip` or `mod`.
    pub ext: &'static str,
    pub bytes: Vec<u8>,
}

impl ModuleFile {
    /// `<escaped module>/@v/<escaped version>.<ext>`.
    pub fn rel(&self) -> String {
        rel(&self.module, &self.version, self.ext)
    }
}

fn rel(module: &str, version: &str, ext: &str) -> String {
    format!(
        "{}/@v/{}.{ext}",
        modfile::escape(module),
        modfile::escape(version)
    )
}

/// The most all of go.sum's module files may weigh together.
const MAX_MODULES_TOTAL: u64 = 512 << 20;

/// Every file go.sum pins, from the cache, else the proxy (each checked against its `h1:`
/// line before it is stored or returned); a dependency whose go.mod asks for a newer Go than
/// the toolchain is refused as the function's own would be.
pub fn fetch_modules(
    spec: &GoSpec,
    module: &Module,
    sources: &Sources,
    proxy: &GoProxy,
) -> Result<Vec<ModuleFile>, GoError> {
    let store = sources.store("go/modules");
    let mut out = Vec::with_capacity(module.sums.len().min(4096));
    let mut total = 0u64;
    for s in &module.sums {
        let file = fetch_one(spec, s, &store, sources.offline, proxy)?;
        total = total.saturating_add(file.bytes.len() as u64);
        if total > MAX_MODULES_TOTAL {
            return Err(GoError::File {
                file: spec.source.join("go.sum"),
                line: s.line,
                why: format!("the modules go.sum pins weigh more than {MAX_MODULES_TOTAL} bytes together: a function's dependencies should not; trim them (`go mod tidy`)"),
            });
        }
        if file.ext == "mod" {
            let text = String::from_utf8_lossy(&file.bytes);
            if let Some((v, line)) =
                modfile::go_line(&text).filter(|(v, _)| newer_than(v, &module.toolchain))
            {
                return Err(GoError::Module {
                    module: s.path.clone(),
                    version: s.version.clone(),
                    why: format!(
                        "its go.mod asks for go {v} (line {line}), newer than the toolchain {} ({}): Go 1.19 would compile it with the older language's meaning; install that Go and name its GOROOT in [runtime.go] toolchain, or require an older version of the module",
                        module.toolchain,
                        spec.toolchain.display()
                    ),
                });
            }
        }
        out.push(file);
    }
    Ok(out)
}

/// One go.sum line's file: from the cache, else the proxy directory (read, never "downloaded":
/// `--offline` does not apply), else the https proxy (unless offline).
fn fetch_one(
    spec: &GoSpec,
    s: &SumLine,
    store: &fetch::Store,
    offline: bool,
    proxy: &GoProxy,
) -> Result<ModuleFile, GoError> {
    let (ext, what, max, digest) = if s.go_mod {
        ("mod", "go.mod", h1::MAX_MOD_BYTES, Digest::GoMod(s.h1))
    } else {
        let prefix = format!("{}@{}/", s.path, s.version);
        let digest = Digest::GoZip { h1: s.h1, prefix };
        ("zip", "zip", h1::MAX_ZIP_BYTES, digest)
    };
    let key = rel(&s.path, &s.version, ext);
    let pin = Pin {
        digest,
        max_bytes: max,
        what: "a Go module file pinned by go.sum",
    };
    let (local, url) = match proxy {
        GoProxy::Dir(d) => (vec![d.join(&key)], None),
        GoProxy::Https(u) => (Vec::new(), Some(format!("{u}/{key}"))),
    };
    let places = Places {
        store,
        key: key.clone(),
        local,
        offline: offline || url.is_none(),
    };
    let module_error = |why: String| GoError::Module {
        module: s.path.clone(),
        version: s.version.clone(),
        why,
    };
    let mismatch = |bytes: &[u8]| {
        module_error(format!(
            "its {what} from {proxy} does not match go.sum ({}, line {}): {}; if go.sum is right, the proxy serves other code — find out why before building",
            spec.source.join("go.sum").display(),
            s.line,
            describe(&pin.digest, bytes)
        ))
    };
    let bytes = fetch::fetch(&pin, &places, || match &url {
        Some(u) => fetch::download(u, max, None),
        None => Err(String::new()),
    })
    .map_err(|e| match e {
        FetchError::Store(e) => GoError::Store(e),
        FetchError::Offline { rejected } if !rejected.is_empty() => {
            let bytes = crate::fsio::read_file(&rejected[0], max, "a Go module file")
                .unwrap_or_default();
            mismatch(&bytes)
        }
        FetchError::Offline { .. } => match proxy {
            GoProxy::Dir(_) => module_error(format!(
                "its {what} is neither in the cache ({}) nor at {} (the profile's proxy directory); every line of go.sum is fetched, so add the module there, or tidy go.sum (`go mod tidy`)",
                store.dir.display(),
                proxy_path(proxy, &key).display()
            )),
            GoProxy::Https(_) => GoError::Offline {
                module: s.path.clone(),
                version: s.version.clone(),
                what,
                cache: store.dir.clone(),
                proxy: proxy.to_string(),
            },
        },
        FetchError::Download(why) => module_error(format!("fetching its {what} from {proxy}: {why}")),
        FetchError::Mismatch { bytes } => mismatch(&bytes),
    })?;
    Ok(ModuleFile {
        module: s.path.clone(),
        version: s.version.clone(),
        ext,
        bytes,
    })
}

/// `asked` (a `go` or `toolchain` line's version) is a later release than `toolchain`
/// (`go1.19.8`): the line is the oldest Go that may build the module (Go ≥ 1.21's meaning;
/// 1.19 only warns when compiling fails).
fn newer_than(asked: &str, toolchain: &str) -> bool {
    let have = modfile::release(toolchain).unwrap_or_default();
    modfile::release(asked).is_some_and(|a| a > have)
}

fn proxy_path(proxy: &GoProxy, key: &str) -> PathBuf {
    match proxy {
        GoProxy::Dir(d) => d.join(key),
        GoProxy::Https(u) => PathBuf::from(format!("{u}/{key}")),
    }
}

/// What the bytes hash to instead (or why they have no hash).
fn describe(pin: &Digest, bytes: &[u8]) -> String {
    match pin {
        Digest::GoZip { h1, prefix } => match h1::of_zip(bytes, prefix) {
            Ok(got) => format!(
                "it hashes to {}, go.sum says {}",
                h1::display(&got),
                h1::display(h1)
            ),
            Err(why) => format!("it is not a module zip go.sum can pin: {why}"),
        },
        Digest::GoMod(h1) => format!(
            "it hashes to {}, go.sum says {}",
            h1::display(&h1::of_go_mod(bytes)),
            h1::display(h1)
        ),
        other => format!("it does not match {other}"),
    }
}

/// What [`crate::build::preflight`] checks: the module reads, the toolchain is there and new
/// enough, every pinned module file is in the cache (or fetched into it now). The number of
/// module files.
pub fn preflight(profile: &Profile, sources: &Sources) -> Result<usize, GoError> {
    let Some(spec) = &profile.go else {
        return Ok(0);
    };
    let module = check_module(spec)?;
    let proxy = sources.go_proxy.as_ref().unwrap_or(&spec.proxy);
    Ok(fetch_modules(spec, &module, sources, proxy)?.len())
}

/// The function built: its binary and what it was built from.
pub struct Built {
    pub binary: Vec<u8>,
    pub info: buildinfo::BuildInfo,
    pub module: Module,
    pub files: Vec<ModuleFile>,
}

/// Builds the function's binary in the sandbox.
pub fn build(
    spec: &GoSpec,
    arch: Arch,
    sources: &Sources,
    progress: &Progress,
) -> Result<Built, GoError> {
    let module = check_module(spec)?;
    let proxy = sources.go_proxy.as_ref().unwrap_or(&spec.proxy);
    let files = fetch_modules(spec, &module, sources, proxy)?;
    let bwrap = crate::sandbox::bwrap("building the Go function")?;
    let io = |what: String| move |e: std::io::Error| GoError::Io(format!("{what}: {e}"));
    let scratch = tempfile::Builder::new()
        .prefix("stratos-go-")
        .tempdir()
        .map_err(io("a scratch directory for the Go build".into()))?;
    let work = scratch
        .path()
        .canonicalize()
        .map_err(io("the scratch directory".into()))?;
    let src = work.join("src");
    super::compiled::copy_source(&spec.source, &src, &[".git"], MAX_SOURCE_BYTES).map_err(
        |e| match e {
            super::compiled::CopyError::NotRegular(file) => GoError::File {
                file,
                line: 0,
                why: "a symlink or special file in the Go module's source: the build copies regular files and directories only; replace it with the file".into(),
            },
            super::compiled::CopyError::Io(why) => GoError::Io(why),
        },
    )?;
    write_proxy(&work.join("proxy"), &files)?;
    for d in ["home", "gocache", "gopath", "modcache", "tmp", "out"] {
        std::fs::create_dir_all(work.join(d)).map_err(io(format!("{}", work.display())))?;
    }
    let step = progress.step(format!(
        "building the Go function ({})",
        module.go_mod.module
    ));
    let out = run_go(&bwrap, &work, spec, arch)?;
    step.done();
    if !out.status.success() {
        if let Some(why) = crate::sandbox::setup_failure(&String::from_utf8_lossy(&out.stderr)) {
            return Err(GoError::SandboxSetup(why.to_owned()));
        }
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        return Err(GoError::Build {
            module_dir: spec.source.clone(),
            status: out.status.to_string(),
            output: super::compiled::printable(&text, &work, MAX_OUTPUT),
        });
    }
    let bin_path = work.join("out/fn");
    let binary = crate::fsio::read_file(&bin_path, MAX_SOURCE_BYTES, "the Go function's binary")
        .map_err(|e| GoError::Io(e.to_string()))?;
    let info = buildinfo::read(&binary).map_err(|why| {
        GoError::Io(format!(
            "the binary go built from {}: {why}",
            spec.source.display()
        ))
    })?;
    super::compiled::check_static(&binary, arch).map_err(|why| {
        GoError::Io(format!(
            "the binary go built from {}: {why}",
            spec.source.display()
        ))
    })?;
    Ok(Built {
        binary,
        info,
        module,
        files,
    })
}

/// Runs `go build` in the sandbox, with exactly the environment a reproducible build needs.
fn run_go(
    bwrap: &Path,
    work: &Path,
    spec: &GoSpec,
    arch: Arch,
) -> Result<std::process::Output, GoError> {
    let goroot = &spec.toolchain;
    let p = |rel: &str| work.join(rel).into_os_string();
    let proxy = format!("file://{}", work.join("proxy").display());
    let env: Vec<(&str, OsString)> = vec![
        ("GOROOT", goroot.clone().into_os_string()),
        ("PATH", goroot.join("bin").into_os_string()),
        ("HOME", p("home")),
        ("GOCACHE", p("gocache")),
        ("GOPATH", p("gopath")),
        ("GOMODCACHE", p("modcache")),
        ("GOTMPDIR", p("tmp")),
        ("TMPDIR", p("tmp")),
        ("GOENV", "off".into()),
        ("GOWORK", "off".into()),
        ("GO111MODULE", "on".into()),
        ("GOFLAGS", "-mod=readonly".into()),
        ("GOTOOLCHAIN", "local".into()),
        ("CGO_ENABLED", "0".into()),
        ("GOOS", "linux".into()),
        ("GOARCH", goarch(arch).into()),
        ("GOAMD64", "v1".into()),
        ("GOPROXY", proxy.into()),
        ("GOSUMDB", "off".into()),
        ("GONOSUMDB", "".into()),
        ("GOPRIVATE", "".into()),
        ("GOINSECURE", "".into()),
        ("GOEXPERIMENT", "".into()),
        ("LC_ALL", "C".into()),
    ];
    let env: Vec<(&str, &OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    let argv: Vec<OsString> = vec![
        goroot.join("bin/go").into_os_string(),
        "build".into(),
        "-trimpath".into(),
        "-buildvcs=false".into(),
        "-ldflags=-s -w -buildid=".into(),
        "-o".into(),
        p("out/fn"),
        spec.package.clone().into(),
    ];
    // The toolchain (and where its symlinks lead: Debian's GOROOT links src/ to /usr/share),
    // and the host's libraries: Debian's go is linked against glibc.
    let mut tools: Vec<PathBuf> = ["/usr", "/lib", "/lib64"]
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect();
    if !goroot.starts_with("/usr") {
        tools.push(goroot.clone());
    }
    if let Ok(entries) = std::fs::read_dir(goroot) {
        for e in entries.flatten() {
            if let Ok(t) = std::fs::canonicalize(e.path()) {
                if !tools.iter().any(|x| t.starts_with(x)) {
                    tools.push(t);
                }
            }
        }
    }
    let tool_refs: Vec<&Path> = tools.iter().map(PathBuf::as_path).collect();
    let src = work.join("src");
    crate::sandbox::command_in(bwrap, work, &src, &tool_refs, &env, &argv)
        .traced()
        .output()
        .map_err(|e| {
            GoError::Io(format!(
                "running go in the sandbox ({}): {e}",
                bwrap.display()
            ))
        })
}

/// Lays the pinned files out as a module proxy (`<module>/@v/list`, `.info`, `.mod`, `.zip`).
fn write_proxy(dir: &Path, files: &[ModuleFile]) -> Result<(), GoError> {
    let mut versions: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for f in files {
        let path = dir.join(f.rel());
        let io = |e: std::io::Error| GoError::Io(format!("writing {}: {e}", path.display()));
        std::fs::create_dir_all(path.parent().unwrap_or(dir)).map_err(io)?;
        std::fs::write(&path, &f.bytes).map_err(io)?;
        versions.entry(&f.module).or_default().push(&f.version);
    }
    for (module, mut vs) in versions {
        vs.sort_unstable();
        vs.dedup();
        let at = dir.join(modfile::escape(module)).join("@v");
        let io = |e: std::io::Error| GoError::Io(format!("writing {}: {e}", at.display()));
        std::fs::write(
            at.join("list"),
            vs.iter().map(|v| format!("{v}\n")).collect::<String>(),
        )
        .map_err(io)?;
        for v in vs {
            let info = format!("{{\"Version\":\"{v}\",\"Time\":\"1970-01-01T00:00:00Z\"}}\n");
            std::fs::write(at.join(format!("{}.info", modfile::escape(v))), info).map_err(io)?;
        }
    }
    Ok(())
}

/// The Go standard library and runtime, as the toolchain compiled them in; its sha256 is the
/// toolchain's `go` command's.
fn stdlib_component(
    spec: &GoSpec,
    go_version: &str,
    version: &str,
) -> Result<ComponentSpec, GoError> {
    let (go_sha, _) =
        crate::fsio::sha256_file(&spec.toolchain.join("bin/go"), crate::fsio::Links::Follow)
            .map_err(|e| GoError::Io(e.to_string()))?;
    let r = purl("stdlib", version);
    Ok(ComponentSpec {
        bom_ref: r.clone(),
        classification: "library",
        name: "stdlib".into(),
        version: version.to_owned(),
        description: Some(format!(
            "the Go standard library and runtime, compiled into {} by {go_version} ({}; sha256 = its bin/go)",
            spec.output,
            spec.toolchain.display()
        )),
        purl: Some(r),
        license: Some("BSD-3-Clause".into()),
        sha256: hex::encode(go_sha),
        files: Vec::new(),
        properties: vec![(prop::ORIGIN.into(), "go".into())],
        depends_on: Vec::new(),
    })
}

/// A module linked into the binary (from its build information): pinned by go.sum and served
/// as a zip, or a directory of the source a `replace` names (version `(devel)`).
fn dep_component(
    spec: &GoSpec,
    d: &buildinfo::Dep,
    zips: &BTreeMap<(&str, &str), &[u8]>,
) -> Result<ComponentSpec, GoError> {
    let mut properties = vec![(prop::ORIGIN.into(), "go".into())];
    if let Some(old) = &d.replaces {
        properties.push(("stratos:go-replaces".into(), old.clone()));
    }
    if d.path.starts_with("./") || d.path.starts_with("../") {
        let name = d.replaces.clone().unwrap_or_else(|| d.path.clone());
        properties.push(("stratos:go-dir".into(), d.path.clone()));
        return Ok(ComponentSpec {
            bom_ref: format!("go-dir:{name}"),
            classification: "library",
            name,
            version: d.version.clone(),
            description: Some(format!(
                "Go module from the function's own directory {} (a replace), compiled into {} (sha256 = of its files)",
                d.path, spec.output
            )),
            purl: None,
            license: None,
            sha256: super::compiled::dir_digest(&spec.source.join(&d.path)).map_err(GoError::Io)?,
            files: Vec::new(),
            properties,
            depends_on: Vec::new(),
        });
    }
    let Some(zip) = zips.get(&(d.path.as_str(), d.version.as_str())) else {
        // Every module linked in came through the proxy StratOS served, so go.sum pins it.
        return Err(GoError::Module {
            module: d.path.clone(),
            version: d.version.clone(),
            why: "linked into the binary but not pinned by go.sum".into(),
        });
    };
    if let Some(s) = &d.sum {
        properties.push(("stratos:go-sum".into(), s.clone()));
    }
    let r = purl(&d.path, &d.version);
    Ok(ComponentSpec {
        bom_ref: r.clone(),
        classification: "library",
        name: d.path.clone(),
        version: d.version.clone(),
        description: Some(format!(
            "Go module compiled into {} (sha256 = its zip)",
            spec.output
        )),
        purl: Some(r),
        license: None,
        sha256: crate::sign::sha256_hex(zip),
        files: Vec::new(),
        properties,
        depends_on: Vec::new(),
    })
}

/// `pkg:golang/<module>@<version>`, percent-encoding what a purl version may not hold.
pub fn purl(module: &str, version: &str) -> String {
    format!("pkg:golang/{module}@{}", version.replace('+', "%2B"))
}

/// The `[runtime.go]` layer: builds the function, puts the binary at its output path, and
/// returns the SBOM's components (the function, the standard library, each module linked in)
/// and the toolchain's version.
pub fn install_go(
    tree: &mut Tree,
    profile: &Profile,
    sources: &Sources,
    progress: &Progress,
) -> Result<Option<(Vec<ComponentSpec>, String)>, GoError> {
    let Some(spec) = &profile.go else {
        return Ok(None);
    };
    let built = build(spec, profile.image.arch, sources, progress)?;
    let main = built.module.go_mod.module.clone();
    let origin = Origin::new(format!("go:{main}"));
    tree.insert(
        &spec.output,
        Entry::file(built.binary.clone(), 0o755, &origin),
    )
    .map_err(|e| GoError::Io(format!("[runtime.go] output {}: {e}", spec.output)))?;
    let version = built
        .info
        .go_version
        .strip_prefix("go")
        .unwrap_or(&built.info.go_version)
        .to_owned();
    let stdlib_ref = purl("stdlib", &version);
    let mut components = vec![stdlib_component(spec, &built.info.go_version, &version)?];
    let zips: BTreeMap<(&str, &str), &[u8]> = built
        .files
        .iter()
        .filter(|f| f.ext == "zip")
        .map(|f| ((f.module.as_str(), f.version.as_str()), f.bytes.as_slice()))
        .collect();
    let mut depends = vec![stdlib_ref];
    for d in &built.info.deps {
        let c = dep_component(spec, d, &zips)?;
        depends.push(c.bom_ref.clone());
        components.push(c);
    }
    components.push(ComponentSpec {
        bom_ref: origin.to_string(),
        classification: "application",
        name: main.clone(),
        version: profile.image.version.clone(),
        description: Some(format!(
            "the Go function {main} (package {}), built by {} as a static binary",
            spec.package, built.info.go_version
        )),
        purl: None,
        license: None,
        sha256: crate::sign::sha256_hex(&built.binary),
        files: Vec::new(),
        properties: vec![
            (prop::ORIGIN.into(), "go".into()),
            ("stratos:go-toolchain".into(), built.info.go_version.clone()),
        ],
        depends_on: depends,
    });
    Ok(Some((components, built.info.go_version)))
}
