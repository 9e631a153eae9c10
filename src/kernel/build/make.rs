//! Running `make`: in the fixed environment, logged, with a progress bar over the objects
//! compiled; the image it leaves.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use super::cache::KernelCache;
use super::error::{io, KernelBuildError};
use super::toolchain::build_env;
use super::work::{self, Work};
use crate::arch::Arch;
use crate::profile::{KernelFormat, KernelSourceSpec};
use crate::progress::Progress;
use crate::progress::Traced;

pub(super) fn make(src: &Path, obj: &Path, arch: Arch) -> Command {
    let mut c = Command::new("make");
    build_env(&mut c)
        .arg("-C")
        .arg(src)
        .arg(format!("O={}", obj.display()))
        .arg(format!("ARCH={}", arch.kernel_make_arch()));
    // Another architecture than the host's: Debian's GNU cross toolchain (its version is in
    // the cache key, `Toolchain::detect`).
    if let Some(prefix) = arch.cross_compile() {
        c.arg(format!("CROSS_COMPILE={prefix}"));
    }
    c
}

pub(super) fn run_logged(mut cmd: Command, what: &str, log: &Path) -> Result<(), KernelBuildError> {
    let out = cmd.traced().output().map_err(io(format!(
        "running make for {what} (install build tools with ci/setup)"
    )))?;
    let mut text = out.stdout.clone();
    text.extend_from_slice(&out.stderr);
    std::fs::write(log, &text).map_err(io(format!("writing {}", log.display())))?;
    if !out.status.success() {
        return Err(KernelBuildError::Command {
            what: what.to_owned(),
            status: out.status.to_string(),
            log: log.to_owned(),
            tail: tail(&String::from_utf8_lossy(&text), 40),
        });
    }
    Ok(())
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `make -jN bzImage|vmlinux` in `work`, with a progress bar over the objects compiled (the
/// count of the last build is the estimate), the whole output in `work/build.log`. On failure
/// the log is kept under `kernels/failed/`. Returns the objects compiled.
pub(super) fn run_make(
    spec: &KernelSourceSpec,
    source_dir: &Path,
    work: &Work,
    arch: Arch,
    kernels: &KernelCache,
    key: &str,
    progress: &Progress,
) -> Result<u64, KernelBuildError> {
    let log_path = work.dir.join("build.log");
    let log = work.log(&log_path)?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let target = make_target(spec.format, arch);
    let running = spawn_make(source_dir, work, arch, jobs, target)?;
    let estimate_path = kernels.objects_estimate();
    let mut bar = progress.bar(
        format!(
            "building the kernel (make -j{jobs} {target}, log: {})",
            log_path.display()
        ),
        read_estimate(&estimate_path),
    );
    let (status, compiled) = follow(running, log, &log_path, &mut bar)?;
    bar.finish();
    if !status.success() {
        // make failed by itself (not killed by a signal): do not resume from what it left.
        if status.code().is_some() {
            work::forget(&work.dir)?;
        }
        return Err(failed(&log_path, &kernels.failed(), key, target, status)?);
    }
    // A resumed build's count is not a whole build's.
    if compiled > 0 && !work.resumed {
        // Only the next progress bar's estimate: not worth failing a build over.
        if let Err(e) = std::fs::write(&estimate_path, compiled.to_string()) {
            progress.warn(format!("cannot write {}: {e}", estimate_path.display()));
        }
    }
    Ok(compiled)
}

/// What `make` is asked to build for a format: `vmlinux`, or the architecture's compressed
/// boot image (its file name is its target).
fn make_target(format: KernelFormat, arch: Arch) -> &'static str {
    match format {
        KernelFormat::Vmlinux => "vmlinux",
        KernelFormat::BzImage | KernelFormat::Image => {
            let image = arch.kernel_boot_image();
            image.rsplit('/').next().unwrap_or(image)
        }
    }
}

/// `make` running, and the thread collecting its standard error.
struct Running {
    child: std::process::Child,
    stderr: std::thread::JoinHandle<String>,
}

/// Starts `make -jN TARGET` with its output piped, the build directory and the source path
/// kept out of the binary, and the build's lock as its standard input (held until it and its
/// compilers are gone).
fn spawn_make(
    source_dir: &Path,
    work: &Work,
    arch: Arch,
    jobs: usize,
    target: &str,
) -> Result<Running, KernelBuildError> {
    let stdin = work.lock.for_child()?;
    let work = &work.dir;
    let mut c = make(source_dir, work, arch);
    let kcflags = format!(
        "-ffile-prefix-map={}=. -ffile-prefix-map={}=.",
        source_dir.display(),
        work.display()
    );
    c.arg(format!("-j{jobs}"))
        .arg(format!("KCFLAGS={kcflags}"))
        .arg(format!("KAFLAGS={kcflags}"))
        .arg(target);
    c.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c
        .traced()
        .spawn()
        .map_err(io("running make (install build tools with ci/setup)"))?;
    let stderr = child.stderr.take().expect("piped");
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            s.push_str(&l);
            s.push('\n');
        }
        s
    });
    Ok(Running { child, stderr })
}

/// The objects the last build compiled (the progress bar's length); 1400 before any build.
fn read_estimate(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1400)
}

/// Copies `make`'s output into the log line by line, counting the objects compiled on the
/// bar, then its standard error; waits for it. Returns its status and the count.
fn follow(
    mut running: Running,
    mut log: std::fs::File,
    log_path: &Path,
    bar: &mut crate::progress::Bar,
) -> Result<(std::process::ExitStatus, u64), KernelBuildError> {
    let mut compiled = 0u64;
    let log_err = io(format!("writing {}", log_path.display()));
    let mut log_result = Ok(());
    let stdout = running.child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if log_result.is_ok() {
            log_result = writeln!(log, "{line}");
        }
        let t = line.trim_start();
        if t.starts_with("CC ") || t.starts_with("AS ") {
            compiled += 1;
            bar.set(compiled);
        }
    }
    let status = running.child.wait().map_err(io("waiting for make"))?;
    let errs = running.stderr.join().unwrap_or_default();
    log_result
        .and_then(|()| log.write_all(errs.as_bytes()))
        .map_err(log_err)?;
    Ok((status, compiled))
}

/// A failed build: its log kept under `kernels/failed/` where the user can read it, and the
/// error citing its last lines.
fn failed(
    log_path: &Path,
    failed_dir: &Path,
    key: &str,
    target: &str,
    status: std::process::ExitStatus,
) -> Result<KernelBuildError, KernelBuildError> {
    let all =
        std::fs::read_to_string(log_path).map_err(io(format!("reading {}", log_path.display())))?;
    std::fs::create_dir_all(failed_dir)
        .map_err(io(format!("creating {}", failed_dir.display())))?;
    let kept = failed_dir.join(format!("{key}.log"));
    std::fs::copy(log_path, &kept).map_err(io(format!("keeping the log as {}", kept.display())))?;
    Ok(KernelBuildError::Command {
        what: format!("building the kernel (make {target})"),
        status: status.to_string(),
        log: kept,
        tail: tail(&all, 40),
    })
}

/// The image `make` produced (`vmlinux` stripped of symbols: the VMM needs only the loadable
/// segments and the PVH note).
pub(super) fn built_image(
    spec: &KernelSourceSpec,
    work: &Path,
    arch: Arch,
) -> Result<Vec<u8>, KernelBuildError> {
    let built = if spec.format == KernelFormat::Vmlinux {
        // Beside make's vmlinux, never over it: a resumed make must find its own file.
        let stripped = work.join("vmlinux.stripped");
        let mut c = Command::new(format!("{}objcopy", arch.cross_compile().unwrap_or("")));
        c.arg("--strip-all")
            .arg(work.join("vmlinux"))
            .arg(&stripped);
        run_logged(c, "stripping vmlinux (objcopy)", &work.join("strip.log"))?;
        stripped
    } else {
        work.join(arch.kernel_boot_image())
    };
    std::fs::read(&built).map_err(io(format!("reading {}", built.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn make_sees_none_of_the_callers_toolchain_variables() {
        let mut c = Command::new("env");
        // Set on the command itself: env_clear must drop these too.
        for k in [
            "LLVM",
            "CROSS_COMPILE",
            "LOCALVERSION",
            "KCPPFLAGS",
            "CC",
            "KCFLAGS",
        ] {
            c.env(k, "poison");
        }
        let out = build_env(&mut c).output().unwrap();
        let env = String::from_utf8(out.stdout).unwrap();
        assert!(!env.contains("poison"), "{env}");
        assert!(env.contains("KBUILD_BUILD_USER=stratos"), "{env}");
        assert!(env.contains("LC_ALL=C"), "{env}");
        // make itself gets the same environment.
        let m = make(Path::new("/src"), Path::new("/obj"), Arch::X86_64);
        let names: Vec<_> = m
            .get_envs()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert!(
            names.contains(&"KBUILD_BUILD_TIMESTAMP".to_owned()),
            "{names:?}"
        );
    }

    #[test]
    fn x86_64_builds_what_it_always_built() {
        let x86 = Arch::X86_64;
        assert_eq!(make_target(KernelFormat::BzImage, x86), "bzImage");
        assert_eq!(make_target(KernelFormat::Vmlinux, x86), "vmlinux");
        let m = make(Path::new("/src"), Path::new("/obj"), x86);
        let args: Vec<_> = m.get_args().map(|a| a.to_string_lossy()).collect();
        assert_eq!(args, ["-C", "/src", "O=/obj", "ARCH=x86_64"]);
    }
}
