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
    #[error("the resolved kernel config does not hold what the fragments ask for ({} option(s)); pass --allow-config-drift to build anyway:\n{}", .0.len(), render_mismatches(.0))]
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
}

pub fn render_mismatches(ms: &[Mismatch]) -> String {
    ms.iter()
        .map(|m| {
            format!(
                "  CONFIG_{}: asked {} ({}), got {}: {}",
                m.option, m.asked, m.fragment, m.got, m.why
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(super) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> KernelBuildError {
    let what = what.into();
    move |source| KernelBuildError::Io { what, source }
}
