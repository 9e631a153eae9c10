//! `[seccomp]`: an OCI/Docker seccomp policy compiled at build time, enforced or logged.

use std::path::{Path, PathBuf};

use super::spanned::Spanned;

use super::checks::{choice, existing_file};
use super::{Ctx, Named, ProfileError};

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawSeccomp {
    pub policy: Spanned<String>,
    #[serde(default)]
    pub mode: Option<Spanned<String>>,
}

/// `[seccomp]`: an OCI/Docker seccomp policy compiled at build time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompSpec {
    pub policy: PathBuf,
    pub mode: SeccompMode,
}

/// `[seccomp] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeccompMode {
    /// Denied calls get the policy's action.
    Enforce,
    /// Denied calls are allowed and reported (for deriving a baseline).
    Log,
}

impl Named for SeccompMode {
    const ALL: &'static [(&'static str, Self)] =
        &[("enforce", SeccompMode::Enforce), ("log", SeccompMode::Log)];
}

/// `[seccomp]`.
pub(super) fn validate_seccomp(
    cx: &Ctx,
    s: &RawSeccomp,
    dir: &Path,
) -> Result<SeccompSpec, ProfileError> {
    Ok(SeccompSpec {
        policy: existing_file(cx, dir, &s.policy, "seccomp.policy")?,
        mode: choice(cx, s.mode.as_ref(), "seccomp.mode")?,
    })
}

#[cfg(test)]
mod tests {
    use super::SeccompMode;
    use crate::profile::tests::{Fixture, BASE};

    #[test]
    fn mode_defaults_to_enforce() {
        let f = Fixture::new();
        let p = f
            .parse(&format!("{BASE}[seccomp]\npolicy = \"motd\"\n"))
            .unwrap();
        assert_eq!(p.seccomp.unwrap().mode, SeccompMode::Enforce);
        let e = f.err(&format!(
            "{BASE}[seccomp]\npolicy = \"motd\"\nmode = \"audit\"\n"
        ));
        assert!(e.contains("seccomp.mode"), "{e}");
    }
}
