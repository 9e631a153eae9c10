//! How a boot-test result reads: the report printed after the runs, the Markdown file, the
//! table both share, and the one-line summary of each run.
//!
//! With a baseline, every metric has a ratio: the image's value over the baseline's (B/A),
//! per A/B pair, and its median. Below 1 the image is faster (or smaller) than the baseline:
//! 0.72 means it took 72% of the baseline's time. The column says so: [`RATIO`].

use std::collections::BTreeMap;

use super::METRICS;
use crate::boot_result::{BootTestResult, Comparison, Concurrent, Group, MetricSummary, RunRecord};

/// The column of median ratios.
pub const RATIO: &str = "ratio (image/baseline)";

/// What `stratos boot-test` prints when the runs are done: what ran, the table, the verdict on
/// every objective, the runs that failed and where their consoles are.
pub fn text(r: &BootTestResult) -> String {
    let mut out = format!(
        "{} {} — {} runs, {} invocation(s) each, {} ({}), {} MiB\n",
        r.image.name,
        r.image.version,
        r.runs,
        r.invocations,
        r.accel,
        r.image.machine,
        r.memory_mib
    );
    if let Some(s) = &r.snapshot {
        out.push_str(&format!(
            "image (B): restored from the snapshot {} (snapshot.json sha256 {})\n",
            s.dir,
            s.snapshot_sha256.short(12)
        ));
    }
    if let Some(b) = &r.baseline {
        out.push_str(&format!(
            "baseline (A): {} {} ({}){}; {RATIO} = B/A, the median over the A/B pairs; < 1 means the image (B) is faster/smaller\n",
            b.name,
            b.version,
            b.machine,
            if r.snapshot.is_some() { ", booted" } else { "" }
        ));
    }
    out.push_str(&result_table(r, false));
    if let Some(c) = &r.concurrent {
        out.push_str(&concurrent(c));
    }
    for v in &r.objectives {
        let verdict = if v.passed { "PASS" } else { "FAIL" };
        out.push_str(&format!("{verdict} {}: {}\n", v.objective, v.reason));
    }
    for f in r.failed_runs() {
        out.push_str(&format!(
            "FAIL run {} of {}: {}\n",
            f.index,
            f.image,
            f.failure_text()
        ));
    }
    if !r.logs.is_empty() {
        out.push_str(&format!("console logs: {}\n", r.logs.join(", ")));
    }
    out
}

/// What `--markdown-out FILE` writes: a title line, what the ratio means, and the table.
pub fn markdown(r: &BootTestResult) -> String {
    let mut out = format!(
        "{} {} vs {} — {} runs each, {} ({}), interleaved A/B\n\n",
        r.image.name,
        r.image.version,
        r.baseline
            .as_ref()
            .map_or("no baseline", |b| b.name.as_str()),
        r.runs,
        r.accel,
        r.image.machine
    );
    if r.baseline.is_some() {
        out.push_str(&format!(
            "{RATIO}: the median over the A/B pairs of the image's value divided by the baseline's; below 1 the image is faster (or smaller).\n\n"
        ));
    }
    out.push_str(&result_table(r, true));
    if let Some(c) = &r.concurrent {
        out.push('\n');
        out.push_str(&concurrent(c));
    }
    out
}

/// The concurrency measurement in three lines.
fn concurrent(c: &Concurrent) -> String {
    let line = |what: &str, g: &Group| {
        let first = super::stats::median(&g.first_response_ms)
            .map_or("-".to_owned(), |m| format!("{m:.0} ms"));
        format!(
            "{what}: {}/{} answered, host memory (sum of PSS) {:.1} MiB, first response p50 {first}\n",
            g.answered,
            c.count,
            g.pss_kib_total / 1024.0
        )
    };
    let mut out = line(&format!("{} clones restored at once", c.count), &c.restored);
    out.push_str(&line(&format!("{} VMs booted at once", c.count), &c.booted));
    if let Some(r) = c.pss_ratio {
        out.push_str(&format!("host memory, clones/booted: {r:.3}\n"));
    }
    out
}

fn result_table(r: &BootTestResult, markdown: bool) -> String {
    table(
        &r.metrics,
        r.baseline_metrics.as_ref(),
        r.comparison.as_ref(),
        markdown,
    )
}

/// One run in a line, for the progress output.
pub fn brief(r: &RunRecord) -> String {
    if !r.ok {
        return format!("FAILED: {}", r.failure.as_deref().unwrap_or(""));
    }
    let g = |k: &str| r.metrics.get(k).map_or("-".into(), |v| format!("{v:.0}"));
    if r.metrics.contains_key("resumed") {
        return format!(
            "resumed {} ms, restored {} ms, first response {} ms",
            g("resumed"),
            g("restored"),
            g("first_response")
        );
    }
    format!(
        "init {} ms, ready {} ms, first response {} ms",
        g("init_start"),
        g("runtime_ready"),
        g("first_response")
    )
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
        head.extend(["baseline p50", RATIO, "95% CI"]);
    }
    rows.push(head.iter().map(|s| (*s).to_owned()).collect());
    for (name, unit) in METRICS {
        let Some(m) = summary.get(*name) else {
            continue;
        };
        let s = &m.summary;
        let mut r = vec![
            (*name).to_owned(),
            unit.as_str().to_owned(),
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
    use crate::boot::bench::{compare, summarise};

    fn rec(i: usize, v: f64) -> RunRecord {
        RunRecord {
            index: i,
            image: "x".into(),
            ok: true,
            failure: None,
            metrics: [("runtime_ready".to_owned(), v)].into_iter().collect(),
            syscalls: None,
            log: String::new(),
        }
    }

    #[test]
    fn the_ratio_column_says_which_way_it_divides() {
        // The image takes 72% of the baseline's time.
        let a: Vec<RunRecord> = (0..4).map(|i| rec(i, 1000.0)).collect();
        let b: Vec<RunRecord> = (0..4).map(|i| rec(i, 720.0)).collect();
        let (sb, sa, c) = (summarise(&b), summarise(&a), compare(&a, &b));
        let t = table(&sb, Some(&sa), Some(&c), true);
        let mut lines = t.lines();
        assert_eq!(
            lines.next().unwrap(),
            "| metric | unit | min | p50 | p95 | p99 | max | baseline p50 | ratio (image/baseline) | 95% CI |"
        );
        assert!(t.contains("| 1000.0 | 0.720 | [0.720, 0.720] |"), "{t}");
        assert!(!t.contains("B/A"), "{t}");
    }
}
