//! Python bytecode at build time. Debian's packages ship no `.pyc` (their maintainer scripts make
//! them), and an image's root is read-only: without this step the interpreter compiles every
//! module it imports, on every boot.
//!
//! The image's own interpreter does the work, run on the build host through the image's own
//! dynamic loader (no chroot, no root, no host Python) — for an image of another architecture
//! (aarch64 on an x86-64 host), under QEMU's user-mode emulator (`qemu-aarch64-static`, static,
//! bound read-only into the sandbox), which runs the image's loader as its program, so the
//! interpreter and its libraries are the image's and nothing of the host's is loaded: the tree
//! is copied to a scratch
//! directory, `compileall` compiles every `.py` of the image in sorted order in one process
//! with `--invalidation-mode unchecked-hash` (no mtimes in the files), in-image paths as
//! `co_filename`, and a fixed hash seed (frozenset constants are marshalled in hash order).
//! Each `.pyc` goes into the tree next to its source, owned by the same SBOM component.
//!
//! The interpreter, its standard library and every module beside it come from the image, as
//! untrusted as the function: it runs without `site` (`-S`: no `.pth` file, no
//! `sitecustomize`/`usercustomize` of a wheel runs), compiles without importing what it
//! compiles, and runs in [`crate::sandbox`], which sees and writes only the scratch directory.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::arch::Arch;
use crate::packages::elf;
use crate::progress::Traced;
use crate::rootfs::{Entry, ImagePath, Kind, Tree};

#[derive(Debug, thiserror::Error)]
pub enum BytecodeError {
    #[error("[runtime.python] interpreter {0} is not an executable file in the image")]
    NoInterpreter(ImagePath),
    #[error("[runtime.python] interpreter {path}: {why}")]
    Interpreter { path: ImagePath, why: String },
    #[error("compiling Python bytecode: {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("compiling Python bytecode with the image's interpreter failed ({status}):\n{output}")]
    Failed { status: String, output: String },
    #[error("compiling Python bytecode: the sandbox for the image's interpreter could not be set up: {0} (bubblewrap 0.8 or later is needed, and this host must allow user namespaces)")]
    SandboxSetup(String),
    #[error("compiling Python bytecode: {0}")]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error("compiling Python bytecode: {0} failed to compile (see the messages above); fix the file or remove it from the image")]
    Missing(String),
    #[error("compiling Python bytecode for an {arch} image runs its interpreter under QEMU's user-mode emulator on this host, and {binary} is not on $PATH: install Debian's {QEMU_USER_PACKAGE} (`apt-get install {QEMU_USER_PACKAGE}`, or run `sudo ./ci/setup`)")]
    NoEmulator { arch: Arch, binary: &'static str },
}

/// The Debian package of QEMU's static user-mode emulators ([`Arch::qemu_user`]).
pub const QEMU_USER_PACKAGE: &str = "qemu-user-static";

impl BytecodeError {
    /// The interpreter could not be run or the scratch directory written.
    pub fn is_environment(&self) -> bool {
        matches!(
            self,
            Self::Io { .. }
                | Self::Failed { .. }
                | Self::SandboxSetup(_)
                | Self::Sandbox(_)
                | Self::NoEmulator { .. }
        )
    }
}

/// What the step did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// `.py` files compiled.
    pub sources: usize,
    /// Bytes of `.pyc` added.
    pub bytes: u64,
    /// The interpreter's cache tag (`cpython-311`).
    pub cache_tag: String,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BytecodeError {
    let what = what.into();
    move |source| BytecodeError::Io { what, source }
}

/// Copies the tree to `root` on the host: directories, files (hard links as copies) and
/// symlinks, every symlink re-pointed at the absolute host path of its in-image target, so
/// nothing resolves outside `root`. Device nodes are left out.
fn materialize(tree: &Tree, root: &Path) -> Result<(), BytecodeError> {
    use std::os::unix::fs::PermissionsExt;
    for (p, e) in tree.iter() {
        let host = root.join(p.relative());
        match &e.kind {
            Kind::Dir => std::fs::create_dir_all(&host)
                .map_err(io(format!("creating {}", host.display())))?,
            Kind::File(d) => {
                std::fs::write(&host, d.as_slice())
                    .map_err(io(format!("writing {}", host.display())))?;
                // Readable and, for the interpreter and the loader, executable by us.
                std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755))
                    .map_err(io(format!("writing {}", host.display())))?;
            }
            Kind::Hardlink(t) => {
                if let Some(Kind::File(d)) = tree.get(t).map(|e| &e.kind) {
                    std::fs::write(&host, d.as_slice())
                        .map_err(io(format!("writing {}", host.display())))?;
                }
            }
            Kind::Symlink(t) => {
                let resolved = ImagePath::resolve_link_target(p, t);
                std::os::unix::fs::symlink(root.join(resolved.relative()), &host)
                    .map_err(io(format!("linking {}", host.display())))?;
            }
            Kind::CharDevice { .. } | Kind::BlockDevice { .. } => {}
        }
    }
    Ok(())
}

/// Every `.py` of the tree that is a file or a link to one (Python caches a module found
/// through a link next to the link), in path order.
fn sources(tree: &Tree) -> Vec<ImagePath> {
    tree.iter()
        .filter(|(p, e)| {
            p.as_str().ends_with(".py")
                && match e.kind {
                    Kind::File(_) => true,
                    Kind::Symlink(_) | Kind::Hardlink(_) => elf::resolve_file(tree, p).is_some(),
                    _ => false,
                }
        })
        .map(|(p, _)| p.clone())
        .collect()
}

/// What runs an `arch` image's programs on this host: nothing for the host's own architecture;
/// for another, its static user-mode emulator from `path` (`$PATH`), as a canonical path (the
/// sandbox binds it there).
pub fn emulator(arch: Arch, path: Option<&OsStr>) -> Result<Option<PathBuf>, BytecodeError> {
    if arch.cross_compile().is_none() {
        return Ok(None);
    }
    let binary = arch.qemu_user();
    path.into_iter()
        .flat_map(std::env::split_paths)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(binary))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
        .map(Some)
        .ok_or(BytecodeError::NoEmulator { arch, binary })
}

/// How to run the image's `interpreter` (resolved in the tree) from `root` on the host: through
/// the image's loader, with the library directories of its closure; under `emulator` when the
/// image is of another architecture.
fn interpreter_argv(
    tree: &Tree,
    interpreter: &ImagePath,
    root: &Path,
    arch: Arch,
    emulator: Option<&Path>,
) -> Result<Vec<OsString>, BytecodeError> {
    let exe = elf::resolve_file(tree, interpreter)
        .ok_or_else(|| BytecodeError::NoInterpreter(interpreter.clone()))?;
    let closure = elf::closure(tree, std::slice::from_ref(&exe), arch).map_err(|e| {
        BytecodeError::Interpreter {
            path: interpreter.clone(),
            why: e.to_string(),
        }
    })?;
    // The closure is [exe, loader, libraries...] for a dynamic executable.
    let loader = closure
        .iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.starts_with("ld-linux") || n.starts_with("ld64"))
        })
        .ok_or_else(|| BytecodeError::Interpreter {
            path: interpreter.clone(),
            why: "not a dynamically linked executable with a loader in the image".into(),
        })?;
    let mut dirs: Vec<String> = Vec::new();
    for lib in closure.iter().skip(1) {
        if let Some(d) = lib.parent() {
            let host = root.join(d.relative()).display().to_string();
            if !dirs.contains(&host) {
                dirs.push(host);
            }
        }
    }
    Ok(loader_argv(
        emulator,
        &root.join(loader.relative()),
        &dirs,
        &root.join(exe.relative()),
    ))
}

/// `[emulator] loader --library-path DIRS exe`: the loader run as the program (by the emulator,
/// for another architecture's), which loads `exe` with the libraries of `dirs` only.
fn loader_argv(
    emulator: Option<&Path>,
    loader: &Path,
    dirs: &[String],
    exe: &Path,
) -> Vec<OsString> {
    let mut argv: Vec<OsString> = emulator.map(OsString::from).into_iter().collect();
    argv.extend([
        loader.into(),
        "--library-path".into(),
        dirs.join(":").into(),
        exe.into(),
    ]);
    argv
}

/// Compiles every `.py` in the tree with the image's `interpreter` (of an `arch` image, run on
/// this host) and adds the `.pyc` files.
pub fn compile(
    tree: &mut Tree,
    interpreter: &ImagePath,
    arch: Arch,
) -> Result<Compiled, BytecodeError> {
    let srcs = sources(tree);
    if srcs.is_empty() {
        return Ok(Compiled::default());
    }
    let bwrap = crate::sandbox::bwrap("compiling Python bytecode with the image's interpreter")?;
    let emulator = emulator(arch, std::env::var_os("PATH").as_deref())?;
    let scratch = tempfile::Builder::new()
        .prefix("stratos-bytecode-")
        .tempdir()
        .map_err(io("creating a scratch directory"))?;
    // The sandbox binds the directory at its own path: no symlink on the way (a $TMPDIR that
    // is one) may change what the paths below name.
    let work = scratch
        .path()
        .canonicalize()
        .map_err(io("creating a scratch directory"))?;
    let root = work.join("root");
    materialize(tree, &root)?;
    let list = work.join("sources.txt");
    write_list(&list, &root, &srcs)?;
    let argv = driver_argv(tree, interpreter, &root, &list, arch, emulator.as_deref())?;
    let tools: Vec<&Path> = emulator.as_deref().into_iter().collect();
    let cache_tag = run_driver(&bwrap, &work, &tools, &root, &argv, interpreter)?;
    let (added, bytes) = collect_pyc(tree, &srcs, &root, &cache_tag)?;
    insert_pyc(tree, added)?;
    Ok(Compiled {
        sources: srcs.len(),
        bytes,
        cache_tag,
    })
}

/// The sources' host paths, one a line, for the driver.
fn write_list(list: &Path, root: &Path, srcs: &[ImagePath]) -> Result<(), BytecodeError> {
    let mut text = String::new();
    for s in srcs {
        text.push_str(&root.join(s.relative()).display().to_string());
        text.push('\n');
    }
    std::fs::write(list, text).map_err(io("writing the list of sources"))
}

/// The image's interpreter running [`DRIVER`] on `root` and `list`.
fn driver_argv(
    tree: &Tree,
    interpreter: &ImagePath,
    root: &Path,
    list: &Path,
    arch: Arch,
    emulator: Option<&Path>,
) -> Result<Vec<OsString>, BytecodeError> {
    let mut argv = interpreter_argv(tree, interpreter, root, arch, emulator)?;
    // -S: no `site`, so no `.pth` file, `sitecustomize` or `usercustomize` runs (nor is
    // dist-packages on sys.path: the driver imports only the standard library). -s -P: no user
    // site, no script directory on sys.path. That is -I without -E, which would ignore the
    // fixed PYTHONHASHSEED; the environment is ours alone anyway (the sandbox clears it).
    argv.extend(["-S", "-s", "-P", "-c", DRIVER].map(OsString::from));
    argv.push(root.into());
    argv.push(list.into());
    Ok(argv)
}

/// Runs the driver in the sandbox (which sees only `work`, and `tools` read-only); returns the
/// interpreter's cache tag.
fn run_driver(
    bwrap: &Path,
    work: &Path,
    tools: &[&Path],
    root: &Path,
    argv: &[OsString],
    interpreter: &ImagePath,
) -> Result<String, BytecodeError> {
    let home = root.join("usr");
    let env: [(&str, &OsStr); 4] = [
        ("PYTHONHASHSEED", OsStr::new("0")),
        // Importing compileall must not leave timestamped .pyc (with scratch paths) behind.
        ("PYTHONDONTWRITEBYTECODE", OsStr::new("1")),
        ("LC_ALL", OsStr::new("C.UTF-8")),
        // The interpreter finds its standard library under ROOT/usr, not the host's.
        ("PYTHONHOME", home.as_os_str()),
    ];
    let out = crate::sandbox::command(bwrap, work, tools, &env, argv)
        .traced()
        .output()
        .map_err(io(format!(
            "running the image's interpreter {interpreter} in the sandbox ({})",
            bwrap.display()
        )))?;
    if !out.status.success() {
        if let Some(why) = crate::sandbox::setup_failure(&String::from_utf8_lossy(&out.stderr)) {
            return Err(BytecodeError::SandboxSetup(why.to_owned()));
        }
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(BytecodeError::Failed {
            status: out.status.to_string(),
            output: format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
        });
    }
    let cache_tag = stdout
        .lines()
        .find_map(|l| l.strip_prefix("cache_tag "))
        .unwrap_or_default()
        .trim()
        .to_owned();
    if cache_tag.is_empty() {
        return Err(BytecodeError::Failed {
            status: out.status.to_string(),
            output: stdout.into_owned(),
        });
    }
    Ok(cache_tag)
}

/// Each source's `.pyc` from the scratch tree, owned like its source; with their total size.
fn collect_pyc(
    tree: &Tree,
    srcs: &[ImagePath],
    root: &Path,
    cache_tag: &str,
) -> Result<(BTreeMap<ImagePath, Entry>, u64), BytecodeError> {
    let mut added: BTreeMap<ImagePath, Entry> = BTreeMap::new();
    let mut bytes = 0;
    for s in srcs {
        let name = s.file_name().expect("a file");
        let stem = name.strip_suffix(".py").expect("a .py file");
        let parent = s.parent().expect("a file has a parent");
        let pyc = parent
            .join("__pycache__")
            .and_then(|d| d.join(&format!("{stem}.{cache_tag}.pyc")))
            .map_err(|e| BytecodeError::Missing(format!("{s}: {e}")))?;
        let host = root.join(pyc.relative());
        let data = std::fs::read(&host).map_err(|_| BytecodeError::Missing(s.to_string()))?;
        let src = tree.get(s).expect("listed from the tree");
        bytes += data.len() as u64;
        added.insert(
            pyc,
            Entry::file(data, 0o644, &src.origin).owned_by(src.uid, src.gid),
        );
    }
    Ok((added, bytes))
}

/// Puts the `.pyc` files in the tree, creating each `__pycache__` owned like its first file.
fn insert_pyc(tree: &mut Tree, added: BTreeMap<ImagePath, Entry>) -> Result<(), BytecodeError> {
    for (p, e) in added {
        let dir = p.parent().expect("in __pycache__");
        if tree.get(&dir).is_none() {
            let owner = e.clone();
            tree.insert(
                &dir,
                Entry::dir(0o755, &owner.origin).owned_by(owner.uid, owner.gid),
            )
            .map_err(|e| BytecodeError::Missing(format!("{dir}: {e}")))?;
        }
        tree.insert(&p, e)
            .map_err(|e| BytecodeError::Missing(format!("{p}: {e}")))?;
    }
    Ok(())
}

/// Runs inside the image's interpreter: compiles the listed files (argv[2]) in order, with
/// in-image paths (argv[1] stripped, "/" prepended) as `co_filename`, and prints the cache tag.
const DRIVER: &str = r#"
import compileall, py_compile, sys
root, listing = sys.argv[1], sys.argv[2]
with open(listing) as f:
    files = [l.rstrip("\n") for l in f if l.strip()]
ok = True
for path in files:
    ok &= compileall.compile_file(
        path, stripdir=root, prependdir="/", quiet=1, force=True,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
print("cache_tag", sys.implementation.cache_tag)
sys.exit(0 if ok else 1)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_architecture_s_loader_runs_under_its_emulator() {
        let dirs = [
            "/w/root/lib/aarch64-linux-gnu".to_owned(),
            "/w/root/usr/lib".to_owned(),
        ];
        let loader = Path::new("/w/root/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1");
        let exe = Path::new("/w/root/usr/bin/python3.11");
        let qemu = Path::new("/usr/bin/qemu-aarch64-static");
        assert_eq!(
            loader_argv(Some(qemu), loader, &dirs, exe),
            [
                "/usr/bin/qemu-aarch64-static",
                "/w/root/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1",
                "--library-path",
                "/w/root/lib/aarch64-linux-gnu:/w/root/usr/lib",
                "/w/root/usr/bin/python3.11",
            ]
        );
        // The host's own: the image's loader, directly.
        assert_eq!(
            loader_argv(None, loader, &dirs, exe),
            loader_argv(Some(qemu), loader, &dirs, exe)[1..]
        );
    }

    #[test]
    fn the_emulator_is_looked_up_for_another_architecture_only() {
        let dir = tempfile::tempdir().unwrap();
        let empty = tempfile::tempdir().unwrap();
        let qemu = dir.path().join("qemu-aarch64-static");
        std::fs::write(&qemu, b"").unwrap();
        let path = std::env::join_paths([empty.path(), dir.path()]).unwrap();
        // The host's architecture needs none, whatever $PATH holds.
        assert_eq!(emulator(Arch::X86_64, None).unwrap(), None);
        assert_eq!(
            emulator(Arch::Aarch64, Some(&path)).unwrap(),
            Some(qemu.canonicalize().unwrap())
        );
        let e = emulator(Arch::Aarch64, Some(empty.path().as_os_str())).unwrap_err();
        assert!(e.is_environment());
        assert_eq!(
            e.to_string(),
            "compiling Python bytecode for an aarch64 image runs its interpreter under QEMU's user-mode emulator on this host, and qemu-aarch64-static is not on $PATH: install Debian's qemu-user-static (`apt-get install qemu-user-static`, or run `sudo ./ci/setup`)"
        );
        assert!(emulator(Arch::Aarch64, None).is_err());
    }

    /// The arm64 Python of python-fn's arm64 lock (its interpreter, standard library and the
    /// libraries they load), from the .debs `ci/setup` fetches, as a tree.
    fn arm64_python() -> Tree {
        use crate::packages::debian::{deb, lock::LockFile};
        let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/python-fn.aarch64.lock");
        let lock = LockFile::load(&lock, Arch::Aarch64).unwrap();
        let mut tree = Tree::new();
        for name in [
            "libc6",
            "zlib1g",
            "libexpat1",
            "libpython3.11-minimal",
            "python3.11-minimal",
        ] {
            let p = lock.packages.iter().find(|p| p.name == name).unwrap();
            let file = Path::new("/var/cache/stratos/debs").join(format!(
                "{}_{}_{}.deb",
                p.name,
                p.version.replace(':', "%3a"),
                p.arch
            ));
            let bytes = std::fs::read(&file).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}: run `sudo ./ci/setup` (it fetches every .deb the profiles' locks pin)",
                    file.display()
                )
            });
            assert_eq!(
                crate::digest::Sha256::of(&bytes),
                p.sha256,
                "{}",
                file.display()
            );
            let (_, data) = deb::open_member(&bytes, "data.tar", name).unwrap();
            let origin = crate::rootfs::Origin::new(name);
            deb::extract_data_tar(data, &mut tree, &origin, name, deb::tests::budget()).unwrap();
        }
        tree
    }

    /// An arm64 image's bytecode, compiled on this x86-64 host by its own interpreter under
    /// qemu-aarch64-static in the sandbox: every source gets its .pyc, and a second build
    /// gives the same bytes.
    #[test]
    fn an_arm64_interpreter_compiles_under_the_emulator_reproducibly() {
        for tool in ["/usr/bin/bwrap", "/usr/bin/qemu-aarch64-static"] {
            assert!(
                Path::new(tool).is_file(),
                "{tool} is missing: run `sudo ./ci/setup` (it installs bubblewrap and qemu-user-static)"
            );
        }
        let mut tree = arm64_python();
        let o = crate::rootfs::Origin::new("fn");
        for (p, text) in [
            ("/srv/fn/handler.py", "CONSTS = {'a', 'b', 'c', 1, 2.5}\ndef handle(req):\n    return {'ok': sorted(CONSTS, key=str)}\n"),
            ("/srv/fn/lib/__init__.py", "from .util import twice\n"),
            ("/srv/fn/lib/util.py", "def twice(x):\n    return x * 2\n"),
        ] {
            let p = ImagePath::parse(p).unwrap();
            tree.insert(&p, Entry::file(text.as_bytes().to_vec(), 0o644, &o))
                .unwrap();
        }
        let python = ImagePath::parse("/usr/bin/python3.11").unwrap();
        let pycs = |t: &Tree| -> BTreeMap<String, Vec<u8>> {
            t.iter()
                .filter(|(p, _)| p.as_str().ends_with(".pyc"))
                .map(|(p, e)| match &e.kind {
                    Kind::File(d) => (p.to_string(), d.as_slice().to_vec()),
                    other => panic!("{p}: {other:?}"),
                })
                .collect()
        };
        let mut first = tree.clone();
        let done = compile(&mut first, &python, Arch::Aarch64).unwrap();
        assert_eq!(done.cache_tag, "cpython-311");
        assert!(done.sources > 250, "{done:?}");
        let a = pycs(&first);
        assert_eq!(a.len(), done.sources);
        assert!(
            a.contains_key("/srv/fn/__pycache__/handler.cpython-311.pyc"),
            "{:?}",
            a.keys()
        );
        assert!(a.contains_key("/srv/fn/lib/__pycache__/util.cpython-311.pyc"));
        assert!(a.contains_key("/usr/lib/python3.11/__pycache__/compileall.cpython-311.pyc"));
        let mut second = tree.clone();
        compile(&mut second, &python, Arch::Aarch64).unwrap();
        assert_eq!(a, pycs(&second), "two builds gave different bytecode");
        // In-image paths in the code objects, not the scratch directory's.
        let handler = &a["/srv/fn/__pycache__/handler.cpython-311.pyc"];
        assert!(handler.windows(18).any(|w| w == b"/srv/fn/handler.py"));
        assert!(!handler.windows(17).any(|w| w == b"stratos-bytecode-"));
    }
}
