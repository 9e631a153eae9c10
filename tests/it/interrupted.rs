//! Interrupted work: what a killed build leaves behind is cleaned (staging directories next to
//! the output) or resumed (a kernel's work directory) by the next run, and nothing else is
//! touched.

use std::path::Path;
use std::process::{Child, Command};

use crate::common::*;
use predicates::prelude::*;

/// A process holding an exclusive flock on `file` (a shell that opens it, locks it with
/// `flock(1)` and becomes `sleep`, keeping the descriptor), killed on drop.
struct Holder(Child);

impl Holder {
    fn hold(file: &Path) -> Holder {
        require_tool("flock");
        let child = Command::new("sh")
            .arg("-c")
            .arg("exec 9<\"$1\" && flock --exclusive --nonblock 9 && exec sleep 600")
            .arg("sh")
            .arg(file)
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let f = std::fs::File::open(file).unwrap();
        while rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared).is_ok() {
            rustix::fs::flock(&f, rustix::fs::FlockOperation::Unlock).unwrap();
            assert!(
                std::time::Instant::now() < deadline,
                "the lock was not taken"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Holder(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _gone = self.0.kill();
        let _reaped = self.0.wait();
    }
}

/// What StratOS writes as the marker of a staging directory.
fn staging_leftover(dir: &Path) {
    std::fs::create_dir(dir).unwrap();
    std::fs::write(
        dir.join(".stratos-staging-owner"),
        "stratos staging directory\npid 4000000\n",
    )
    .unwrap();
    std::fs::write(dir.join("kernel"), b"half written").unwrap();
}

/// A build removes the staging directories killed builds left next to its output — named as
/// ours, with our marker, whose owner is gone — and keeps a same-named directory without the
/// marker and the staging directory of a build still running.
#[test]
fn a_build_removes_only_dead_staging_leftovers() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("img");
    // A build that was killed: its marker was held by a process that is gone now.
    let dead = parent.path().join(".stratos-staging-dEaD01");
    staging_leftover(&dead);
    drop(Holder::hold(&dead.join(".stratos-staging-owner")));
    // A build still running: its marker is held.
    let live = parent.path().join(".stratos-staging-L1ve01");
    staging_leftover(&live);
    let _running = Holder::hold(&live.join(".stratos-staging-owner"));
    // Someone's directory that merely has the name.
    let plain = parent.path().join(".stratos-staging-notes");
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("thesis.tex"), b"years of work").unwrap();

    stratos(cache.path())
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(&out)
        .arg("-q")
        .assert()
        .success()
        .stderr(predicate::str::contains(format!(
            "removed {}, left by an interrupted build",
            dead.display()
        )));
    assert!(!dead.exists());
    assert!(live.join("kernel").is_file());
    assert_eq!(
        std::fs::read(plain.join("thesis.tex")).unwrap(),
        b"years of work"
    );
    assert!(out.join("manifest.json").is_file());
    // The build left no staging directory of its own.
    let mut names: Vec<String> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [".stratos-staging-L1ve01", ".stratos-staging-notes", "img"]
    );
}

/// A stand-in for `make` (the kernel's build is out of the fast tier): `tinyconfig` writes a
/// `.config`, `olddefconfig` keeps the merged one, and the build "compiles" the six objects it
/// does not find in its output directory, logging each, and holds after the third while
/// `hold` exists next to it (writing `held`), as a long compile would.
const FAKE_MAKE: &str = r#"#!/bin/sh
ctl=$(dirname "$0")
out=
for a in "$@"; do case "$a" in O=*) out=${a#O=};; esac; target=$a; done
case "$target" in
tinyconfig) echo 'CONFIG_64BIT=y' > "$out/.config"; exit 0;;
olddefconfig) exit 0;;
esac
echo "start" >> "$ctl/log"
for i in 1 2 3 4 5 6; do
  [ -e "$out/obj$i.o" ] && continue
  echo "  CC      obj$i.o"
  echo "obj$i" > "$out/obj$i.o"
  echo "compiled obj$i" >> "$ctl/log"
  if [ $i = 3 ] && [ -e "$ctl/hold" ]; then
    : > "$ctl/held"
    while [ -e "$ctl/hold" ]; do sleep 0.05; done
  fi
done
mkdir -p "$out/arch/x86/boot"
cp "$ctl/bzImage" "$out/arch/x86/boot/bzImage"
echo "done" >> "$ctl/log"
"#;

/// The fixture profile with its kernel built from a (fake) source tarball by the fake make.
struct KernelFromSource {
    fixture: Fixture,
    /// The fake tools, their control files and the make log.
    bin: tempfile::TempDir,
}

impl KernelFromSource {
    fn new() -> KernelFromSource {
        use std::os::unix::fs::PermissionsExt;
        let fixture = Fixture::new();
        fixture.write("src/linux/Makefile", b"# not used: make is a fake\n");
        fixture.write("src/linux/Kconfig", b"");
        let tar = Command::new("tar")
            .arg("-cf")
            .arg(fixture.path("linux.tar"))
            .arg("-C")
            .arg(fixture.path("src"))
            .arg("linux")
            .status()
            .unwrap();
        assert!(tar.success());
        let profile = std::fs::read_to_string(fixture.profile()).unwrap().replace(
            "prebuilt = \"kernel/bzImage\"",
            "source = { tarball = \"linux.tar\" }\nfragments = [\"frag.config\"]",
        );
        fixture.write("profile.toml", profile.as_bytes());
        fixture.write("frag.config", b"CONFIG_VIRTIO_CONSOLE=y\n");
        let bin = tempfile::tempdir().unwrap();
        let tool = |name: &str, text: &str| {
            let p = bin.path().join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        tool("make", FAKE_MAKE);
        tool("gcc", "#!/bin/sh\necho 'gcc (fake) 1.0'\n");
        tool("ld", "#!/bin/sh\necho 'GNU ld (fake) 1.0'\n");
        std::fs::write(bin.path().join("bzImage"), fake_kernel()).unwrap();
        KernelFromSource { fixture, bin }
    }

    fn ctl(&self, name: &str) -> std::path::PathBuf {
        self.bin.path().join(name)
    }

    /// `stratos build` with the fake tools first on PATH, its standard error into `stderr`.
    fn build(&self, cache: &Path, out: &Path, stderr: &Path) -> Command {
        let path = format!(
            "{}:{}",
            self.bin.path().display(),
            std::env::var("PATH").unwrap()
        );
        let mut c = stratos_std(cache);
        c.env("PATH", path)
            .arg("build")
            .arg(self.fixture.profile())
            .arg("--out")
            .arg(out)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(stderr).unwrap());
        c
    }

    /// The objects each run of the fake make compiled, run by run.
    fn runs(&self) -> Vec<Vec<String>> {
        let log = std::fs::read_to_string(self.ctl("log")).unwrap_or_default();
        let mut runs: Vec<Vec<String>> = Vec::new();
        for line in log.lines() {
            if line == "start" {
                runs.push(Vec::new());
            } else if let Some(o) = line.strip_prefix("compiled ") {
                runs.last_mut().unwrap().push(o.to_owned());
            }
        }
        runs
    }

    /// Starts a build that holds in the middle of compiling (three objects done).
    fn start_held(&self, cache: &Path, out: &Path, stderr: &Path, group: bool) -> Child {
        use std::os::unix::process::CommandExt;
        std::fs::write(self.ctl("hold"), b"").unwrap();
        let mut c = self.build(cache, out, stderr);
        if group {
            c.process_group(0);
        }
        let child = c.spawn().unwrap();
        wait_for(
            || self.ctl("held").exists(),
            "the build to reach its third object",
        );
        child
    }
}

/// Polls `ready` until it holds, failing after a minute.
fn wait_for(ready: impl Fn() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn objs(names: &[u8]) -> Vec<String> {
    names.iter().map(|i| format!("obj{i}")).collect()
}

/// SIGKILL of stratos in the middle of a kernel build: its make runs on, and the next build of
/// the same kernel waits until it has exited (the lock goes with make), then resumes in the
/// same work directory, compiling only what was not finished.
#[test]
fn a_killed_kernel_build_resumes_and_waits_for_its_orphans() {
    let cache = tempfile::tempdir().unwrap();
    let k = KernelFromSource::new();
    let logs = tempfile::tempdir().unwrap();
    let (err1, err2) = (logs.path().join("1"), logs.path().join("2"));
    let mut first = k.start_held(cache.path(), &logs.path().join("img1"), &err1, false);
    first.kill().unwrap();
    assert!(!first.wait().unwrap().success());
    // stratos is gone; its make still holds the work directory.
    let mut second = k
        .build(cache.path(), &logs.path().join("img2"), &err2)
        .spawn()
        .unwrap();
    wait_for(
        || {
            std::fs::read_to_string(&err2)
                .unwrap()
                .contains("waiting for another stratos process working on build-")
        },
        "the second build to wait for the first one's make",
    );
    assert_eq!(k.runs().len(), 1, "a second make ran beside the first");
    // The orphaned make goes on, and dies at its next line of output (nobody reads it).
    std::fs::remove_file(k.ctl("hold")).unwrap();
    assert!(
        second.wait().unwrap().success(),
        "{}",
        std::fs::read_to_string(&err2).unwrap()
    );
    let stderr = std::fs::read_to_string(&err2).unwrap();
    assert!(
        stderr.contains("resuming the interrupted kernel build in"),
        "{stderr}"
    );
    assert_eq!(k.runs(), [objs(&[1, 2, 3]), objs(&[4, 5, 6])]);
    assert!(logs.path().join("img2/manifest.json").is_file());
}

/// Ctrl-C (SIGINT to the whole process group) in the middle of a kernel build; a build of
/// another config does not use that work, starts from nothing, and leaves it; the same config
/// again resumes it.
#[test]
fn an_interrupted_kernel_build_resumes_only_for_the_same_key() {
    let cache = tempfile::tempdir().unwrap();
    let k = KernelFromSource::new();
    let logs = tempfile::tempdir().unwrap();
    let err = |n: &str| logs.path().join(n);
    let mut first = k.start_held(cache.path(), &logs.path().join("img1"), &err("1"), true);
    let pgid = rustix::process::Pid::from_raw(first.id() as i32).unwrap();
    rustix::process::kill_process_group(pgid, rustix::process::Signal::INT).unwrap();
    assert!(!first.wait().unwrap().success());
    std::fs::remove_file(k.ctl("hold")).unwrap();
    // Another config: another key, a build from nothing.
    k.fixture
        .write("frag.config", b"CONFIG_VIRTIO_CONSOLE=y\nCONFIG_PRINTK=y\n");
    let other = k
        .build(cache.path(), &logs.path().join("img2"), &err("2"))
        .status()
        .unwrap();
    let stderr = std::fs::read_to_string(err("2")).unwrap();
    assert!(other.success(), "{stderr}");
    assert!(!stderr.contains("resuming"), "{stderr}");
    // The first config again: its interrupted work is still there and resumed.
    k.fixture.write("frag.config", b"CONFIG_VIRTIO_CONSOLE=y\n");
    let again = k
        .build(cache.path(), &logs.path().join("img3"), &err("3"))
        .status()
        .unwrap();
    let stderr = std::fs::read_to_string(err("3")).unwrap();
    assert!(again.success(), "{stderr}");
    assert!(
        stderr.contains("resuming the interrupted kernel build"),
        "{stderr}"
    );
    assert_eq!(
        k.runs(),
        [
            objs(&[1, 2, 3]),
            objs(&[1, 2, 3, 4, 5, 6]),
            objs(&[4, 5, 6])
        ]
    );
}
