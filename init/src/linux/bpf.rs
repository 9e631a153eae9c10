//! eBPF through bpf(2): array maps (the counter maps mapped into memory, read without a system
//! call), raw-tracepoint programs (loaded again with the verifier's log when refused) and their
//! links.

use std::ffi::CString;
use std::io;

use rustix::fd::{AsRawFd, OwnedFd};

use crate::sys::{BpfLoadError, BpfMap};

// bpf(2) commands and constants (include/uapi/linux/bpf.h).
const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_int = 17;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
const BPF_F_MMAPABLE: u32 = 1 << 10;
/// The verifier log asked for when a program is refused.
const VERIFIER_LOG_BYTES: usize = 256 * 1024;

/// `union bpf_attr`, as bytes: each command's fields are written at their offsets.
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Attr([0; 128])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    /// A `char[16]` object name (truncated, NUL-terminated).
    fn name(&mut self, off: usize, name: &str) -> &mut Self {
        let n = name.len().min(15);
        self.0[off..off + n].copy_from_slice(&name.as_bytes()[..n]);
        self
    }
}

/// bpf(2); returns the new descriptor.
fn bpf(cmd: libc::c_int, attr: &mut Attr) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a live, writable 128-byte buffer laid out as the command's part of
    // `union bpf_attr` (the kernel checks the size and that unknown bytes are zero); any
    // pointers written into it point to buffers the caller keeps alive over this call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr() as *mut libc::c_void,
            attr.0.len() as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a successful bpf() of these commands returns a new descriptor we own.
    Ok(unsafe { <OwnedFd as rustix::fd::FromRawFd>::from_raw_fd(r as i32) })
}

/// A read-only shared mapping of a `BPF_F_MMAPABLE` array map's values.
struct Mapped {
    ptr: *mut u64,
    entries: usize,
    len: usize,
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned; nothing refers to the mapping
        // after this.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// The eBPF objects the init made.
#[derive(Default)]
pub struct Bpf {
    /// eBPF maps, programs and tracepoint links: open for the life of PID 1 (closing a
    /// link's descriptor would detach its program).
    fds: Vec<OwnedFd>,
    /// Counter maps mapped into memory, by descriptor.
    counters: Vec<(i32, Mapped)>,
}

impl Bpf {
    /// Creates a map (see [`crate::sys::Sys::bpf_map_create`]); a counter map is mapped into
    /// memory too.
    pub fn map_create(&mut self, name: &str, map: BpfMap) -> io::Result<i32> {
        let (kind, value_size, entries, flags) = match map {
            BpfMap::Counters { entries } => (BPF_MAP_TYPE_ARRAY, 8, entries, BPF_F_MMAPABLE),
            BpfMap::Slots {
                value_size,
                entries,
            } => (BPF_MAP_TYPE_ARRAY, value_size, entries, 0),
        };
        let mut a = Attr::new();
        // map_type, key_size, value_size, max_entries, map_flags; map_name at 28.
        a.u32(0, kind)
            .u32(4, 4)
            .u32(8, value_size)
            .u32(12, entries)
            .u32(16, flags)
            .name(28, name);
        let fd = bpf(BPF_MAP_CREATE, &mut a)?;
        let raw = fd.as_raw_fd();
        if let BpfMap::Counters { entries } = map {
            self.counters.push((raw, map_values(raw, entries)?));
        }
        self.fds.push(fd);
        Ok(raw)
    }

    /// Loads a raw-tracepoint program (see [`crate::sys::Sys::bpf_prog_load`]).
    pub fn prog_load(&mut self, name: &str, insns: &[u8]) -> Result<i32, BpfLoadError> {
        let license = b"GPL\0";
        let load = |log: Option<&mut Vec<u8>>| {
            let mut a = Attr::new();
            // prog_type, insn_cnt, insns, license; log_level, log_size, log_buf; prog_name at 48.
            a.u32(0, BPF_PROG_TYPE_RAW_TRACEPOINT)
                .u32(4, (insns.len() / 8) as u32)
                .u64(8, insns.as_ptr() as u64)
                .u64(16, license.as_ptr() as u64)
                .name(48, name);
            if let Some(buf) = log {
                a.u32(24, 1)
                    .u32(28, buf.len() as u32)
                    .u64(32, buf.as_mut_ptr() as u64);
            }
            bpf(BPF_PROG_LOAD, &mut a)
        };
        // Without a log first (the verifier is faster without one); a refusal is loaded again
        // with the log, to say why.
        match load(None) {
            Ok(fd) => {
                let raw = fd.as_raw_fd();
                self.fds.push(fd);
                Ok(raw)
            }
            Err(source) => {
                let mut buf = vec![0u8; VERIFIER_LOG_BYTES];
                let _ = load(Some(&mut buf));
                let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
                Err(BpfLoadError {
                    source,
                    log: String::from_utf8_lossy(&buf[..end]).into_owned(),
                })
            }
        }
    }

    /// Attaches a program to a raw tracepoint, for good.
    pub fn attach_raw_tracepoint(&mut self, tracepoint: &str, prog: i32) -> io::Result<()> {
        let name = CString::new(tracepoint).map_err(|_| io::ErrorKind::InvalidInput)?;
        let mut a = Attr::new();
        // raw_tracepoint.name, raw_tracepoint.prog_fd.
        a.u64(0, name.as_ptr() as u64).u32(8, prog as u32);
        let link = bpf(BPF_RAW_TRACEPOINT_OPEN, &mut a)?;
        self.fds.push(link);
        Ok(())
    }

    /// Reads every counter of a counter map into `out` (cleared first).
    pub fn counters(&self, map: i32, out: &mut Vec<u64>) -> io::Result<()> {
        let m = self
            .counters
            .iter()
            .find(|(fd, _)| *fd == map)
            .map(|(_, m)| m)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        out.clear();
        out.extend((0..m.entries).map(|i| {
            // SAFETY: `i < entries`: inside the live, writable, page-aligned mapping, so the
            // pointer is valid and 8-byte aligned for as long as `m` lives; the programs
            // update the counters only with atomic adds, so reading them as atomics is not a
            // data race.
            let counter = unsafe { std::sync::atomic::AtomicU64::from_ptr(m.ptr.add(i)) };
            counter.load(std::sync::atomic::Ordering::Relaxed)
        }));
        Ok(())
    }
}

/// Maps a counter map's `entries` values into memory.
fn map_values(fd: i32, entries: u32) -> io::Result<Mapped> {
    let len = (entries as usize * 8).next_multiple_of(4096);
    // SAFETY: a fresh shared mapping of the map's values (offset 0 of an mmapable
    // array is its first value); the kernel keeps the pages for as long as the
    // mapping exists, which `Mapped` ends with munmap. Writable so the counters can be
    // read as atomics (the programs add to them concurrently); the init never writes.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(Mapped {
        ptr: p.cast::<u64>(),
        entries: entries as usize,
        len,
    })
}
