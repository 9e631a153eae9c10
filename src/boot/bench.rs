//! `stratos boot-test`: boot an image N times (A/B interleaved against a baseline), collect
//! phase markers, cold and warm invocations and memory, summarise, and gate on objectives.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::console::Event;
use super::qemu::{free_port, Accel, Forward};
use super::stats::{self, Summary};
use super::{BootImage, BootRun, Invoke, RunOptions};

/// The JSON result's schema identifier.
pub const SCHEMA: &str = "stratos-boot-test/1";

/// Metrics in the order they are shown, with their unit.
pub const METRICS: &[(&str, &str)] = &[
    ("init_start", "ms"),
    ("entropy_ready", "ms"),
    ("entropy_wait", "ms"),
    ("mounts_done", "ms"),
    ("zram_ready", "ms"),
    ("preload_started", "ms"),
    ("runtime_exec", "ms"),
    ("runtime_ready", "ms"),
    ("init_to_exec", "ms"),
    ("ready_seen", "ms"),
    ("first_response", "ms"),
    ("cold_start", "ms"),
    ("warm", "ms"),
    ("memory_peak", "KiB"),
    ("mem_available", "KiB"),
];

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub runs: usize,
    pub invoke_path: String,
    pub guest_port: u16,
    pub invocations: usize,
    pub accel: Accel,
    pub memory_mib: u32,
    pub timeout: Duration,
}

/// One boot's numbers (or why it failed), and its console.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub index: usize,
    pub image: String,
    pub ok: bool,
    pub failure: Option<String>,
    pub metrics: BTreeMap<String, f64>,
    #[serde(skip)]
    pub log: String,
}

/// Reduces a boot to metrics (milliseconds; memory in KiB). Guest phases are CLOCK_BOOTTIME
/// since the kernel started; host times count from spawning QEMU.
pub fn metrics_of(run: &BootRun) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    if let Ok(phases) = &run.phases {
        for p in phases {
            m.insert(p.name.clone(), p.ns as f64 / 1e6);
        }
        let get = |n: &str| {
            phases
                .iter()
                .find(|p| p.name == n)
                .map(|p| p.ns as f64 / 1e6)
        };
        if let (Some(a), Some(b)) = (get("init_start"), get("runtime_exec")) {
            m.insert("init_to_exec".into(), b - a);
        }
        // How long the init saw the random pool not ready (0 when it was ready before it ran).
        if let (Some(a), Some(e)) = (get("init_start"), get("entropy_ready")) {
            m.insert("entropy_wait".into(), (e - a).max(0.0));
        }
    }
    if let Some((t, _)) = run.lines.iter().find(|(_, l)| {
        matches!(super::console::parse_line(l), Some(Event::Phase { ref name, .. }) if name == "runtime_ready")
    }) {
        m.insert("ready_seen".into(), t.as_secs_f64() * 1e3);
    }
    if let Some(f) = run.first_response {
        m.insert("first_response".into(), f.as_secs_f64() * 1e3);
    }
    if let Some(first) = run.invocations.first() {
        m.insert("cold_start".into(), first.latency_ms);
    }
    let warm: Vec<f64> = run
        .invocations
        .iter()
        .skip(1)
        .map(|i| i.latency_ms)
        .collect();
    if let Some(w) = stats::median(&warm) {
        m.insert("warm".into(), w);
    }
    let peak = run
        .lines
        .iter()
        .filter_map(|(_, l)| {
            let i = l.find("stratos-init: memory peak ")?;
            l[i + 26..].split_whitespace().next()?.parse::<u64>().ok()
        })
        .max();
    if let Some(p) = peak {
        m.insert("memory_peak".into(), p as f64 / 1024.0);
    }
    let available = run.lines.iter().find_map(|(_, l)| {
        let i = l.find("stratos-init: memory available ")?;
        l[i + 31..].split_whitespace().next()?.parse::<u64>().ok()
    });
    if let Some(kb) = available {
        m.insert("mem_available".into(), kb as f64);
    }
    m
}

/// Boots once and records.
pub fn run_once(
    image: &BootImage,
    index: usize,
    o: &BenchOptions,
) -> Result<RunRecord, super::BootError> {
    let host = free_port()?;
    let opts = RunOptions {
        accel: o.accel,
        memory_mib: o.memory_mib,
        forwards: vec![Forward {
            host,
            guest: o.guest_port,
        }],
        timeout: o.timeout,
        echo: false,
        interactive: false,
        invoke: Some(Invoke {
            host_port: host,
            path: o.invoke_path.clone(),
            count: o.invocations,
        }),
        stop_after_invoke: true,
        // Give the init a moment to report the memory high-water mark after the calls.
        linger: Duration::from_millis(1200),
        cmdline: None,
        until_line: None,
        restore: None,
    };
    let run = super::run(image, &opts)?;
    let metrics = metrics_of(&run);
    let bad_status = run
        .invocations
        .iter()
        .map(|i| i.status)
        .find(|s| !(200..300).contains(s));
    let failure = if let Some(status) = bad_status {
        Some(format!("the function answered HTTP {status}"))
    } else if run.invocations.len() < o.invocations {
        Some(run.failure_reason())
    } else if let Err(e) = &run.phases {
        Some(format!("malformed phase markers: {e}"))
    } else {
        None
    };
    Ok(RunRecord {
        index,
        image: image.manifest.image.name.clone(),
        ok: failure.is_none(),
        failure,
        metrics,
        log: run.log(),
    })
}

/// Per-metric summaries of a set of runs (successful runs only).
pub fn summarise(runs: &[RunRecord]) -> BTreeMap<String, MetricSummary> {
    let mut out = BTreeMap::new();
    for (name, unit) in METRICS {
        let samples: Vec<f64> = runs
            .iter()
            .filter(|r| r.ok)
            .filter_map(|r| r.metrics.get(*name).copied())
            .collect();
        if let Some(s) = stats::summary(&samples) {
            out.insert(
                (*name).to_owned(),
                MetricSummary {
                    unit,
                    summary: s,
                    samples,
                },
            );
        }
    }
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricSummary {
    pub unit: &'static str,
    #[serde(flatten)]
    pub summary: Summary,
    pub samples: Vec<f64>,
}

/// B/A per metric, pair by pair.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub ratios: Vec<f64>,
    pub median_ratio: f64,
    /// 95% bootstrap interval of the median ratio (None with fewer than 2 pairs).
    pub ci95: Option<(f64, f64)>,
}

pub fn compare(a: &[RunRecord], b: &[RunRecord]) -> BTreeMap<String, Comparison> {
    let mut out = BTreeMap::new();
    for (name, _) in METRICS {
        let ratios: Vec<f64> = a
            .iter()
            .zip(b)
            .filter(|(x, y)| x.ok && y.ok)
            .filter_map(|(x, y)| Some(y.metrics.get(*name)? / x.metrics.get(*name)?))
            .filter(|r| r.is_finite())
            .collect();
        if let Some(median_ratio) = stats::median(&ratios) {
            out.insert(
                (*name).to_owned(),
                Comparison {
                    ci95: stats::bootstrap_median_ci(&ratios, 0.95, 2000),
                    ratios,
                    median_ratio,
                },
            );
        }
    }
    out
}

/// An objective: `metric.stat <= value` (e.g. `runtime_ready.p95=900ms`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slo {
    pub metric: String,
    pub stat: String,
    /// Milliseconds (or KiB for memory).
    pub limit: f64,
    pub text: String,
}

/// A regression gate: the median B/A ratio of `metric` may exceed 1 by at most `percent`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegressionGate {
    pub metric: String,
    pub percent: f64,
    pub text: String,
}

fn known_metric(m: &str) -> Result<(), String> {
    if METRICS.iter().any(|(n, _)| *n == m) {
        Ok(())
    } else {
        Err(format!(
            "unknown metric {m:?}; metrics are: {}",
            METRICS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Parses `runtime_ready.p95=900ms,first_response.p50=2s,memory_peak.max=65536`.
pub fn parse_slos(s: &str) -> Result<Vec<Slo>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (lhs, value) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: expected METRIC.STAT=VALUE"))?;
        let (metric, stat) = lhs
            .rsplit_once('.')
            .ok_or_else(|| format!("{item:?}: expected METRIC.STAT (e.g. runtime_ready.p95)"))?;
        known_metric(metric)?;
        if !["min", "p50", "median", "p95", "p99", "max"].contains(&stat) {
            return Err(format!(
                "{item:?}: statistic must be min, p50, p95, p99 or max"
            ));
        }
        let v = value.trim();
        let limit = if let Some(ms) = v.strip_suffix("ms") {
            ms.parse::<f64>().ok()
        } else if let Some(s) = v.strip_suffix('s') {
            s.parse::<f64>().ok().map(|x| x * 1e3)
        } else if let Some(k) = v.strip_suffix("KiB") {
            k.parse::<f64>().ok()
        } else {
            v.parse::<f64>().ok()
        }
        .filter(|x| x.is_finite() && *x >= 0.0)
        .ok_or_else(|| format!("{item:?}: {v:?} is not a duration like 900ms or 2s"))?;
        out.push(Slo {
            metric: metric.to_owned(),
            stat: stat.to_owned(),
            limit,
            text: item.to_owned(),
        });
    }
    Ok(out)
}

/// Parses `runtime_ready=10%,first_response=5%`.
pub fn parse_gates(s: &str) -> Result<Vec<RegressionGate>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (metric, pct) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: expected METRIC=PERCENT%"))?;
        known_metric(metric)?;
        let percent = pct
            .trim()
            .strip_suffix('%')
            .and_then(|p| p.parse::<f64>().ok())
            .filter(|p| p.is_finite() && *p >= 0.0)
            .ok_or_else(|| format!("{item:?}: expected a percentage like 10%"))?;
        out.push(RegressionGate {
            metric: metric.to_owned(),
            percent,
            text: item.to_owned(),
        });
    }
    Ok(out)
}

/// The verdict on one objective.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub objective: String,
    pub value: Option<f64>,
    pub passed: bool,
    pub reason: String,
}

pub fn check_slos(slos: &[Slo], s: &BTreeMap<String, MetricSummary>) -> Vec<Verdict> {
    slos.iter()
        .map(|o| match s.get(&o.metric).and_then(|m| m.summary.get(&o.stat)) {
            None => Verdict {
                objective: o.text.clone(),
                value: None,
                passed: false,
                reason: format!("no {} samples (did every run fail, or does the image not reach this phase?)", o.metric),
            },
            Some(v) => Verdict {
                objective: o.text.clone(),
                value: Some(v),
                passed: v <= o.limit,
                reason: format!("{}.{} = {:.1} (limit {:.1})", o.metric, o.stat, v, o.limit),
            },
        })
        .collect()
}

pub fn check_gates(gates: &[RegressionGate], c: &BTreeMap<String, Comparison>) -> Vec<Verdict> {
    gates
        .iter()
        .map(|g| match c.get(&g.metric) {
            None => Verdict {
                objective: format!("max-regression {}", g.text),
                value: None,
                passed: false,
                reason: format!("no paired {} samples", g.metric),
            },
            Some(cmp) => {
                let limit = 1.0 + g.percent / 100.0;
                Verdict {
                    objective: format!("max-regression {}", g.text),
                    value: Some(cmp.median_ratio),
                    passed: cmp.median_ratio <= limit,
                    reason: format!("median ratio {:.3} (limit {:.3})", cmp.median_ratio, limit),
                }
            }
        })
        .collect()
}

/// Human-readable table (plain text or Markdown).
pub fn table(
    summary: &BTreeMap<String, MetricSummary>,
    baseline: Option<&BTreeMap<String, MetricSummary>>,
    cmp: Option<&BTreeMap<String, Comparison>>,
    markdown: bool,
) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut head = vec!["metric", "unit", "min", "p50", "p95", "p99", "max"];
    if baseline.is_some() {
        head.extend(["baseline p50", "B/A median", "95% CI"]);
    }
    rows.push(head.iter().map(|s| (*s).to_owned()).collect());
    for (name, unit) in METRICS {
        let Some(m) = summary.get(*name) else {
            continue;
        };
        let s = &m.summary;
        let mut r = vec![
            (*name).to_owned(),
            (*unit).to_owned(),
            format!("{:.1}", s.min),
            format!("{:.1}", s.p50),
            format!("{:.1}", s.p95),
            format!("{:.1}", s.p99),
            format!("{:.1}", s.max),
        ];
        if let Some(b) = baseline {
            r.push(
                b.get(*name)
                    .map_or("-".into(), |x| format!("{:.1}", x.summary.p50)),
            );
            match cmp.and_then(|c| c.get(*name)) {
                Some(c) => {
                    r.push(format!("{:.3}", c.median_ratio));
                    r.push(
                        c.ci95
                            .map_or("-".into(), |(lo, hi)| format!("[{lo:.3}, {hi:.3}]")),
                    );
                }
                None => r.extend(["-".into(), "-".into()]),
            }
        }
        rows.push(r);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (n, r) in rows.iter().enumerate() {
        if markdown {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
            if n == 0 {
                out.push_str(&format!("|{}|\n", vec!["---"; r.len()].join("|")));
            }
        } else {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i < 2 {
                        format!("{c:<w$}", w = widths[i])
                    } else {
                        format!("{c:>w$}", w = widths[i])
                    }
                })
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_objectives() {
        let s = parse_slos("runtime_ready.p95=900ms, first_response.p50=2s,memory_peak.max=4096")
            .unwrap();
        assert_eq!(s[0].limit, 900.0);
        assert_eq!(s[1].limit, 2000.0);
        assert_eq!(s[2].stat, "max");
        assert!(parse_slos("nope.p95=1ms")
            .unwrap_err()
            .contains("unknown metric"));
        assert!(parse_slos("runtime_ready.p42=1ms").is_err());
        assert!(parse_slos("runtime_ready.p95=fast").is_err());
        let g = parse_gates("runtime_ready=10%").unwrap();
        assert_eq!(g[0].percent, 10.0);
        assert!(parse_gates("runtime_ready=10").is_err());
    }

    fn rec(i: usize, v: f64) -> RunRecord {
        RunRecord {
            index: i,
            image: "x".into(),
            ok: true,
            failure: None,
            metrics: [("runtime_ready".to_owned(), v)].into_iter().collect(),
            log: String::new(),
        }
    }

    #[test]
    fn gates_and_slos() {
        let a: Vec<RunRecord> = (0..5).map(|i| rec(i, 1000.0 + i as f64)).collect();
        let b: Vec<RunRecord> = (0..5).map(|i| rec(i, 500.0 + i as f64)).collect();
        let c = compare(&a, &b);
        let r = &c["runtime_ready"];
        assert!((r.median_ratio - 0.5).abs() < 0.01);
        let s = summarise(&b);
        let v = check_slos(&parse_slos("runtime_ready.p95=100ms").unwrap(), &s);
        assert!(!v[0].passed);
        let v = check_slos(&parse_slos("runtime_ready.p95=10s").unwrap(), &s);
        assert!(v[0].passed);
        let v = check_gates(&parse_gates("runtime_ready=10%").unwrap(), &c);
        assert!(v[0].passed);
        let worse = compare(&b, &a);
        assert!(!check_gates(&parse_gates("runtime_ready=10%").unwrap(), &worse)[0].passed);
        let t = table(&s, Some(&summarise(&a)), Some(&c), true);
        assert!(t.contains("| runtime_ready | ms |"), "{t}");
    }
}
