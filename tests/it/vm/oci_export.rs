//! `stratos export --oci` checked by tools no one here wrote: skopeo reads the layout and
//! copies it to a docker archive, umoci unpacks it (the tree equals the image's own), podman
//! runs it where the machine lets it (else the unpacked tree's entrypoint runs under
//! `unshare`), and the function answers HTTP. `stratos verify --oci` names a flipped byte in
//! any blob. One export per profile is shared by the tests. In the VM tier: the images exported
//! are the shipped profiles', built with their kernels (nothing is booted).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::common::{self, stratos};

/// Fails with the command that installs a missing OCI tool.
fn require_oci_tool(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is not installed: run `apt-get install skopeo umoci podman` (./ci/setup installs them)"
    );
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A profile's image exported once, with the key that signed the statement.
struct Export {
    _dir: tempfile::TempDir,
    image: PathBuf,
    oci: PathBuf,
    archive: PathBuf,
    secret: PathBuf,
    public: PathBuf,
    tag: String,
    digest: String,
}

fn export_of(profile: &'static str) -> &'static Export {
    static PY: OnceLock<Export> = OnceLock::new();
    static NODE: OnceLock<Export> = OnceLock::new();
    static GO: OnceLock<Export> = OnceLock::new();
    let cell = match profile {
        "python-fn" => &PY,
        "node-fn" => &NODE,
        "go-fn" => &GO,
        other => panic!("no export for {other}"),
    };
    cell.get_or_init(|| {
        let image = common::shared_image_for(profile, None);
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("release");
        run(Command::new(common::bin())
            .args(["keygen", "--out"])
            .arg(&key));
        let oci = dir.path().join(format!("{profile}.oci"));
        let archive = dir.path().join(format!("{profile}.tar"));
        let policy = match profile {
            "python-fn" => "python.json",
            "go-fn" => "go.json",
            _ => "node.json",
        };
        let out = stratos(&common::shared_cache())
            .arg("export")
            .arg(&image)
            .arg("--oci")
            .arg(&oci)
            .arg("--seccomp-policy")
            .arg(common::root().join("profiles/seccomp").join(policy))
            .arg("--docker-archive")
            .arg(&archive)
            .arg("--image-key")
            .arg(key.with_extension("key"))
            .arg("--json")
            .assert()
            .success();
        let j: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        let tag = j["tag"]
            .as_str()
            .unwrap()
            .rsplit_once(':')
            .unwrap()
            .1
            .to_owned();
        Export {
            image,
            oci,
            archive,
            secret: key.with_extension("key"),
            public: key.with_extension("pub"),
            tag,
            digest: j["manifest_digest"].as_str().unwrap().to_owned(),
            _dir: dir,
        }
    })
}

fn skopeo_json(reference: &str, extra: &[&str]) -> serde_json::Value {
    require_oci_tool("skopeo");
    let out = run(Command::new("skopeo")
        .arg("inspect")
        .args(extra)
        .arg(reference));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn skopeo_reads_the_layout_and_copies_it_to_a_docker_archive() {
    let e = export_of("python-fn");
    let oci = format!("oci:{}", e.oci.display());
    let raw = skopeo_json(&oci, &[]);
    assert_eq!(raw["Digest"], e.digest);
    assert_eq!(raw["Architecture"], "amd64");
    assert_eq!(raw["Created"], "2025-01-01T00:00:00Z");
    assert_eq!(raw["Layers"].as_array().unwrap().len(), 1);
    let config = skopeo_json(&oci, &["--config"]);
    assert_eq!(config["config"]["User"], "1000:1000");
    assert_eq!(config["config"]["WorkingDir"], "/srv/fn");
    assert_eq!(config["config"]["Entrypoint"][0], "/usr/bin/python3.11");
    assert!(config["config"]["ExposedPorts"]["8080/tcp"].is_object());
    // skopeo's own conversion, and ours: the same config either way.
    let dir = tempfile::tempdir().unwrap();
    let copied = dir.path().join("copied.tar");
    run(Command::new("skopeo").arg("copy").arg(&oci).arg(format!(
        "docker-archive:{}:python-fn:{}",
        copied.display(),
        e.tag
    )));
    for archive in [&copied, &e.archive] {
        let r = format!("docker-archive:{}", archive.display());
        assert_eq!(skopeo_json(&r, &["--config"]), config, "{r}");
        let manifest = run(Command::new("tar")
            .arg("-xOf")
            .arg(archive)
            .arg("manifest.json"));
        let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
        let tag = manifest[0]["RepoTags"][0].as_str().unwrap();
        // skopeo writes the normalised name.
        let tag = tag.strip_prefix("docker.io/library/").unwrap_or(tag);
        assert_eq!(tag, format!("python-fn:{}", e.tag), "{r}");
    }
}

/// One entry of a tree, as compared: kind, permission bits, content digest or link target.
type Listing = BTreeMap<String, (char, u32, String)>;

/// The image's own tree (its rootfs.tar.zst, read with the library), as an unpacker without
/// privileges makes it: device nodes become empty files.
fn image_listing(image: &Path) -> (Listing, BTreeMap<String, (u32, u32)>) {
    use sha2::Digest;
    use stratos::rootfs::Kind;
    let bytes =
        stratos::archive::zst::decompress(&std::fs::read(image.join("rootfs.tar.zst")).unwrap())
            .unwrap();
    let tree = stratos::archive::tar::read_tar(bytes.as_slice(), "test").unwrap();
    let mut files = Listing::new();
    let mut owners = BTreeMap::new();
    for (p, e) in tree.iter() {
        let content = |d: &[u8]| hex::encode(sha2::Sha256::digest(d));
        let (kind, what) = match &e.kind {
            Kind::Dir => ('d', String::new()),
            Kind::File(d) => ('f', content(d)),
            Kind::Symlink(t) => ('l', t.clone()),
            Kind::Hardlink(t) => match &tree.get(t).unwrap().kind {
                Kind::File(d) => ('f', content(d)),
                _ => unreachable!(),
            },
            Kind::CharDevice { .. } | Kind::BlockDevice { .. } => ('f', content(b"")),
        };
        let mode = if kind == 'l' { 0o777 } else { e.mode };
        files.insert(p.to_string(), (kind, mode, what));
        owners.insert(p.to_string(), (e.uid, e.gid));
    }
    (files, owners)
}

fn disk_listing(root: &Path) -> (Listing, BTreeMap<String, (u32, u32)>) {
    use std::os::unix::fs::MetadataExt;
    let mut files = Listing::new();
    let mut owners = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap();
        let path = format!("/{}", rel.display());
        let m = e.path().symlink_metadata().unwrap();
        let (kind, what) = if m.is_dir() {
            ('d', String::new())
        } else if m.file_type().is_symlink() {
            (
                'l',
                std::fs::read_link(e.path()).unwrap().display().to_string(),
            )
        } else if m.is_file() {
            ('f', common::sha256_file(e.path()))
        } else {
            // A device node (unpacked as root): never read.
            ('c', String::new())
        };
        files.insert(path.replace("//", "/"), (kind, m.mode() & 0o7777, what));
        owners.insert(path.replace("//", "/"), (m.uid(), m.gid()));
    }
    (files, owners)
}

fn umoci_unpack(e: &Export, rootless: bool, bundle: &Path) {
    require_oci_tool("umoci");
    let mut c = Command::new("umoci");
    c.arg("unpack");
    if rootless {
        c.arg("--rootless");
    }
    run(c
        .arg("--image")
        .arg(format!("{}:{}", e.oci.display(), e.tag))
        .arg(bundle));
}

#[test]
fn umoci_unpacks_the_image_s_own_tree() {
    let e = export_of("python-fn");
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    umoci_unpack(e, true, &bundle);
    let (expected, owners) = image_listing(&e.image);
    let (unpacked, _) = disk_listing(&bundle.join("rootfs"));
    assert_eq!(unpacked.len(), expected.len());
    for (path, want) in &expected {
        assert_eq!(unpacked.get(path), Some(want), "{path}");
    }
    // As root, umoci keeps the owners too (rootless, it cannot).
    if rustix::process::geteuid().is_root() {
        let bundle = dir.path().join("as-root");
        umoci_unpack(e, false, &bundle);
        let (_, on_disk) = disk_listing(&bundle.join("rootfs"));
        assert_eq!(on_disk, owners);
    }
    // umoci's runtime config starts what the image's init starts.
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["args"][4], "/srv/fn/handler.py");
    assert_eq!(config["process"]["cwd"], "/srv/fn");
    assert_eq!(config["process"]["user"]["uid"], 1000);
}

#[test]
fn two_exports_of_one_image_are_the_same_bytes_and_a_foreign_directory_is_refused() {
    let e = export_of("python-fn");
    let dir = tempfile::tempdir().unwrap();
    let again = dir.path().join("again.oci");
    for _ in 0..2 {
        // The second time it replaces its own earlier export.
        stratos(&common::shared_cache())
            .arg("export")
            .arg(&e.image)
            .arg("--oci")
            .arg(&again)
            .assert()
            .success();
    }
    let index = |d: &Path| std::fs::read(d.join("index.json")).unwrap();
    assert_eq!(index(&again), index(&e.oci));
    // Exported without a key: the statement is unsigned, and verification says so.
    stratos(&common::shared_cache())
        .args(["verify", "--oci"])
        .arg(&again)
        .arg("--image-key")
        .arg(&e.public)
        .assert()
        .code(1)
        .stderr(predicates::str::contains("the layout is unsigned"));
    // A node's copy keeps only the root it boots (no rootfs.tar.zst): the tree read from
    // rootfs.erofs is the same, and so is the image.
    let node_copy = dir.path().join("node-copy");
    common::copy_dir(&e.image, &node_copy);
    std::fs::remove_file(node_copy.join("rootfs.tar.zst")).unwrap();
    let from_erofs = dir.path().join("from-erofs.oci");
    stratos(&common::shared_cache())
        .arg("export")
        .arg(&node_copy)
        .arg("--oci")
        .arg(&from_erofs)
        .assert()
        .success();
    assert_eq!(index(&from_erofs), index(&e.oci));
    let image_blobs = |d: &Path| common::digests(&d.join("blobs/sha256"));
    let (ours, theirs) = (image_blobs(&again), image_blobs(&e.oci));
    // Unsigned, the statement and its manifest differ; the image's blobs are the same.
    assert!(ours.contains_key(e.digest.strip_prefix("sha256:").unwrap()));
    assert_eq!(ours.len() + 1, theirs.len());
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"mine").unwrap();
    stratos(&common::shared_cache())
        .arg("export")
        .arg(&e.image)
        .arg("--oci")
        .arg(&foreign)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("refusing to replace"))
        .stderr(predicates::str::contains("not a StratOS export"));
    assert_eq!(std::fs::read(foreign.join("notes.txt")).unwrap(), b"mine");
}

#[test]
fn verify_names_a_flipped_byte_in_any_blob() {
    let e = export_of("python-fn");
    stratos(&common::shared_cache())
        .args(["verify", "--oci"])
        .arg(&e.oci)
        .arg("--image-key")
        .arg(&e.public)
        .assert()
        .success()
        .stdout(predicates::str::contains(&e.digest));
    let blobs: Vec<String> = common::digests(&e.oci.join("blobs/sha256"))
        .into_keys()
        .collect();
    assert_eq!(blobs.len(), 10, "{blobs:?}");
    let layer = skopeo_json(&format!("oci:{}", e.oci.display()), &[])["Layers"][0]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    for (i, hex) in blobs.iter().enumerate() {
        let copy = dir.path().join(format!("c{i}"));
        common::copy_dir(&e.oci, &copy);
        let p = copy.join("blobs/sha256").join(hex);
        let mut bytes = std::fs::read(&p).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        std::fs::write(&p, bytes).unwrap();
        let out = stratos(&common::shared_cache())
            .args(["verify", "--oci"])
            .arg(&copy)
            .arg("--image-key")
            .arg(&e.public)
            .assert()
            .code(1);
        let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(err.contains(&format!("blobs/sha256/{hex}")), "{hex}: {err}");
        assert!(err.contains("does not match its digest"), "{err}");
        if *hex == layer {
            assert!(err.contains("(the layer)"), "{err}");
        }
        std::fs::remove_dir_all(&copy).unwrap();
    }
    // The seccomp policy next to the layout is the one the image was built with.
    let copy = dir.path().join("seccomp");
    common::copy_dir(&e.oci, &copy);
    std::fs::write(
        copy.join("seccomp.json"),
        br#"{"defaultAction":"SCMP_ACT_ALLOW"}"#,
    )
    .unwrap();
    stratos(&common::shared_cache())
        .args(["verify", "--oci"])
        .arg(&copy)
        .arg("--image-key")
        .arg(&e.public)
        .assert()
        .code(1)
        .stderr(predicates::str::contains("seccomp.json: its sha256 is"));
    // The wrong key, and a missing directory (bad input).
    let other = dir.path().join("other");
    run(Command::new(common::bin())
        .args(["keygen", "--out"])
        .arg(&other));
    stratos(&common::shared_cache())
        .args(["verify", "--oci"])
        .arg(&e.oci)
        .arg("--image-key")
        .arg(other.with_extension("pub"))
        .assert()
        .code(1)
        .stderr(predicates::str::contains("signed by key"));
    stratos(&common::shared_cache())
        .args(["verify", "--oci"])
        .arg(dir.path().join("absent"))
        .arg("--image-key")
        .arg(&e.public)
        .assert()
        .code(2);
}

#[test]
fn a_signed_image_exports_only_with_its_own_key_and_its_signature_travels() {
    let e = export_of("python-fn");
    let dir = tempfile::tempdir().unwrap();
    let signed = dir.path().join("signed");
    common::copy_dir(&e.image, &signed);
    let key = stratos::sign::SecretKey::load(&e.secret).unwrap();
    let manifest = std::fs::read(signed.join("manifest.json")).unwrap();
    std::fs::write(
        signed.join("manifest.sig"),
        stratos::sign::manifest::signature_file(&key, &manifest),
    )
    .unwrap();
    let other = dir.path().join("other");
    run(Command::new(common::bin())
        .args(["keygen", "--out"])
        .arg(&other));
    let oci = dir.path().join("signed.oci");
    stratos(&common::shared_cache())
        .arg("export")
        .arg(&signed)
        .arg("--oci")
        .arg(&oci)
        .arg("--image-key")
        .arg(other.with_extension("key"))
        .assert()
        .code(2)
        .stderr(predicates::str::contains("is not the key that signed"));
    assert!(!oci.exists());
    stratos(&common::shared_cache())
        .arg("export")
        .arg(&signed)
        .arg("--oci")
        .arg(&oci)
        .arg("--image-key")
        .arg(&e.secret)
        .assert()
        .success();
    // The same image manifest as the unsigned image's; the StratOS signature is one more blob.
    let index = |d: &Path| std::fs::read(d.join("index.json")).unwrap();
    assert_eq!(index(&oci), index(&e.oci));
    assert_eq!(common::digests(&oci.join("blobs/sha256")).len(), 11);
    stratos(&common::shared_cache())
        .args(["verify", "--oci"])
        .arg(&oci)
        .arg("--image-key")
        .arg(&e.public)
        .assert()
        .success();
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process group killed (and its leader reaped) when dropped: `unshare --fork` leaves the
/// function as its child, which a change of user would keep from getting `--kill-child`'s
/// signal.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.0);
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        let _ = self.0.wait();
    }
}

/// A path removed when dropped.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A podman container removed when dropped.
struct Container {
    name: String,
    storage: PathBuf,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&self.storage)
            .args(["rm", "-f", "-t", "0", &self.name])
            .output();
    }
}

/// podman with its own storage (nothing shared with the machine's images; `vfs`, which
/// leaves no mount behind), running containers with runc when it is installed (ci/setup
/// installs it): Debian's default, crun, refuses hosts whose cgroups are in hybrid mode ("drop
/// all controllers from cgroupv2"), as these CI machines are.
fn podman(storage: &Path) -> Command {
    let mut c = Command::new("podman");
    if Path::new("/usr/sbin/runc").is_file() || Path::new("/usr/bin/runc").is_file() {
        c.args(["--runtime", "runc"]);
    }
    c.arg("--storage-driver=vfs")
        .arg("--root")
        .arg(storage.join("root"))
        .arg("--runroot")
        .arg(storage.join("run"));
    c
}

/// Runs the export with podman on a loopback port, or, where podman cannot run containers on
/// this machine (it says why, once), the unpacked tree's entrypoint under `unshare`; returns
/// what the function answers to `GET path`.
fn answer(e: &Export, path: &str, work: &Path) -> String {
    require_oci_tool("podman");
    let port = free_port();
    let name = format!("stratos-oci-test-{}-{port}", std::process::id());
    let storage = work.join("podman");
    // podman names the image after the layout's path, which must be lowercase.
    let layout =
        std::env::temp_dir().join(format!("stratos-oci-test-{}-{port}", std::process::id()));
    std::os::unix::fs::symlink(&e.oci, &layout).unwrap();
    let _link = Removed(layout.clone());
    let out = podman(&storage)
        .args(["run", "-d", "--name", &name])
        // This machine's limits may be below podman's defaults: ask for what it allows.
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ])
        .arg("-p")
        .arg(format!("127.0.0.1:{port}:8080"))
        .arg(format!("oci:{}:{}", layout.display(), e.tag))
        .output()
        .unwrap();
    if out.status.success() {
        let _c = Container { name, storage };
        return common::get_with_retry_within(port, path, std::time::Duration::from_secs(60));
    }
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        use std::io::Write;
        let why = String::from_utf8_lossy(&out.stderr);
        // Straight to the test's stderr (not captured): a passing run still says it.
        let _ = writeln!(
            std::io::stderr(),
            "note: podman cannot run a container on this machine ({}); running the entrypoint from the umoci-unpacked tree under unshare instead",
            why.trim().lines().last().unwrap_or("no reason given")
        );
    });
    let bundle = work.join("bundle");
    umoci_unpack(e, true, &bundle);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    let p = &config["process"];
    let mut c = Command::new("unshare");
    c.args(["--pid", "--fork", "--mount", "--kill-child"])
        .arg(format!("--root={}", bundle.join("rootfs").display()))
        .arg(format!("--wd={}", p["cwd"].as_str().unwrap()))
        .arg(format!("--setuid={}", p["user"]["uid"]))
        .arg(format!("--setgid={}", p["user"]["gid"]))
        .arg("--")
        .args(
            p["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap()),
        )
        .env_clear();
    for kv in p["env"].as_array().unwrap() {
        let (k, v) = kv.as_str().unwrap().split_once('=').unwrap();
        c.env(k, v);
    }
    c.env("PORT", port.to_string());
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    let _running = Running(c.spawn().unwrap());
    common::get_with_retry_within(port, path, std::time::Duration::from_secs(60))
}

#[test]
fn the_exported_python_fn_answers_http() {
    let e = export_of("python-fn");
    let dir = tempfile::tempdir().unwrap();
    let body = answer(e, "/?name=oci", dir.path());
    assert_eq!(body, "Hello, oci! This is StratOS on Python.\n");
}

#[test]
fn the_exported_node_fn_answers_http() {
    let e = export_of("node-fn");
    let dir = tempfile::tempdir().unwrap();
    let body = answer(e, "/", dir.path());
    assert!(body.contains("StratOS"), "{body}");
    stratos(&common::shared_cache())
        .args(["verify", "--oci"])
        .arg(&e.oci)
        .arg("--image-key")
        .arg(&e.public)
        .assert()
        .success();
}

#[test]
fn the_exported_go_fn_answers_http() {
    let e = export_of("go-fn");
    let dir = tempfile::tempdir().unwrap();
    let body = answer(e, "/?name=oci", dir.path());
    assert_eq!(body, "Hello, oci! This is StratOS on Go.\n");
}

/// Two builds of one profile (go-fn: the cheapest to build again) export to the same image
/// manifest digest.
#[test]
fn two_builds_export_to_the_same_digest() {
    let e = export_of("go-fn");
    let dir = tempfile::tempdir().unwrap();
    let second = dir.path().join("go-fn");
    stratos(&common::shared_cache())
        .arg("build")
        .arg(common::root().join("profiles/go-fn.toml"))
        .arg("--out")
        .arg(&second)
        .args(["--offline", "-q"])
        .assert()
        .success();
    let out = stratos(&common::shared_cache())
        .arg("export")
        .arg(&second)
        .arg("--oci")
        .arg(dir.path().join("second.oci"))
        .arg("--json")
        .assert()
        .success();
    let j: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(j["manifest_digest"], e.digest.as_str());
}

/// Hostile layouts: a descriptor claiming a huge size is refused before anything that large is
/// read; an earlier "export" whose blobs directory links to another store is not replaced (its
/// blobs are not StratOS's to remove).
#[test]
fn a_huge_descriptor_and_a_linked_blob_store_are_refused() {
    let e = export_of("python-fn");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.oci");
    common::copy_dir(&e.oci, &bad);
    let index_path = bad.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["manifests"][0]["size"] = serde_json::json!(10_000_000_000u64);
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    stratos(&common::shared_cache())
        .args(["verify", "--oci"])
        .arg(&bad)
        .arg("--image-key")
        .arg(&e.public)
        .assert()
        .code(1)
        .stderr(predicates::str::contains("10000000000 bytes, more than"));

    let store = dir.path().join("shared-store");
    common::copy_dir(&e.oci.join("blobs"), &store);
    let before = common::listing(&store);
    let linked = dir.path().join("linked.oci");
    std::fs::create_dir(&linked).unwrap();
    for f in ["index.json", "oci-layout"] {
        std::fs::copy(e.oci.join(f), linked.join(f)).unwrap();
    }
    std::os::unix::fs::symlink(&store, linked.join("blobs")).unwrap();
    stratos(&common::shared_cache())
        .arg("export")
        .arg(&e.image)
        .arg("--oci")
        .arg(&linked)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("blobs is not a directory"));
    assert_eq!(common::listing(&store), before, "the linked store changed");
}
