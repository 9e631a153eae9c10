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
