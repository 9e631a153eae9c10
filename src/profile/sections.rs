//! One validator per profile section: each takes its raw (serde) table and returns its
//! validated type, with errors that name the file, line, column and key.

use std::collections::BTreeMap;
use std::path::Path;

use toml::Spanned;

use super::checks::*;
use super::raw::{self, IntOrString};
use super::*;
use crate::rootfs::ImagePath;

/// `[image]`.
pub(super) fn validate_image(
    cx: &Ctx,
    img: raw::RawImage,
    env_epoch: Option<&str>,
) -> Result<Image, ProfileError> {
    let name = image_name(cx, &img.name)?;
    Ok(Image {
        version: image_version(cx, &img.version)?,
        source_date_epoch: source_date_epoch(cx, img.source_date_epoch.as_ref(), env_epoch)?,
        hostname: hostname(cx, img.hostname.as_ref(), &name)?,
        limits: expand_limits(cx, &img)?,
        root: choice(cx, img.root.as_ref(), "image.root")?,
        name,
    })
}

fn image_name(cx: &Ctx, name: &Spanned<String>) -> Result<String, ProfileError> {
    if !is_name(name.get_ref()) {
        return Err(cx.at(
            name.span(),
            "image.name",
            format!(
                "{:?} is not a valid image name: use 1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
                name.get_ref()
            ),
        ));
    }
    Ok(name.get_ref().clone())
}

fn image_version(cx: &Ctx, version: &Spanned<String>) -> Result<String, ProfileError> {
    let v = version.get_ref();
    if v.is_empty()
        || v.len() > 128
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-~".contains(c))
    {
        return Err(cx.at(
            version.span(),
            "image.version",
            format!(
                "{v:?} is not a valid version: use 1-128 of A-Z, a-z, 0-9, '.', '_', '+', '-', '~'"
            ),
        ));
    }
    Ok(v.clone())
}

/// The profile's, else `$SOURCE_DATE_EPOCH`, else 0.
fn source_date_epoch(
    cx: &Ctx,
    e: Option<&Spanned<i64>>,
    env_epoch: Option<&str>,
) -> Result<u64, ProfileError> {
    match (e, env_epoch) {
        (Some(e), _) => u64::try_from(*e.get_ref()).map_err(|_| {
            cx.at(
                e.span(),
                "image.source-date-epoch",
                "must be a non-negative number of seconds",
            )
        }),
        (None, Some(s)) => s.trim().parse::<u64>().map_err(|_| {
            cx.at(
                0..0,
                "image.source-date-epoch",
                format!(
                    "the profile sets none and $SOURCE_DATE_EPOCH={s:?} is not a number of seconds"
                ),
            )
        }),
        (None, None) => Ok(0),
    }
}

/// The profile's, else the image name with `.` and `_` as `-`.
fn hostname(cx: &Ctx, h: Option<&Spanned<String>>, name: &str) -> Result<String, ProfileError> {
    match h {
        None => Ok(name.replace(['.', '_'], "-")),
        Some(h) if is_hostname(h.get_ref()) => Ok(h.get_ref().clone()),
        Some(h) => Err(cx.at(
            h.span(),
            "image.hostname",
            format!(
                "{:?} is not a valid hostname (1-63 of a-z, 0-9, '-')",
                h.get_ref()
            ),
        )),
    }
}

/// `max-file-size`, `max-package-size`, `max-image-size` over the defaults.
fn expand_limits(
    cx: &Ctx,
    img: &raw::RawImage,
) -> Result<crate::rootfs::ExpandLimits, ProfileError> {
    let mut expand = crate::rootfs::ExpandLimits::default();
    for (v, key, slot) in [
        (&img.max_file_size, "image.max-file-size", &mut expand.file),
        (
            &img.max_package_size,
            "image.max-package-size",
            &mut expand.package,
        ),
        (
            &img.max_image_size,
            "image.max-image-size",
            &mut expand.image,
        ),
    ] {
        if let Some(v) = v {
            *slot = bytes_value(cx, v, key)?;
        }
    }
    Ok(expand)
}

/// `[kernel]`.
pub(super) fn validate_kernel(
    cx: &Ctx,
    k: raw::RawKernel,
    dir: &Path,
) -> Result<Kernel, ProfileError> {
    let origin = match (&k.prebuilt, &k.source) {
        (Some(_), Some(src)) => {
            return Err(cx.at(
                src.span(),
                "kernel.source",
                "set either kernel.prebuilt or kernel.source, not both",
            ));
        }
        (None, None) => {
            return Err(cx.at(
                0..0,
                "kernel",
                "needs either prebuilt = \"path/to/bzImage\" or source = { tarball = \"...\" } with fragments",
            ));
        }
        (Some(p), None) => prebuilt_kernel(cx, &k, p, dir)?,
        (None, Some(src)) => kernel_from_source(cx, &k, src, dir)?,
    };
    let modules_dir = k
        .modules_dir
        .as_ref()
        .map(|m| existing_dir(cx, dir, m, "kernel.modules-dir"))
        .transpose()?;
    Ok(Kernel {
        origin,
        modules: kernel_modules(cx, &k.modules, modules_dir.is_some())?,
        modules_dir,
        cmdline: kernel_cmdline(cx, k.cmdline)?,
    })
}

fn prebuilt_kernel(
    cx: &Ctx,
    k: &raw::RawKernel,
    image: &Spanned<String>,
    dir: &Path,
) -> Result<KernelOrigin, ProfileError> {
    for (key, present) in [
        ("kernel.base", k.base.as_ref().map(|b| b.span())),
        ("kernel.format", k.format.as_ref().map(|b| b.span())),
        ("kernel.fragments", k.fragments.first().map(|f| f.span())),
    ] {
        if let Some(span) = present {
            return Err(cx.at(
                span,
                key,
                "only applies to kernels built from source (kernel.source)",
            ));
        }
    }
    Ok(KernelOrigin::Prebuilt {
        image: existing_file(cx, dir, image, "kernel.prebuilt")?,
        config: k
            .config
            .as_ref()
            .map(|c| existing_file(cx, dir, c, "kernel.config"))
            .transpose()?,
    })
}

fn kernel_from_source(
    cx: &Ctx,
    k: &raw::RawKernel,
    src: &Spanned<raw::RawKernelSource>,
    dir: &Path,
) -> Result<KernelOrigin, ProfileError> {
    if let Some(c) = &k.config {
        return Err(cx.at(
            c.span(),
            "kernel.config",
            "a kernel built from source gets its config from base and fragments",
        ));
    }
    let span = src.span();
    let raw_src = src.get_ref();
    let tarball_sp = Spanned::new(span.clone(), raw_src.tarball.clone());
    let tarball = existing_file(cx, dir, &tarball_sp, "kernel.source.tarball")?;
    let sha256 = match &raw_src.sha256 {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(h.to_ascii_lowercase())
        }
        Some(_) => return Err(cx.at(span, "kernel.source.sha256", "must be 64 hex digits")),
        None => None,
    };
    let mut fragments = Vec::new();
    for (i, f) in k.fragments.iter().enumerate() {
        fragments.push(existing_file(
            cx,
            dir,
            f,
            &format!("kernel.fragments[{i}]"),
        )?);
    }
    Ok(KernelOrigin::Source(KernelSourceSpec {
        tarball,
        sha256,
        base: choice(cx, k.base.as_ref(), "kernel.base")?,
        fragments,
        format: choice(cx, k.format.as_ref(), "kernel.format")?,
    }))
}

fn kernel_modules(
    cx: &Ctx,
    list: &[Spanned<String>],
    have_dir: bool,
) -> Result<Vec<String>, ProfileError> {
    let mut modules = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let key = format!("kernel.modules[{i}]");
        let n = m.get_ref();
        if n.is_empty()
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(cx.at(
                m.span(),
                key,
                format!("{n:?} is not a module name (like virtio_net)"),
            ));
        }
        if !have_dir {
            return Err(cx.at(
                m.span(),
                key,
                "modules need kernel.modules-dir (the kernel package's lib/modules/<version>)",
            ));
        }
        let n = n.replace('-', "_");
        if modules.contains(&n) {
            return Err(cx.at(m.span(), key, format!("module {n:?} is listed twice")));
        }
        modules.push(n);
    }
    Ok(modules)
}

fn kernel_cmdline(cx: &Ctx, c: Option<Spanned<String>>) -> Result<String, ProfileError> {
    match c {
        Some(c) if c.get_ref().contains(['\n', '\0']) || c.get_ref().len() > 2048 => Err(cx.at(
            c.span(),
            "kernel.cmdline",
            "must be one line of at most 2048 bytes",
        )),
        Some(c) => Ok(c.into_inner()),
        None => Ok("console=ttyS0".to_owned()),
    }
}

/// `[init]`.
pub(super) fn validate_init(cx: &Ctx, i: raw::RawInit) -> Result<Init, ProfileError> {
    let argv_span = i.argv.span();
    let argv = i.argv.get_ref().clone();
    match argv.first() {
        None => {
            return Err(cx.at(
                argv_span,
                "init.argv",
                "must name the runtime to start, e.g. [\"/bin/busybox\", \"httpd\", \"-f\"]",
            ))
        }
        Some(a0) => {
            ImagePath::parse(a0).map_err(|e| {
                cx.at(
                    argv_span.clone(),
                    "init.argv[0]",
                    format!("{e} (the runtime is executed without a PATH search)"),
                )
            })?;
        }
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(cx.at(argv_span, "init.argv", "arguments cannot contain NUL bytes"));
    }
    let mut env = BTreeMap::new();
    if let Some(e) = &i.env {
        for (k, v) in e.get_ref() {
            if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
                return Err(cx.at(e.span(), format!("init.env.{k}"), "environment names cannot be empty or contain '=' or NUL; values cannot contain NUL"));
            }
            env.insert(k.clone(), v.clone());
        }
    }
    let cwd = match &i.cwd {
        Some(c) => image_path(cx, c, "init.cwd")?,
        None => ImagePath::root(),
    };
    Ok(Init {
        argv,
        env,
        cwd,
        uid: id(cx, i.uid.as_ref(), "init.uid")?,
        gid: id(cx, i.gid.as_ref(), "init.gid")?,
        readiness: readiness(cx, i.readiness.as_ref())?,
        restart: restart(cx, &i)?,
        stop_timeout_ms: match &i.stop_timeout_ms {
            Some(v) => positive_ms(cx, v, "init.stop-timeout-ms")?,
            None => 10_000,
        },
        tmpfs: tmpfs(cx, i.tmpfs.as_deref())?,
        read_only_root: i.read_only_root.unwrap_or(true),
        preload: i
            .preload
            .iter()
            .enumerate()
            .map(|(n, p)| image_path(cx, p, &format!("init.preload[{n}]")))
            .collect::<Result<_, _>>()?,
        preload_runtime: i.preload_runtime.unwrap_or(true),
        stdio: match &i.stdio {
            None => stratos_wire::Stdio::Console,
            Some(s) if s.get_ref() == "console" => stratos_wire::Stdio::Console,
            Some(s) if s.get_ref() == "null" => stratos_wire::Stdio::Null,
            Some(s) => {
                return Err(cx.at(s.span(), "init.stdio", "must be \"console\" or \"null\""))
            }
        },
        limits: limits(cx, i.limits.as_ref())?,
        on_restore: on_restore(cx, i.on_restore.as_ref())?,
    })
}

/// `[init] on-restore`: the signal a restored runtime gets (the init forwards it like any
/// other), or none.
fn on_restore(cx: &Ctx, v: Option<&Spanned<String>>) -> Result<Option<i32>, ProfileError> {
    match v.map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "none")) => Ok(None),
        Some((_, "SIGUSR1")) => Ok(Some(10)),
        Some((_, "SIGUSR2")) => Ok(Some(12)),
        Some((v, other)) => Err(cx.at(
            v.span(),
            "init.on-restore",
            format!("{other:?} is not allowed here; use \"SIGUSR1\", \"SIGUSR2\" or \"none\""),
        )),
    }
}

/// `[[overlay]]`.
pub(super) fn validate_overlays(
    cx: &Ctx,
    list: &[raw::RawOverlay],
    dir: &Path,
) -> Result<Vec<Overlay>, ProfileError> {
    let mut overlays = Vec::new();
    for (n, o) in list.iter().enumerate() {
        let key = format!("overlay[{n}]");
        let source = existing_dir(cx, dir, &o.path, &format!("{key}.path"))?;
        let name = overlay_name(o.path.get_ref(), n);
        if overlays.iter().any(|x: &Overlay| x.name == name) {
            return Err(cx.at(o.path.span(), format!("{key}.path"), format!("another overlay is also named {name:?}; overlay directory names must be distinct (they name SBOM components)")));
        }
        let target = match &o.target {
            Some(t) => image_path(cx, t, &format!("{key}.target"))?,
            None => ImagePath::root(),
        };
        let (uid, gid) = owner(cx, o.uid.as_ref(), o.gid.as_ref(), &key)?;
        overlays.push(Overlay {
            source,
            name,
            target,
            uid,
            gid,
        });
    }

    Ok(overlays)
}

/// `[[file]]`.
pub(super) fn validate_files(
    cx: &Ctx,
    list: &[raw::RawFile],
    dir: &Path,
) -> Result<Vec<HostFile>, ProfileError> {
    let mut files = Vec::new();
    for (n, f) in list.iter().enumerate() {
        let key = format!("file[{n}]");
        let source = existing_file(cx, dir, &f.source, &format!("{key}.source"))?;
        let dest = image_path(cx, &f.path, &format!("{key}.path"))?;
        if dest.is_root() {
            return Err(cx.at(
                f.path.span(),
                format!("{key}.path"),
                "must name a file, not /",
            ));
        }
        let mode = f
            .mode
            .as_ref()
            .map(|m| parse_mode(cx, m, &format!("{key}.mode")))
            .transpose()?;
        let (uid, gid) = owner(cx, f.uid.as_ref(), f.gid.as_ref(), &key)?;
        files.push(HostFile {
            source,
            dest,
            mode,
            uid,
            gid,
        });
    }

    Ok(files)
}

/// `[packages]`.
pub(super) fn validate_packages(
    cx: &Ctx,
    p: raw::RawPackages,
    dir: &Path,
) -> Result<Packages, ProfileError> {
    let mut debian = Vec::new();
    for (i, d) in p.debian.iter().enumerate() {
        if !is_debian_name(d.get_ref()) {
            return Err(cx.at(
                d.span(),
                format!("packages.debian[{i}]"),
                format!("{:?} is not a Debian package name", d.get_ref()),
            ));
        }
        debian.push(d.get_ref().clone());
    }
    let lock = match &p.lock {
        Some(l) => dir.join(l.get_ref()),
        None => {
            let stem = cx
                .file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("profile");
            dir.join(format!("{stem}.lock"))
        }
    };
    let globs = |list: &[Spanned<String>], key: &str| -> Result<Vec<String>, ProfileError> {
        let mut out = Vec::new();
        for (i, g) in list.iter().enumerate() {
            if !g.get_ref().starts_with('/') && !g.get_ref().starts_with("**") {
                return Err(cx.at(
                    g.span(),
                    format!("packages.{key}[{i}]"),
                    "a glob of in-image paths must start with / or ** (e.g. \"/usr/share/doc/**\")",
                ));
            }
            out.push(g.get_ref().clone());
        }
        Ok(out)
    };
    let exclude = globs(&p.exclude, "exclude")?;
    let keep = globs(&p.keep, "keep")?;
    Ok(Packages {
        debian,
        lock,
        exclude,
        keep,
        default_excludes: p.default_excludes.unwrap_or(true),
        policy: package_policy(cx, &p)?,
        python: p
            .python
            .as_ref()
            .map(|py| -> Result<PythonDeps, ProfileError> {
                let index = match &py.index {
                    Some(i) if i.get_ref().starts_with("https://") => i.get_ref().clone(),
                    Some(i) => {
                        return Err(cx.at(
                            i.span(),
                            "packages.python.index",
                            "the index is an https:// URL of a simple API (PEP 691), e.g. \"https://pypi.org/simple/\"",
                        ))
                    }
                    None => crate::packages::pypi::DEFAULT_INDEX.to_owned(),
                };
                Ok(PythonDeps {
                    requirements: existing_file(
                        cx,
                        dir,
                        &py.requirements,
                        "packages.python.requirements",
                    )?,
                    index,
                })
            })
            .transpose()?,
        npm: p
            .npm
            .as_ref()
            .map(|n| -> Result<NpmDeps, ProfileError> {
                Ok(NpmDeps {
                    lock: existing_file(cx, dir, &n.lock, "packages.npm.lock")?,
                    into: image_path(cx, &n.into, "packages.npm.into")?,
                    allow_native: n.allow_native.iter().map(|a| a.get_ref().clone()).collect(),
                })
            })
            .transpose()?,
    })
}

/// `[packages] origins` and `[packages.pin]`.
fn package_policy(
    cx: &Ctx,
    p: &raw::RawPackages,
) -> Result<crate::packages::resolve::Policy, ProfileError> {
    use crate::packages::resolve::{Pin, Policy};
    let mut policy = Policy::default();
    for (i, o) in p.origins.iter().enumerate() {
        if o.get_ref().trim().is_empty() {
            return Err(cx.at(
                o.span(),
                format!("packages.origins[{i}]"),
                "an origin is the `Origin` of an apt repository's Release file, e.g. \"Debian\"",
            ));
        }
        policy.origins.push(o.get_ref().clone());
    }
    for (name, pin) in &p.pin {
        let key = format!("packages.pin.{name}");
        if !is_debian_name(name) {
            return Err(cx.at(
                pin.span(),
                key,
                format!("{name:?} is not a Debian package name"),
            ));
        }
        let raw = pin.get_ref();
        if raw.origin.is_none() && raw.version.is_none() {
            return Err(cx.at(
                pin.span(),
                key,
                "a pin says where the package may come from: { origin = \"Debian\" } and/or { version = \"18.*\" }",
            ));
        }
        if raw.origin.as_deref().is_some_and(|o| o.trim().is_empty())
            || raw.version.as_deref().is_some_and(|v| v.trim().is_empty())
        {
            return Err(cx.at(pin.span(), key, "origin and version may not be empty"));
        }
        policy.pins.insert(
            name.clone(),
            Pin {
                origin: raw.origin.clone(),
                version: raw.version.clone(),
            },
        );
    }
    Ok(policy)
}

/// `[seccomp]`.
pub(super) fn validate_seccomp(
    cx: &Ctx,
    s: &raw::RawSeccomp,
    dir: &Path,
) -> Result<SeccompSpec, ProfileError> {
    Ok(SeccompSpec {
        policy: existing_file(cx, dir, &s.policy, "seccomp.policy")?,
        mode: choice(cx, s.mode.as_ref(), "seccomp.mode")?,
    })
}

/// `[runtime.python]`.
pub(super) fn validate_python(
    cx: &Ctx,
    py: raw::RawPython,
    runtime: &str,
) -> Result<PythonSpec, ProfileError> {
    let interpreter = match &py.interpreter {
        Some(i) => image_path(cx, i, "runtime.python.interpreter")?,
        None => crate::packages::bytecode::default_interpreter(runtime).ok_or_else(|| {
            cx.near(
                "[runtime.python]",
                "runtime.python.interpreter",
                format!("the runtime {runtime:?} is not a python interpreter: set interpreter = \"/usr/bin/python3.11\" (the image's interpreter)"),
            )
        })?,
    };
    Ok(PythonSpec {
        interpreter,
        bytecode: py.bytecode.unwrap_or(false),
    })
}

fn readiness(
    cx: &Ctx,
    r: Option<&Spanned<raw::RawReadiness>>,
) -> Result<Option<stratos_wire::Readiness>, ProfileError> {
    let Some(r) = r else { return Ok(None) };
    let span = r.span();
    let v = r.get_ref();
    let timeout_ms = match v.timeout_ms {
        Some(t) => u64::try_from(t)
            .ok()
            .filter(|&n| (1..=3_600_000).contains(&n))
            .ok_or_else(|| {
                cx.at(
                    span.clone(),
                    "init.readiness.timeout-ms",
                    "must be between 1 and 3600000",
                )
            })?,
        None => 30_000,
    };
    match (v.tcp, v.notify) {
        (Some(port), None | Some(false)) => {
            let port = u16::try_from(port).ok().filter(|&p| p > 0).ok_or_else(|| {
                cx.at(
                    span.clone(),
                    "init.readiness.tcp",
                    "must be a TCP port (1-65535)",
                )
            })?;
            Ok(Some(stratos_wire::Readiness::Tcp { port, timeout_ms }))
        }
        (None, Some(true)) => Ok(Some(stratos_wire::Readiness::Notify { timeout_ms })),
        _ => Err(cx.at(
            span,
            "init.readiness",
            "use either { tcp = PORT } or { notify = true }",
        )),
    }
}

fn restart(cx: &Ctx, i: &raw::RawInit) -> Result<stratos_wire::Restart, ProfileError> {
    let mut r = stratos_wire::Restart::default();
    if let Some(p) = &i.restart {
        r.policy = match p.get_ref().as_str() {
            "never" => stratos_wire::RestartPolicy::Never,
            "on-failure" => stratos_wire::RestartPolicy::OnFailure,
            "always" => stratos_wire::RestartPolicy::Always,
            _ => {
                return Err(cx.at(
                    p.span(),
                    "init.restart",
                    "must be \"never\", \"on-failure\" or \"always\"",
                ))
            }
        };
    }
    if let Some(m) = &i.max_restarts {
        r.max_restarts = u32::try_from(*m.get_ref())
            .ok()
            .filter(|&n| n <= 1000)
            .ok_or_else(|| cx.at(m.span(), "init.max-restarts", "must be between 0 and 1000"))?;
    }
    if let Some(b) = &i.restart_backoff_ms {
        r.backoff_initial_ms = positive_ms(cx, b, "init.restart-backoff-ms")?;
    }
    if let Some(b) = &i.restart_backoff_max_ms {
        r.backoff_max_ms = positive_ms(cx, b, "init.restart-backoff-max-ms")?;
    }
    if r.backoff_max_ms < r.backoff_initial_ms {
        r.backoff_max_ms = r.backoff_initial_ms;
    }
    Ok(r)
}

fn tmpfs(
    cx: &Ctx,
    list: Option<&[Spanned<raw::RawTmpfs>]>,
) -> Result<Vec<stratos_wire::Tmpfs>, ProfileError> {
    let Some(list) = list else {
        return Ok(vec![
            stratos_wire::Tmpfs {
                path: "/run".into(),
                mode: 0o755,
                size: 0,
            },
            stratos_wire::Tmpfs {
                path: "/tmp".into(),
                mode: 0o1777,
                size: 0,
            },
        ]);
    };
    let mut out: Vec<stratos_wire::Tmpfs> = Vec::new();
    for (n, t) in list.iter().enumerate() {
        let key = format!("init.tmpfs[{n}]");
        let (path, size, mode) = match t.get_ref() {
            raw::RawTmpfs::Path(p) => (p.clone(), None, None),
            raw::RawTmpfs::Table { path, size, mode } => {
                (path.clone(), size.as_ref(), mode.as_ref())
            }
        };
        let p = ImagePath::parse(&path).map_err(|e| cx.at(t.span(), key.clone(), e.to_string()))?;
        if p.is_root()
            || ["/proc", "/sys", "/dev"]
                .iter()
                .any(|k| p.starts_with(&ImagePath::parse(k).expect("static")))
        {
            return Err(cx.at(
                t.span(),
                key,
                format!(
                    "{p} cannot be a tmpfs mount (the init mounts /, /proc, /sys and /dev itself)"
                ),
            ));
        }
        let size = match size {
            None => 0,
            Some(s) => parse_size_bytes(s).ok_or_else(|| {
                cx.at(
                    t.span(),
                    format!("{key}.size"),
                    "must be bytes or a size like \"64M\"",
                )
            })?,
        };
        let mode = match mode {
            None => {
                if p.as_str() == "/tmp" {
                    0o1777
                } else {
                    0o755
                }
            }
            Some(IntOrString::Int(i)) => u32::try_from(*i)
                .ok()
                .filter(|&m| m <= 0o7777)
                .ok_or_else(|| {
                    cx.at(
                        t.span(),
                        format!("{key}.mode"),
                        "must be octal permission bits",
                    )
                })?,
            Some(IntOrString::Str(s)) => u32::from_str_radix(s.trim_start_matches("0o"), 8)
                .ok()
                .filter(|&m| m <= 0o7777)
                .ok_or_else(|| {
                    cx.at(
                        t.span(),
                        format!("{key}.mode"),
                        "must be octal permission bits",
                    )
                })?,
        };
        if out.iter().any(|o| o.path == p.as_str()) {
            return Err(cx.at(t.span(), key, format!("{p} is listed twice")));
        }
        out.push(stratos_wire::Tmpfs {
            path: p.to_string(),
            mode,
            size,
        });
    }
    Ok(out)
}

fn limits(cx: &Ctx, l: Option<&raw::RawLimits>) -> Result<stratos_wire::Limits, ProfileError> {
    let Some(l) = l else {
        return Ok(stratos_wire::Limits::default());
    };
    let cpu_max = match &l.cpus {
        None => None,
        Some(v) => {
            let cpus = match v.get_ref() {
                toml::Value::Float(f) => *f,
                toml::Value::Integer(i) => *i as f64,
                _ => -1.0,
            };
            if !(0.01..=1024.0).contains(&cpus) {
                return Err(cx.at(
                    v.span(),
                    "init.limits.cpus",
                    "must be a number of CPUs between 0.01 and 1024, e.g. 0.5",
                ));
            }
            Some(((cpus * 100_000.0).round() as u64, 100_000))
        }
    };
    Ok(stratos_wire::Limits {
        memory_max: l
            .memory_max
            .as_ref()
            .map(|v| bytes_value(cx, v, "init.limits.memory-max"))
            .transpose()?,
        memory_high: l
            .memory_high
            .as_ref()
            .map(|v| bytes_value(cx, v, "init.limits.memory-high"))
            .transpose()?,
        cpu_max,
        pids_max: l
            .pids_max
            .as_ref()
            .map(|v| {
                u64::try_from(*v.get_ref())
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| cx.at(v.span(), "init.limits.pids-max", "must be at least 1"))
            })
            .transpose()?,
    })
}

fn flatten_sysctl(
    cx: &Ctx,
    table: &toml::Table,
    prefix: &str,
    out: &mut BTreeMap<String, String>,
) -> Result<(), ProfileError> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let ok = !key.is_empty()
            && key.split(['.', '/']).all(|seg| {
                !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !ok {
            return Err(cx.near(
                k,
                format!("sysctl.{key}"),
                "not a sysctl key: use dotted names like vm.swappiness",
            ));
        }
        let value = match v {
            toml::Value::Table(t) => {
                flatten_sysctl(cx, t, &key, out)?;
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => u8::from(*b).to_string(),
            _ => {
                return Err(cx.near(
                    k,
                    format!("sysctl.{key}"),
                    "value must be a string, an integer or a boolean",
                ));
            }
        };
        if value.contains(['\n', '\0']) {
            return Err(cx.near(k, format!("sysctl.{key}"), "value must be one line"));
        }
        let canonical = key.replace('/', ".");
        if out.insert(canonical.clone(), value).is_some() {
            return Err(cx.near(
                k,
                format!("sysctl.{key}"),
                format!("{canonical} is set twice"),
            ));
        }
    }
    Ok(())
}

/// `[observe]`: `syscalls = true` counts the runtime's system calls, `latency = true` also
/// times them. Nothing on: `None`.
pub(super) fn validate_observe(
    cx: &Ctx,
    o: raw::RawObserve,
) -> Result<Option<stratos_wire::Observe>, ProfileError> {
    let syscalls = o.syscalls.as_ref().is_some_and(|s| *s.get_ref());
    let latency = o.latency.as_ref().is_some_and(|l| *l.get_ref());
    if let (false, Some(l)) = (syscalls, &o.latency) {
        if latency {
            return Err(cx.at(
                l.span(),
                "observe.latency",
                "times system calls, which needs them counted: add syscalls = true to [observe]",
            ));
        }
    }
    Ok(syscalls.then_some(stratos_wire::Observe { syscalls, latency }))
}

/// `[zram]`.
pub(super) fn validate_zram(cx: &Ctx, z: raw::RawZram) -> Result<Zram, ProfileError> {
    let size = match z.size.get_ref() {
        IntOrString::Int(i) => u64::try_from(*i).ok().filter(|&b| b >= 4096).map(ZramSize::Bytes),
        IntOrString::Str(s) => parse_size(s),
    }
    .ok_or_else(|| cx.at(z.size.span(), "zram.size", "must be bytes (at least 4096), a size like \"512M\" or \"1G\", or a percentage of RAM like \"50%\" (1-400)"))?;
    let algorithm = match z.algorithm {
        Some(a) => {
            if !ZRAM_ALGORITHMS.contains(&a.get_ref().as_str()) {
                return Err(cx.at(
                    a.span(),
                    "zram.algorithm",
                    format!(
                        "{:?} is not a zram algorithm; use one of {}",
                        a.get_ref(),
                        ZRAM_ALGORITHMS.join(", ")
                    ),
                ));
            }
            a.into_inner()
        }
        None => "lzo-rle".to_owned(),
    };
    let priority = match z.priority {
        Some(p) => i32::try_from(*p.get_ref())
            .ok()
            .filter(|v| (-1..=32767).contains(v))
            .ok_or_else(|| cx.at(p.span(), "zram.priority", "must be between -1 and 32767"))?,
        None => 100,
    };
    Ok(Zram {
        size,
        algorithm,
        priority,
        required: z.required.unwrap_or(false),
    })
}

/// `[network]`.
pub(super) fn validate_network(cx: &Ctx, n: raw::RawNetwork) -> Result<Network, ProfileError> {
    let interface = match n.interface {
        Some(i) => {
            let s = i.get_ref();
            if s.is_empty() || s.len() > 15 || s.contains(['/', ' ', '\0']) {
                return Err(cx.at(
                    i.span(),
                    "network.interface",
                    format!("{s:?} is not an interface name"),
                ));
            }
            i.into_inner()
        }
        None => "eth0".to_owned(),
    };
    let bad_addr = || {
        cx.at(
            n.address.span(),
            "network.address",
            "must be an IPv4 address with a prefix length, e.g. \"10.0.2.15/24\"",
        )
    };
    let (addr, prefix) = n.address.get_ref().split_once('/').ok_or_else(bad_addr)?;
    let address: Ipv4Addr = addr.parse().map_err(|_| bad_addr())?;
    let prefix_len: u8 = prefix
        .parse()
        .ok()
        .filter(|&p| p <= 32)
        .ok_or_else(bad_addr)?;
    let gateway = n
        .gateway
        .map(|g| {
            g.get_ref().parse::<Ipv4Addr>().map_err(|_| {
                cx.at(
                    g.span(),
                    "network.gateway",
                    "must be an IPv4 address, e.g. \"10.0.2.2\"",
                )
            })
        })
        .transpose()?;
    Ok(Network {
        interface,
        address,
        prefix_len,
        gateway,
    })
}

/// `[sysctl]`: nested tables flattened to dotted keys.
pub(super) fn validate_sysctl(
    cx: &Ctx,
    table: &toml::Table,
) -> Result<BTreeMap<String, String>, ProfileError> {
    let mut sysctl = BTreeMap::new();
    flatten_sysctl(cx, table, "", &mut sysctl)?;
    Ok(sysctl)
}
