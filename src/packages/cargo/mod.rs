//! Rust functions, compiled ahead of time (`[runtime.cargo]`): one static binary, built at
//! image build time from the function's Cargo project, is all the runtime the image carries.
//!
//! Pinned: Cargo.lock is the pin of every crate. StratOS reads it itself, fetches each
//! crates.io crate's `.crate` file (from the cache, else the directory `ci/setup` fills, else
//! crates.io — never under `--offline`), checks each against the lock's sha256 before it is
//! stored or used, and unpacks exactly those into a vendor directory that replaces crates.io
//! for `cargo`, which checks them against the lock again. Git and other registries' crates are
//! refused: nothing pins them by a hash StratOS can check.
//!
//! Built in the sandbox: a crate's build script and procedural macros are code that runs at
//! build time, and they come with the function (untrusted). `cargo build --locked --offline`
//! runs as `nobody` in new namespaces, without network, seeing only its scratch directory
//! (mounted at `/build`, so every path it records is the same whatever the host's scratch
//! path) and, read-only, the host's `/usr` (the C linker, glibc's static archive) and the
//! toolchain. The environment is set whole (`+crt-static`, no incremental build, the image's
//! `SOURCE_DATE_EPOCH`), so two builds from two paths, users or times give the same binary.

pub mod lock;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::fetch::{self, Digest, FetchError, Pin, Places, Sources, StoreError};
use super::unpack::Capped;
use crate::arch::Arch;
use crate::digest::Sha256;
use crate::profile::{CargoSpec, Profile};
use crate::progress::{Progress, Traced};
use crate::rootfs::{Entry, Origin, Tree};
use crate::sbom::{prop, ComponentSpec};
use lock::{Locked, Source};

#[derive(Debug, thiserror::Error)]
pub enum CargoError {
    #[error("{}: {why}", file.display())]
    File { file: PathBuf, why: String },
    #[error("crate {name} {version}: {why}")]
    Crate {
        name: String,
        version: String,
        why: String,
    },
    #[error("crate {name} {version} (pinned by {lock}) is neither in the cache ({cache}) nor in {prefetch}, and --offline forbids downloading it; run `./ci/setup` (it fetches what the profiles' Cargo.lock files pin), or build once without --offline")]
    Offline {
        name: String,
        version: String,
        lock: PathBuf,
        cache: PathBuf,
        prefetch: PathBuf,
    },
    #[error("the Rust toolchain {path}: {why}")]
    NoToolchain { path: PathBuf, why: String },
    #[error("{what} of {project} failed ({status}); its output:\n{output}")]
    Build {
        what: String,
        project: PathBuf,
        status: String,
        output: String,
    },
    #[error("the Rust build's sandbox could not start: {0}")]
    SandboxSetup(String),
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CargoError {
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

/// The largest Cargo.lock StratOS reads.
const MAX_LOCK: u64 = 4 << 20;
/// The largest project source (its `target/` and `.git/` are not copied).
const MAX_SOURCE_BYTES: u64 = 256 << 20;
/// The largest `.crate` file (crates.io refuses uploads over 10 MiB; a few are allowed more),
/// what one may expand to, and what all of a lock's crates may weigh together.
const MAX_CRATE: u64 = 64 << 20;
const MAX_CRATE_EXPANDED: u64 = 512 << 20;
const MAX_CRATES_TOTAL: u64 = 1 << 30;
const MAX_VENDOR_TOTAL: u64 = 4 << 30;
/// The most of cargo's output an error carries, and the most `cargo metadata` may print.
const MAX_OUTPUT: usize = 16 << 10;
const MAX_METADATA: usize = 64 << 20;
/// Where the scratch directory is in the sandbox.
const MOUNT: &str = "/build";

/// Where a crate missing from the cache is downloaded from.
pub const CRATES_IO_DOWNLOAD: &str = "https://static.crates.io/crates";

/// The project's lock, read and checked.
pub fn read_lock(spec: &CargoSpec) -> Result<Vec<Locked>, CargoError> {
    let path = spec.source.join("Cargo.lock");
    let bytes =
        crate::fsio::read_regular(&path, MAX_LOCK, "a Cargo.lock", crate::fsio::Links::Refuse)
            .map_err(|e| CargoError::File {
                file: path.clone(),
                why: format!(
                    "{e}; the lock must be a regular file (not a link) of at most {MAX_LOCK} bytes"
                ),
            })?;
    let text = String::from_utf8(bytes).map_err(|_| CargoError::File {
        file: path.clone(),
        why: "not UTF-8".into(),
    })?;
    lock::parse(&text).map_err(|why| CargoError::File { file: path, why })
}

/// A crate's `.crate` file, checked against the lock.
pub struct CrateFile {
    pub locked: Locked,
    pub sha256: Sha256,
    pub bytes: Vec<u8>,
}

/// Every crates.io crate the lock pins: from the cache, else the prefetch directory
/// (`<prefetch>/crates/<name>-<version>.crate`), else crates.io (unless offline), each checked
/// against its sha256 before it is stored or returned.
pub fn fetch_crates(
    spec: &CargoSpec,
    locked: &[Locked],
    sources: &Sources,
) -> Result<Vec<CrateFile>, CargoError> {
    let store = sources.store("crates/sha256");
    let lock_path = spec.source.join("Cargo.lock");
    let mut out = Vec::new();
    let mut total = 0u64;
    for l in locked {
        let Source::CratesIo(sha) = &l.source else {
            continue;
        };
        let pin = Pin {
            digest: Digest::Sha256(*sha),
            max_bytes: MAX_CRATE,
            what: "a crate pinned by Cargo.lock",
        };
        let places = Places {
            store: &store,
            key: format!("{sha}.crate"),
            local: vec![sources
                .prefetch
                .join("crates")
                .join(format!("{}.crate", l.stem()))],
            offline: sources.offline,
        };
        let url = format!(
            "{CRATES_IO_DOWNLOAD}/{}/{}.crate",
            l.name,
            l.stem().replace('+', "%2B")
        );
        let crate_error = |why: String| CargoError::Crate {
            name: l.name.clone(),
            version: l.version.clone(),
            why,
        };
        let bytes = fetch::fetch(&pin, &places, || fetch::download(&url, MAX_CRATE, None))
            .map_err(|e| match e {
                FetchError::Store(e) => CargoError::Store(e),
                FetchError::Offline { rejected } if !rejected.is_empty() => crate_error(format!(
                    "{} is not the crate {} pins (its sha256 differs); delete it and run `./ci/setup` again",
                    rejected[0].display(),
                    lock_path.display()
                )),
                FetchError::Offline { .. } => CargoError::Offline {
                    name: l.name.clone(),
                    version: l.version.clone(),
                    lock: lock_path.clone(),
                    cache: store.dir.clone(),
                    prefetch: sources.prefetch.join("crates"),
                },
                FetchError::Download(why) => crate_error(format!("fetching {url}: {why}")),
                FetchError::Mismatch { bytes } => crate_error(format!(
                    "{url} sent a file whose sha256 is {}, and {} pins {sha}; if the lock is right, what was downloaded is not that crate — find out why before building",
                    Sha256::of(&bytes),
                    lock_path.display()
                )),
            })?;
        total = total.saturating_add(bytes.len() as u64);
        if total > MAX_CRATES_TOTAL {
            return Err(CargoError::File {
                file: lock_path,
                why: format!("the crates it pins weigh more than {MAX_CRATES_TOTAL} bytes together: a function's dependencies should not"),
            });
        }
        out.push(CrateFile {
            locked: l.clone(),
            sha256: *sha,
            bytes,
        });
    }
    Ok(out)
}

/// What [`crate::build::preflight`] checks: the lock reads, every crate it pins is in the
/// cache (or fetched into it now). The number of crates.
pub fn preflight(profile: &Profile, sources: &Sources) -> Result<usize, CargoError> {
    let Some(spec) = &profile.cargo else {
        return Ok(0);
    };
    let locked = read_lock(spec)?;
    Ok(fetch_crates(spec, &locked, sources)?.len())
}

/// Unpacks each `.crate` into `dir/<name>-<version>/` with the `.cargo-checksum.json` that
/// makes the directory a cargo source replacing crates.io: the package's sha256 (cargo checks
/// it against the lock) and no per-file list (the whole file was checked).
pub fn vendor(dir: &Path, crates: &[CrateFile]) -> Result<(), CargoError> {
    // What all the crates may expand to together, whatever each archive says.
    let mut left = MAX_VENDOR_TOTAL;
    for c in crates {
        let stem = c.locked.stem();
        let bad = |why: String| CargoError::Crate {
            name: c.locked.name.clone(),
            version: c.locked.version.clone(),
            why,
        };
        let gz = flate2::read::GzDecoder::new(c.bytes.as_slice());
        let cap = MAX_CRATE_EXPANDED.min(left);
        let mut ar = tar::Archive::new(Capped::new(gz, cap));
        let read = |e: std::io::Error| match Capped::<&[u8]>::exceeded(&e) {
            Some(limit) => bad(format!("the .crate expands past {limit} bytes")),
            None => bad(format!("not a gzip'd tar archive (a .crate): {e}")),
        };
        let root = dir.join(&stem);
        std::fs::create_dir_all(&root)
            .map_err(|e| CargoError::Io(format!("{}: {e}", root.display())))?;
        for entry in ar.entries().map_err(read)? {
            let mut entry = entry.map_err(read)?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let kind = entry.header().entry_type();
            // Crates.io writes `<name>-<version>/...` and nothing else; a name leaving that
            // directory, a link or a device is refused.
            let rel = raw
                .strip_prefix(&format!("{stem}/"))
                .ok_or_else(|| bad(format!("refusing member {raw:?}: not under {stem}/")))?;
            let path = super::unpack::join_under(
                &crate::rootfs::ImagePath::root(),
                rel.trim_end_matches('/'),
                false,
                "the crate's directory",
            )
            .map_err(|why| bad(format!("refusing member {raw:?}: {why}")))?;
            let dest = root.join(path.to_string().trim_start_matches('/'));
            let io = |e: std::io::Error| CargoError::Io(format!("{}: {e}", dest.display()));
            if kind.is_dir() {
                std::fs::create_dir_all(&dest).map_err(io)?;
            } else if kind.is_file() || kind == tar::EntryType::Continuous {
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                let mut file = std::fs::File::create(&dest).map_err(io)?;
                let n = std::io::copy(&mut entry, &mut file).map_err(read)?;
                left = left.saturating_sub(n);
                let exec = entry.header().mode().unwrap_or(0) & 0o111 != 0;
                if exec {
                    use std::os::unix::fs::PermissionsExt as _;
                    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
                        .map_err(io)?;
                }
            } else if matches!(
                kind,
                tar::EntryType::XGlobalHeader
                    | tar::EntryType::XHeader
                    | tar::EntryType::GNULongName
            ) {
                continue;
            } else {
                return Err(bad(format!(
                    "refusing member {raw:?}: neither a file nor a directory ({kind:?})"
                )));
            }
        }
        let checksum = format!("{{\"files\":{{}},\"package\":\"{}\"}}", c.sha256);
        std::fs::write(root.join(".cargo-checksum.json"), checksum)
            .map_err(|e| CargoError::Io(format!("{}: {e}", root.display())))?;
    }
    Ok(())
}

/// The toolchain a build uses: its sysroot and `rustc -V`.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub sysroot: PathBuf,
    /// `rustc 1.95.0 (59807616e 2026-04-14)`.
    pub version: String,
}

impl Toolchain {
    /// `1.95.0`.
    pub fn release(&self) -> &str {
        self.version.split_whitespace().nth(1).unwrap_or("unknown")
    }
}

/// The profile's toolchain, else the sysroot of the `rustc` on PATH; it must hold cargo, rustc
/// and the standard library of the image's target.
pub fn toolchain(spec: &CargoSpec, arch: Arch) -> Result<Toolchain, CargoError> {
    find_toolchain(spec.toolchain.as_deref(), Path::new("rustc"), arch)
}

/// The toolchain at `sysroot`, else the sysroot `rustc` (a command) prints.
pub fn find_toolchain(
    sysroot: Option<&Path>,
    rustc: &Path,
    arch: Arch,
) -> Result<Toolchain, CargoError> {
    let sysroot = match sysroot {
        Some(t) => t.to_owned(),
        None => {
            let out = std::process::Command::new(rustc)
                .args(["--print", "sysroot"])
                .traced()
                .output()
                .map_err(|e| CargoError::NoToolchain {
                    path: rustc.to_owned(),
                    why: format!("cannot run rustc ({e}): install Rust with rustup (https://rustup.rs; ./ci/setup does), or name a toolchain in [runtime.cargo] toolchain"),
                })?;
            if !out.status.success() {
                return Err(CargoError::NoToolchain {
                    path: rustc.to_owned(),
                    why: format!(
                        "`rustc --print sysroot` failed ({}): {}; install Rust with rustup (https://rustup.rs; ./ci/setup does), or name a toolchain in [runtime.cargo] toolchain",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                });
            }
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    };
    let missing = |why: String| CargoError::NoToolchain {
        path: sysroot.clone(),
        why,
    };
    for tool in ["bin/cargo", "bin/rustc"] {
        if !sysroot.join(tool).is_file() {
            return Err(missing(format!("it has no {tool}: name a Rust toolchain's directory (`rustc --print sysroot` prints one)")));
        }
    }
    let target = arch.rust_target();
    if !sysroot
        .join("lib/rustlib")
        .join(target)
        .join("lib")
        .is_dir()
    {
        return Err(missing(format!(
            "it has no standard library for {target}: run `rustup target add {target}` (./ci/setup does)"
        )));
    }
    let out = std::process::Command::new(sysroot.join("bin/rustc"))
        .arg("-V")
        .env_clear()
        .traced()
        .output()
        .map_err(|e| missing(format!("running its rustc: {e}")))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || !version.starts_with("rustc ") {
        return Err(missing(format!("its rustc -V printed {version:?}")));
    }
    Ok(Toolchain { sysroot, version })
}

/// The function built: its binary and what went into it.
pub struct Built {
    pub binary: Vec<u8>,
    pub toolchain: Toolchain,
    /// The project's package.
    pub package: CratePackage,
    /// The packages linked into the binary (not build scripts' or procedural macros' crates),
    /// sorted.
    pub linked: Vec<CratePackage>,
    pub crates: Vec<CrateFile>,
}

/// A package as `cargo metadata` describes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CratePackage {
    pub name: String,
    pub version: String,
    /// From crates.io (else a path crate of the project).
    pub registry: bool,
    pub license: Option<String>,
    /// Its directory relative to the project (path crates only).
    pub dir: Option<String>,
}

/// Builds the function's binary in the sandbox.
pub fn build(
    spec: &CargoSpec,
    arch: Arch,
    source_date_epoch: u64,
    sources: &Sources,
    progress: &Progress,
) -> Result<Built, CargoError> {
    let toolchain = toolchain(spec, arch)?;
    let locked = read_lock(spec)?;
    let crates = fetch_crates(spec, &locked, sources)?;
    let bwrap = crate::sandbox::bwrap("building the Rust function")?;
    let io = |what: String| move |e: std::io::Error| CargoError::Io(format!("{what}: {e}"));
    let scratch = tempfile::Builder::new()
        .prefix("stratos-cargo-")
        .tempdir()
        .map_err(io("a scratch directory for the Rust build".into()))?;
    // `build/` is what the sandbox sees (at /build); cargo's output goes to `logs/`, which it
    // does not, and is read back capped.
    let root = scratch
        .path()
        .canonicalize()
        .map_err(io("the scratch directory".into()))?;
    let (work, logs) = (root.join("build"), root.join("logs"));
    std::fs::create_dir_all(&logs).map_err(io(format!("{}", logs.display())))?;
    lay_out(spec, &crates, &work)?;
    let run = Sandboxed {
        bwrap: &bwrap,
        work: &work,
        logs: &logs,
        toolchain: &toolchain,
        arch,
        source_date_epoch,
    };
    let meta = run.cargo(&[
        "metadata",
        "--format-version",
        "1",
        "--locked",
        "--offline",
        "--filter-platform",
        arch.rust_target(),
    ])?;
    run.check(spec, "cargo metadata", &meta)?;
    let stdout =
        crate::fsio::read_file(&meta.stdout, MAX_METADATA as u64, "cargo metadata's answer")
            .map_err(|e| CargoError::File {
                file: spec.source.join("Cargo.toml"),
                why: format!("cargo metadata: {e}"),
            })?;
    let graph = Graph::read(&stdout, spec)?;
    let (package, linked) = graph.linked()?;
    let bin = graph.bin(spec)?;
    let step = progress.step(format!("building the Rust function ({})", package.name));
    let out = run.cargo(&[
        "build",
        "--release",
        "--locked",
        "--offline",
        "--target",
        arch.rust_target(),
        "--bin",
        &bin,
    ])?;
    step.done();
    run.check(spec, "cargo build", &out)?;
    let bin_path = work
        .join("target")
        .join(arch.rust_target())
        .join("release")
        .join(&bin);
    // Not followed if it is a link: the build could point it at any host file.
    let binary = crate::fsio::read_regular(
        &bin_path,
        MAX_SOURCE_BYTES,
        "the Rust function's binary",
        crate::fsio::Links::Refuse,
    )
    .map_err(|e| CargoError::File {
        file: spec.source.join("Cargo.toml"),
        why: format!("what cargo built for --bin {bin}: {e}"),
    })?;
    super::compiled::check_static(&binary, arch).map_err(|why| CargoError::File {
        file: spec.source.join("Cargo.toml"),
        why: format!(
            "the binary cargo built (--bin {bin}): {why}; a Rust function is one static binary (no build script may link a shared library into it)"
        ),
    })?;
    Ok(Built {
        binary,
        toolchain,
        package,
        linked,
        crates,
    })
}

/// The scratch directory the sandbox sees: the project's copy (without its `target/`, `.git/`
/// and `.cargo/`), the pinned crates unpacked, cargo's home with StratOS's configuration.
fn lay_out(spec: &CargoSpec, crates: &[CrateFile], work: &Path) -> Result<(), CargoError> {
    let io = |what: String| move |e: std::io::Error| CargoError::Io(format!("{what}: {e}"));
    if spec.source.join(".cargo").exists() {
        eprintln!(
            "stratos: warning: {}/.cargo is not used: the function is built with StratOS's cargo configuration only (a project's could replace the pinned crates' sources or wrap rustc); put build settings in Cargo.toml's [profile.release]",
            spec.source.display()
        );
    }
    super::compiled::copy_source(
        &spec.source,
        &work.join("src"),
        &[".git", "target", ".cargo"],
        MAX_SOURCE_BYTES,
    )
        .map_err(|e| match e {
            super::compiled::CopyError::NotRegular(file) => CargoError::File {
                file,
                why: "a symlink or special file in the Cargo project: the build copies regular files and directories only; replace it with the file".into(),
            },
            super::compiled::CopyError::Io(why) => CargoError::File {
                file: spec.source.clone(),
                why: format!("{why}; only its top-level target/, .git/ and .cargo/ are left out: remove other build outputs"),
            },
        })?;
    vendor(&work.join("vendor"), crates)?;
    for d in ["home", "cargo-home", "target", "tmp"] {
        std::fs::create_dir_all(work.join(d)).map_err(io(format!("{}", work.display())))?;
    }
    std::fs::write(
        work.join("cargo-home/config.toml"),
        format!(
            "# Written by StratOS: crates.io is replaced by the crates Cargo.lock pins, checked.\n[source.crates-io]\nreplace-with = \"pinned\"\n\n[source.pinned]\ndirectory = \"{MOUNT}/vendor\"\n\n[net]\noffline = true\n"
        ),
    )
    .map_err(io("the build's cargo configuration".into()))?;
    Ok(())
}

/// What runs cargo in the sandbox.
struct Sandboxed<'a> {
    bwrap: &'a Path,
    work: &'a Path,
    /// Where cargo's output goes (outside what the sandbox sees).
    logs: &'a Path,
    toolchain: &'a Toolchain,
    arch: Arch,
    source_date_epoch: u64,
}

impl Sandboxed<'_> {
    /// Runs `cargo ARGS` in the project's copy, with exactly the environment a reproducible,
    /// offline, static build needs; its output goes to files (what a build script prints can
    /// be any size), read back capped.
    fn cargo(&self, args: &[&str]) -> Result<Ran, CargoError> {
        let out = |name: &str| -> Result<(PathBuf, std::fs::File), CargoError> {
            let path = self.logs.join(format!("{}.{name}", args[0]));
            let f = std::fs::File::create(&path)
                .map_err(|e| CargoError::Io(format!("{}: {e}", path.display())))?;
            Ok((path, f))
        };
        let (stdout, stdout_file) = out("stdout")?;
        let (stderr, stderr_file) = out("stderr")?;
        let sys = &self.toolchain.sysroot;
        let m = |rel: &str| OsString::from(format!("{MOUNT}/{rel}"));
        let mut path = sys.join("bin").into_os_string();
        path.push(":/usr/bin:/bin");
        let mut env: Vec<(String, OsString)> = [
            ("PATH", path),
            ("HOME", m("home")),
            ("CARGO_HOME", m("cargo-home")),
            ("CARGO_TARGET_DIR", m("target")),
            ("RUSTC", sys.join("bin/rustc").into_os_string()),
            // rustc finds its own libraries through `$ORIGIN`, which the loader resolves by
            // /proc, and the sandbox has none.
            ("LD_LIBRARY_PATH", sys.join("lib").into_os_string()),
            ("CARGO_INCREMENTAL", "0".into()),
            ("CARGO_TERM_COLOR", "never".into()),
            ("CARGO_TERM_PROGRESS_WHEN", "never".into()),
            // The binary is static (the image has no dynamic loader); build scripts and
            // procedural macros, built for the host, are not: the flag applies to the target.
            (
                "CARGO_ENCODED_RUSTFLAGS",
                "-Ctarget-feature=+crt-static".into(),
            ),
            (
                "SOURCE_DATE_EPOCH",
                self.source_date_epoch.to_string().into(),
            ),
            ("TMPDIR", m("tmp")),
            ("LC_ALL", "C".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        // The C compiler and linker by their Debian names (`cc` leads through /etc, which the
        // sandbox does not have): the host's for build scripts and procedural macros, the
        // image's for the binary (for arm64 on x86-64, the cross gcc with the static glibc of
        // libc6-dev-arm64-cross; ci/setup installs both).
        let mut arches = vec![self.arch];
        arches.extend(Arch::host().filter(|h| *h != self.arch));
        for a in arches {
            let gcc = OsString::from(format!("{}-linux-gnu-gcc", a.name()));
            let triple = a.rust_target();
            let upper = triple.to_uppercase().replace('-', "_");
            env.push((format!("CARGO_TARGET_{upper}_LINKER"), gcc.clone()));
            env.push((format!("CC_{}", triple.replace('-', "_")), gcc));
        }
        let env: Vec<(&str, &OsStr)> = env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_os_str()))
            .collect();
        let mut argv: Vec<OsString> = vec![sys.join("bin/cargo").into_os_string()];
        argv.extend(args.iter().map(OsString::from));
        let mut tools: Vec<PathBuf> = ["/usr", "/lib", "/lib64"]
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .collect();
        if !sys.starts_with("/usr") {
            tools.push(sys.clone());
        }
        let tool_refs: Vec<&Path> = tools.iter().map(PathBuf::as_path).collect();
        crate::sandbox::command_at(
            self.bwrap,
            (self.work, Path::new(MOUNT)),
            // The pinned crates, checked: no build script may change one before it compiles.
            &["vendor"],
            &Path::new(MOUNT).join("src"),
            &tool_refs,
            &env,
            &argv,
        )
        .stdin(std::process::Stdio::null())
        .stdout(stdout_file)
        .stderr(stderr_file)
        .traced()
        .status()
        .map(|status| Ran {
            status,
            stdout,
            stderr,
        })
        .map_err(|e| {
            CargoError::Io(format!(
                "running cargo in the sandbox ({}): {e}",
                self.bwrap.display()
            ))
        })
    }

    /// Nothing, if cargo succeeded; else why, naming the project and the command.
    fn check(&self, spec: &CargoSpec, what: &str, ran: &Ran) -> Result<(), CargoError> {
        if ran.status.success() {
            return Ok(());
        }
        let stderr = tail(&ran.stderr, 4 * MAX_OUTPUT as u64);
        if let Some(why) = crate::sandbox::setup_failure(&stderr) {
            return Err(CargoError::SandboxSetup(why.to_owned()));
        }
        Err(CargoError::Build {
            what: what.to_owned(),
            project: spec.source.clone(),
            status: ran.status.to_string(),
            output: super::compiled::printable(&stderr, Path::new(MOUNT), MAX_OUTPUT),
        })
    }
}

/// One cargo run: its exit status and the files holding what it printed.
struct Ran {
    status: std::process::ExitStatus,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// The last `max` bytes of a file (where cargo's error is), as text; nothing if unreadable.
fn tail(path: &Path, max: u64) -> String {
    use std::io::{Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.take(max).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// `cargo metadata`'s answer: the packages and the resolved graph for the image's target.
struct Graph {
    packages: BTreeMap<String, serde_json::Value>,
    nodes: BTreeMap<String, Vec<(String, bool)>>,
    root: String,
    source: PathBuf,
}

impl Graph {
    fn read(stdout: &[u8], spec: &CargoSpec) -> Result<Graph, CargoError> {
        let bad = |why: String| {
            CargoError::Io(format!(
                "cargo metadata for {}: {why}",
                spec.source.display()
            ))
        };
        let v: serde_json::Value =
            serde_json::from_slice(stdout).map_err(|e| bad(format!("not JSON: {e}")))?;
        let packages: BTreeMap<String, serde_json::Value> = v["packages"]
            .as_array()
            .ok_or_else(|| bad("no packages".into()))?
            .iter()
            .filter_map(|p| Some((p["id"].as_str()?.to_owned(), p.clone())))
            .collect();
        let members = v["workspace_members"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let root = match v["resolve"]["root"].as_str() {
            Some(r) => r.to_owned(),
            None if members.len() == 1 => members[0].as_str().unwrap_or_default().to_owned(),
            None => {
                return Err(CargoError::File {
                    file: spec.source.join("Cargo.toml"),
                    why: format!("a workspace of {} packages: name the directory of the function's package in [runtime.cargo] source", members.len()),
                })
            }
        };
        let mut nodes = BTreeMap::new();
        for n in v["resolve"]["nodes"].as_array().into_iter().flatten() {
            let deps = n["deps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| {
                    let normal = d["dep_kinds"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|k| k["kind"].is_null());
                    Some((d["pkg"].as_str()?.to_owned(), normal))
                })
                .collect();
            if let Some(id) = n["id"].as_str() {
                nodes.insert(id.to_owned(), deps);
            }
        }
        Ok(Graph {
            packages,
            nodes,
            root,
            source: spec.source.clone(),
        })
    }

    fn package(&self, id: &str) -> Result<CratePackage, CargoError> {
        let p = self.packages.get(id).ok_or_else(|| {
            CargoError::Io(format!(
                "cargo metadata names {id} but does not describe it"
            ))
        })?;
        let text = |k: &str| p[k].as_str().map(str::to_owned);
        let dir = p["manifest_path"].as_str().and_then(|m| {
            Path::new(m)
                .parent()?
                .strip_prefix(Path::new(MOUNT).join("src"))
                .ok()
                .map(|d| d.display().to_string())
        });
        Ok(CratePackage {
            name: text("name").unwrap_or_default(),
            version: text("version").unwrap_or_default(),
            registry: p["source"].as_str().is_some(),
            // Cargo's old `MIT/Apache-2.0` means `MIT OR Apache-2.0`.
            license: text("license").map(|l| l.replace('/', " OR ")),
            dir,
        })
    }

    /// A procedural macro: it runs in the compiler, it is not linked into the binary.
    fn is_proc_macro(&self, id: &str) -> bool {
        self.packages.get(id).is_some_and(|p| {
            p["targets"].as_array().into_iter().flatten().any(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "proc-macro"))
            })
        })
    }

    /// The project's package, and every package reached from it by normal (not build or dev)
    /// dependencies, procedural macros left out: what is linked into the binary.
    fn linked(&self) -> Result<(CratePackage, Vec<CratePackage>), CargoError> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![self.root.clone()];
        while let Some(id) = todo.pop() {
            for (dep, normal) in self.nodes.get(&id).into_iter().flatten() {
                if *normal && !self.is_proc_macro(dep) && seen.insert(dep.clone()) {
                    todo.push(dep.clone());
                }
            }
        }
        let mut linked = seen
            .iter()
            .map(|id| self.package(id))
            .collect::<Result<Vec<_>, _>>()?;
        linked.sort();
        Ok((self.package(&self.root)?, linked))
    }

    /// The binary target to build: the profile's `bin`, else the package's only one.
    fn bin(&self, spec: &CargoSpec) -> Result<String, CargoError> {
        let bins: Vec<String> = self
            .packages
            .get(&self.root)
            .and_then(|p| p["targets"].as_array())
            .into_iter()
            .flatten()
            .filter(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "bin"))
            })
            .filter_map(|t| t["name"].as_str().map(str::to_owned))
            .collect();
        let file = self.source.join("Cargo.toml");
        match &spec.bin {
            Some(b) if bins.contains(b) => Ok(b.clone()),
            Some(b) => Err(CargoError::File {
                file,
                why: format!("[runtime.cargo] bin = {b:?}, but the package's binaries are {bins:?}: name one of them"),
            }),
            None if bins.len() == 1 => Ok(bins[0].clone()),
            None if bins.is_empty() => Err(CargoError::File {
                file,
                why: "the package has no binary target: a function is a program (src/main.rs, or a [[bin]])".into(),
            }),
            None => Err(CargoError::File {
                file,
                why: format!("the package has several binaries ({}): name the function's in [runtime.cargo] bin", bins.join(", ")),
            }),
        }
    }
}

/// `pkg:cargo/<name>@<version>`.
pub fn purl(name: &str, version: &str) -> String {
    format!("pkg:cargo/{name}@{}", version.replace('+', "%2B"))
}

/// The standard library, as the toolchain compiled it in; its sha256 is its `libstd` rlib's.
fn std_component(
    spec: &CargoSpec,
    toolchain: &Toolchain,
    arch: Arch,
) -> Result<ComponentSpec, CargoError> {
    let lib = toolchain
        .sysroot
        .join("lib/rustlib")
        .join(arch.rust_target())
        .join("lib");
    let rlib = std::fs::read_dir(&lib)
        .map_err(|e| CargoError::Io(format!("{}: {e}", lib.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libstd-") && n.ends_with(".rlib"))
        })
        .min()
        .ok_or_else(|| CargoError::NoToolchain {
            path: toolchain.sysroot.clone(),
            why: format!("{} has no libstd-*.rlib", lib.display()),
        })?;
    let (sha, _) = crate::fsio::sha256_file(&rlib, crate::fsio::Links::Follow)
        .map_err(|e| CargoError::Io(e.to_string()))?;
    let release = toolchain.release().to_owned();
    Ok(ComponentSpec {
        bom_ref: format!("rust-std@{release}"),
        classification: "library",
        name: "std".into(),
        version: release,
        description: Some(format!(
            "the Rust standard library for {}, compiled into {} by {} (sha256 = its libstd rlib)",
            arch.rust_target(),
            spec.output,
            toolchain.version
        )),
        purl: None,
        license: Some("MIT OR Apache-2.0".into()),
        sha256: hex::encode(sha),
        files: Vec::new(),
        properties: vec![(prop::ORIGIN.into(), "cargo".into())],
        depends_on: Vec::new(),
    })
}

/// A crate linked into the binary: from crates.io (pinned by the lock) or a path crate of the
/// project.
fn crate_component(
    spec: &CargoSpec,
    p: &CratePackage,
    pins: &BTreeMap<(&str, &str), &Sha256>,
) -> Result<ComponentSpec, CargoError> {
    let license = p
        .license
        .clone()
        .filter(|l| super::spdx::is_spdx_expression(l));
    let properties = vec![(prop::ORIGIN.into(), "cargo".into())];
    if !p.registry {
        let dir = p.dir.clone().ok_or_else(|| CargoError::File {
            file: spec.source.join("Cargo.toml"),
            why: format!(
                "the path crate {} {} is not inside the project: the build sees only the project's directory; move the crate inside it",
                p.name, p.version
            ),
        })?;
        return Ok(ComponentSpec {
            bom_ref: format!("cargo-path:{}@{}", p.name, p.version),
            classification: "library",
            name: p.name.clone(),
            version: p.version.clone(),
            description: Some(format!(
                "Rust crate from the project's own directory {dir}, compiled into {} (sha256 = of its files)",
                spec.output
            )),
            purl: None,
            license,
            sha256: super::compiled::dir_digest(&spec.source.join(&dir))
                .map_err(CargoError::Io)?,
            files: Vec::new(),
            properties,
            depends_on: Vec::new(),
        });
    }
    let sha = pins
        .get(&(p.name.as_str(), p.version.as_str()))
        .ok_or_else(|| CargoError::Crate {
            name: p.name.clone(),
            version: p.version.clone(),
            why: "linked into the binary but not pinned by Cargo.lock".into(),
        })?;
    let r = purl(&p.name, &p.version);
    Ok(ComponentSpec {
        bom_ref: r.clone(),
        classification: "library",
        name: p.name.clone(),
        version: p.version.clone(),
        description: Some(format!(
            "Rust crate compiled into {} (sha256 = its .crate, pinned by Cargo.lock)",
            spec.output
        )),
        purl: Some(r),
        license,
        sha256: sha.to_string(),
        files: Vec::new(),
        properties,
        depends_on: Vec::new(),
    })
}

/// The `[runtime.cargo]` layer: builds the function, puts the binary at its output path, and
/// returns the SBOM's components (the function, the standard library, each crate linked in),
/// the package's name and the toolchain's `rustc -V`.
pub fn install_cargo(
    tree: &mut Tree,
    profile: &Profile,
    sources: &Sources,
    progress: &Progress,
) -> Result<Option<(Vec<ComponentSpec>, String, String)>, CargoError> {
    let Some(spec) = &profile.cargo else {
        return Ok(None);
    };
    let arch = profile.image.arch;
    let built = build(
        spec,
        arch,
        profile.image.source_date_epoch,
        sources,
        progress,
    )?;
    let name = built.package.name.clone();
    let origin = Origin::new(format!("cargo:{name}"));
    tree.insert(
        &spec.output,
        Entry::file(built.binary.clone(), 0o755, &origin),
    )
    .map_err(|e| CargoError::Io(format!("[runtime.cargo] output {}: {e}", spec.output)))?;
    let std = std_component(spec, &built.toolchain, arch)?;
    let mut depends = vec![std.bom_ref.clone()];
    let mut components = vec![std];
    let pins: BTreeMap<(&str, &str), &Sha256> = built
        .crates
        .iter()
        .map(|c| {
            (
                (c.locked.name.as_str(), c.locked.version.as_str()),
                &c.sha256,
            )
        })
        .collect();
    for p in &built.linked {
        let c = crate_component(spec, p, &pins)?;
        depends.push(c.bom_ref.clone());
        components.push(c);
    }
    components.push(ComponentSpec {
        bom_ref: origin.to_string(),
        classification: "application",
        name: name.clone(),
        version: built.package.version.clone(),
        description: Some(format!(
            "the Rust function {name}, built by {} as a static binary",
            built.toolchain.version
        )),
        purl: None,
        license: built
            .package
            .license
            .clone()
            .filter(|l| super::spdx::is_spdx_expression(l)),
        sha256: crate::sign::sha256_hex(&built.binary),
        files: Vec::new(),
        properties: vec![
            (prop::ORIGIN.into(), "cargo".into()),
            (
                "stratos:rust-toolchain".into(),
                built.toolchain.version.clone(),
            ),
        ],
        depends_on: depends,
    });
    Ok(Some((components, name, built.toolchain.version)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo metadata`'s shape: the root `fn` depends normally on `a` (whose build script
    /// needs `b`), on the procedural macro `m` (which needs `c`), on `d` for tests only, and on
    /// the path crate `p`; `a` depends normally on `e`.
    fn metadata() -> serde_json::Value {
        let pkg = |id: &str, kind: &str, src: bool| {
            serde_json::json!({
                "id": id, "name": id, "version": "1.0.0",
                "source": if src { serde_json::json!("registry+https://github.com/rust-lang/crates.io-index") } else { serde_json::Value::Null },
                "license": "MIT/Apache-2.0",
                "manifest_path": if src { format!("/build/vendor/{id}-1.0.0/Cargo.toml") } else { format!("/build/src/{}Cargo.toml", if id == "fn" { "".to_owned() } else { format!("{id}/") }) },
                "targets": [{"name": id, "kind": [kind]}],
            })
        };
        let dep = |id: &str, kind: Option<&str>| serde_json::json!({"pkg": id, "dep_kinds": [{"kind": kind, "target": null}]});
        serde_json::json!({
            "packages": [pkg("fn", "bin", false), pkg("a", "lib", true), pkg("b", "lib", true),
                         pkg("c", "lib", true), pkg("d", "lib", true), pkg("e", "lib", true),
                         pkg("m", "proc-macro", true), pkg("p", "lib", false)],
            "workspace_members": ["fn"],
            "resolve": {"root": "fn", "nodes": [
                {"id": "fn", "deps": [dep("a", None), dep("m", None), dep("d", Some("dev")), dep("p", None)]},
                {"id": "a", "deps": [dep("b", Some("build")), dep("e", None)]},
                {"id": "m", "deps": [dep("c", None)]},
            ]},
        })
    }

    #[test]
    fn linked_crates_are_the_normal_dependencies_without_macros_build_or_dev_ones() {
        let spec = CargoSpec {
            source: PathBuf::from("/p"),
            bin: None,
            output: crate::rootfs::ImagePath::parse("/var/task/bootstrap").unwrap(),
            toolchain: None,
        };
        let g = Graph::read(metadata().to_string().as_bytes(), &spec).unwrap();
        let (root, linked) = g.linked().unwrap();
        assert_eq!(root.name, "fn");
        let names: Vec<&str> = linked.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "e", "p"]);
        assert_eq!(linked[0].license.as_deref(), Some("MIT OR Apache-2.0"));
        assert!(linked[0].registry && !linked[2].registry);
        assert_eq!(linked[2].dir.as_deref(), Some("p"));
        assert_eq!(g.bin(&spec).unwrap(), "fn");
        let other = CargoSpec {
            bin: Some("nope".into()),
            ..spec
        };
        assert!(g.bin(&other).unwrap_err().to_string().contains("\"nope\""));
    }
}
