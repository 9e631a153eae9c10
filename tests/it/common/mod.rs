//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

pub mod server;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stratos"))
}

/// `stratos` with a private cache directory, so tests never share state with the user's, and
/// `boot`'s whole console on stdout (what tests read; a person gets the function's output).
pub fn stratos(cache: &Path) -> assert_cmd::Command {
    require_init();
    let mut c = assert_cmd::Command::new(bin());
    c.env("STRATOS_CACHE", cache)
        .env("STRATOS_CONSOLE", "all")
        .env_remove("STRATOS_SIGNING_KEY")
        .env_remove("SOURCE_DATE_EPOCH");
    c
}

/// The same as a std Command (for `sh -c` wrappers and long-running boots).
pub fn stratos_std(cache: &Path) -> Command {
    require_init();
    let mut c = Command::new(bin());
    c.env("STRATOS_CACHE", cache)
        .env("STRATOS_CONSOLE", "all")
        .env_remove("STRATOS_SIGNING_KEY")
        .env_remove("SOURCE_DATE_EPOCH");
    c
}

/// The builder finds `stratos-init` next to its own executable; `cargo test --workspace`
/// builds it there (the init crate's tests need the binary).
pub fn require_init() {
    let init = bin().with_file_name("stratos-init");
    assert!(
        init.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` (or `./ci/test`), which builds stratos-init too",
        init.display()
    );
}

/// Fails with the command that installs a missing tool.
pub fn require_tool(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(found, "`{tool}` is not installed: run `./ci/setup` (as root or with sudo) to install the test prerequisites");
}

/// Fails if a file that ci/setup provides is missing.
pub fn require_setup_file(rel: &str) -> PathBuf {
    let p = root().join(rel);
    assert!(
        p.exists(),
        "{} is missing: run `./ci/setup` first (it unpacks Debian's kernel and installs QEMU)",
        p.display()
    );
    p
}

/// A minimal x86 bzImage look-alike: enough for the builder to recognise and version it.
pub fn fake_kernel() -> Vec<u8> {
    let mut b = vec![0u8; 0x1000];
    b[0x202..0x206].copy_from_slice(b"HdrS");
    b[0x20e..0x210].copy_from_slice(&0x200u16.to_le_bytes());
    let v = b"6.1.0-test (builder@stratos) #1\0";
    b[0x400..0x400 + v.len()].copy_from_slice(v);
    for (i, x) in b.iter_mut().enumerate().skip(0x800) {
        *x = (i % 251) as u8;
    }
    b
}

/// A minimal arm64 Image look-alike: the header's magic and a banner.
pub fn fake_arm64_kernel() -> Vec<u8> {
    let mut b = vec![0u8; 0x1000];
    b[0x38..0x3c].copy_from_slice(b"ARM\x64");
    let v = b"Linux version 6.1.0-test (builder@stratos) #1\0";
    b[0x400..0x400 + v.len()].copy_from_slice(v);
    for (i, x) in b.iter_mut().enumerate().skip(0x800) {
        *x = (i % 241) as u8;
    }
    b
}

pub fn sha256_file(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

/// name → sha256 of every file in an image directory.
pub fn digests(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name().into_string().unwrap(), sha256_file(&e.path())))
        .collect()
}

/// A self-contained profile (fake kernel, one overlay, one host file, no packages).
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

pub const PROFILE: &str = r#"schema = 1

[image]
name = "fixture"
version = "1.2.3"
source-date-epoch = 1700000000

[kernel]
prebuilt = "kernel/bzImage"
cmdline = "console=ttyS0 panic=-1"

[init]
argv = ["/bin/fn", "--serve"]
env = { MODE = "test" }

[[overlay]]
path = "overlay/app"

[[overlay]]
path = "overlay/site"

[[file]]
source = "motd.txt"
path = "/etc/motd"
mode = 0o640

[sysctl]
"vm.swappiness" = 10

[zram]
size = "25%"
"#;

impl Fixture {
    pub fn new() -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        f.write("kernel/bzImage", &fake_kernel());
        f.write("profile.toml", PROFILE.as_bytes());
        f.write("motd.txt", b"welcome\n");
        f.write_overlay_files(false);
        f
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn profile(&self) -> PathBuf {
        self.path("profile.toml")
    }

    pub fn write(&self, rel: &str, data: &[u8]) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    /// The overlays' files, created in one order or the reverse, with varying mtimes.
    pub fn write_overlay_files(&self, reverse: bool) {
        use std::os::unix::fs::PermissionsExt;
        let mut files: Vec<(&str, &[u8], u32)> = vec![
            ("overlay/app/bin/fn", b"#!/bin/sh\necho fn\n", 0o755),
            ("overlay/app/etc/app.conf", b"x=1\n", 0o644),
            ("overlay/app/share/data/a.txt", b"aaaa\n", 0o644),
            ("overlay/app/share/data/b.txt", b"bbbb\n", 0o600),
            ("overlay/site/etc/app.conf", b"x=2 (site wins)\n", 0o644),
            ("overlay/site/index.html", b"<p>hi</p>\n", 0o644),
        ];
        if reverse {
            files.reverse();
        }
        for (i, (rel, data, mode)) in files.iter().enumerate() {
            self.write(rel, data);
            let p = self.path(rel);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
            let t = std::time::SystemTime::UNIX_EPOCH
                + std::time::Duration::from_secs(
                    1_000_000 * (i as u64 + 1) + if reverse { 777 } else { 0 },
                );
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        let link = self.path("overlay/app/bin/sh");
        if !link.exists() {
            std::os::unix::fs::symlink("fn", link).unwrap();
        }
    }
}

/// Validates an SBOM against the CycloneDX 1.5 JSON schema (with its referenced schemas).
pub fn validate_sbom(sbom: &serde_json::Value) -> Result<(), String> {
    let dir = root().join("tests/fixtures/schemas");
    let load = |n: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(n)).unwrap()).unwrap()
    };
    let schema = load("bom-1.5.schema.json");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .with_resource(
            "http://cyclonedx.org/schema/spdx.schema.json",
            jsonschema::Resource::from_contents(load("spdx.schema.json")),
        )
        .with_resource(
            "http://cyclonedx.org/schema/jsf-0.82.schema.json",
            jsonschema::Resource::from_contents(load("jsf-0.82.schema.json")),
        )
        .build(&schema)
        .map_err(|e| format!("schema does not compile: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(sbom)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// QEMU processes whose command line mentions `needle` and whose `stratos` is gone (to prove no
/// QEMU outlived the command that started it). A QEMU whose parent is a running `stratos` belongs
/// to a command still at work — another test of the same binary using the same image.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let parent_is_stratos = |pid: u32| -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // The fields after the command name, which is in parentheses and may hold spaces.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        ppid.and_then(|pp| std::fs::read(format!("/proc/{pp}/cmdline")).ok())
            .and_then(|c| c.split(|b| *b == 0).next().map(|a| a.to_vec()))
            .is_some_and(|argv0| argv0.ends_with(b"/stratos") || argv0 == b"stratos")
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) && cmd.contains("qemu-system") && !parent_is_stratos(pid) {
                out.push(pid);
            }
        }
    }
    out
}

/// The cross-built arm64 init the builder uses for `--arch aarch64`, found as the builder finds
/// it (`init_binary::locate`: beside the host's build, same Cargo profile); ci/test builds it.
pub fn aarch64_init() -> PathBuf {
    stratos::build::init_binary::locate(stratos::arch::Arch::Aarch64)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A cache shared by every test run (kernel sources, built kernels, .debs): content-addressed
/// and locked, so sharing is safe and the expensive kernel build happens once.
pub fn shared_cache() -> PathBuf {
    let p = root().join("target/stratos-test-cache");
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Requirements for building kernels from source.
pub fn require_kernel_source() -> PathBuf {
    for t in ["make", "gcc", "bison", "flex", "bc", "objcopy"] {
        require_tool(t);
    }
    let p = PathBuf::from("/usr/src/linux-source-6.1.tar.xz");
    assert!(
        p.is_file(),
        "{} is missing: run `./ci/setup` (it installs linux-source-6.1)",
        p.display()
    );
    p
}

/// Writes a copy of a repository profile into `dir` with its relative paths made absolute, so
/// it can be modified; the lock file is copied next to it.
pub fn copy_profile(name: &str, dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let text =
        std::fs::read_to_string(root().join("profiles").join(format!("{name}.toml"))).unwrap();
    let text = text
        .replace("\"../", &format!("\"{}/", root().display()))
        .replace(
            "policy = \"seccomp/",
            &format!("policy = \"{}/profiles/seccomp/", root().display()),
        );
    let text = edit(text);
    let dest = dir.join(format!("{name}.toml"));
    std::fs::write(&dest, text).unwrap();
    let lock = root().join("profiles").join(format!("{name}.lock"));
    if lock.exists() {
        std::fs::copy(lock, dir.join(format!("{name}.lock"))).unwrap();
    }
    let arm_lock = root().join("profiles").join(format!("{name}.aarch64.lock"));
    if arm_lock.exists() {
        std::fs::copy(arm_lock, dir.join(format!("{name}.aarch64.lock"))).unwrap();
    }
    dest
}

/// Every path under `dir` (not `dir` itself), sorted, without following links.
pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .collect()
}

/// relative path → what is there (kind, mode, and the sha256 of a file or a link's target),
/// recursively, without following links: compare before and after to show nothing changed.
pub fn listing(dir: &Path) -> BTreeMap<String, String> {
    use std::os::unix::fs::PermissionsExt;
    walk_files(dir)
        .into_iter()
        .map(|p| {
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                format!("dir {:o}", m.permissions().mode() & 0o7777)
            } else if m.is_file() {
                format!(
                    "file {:o} {}",
                    m.permissions().mode() & 0o7777,
                    sha256_file(&p)
                )
            } else {
                "special".to_owned()
            };
            (
                p.strip_prefix(dir).unwrap().to_string_lossy().into_owned(),
                what,
            )
        })
        .collect()
}

/// The errors of `v` against docs/boot-test.schema.json.
pub fn schema_errors(v: &serde_json::Value) -> Vec<String> {
    let schema: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root().join("docs/boot-test.schema.json")).unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    validator
        .iter_errors(v)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

/// A running `stratos boot` (or any command that starts QEMU): dropped, it is asked to stop
/// with SIGTERM — stratos then stops its QEMU — and only killed if it has not ended within 15 s
/// (a SIGKILL would leave its QEMU running, orphaned).
pub struct Running(pub std::process::Child);

impl Running {
    /// `stratos boot IMG --accel tcg --timeout SECS --forward PORT:8080`, its console into
    /// `console` (a file); returns it running and the host port.
    pub fn boot_forwarded(
        cache: &Path,
        img: &Path,
        timeout_secs: u32,
        console: &Path,
    ) -> (Running, u16) {
        let port = stratos::boot::vm::free_port().unwrap();
        let out = std::fs::File::create(console).unwrap();
        let child = stratos_std(cache)
            .args(["boot", "--accel", "tcg", "--timeout"])
            .arg(timeout_secs.to_string())
            .arg("--forward")
            .arg(format!("{port}:8080"))
            .arg(img)
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        (Running(child), port)
    }

    /// A clean stop: SIGTERM, and `stratos boot` must stop QEMU and exit within 30 s.
    pub fn stop_with_sigterm(&mut self) {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.0.id() as i32).unwrap(),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.0.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "stratos boot did not stop on SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            if let Some(pid) = rustix::process::Pid::from_raw(self.0.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let until = std::time::Instant::now() + std::time::Duration::from_secs(15);
            while std::time::Instant::now() < until {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// The shared image of `profiles/<name>.toml` (see [`image`]), after a second offline build
/// into `work/b` proved bit-identical to it.
pub fn image_rebuilt_identically(name: &str, work: &Path) -> PathBuf {
    let a = image(name, work);
    let b = work.join("b");
    stratos(&shared_cache())
        .arg("build")
        .arg(root().join(format!("profiles/{name}.toml")))
        .arg("--out")
        .arg(&b)
        .args(["--offline", "-q"])
        .assert()
        .success();
    assert_eq!(digests(&a), digests(&b), "two builds differ");
    a
}

/// Builds `profiles/<name>.toml` offline twice (into `work/a` and `work/b`), asserts the two
/// images are bit-identical and returns the first.
pub fn build_twice_offline(cache: &Path, name: &str, work: &Path) -> PathBuf {
    let build = |out: &Path| {
        stratos(cache)
            .arg("build")
            .arg(root().join(format!("profiles/{name}.toml")))
            .arg("--out")
            .arg(out)
            .args(["--offline", "-q"])
            .assert()
            .success();
    };
    let (a, b) = (work.join("a"), work.join("b"));
    build(&a);
    build(&b);
    assert_eq!(digests(&a), digests(&b), "two builds differ");
    a
}

/// The built image of `profiles/<name>.toml` (offline, from the shared cache), built once per
/// content and shared by every test: a content-addressed store under
/// `target/stratos-test-images/`, locked like the kernel cache. The key covers everything the
/// build reads from this repository and the two binaries, so a change to any of them builds
/// anew; builds are reproducible (`python_fn.rs` and the slow tier prove it), so sharing is safe.
/// Tests take a copy ([`image`]): its own path (so `processes_mentioning` sees only its own
/// QEMUs) and its own bytes to tamper with.
fn shared_image(name: &str) -> PathBuf {
    shared_image_for(name, None)
}

/// [`shared_image`] built for `arch` (`stratos build --arch`; `None`: the profile's default).
pub fn shared_image_for(profile: &str, arch: Option<&str>) -> PathBuf {
    static BUILT: std::sync::Mutex<BTreeMap<String, PathBuf>> =
        std::sync::Mutex::new(BTreeMap::new());
    let name_owned = match arch {
        Some(a) => format!("{profile}-{a}"),
        None => profile.to_owned(),
    };
    let name = name_owned.as_str();
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get(name) {
        return p.clone();
    }
    let store = root().join("target/stratos-test-images");
    std::fs::create_dir_all(&store).unwrap();
    let dest = store.join(format!("{name}-{}", &image_key(name)[..16]));
    let lock = std::fs::File::create(store.join(format!(".{name}.lock"))).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    if !dest.join("manifest.json").is_file() {
        let staging = store.join(format!(".{name}.building"));
        let _ = std::fs::remove_dir_all(&staging);
        stratos(&shared_cache())
            .arg("build")
            .arg(root().join(format!("profiles/{profile}.toml")))
            .args(arch.map(|a| format!("--arch={a}")))
            .arg("--out")
            .arg(&staging)
            .args(["--offline", "-q"])
            .assert()
            .success();
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&staging, &dest).unwrap();
        // Older builds of this profile (another binary, another input) are ours to remove.
        for e in std::fs::read_dir(&store).unwrap() {
            let p = e.unwrap().path();
            let file = p.file_name().unwrap().to_string_lossy().into_owned();
            if p != dest && file.starts_with(&format!("{name}-")) && file.len() == name.len() + 17 {
                let _ = std::fs::remove_dir_all(&p);
            }
        }
    }
    built.insert(name.to_owned(), dest.clone());
    dest
}

/// A copy, at `dir/<name>`, of the shared image of `profiles/<name>.toml` (see
/// [`shared_image`]).
pub fn image(name: &str, dir: &Path) -> PathBuf {
    copy_image(&shared_image(name), &dir.join(name))
}

/// A copy, at `dir/<name>-<arch>`, of the shared image of `profiles/<name>.toml` built for
/// `arch`.
pub fn image_for(name: &str, arch: &str, dir: &Path) -> PathBuf {
    copy_image(
        &shared_image_for(name, Some(arch)),
        &dir.join(format!("{name}-{arch}")),
    )
}

fn copy_image(from: &Path, to: &Path) -> PathBuf {
    copy_dir(from, to);
    to.to_owned()
}

/// `stratos boot IMG --accel tcg --timeout SECS --invoke PATH` (shared cache): it succeeds and
/// the answer it prints contains `expect`.
pub fn invoke_answers(img: &Path, path: &str, timeout_secs: u32, expect: &str) {
    stratos(&shared_cache())
        .args(["boot", "--accel", "tcg", "--timeout"])
        .arg(timeout_secs.to_string())
        .args(["--invoke", path])
        .arg(img)
        .assert()
        .success()
        .stdout(predicates::str::contains(expect));
}

/// `stratos snapshot IMG --out SNAP --accel tcg --warm WARM -q [extra]` (shared cache), which
/// must succeed.
pub fn take_snapshot(img: &Path, snap: &Path, warm: &str, extra: &[&std::ffi::OsStr]) {
    let out = stratos_std(&shared_cache())
        .arg("snapshot")
        .arg(img)
        .arg("--out")
        .arg(snap)
        .args(["--accel", "tcg", "--warm", warm, "-q"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "snapshot failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A copy of the directory `from` at `to` (`cp -a`, reflinks where the file system has them),
/// creating `to`'s parents.
pub fn copy_dir(from: &Path, to: &Path) {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let st = Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// sha256 over the two binaries and every file of the repository a build of `name` can read.
fn image_key(name: &str) -> String {
    let mut h = Sha256::new();
    let init = bin().with_file_name("stratos-init");
    for p in [bin(), init] {
        h.update(std::fs::read(&p).unwrap());
    }
    if name.ends_with("-aarch64") {
        h.update(std::fs::read(aarch64_init()).unwrap());
    }
    h.update(name.as_bytes());
    for dir in ["profiles", "rootfs-overlays", "kernel-configs", "functions"] {
        for p in walk_files(&root().join(dir)) {
            let m = std::fs::symlink_metadata(&p).unwrap();
            h.update(p.strip_prefix(root()).unwrap().to_string_lossy().as_bytes());
            if m.file_type().is_symlink() {
                h.update(std::fs::read_link(&p).unwrap().to_string_lossy().as_bytes());
            } else if m.is_file() {
                use std::os::unix::fs::PermissionsExt;
                h.update(m.permissions().mode().to_le_bytes());
                h.update(std::fs::read(&p).unwrap());
            }
        }
    }
    hex::encode(h.finalize())
}

/// GET `path` from the guest's forwarded `port` until it answers 200 (panics on another status,
/// or with no answer within `deadline`: a watchdog for slow TCG boots, not a measurement).
pub fn get_with_retry_within(port: u16, path: &str, deadline: std::time::Duration) -> String {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Instant;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let until = Instant::now() + deadline;
    loop {
        match stratos::http::get(addr, path, std::time::Duration::from_secs(20)) {
            Ok(r) if r.status == 200 => return String::from_utf8_lossy(&r.body).into_owned(),
            Ok(r) => panic!("{path}: HTTP {}", r.status),
            Err(e) => {
                assert!(Instant::now() < until, "{path}: no answer: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}

/// [`get_with_retry_within`] three minutes.
pub fn get_with_retry(port: u16, path: &str) -> String {
    get_with_retry_within(port, path, std::time::Duration::from_secs(180))
}

/// `stratos build PROFILE --out OUT --offline -q` with its own cache: (ok, stderr).
pub fn try_build(cache: &Path, profile: &Path, out: &Path) -> (bool, String) {
    let o = stratos_std(cache)
        .arg("build")
        .arg(profile)
        .arg("--out")
        .arg(out)
        .args(["--offline", "-q"])
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The SBOM component with this purl.
pub fn component<'a>(sbom: &'a serde_json::Value, purl: &str) -> &'a serde_json::Value {
    sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["purl"] == purl)
        .unwrap_or_else(|| panic!("{purl} not in the SBOM"))
}

/// A Lambda function's invocation as a user makes it with curl (`curl -sS -D - -d EVENT` on
/// the path AWS's Runtime Interface Emulator takes events on): (status line and headers,
/// body). Retried until `deadline` passes (a boot in progress; `Duration::ZERO`: once).
pub fn lambda_invoke_within(
    port: u16,
    event: &str,
    deadline: std::time::Duration,
) -> (String, String) {
    let until = std::time::Instant::now() + deadline;
    loop {
        let out = Command::new("curl")
            .args(["-sS", "-m", "60", "-D", "-", "-d", event])
            .arg(format!(
                "http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"
            ))
            .output()
            .unwrap();
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let (h, b) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            return (h.to_owned(), b.to_owned());
        }
        assert!(
            std::time::Instant::now() < until,
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// A release repository at `repo` (root key = channel key = `key`) with `img` published on
/// `stable` at 100%, and a node's state directory `state` that fetched (staged) it.
pub fn stage_on_node(cache: &Path, img: &Path, key: &Path, repo: &Path, state: &Path) {
    stratos(cache)
        .args(["repo", "init", "--repo"])
        .arg(repo)
        .arg("--root-key")
        .arg(key)
        .assert()
        .success();
    stratos(cache)
        .arg("publish")
        .arg(img)
        .arg("--repo")
        .arg(repo)
        .args(["--channel", "stable", "--percent", "100", "--channel-key"])
        .arg(key)
        .assert()
        .success();
    stratos(cache)
        .args(["update", "fetch", "--state"])
        .arg(state)
        .arg("--repo")
        .arg(repo)
        .args([
            "--channel",
            "stable",
            "--node-id",
            "node-1",
            "--bootstrap-root",
        ])
        .arg(repo.join("root.json"))
        .assert()
        .success();
}
