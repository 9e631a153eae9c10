//! The image configuration: how a container runtime starts the function, from the init
//! configuration the builder generated into the image (`/etc/stratos/init.json`, the profile's
//! `[init]`). The function runs as the init would start it, without the init itself.

use oci_spec::image::{
    Arch, ConfigBuilder, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder, Os,
    RootFsBuilder,
};
use stratos_wire::{InitConfig, Readiness};

use crate::sign::Manifest;

/// The init configuration the builder generated into the tree (`/etc/stratos/init.json`).
pub(super) fn init_of(tree: &crate::rootfs::Tree) -> Result<InitConfig, String> {
    use crate::rootfs::{ImagePath, Kind};
    let path = ImagePath::parse(stratos_wire::CONFIG_PATH).expect("a valid in-image path");
    match tree.get(&path).map(|e| &e.kind) {
        Some(Kind::File(data)) => serde_json::from_slice(data).map_err(|e| e.to_string()),
        Some(other) => Err(format!("it is a {}", other.name())),
        None => Err("it is missing".into()),
    }
}

/// The TCP port the function listens on: the readiness check's port, else `$PORT`.
pub(super) fn port(init: &InitConfig) -> Option<u16> {
    if let Some(Readiness::Tcp { port, .. }) = init.readiness {
        return Some(port);
    }
    init.runtime
        .env
        .iter()
        .find(|(k, _)| k == "PORT")
        .and_then(|(_, v)| v.parse().ok())
}

/// The OCI architecture name of the image's architecture.
pub(super) fn arch(m: &Manifest) -> Arch {
    Arch::from(m.image.arch.debian())
}

/// The configuration of an image whose one layer has `diff_id` (`sha256:<hex>` of the
/// uncompressed tar).
pub(super) fn image_config(init: &InitConfig, m: &Manifest, diff_id: &str) -> ImageConfiguration {
    let rt = &init.runtime;
    let created = crate::sbom::rfc3339(m.source_date_epoch);
    let mut config = ConfigBuilder::default()
        .entrypoint(rt.argv.clone())
        .env(
            rt.env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        )
        .working_dir(rt.cwd.clone())
        .user(format!("{}:{}", rt.uid, rt.gid))
        .stop_signal("SIGTERM")
        .labels(
            [
                (
                    oci_spec::image::ANNOTATION_TITLE.to_owned(),
                    m.image.name.clone(),
                ),
                (
                    oci_spec::image::ANNOTATION_VERSION.to_owned(),
                    m.image.version.clone(),
                ),
            ]
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>(),
        )
        .build()
        .expect("every field is optional");
    if let Some(p) = port(init) {
        config.set_exposed_ports(Some(vec![format!("{p}/tcp")]));
    }
    ImageConfigurationBuilder::default()
        .created(created.clone())
        .architecture(arch(m))
        .os(Os::Linux)
        .config(config)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![diff_id.to_owned()])
                .build()
                .expect("every required field is set"),
        )
        .history(vec![HistoryBuilder::default()
            .created(created)
            .created_by(format!(
                "stratos build {} ({} {})",
                m.profile.file, m.builder.name, m.builder.version
            ))
            .comment("the image's root tree: the files of rootfs.tar.zst")
            .build()
            .expect("every field is optional")])
        .build()
        .expect("every required field is set")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init(env: &[(&str, &str)], readiness: Option<Readiness>) -> InitConfig {
        let mut c: InitConfig = serde_json::from_value(serde_json::json!({
            "format": 1,
            "hostname": "fn",
            "runtime": {"argv": ["/usr/bin/python3.11", "/srv/fn/handler.py"], "env": [],
                        "cwd": "/srv/fn", "uid": 1000, "gid": 1001}
        }))
        .unwrap();
        c.runtime.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        c.readiness = readiness;
        c
    }

    #[test]
    fn the_port_is_the_readiness_port_else_port_from_the_environment() {
        let tcp = Readiness::Tcp {
            port: 9000,
            timeout_ms: 1,
        };
        assert_eq!(port(&init(&[("PORT", "8080")], Some(tcp))), Some(9000));
        assert_eq!(port(&init(&[("PORT", "8080")], None)), Some(8080));
        assert_eq!(port(&init(&[("PORT", "http")], None)), None);
        assert_eq!(port(&init(&[], None)), None);
    }

    #[test]
    fn the_config_runs_the_init_s_runtime_as_its_user() {
        let m: Manifest =
            serde_json::from_slice(include_bytes!("../../../tests/fixtures/oci/manifest.json"))
                .unwrap();
        let c = image_config(&init(&[("PORT", "8080")], None), &m, "sha256:00");
        let j = serde_json::to_value(&c).unwrap();
        assert_eq!(j["config"]["Entrypoint"][1], "/srv/fn/handler.py");
        assert_eq!(j["config"]["User"], "1000:1001");
        assert_eq!(j["config"]["WorkingDir"], "/srv/fn");
        assert_eq!(j["config"]["Env"][0], "PORT=8080");
        assert_eq!(
            j["config"]["ExposedPorts"],
            serde_json::json!({"8080/tcp": {}})
        );
        assert_eq!(j["created"], "2025-01-01T00:00:00Z");
        assert_eq!(j["architecture"], "amd64");
        assert_eq!(j["os"], "linux");
        assert_eq!(j["rootfs"]["diff_ids"][0], "sha256:00");
    }
}
