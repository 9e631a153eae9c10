//! The sandbox a build runs the image's own programs in (today: its Python interpreter, which
//! compiles the bytecode). What comes from the image is as untrusted as the function, so it
//! never runs with the build user's rights: bubblewrap (`bwrap`, Debian's `bubblewrap`) starts
//! it in new user, mount, network, PID, IPC, UTS and cgroup namespaces, as `nobody` (65534)
//! with no capabilities and no way to make further user namespaces, in a new session (no
//! controlling terminal to inject input into), killed when the build dies. Its file system is
//! an empty read-only root with a private `/dev` and the one host directory it works in (plus,
//! read-only, the host programs the caller names: the user-mode emulator that runs another
//! architecture's interpreter): it sees nothing else of the host — not `/etc`, not `$HOME`, not
//! a UNIX socket such as the Docker daemon's — and no network. Its environment holds only what
//! the caller sets.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The user and group the sandboxed program runs as (inside its user namespace; outside it is
/// the build user without any capability).
pub const UID: u32 = 65534;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{what} runs the image's own code, only ever in a sandbox, and bubblewrap (`bwrap`) is not installed: install it with `apt-get install bubblewrap` (or run `sudo ./ci/setup`)")]
    Missing { what: String },
}

/// The `bwrap` on `$PATH`.
pub fn bwrap(what: &str) -> Result<PathBuf, SandboxError> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())
        .ok_or_else(|| SandboxError::Missing { what: what.into() })
}

/// A command that runs `argv` with exactly `env` in the sandbox, where only `dir` (absolute, a
/// directory) is visible and writable, at its own path, and is the working directory; and each
/// of `tools` (absolute paths of host files, such as a static emulator) is visible read-only at
/// its own path.
pub fn command(
    bwrap: &Path,
    dir: &Path,
    tools: &[&Path],
    env: &[(&str, &OsStr)],
    argv: &[OsString],
) -> Command {
    command_in(bwrap, dir, dir, tools, env, argv)
}

/// [`command`], with the working directory `cwd` (inside `dir`).
pub fn command_in(
    bwrap: &Path,
    dir: &Path,
    cwd: &Path,
    tools: &[&Path],
    env: &[(&str, &OsStr)],
    argv: &[OsString],
) -> Command {
    command_at(bwrap, (dir, dir), &[], cwd, tools, env, argv)
}

/// [`command_in`], with the host directory `dir.0` seen in the sandbox at the absolute path
/// `dir.1` (`cwd` is a path in the sandbox): a build whose paths end up in what it makes sees
/// the same paths whichever scratch directory the host gave it. Each of `read_only` (paths
/// relative to the directory) is made read-only there: inputs the program must not change.
pub fn command_at(
    bwrap: &Path,
    dir: (&Path, &Path),
    read_only: &[&str],
    cwd: &Path,
    tools: &[&Path],
    env: &[(&str, &OsStr)],
    argv: &[OsString],
) -> Command {
    let (dir, mount) = dir;
    let mut c = Command::new(bwrap);
    c.env_clear()
        .args(["--unshare-all", "--unshare-user", "--disable-userns"])
        .args(["--die-with-parent", "--new-session", "--cap-drop", "ALL"])
        .arg("--uid")
        .arg(UID.to_string())
        .arg("--gid")
        .arg(UID.to_string())
        .args(["--dev", "/dev"]);
    for t in tools {
        c.arg("--ro-bind").arg(t).arg(t);
    }
    c.arg("--bind").arg(dir).arg(mount);
    for rel in read_only {
        c.arg("--ro-bind").arg(dir.join(rel)).arg(mount.join(rel));
    }
    c
        // bwrap's root is a fresh tmpfs; made read-only once the mount points exist.
        .args(["--remount-ro", "/"])
        .arg("--chdir")
        .arg(cwd)
        .arg("--clearenv");
    for (k, v) in env {
        c.arg("--setenv").arg(k).arg(v);
    }
    c.arg("--").args(argv).current_dir(dir);
    c
}

/// bwrap's own complaint, when it (rather than the program) failed: it prefixes its messages
/// with `bwrap: ` and exits 1 before it starts the program (namespaces refused by the host,
/// an option this bwrap is too old for).
pub fn setup_failure(stderr: &str) -> Option<&str> {
    stderr.lines().next().filter(|l| l.starts_with("bwrap: "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails with the install command when a prerequisite is missing.
    fn require(path: &str) {
        assert!(
            Path::new(path).is_file(),
            "{path} is missing: run `sudo ./ci/setup` (it installs bubblewrap and busybox-static)"
        );
    }

    #[test]
    fn a_sandboxed_program_sees_and_writes_only_its_directory() {
        require("/usr/bin/bwrap");
        require("/bin/busybox");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().canonicalize().unwrap();
        std::fs::copy("/bin/busybox", d.join("busybox")).unwrap();
        let sh = d.join("busybox").into_os_string();
        let script = r#"
            ./busybox id -u; ./busybox id -g
            ./busybox ls -a / | ./busybox tr '\n' ' '; echo
            ./busybox touch /escape 2>/dev/null && echo wrote-root
            ./busybox ls /etc/passwd 2>/dev/null && echo sees-etc
            ./busybox wget -q -T 2 -O - http://1.1.1.1/ 2>/dev/null && echo network
            ./busybox ip link 2>/dev/null | ./busybox grep -v 'lo:' | ./busybox grep -c '^[0-9]'
            echo "$SECRET$HOME" > written
            echo "env:$(./busybox env | ./busybox sort | ./busybox tr '\n' ' ')"
        "#;
        let out = command(
            &bwrap("the test").unwrap(),
            &d,
            &[],
            &[("KEEP", OsStr::new("1"))],
            &[sh, "sh".into(), "-c".into(), script.into()],
        )
        .env("SECRET", "leaked")
        .output()
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines[0], "65534", "{stdout}");
        assert_eq!(lines[1], "65534", "{stdout}");
        // The root holds only the mount points of /dev and the directory.
        let top = d.components().nth(1).unwrap().as_os_str().to_string_lossy();
        assert_eq!(lines[2].trim(), format!(". .. dev {top}"), "{stdout}");
        // No host file written or seen, no network, no interface but loopback.
        assert_eq!(lines[3], "0", "{stdout}");
        assert!(lines[4].starts_with("env:"), "{stdout}");
        // Only the environment given (busybox sh adds PWD and SHLVL of its own).
        assert!(
            lines[4].contains("KEEP=1") && !stdout.contains("leaked"),
            "{stdout}"
        );
        assert_eq!(std::fs::read_to_string(d.join("written")).unwrap(), "\n");
        assert!(!Path::new("/escape").exists());
    }

    #[test]
    fn a_tool_is_visible_read_only_and_nothing_else_of_the_host() {
        require("/usr/bin/bwrap");
        require("/bin/busybox");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().canonicalize().unwrap();
        let busybox = std::fs::canonicalize("/bin/busybox").unwrap();
        let script = r#"
            B="$0"
            "$B" ls "$("$B" dirname "$B")" | "$B" tr '\n' ' '; echo
            "$B" touch "$B" 2>/dev/null && echo wrote-tool
            echo "$B" > written
        "#;
        let out = command(
            &bwrap("the test").unwrap(),
            &d,
            &[&busybox],
            &[],
            &[
                busybox.clone().into_os_string(),
                "sh".into(),
                "-c".into(),
                script.into(),
                busybox.clone().into_os_string(),
            ],
        )
        .output()
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Its directory holds the tool alone; it cannot be written.
        let name = busybox.file_name().unwrap().to_string_lossy();
        assert_eq!(stdout.trim(), name, "{stdout}");
        assert_eq!(
            std::fs::read_to_string(d.join("written")).unwrap().trim(),
            busybox.to_str().unwrap()
        );
    }

    #[test]
    fn bwrap_failures_are_told_from_the_program_s() {
        assert_eq!(
            setup_failure("bwrap: No permissions to create new namespace\n"),
            Some("bwrap: No permissions to create new namespace")
        );
        assert_eq!(setup_failure("Traceback (most recent call last):\n"), None);
    }
}
