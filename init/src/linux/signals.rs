//! Signals: the set PID 1 handles (blocked, then taken one at a time), and sending them.

use std::io;

use crate::sys::{SIGLAMBDA, SIGMETRICS, SIGRESTORED};

fn handled_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before any other use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGCHLD,
            SIGRESTORED,
            SIGMETRICS,
            SIGLAMBDA,
        ] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks the handled signals (in the calling thread and the threads it starts).
pub fn block() -> io::Result<()> {
    let set = handled_signals();
    // SAFETY: `set` is an initialised sigset_t; a null old-set pointer is allowed.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Waits up to `timeout_ms` for a handled signal.
pub fn wait(timeout_ms: u64) -> Option<i32> {
    let set = handled_signals();
    let ts = libc::timespec {
        tv_sec: (timeout_ms / 1000) as libc::time_t,
        tv_nsec: ((timeout_ms % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: all pointers are to live locals; a null siginfo pointer is allowed.
    let r = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (r > 0).then_some(r)
}

/// Sends `signal` to process `pid`.
/// kill(2) of the process group `pgid` (a positive pid whose group it leads).
pub fn kill_group(pgid: u32, signal: i32) -> io::Result<()> {
    let pgid = i32::try_from(pgid)
        .ok()
        .filter(|&p| p > 1)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill(2) on one negative pid (a process group, never 0 or -1: every process);
    // it touches no memory of ours.
    if unsafe { libc::kill(-pgid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn kill(pid: u32, signal: i32) -> io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill(2) on one positive pid (real-time signals included, which rustix's
    // Signal does not name); it touches no memory of ours.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends `signal` to every process but PID 1.
pub fn kill_all(signal: i32) {
    // SAFETY: kill(2) with pid -1 signals every process we may signal except ourselves;
    // it touches no memory of ours.
    // Its only failure for PID 1 is ESRCH, nothing left to signal: the case all is well.
    unsafe {
        libc::kill(-1, signal);
    }
}
