//! What can go wrong building a kernel, and the options that did not come out as asked.

use std::path::PathBuf;

impl KernelBuildError {
    /// A failure of the machine (make, tar or the file system), not of the profile.
    pub fn is_environment(&self) -> bool {
        matches!(self, Self::Io { .. } | Self::Command { .. })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KernelBuildError {
    #[error("kernel source {path}: sha256 is {actual}, the profile pins {expected}")]
    SourceDigest {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed (exit {status}); last lines of {log}:\n{tail}")]
    Command {
        what: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("config fragment {path}: {why}")]
    Fragment { path: PathBuf, why: String },
    #[error("the resolved kernel config does not hold what the fragments ask for ({} option(s)):\n{}\n{}", .0.len(), render_mismatches(.0), drift_hint(.0))]
    Drift(Vec<Mismatch>),
}

/// One requested option that did not come out as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub option: String,
    pub asked: String,
    pub got: String,
    /// The fragment that asked for it.
    pub fragment: String,
    pub why: String,
    /// The shipped fragment to add, when one turns on what the option waits for.
    pub fix: Option<String>,
}

/// One line per option (what was asked, by which fragment, what came out and why), each
/// followed by its fix when a shipped fragment provides it.
pub fn render_mismatches(ms: &[Mismatch]) -> String {
    ms.iter()
        .map(|m| {
            let line = format!(
                "  CONFIG_{}: asked {} ({}), got {}: {}",
                m.option, m.asked, m.fragment, m.got, m.why
            );
            match &m.fix {
                Some(fix) => format!("{line}\n    fix: {fix}"),
                None => line,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last line of the drift error: the fixes above first, the escape hatch last.
fn drift_hint(ms: &[Mismatch]) -> &'static str {
    if ms.iter().any(|m| m.fix.is_some()) {
        "apply the fixes above; or pass --allow-config-drift to build a kernel without these options anyway"
    } else {
        "fix the fragments (or the kernel source); or pass --allow-config-drift to build a kernel without these options anyway"
    }
}

pub(super) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> KernelBuildError {
    let what = what.into();
    move |source| KernelBuildError::Io { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fix_comes_before_the_escape_hatch() {
        let m = Mismatch {
            option: "VIRTIO_NET".into(),
            asked: "y".into(),
            got: "n".into(),
            fragment: "virtio.config".into(),
            why: "depends on NETDEVICES && VIRTIO; unmet: NETDEVICES (CONFIG_NETDEVICES=n)".into(),
            fix: crate::kernel::shipped::advice(
                "VIRTIO_NET",
                &["NETDEVICES".into()],
                &["base.config", "virtio.config"],
            ),
        };
        let e = KernelBuildError::Drift(vec![m]).to_string();
        let fix = e.find("fix: add kernel-configs/net.config").expect(&e);
        let hatch = e.find("--allow-config-drift").expect(&e);
        assert!(fix < hatch, "{e}");
        assert!(
            e.contains("CONFIG_VIRTIO_NET: asked y (virtio.config), got n"),
            "{e}"
        );
    }
}
