//! The runtime's process: started (its output relayed or discarded, a readiness pipe, its
//! cgroup and seccomp filter set up between fork and exec) and reaped.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustix::fd::{AsRawFd, OwnedFd};
use rustix::process::{WaitOptions, WaitStatus};

use crate::sys::{ExitKind, Spawn, Waited};

/// What the init keeps of the runtime it started.
#[derive(Default)]
pub struct Runtime {
    /// Read end of the runtime's readiness pipe (non-blocking).
    notify_read: Option<OwnedFd>,
    /// The runtime's output pipe (a second descriptor of its read end) and whether the relay
    /// is busy with what it read: how [`Runtime::settle_relay`] knows the console caught up.
    relay: Option<(OwnedFd, Arc<AtomicBool>)>,
}

impl Runtime {
    /// Starts the runtime in a new session (see [`crate::sys::Sys::spawn`]); returns its pid.
    pub fn spawn(&mut self, s: &Spawn) -> io::Result<u32> {
        let mut cmd = command(s)?;
        // The runtime never holds the console: its stdin is /dev/null, and its output goes
        // through a pipe the init relays (prefixed, escaped, paced) or to /dev/null.
        cmd.stdin(std::process::Stdio::null());
        let relay_read = output(&mut cmd, s.null_stdio)?;
        // Everything the child does between fork and exec is prepared here, so the closure
        // only makes system calls and allocates nothing.
        // Both descriptors the child uses are moved above the notify descriptor (3): the
        // child's dup2 onto 3 must not replace the one it writes to its cgroup afterwards, and
        // a pipe end that already is 3 would keep its close-on-exec flag through dup2.
        let procs = s.cgroup_procs.map(open_cgroup_procs).transpose()?;
        let notify_write = if s.notify {
            Some(self.notify_pipe(&mut cmd)?)
        } else {
            None
        };
        let filter: Option<Vec<libc::sock_filter>> = s.seccomp.map(decode_filter).transpose()?;
        let seccomp_flags: libc::c_ulong = if s.seccomp_log { 2 } else { 0 }; // SECCOMP_FILTER_FLAG_LOG
        let procs_fd = procs.as_ref().map(|f| f.as_raw_fd());
        let notify_fd = notify_write.as_ref().map(|f| f.as_raw_fd());
        before_exec(&mut cmd, procs_fd, notify_fd, filter, seccomp_flags);
        let child = cmd.spawn()?;
        // The Command held the pipe's write ends: they are closed with it, so the relay sees
        // the end of the output once the runtime (and whatever inherited them) is gone.
        drop(cmd);
        if let Some(r) = relay_read {
            self.relay_output(r);
        }
        drop(notify_write);
        drop(procs);
        // The child is reaped by `wait` (waitpid(-1)); dropping the handle does not wait.
        Ok(child.id())
    }

    /// A readiness pipe: the init keeps the read end, the runtime gets the write end as
    /// [`stratos_wire::NOTIFY_FD`] (named in its environment), returned here.
    fn notify_pipe(&mut self, cmd: &mut Command) -> io::Result<OwnedFd> {
        let (r, w) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )?;
        self.notify_read = Some(r);
        cmd.env("STRATOS_NOTIFY_FD", stratos_wire::NOTIFY_FD.to_string());
        above_notify_fd(w)
    }

    /// Relays the runtime's output from the read end `r` of its pipe.
    fn relay_output(&mut self, r: OwnedFd) {
        let busy = Arc::new(AtomicBool::new(false));
        // Only to ask how much is pending: a failure just means no settling.
        self.relay = rustix::io::fcntl_dupfd_cloexec(&r, 0)
            .ok()
            .map(|d| (d, busy.clone()));
        crate::channel::relay(std::fs::File::from(r), busy);
    }

    /// Whether the runtime has written to its readiness pipe.
    pub fn notified(&self) -> bool {
        let Some(fd) = &self.notify_read else {
            return false;
        };
        let mut buf = [0u8; 64];
        // EAGAIN: nothing written yet. End of file (the runtime closed the pipe without writing)
        // or an error: it cannot become ready this way; the readiness timeout warning says so.
        matches!(rustix::io::read(fd, &mut buf), Ok(n) if n > 0)
    }

    /// Waits (at most ~100 ms) until what the runtime wrote so far is on the console.
    pub fn settle_relay(&self) {
        let Some((fd, busy)) = &self.relay else {
            return;
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(100);
        while std::time::Instant::now() < deadline {
            let pending = rustix::io::ioctl_fionread(fd).unwrap_or(0);
            if pending == 0 && !busy.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// The runtime's program and arguments, with only its own environment, in its directory, as
/// its user and group.
fn command(s: &Spawn) -> io::Result<Command> {
    let (prog, args) = s
        .argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty argv"))?;
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .env_clear()
        .envs(s.env.iter().map(|(k, v)| (k, v)))
        .current_dir(s.cwd)
        .uid(s.uid)
        .gid(s.gid);
    Ok(cmd)
}

/// The runtime's stdout and stderr: /dev/null, or the write end of a pipe whose read end is
/// returned, for the relay.
fn output(cmd: &mut Command, null_stdio: bool) -> io::Result<Option<OwnedFd>> {
    if null_stdio {
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        return Ok(None);
    }
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let w2 = rustix::io::fcntl_dupfd_cloexec(&w, 0)?;
    cmd.stdout(std::process::Stdio::from(w))
        .stderr(std::process::Stdio::from(w2));
    Ok(Some(r))
}

/// `cgroup.procs` of the runtime's cgroup, open for the child to write itself into.
fn open_cgroup_procs(path: &str) -> io::Result<OwnedFd> {
    above_notify_fd(std::fs::OpenOptions::new().write(true).open(path)?)
}

/// What the child does between fork and exec: a new session with no signal blocked, no stray
/// descriptor, the readiness pipe as fd 3, `no_new_privs`, into its cgroup, then the seccomp
/// filter.
fn before_exec(
    cmd: &mut Command,
    procs_fd: Option<i32>,
    notify_fd: Option<i32>,
    filter: Option<Vec<libc::sock_filter>>,
    seccomp_flags: libc::c_ulong,
) {
    // SAFETY: the closure runs in the forked child before exec. It only makes
    // async-signal-safe system calls on the values given here, prepared before the fork,
    // and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // PID 1 blocks the signals it handles; the runtime starts with none blocked.
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            // Cannot fail: SIG_SETMASK with a valid set.
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // No stray descriptors of the init survive exec. Belt and braces: every descriptor
            // the init opens is close-on-exec already (std and rustix open them so), so a
            // kernel without close_range (before 5.11) loses nothing; not a reason to fail.
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            if let Some(fd) = notify_fd {
                if libc::dup2(fd, stratos_wire::NOTIFY_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            // Into the runtime's cgroup as late as it can be (the filter below may not
            // allow the write): what `[observe]` counts of the child before its exec is
            // only the seccomp() call that installs the filter.
            if let Some(fd) = procs_fd {
                // Writing "0" moves the writing process into the cgroup.
                if libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(f) = &filter {
                let prog = libc::sock_fprog {
                    len: f.len() as libc::c_ushort,
                    filter: f.as_ptr() as *mut libc::sock_filter,
                };
                let r = libc::syscall(
                    libc::SYS_seccomp,
                    1 as libc::c_ulong, // SECCOMP_SET_MODE_FILTER
                    seccomp_flags,
                    &prog as *const libc::sock_fprog,
                );
                if r < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Reaps one child: waits for one when `block`, else takes one that already ended.
pub fn wait(block: bool) -> io::Result<Waited> {
    let opts = if block {
        WaitOptions::empty()
    } else {
        WaitOptions::NOHANG
    };
    match rustix::process::wait(opts) {
        Ok(Some((pid, status))) => Ok(Waited::Reaped(
            pid.as_raw_nonzero().get() as u32,
            exit_kind(status),
        )),
        Ok(None) => Ok(Waited::NoneReady),
        Err(rustix::io::Errno::CHILD) => Ok(Waited::NoChildren),
        Err(rustix::io::Errno::INTR) => Ok(Waited::NoneReady),
        Err(e) => Err(e.into()),
    }
}

fn exit_kind(status: WaitStatus) -> ExitKind {
    if let Some(sig) = status.terminating_signal() {
        ExitKind::Signaled(sig)
    } else {
        // Without WUNTRACED/WCONTINUED, wait reports only exits and deaths by signal: a status
        // that is neither (the 0) cannot come back.
        ExitKind::Exited(status.exit_status().unwrap_or(0))
    }
}

/// Decodes a BPF program: 8-byte records of (u16 code, u8 jt, u8 jf, u32 k), little endian.
fn decode_filter(bytes: &[u8]) -> io::Result<Vec<libc::sock_filter>> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(8) || bytes.len() / 8 > 4096 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "malformed seccomp filter (not 1..4096 8-byte instructions)",
        ));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// The same open file on a descriptor above [`stratos_wire::NOTIFY_FD`] (close-on-exec).
fn above_notify_fd(fd: impl Into<OwnedFd>) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(
        fd.into(),
        stratos_wire::NOTIFY_FD + 7,
    )?)
}
