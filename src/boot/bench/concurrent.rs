//! N VMs at once: clones restored from one snapshot against VMs booted from the same image.
//! Each group is started together, every VM is called once, and once all have answered (or
//! failed) they are held up while the host memory of their QEMU processes is read: the sum of
//! their proportional set sizes (PSS), which splits a page shared by k processes k ways — the
//! honest measure of what clones sharing one RAM file cost the host.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{BenchError, BenchOptions};
use crate::boot::snapshot::Snapshot;
use crate::boot::vm::free_port;
use crate::boot::vm::hold::Hold;
use crate::boot::{BootImage, RunOptions};
use crate::boot_result::{Concurrent, Group};

/// `n` restores of `snapshot`, then `n` boots of `image`, each group at once.
pub fn measure(
    image: &BootImage,
    snapshot: &Arc<Snapshot>,
    n: usize,
    o: &BenchOptions,
) -> Result<Concurrent, BenchError> {
    let restored = group(image, Some(snapshot.clone()), n, o)?;
    if crate::boot::stop_requested() {
        return Err(BenchError::Interrupted { done: 0, of: n });
    }
    let booted = group(image, None, n, o)?;
    let pss_ratio =
        (restored.failures.is_empty() && booted.failures.is_empty() && booted.pss_kib_total > 0.0)
            .then(|| restored.pss_kib_total / booted.pss_kib_total);
    Ok(Concurrent {
        count: n,
        restored,
        booted,
        pss_ratio,
    })
}

/// Starts `n` VMs on their own threads, each called once; reads their memory while all run.
fn group(
    image: &BootImage,
    restore: Option<Arc<Snapshot>>,
    n: usize,
    o: &BenchOptions,
) -> Result<Group, BenchError> {
    let ports = distinct_ports(n)?;
    let hold = Arc::new(Hold::new(n));
    let threads: Vec<_> = ports
        .into_iter()
        .map(|host| {
            let opts = RunOptions {
                hold: Some(hold.clone()),
                ..o.run_options(host, 1, Duration::ZERO, restore.clone())
            };
            let image = image.clone();
            let hold = hold.clone();
            std::thread::spawn(move || {
                let r = crate::boot::run(&image, &opts);
                hold.ended();
                r
            })
        })
        .collect();
    // Each VM's timeout starts when it is spawned; they all are within moments of each other.
    let pids = hold.wait_all(Instant::now() + o.timeout + Duration::from_secs(5));
    let pss: Vec<Result<f64, BenchError>> = pids.iter().map(|&p| pss_kib(p)).collect();
    hold.release();
    let mut g = Group {
        answered: 0,
        pss_kib: Vec::new(),
        pss_kib_total: 0.0,
        first_response_ms: Vec::new(),
        failures: Vec::new(),
    };
    for t in threads {
        match t.join() {
            Ok(Ok(run)) => match (run.first_response, run.invocations.first()) {
                (Some(f), Some(i)) if (200..300).contains(&i.status) => {
                    g.answered += 1;
                    g.first_response_ms.push(f.as_secs_f64() * 1e3);
                }
                (_, Some(i)) => g
                    .failures
                    .push(format!("the function answered HTTP {}", i.status)),
                _ => g.failures.push(run.failure_reason()),
            },
            Ok(Err(e)) => g.failures.push(e.to_string()),
            Err(_) => g.failures.push("the boot's thread panicked".into()),
        }
    }
    for p in pss {
        let kib = p?;
        g.pss_kib.push(kib);
        g.pss_kib_total += kib;
    }
    Ok(g)
}

/// `n` different free ports (each found free, none handed out twice).
fn distinct_ports(n: usize) -> Result<Vec<u16>, BenchError> {
    let mut ports = Vec::with_capacity(n);
    while ports.len() < n {
        let p = free_port().map_err(crate::boot::BootError::Io)?;
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    Ok(ports)
}

/// A process's proportional set size in KiB, from `/proc/PID/smaps_rollup`.
pub fn pss_kib(pid: u32) -> Result<f64, BenchError> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = std::fs::read_to_string(&path).map_err(|source| BenchError::Read {
        path: path.clone().into(),
        source,
    })?;
    parse_pss(&text).ok_or_else(|| BenchError::Read {
        path: path.into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no Pss: line"),
    })
}

fn parse_pss(smaps_rollup: &str) -> Option<f64> {
    smaps_rollup.lines().find_map(|l| {
        let kb = l.strip_prefix("Pss:")?.trim().strip_suffix("kB")?.trim();
        kb.parse::<u64>().ok().map(|k| k as f64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pss_from_smaps_rollup() {
        let t = "55d4c000-7ffd [rollup]\nRss:              123456 kB\nPss:               65432 kB\nPss_Anon:          60000 kB\n";
        assert_eq!(parse_pss(t), Some(65432.0));
        assert_eq!(parse_pss("Rss: 1 kB\n"), None);
        // This process has one.
        assert!(pss_kib(std::process::id()).unwrap() > 0.0);
    }
}
