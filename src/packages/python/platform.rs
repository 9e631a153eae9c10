//! Which wheels fit the image: a wheel file name's tags against the image's Python and glibc.

use crate::arch::Arch;

/// A wheel file name's parts (`{dist}-{version}(-{build})?-{python}-{abi}-{platform}.whl`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelName {
    pub dist: String,
    pub version: String,
    /// Every (python, abi, platform) the compressed tag set expands to.
    pub tags: Vec<(String, String, String)>,
}

impl WheelName {
    pub fn parse(file: &str) -> Option<WheelName> {
        let stem = file.strip_suffix(".whl")?;
        let parts: Vec<&str> = stem.split('-').collect();
        let (dist, version, py, abi, plat) = match parts.as_slice() {
            [d, v, p, a, pl] | [d, v, _, p, a, pl] => (*d, *v, *p, *a, *pl),
            _ => return None,
        };
        let mut tags = Vec::new();
        for p in py.split('.') {
            for a in abi.split('.') {
                for pl in plat.split('.') {
                    tags.push((p.to_owned(), a.to_owned(), pl.to_owned()));
                }
            }
        }
        Some(WheelName {
            dist: dist.to_owned(),
            version: version.to_owned(),
            tags,
        })
    }
}

/// What the image can run: its architecture, Python (major, minor) and glibc (major, minor);
/// `None` when the image has no glibc (then only pure wheels fit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Platform {
    pub arch: Arch,
    pub python: (u32, u32),
    pub glibc: Option<(u32, u32)>,
}

impl Platform {
    /// How well a tag fits: lower is better; `None` if it does not fit at all.
    fn rank(&self, (py, abi, plat): &(String, String, String)) -> Option<u32> {
        let (maj, min) = self.python;
        let cp = format!("cp{maj}{min}");
        let plat_rank = if plat == "any" {
            Some(1000)
        } else {
            self.glibc.and_then(|g| {
                manylinux(plat, self.arch)
                    .filter(|m| *m <= g)
                    .map(|m| 100 - m.1.min(99))
            })
        }?;
        let py_minor = |p: &str, prefix: &str| -> Option<u32> {
            let rest = p.strip_prefix(prefix)?;
            if rest == maj.to_string() {
                return Some(99);
            }
            let m: u32 = rest.strip_prefix(&maj.to_string())?.parse().ok()?;
            (m <= min).then_some(m)
        };
        let class = if *py == cp && *abi == cp {
            0
        } else if abi == "abi3" && py_minor(py, "cp").is_some_and(|m| m != 99) {
            1
        } else if abi == "none" && *py == cp {
            2
        } else if abi == "none" && py_minor(py, "py").is_some() {
            3
        } else {
            return None;
        };
        Some(class * 10_000 + plat_rank)
    }

    /// The best rank of any of the wheel's tags.
    pub fn fits(&self, w: &WheelName) -> Option<u32> {
        w.tags.iter().filter_map(|t| self.rank(t)).min()
    }

    /// Whether any of the wheel's tags is built for the image's architecture (a pure `any`
    /// wheel, or a platform tag ending in its machine, `manylinux_2_17_aarch64`), whether or
    /// not its Python or libc fit.
    pub fn same_machine(&self, w: &WheelName) -> bool {
        let suffix = format!("_{}", self.arch.wheel_machine());
        w.tags
            .iter()
            .any(|(_, _, plat)| plat == "any" || plat.ends_with(&suffix))
    }

    /// What fits, for messages.
    pub fn describe(&self) -> String {
        let (maj, min) = self.python;
        match self.glibc {
            Some((a, b)) => format!(
                "cp{maj}{min} (or abi3) for manylinux_{a}_{b}_{} or older, or a pure py3-none-any wheel",
                self.arch.wheel_machine()
            ),
            None => "a pure py3-none-any wheel (the image has no glibc for compiled ones)".into(),
        }
    }
}

/// The glibc version a manylinux platform tag for `arch` needs (PEP 600's
/// `manylinux_A_B_<machine>`, and the older names PEP 513, 571 and 599 gave some of them).
fn manylinux(plat: &str, arch: Arch) -> Option<(u32, u32)> {
    let tag = plat.strip_suffix(arch.wheel_machine())?.strip_suffix('_')?;
    match tag {
        "manylinux1" => return Some((2, 5)),
        "manylinux2010" => return Some((2, 12)),
        "manylinux2014" => return Some((2, 17)),
        _ => {}
    }
    let (a, b) = tag.strip_prefix("manylinux_")?.split_once('_')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aarch64_image_takes_aarch64_wheels() {
        let p = Platform {
            arch: Arch::Aarch64,
            python: (3, 11),
            glibc: Some((2, 36)),
        };
        let w = |f: &str| WheelName::parse(f).unwrap();
        let arm =
            w("MarkupSafe-2.1.5-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl");
        let x86 = w("MarkupSafe-2.1.5-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl");
        assert!(p.fits(&arm).is_some());
        assert!(p.fits(&x86).is_none());
        assert!(p
            .fits(&w("x-1-cp311-cp311-manylinux2014_aarch64.whl"))
            .is_some());
        assert!(p
            .fits(&w("x-1-cp311-cp311-macosx_11_0_arm64.whl"))
            .is_none());
        assert!(p.fits(&w("x-1-py3-none-any.whl")).is_some());
        assert!(p.same_machine(&arm) && !p.same_machine(&x86));
        // Built for aarch64, but for musl: the machine is right, the libc is not.
        let musl = w("x-1-cp311-cp311-musllinux_1_1_aarch64.whl");
        assert!(p.same_machine(&musl) && p.fits(&musl).is_none());
        assert!(!p.same_machine(&w("x-1-cp311-cp311-win_arm64.whl")));
        assert!(
            p.describe().contains("manylinux_2_36_aarch64"),
            "{}",
            p.describe()
        );
    }

    #[test]
    fn wheel_tags_fit_the_image() {
        let p = Platform {
            arch: Arch::X86_64,
            python: (3, 11),
            glibc: Some((2, 36)),
        };
        let fit = |f: &str| WheelName::parse(f).and_then(|w| p.fits(&w));
        assert!(
            fit("MarkupSafe-2.1.5-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
                .is_some()
        );
        assert!(fit("idna-3.7-py3-none-any.whl").is_some());
        assert!(fit("six-1.16.0-py2.py3-none-any.whl").is_some());
        assert!(fit("x-1-cp38-abi3-manylinux2014_x86_64.whl").is_some());
        assert!(fit("x-1-cp312-cp312-manylinux_2_17_x86_64.whl").is_none());
        assert!(fit("x-1-cp311-cp311-manylinux_2_38_x86_64.whl").is_none());
        assert!(fit("x-1-cp311-cp311-musllinux_1_1_x86_64.whl").is_none());
        assert!(fit("x-1-cp311-cp311-manylinux_2_17_aarch64.whl").is_none());
        assert!(fit("x-1-cp311-cp311-win_amd64.whl").is_none());
        assert!(fit("x-1-py312-none-any.whl").is_none());
        // The platform wheel is preferred over the pure one.
        assert!(fit("x-1-cp311-cp311-manylinux2014_x86_64.whl") < fit("x-1-py3-none-any.whl"));
        let no_libc = Platform { glibc: None, ..p };
        assert!(WheelName::parse("x-1-cp311-cp311-manylinux2014_x86_64.whl")
            .and_then(|w| no_libc.fits(&w))
            .is_none());
    }
}
