//! Root images fetched block by block: the new image's verity tree checked against the signed
//! root hash, the blocks the node holds copied, only the others fetched with `Range` requests
//! (each checked against its hash); anything served wrong refused and recovered by a full
//! download (or a clear error when that is wrong too); a server without `Range` support still
//! updates the node; a fetch killed part way resumes and receives less than a full one.

use super::transport::Server;
use super::*;
use stratos::channel::node::{check_image, Method, Transfer};
use stratos::digest::Sha256;

/// A profile with an EROFS root: the fixture's fake kernel, a small handler and 2 MiB of data
/// after it in the image.
const ROOT_PROFILE: &str = r#"schema = 1

[image]
name = "rootfix"
version = "VERSION"
source-date-epoch = 1700000000
root = "erofs"

[kernel]
prebuilt = "kernel/bzImage"
cmdline = "console=ttyS0 panic=-1"

[init]
argv = ["/srv/fn"]

[[overlay]]
path = "overlay"
"#;

/// Deterministic, incompressible-looking bytes (xorshift).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Builds the root profile at `version` with `handler` as `/srv/handler.txt` into `out`,
/// signed with the world's root key.
fn build_root(w: &World, out: &Path, version: &str, handler: &[u8]) {
    let f = Fixture::new();
    f.write(
        "profile.toml",
        ROOT_PROFILE.replace("VERSION", version).as_bytes(),
    );
    f.write("overlay/srv/fn", b"not a script\n");
    f.write("overlay/srv/handler.txt", handler);
    for i in 0..8u64 {
        f.write(
            &format!("overlay/srv/data/{i}.bin"),
            &noise(256 << 10, i + 1),
        );
    }
    w.cmd()
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(out)
        .arg("--image-key")
        .arg(&w.root_key)
        .arg("-q")
        .assert()
        .success();
}

/// A repository whose `stable` carries root image A; B differs from A in its handler only.
struct Roots {
    w: World,
    a: PathBuf,
    b: PathBuf,
}

fn roots() -> Roots {
    let w = world_with(&[]);
    let (a, b) = (w.path("root-a"), w.path("root-b"));
    build_root(&w, &a, "1.0.0", b"def handler(): return 'v1'\n");
    build_root(&w, &b, "1.1.0", b"def handler(): return 'v2, changed'\n");
    w.publish(&a, "stable", 100);
    Roots { w, a, b }
}

/// `update fetch --json` over `url` for the node whose state is `state`, with `extra` flags:
/// (success, the decision's JSON, the transfer, stderr).
fn fetch_with(
    w: &World,
    url: &str,
    state: &Path,
    extra: &[&str],
) -> (bool, serde_json::Value, Option<Transfer>, String) {
    let out = w
        .cmd()
        .args(["update", "fetch", "--json", "--repo", url])
        .args(["--channel", "stable", "--node-id", "node-a", "--state"])
        .arg(state)
        .args(extra)
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let t = v
        .get("transfer")
        .map(|t| serde_json::from_value(t.clone()).unwrap());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), v, t, err)
}

fn fetch_ok(w: &World, url: &str, state: &Path) -> (serde_json::Value, Transfer, String) {
    let (ok, v, t, err) = fetch_with(w, url, state, &[]);
    assert!(ok, "{err}");
    (v, t.expect("a transfer"), err)
}

fn method(t: &Transfer, name: &str) -> (Method, u64, u64) {
    let a = t.artifacts.iter().find(|a| a.name == name).unwrap();
    (a.method, a.received, a.size)
}

/// The staged image holds B's files, the tarball excepted, and verifies.
fn assert_staged_b(r: &Roots, state: &Path, v: &serde_json::Value) {
    let staged = state.join(v["staged"].as_str().unwrap());
    let mut want = digests(&r.b);
    want.remove("rootfs.tar.zst");
    assert_eq!(digests(&staged), want);
    let b = Sha256::parse(&sha256_file(&r.b.join("manifest.json"))).unwrap();
    check_image(&staged, &b).unwrap();
    // Nothing half-done is left next to it.
    let left: Vec<String> = std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".partial-") || n.starts_with(".staging-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The object path of `img`'s rootfs.erofs, and its verity data size.
fn root_object(w: &World, img: &Path) -> (String, u64) {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(img.join("manifest.json")).unwrap()).unwrap();
    (
        format!("objects/sha256/{}", w.artifact_sha(img, "rootfs.erofs")),
        m["root"]["verity"]["data_size"].as_u64().unwrap(),
    )
}

#[test]
fn a_handler_change_fetches_the_tree_and_a_few_blocks() {
    let r = roots();
    let w = &r.w;
    let server = Server::start(&w.repo);
    let url = server.url();
    let n = w.node("n");
    // First fetch: nothing held, the root comes whole; the tarball is not fetched.
    let (_, first, _) = fetch_ok(w, &url, &n.state);
    assert_eq!(method(&first, "rootfs.erofs").0, Method::Full);
    assert_eq!(method(&first, "rootfs.tar.zst").0, Method::Skipped);
    let tarball = method(&first, "rootfs.tar.zst").2;
    let all: u64 = digests(&r.a).keys().map(|k| file_len(&r.a.join(k))).sum();
    assert_eq!(
        first.size,
        all - tarball - file_len(&r.a.join("manifest.json")) - file_len(&r.a.join("manifest.sig"))
    );
    // B: the kernel is reused, the root comes as blocks.
    w.publish(&r.b, "stable", 100);
    let mark = server.served().len();
    let (v, second, err) = fetch_ok(w, &url, &n.state);
    assert_staged_b(&r, &n.state, &v);
    let (m, received, size) = method(&second, "rootfs.erofs");
    assert_eq!(m, Method::Blocks, "{err}");
    assert_eq!(method(&second, "kernel").0, Method::Reused);
    assert!(
        err.contains("rootfs.erofs: ") && err.contains("blocks fetched"),
        "{err}"
    );
    // Of the tree, its top and the bottom-level hash blocks that changed; a handful of blocks.
    assert!(received * 100 < size, "{received} of {size}: {err}");
    let (fetched, of) = err
        .split_once("rootfs.erofs: ")
        .and_then(|(_, r)| r.split_once(" bottom hash blocks fetched"))
        .and_then(|(r, _)| r.split_once(" of the tree's "))
        .map(|(f, n)| (f.parse::<u64>().unwrap(), n.parse::<u64>().unwrap()))
        .unwrap_or_else(|| panic!("no tree figures in: {err}"));
    assert!(fetched > 0 && fetched < of, "{err}");
    // The node's figures are the server's.
    let served: u64 = server.served()[mark..].iter().map(|(_, n)| n).sum();
    assert_eq!(second.received, served);
    // `verify` takes the node's image without its tarball, and says so; another artifact
    // missing is still a failure.
    let staged = n.state.join(v["staged"].as_str().unwrap());
    w.cmd()
        .arg("verify")
        .arg(&staged)
        .arg("--image-key")
        .arg(w.root_key.with_extension("pub"))
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "rootfs.tar.zst: not in the directory (a node does not fetch it",
        ));
    let damaged = w.path("damaged");
    copy_dir(&staged, &damaged);
    std::fs::remove_file(damaged.join("sbom.cdx.json")).unwrap();
    w.cmd()
        .arg("verify")
        .arg(&damaged)
        .arg("--image-key")
        .arg(w.root_key.with_extension("pub"))
        .assert()
        .code(1)
        .stderr(predicates::str::contains("sbom.cdx.json"));
    // Asked for, the tarball comes too.
    let full = w.node("full");
    let (ok, v, t, err) = fetch_with(w, &url, &full.state, &["--all-artifacts"]);
    assert!(ok, "{err}");
    assert_eq!(method(&t.unwrap(), "rootfs.tar.zst").0, Method::Full);
    let staged = full.state.join(v["staged"].as_str().unwrap());
    assert_eq!(digests(&staged), digests(&r.b));
}

/// Over HTTP: a node (`holder`) that fetched A, then B published; the server and its URL.
fn holding_a(r: &Roots, name: &str) -> (Server, String, Node) {
    let w = &r.w;
    let server = Server::start(&w.repo);
    let url = server.url();
    let holder = w.node(name);
    fetch_ok(w, &url, &holder.state);
    w.publish(&r.b, "stable", 100);
    (server, url, holder)
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

#[test]
fn blocks_served_wrong_are_refused_and_a_full_download_recovers() {
    let r = roots();
    let w = &r.w;
    let (server, url, holder) = holding_a(&r, "holder");
    let (obj_a, _) = root_object(w, &r.a);
    let (obj_b, data_size) = root_object(w, &r.b);
    let a_file = w.repo.join(&obj_a);
    let a_file = a_file.to_str().unwrap();
    let cases = [
        (
            "a flipped bit in a block",
            serde_json::json!({"kind": "flip", "min": 0, "max": data_size}),
            "does not match its hash",
        ),
        (
            "a stale tree (A's)",
            serde_json::json!({"kind": "from", "from": a_file, "min": data_size}),
            "hash tree served is not the one",
        ),
        (
            "a flipped bit in a hash block of the tree's bottom level",
            serde_json::json!({"kind": "flip", "min": data_size
                + stratos::archive::verity::bottom_level(data_size / 4096).0}),
            "hash block",
        ),
        (
            "blocks of another image (A's)",
            serde_json::json!({"kind": "from", "from": a_file, "min": 0, "max": data_size}),
            "does not match its hash",
        ),
    ];
    for (i, (what, tamper, says)) in cases.into_iter().enumerate() {
        let mut t = tamper;
        t["object"] = obj_b.clone().into();
        server.set(serde_json::json!({ "tamper": t }));
        let state = w.path(&format!("nodes/tampered-{i}"));
        copy_dir(&holder.state, &state);
        let (v, tr, err) = fetch_ok(w, &url, &state);
        assert!(err.contains(says), "{what}: {err}");
        assert!(err.contains("downloading it whole"), "{what}: {err}");
        assert_eq!(method(&tr, "rootfs.erofs").0, Method::Full, "{what}");
        assert_staged_b(&r, &state, &v);
    }
    // A range cut short (the connection closes early, as on a flaky link): a failed transfer,
    // said as such; what arrived is kept and the next fetch goes on from it.
    server.set(serde_json::json!({"tamper": {
        "object": obj_b, "kind": "truncate", "min": 0, "max": data_size}}));
    let state = w.path("nodes/cut");
    copy_dir(&holder.state, &state);
    let (ok, _, _, err) = fetch_with(w, &url, &state, &[]);
    assert!(!ok);
    assert!(err.contains("the connection closed after"), "{err}");
    let partial = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(".partial-"));
    assert!(partial.is_some(), "a failed transfer is kept to resume");
    server.set(serde_json::json!({}));
    let (v, tr, err) = fetch_ok(w, &url, &state);
    assert!(err.contains("resuming the interrupted fetch"), "{err}");
    assert_eq!(method(&tr, "rootfs.erofs").0, Method::Blocks);
    assert_staged_b(&r, &state, &v);
    // The whole object served wrong as well (and no compressed copy to fall back on): a clear
    // error, the node as it was.
    w.drop_compressed(&r.b, "rootfs.erofs");
    server.set(serde_json::json!({"tamper": {
        "object": obj_b, "kind": "flip", "min": 0, "max": data_size, "full": true}}));
    let state = w.path("nodes/tampered-all");
    copy_dir(&holder.state, &state);
    let before = std::fs::read(state.join("staged.json")).unwrap();
    let (ok, _, _, err) = fetch_with(w, &url, &state, &[]);
    assert!(!ok);
    assert!(err.contains("rootfs.erofs"), "{err}");
    assert_eq!(std::fs::read(state.join("staged.json")).unwrap(), before);
    let left: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".partial-"))
        .collect();
    assert!(left.is_empty(), "a refused fetch is not kept: {left:?}");
}

#[test]
fn a_server_without_range_support_still_updates_the_node() {
    let r = roots();
    let w = &r.w;
    let (server, url, n) = holding_a(&r, "n");
    server.set(serde_json::json!({"ranges": false}));
    let mark = server.served().len();
    let (v, t, err) = fetch_ok(w, &url, &n.state);
    assert!(err.contains("does not serve byte ranges"), "{err}");
    assert_eq!(method(&t, "rootfs.erofs").0, Method::Full);
    assert_staged_b(&r, &n.state, &v);
    // The range request that met a 200 was cut off, nothing of it counted: what the root
    // cost is one whole download.
    let (_, received, size) = method(&t, "rootfs.erofs");
    assert!(received <= size, "{received} of {size}");
    assert!(server.served().len() > mark);
}

#[test]
fn a_killed_fetch_resumes_and_receives_less_than_a_whole_one() {
    let r = roots();
    let w = &r.w;
    // Blocks: killed after the first fetched range, then resumed.
    let (server, url, holder) = holding_a(&r, "holder");
    let whole = w.path("nodes/whole");
    copy_dir(&holder.state, &whole);
    let (_, uninterrupted, _) = fetch_ok(w, &url, &whole);
    let out = w
        .cmd()
        .args(["update", "fetch", "--repo", &url])
        .args(["--channel", "stable", "--node-id", "node-a", "--state"])
        .arg(&holder.state)
        .env("STRATOS_FAILPOINT", "fetch:blocks-received")
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fail point fetch:blocks-received"), "{err}");
    let (v, resumed, err) = fetch_ok(w, &url, &holder.state);
    assert!(err.contains("resuming the interrupted fetch"), "{err}");
    assert_staged_b(&r, &holder.state, &v);
    let (_, got, _) = method(&resumed, "rootfs.erofs");
    let (_, whole_got, _) = method(&uninterrupted, "rootfs.erofs");
    assert!(got < whole_got, "resumed {got}, uninterrupted {whole_got}");

    // A whole download killed part way (the server slows down after 1 MiB; half of that is on
    // disk well before then, the client writing through a 256 KiB buffer): the next fetch
    // asks for the rest only. (Of the object itself: its compressed copy is smaller than that.)
    w.drop_compressed(&r.b, "rootfs.erofs");
    let n = w.node("fresh");
    server.set(serde_json::json!({"slow_after": 1 << 20}));
    let mut child = stratos_std(w.cache.path())
        .args(["update", "fetch", "--repo", &url])
        .args(["--channel", "stable", "--node-id", "node-a", "--state"])
        .arg(&n.state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let part = loop {
        let found = std::fs::read_dir(&n.state).unwrap().find_map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(".partial-")
                .then(|| p.join("rootfs.erofs.part"))
                .filter(|p| p.exists() && file_len(p) >= 1 << 19)
        });
        if let Some(p) = found {
            break p;
        }
        assert!(std::time::Instant::now() < deadline, "no partial download");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let had = file_len(&part);
    server.set(serde_json::json!({}));
    let (v, t, err) = fetch_ok(w, &url, &n.state);
    assert!(err.contains("resuming the interrupted fetch"), "{err}");
    let (m, got, size) = method(&t, "rootfs.erofs");
    assert_eq!(m, Method::Full);
    assert!(
        had > 0 && got <= size - had,
        "had {had}, got {got} of {size}"
    );
    assert_staged_b(&r, &n.state, &v);
}

#[test]
fn a_fetch_killed_at_any_step_resumes_with_less_than_a_whole_fetch() {
    let r = roots();
    let w = &r.w;
    let url = w.repo.to_str().unwrap().to_owned();
    let holder = w.node("holder");
    fetch_ok(w, &url, &holder.state);
    w.publish(&r.b, "stable", 100);
    // What B costs a node that holds nothing.
    let (_, whole, _) = fetch_ok(w, &url, &w.node("empty").state);
    let points = [
        "fetch:artifact-received",
        "fetch:blocks-received",
        "fetch:downloaded",
        "fetch:image-moved",
        "fetch:staged-written",
    ];
    for (i, point) in points.iter().enumerate() {
        let state = w.path(&format!("nodes/killed-{i}"));
        copy_dir(&holder.state, &state);
        let out = w
            .cmd()
            .args(["update", "fetch", "--repo", &url])
            .args(["--channel", "stable", "--node-id", "node-a", "--state"])
            .arg(&state)
            .env("STRATOS_FAILPOINT", point)
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("fail point {point}")),
            "{point}: {err}"
        );
        let (ok, v, t, err) = fetch_with(w, &url, &state, &[]);
        assert!(ok, "{point}: {err}");
        assert_staged_b(&r, &state, &v);
        // Killed after the image was moved into place, the next fetch only finishes the job.
        if let Some(t) = t {
            assert!(
                t.received < whole.received,
                "{point}: {} after the kill, {} for a whole fetch",
                t.received,
                whole.received
            );
        }
    }
}
