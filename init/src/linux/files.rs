//! Files and filesystems: directories, mounts, swap, kernel modules from their files, and
//! warming the page cache.

use std::ffi::CString;
use std::io::{self, Write};

use rustix::mount::MountFlags as RMountFlags;

use crate::channel::console_line;
use crate::sys::Mount;

/// Creates `path` and its missing parents.
pub fn mkdir_p(path: &str, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
}

/// mount(2) of `m`.
pub fn mount(m: &Mount) -> io::Result<()> {
    let mut flags = RMountFlags::empty();
    if m.flags.nosuid {
        flags |= RMountFlags::NOSUID;
    }
    if m.flags.nodev {
        flags |= RMountFlags::NODEV;
    }
    if m.flags.noexec {
        flags |= RMountFlags::NOEXEC;
    }
    let data =
        CString::new(m.data.as_str()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    rustix::mount::mount(
        m.source.as_str(),
        m.target.as_str(),
        m.fstype.as_str(),
        flags,
        data.as_c_str(),
    )
    .map_err(io::Error::from)
}

/// Unmounts `target`.
pub fn umount(target: &str) -> io::Result<()> {
    rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty()).map_err(io::Error::from)
}

/// Remounts `/` read-only.
pub fn remount_root_ro() -> io::Result<()> {
    rustix::mount::mount_remount("/", RMountFlags::RDONLY, c"").map_err(io::Error::from)
}

/// Writes `data` at the start of an existing file.
pub fn write_file(path: &str, data: &[u8]) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(data)
}

/// Swaps on `device` at `priority` (negative: the kernel chooses).
pub fn swapon(device: &str, priority: i32) -> io::Result<()> {
    let dev = CString::new(device).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // <sys/swap.h>: SWAP_FLAG_PREFER 0x8000, priority in the low 15 bits.
    let flags = if priority < 0 {
        0
    } else {
        0x8000 | (priority & 0x7fff)
    };
    // SAFETY: `dev` is a NUL-terminated path that outlives the call; swapon(2) reads it only.
    let r = unsafe { libc::swapon(dev.as_ptr(), flags) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `finit_module`; a module already loaded is not an error.
pub fn load_module(path: &str, params: &str) -> io::Result<()> {
    let f = std::fs::File::open(path)?;
    let params = CString::new(params).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // MODULE_INIT_COMPRESSED_FILE lets the kernel decompress .ko.xz/.ko.zst itself.
    let flags = if path.ends_with(".ko") { 0 } else { 4 };
    match rustix::system::finit_module(&f, params.as_c_str(), flags) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Starts warming the page cache for `paths` in a thread of the lowest priority.
pub fn start_preload(paths: &[String]) {
    let paths = paths.to_vec();
    // The thread inherits the blocked signal mask, so signals keep going to the main loop.
    let spawned = std::thread::Builder::new()
        .name("preload".into())
        .spawn(move || {
            // Lowest priority (this thread only): warming must never delay the runtime.
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: plain syscall on the calling thread with a valid parameter struct.
            let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
            if r < 0 {
                let e = io::Error::last_os_error();
                console_line(&format!(
                    "stratos-init: warning: preload: cannot lower its priority ({e}); warming at normal priority"
                ));
            }
            for p in &paths {
                match std::fs::File::open(p) {
                    Ok(f) => {
                        // Only a hint: if the kernel declines it, the pages are read when
                        // first used instead, as without preloading; nothing depends on it.
                        let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::WillNeed);
                    }
                    Err(e) => console_line(&format!("stratos-init: warning: preload {p}: {e}")),
                }
            }
        });
    if let Err(e) = spawned {
        console_line(&format!(
            "stratos-init: warning: cannot start the preload thread: {e}"
        ));
    }
}
