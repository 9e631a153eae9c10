//! The kernel boot profile: where a kernel spends its time before `/init`, from a console
//! booted with `initcall_debug printk.time=1 loglevel=8`. Two views: the slowest initcalls (the
//! kernel's own `initcall X returned R after U usecs` lines) and the largest gaps between
//! consecutive kernel messages (time nobody reports: firmware waits, unpacking the initramfs,
//! calibration loops).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The document `stratos kernel profile --json` writes.
pub const SCHEMA: &str = "stratos-kernel-profile/1";

/// What the kernel command line gets for a profile boot (and loses: `quiet`).
pub const PROFILE_ARGS: &str = "initcall_debug printk.time=1 loglevel=8";

/// The command line of a profile boot: the image's, without `quiet` and `loglevel=`, plus
/// [`PROFILE_ARGS`].
pub fn profile_cmdline(image_cmdline: &str) -> String {
    let mut parts: Vec<&str> = image_cmdline
        .split_whitespace()
        .filter(|p| *p != "quiet" && !p.starts_with("loglevel=") && !p.starts_with("printk.time="))
        .collect();
    parts.extend(PROFILE_ARGS.split_whitespace());
    parts.join(" ")
}

/// One initcall: its function and how long it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Initcall {
    /// `pty_init` (the symbol without `+0x0/0x..`), or an address without kallsyms.
    pub name: String,
    pub usecs: u64,
    pub ret: i64,
}

/// A stretch of time between two consecutive kernel messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    /// Seconds since the kernel started, of the message before the gap.
    pub at_s: f64,
    pub ms: f64,
    /// The message before the gap (what was going on) and the one after.
    pub before: String,
    pub after: String,
}

/// One boot's profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BootProfile {
    /// Seconds since the kernel started at `Run /init as init process` (or the first
    /// `Run ... as init process`), when seen.
    pub run_init_s: Option<f64>,
    /// Timestamped kernel messages before it.
    pub messages: usize,
    /// Every initcall, in the order they ran.
    pub initcalls: Vec<Initcall>,
    /// Gaps between messages before `/init`, largest first.
    pub gaps: Vec<Gap>,
}

/// `[    0.123456] message` → (0.123456, "message").
fn timestamped(line: &str) -> Option<(f64, &str)> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (t, msg) = rest.split_once(']')?;
    let t: f64 = t.trim().parse().ok()?;
    Some((t, msg.strip_prefix(' ').unwrap_or(msg)))
}

/// `pty_init+0x0/0x1a` → `pty_init`; an address stays as it is.
fn symbol(s: &str) -> String {
    s.split('+').next().unwrap_or(s).to_owned()
}

/// Parses a verbose console. Lines that are not kernel messages (the init's, QEMU's) are
/// skipped; only what happens before `/init` runs counts.
pub fn parse(console: &str) -> BootProfile {
    let mut p = BootProfile::default();
    let mut prev: Option<(f64, String)> = None;
    let mut gaps = Vec::new();
    for line in console.lines() {
        let Some((t, msg)) = timestamped(line) else {
            continue;
        };
        if let Some(rest) = msg.strip_prefix("initcall ") {
            // initcall pty_init+0x0/0x1a returned 0 after 190203 usecs
            let mut w = rest.split_whitespace();
            if let (Some(f), Some("returned"), Some(ret), Some("after"), Some(us)) =
                (w.next(), w.next(), w.next(), w.next(), w.next())
            {
                if let (Ok(ret), Ok(usecs)) = (ret.parse(), us.parse()) {
                    p.initcalls.push(Initcall {
                        name: symbol(f),
                        usecs,
                        ret,
                    });
                }
            }
        }
        if let Some((pt, pmsg)) = &prev {
            gaps.push(Gap {
                at_s: *pt,
                ms: (t - pt) * 1e3,
                before: pmsg.clone(),
                after: msg.to_owned(),
            });
        }
        p.messages += 1;
        if msg.starts_with("Run ") && msg.contains("as init process") {
            p.run_init_s = Some(t);
            break;
        }
        prev = Some((t, msg.to_owned()));
    }
    gaps.sort_by(|a, b| b.ms.total_cmp(&a.ms).then(a.at_s.total_cmp(&b.at_s)));
    p.gaps = gaps;
    p
}

/// Several boots summarised: per initcall and per gap (keyed by the message before it), the
/// median over the boots where it appeared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub schema: String,
    pub image: String,
    pub cmdline: String,
    pub runs: usize,
    /// Median `Run /init` time, seconds.
    pub run_init_s: Option<f64>,
    /// Median total of all initcalls, ms.
    pub initcalls_total_ms: f64,
    /// Slowest first.
    pub initcalls: Vec<RankedInitcall>,
    /// Largest first.
    pub gaps: Vec<RankedGap>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedInitcall {
    pub name: String,
    pub median_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedGap {
    pub before: String,
    pub after: String,
    pub median_ms: f64,
    pub at_s: f64,
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Message text without what changes from boot to boot (numbers, addresses), so the same gap
/// in several boots is recognised.
fn gap_key(msg: &str) -> String {
    msg.chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

pub fn summarise(image: &str, cmdline: &str, boots: &[BootProfile], top: usize) -> Summary {
    let mut calls: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut totals = Vec::new();
    for b in boots {
        totals.push(
            b.initcalls
                .iter()
                .map(|i| i.usecs as f64 / 1e3)
                .sum::<f64>(),
        );
        for i in &b.initcalls {
            calls.entry(&i.name).or_default().push(i.usecs as f64 / 1e3);
        }
    }
    let mut initcalls: Vec<RankedInitcall> = calls
        .into_iter()
        .map(|(name, mut v)| {
            let max_ms = v.iter().copied().fold(0.0, f64::max);
            RankedInitcall {
                name: name.to_owned(),
                median_ms: median(&mut v),
                max_ms,
            }
        })
        .collect();
    initcalls.sort_by(|a, b| {
        b.median_ms
            .total_cmp(&a.median_ms)
            .then(a.name.cmp(&b.name))
    });
    initcalls.truncate(top);

    let mut by_key: BTreeMap<String, (Vec<f64>, &Gap)> = BTreeMap::new();
    for b in boots {
        for g in &b.gaps {
            let e = by_key
                .entry(gap_key(&g.before))
                .or_insert_with(|| (Vec::new(), g));
            e.0.push(g.ms);
        }
    }
    let mut gaps: Vec<RankedGap> = by_key
        .into_values()
        .map(|(mut v, g)| RankedGap {
            before: g.before.clone(),
            after: g.after.clone(),
            median_ms: median(&mut v),
            at_s: g.at_s,
        })
        .collect();
    gaps.sort_by(|a, b| {
        b.median_ms
            .total_cmp(&a.median_ms)
            .then(a.at_s.total_cmp(&b.at_s))
    });
    gaps.truncate(top);
    let mut run_init: Vec<f64> = boots.iter().filter_map(|b| b.run_init_s).collect();
    Summary {
        schema: SCHEMA.into(),
        image: image.into(),
        cmdline: cmdline.into(),
        runs: boots.len(),
        run_init_s: (!run_init.is_empty()).then(|| median(&mut run_init)),
        initcalls_total_ms: median(&mut totals),
        initcalls,
        gaps,
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

/// The summary as text tables.
pub fn render(s: &Summary) -> String {
    let mut out = format!(
        "kernel profile of {} ({} boot{}; cmdline: {})\n",
        s.image,
        s.runs,
        if s.runs == 1 { "" } else { "s" },
        s.cmdline
    );
    match s.run_init_s {
        Some(t) => out.push_str(&format!(
            "kernel start -> Run /init: {:.3} s (median; console output at loglevel 8 slows it)\n",
            t
        )),
        None => out.push_str("Run /init was not seen in the console\n"),
    }
    out.push_str(&format!(
        "initcalls in all: {:.1} ms (median)\n\nslowest initcalls:\n  {:>9}  {:>9}  function\n",
        s.initcalls_total_ms, "median ms", "max ms"
    ));
    for i in &s.initcalls {
        out.push_str(&format!(
            "  {:>9.1}  {:>9.1}  {}\n",
            i.median_ms, i.max_ms, i.name
        ));
    }
    out.push_str("\nlargest gaps between kernel messages before /init:\n");
    out.push_str(&format!(
        "  {:>9}  {:>8}  after the message\n",
        "median ms", "at s"
    ));
    for g in &s.gaps {
        out.push_str(&format!(
            "  {:>9.1}  {:>8.3}  {}\n  {:>9}  {:>8}  (next: {})\n",
            g.median_ms,
            g.at_s,
            clip(&g.before, 90),
            "",
            "",
            clip(&g.after, 80)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_drops_quiet_and_adds_the_profile_arguments() {
        assert_eq!(
            profile_cmdline("console=ttyS0 panic=-1 quiet loglevel=3"),
            "console=ttyS0 panic=-1 initcall_debug printk.time=1 loglevel=8"
        );
    }

    #[test]
    fn parses_a_recorded_verbose_console() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/consoles/kernel-profile.log"),
        )
        .unwrap();
        let p = parse(&text);
        let run = p.run_init_s.expect("Run /init in the fixture");
        assert!(run > 0.1 && run < 30.0, "{run}");
        assert!(p.initcalls.len() > 50, "{} initcalls", p.initcalls.len());
        // Named (the kernel has kallsyms), durations parsed, nothing after /init counted.
        assert!(p.initcalls.iter().all(|i| !i.name.is_empty()));
        assert!(p.initcalls.iter().any(|i| i.name.ends_with("_init")));
        assert!(p.gaps.windows(2).all(|w| w[0].ms >= w[1].ms));
        let total_gaps: f64 = p.gaps.iter().map(|g| g.ms).sum();
        assert!((total_gaps / 1e3 - (run - first_time(&text))).abs() < 0.01);
        let s = summarise("hello", "x", &[p.clone(), p], 5);
        assert_eq!(s.initcalls.len(), 5);
        assert!(s.initcalls[0].median_ms >= s.initcalls[4].median_ms);
        let table = render(&s);
        assert!(table.contains("slowest initcalls"), "{table}");
    }

    fn first_time(text: &str) -> f64 {
        text.lines().find_map(timestamped).unwrap().0
    }

    #[test]
    fn lines_and_symbols() {
        assert_eq!(
            timestamped("[    1.234567] calling  pty_init+0x0/0x1a @ 1"),
            Some((1.234567, "calling  pty_init+0x0/0x1a @ 1"))
        );
        assert_eq!(timestamped("stratos-phase init_start 1"), None);
        let p = parse("[    0.100000] initcall pty_init+0x0/0x1a returned 0 after 190203 usecs\n[    0.300000] Run /init as init process\n[    0.400000] initcall late+0x0/0x1 returned 0 after 5 usecs\n");
        assert_eq!(
            p.initcalls,
            vec![Initcall {
                name: "pty_init".into(),
                usecs: 190_203,
                ret: 0
            }]
        );
        assert_eq!(p.run_init_s, Some(0.3));
        assert_eq!(p.gaps.len(), 1);
        assert!((p.gaps[0].ms - 200.0).abs() < 1e-6);
    }
}
