//! The kernel's random pool and the real-time clock: waiting for the pool at boot, and what a
//! restored clone needs (entropy of its own, a reseed, the time).

use std::io;

use rustix::fd::AsRawFd;

use crate::channel::console_line;

/// Whether the pool is initialised.
pub fn entropy_ready() -> bool {
    let mut b = [0u8; 1];
    // EAGAIN: not initialised yet. Any other failure (ENOSYS on an ancient kernel) says
    // nothing about the pool; report it as not ready so the warning names the problem.
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::NONBLOCK).is_ok()
}

/// Adds `bytes` to the pool, credited.
pub fn add_entropy(bytes: &[u8]) -> io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")?;
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut info = Vec::with_capacity(8 + bytes.len());
    info.extend_from_slice(&((bytes.len() * 8) as i32).to_ne_bytes());
    info.extend_from_slice(&(bytes.len() as i32).to_ne_bytes());
    info.extend_from_slice(bytes);
    // RNDADDENTROPY = _IOW('R', 0x03, int[2])
    const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
    // SAFETY: `info` is a valid rand_pool_info (two ints, then buf_size bytes) that lives
    // across the call; the fd is open.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), RNDADDENTROPY, info.as_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the CRNG reseed from the pool now.
pub fn reseed_crng() -> io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")?;
    // RNDRESEEDCRNG = _IO('R', 0x07)
    const RNDRESEEDCRNG: libc::c_ulong = 0x5207;
    // SAFETY: an argument-less ioctl on an open fd.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), RNDRESEEDCRNG, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets `CLOCK_REALTIME`.
pub fn set_realtime(unix_ns: u128) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: (unix_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (unix_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: a valid timespec for the duration of the call.
    let r = unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits in a thread for the pool, then calls `ready` there.
pub fn watch_entropy(ready: impl FnOnce() + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name("entropy".into())
        .spawn(move || {
            let mut b = [0u8; 1];
            // Blocks until the kernel's pool is initialised.
            while let Err(e) =
                rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty())
            {
                if e != rustix::io::Errno::INTR {
                    console_line(&format!(
                        "{} warning: cannot wait for the kernel's random pool: {e}; entropy_ready will not be reported",
                        stratos_wire::LOG_PREFIX
                    ));
                    return;
                }
            }
            ready();
        });
    if let Err(e) = spawned {
        console_line(&format!(
            "{} cannot watch for entropy: {e}",
            stratos_wire::LOG_PREFIX
        ));
    }
}
