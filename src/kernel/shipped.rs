//! The config fragments shipped in `kernel-configs/`, compiled in: when an option a profile
//! asks for stays off because a symbol it depends on is off, the config check names the
//! shipped fragment that turns that symbol on (`virtio.config` asks for `VIRTIO_NET`, which
//! needs `NETDEVICES`: "add kernel-configs/net.config").

use super::config::{Config, Value};

/// Each shipped fragment: its file name and text.
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "arm64-virt.config",
        include_str!("../../kernel-configs/arm64-virt.config"),
    ),
    (
        "base.config",
        include_str!("../../kernel-configs/base.config"),
    ),
    (
        "cgroups.config",
        include_str!("../../kernel-configs/cgroups.config"),
    ),
    (
        "debug.config",
        include_str!("../../kernel-configs/debug.config"),
    ),
    (
        "entropy.config",
        include_str!("../../kernel-configs/entropy.config"),
    ),
    (
        "erofs-verity.config",
        include_str!("../../kernel-configs/erofs-verity.config"),
    ),
    (
        "net.config",
        include_str!("../../kernel-configs/net.config"),
    ),
    (
        "observability.config",
        include_str!("../../kernel-configs/observability.config"),
    ),
    (
        "seccomp.config",
        include_str!("../../kernel-configs/seccomp.config"),
    ),
    (
        "serial-console.config",
        include_str!("../../kernel-configs/serial-console.config"),
    ),
    (
        "virtio.config",
        include_str!("../../kernel-configs/virtio.config"),
    ),
    (
        "x86-microvm.config",
        include_str!("../../kernel-configs/x86-microvm.config"),
    ),
    (
        "zram.config",
        include_str!("../../kernel-configs/zram.config"),
    ),
];

/// The shipped fragments not in `in_use` (file names) that turn `symbol` on (`y` or `m`).
/// `debug.config` is never proposed: it is for debugging, not a dependency to build on.
pub fn providers(symbol: &str, in_use: &[&str]) -> Vec<&'static str> {
    SHIPPED
        .iter()
        .filter(|(name, _)| *name != "debug.config" && !in_use.contains(name))
        .filter(|(_, text)| {
            Config::parse(text)
                .is_ok_and(|c| matches!(c.get(symbol), Some(Value::Yes | Value::Module)))
        })
        .map(|(name, _)| *name)
        .collect()
}

/// What to add so that `option` can come out on, given the symbols it waits for (`unmet`,
/// from [`super::kconfig::Kconfig::unmet_symbols`]) and the fragments the profile uses (file
/// names): "add kernel-configs/net.config to [kernel] fragments: it sets CONFIG_NETDEVICES,
/// which CONFIG_VIRTIO_NET depends on". `None` when no shipped fragment sets any of them.
pub fn advice(option: &str, unmet: &[String], in_use: &[&str]) -> Option<String> {
    let mut by_fragment: Vec<(&str, Vec<&str>)> = Vec::new();
    for s in unmet {
        // One fragment per symbol (the first in name order) is enough to say.
        if let Some(f) = providers(s, in_use).first() {
            match by_fragment.iter_mut().find(|(name, _)| name == f) {
                Some((_, syms)) => syms.push(s),
                None => by_fragment.push((f, vec![s])),
            }
        }
    }
    if by_fragment.is_empty() {
        return None;
    }
    let sets = |syms: &[&str]| {
        let names: Vec<String> = syms.iter().map(|s| format!("CONFIG_{s}")).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => names.join(""),
        }
    };
    if let [(f, syms)] = by_fragment.as_slice() {
        return Some(format!(
            "add kernel-configs/{f} to [kernel] fragments: it sets {}, which CONFIG_{option} depends on",
            sets(syms)
        ));
    }
    let parts: Vec<String> = by_fragment
        .iter()
        .map(|(f, syms)| format!("kernel-configs/{f} (sets {})", sets(syms)))
        .collect();
    Some(format!(
        "add {} to [kernel] fragments: CONFIG_{option} depends on what they set",
        parts.join(" and ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_fragment_is_compiled_in_and_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernel-configs");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".config"))
            .collect();
        on_disk.sort();
        let compiled: Vec<&str> = SHIPPED.iter().map(|(n, _)| *n).collect();
        assert_eq!(on_disk, compiled);
        for (name, text) in SHIPPED {
            assert!(Config::parse(text).is_ok(), "{name}");
        }
    }

    #[test]
    fn names_the_fragment_that_provides_an_unmet_dependency() {
        // The docs' old example: base + virtio, where VIRTIO_NET waits for NETDEVICES.
        let unmet = vec!["NETDEVICES".to_owned()];
        let a = advice("VIRTIO_NET", &unmet, &["base.config", "virtio.config"]).unwrap();
        assert_eq!(
            a,
            "add kernel-configs/net.config to [kernel] fragments: it sets CONFIG_NETDEVICES, which CONFIG_VIRTIO_NET depends on"
        );
        // Two symbols from one fragment (what 6.1's VIRTIO_NET waits for without net.config).
        let unmet = vec!["NETDEVICES".to_owned(), "NET_CORE".to_owned()];
        let a = advice("VIRTIO_NET", &unmet, &["base.config", "virtio.config"]).unwrap();
        assert_eq!(
            a,
            "add kernel-configs/net.config to [kernel] fragments: it sets CONFIG_NETDEVICES and CONFIG_NET_CORE, which CONFIG_VIRTIO_NET depends on"
        );
        // Two symbols from two fragments.
        let unmet = vec!["NETDEVICES".to_owned(), "VIRTIO_MMIO".to_owned()];
        let a = advice("X", &unmet, &["base.config"]).unwrap();
        assert!(
            a.contains("kernel-configs/net.config (sets CONFIG_NETDEVICES)"),
            "{a}"
        );
        assert!(
            a.contains("kernel-configs/virtio.config (sets CONFIG_VIRTIO_MMIO)"),
            "{a}"
        );
        // Already in the profile, or set by no shipped fragment: nothing to say.
        let unmet = vec!["NETDEVICES".to_owned()];
        assert_eq!(advice("VIRTIO_NET", &unmet, &["net.config"]), None);
        assert_eq!(advice("Y", &["NO_SUCH_SYMBOL".to_owned()], &[]), None);
    }
}
