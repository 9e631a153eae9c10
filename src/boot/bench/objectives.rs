//! Objectives a boot test is gated on: `--slo METRIC.STAT=LIMIT` on the image's results and
//! `--max-regression METRIC=P%` on its ratio to the baseline, and the verdict on each.

use std::collections::BTreeMap;

use serde::Serialize;

use super::METRICS;
use crate::boot_result::{Comparison, MetricSummary, Unit, Verdict};

/// Every objective of one boot test.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Objectives {
    pub slos: Vec<Slo>,
    pub gates: Vec<RegressionGate>,
}

impl Objectives {
    /// The verdicts on the image's summaries and, with a baseline, on the comparison.
    pub fn check(
        &self,
        summary: &BTreeMap<String, MetricSummary>,
        cmp: Option<&BTreeMap<String, Comparison>>,
    ) -> Vec<Verdict> {
        let mut verdicts = check_slos(&self.slos, summary);
        if let Some(c) = cmp {
            verdicts.extend(check_gates(&self.gates, c));
        }
        verdicts
    }
}

/// An objective: `metric.stat <= value` (e.g. `runtime_ready.p95=900ms`,
/// `syscalls.total<=400`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slo {
    pub metric: String,
    pub stat: String,
    /// Milliseconds (KiB for memory, calls for system calls).
    pub limit: f64,
    pub text: String,
    /// A time limit written without a unit (read as ms, the old form): the CLI warns.
    #[serde(skip)]
    pub unitless: bool,
}

/// A regression gate: the median image/baseline ratio of `metric` may exceed 1 by at most
/// `percent`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegressionGate {
    pub metric: String,
    pub percent: f64,
    pub text: String,
}

fn known_metric(m: &str) -> Result<Unit, String> {
    if let Some((_, unit)) = METRICS.iter().find(|(n, _)| *n == m) {
        Ok(*unit)
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

/// Parses `runtime_ready.p95=900ms,first_response.p50=2s,memory_peak.max=65536` (`<=` may
/// stand for `=`); a metric without a statistic (`syscalls.total<=400`) means every run (max).
pub fn parse_slos(s: &str) -> Result<Vec<Slo>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (lhs, value) = item
            .split_once("<=")
            .or_else(|| item.split_once('='))
            .ok_or_else(|| format!("{item:?}: expected METRIC.STAT=VALUE or METRIC<=VALUE"))?;
        let lhs = lhs.trim();
        let (metric, stat) = if METRICS.iter().any(|(n, _)| *n == lhs) {
            (lhs, "max")
        } else {
            lhs.rsplit_once('.')
                .ok_or_else(|| format!("{item:?}: expected METRIC.STAT (e.g. runtime_ready.p95)"))?
        };
        let unit = known_metric(metric)?;
        if !["min", "p50", "median", "p95", "p99", "max"].contains(&stat) {
            return Err(format!(
                "{item:?}: statistic must be min, p50, p95, p99 or max"
            ));
        }
        let v = value.trim();
        let unitless = unit == Unit::Ms && v.parse::<f64>().is_ok();
        let limit = if unit == Unit::Calls {
            v.parse::<f64>().ok().filter(|x| x.fract() == 0.0)
        } else if unit == Unit::Ms && !unitless {
            // A time: the duration every flag reads (500ms, 2s, 1.5s, 1m).
            crate::duration::parse(v)
                .ok()
                .map(|d| d.as_secs_f64() * 1e3)
        } else if let Some(k) = v.strip_suffix("KiB") {
            k.parse::<f64>().ok()
        } else {
            v.parse::<f64>().ok()
        }
        .filter(|x| x.is_finite() && *x >= 0.0)
        .ok_or_else(|| match unit {
            Unit::Calls => format!("{item:?}: {v:?} is not a number of system calls"),
            Unit::KiB => format!("{item:?}: {v:?} is not a size in KiB"),
            Unit::Ms => format!("{item:?}: {v:?} is not a duration like 900ms, 2s or 1m"),
        })?;
        out.push(Slo {
            metric: metric.to_owned(),
            stat: stat.to_owned(),
            limit,
            text: item.to_owned(),
            unitless,
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
                    reason: format!(
                        "median image/baseline ratio {:.3} (limit {:.3})",
                        cmp.median_ratio, limit
                    ),
                }
            }
        })
        .collect()
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

    #[test]
    fn time_limits_take_every_unit_and_a_bare_number_is_marked() {
        let s = parse_slos("runtime_ready.p95=1.5s,first_response=1m,cold_start.p50=250").unwrap();
        assert_eq!(s[0].limit, 1500.0);
        assert!(!s[0].unitless);
        assert_eq!((s[1].stat.as_str(), s[1].limit), ("max", 60_000.0));
        assert_eq!(s[2].limit, 250.0);
        assert!(
            s[2].unitless,
            "a bare time is the old form the CLI warns about"
        );
        let m = parse_slos("memory_peak.max=4096").unwrap();
        assert!(!m[0].unitless, "memory is KiB, not a time");
        assert!(parse_slos("runtime_ready.p95=5x")
            .unwrap_err()
            .contains("like 900ms, 2s or 1m"));
    }

    #[test]
    fn parses_syscall_objectives() {
        let s = parse_slos("syscalls.total<=400,syscalls.cold_start.p95<=300, first_response<=2s")
            .unwrap();
        assert_eq!(
            (s[0].metric.as_str(), s[0].stat.as_str(), s[0].limit),
            ("syscalls.total", "max", 400.0)
        );
        assert_eq!(
            (s[1].metric.as_str(), s[1].stat.as_str(), s[1].limit),
            ("syscalls.cold_start", "p95", 300.0)
        );
        assert_eq!(
            (s[2].metric.as_str(), s[2].stat.as_str(), s[2].limit),
            ("first_response", "max", 2000.0)
        );
        assert!(parse_slos("syscalls.total<=4ms")
            .unwrap_err()
            .contains("not a number of system calls"));
        assert!(parse_slos("syscalls.total<=1.5").is_err());
        assert!(parse_slos("syscalls.bogus<=1")
            .unwrap_err()
            .contains("unknown metric"));
        let g = parse_gates("syscalls.total=10%").unwrap();
        assert_eq!(g[0].metric, "syscalls.total");
    }

    #[test]
    fn a_regression_verdict_says_which_way_the_ratio_goes() {
        let cmp: BTreeMap<String, Comparison> = [(
            "first_response".to_owned(),
            Comparison {
                ratios: vec![1.2, 1.2],
                median_ratio: 1.2,
                ci95: None,
            },
        )]
        .into_iter()
        .collect();
        let v = check_gates(&parse_gates("first_response=10%").unwrap(), &cmp);
        assert!(!v[0].passed);
        assert_eq!(
            v[0].reason,
            "median image/baseline ratio 1.200 (limit 1.100)"
        );
    }
}
