//! `stratos doctor`: what this host has and lacks for building and booting images, each lack
//! with its fix. Nothing is built or booted: tools are found on `PATH` and asked their version,
//! files are looked at, KVM is tried by letting QEMU create a VM with no machine in it.
//!
//! Every place looked at comes from a [`Host`], so tests point the checks at a fake tree.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::arch::Arch;
use crate::cache::{Cache, EntryKind};

/// Where the checks look.
#[derive(Debug, Clone)]
pub struct Host {
    /// The `PATH` tools are looked up in.
    pub path: OsString,
    /// The KVM device.
    pub kvm: PathBuf,
    /// The Debian kernel source the shipped profiles build from.
    pub kernel_source: PathBuf,
    /// Where C headers are (libelf's, OpenSSL's).
    pub include: PathBuf,
    /// The build cache's root.
    pub cache: PathBuf,
    /// Where `ci/fetch-pinned` leaves packages for offline builds.
    pub prefetch: PathBuf,
    /// The Go toolchain `[runtime.go]` uses by default.
    pub go_root: PathBuf,
}

impl Host {
    /// This machine, as `stratos build` and `stratos boot` see it.
    pub fn from_env() -> Host {
        Host {
            path: std::env::var_os("PATH").unwrap_or_default(),
            kvm: PathBuf::from("/dev/kvm"),
            kernel_source: PathBuf::from(KERNEL_SOURCE),
            include: PathBuf::from("/usr/include"),
            cache: crate::cache::root(),
            prefetch: crate::packages::fetch::Sources::from_env(true).prefetch,
            go_root: PathBuf::from(crate::profile::DEFAULT_GO_TOOLCHAIN),
        }
    }

    /// `tool` on this host's `PATH`, if it is there as a file.
    fn which(&self, tool: &str) -> Option<PathBuf> {
        std::env::split_paths(&self.path)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    }
}

/// The Linux source every shipped profile (and `stratos new`'s) builds its kernel from.
pub const KERNEL_SOURCE: &str = "/usr/src/linux-source-6.1.tar.xz";

/// One thing looked at.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    /// Whether building and booting the shipped profiles needs it (else it only helps).
    pub required: bool,
    pub ok: bool,
    /// What was found (or not).
    pub found: String,
    /// What to do about it, when it is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Everything looked at.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every required check passed.
    pub ok: bool,
    /// The names of the required checks that failed.
    pub missing: Vec<&'static str>,
    pub checks: Vec<Check>,
    pub cache: CacheUsage,
}

/// The build cache: where it is and what each kind of entry takes.
#[derive(Debug, Clone, Serialize)]
pub struct CacheUsage {
    pub root: PathBuf,
    pub bytes: u64,
    /// Kind of entry → (entries, bytes), for the kinds present.
    pub kinds: std::collections::BTreeMap<&'static str, KindUsage>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct KindUsage {
    pub entries: u64,
    pub bytes: u64,
}

/// Runs every check.
pub fn run(host: &Host) -> Report {
    let (cache_check, cache) = cache(host);
    let qemu = qemu(host);
    let kvm = kvm(host, qemu.ok);
    let checks = vec![
        qemu,
        kvm,
        cache_check,
        kernel_source(host),
        kernel_tools(host),
        bwrap(host),
        prefetch(host),
        checkers(host),
        arm64(host),
        go(host),
        rust(host),
    ];
    let missing: Vec<&'static str> = checks
        .iter()
        .filter(|c| c.required && !c.ok)
        .map(|c| c.name)
        .collect();
    Report {
        ok: missing.is_empty(),
        missing,
        checks,
        cache,
    }
}

fn ok(name: &'static str, required: bool, found: String) -> Check {
    Check {
        name,
        required,
        ok: true,
        found,
        fix: None,
    }
}

fn lacking(name: &'static str, required: bool, found: String, fix: String) -> Check {
    Check {
        name,
        required,
        ok: false,
        found,
        fix: Some(fix),
    }
}

/// Runs `program args` with nothing on stdin (or `input`), its output captured, killed after
/// `limit`: (exit success, stdout, stderr), or why it could not run.
fn run_tool(
    program: &Path,
    args: &[&str],
    input: Option<&str>,
    limit: Duration,
) -> Result<(bool, String, String), String> {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A tool that exits without reading its input closes the pipe: not an error here.
        let _ = stdin.write_all(input.unwrap_or("").as_bytes());
    }
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not answer within {} s",
                    program.display(),
                    limit.as_secs()
                ));
            }
            Err(e) => return Err(format!("waiting for {}: {e}", program.display())),
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("reading {}'s output: {e}", program.display()))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn first_line(s: &str) -> &str {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

fn qemu(host: &Host) -> Check {
    let arch = Arch::X86_64;
    let name = arch.qemu_binary();
    let fix = format!("install it: apt-get install {}", arch.qemu_package());
    let Some(bin) = host.which(name) else {
        return lacking("qemu", true, format!("{name} is not on PATH"), fix);
    };
    match run_tool(&bin, &["--version"], None, Duration::from_secs(10)) {
        Ok((true, out, _)) => ok(
            "qemu",
            true,
            format!("{} ({})", first_line(&out), bin.display()),
        ),
        Ok((false, out, err)) => lacking(
            "qemu",
            true,
            format!(
                "{} --version failed: {}",
                bin.display(),
                first_line(&format!("{err}\n{out}"))
            ),
            fix,
        ),
        Err(e) => lacking("qemu", true, e, fix),
    }
}

/// What `--arch aarch64` needs on an x86-64 host: QEMU for arm64, the cross compiler (kernels
/// and the init), the user-mode emulator (the bytecode step). Not required: x86-64 images need
/// none of it.
fn arm64(host: &Host) -> Check {
    let a = Arch::Aarch64;
    let tools = [
        (a.qemu_binary(), a.qemu_package()),
        ("aarch64-linux-gnu-gcc", a.cross_gcc_package()),
        (a.qemu_user(), "qemu-user-static"),
    ];
    let missing: Vec<(&str, &str)> = tools
        .iter()
        .copied()
        .filter(|(tool, _)| host.which(tool).is_none())
        .collect();
    if missing.is_empty() {
        return ok(
            "arm64",
            false,
            format!(
                "{} (stratos build --arch aarch64 builds and boots arm64 images)",
                tools.map(|(t, _)| t).join(", ")
            ),
        );
    }
    let mut packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    packages.dedup();
    lacking(
        "arm64",
        false,
        format!(
            "{} not on PATH: arm64 images (--arch aarch64) cannot be built or booted",
            missing
                .iter()
                .map(|(t, _)| *t)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "apt-get install {} libc6-dev-arm64-cross (ci/setup does), and rustup target add {}",
            packages.join(" "),
            a.rust_target()
        ),
    )
}

/// KVM: the device, its permission, then whether QEMU can create a VM with it (a machine with
/// nothing in it: no guest runs). Not required: without KVM, boots run under TCG, slower.
fn kvm(host: &Host, qemu_ok: bool) -> Check {
    let tcg = "without it `stratos boot` runs guests under TCG (emulation, several times slower)";
    let dev = host.kvm.display();
    if !host.kvm.exists() {
        return lacking(
            "kvm",
            false,
            format!("{dev} does not exist"),
            format!("enable virtualisation (VT-x/AMD-V) in the firmware, or nested virtualisation for this VM, and load the module (modprobe kvm_intel or kvm_amd); {tcg}"),
        );
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&host.kvm)
    {
        let fix = if e.kind() == std::io::ErrorKind::PermissionDenied {
            format!("add this user to the group that owns {dev} (usually: sudo usermod -aG kvm $USER, then log in again); {tcg}")
        } else {
            format!("check {dev} (ls -l {dev}); {tcg}")
        };
        return lacking("kvm", false, format!("{dev} cannot be opened: {e}"), fix);
    }
    if !qemu_ok {
        return lacking(
            "kvm",
            false,
            format!("{dev} opens; not tried further without QEMU"),
            "install QEMU (see qemu), then run stratos doctor again".into(),
        );
    }
    let bin = host
        .which(Arch::X86_64.qemu_binary())
        .expect("the qemu check found it");
    // `-machine none`: QEMU opens KVM and creates the VM (KVM_CREATE_VM) with no CPU and no
    // memory, then reads `quit` from its monitor on stdin.
    let args = [
        "-machine",
        "none",
        "-accel",
        "kvm",
        "-nodefaults",
        "-display",
        "none",
        "-S",
        "-monitor",
        "stdio",
    ];
    match run_tool(&bin, &args, Some("quit\n"), Duration::from_secs(15)) {
        Ok((true, _, _)) => ok(
            "kvm",
            false,
            format!("{dev} opens and QEMU creates a KVM VM"),
        ),
        Ok((false, out, err)) => lacking(
            "kvm",
            false,
            format!(
                "{dev} opens but QEMU cannot create a KVM VM: {}",
                first_line(&format!("{err}\n{out}"))
            ),
            format!("the kernel refuses KVM here (nested virtualisation off, or another hypervisor holds VT-x/AMD-V); {tcg}"),
        ),
        Err(e) => lacking(
            "kvm",
            false,
            e,
            format!("run the same by hand: {} {}", bin.display(), args.join(" ")),
        ),
    }
}

/// The cache: where, whether it can be written, and its size by kind of entry.
fn cache(host: &Host) -> (Check, CacheUsage) {
    let mut usage = CacheUsage {
        root: host.cache.clone(),
        bytes: 0,
        kinds: Default::default(),
    };
    let where_ = host.cache.display();
    let set = "or point STRATOS_CACHE at a directory you can write";
    // The nearest directory that exists: the cache is created under it on first use.
    let existing = host.cache.ancestors().find(|p| p.exists());
    let writable = existing
        .is_some_and(|p| p.is_dir() && rustix::fs::access(p, rustix::fs::Access::WRITE_OK).is_ok());
    if !writable {
        let at = existing.map_or(where_.to_string(), |p| p.display().to_string());
        let check = lacking(
            "cache",
            true,
            format!("{where_}: {at} is not a directory this user can write"),
            format!("make {at} writable for this user, {set}"),
        );
        return (check, usage);
    }
    if !host.cache.exists() {
        return (
            ok(
                "cache",
                true,
                format!("{where_} (empty; created on first build)"),
            ),
            usage,
        );
    }
    match Cache::new(host.cache.clone()).entries() {
        Ok((entries, _links)) => {
            for e in entries {
                let k = usage.kinds.entry(e.kind.name()).or_default();
                k.entries += 1;
                k.bytes += e.bytes;
                usage.bytes += e.bytes;
            }
            let kernels = usage
                .kinds
                .get(EntryKind::Kernel.name())
                .map_or(0, |k| k.entries);
            let found = format!(
                "{where_}: {} ({kernels} built kernel(s); `stratos cache ls` lists them)",
                crate::progress::human_bytes(usage.bytes)
            );
            (ok("cache", true, found), usage)
        }
        Err(e) => (
            lacking(
                "cache",
                true,
                e.to_string(),
                format!("fix the permissions of {where_}, {set}"),
            ),
            usage,
        ),
    }
}

fn kernel_source(host: &Host) -> Check {
    let p = host.kernel_source.display();
    match std::fs::metadata(&host.kernel_source) {
        Ok(m) if m.is_file() => ok(
            "kernel-source",
            true,
            format!("{p} ({})", crate::progress::human_bytes(m.len())),
        ),
        _ => lacking(
            "kernel-source",
            true,
            format!("{p} is missing: the shipped profiles build their kernel from it"),
            "install it: apt-get install linux-source-6.1 (or use a profile with [kernel] prebuilt)".into(),
        ),
    }
}

/// What `make` needs to build a kernel: the tools and two libraries' headers.
fn kernel_tools(host: &Host) -> Check {
    let mut lacks: Vec<String> = ["make", "gcc", "ld", "bc", "bison", "flex"]
        .into_iter()
        .filter(|t| host.which(t).is_none())
        .map(str::to_owned)
        .collect();
    for (header, what) in [
        ("libelf.h", "libelf headers"),
        ("openssl/ssl.h", "OpenSSL headers"),
    ] {
        if !host.include.join(header).is_file() {
            lacks.push(format!("{what} ({})", host.include.join(header).display()));
        }
    }
    if lacks.is_empty() {
        return ok(
            "kernel-tools",
            true,
            "make, gcc, ld, bc, bison, flex, libelf and OpenSSL headers".into(),
        );
    }
    lacking(
        "kernel-tools",
        true,
        format!("missing: {}", lacks.join(", ")),
        "install them: apt-get install make gcc libc6-dev binutils bc bison flex libelf-dev libssl-dev".into(),
    )
}

/// The Go toolchain: only Go functions (`[runtime.go]`: go-fn, go-api) need it.
fn go(host: &Host) -> Check {
    match crate::packages::go::toolchain_version(&host.go_root) {
        Ok(v) => ok(
            "go",
            false,
            format!(
                "{v} ({}: builds [runtime.go] functions)",
                host.go_root.display()
            ),
        ),
        Err(e) => lacking(
            "go",
            false,
            format!("no Go toolchain: Go functions ([runtime.go]) cannot be built ({e})"),
            "install it: apt-get install golang-go".into(),
        ),
    }
}

/// The Rust toolchain: only Rust functions (`[runtime.cargo]`: lambda-rust) need it, with the
/// standard library of each image architecture they are built for.
fn rust(host: &Host) -> Check {
    use crate::arch::Arch;
    use crate::packages::cargo::find_toolchain;
    let Some(rustc) = host.which("rustc") else {
        return lacking(
            "rust",
            false,
            "no rustc on PATH: Rust functions ([runtime.cargo]) cannot be built".into(),
            "install it with rustup (https://rustup.rs), or run ./ci/setup".into(),
        );
    };
    match find_toolchain(None, &rustc, Arch::X86_64) {
        Err(e) => lacking(
            "rust",
            false,
            format!("Rust functions ([runtime.cargo]) cannot be built: {e}"),
            "install it with rustup (https://rustup.rs), or run ./ci/setup".into(),
        ),
        Ok(t) => match find_toolchain(Some(&t.sysroot), &rustc, Arch::Aarch64) {
            Ok(_) => ok(
                "rust",
                false,
                format!(
                    "{} ({}: builds [runtime.cargo] functions for x86-64 and arm64)",
                    t.version,
                    t.sysroot.display()
                ),
            ),
            Err(_) => lacking(
                "rust",
                false,
                format!(
                    "{} ({}) builds [runtime.cargo] functions for x86-64, not arm64: it has no aarch64 standard library",
                    t.version,
                    t.sysroot.display()
                ),
                "rustup target add aarch64-unknown-linux-gnu".into(),
            ),
        },
    }
}

fn bwrap(host: &Host) -> Check {
    match host.which("bwrap") {
        Some(p) => ok("bwrap", true, format!("{} (the build sandbox)", p.display())),
        None => lacking(
            "bwrap",
            true,
            "bwrap is not on PATH: builds that compile Python bytecode, a Go or a Rust function run the image's interpreter, go and cargo only inside it".into(),
            "install it: apt-get install bubblewrap".into(),
        ),
    }
}

/// The prefetch directories: packages a networked setup left for offline builds.
fn prefetch(host: &Host) -> Check {
    let mut found = Vec::new();
    let mut absent = Vec::new();
    for sub in ["debs", "wheels", "npm"] {
        let dir = host.prefetch.join(sub);
        match std::fs::read_dir(&dir) {
            Ok(rd) => {
                let (mut n, mut bytes, mut unreadable) = (0u64, 0u64, 0u64);
                for m in rd.map(|e| e.and_then(|e| e.metadata())) {
                    match m {
                        Ok(m) if m.is_file() => {
                            n += 1;
                            bytes += m.len();
                        }
                        Ok(_) => {}
                        Err(_) => unreadable += 1,
                    }
                }
                let mut line = format!(
                    "{sub}: {n} file(s), {}",
                    crate::progress::human_bytes(bytes)
                );
                if unreadable > 0 {
                    line.push_str(&format!(" ({unreadable} unreadable)"));
                }
                found.push(line);
            }
            Err(_) => absent.push(sub),
        }
    }
    let p = host.prefetch.display();
    if absent.is_empty() {
        return ok("prefetch", false, format!("{p}: {}", found.join("; ")));
    }
    let mut what = format!("{p}: no {}", absent.join(", no "));
    if !found.is_empty() {
        what.push_str(&format!("; {}", found.join("; ")));
    }
    lacking(
        "prefetch",
        false,
        what,
        "only needed for --offline builds: run ci/fetch-pinned from a StratOS checkout (ci/setup does), or build once online and the cache keeps what was fetched".into(),
    )
}

/// The independent checkers the tests read images back with.
fn checkers(host: &Host) -> Check {
    let lacks: Vec<&str> = [
        ("fsck.erofs", "erofs-utils"),
        ("veritysetup", "cryptsetup-bin"),
    ]
    .into_iter()
    .filter(|(t, _)| host.which(t).is_none())
    .map(|(_, pkg)| pkg)
    .collect();
    if lacks.is_empty() {
        return ok(
            "checkers",
            false,
            "fsck.erofs and veritysetup (to check images independently)".into(),
        );
    }
    lacking(
        "checkers",
        false,
        format!(
            "missing {}: only the tests use them, to check EROFS images and dm-verity trees independently",
            lacks.join(", ")
        ),
        format!("install them: apt-get install {}", lacks.join(" ")),
    )
}

/// The report for people: one line per check, its fix below it.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    for c in &r.checks {
        let mark = match (c.ok, c.required) {
            (true, _) => "ok  ",
            (false, true) => "MISS",
            (false, false) => "warn",
        };
        out.push_str(&format!("{mark}  {:<14} {}\n", c.name, c.found));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("      {:<14} fix: {fix}\n", ""));
        }
    }
    for (kind, k) in &r.cache.kinds {
        out.push_str(&format!(
            "      cache {:<17} {:>4} entries {:>10}\n",
            kind,
            k.entries,
            crate::progress::human_bytes(k.bytes)
        ));
    }
    if r.ok {
        out.push_str("everything required is here\n");
    } else {
        out.push_str(&format!("missing: {}\n", r.missing.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests;
