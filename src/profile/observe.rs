//! `[observe]`: what the init observes of the runtime with eBPF.

use super::spanned::Spanned;

use super::{Ctx, ProfileError};

/// `[observe]`: what the init observes of the runtime with eBPF.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawObserve {
    #[serde(default)]
    pub syscalls: Option<Spanned<bool>>,
    #[serde(default)]
    pub latency: Option<Spanned<bool>>,
}

/// `[observe]`: `syscalls = true` counts the runtime's system calls, `latency = true` also
/// times them. Nothing on: `None`.
pub(super) fn validate_observe(
    cx: &Ctx,
    o: RawObserve,
) -> Result<Option<stratos_wire::Observe>, ProfileError> {
    let syscalls = o.syscalls.as_ref().is_some_and(|s| *s.get_ref());
    let latency = o.latency.as_ref().is_some_and(|l| *l.get_ref());
    if let (false, Some(l)) = (syscalls, &o.latency) {
        if latency {
            return Err(cx.at(
                l.span(),
                "observe.latency",
                "times system calls, which needs them counted: add syscalls = true to [observe]",
            ));
        }
    }
    Ok(syscalls.then_some(stratos_wire::Observe { syscalls, latency }))
}

#[cfg(test)]
mod tests {
    use crate::profile::tests::{Fixture, BASE};

    #[test]
    fn latency_needs_syscalls_counted() {
        let f = Fixture::new();
        let e = f.err(&format!("{BASE}[observe]\nlatency = true\n"));
        assert!(e.contains("observe.latency"), "{e}");
        let p = f
            .parse(&format!("{BASE}[observe]\nsyscalls = true\n"))
            .unwrap();
        let o = p.observe.unwrap();
        assert!(o.syscalls && !o.latency);
        let p = f.parse(&format!("{BASE}[observe]\n")).unwrap();
        assert!(p.observe.is_none());
    }
}
