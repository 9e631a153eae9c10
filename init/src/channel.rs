//! The real control channel and console relay (threads and files; the logic they run is in
//! [`crate::relay`] and, for the host's messages, in the handler given to [`open`]: both tested
//! on the host).
//!
//! One queue of control messages, filled by any thread of the init ([`send`]) and emptied by
//! the control thread into the port once it exists; one lock for the console, so a line of the
//! init's and a relayed line of the runtime's never mix.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use stratos_wire::{Control, CONTROL_PORT, LOG_PREFIX};

use crate::relay::{Bucket, Relay, RELAY_BURST, RELAY_RATE};

/// Held while a whole line is written to the console.
static CONSOLE: Mutex<()> = Mutex::new(());

/// Writes one line (a newline is added) to the console in one write, under the console lock.
pub fn console_line(line: &str) {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    let _held = lock(&CONSOLE);
    // If the console is gone there is nowhere to report that.
    let _ = io::stdout().lock().write_all(&buf);
}

/// A poisoned lock only means another thread panicked while holding it (and the panic hook
/// powers the machine off): the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Messages waiting for the port, and what became of the port.
struct Queue {
    lines: VecDeque<String>,
    bytes: usize,
    /// Messages dropped because the queue was full (reported as [`Control::Lost`]).
    lost: u64,
    /// A message is being written (taken off the queue, not yet on the wire).
    writing: bool,
    state: Port,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    /// Not found yet.
    Waiting,
    Open,
    /// Never found, or failed: messages are dropped.
    Gone,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    lines: VecDeque::new(),
    bytes: 0,
    lost: 0,
    writing: false,
    state: Port::Waiting,
});
static CHANGED: Condvar = Condvar::new();

/// What may wait for the port: a boot's messages are a few KiB, a reading with latency
/// histograms tens of KiB.
const MAX_QUEUED: usize = 4 << 20;

/// How long the control thread looks for the port quickly (it appears while the kernel
/// probes virtio, or when the init loads `virtio_console`), then slowly, for good.
const FAST_SEARCH: Duration = Duration::from_secs(60);

/// Queues one message for the host.
pub fn send(msg: &Control) {
    let line = msg.to_line();
    let mut q = lock(&QUEUE);
    if q.state == Port::Gone {
        return;
    }
    if q.bytes + line.len() > MAX_QUEUED {
        q.lost += 1;
        return;
    }
    q.bytes += line.len();
    q.lines.push_back(line);
    CHANGED.notify_all();
}

/// Waits until the queue is written, at most `timeout`; not at all without a port.
pub fn flush(timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut q = lock(&QUEUE);
    loop {
        let done = match q.state {
            Port::Gone => true,
            // No virtio console at all: no port will come.
            Port::Waiting if !has_virtio_console() => true,
            Port::Waiting | Port::Open => q.lines.is_empty() && !q.writing && q.lost == 0,
        };
        let now = Instant::now();
        if done || now >= deadline {
            return;
        }
        q = CHANGED
            .wait_timeout(q, (deadline - now).min(Duration::from_millis(50)))
            .map_or_else(|p| p.into_inner().0, |(g, _)| g);
    }
}

/// Waits until the port is held (or known not to come), at most `timeout`.
pub fn await_open(timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut q = lock(&QUEUE);
    while q.state == Port::Waiting && has_virtio_console() {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        q = CHANGED
            .wait_timeout(q, (deadline - now).min(Duration::from_millis(5)))
            .map_or_else(|p| p.into_inner().0, |(g, _)| g);
    }
}

/// Starts the control thread; each line from the host goes to `on_message`.
pub fn open(on_message: impl FnMut(&str) + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name("control".into())
        .spawn(move || run(on_message));
    if let Err(e) = spawned {
        console_line(&format!(
            "{LOG_PREFIX} warning: cannot start the control channel: {e}; the host will see no phases"
        ));
        lock(&QUEUE).state = Port::Gone;
    }
}

fn run(on_message: impl FnMut(&str) + Send + 'static) {
    let Some(path) = find_port() else {
        return give_up(&format!("no port named {CONTROL_PORT} appeared"));
    };
    // Read and write, close-on-exec (std opens so); the device node is root's, and the kernel
    // lets one process hold a port at a time: the runtime can neither open nor inherit it.
    let port = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) => return give_up(&format!("cannot open {}: {e}", path.display())),
    };
    match port.try_clone() {
        Ok(r) => listen(r, on_message),
        Err(e) => console_line(&format!(
            "{LOG_PREFIX} warning: cannot listen on the control channel ({e}): restores and metrics requests will not be seen"
        )),
    }
    lock(&QUEUE).state = Port::Open;
    CHANGED.notify_all();
    write_loop(port);
}

fn give_up(why: &str) {
    console_line(&format!(
        "{LOG_PREFIX} warning: the control channel failed: {why}; the host cannot follow this boot"
    ));
    let mut q = lock(&QUEUE);
    q.state = Port::Gone;
    q.lines.clear();
    q.bytes = 0;
    CHANGED.notify_all();
}

/// Writes queued messages in order, forever. A write blocks while no host is connected.
fn write_loop(mut port: std::fs::File) {
    loop {
        let (lost, line) = {
            let mut q = lock(&QUEUE);
            while q.lines.is_empty() && q.lost == 0 {
                q = CHANGED.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            let lost = std::mem::take(&mut q.lost);
            let line = q.lines.pop_front();
            if let Some(l) = &line {
                q.bytes -= l.len();
            }
            q.writing = true;
            (lost, line)
        };
        let mut out = String::new();
        if lost > 0 {
            out.push_str(&Control::Lost { count: lost }.to_line());
        }
        if let Some(l) = line {
            out.push_str(&l);
        }
        let written = port.write_all(out.as_bytes()).and_then(|()| port.flush());
        lock(&QUEUE).writing = false;
        CHANGED.notify_all();
        if let Err(e) = written {
            return give_up(&format!("writing: {e}"));
        }
    }
}

/// Reads the host's messages (restores, metrics requests) in the background.
fn listen(file: std::fs::File, mut on_message: impl FnMut(&str) + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name("control-in".into())
        .spawn(move || {
            let mut reader = io::BufReader::new(file);
            let mut line = Vec::new();
            loop {
                line.clear();
                // A message is ~100 bytes; a longer line is read in pieces, each malformed.
                match Read::take(&mut reader, 1024).read_until(b'\n', &mut line) {
                    // No host connected: a read ends at once. Wait for one.
                    Ok(0) => std::thread::sleep(Duration::from_millis(20)),
                    Ok(_) => on_message(String::from_utf8_lossy(&line).trim_end()),
                    Err(e) => {
                        console_line(&format!(
                            "{LOG_PREFIX} warning: reading the control channel failed: {e}; restores and metrics requests will not be seen"
                        ));
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        console_line(&format!(
            "{LOG_PREFIX} warning: cannot listen on the control channel: {e}"
        ));
    }
}

/// The control port's device node, once the host has announced it and devtmpfs made it.
fn find_port() -> Option<PathBuf> {
    let start = Instant::now();
    loop {
        if let Some(p) = port_node().filter(|p| p.exists()) {
            return Some(p);
        }
        let fast = start.elapsed() < FAST_SEARCH;
        if !fast && !has_virtio_console() && Path::new("/sys/bus/virtio").exists() {
            // Still no virtio console a minute in: none is coming.
            return None;
        }
        std::thread::sleep(Duration::from_millis(if fast { 5 } else { 500 }));
    }
}

fn port_node() -> Option<PathBuf> {
    let dir = std::fs::read_dir("/sys/class/virtio-ports").ok()?;
    for e in dir.flatten() {
        let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
        if name.trim() == CONTROL_PORT {
            return Some(Path::new("/dev").join(e.file_name()));
        }
    }
    None
}

/// Whether the VM has a virtio console device (virtio device id 3): the control port's bus.
pub fn has_virtio_console() -> bool {
    let Ok(dir) = std::fs::read_dir("/sys/bus/virtio/devices") else {
        return false;
    };
    dir.flatten().any(|e| {
        std::fs::read_to_string(e.path().join("device"))
            .map(|id| id.trim() == "0x0003")
            .unwrap_or(false)
    })
}

/// Relays what the runtime writes to `pipe` to the console until every writer has closed it;
/// `busy` is set while what was read is on its way to the console.
pub fn relay(pipe: std::fs::File, busy: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("relay".into())
        .spawn(move || relay_loop(pipe, &busy));
    if let Err(e) = spawned {
        console_line(&format!(
            "{LOG_PREFIX} warning: cannot start relaying the runtime's output ({e}): it will block once its pipe is full"
        ));
    }
}

fn relay_loop(mut pipe: std::fs::File, busy: &std::sync::atomic::AtomicBool) {
    use std::sync::atomic::Ordering;
    let now = || {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        (t.tv_sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec as u64)
    };
    let mut relay = Relay::default();
    let mut bucket = Bucket::new(RELAY_RATE, RELAY_BURST, now());
    let mut buf = vec![0u8; 16 << 10];
    let mut emit = |line: String| {
        let wait = bucket.take(line.len() as u64 + 1, now());
        if wait > 0 {
            std::thread::sleep(Duration::from_nanos(wait));
        }
        console_line(&line);
    };
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                busy.store(true, Ordering::Release);
                relay.feed(&buf[..n], &mut emit);
                busy.store(false, Ordering::Release);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                console_line(&format!(
                    "{LOG_PREFIX} warning: reading the runtime's output failed: {e}"
                ));
                break;
            }
        }
    }
    relay.finish(&mut emit);
}
