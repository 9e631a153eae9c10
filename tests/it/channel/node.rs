//! The node's command line and state directory: exit codes and JSON, leftovers of interrupted
//! runs, corrupt state files, each cause printed once.

use super::*;

#[test]
fn a_node_checks_fetches_verifies_and_stages() {
    let w = world();
    let n = w.node("node-1");
    let d = n.fetch_update().unwrap();
    assert!(d.selected, "{}", d.reason);
    assert_eq!((d.channel_version, d.image_version.as_str()), (1, "1.2.3"));
    let staged = n.state.join(d.staged.unwrap());
    // The staged image is exactly the published one and verifies with the root's key.
    assert_eq!(digests(&staged), digests(&w.img_a));
    w.cmd()
        .arg("verify")
        .arg(&staged)
        .arg("--image-key")
        .arg(w.root_key.with_extension("pub"))
        .assert()
        .success();
    // Checking again: already staged; nothing downloaded twice.
    let d = n.fetch_update().unwrap();
    assert!(
        !d.selected && d.reason.starts_with("already staged"),
        "{}",
        d.reason
    );
    // A new image replaces the staged one (and the old staged directory goes).
    w.publish(&w.img_b, "stable", 100);
    let d = n.fetch_update().unwrap();
    assert!(d.selected && d.image_version == "1.3.0");
    assert_eq!(
        std::fs::read_dir(n.state.join("images")).unwrap().count(),
        1
    );
}

#[test]
fn update_cli_exit_codes_and_json() {
    let w = world();
    let state = w.path("cli-node");
    let update = |verb: &str, extra: &[&str]| {
        let mut c = w.cmd();
        c.args(["update", verb, "--repo"])
            .arg(&w.repo)
            .args(["--channel", "stable", "--node-id", "node-a", "--state"])
            .arg(&state)
            .args(extra);
        c
    };
    // No trusted root yet: bad usage, says how to bootstrap.
    update("check", &[])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--bootstrap-root"));
    let root = w.repo.join("root.json");
    let out = update(
        "fetch",
        &["--json", "--bootstrap-root", root.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["selected"], true);
    assert_eq!(v["channel_version"], 1);
    assert_eq!(v["image_version"], "1.2.3");
    assert!(v["reason"].as_str().unwrap().contains("staged"));
    assert!(state
        .join(v["staged"].as_str().unwrap())
        .join("manifest.sig")
        .is_file());
    // file:// works the same.
    let url = format!("file://{}", w.repo.display());
    w.cmd()
        .args([
            "update",
            "check",
            "--repo",
            &url,
            "--channel",
            "stable",
            "--node-id",
            "node-a",
            "--state",
        ])
        .arg(&state)
        .assert()
        .success()
        .stdout(predicates::str::contains("already staged"));
    // A rejection: exit 1, JSON says why.
    let mut doc = w.channel_doc("stable");
    doc.version += 1;
    w.forge("stable", &doc, &[]);
    let out = update("check", &["--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["selected"].clone(), v["rejected"].clone()),
        (false.into(), true.into())
    );
    assert!(v["reason"].as_str().unwrap().contains("valid signature"));
    // Bad usage.
    update("check", &["--channel", "Not A Channel"])
        .assert()
        .code(2);
    w.cmd().args(["update", "check"]).assert().code(2);
}

// Item 8: an interrupted update leaves its staging directory behind; the next run removes it,
// and only it.

#[test]
fn update_fetch_removes_leftover_staging_directories() {
    let w = world();
    let n = w.node("n");
    // What a killed `update fetch` leaves: a staging directory with a partial artifact, and a
    // half-written metadata file; next to them, things that are not ours.
    let leftover = n.state.join(".staging-Ab12Cd");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("kernel"), b"partial").unwrap();
    let tmp = n.state.join("trusted/.stratos-tmp-x1Y2z3");
    std::fs::write(&tmp, b"{\"half").unwrap();
    let user_file = n.state.join("notes.txt");
    std::fs::write(&user_file, b"mine\n").unwrap();
    let user_dir = n.state.join(".staging-keep-me");
    std::fs::create_dir_all(&user_dir).unwrap();
    let elsewhere = w.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("precious"), b"do not delete").unwrap();
    let link = n.state.join(".staging-Zz99Yy");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    w.update("fetch", &n.state)
        .assert()
        .success()
        .stderr(predicates::str::contains(format!(
            "note: removed {}, left by an interrupted update",
            leftover.display()
        )))
        .stdout(predicates::str::contains("staged at"));
    assert!(!leftover.exists() && !tmp.exists());
    assert_eq!(std::fs::read(&user_file).unwrap(), b"mine\n");
    assert!(user_dir.is_dir());
    // A symlink named like ours is neither followed nor removed.
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read(elsewhere.join("precious")).unwrap(),
        b"do not delete"
    );
    // Nothing is left by a rejected update either, and a clean state gets no notes.
    let a = w.update("fetch", &n.state).assert().success();
    assert!(!stderr_of(&a).contains("note:"), "{}", stderr_of(&a));
}

// Item 12: each cause is printed once.

#[test]
fn errors_print_their_cause_once() {
    let w = world();
    // The state path is a file: creating the state directory fails.
    let state = w.path("not-a-dir");
    std::fs::write(&state, b"").unwrap();
    let a = w
        .update("check", &state)
        .arg("--bootstrap-root")
        .arg(w.repo.join("root.json"))
        .assert()
        .code(1);
    let err = stderr_of(&a);
    assert!(
        err.contains(&format!("creating {}", state.display())),
        "{err}"
    );
    assert_eq!(err.matches("(os error").count(), 1, "{err}");
    // A missing signing key.
    let a = w
        .cmd()
        .args(["rollout", "halt", "--repo"])
        .arg(&w.repo)
        .args(["--channel", "stable", "--channel-key", "/nonexistent/k.key"])
        .assert()
        .code(2);
    let err = stderr_of(&a);
    assert!(err.contains("/nonexistent/k.key"), "{err}");
    assert_eq!(err.matches("(os error 2)").count(), 1, "{err}");
}

#[test]
fn corrupt_state_files_stop_every_command_and_delete_nothing() {
    let w = world();
    let n = w.node("n");
    n.fetch_update().unwrap();
    let st = n.state.clone();
    assert_eq!(std::fs::read_dir(st.join("images")).unwrap().count(), 1);
    for file in [
        "current.json",
        "staged.json",
        "previous.json",
        "rejected.json",
    ] {
        let path = st.join(file);
        let saved = std::fs::read(&path).ok();
        std::fs::write(&path, b"{\"version\": ").unwrap();
        let before = listing(&st);
        for verb in [
            "check",
            "fetch",
            "apply",
            "rollback",
            "status",
            "clear-rejected",
        ] {
            let mut c = if verb == "check" || verb == "fetch" {
                w.update(verb, &st)
            } else {
                let mut c = w.cmd();
                c.args(["update", verb, "--state"]).arg(&st);
                c
            };
            if verb == "clear-rejected" {
                c.arg("--all");
            }
            c.assert()
                .code(2)
                .stderr(predicates::str::contains(format!(
                    "{}: malformed",
                    path.display()
                )))
                .stderr(predicates::str::contains("nothing was changed or deleted"));
            assert_eq!(before, listing(&st), "{verb} with a corrupt {file}");
        }
        match saved {
            Some(b) => std::fs::write(&path, b).unwrap(),
            None => std::fs::remove_file(&path).unwrap(),
        }
    }
    // Intact again: the staged image is still there.
    w.cmd()
        .args(["update", "status", "--state"])
        .arg(&st)
        .assert()
        .success()
        .stdout(predicates::str::contains("staged    fixture 1.2.3"));
}

/// `update apply` without QEMU: the machine failed its part (exit 3, as for `boot`), the
/// message says how to install it, and the staged image is neither rejected nor switched to.
#[test]
fn apply_without_qemu_exits_3_and_rejects_nothing() {
    let w = world();
    let n = w.node("n");
    let d = n.fetch_update().unwrap();
    assert!(d.staged.is_some(), "{}", d.reason);
    let before = snapshot(&n.state);
    let a = w
        .cmd()
        .args([
            "update",
            "apply",
            "--accel",
            "tcg",
            "--timeout",
            "20s",
            "--state",
        ])
        .arg(&n.state)
        .env("STRATOS_QEMU", "/nonexistent/qemu-system-x86_64")
        .assert()
        .code(3);
    let e = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        e.contains("$STRATOS_QEMU names /nonexistent/qemu-system-x86_64, which does not exist")
            && e.contains("sudo apt-get install qemu-system-x86"),
        "{e}"
    );
    assert_eq!(before, snapshot(&n.state), "the state changed: {e}");
}
