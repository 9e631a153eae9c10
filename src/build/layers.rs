//! The image tree, layer by layer. Each layer puts its part into the tree and, for what it
//! installs, its SBOM components; a later layer wins where two put the same path (recorded as
//! an override). Adding a kind of content (a filesystem format, wheels, npm packages) is adding
//! one entry to [`LAYERS`].

use stratos_wire as wire;

use super::{
    compile_seccomp, init_config, merge, preload_list, skeleton, BuildError, SECCOMP_FILTER_PATH,
};
use crate::arch::Arch;
use crate::kernel::{self, modules::ModuleIndex};
use crate::profile::Profile;
use crate::progress::Progress;
use crate::rootfs::overlay;
use crate::rootfs::{Budget, Entry, ImagePath, Origin, Tree};
use crate::sbom::{prop, ComponentSpec};
use crate::sign::manifest::SeccompInfo;
use crate::sign::sha256_hex;

/// What the layers read.
pub struct Inputs<'a> {
    pub profile: &'a Profile,
    pub kernel_image: kernel::KernelImage,
    /// The `stratos-init` executable.
    pub init: &'a [u8],
    /// Where packages come from (passed down from the CLI, never read from the environment).
    pub sources: &'a crate::packages::fetch::Sources,
    pub progress: &'a Progress,
}

/// What the layers build up.
#[derive(Default)]
pub struct Staging {
    pub tree: Tree,
    pub components: Vec<ComponentSpec>,
    /// Kernel modules the init loads, in dependency order.
    pub modules: Vec<wire::Module>,
    pub seccomp: Option<SeccompInfo>,
    pub preload: Vec<String>,
    /// `[runtime.go]`: what the Go layer built.
    pub go: Option<crate::sign::manifest::GoInfo>,
    /// `[runtime.cargo]`: what the Rust layer built.
    pub rust: Option<crate::sign::manifest::RustInfo>,
}

pub struct Layer {
    pub name: &'static str,
    pub apply: fn(&Inputs, &mut Staging) -> Result<(), BuildError>,
}

/// In order. What the init reads (its configuration, the seccomp filter, `/init` itself) comes
/// last, so nothing can shadow it.
pub const LAYERS: &[Layer] = &[
    Layer {
        name: "skeleton",
        apply: skeleton_layer,
    },
    Layer {
        name: "kernel modules",
        apply: modules_layer,
    },
    Layer {
        name: "Debian packages",
        apply: packages_layer,
    },
    Layer {
        name: "Python packages",
        apply: python_packages_layer,
    },
    Layer {
        name: "npm packages",
        apply: npm_packages_layer,
    },
    Layer {
        name: "Go function",
        apply: go_layer,
    },
    Layer {
        name: "Rust function",
        apply: cargo_layer,
    },
    Layer {
        name: "overlays",
        apply: overlays_layer,
    },
    Layer {
        name: "files",
        apply: files_layer,
    },
    Layer {
        name: "Python bytecode",
        apply: bytecode_layer,
    },
    Layer {
        name: "seccomp filter",
        apply: seccomp_layer,
    },
    Layer {
        name: "init configuration",
        apply: init_config_layer,
    },
    Layer {
        name: "init",
        apply: init_layer,
    },
];

fn budget(cx: &Inputs, st: &Staging) -> Budget {
    Budget {
        limits: cx.profile.image.limits,
        image_used: st.tree.content_bytes(),
    }
}

/// Mount points, device nodes, passwd, group, hostname.
fn skeleton_layer(cx: &Inputs, st: &mut Staging) -> Result<(), BuildError> {
    Ok(skeleton(&mut st.tree, cx.profile)?)
}

/// The modules the profile names, with their `modules.dep` closure, under
/// `/lib/modules/<release>`; they belong to the kernel's component.
fn modules_layer(cx: &Inputs, st: &mut Staging) -> Result<(), BuildError> {
    let k = &cx.profile.kernel;
    let Some(dir) = k.modules_dir.as_ref().filter(|_| !k.modules.is_empty()) else {
        return Ok(());
    };
    let kernel_err = |path: &std::path::Path, why: String| BuildError::Kernel {
        path: path.to_owned(),
        why,
    };
    let index = ModuleIndex::load(dir)?;
    // modules-dir may be a symlink (ci/setup makes one); the real name is the release.
    let real = std::fs::canonicalize(dir).map_err(|e| kernel_err(dir, e.to_string()))?;
    let release = real
        .file_name()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
        .unwrap_or("stratos")
        .to_owned();
    let base = ImagePath::parse(&format!("/lib/modules/{release}"))
        .map_err(|e| kernel_err(dir, e.to_string()))?;
    let origin = Origin::new("kernel");
    for m in index.closure(&k.modules, dir)? {
        let host = dir.join(&m.rel_path);
        let data = crate::fsio::read_file(&host, crate::fsio::caps::KERNEL_IMAGE, "a module")
            .map_err(|e| kernel_err(&host, e.to_string()))?;
        let mut dest = base.clone();
        for part in m.rel_path.split('/') {
            dest = dest
                .join(part)
                .map_err(|e| kernel_err(&host, e.to_string()))?;
        }
        st.tree.insert(&dest, Entry::file(data, 0o644, &origin))?;
        st.modules.push(wire::Module {
            name: m.name,
            path: dest.to_string(),
            params: String::new(),
        });
    }
    Ok(())
}

/// Exactly the packages of the lock, trimmed; one component each.
fn packages_layer(cx: &Inputs, st: &mut Staging) -> Result<(), BuildError> {
    let Some(pkgs) = &cx.profile.packages else {
        return Ok(());
    };
    let installed = crate::packages::install_locked(
        &mut st.tree,
        cx.profile,
        pkgs,
        cx.profile.image.arch,
        cx.sources,
        cx.progress,
    )?;
    st.components.extend(installed);
    Ok(())
}

/// `[packages.python]`: the pinned wheels, one component each.
fn python_packages_layer(cx: &Inputs, st: &mut Staging) -> Result<(), BuildError> {
    let Some(pkgs) = &cx.profile.packages else {
        return Ok(());
    };
    let installed = crate::packages::install_python(
        &mut st.tree,
        cx.profile,
        pkgs,
        cx.profile.image.arch,
        cx.sources,
        cx.progress,
    )?;
    st.components.extend(installed);
    Ok(())
}

/// `[packages.npm]`: the lock's packages, one component each.
fn npm_packages_layer(cx: &Inputs, st: &mut Staging) -> Result<(), BuildError> {
    let Some(pkgs) = &cx.profile.packages else {
        return Ok(());
    };
    let installed = crate::packages::install_npm(
        &mut st.tree,
        cx.profile,
        pkgs,
        Arch::X86_64,
        cx.sources,
        cx.progress,
    )?;
    st.components.extend(installed);
    Ok(())
}

/// `[runtime.go]`: the function compiled into one static binary (in the sandbox), its modules
/// and the standard library as components.
fn go_layer(cx: &Inputs, st: &mut Staging) -> Result<(), BuildError> {
    let installed =
        crate::packages::go::install_go(&mut st.tree, cx.profile, cx.sources, cx.progress)
            .map_err(crate::packages::PackageError::from)?;
    if let (Some((components, toolchain)), Some(spec)) = (installed, &cx.profile.go) {
        let module = components
            .iter()
            .find(|c| c.classification == "application")
            .map(|c| c.name.clone())
            .unwrap_or_default();
        st.components.extend(components);
        st.go = Some(crate::sign::manifest::GoInfo {
            module,
            toolchain,
            binary: spec.output.to_string(),
        });
    }
    Ok(())
}

/// `[runtime.cargo]`: the function compiled into one static binary (in the sandbox), its
/// crates and the standard library as components.
fn cargo_layer(cx: &Inputs, st: &mut Staging) -> Result<(), BuildError> {
    let installed =
        crate::packages::cargo::install_cargo(&mut st.tree, cx.profile, cx.sources, cx.progress)
            .map_err(crate::packages::PackageError::from)?;
    if let (Some((components, package, toolchain)), Some(spec)) = (installed, &cx.profile.cargo) {
        st.components.extend(components);
        st.rust = Some(crate::sign::manifest::RustInfo {
            package,
            toolchain,
            binary: spec.output.to_string(),
        });
    }
    Ok(())
}

/// Each overlay in order, digested on its own for its component.
fn overlays_layer(cx: &Inputs, st: &mut Staging) -> Result<(), BuildError> {
    let profile = cx.profile;
    for o in &profile.overlays {
        let origin = Origin::new(format!("overlay:{}", o.name));
        let mut layer = Tree::new();
        overlay::load_overlay(
            &mut layer,
            &o.source,
            &o.target,
            &origin,
            o.uid,
            o.gid,
            budget(cx, st),
        )?;
        let digest = Tree::digest_entries(layer.iter().filter(|(p, _)| !p.is_root()));
        merge(&mut st.tree, layer)?;
        st.components.push(ComponentSpec {
            bom_ref: origin.to_string(),
            classification: "data",
            name: o.name.clone(),
            version: profile.image.version.clone(),
            description: Some(format!("overlay directory {} at {}", o.name, o.target)),
            purl: None,
            license: None,
            sha256: hex::encode(digest),
            files: Vec::new(),
            properties: vec![(prop::ORIGIN.into(), "overlay".into())],
            depends_on: Vec::new(),
        });
    }
    Ok(())
}

/// `[[file]]` entries, one component each.
fn files_layer(cx: &Inputs, st: &mut Staging) -> Result<(), BuildError> {
    let profile = cx.profile;
    for f in &profile.files {
        let origin = Origin::new(format!("file:{}", f.dest));
        let b = budget(cx, st);
        let (data, mode) = overlay::read_host_file(&f.source, b.limits, b.image_used)?;
        let sha = sha256_hex(&data);
        st.tree.insert(
            &f.dest,
            Entry::file(data, f.mode.unwrap_or(mode), &origin).owned_by(f.uid, f.gid),
        )?;
        st.components.push(ComponentSpec {
            bom_ref: origin.to_string(),
            classification: "file",
            name: f.dest.to_string(),
            version: profile.image.version.clone(),
            description: Some(format!(
                "host file {}",
                f.source.file_name().and_then(|s| s.to_str()).unwrap_or("")
            )),
            purl: None,
            license: None,
            sha256: sha,
            files: Vec::new(),
            properties: vec![(prop::ORIGIN.into(), "file".into())],
            depends_on: Vec::new(),
        });
    }
    Ok(())
}

/// Bytecode for every `.py` the layers above put in the image, owned by their components.
fn bytecode_layer(cx: &Inputs, st: &mut Staging) -> Result<(), BuildError> {
    let Some(py) = cx.profile.python.as_ref().filter(|p| p.bytecode) else {
        return Ok(());
    };
    let c =
        crate::packages::bytecode::compile(&mut st.tree, &py.interpreter, cx.profile.image.arch)?;
    cx.progress.info(format!(
        "bytecode: {} modules compiled with the image's {} ({}, {} KiB)",
        c.sources,
        py.interpreter,
        c.cache_tag,
        c.bytes / 1024
    ));
    Ok(())
}

/// The profile's seccomp baseline, compiled for the image's runtime and kernel.
fn seccomp_layer(cx: &Inputs, st: &mut Staging) -> Result<(), BuildError> {
    let profile = cx.profile;
    let Some(spec) = &profile.seccomp else {
        return Ok(());
    };
    let target = crate::seccomp::Target::new(
        profile.image.arch,
        profile.init.uid,
        cx.kernel_image.version.as_deref(),
    );
    // Its note on calls the architecture lacks was printed by the preflight.
    let super::CompiledSeccomp { bytes, info, .. } = compile_seccomp(spec, &target)?;
    st.tree.insert(
        &ImagePath::parse(SECCOMP_FILTER_PATH).expect("static path"),
        Entry::file(bytes, 0o644, &Origin::new("seccomp")),
    )?;
    st.components.push(ComponentSpec {
        bom_ref: "seccomp".into(),
        classification: "data",
        name: "seccomp-baseline".into(),
        version: profile.image.version.clone(),
        description: Some(format!(
            "seccomp filter compiled from {} ({} mode, {} instructions)",
            info.policy, info.mode, info.instructions
        )),
        purl: None,
        license: None,
        sha256: info.filter_sha256.to_string(),
        files: Vec::new(),
        properties: vec![
            (prop::SECCOMP_POLICY.into(), info.policy.clone()),
            (
                prop::SECCOMP_POLICY_SHA256.into(),
                info.policy_sha256.to_string(),
            ),
            (prop::SECCOMP_MODE.into(), info.mode.to_string()),
        ],
        depends_on: Vec::new(),
    });
    st.seccomp = Some(info);
    Ok(())
}

/// `/etc/stratos/init.json`, with the preload list (the runtime's closure, computed from the
/// tree as it now is).
fn init_config_layer(cx: &Inputs, st: &mut Staging) -> Result<(), BuildError> {
    st.preload = preload_list(cx.profile, &st.tree)?;
    let mut config = init_config(cx.profile, st.modules.clone(), st.preload.clone());
    config.seccomp = cx.profile.seccomp.as_ref().map(|s| wire::Seccomp {
        filter: SECCOMP_FILTER_PATH.into(),
        mode: match s.mode {
            crate::profile::SeccompMode::Enforce => wire::SeccompMode::Enforce,
            crate::profile::SeccompMode::Log => wire::SeccompMode::Log,
        },
    });
    st.tree.insert(
        &ImagePath::parse(wire::CONFIG_PATH).expect("static path"),
        Entry::file(config.to_json(), 0o644, &Origin::new("generated")),
    )?;
    Ok(())
}

/// `/init` itself.
fn init_layer(cx: &Inputs, st: &mut Staging) -> Result<(), BuildError> {
    st.tree.insert(
        &ImagePath::parse("/init").expect("static path"),
        Entry::file(cx.init.to_vec(), 0o755, &Origin::new("init")),
    )?;
    Ok(())
}
