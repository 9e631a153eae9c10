//! `stratos new NAME --runtime R`: a directory holding a profile, its function and everything it
//! needs to build and answer as written, with the settings of the shipped profile of the same
//! runtime (`hello`, `python-fn`, `node-fn`, `go-fn`): the same kernel fragments (so their cached kernel
//! is reused), seccomp baseline, limits, readiness and network, and the same pinned Debian
//! lock (the package sets are identical, so it builds offline from what `ci/setup` fetched).
//!
//! The templates are in `templates/new/`; the fragments, baselines and locks are the shipped
//! files themselves, compiled in. The directory is filled under a temporary name next to it
//! and renamed into place only when complete, never over anything.

use std::path::{Path, PathBuf};

use super::{writing, CliError, CliResult};

/// Start a new function: write NAME/ with a profile, a handler and what they need.
///
/// NAME/ gets profile.toml (the image is named after the directory), rootfs/ (the function's
/// files, laid onto the image's root; for go, fn/: the Go module built into the image),
/// profile.lock (the shipped example's pinned Debian packages: same package set; go has
/// none), seccomp.json (the runtime's baseline), kernel/ (the kernel config fragments),
/// profile.schema.json (for editors: the profile's first line points at it), and a .gitignore
/// keeping out/ and secret keys out of version control. The profile builds and answers
/// unchanged, with the settings of the shipped example of the same runtime (hello, python-fn,
/// node-fn or go-fn). An existing NAME is never touched (exit 2).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    stratos new myfn --runtime python\n  \
    cd myfn && stratos build profile.toml && stratos boot out/myfn --invoke /")]
pub struct Args {
    /// The directory to create; its name (1-64 of a-z, 0-9, '.', '_', '-') names the image.
    #[arg(value_name = "NAME")]
    pub dir: PathBuf,
    /// The function's runtime: python (Python 3.11, standard library), node (Node.js 18, one
    /// npm dependency), go (Go 1.19, compiled at build time into one static binary) or busybox
    /// (a shell CGI script under busybox httpd).
    #[arg(long, value_enum)]
    pub runtime: Runtime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    Python,
    Node,
    Go,
    Busybox,
}

impl Runtime {
    /// The shipped profile whose settings, baseline and lock a new profile takes.
    pub fn shipped(self) -> &'static str {
        match self {
            Runtime::Python => "python-fn",
            Runtime::Node => "node-fn",
            Runtime::Go => "go-fn",
            Runtime::Busybox => "hello",
        }
    }

    /// The path `boot --invoke` asks for.
    pub fn invoke_path(self, name: &str) -> String {
        match self {
            Runtime::Python | Runtime::Node | Runtime::Go => "/".into(),
            Runtime::Busybox => format!("/cgi-bin/{name}"),
        }
    }
}

/// One file of a new directory: where, what (with `@NAME@` standing for the name), its mode.
struct Template {
    rel: &'static str,
    text: &'static str,
    mode: u32,
}

macro_rules! template {
    ($rel:expr, $src:literal) => {
        template!($rel, $src, 0o644)
    };
    ($rel:expr, $src:literal, $mode:literal) => {
        Template {
            rel: $rel,
            text: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $src)),
            mode: $mode,
        }
    };
}

/// The kernel config fragments every runtime's profile lists, as `kernel/<name>`.
const FRAGMENTS: &[Template] = &[
    template!("kernel/base.config", "kernel-configs/base.config"),
    template!(
        "kernel/x86-microvm.config",
        "kernel-configs/x86-microvm.config"
    ),
    template!(
        "kernel/arm64-virt.config",
        "kernel-configs/arm64-virt.config"
    ),
    template!(
        "kernel/serial-console.config",
        "kernel-configs/serial-console.config"
    ),
    template!("kernel/net.config", "kernel-configs/net.config"),
    template!("kernel/virtio.config", "kernel-configs/virtio.config"),
    template!("kernel/zram.config", "kernel-configs/zram.config"),
    template!("kernel/seccomp.config", "kernel-configs/seccomp.config"),
    template!("kernel/cgroups.config", "kernel-configs/cgroups.config"),
    template!("kernel/entropy.config", "kernel-configs/entropy.config"),
    template!(
        "kernel/erofs-verity.config",
        "kernel-configs/erofs-verity.config"
    ),
    template!(
        "kernel/observability.config",
        "kernel-configs/observability.config"
    ),
];

const COMMON: &[Template] = &[template!(".gitignore", "templates/new/gitignore")];

const PYTHON: &[Template] = &[
    template!("profile.toml", "templates/new/python/profile.toml"),
    template!("profile.lock", "profiles/python-fn.lock"),
    template!("profile.aarch64.lock", "profiles/python-fn.aarch64.lock"),
    template!("seccomp.json", "profiles/seccomp/python.json"),
    template!(
        "rootfs/srv/fn/handler.py",
        "templates/new/python/rootfs/srv/fn/handler.py"
    ),
    template!(
        "rootfs/srv/fn/app.py",
        "templates/new/python/rootfs/srv/fn/app.py"
    ),
];

const NODE: &[Template] = &[
    template!("profile.toml", "templates/new/node/profile.toml"),
    template!("profile.lock", "profiles/node-fn.lock"),
    template!("profile.aarch64.lock", "profiles/node-fn.aarch64.lock"),
    template!("seccomp.json", "profiles/seccomp/node.json"),
    template!(
        "rootfs/srv/fn/handler.js",
        "templates/new/node/rootfs/srv/fn/handler.js"
    ),
    template!(
        "rootfs/srv/fn/package.json",
        "templates/new/node/rootfs/srv/fn/package.json"
    ),
    template!(
        "rootfs/srv/fn/package-lock.json",
        "templates/new/node/rootfs/srv/fn/package-lock.json"
    ),
];

const GO: &[Template] = &[
    template!("profile.toml", "templates/new/go/profile.toml"),
    template!("seccomp.json", "profiles/seccomp/go.json"),
    template!("fn/go.mod", "templates/new/go/fn/go.mod"),
    template!("fn/main.go", "templates/new/go/fn/main.go"),
];

const BUSYBOX: &[Template] = &[
    template!("profile.toml", "templates/new/busybox/profile.toml"),
    template!("profile.lock", "profiles/hello.lock"),
    template!("profile.aarch64.lock", "profiles/hello.aarch64.lock"),
    template!("seccomp.json", "profiles/seccomp/busybox-httpd.json"),
    template!(
        "rootfs/srv/www/index.html",
        "templates/new/busybox/rootfs/srv/www/index.html"
    ),
    // Written as cgi-bin/<NAME>: the function's URL is /cgi-bin/<NAME>.
    template!(
        "rootfs/srv/www/cgi-bin/@NAME@",
        "templates/new/busybox/rootfs/srv/www/cgi-bin/fn",
        0o755
    ),
];

/// Every file of a new `runtime` directory for the image `name`: (relative path, bytes,
/// mode), the profile first.
pub fn files(runtime: Runtime, name: &str) -> Vec<(String, Vec<u8>, u32)> {
    let own = match runtime {
        Runtime::Python => PYTHON,
        Runtime::Node => NODE,
        Runtime::Go => GO,
        Runtime::Busybox => BUSYBOX,
    };
    let mut out: Vec<(String, Vec<u8>, u32)> = own
        .iter()
        .chain(COMMON)
        .chain(FRAGMENTS)
        .map(|t| {
            (
                t.rel.replace("@NAME@", name),
                t.text.replace("@NAME@", name).into_bytes(),
                t.mode,
            )
        })
        .collect();
    out.push((
        "profile.schema.json".into(),
        crate::profile::json_schema_text().into_bytes(),
        0o644,
    ));
    out
}

/// Symlinks of a new directory: (relative path, target).
fn links(runtime: Runtime) -> &'static [(&'static str, &'static str)] {
    match runtime {
        // The CGI scripts' `#!/bin/sh`: busybox-static installs only /bin/busybox.
        Runtime::Busybox => &[("rootfs/bin/sh", "busybox")],
        Runtime::Python | Runtime::Node | Runtime::Go => &[],
    }
}

pub fn run(a: Args) -> CliResult {
    let name = image_name(&a.dir)?;
    if a.dir.symlink_metadata().is_ok() {
        return Err(CliError::input(anyhow::anyhow!(
            "{} already exists: stratos new never writes into an existing path; choose another NAME or move it away",
            a.dir.display()
        )));
    }
    let staged = crate::fsio::staging_dir(&a.dir, ".stratos-new-").map_err(writing(&a.dir))?;
    fill(staged.path(), a.runtime, &name)?;
    let staged = staged.into_unmarked().map_err(writing(&a.dir))?;
    place(staged, &a.dir)?;
    print!("{}", next_steps(&a.dir, a.runtime, &name));
    Ok(())
}

/// The image's name: the directory's own name, which must be a valid image name.
fn image_name(dir: &Path) -> Result<String, CliError> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| crate::profile::is_image_name(n));
    name.map(str::to_owned).ok_or_else(|| {
        CliError::input(anyhow::anyhow!(
            "{:?} cannot name an image: the directory's name must be 1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
            dir.display().to_string()
        ))
    })
}

/// Writes every file and link of the new directory into `root`.
fn fill(root: &Path, runtime: Runtime, name: &str) -> CliResult {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))
        .map_err(writing(root))?;
    for (rel, bytes, mode) in files(runtime, name) {
        let path = root.join(&rel);
        let parent = crate::fsio::parent_of(&path);
        std::fs::create_dir_all(parent).map_err(writing(parent))?;
        crate::fsio::write_atomic(&path, &bytes, mode).map_err(writing(&path))?;
    }
    for (rel, target) in links(runtime) {
        let path = root.join(rel);
        let parent = crate::fsio::parent_of(&path);
        std::fs::create_dir_all(parent).map_err(writing(parent))?;
        std::os::unix::fs::symlink(target, &path).map_err(writing(&path))?;
    }
    Ok(())
}

/// Renames the filled directory to `dest`, never over anything that appeared there meanwhile.
fn place(staged: tempfile::TempDir, dest: &Path) -> CliResult {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    use rustix::io::Errno;
    let exists = || {
        CliError::input(anyhow::anyhow!(
            "{} appeared while it was being written: nothing was changed there",
            dest.display()
        ))
    };
    match renameat_with(CWD, staged.path(), CWD, dest, RenameFlags::NOREPLACE) {
        Ok(()) => {}
        Err(Errno::EXIST | Errno::NOTEMPTY) => return Err(exists()),
        // A filesystem without renameat2's flags: look, then rename.
        Err(Errno::INVAL) => {
            if dest.symlink_metadata().is_ok() {
                return Err(exists());
            }
            std::fs::rename(staged.path(), dest).map_err(writing(dest))?;
        }
        Err(e) => return Err(writing(dest)(e.into())),
    }
    let _moved = staged.keep();
    let parent = crate::fsio::parent_of(dest);
    crate::fsio::sync_dir(parent).map_err(writing(parent))
}

/// What was written and the commands to run next, each one a `stratos` command line.
pub fn next_steps(dir: &Path, runtime: Runtime, name: &str) -> String {
    let shipped = runtime.shipped();
    let what = match runtime {
        Runtime::Go => "fn/ (the function: a Go module, compiled at build time)".to_owned(),
        _ => format!("rootfs/ (the function), profile.lock and profile.aarch64.lock ({shipped}'s pinned packages, x86_64 and aarch64)"),
    };
    let mut out = format!(
        "created {dir}/: profile.toml, {what}, seccomp.json, kernel/, profile.schema.json, .gitignore\n\n\
         Next (the first build compiles the kernel, 4-7 minutes on two cores, unless {shipped} was built here before; `stratos doctor` says what this host lacks):\n",
        dir = dir.display()
    );
    for line in commands(dir, runtime, name) {
        out.push_str("  ");
        out.push_str(&line);
        out.push('\n');
    }
    let pins = match runtime {
        Runtime::Go => "After adding a module (`go get` in fn/), keep fn/go.sum: it pins every module the build fetches",
        _ => "After changing [packages], run `stratos lock profile.toml`",
    };
    out.push_str(&format!(
        "\n{pins}; the profile reference is docs/profile.md.\n\
         The answer to expect: Hello, world! This is {name} on StratOS.\n"
    ));
    out
}

/// The commands of [`next_steps`], in order (the first is `cd`).
pub fn commands(dir: &Path, runtime: Runtime, name: &str) -> Vec<String> {
    vec![
        format!("cd {}", dir.display()),
        "stratos keygen --out keys/release".into(),
        "stratos build profile.toml --image-key keys/release.key".into(),
        format!("stratos verify out/{name} --image-key keys/release.pub"),
        format!(
            "stratos boot out/{name} --invoke {}",
            runtime.invoke_path(name)
        ),
    ]
}
