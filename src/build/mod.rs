//! The image pipeline: profile → tree → archives → SBOM → manifest → signature → output dir.

pub mod init_binary;
pub mod layers;
pub mod output;
mod preflight;
mod prepare;

use std::path::PathBuf;

use stratos_wire as wire;

use crate::archive;
use crate::kernel;
use crate::packages::elf;
use crate::profile::{KernelFormat, Named, Profile, RootFormat, ZramSize};
use crate::progress::Progress;
use crate::rootfs::overlay::OverlayError;
use crate::rootfs::{Entry, ImagePath, Kind, Origin, Tree, TreeError};
use crate::sbom::{self, prop, ComponentSpec};
use crate::sign::manifest::{
    Artifact, ArtifactName, BuilderInfo, Compression, ImageInfo, KernelInfo, Manifest, ProfileInfo,
    FORMAT, MANIFEST_FILE, SIGNATURE_FILE,
};
use crate::sign::{sha256_hex, KeyId, SecretKey};

pub use crate::image::{
    EROFS_ARTIFACT, INITRAMFS_ARTIFACT, KERNEL_ARTIFACT, KERNEL_CONFIG_ARTIFACT, ROOTFS_ARTIFACT,
    SBOM_ARTIFACT,
};
pub use preflight::{check, preflight, Checked};
pub use prepare::{check_kernel_features, prepare_kernel, PreparedKernel, OBSERVE_OPTIONS};

pub const BUILDER_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("kernel {path}: {why}")]
    Kernel { path: PathBuf, why: String },
    #[error(transparent)]
    Modules(#[from] kernel::modules::ModuleError),
    #[error(transparent)]
    KernelBuild(#[from] kernel::build::KernelBuildError),
    #[error(transparent)]
    Init(#[from] init_binary::InitBinaryError),
    #[error(transparent)]
    Packages(#[from] crate::packages::PackageError),
    #[error(transparent)]
    Bytecode(#[from] crate::packages::bytecode::BytecodeError),
    #[error("building the archives: {0}")]
    Archive(#[from] archive::ArchiveError),
    #[error(transparent)]
    Sbom(#[from] sbom::SbomError),
    #[error(transparent)]
    Output(#[from] output::OutputError),
    #[error("seccomp policy {0}")]
    Seccomp(String),
    #[error("the runtime: {0}")]
    Runtime(String),
    #[error("the runtime: {0}")]
    Closure(#[from] elf::ElfError),
    #[error("internal error: {path} comes from {origin}, which has no SBOM component")]
    Orphan { path: String, origin: String },
}

impl BuildError {
    /// A failure of the machine (a tool, the cache, the file system), not of the profile or
    /// its inputs: exit 3 rather than 2.
    pub fn is_environment(&self) -> bool {
        match self {
            Self::KernelBuild(e) => e.is_environment(),
            Self::Packages(e) => e.is_environment(),
            Self::Archive(archive::ArchiveError::Io(_)) => true,
            Self::Bytecode(e) => e.is_environment(),
            Self::Init(init_binary::InitBinaryError::NotFound { .. }) => true,
            _ => false,
        }
    }
}

/// What the build needs besides the profile.
pub struct BuildOptions<'a> {
    pub out: PathBuf,
    pub sign_key: Option<&'a SecretKey>,
    /// The `stratos-init` executable that becomes `/init`.
    pub init_binary: PathBuf,
    /// Build a kernel whose resolved config does not hold what the fragments ask (warns).
    pub allow_config_drift: bool,
    /// Where packages come from (the cache, the prefetch folder, whether to download): the
    /// cache is also where kernels are built into and compressed archives reused from.
    pub sources: crate::packages::fetch::Sources,
    /// `--dev`: fast compression ([`archive::zst::DEV_LEVEL`]) for local iteration; the
    /// manifest and the SBOM say the image is not for release, and `publish` refuses it.
    pub dev: bool,
}

impl BuildOptions<'_> {
    /// The zstd level of the archives.
    pub fn level(&self) -> i32 {
        if self.dev {
            archive::zst::DEV_LEVEL
        } else {
            archive::zst::LEVEL
        }
    }
}

/// What was built.
#[derive(Debug)]
pub struct BuildResult {
    pub out: PathBuf,
    pub manifest: Manifest,
    pub signed_by: Option<KeyId>,
    pub files: usize,
    pub overrides: Vec<crate::rootfs::Override>,
}

/// The image contents before they are written.
pub struct Assembly {
    pub tree: Tree,
    pub components: Vec<ComponentSpec>,
    pub kernel_image: kernel::KernelImage,
    pub seccomp: Option<crate::sign::manifest::SeccompInfo>,
    pub preload: Vec<String>,
    pub go: Option<crate::sign::manifest::GoInfo>,
    pub rust: Option<crate::sign::manifest::RustInfo>,
}

/// Where the compiled seccomp filter goes in the image.
pub const SECCOMP_FILTER_PATH: &str = "/etc/stratos/seccomp.bpf";

/// The profile's seccomp policy, compiled.
pub struct CompiledSeccomp {
    /// The filter, as the init reads it.
    pub bytes: Vec<u8>,
    /// What the manifest says of it.
    pub info: crate::sign::manifest::SeccompInfo,
    /// The calls the policy names that the image's architecture does not have, left out (see
    /// [`crate::seccomp::Policy::skipped_note`]): a warning for the build to print.
    pub note: Option<String>,
}

/// Compiles the profile's seccomp policy for `target`'s architecture and runtime.
pub fn compile_seccomp(
    spec: &crate::profile::SeccompSpec,
    target: &crate::seccomp::Target,
) -> Result<CompiledSeccomp, BuildError> {
    let path = spec.policy.display().to_string();
    let text = crate::fsio::read_text(
        &spec.policy,
        crate::fsio::caps::SECCOMP_POLICY,
        "a seccomp policy",
    )
    .map_err(|e| BuildError::Seccomp(e.to_string()))?;
    let policy = crate::seccomp::Policy::parse_for(&text, &path, target)
        .map_err(|e| BuildError::Seccomp(e.to_string()))?;
    let policy = if spec.mode == crate::profile::SeccompMode::Log {
        policy.log_mode()
    } else {
        policy
    };
    let prog = crate::seccomp::compile(&policy)
        .map_err(|e| BuildError::Seccomp(format!("{path}: {e}")))?;
    let bytes = crate::seccomp::to_bytes(&prog);
    let info = crate::sign::manifest::SeccompInfo {
        policy: spec
            .policy
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("policy.json")
            .to_owned(),
        policy_sha256: crate::digest::Sha256::of(text.as_bytes()),
        filter: SECCOMP_FILTER_PATH.to_owned(),
        filter_sha256: crate::digest::Sha256::of(&bytes),
        instructions: prog.len() as u64,
        mode: spec.mode,
    };
    Ok(CompiledSeccomp {
        bytes,
        info,
        note: policy.skipped_note(&path),
    })
}

/// The files the init warms at boot: the runtime's executable with its interpreter and
/// shared-library closure (see [`elf::closure`]), then the profile's `preload` paths (and their
/// closures, for binaries). Symlinks are resolved inside the image.
pub fn preload_list(profile: &Profile, tree: &Tree) -> Result<Vec<String>, BuildError> {
    let runtime =
        ImagePath::parse(&profile.init.argv[0]).map_err(|e| BuildError::Runtime(e.to_string()))?;
    // The closure is always computed: a runtime missing a library fails the build either way.
    let closure = elf::closure(tree, std::slice::from_ref(&runtime), profile.image.arch)?;
    let mut files = if profile.init.preload_runtime {
        closure
    } else {
        Vec::new()
    };
    for p in elf::closure(tree, &profile.init.preload, profile.image.arch)? {
        if !files.contains(&p) {
            files.push(p);
        }
    }
    Ok(files.iter().map(ToString::to_string).collect())
}

fn origin_files(tree: &Tree, origin: &str) -> Vec<String> {
    tree.iter()
        .filter(|(_, e)| e.origin.as_str() == origin)
        .map(|(p, _)| p.to_string())
        .collect()
}

/// `/etc/passwd`, `/etc/group`, `/etc/hostname`, the mount points and the two device nodes the
/// kernel needs before devtmpfs is mounted.
fn skeleton(tree: &mut Tree, profile: &Profile) -> Result<(), TreeError> {
    let g = Origin::new("generated");
    let p = |s: &str| ImagePath::parse(s).expect("static path");
    for (dir, mode) in [
        ("/dev", 0o755),
        ("/etc", 0o755),
        ("/proc", 0o555),
        ("/root", 0o700),
        ("/run", 0o755),
        ("/sys", 0o555),
        ("/tmp", 0o1777),
    ] {
        tree.insert(&p(dir), Entry::dir(mode, &g))?;
    }
    tree.insert(
        &p("/dev/console"),
        Entry::new(Kind::CharDevice { major: 5, minor: 1 }, 0o600, &g),
    )?;
    tree.insert(
        &p("/dev/null"),
        Entry::new(Kind::CharDevice { major: 1, minor: 3 }, 0o666, &g),
    )?;
    let (uid, gid) = (profile.init.uid, profile.init.gid);
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
    let mut group = String::from("root:x:0:\n");
    if uid != 0 {
        passwd.push_str(&format!(
            "function:x:{uid}:{gid}:function runtime:/:/nonexistent\n"
        ));
    }
    if gid != 0 {
        group.push_str(&format!("function:x:{gid}:\n"));
    }
    tree.insert(
        &p("/etc/passwd"),
        Entry::file(passwd.into_bytes(), 0o644, &g),
    )?;
    tree.insert(&p("/etc/group"), Entry::file(group.into_bytes(), 0o644, &g))?;
    tree.insert(
        &p("/etc/hostname"),
        Entry::file(
            format!("{}\n", profile.image.hostname).into_bytes(),
            0o644,
            &g,
        ),
    )?;
    Ok(())
}

/// Merges `layer` (everything but its root) into `tree`.
fn merge(tree: &mut Tree, layer: Tree) -> Result<(), TreeError> {
    for (path, entry) in layer.iter() {
        if !path.is_root() {
            tree.insert(path, entry.clone())?;
        }
    }
    Ok(())
}

/// The init's configuration, generated from the profile.
pub fn init_config(
    profile: &Profile,
    modules: Vec<wire::Module>,
    preload: Vec<String>,
) -> wire::InitConfig {
    let mut env: Vec<(String, String)> = profile
        .init
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !profile.init.env.contains_key("PATH") {
        env.push((
            "PATH".into(),
            "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into(),
        ));
    }
    env.sort();
    wire::InitConfig {
        format: wire::CONFIG_FORMAT,
        hostname: profile.image.hostname.clone(),
        runtime: wire::Runtime {
            argv: profile.init.argv.clone(),
            env,
            cwd: profile.init.cwd.to_string(),
            uid: profile.init.uid,
            gid: profile.init.gid,
        },
        modules,
        network: profile.network.as_ref().map(|n| wire::Network {
            interface: n.interface.clone(),
            address: n.address,
            prefix_len: n.prefix_len,
            gateway: n.gateway,
        }),
        tmpfs: profile.init.tmpfs.clone(),
        sysctl: profile
            .sysctl
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        zram: profile.zram.as_ref().map(|z| wire::Zram {
            size: match z.size {
                ZramSize::Bytes(b) => wire::ZramSize::Bytes(b),
                ZramSize::PercentOfRam(p) => wire::ZramSize::PercentOfRam(p),
            },
            algorithm: z.algorithm.clone(),
            priority: z.priority,
            required: z.required,
        }),
        readiness: profile.init.readiness.clone(),
        restart: profile.init.restart.clone(),
        stop_timeout_ms: profile.init.stop_timeout_ms,
        limits: profile.init.limits.clone(),
        read_only_root: profile.init.read_only_root,
        preload,
        stdio: profile.init.stdio,
        seccomp: None,
        on_restore: profile.init.on_restore,
        observe: profile.observe,
        lambda: profile.init.lambda.as_ref().map(|l| wire::Lambda {
            api_port: crate::profile::LAMBDA_API_PORT,
            invoke_port: l.port,
            timeout_ms: l.timeout_ms,
            function_name: l
                .function_name
                .clone()
                .unwrap_or_else(|| profile.image.hostname.clone()),
            handler: l.handler.clone(),
            task_root: l.task_root.to_string(),
        }),
    }
}

/// Builds the image contents in memory: every [`layers::LAYERS`] entry in order, then the
/// components of what the layers did not install themselves (kernel, init, generated files),
/// then every entry of the tree attributed to exactly one component. Reads the host (profile
/// inputs) but writes nothing.
pub fn assemble(
    profile: &Profile,
    kern: &PreparedKernel,
    init: &[u8],
    sources: &crate::packages::fetch::Sources,
    progress: &Progress,
) -> Result<Assembly, BuildError> {
    let kernel_image = kernel::inspect_image(&kern.image).map_err(|e| BuildError::Kernel {
        path: kern.path.clone(),
        why: e.0,
    })?;
    // A kernel of another architecture (a prebuilt one, say) would not boot the image.
    let arch = profile.image.arch;
    if let Some(format) = KernelFormat::from_name(kernel_image.format) {
        if format.arch() != arch {
            return Err(BuildError::Kernel {
                path: kern.path.clone(),
                why: format!(
                    "is an {} kernel ({}), and this image is {}: give the {} kernel as [kernel.{}] prebuilt = \"...\"",
                    format.arch().name(),
                    kernel_image.format,
                    arch.name(),
                    arch.name(),
                    arch.name()
                ),
            });
        }
    }
    let cx = layers::Inputs {
        profile,
        kernel_image,
        init,
        sources,
        progress,
    };
    let mut st = layers::Staging::default();
    for layer in layers::LAYERS {
        let step = progress.step(format!("layer: {}", layer.name));
        (layer.apply)(&cx, &mut st)?;
        step.done();
    }
    st.tree.check_links()?;
    st.components.push(kernel_component(kern, &cx.kernel_image));
    st.components.push(init_component(init));
    st.components.push(generated_component(profile, &st.tree));
    attribute_files(&st.tree, &mut st.components)?;
    Ok(Assembly {
        tree: st.tree,
        components: st.components,
        kernel_image: cx.kernel_image,
        seccomp: st.seccomp,
        preload: st.preload,
        go: st.go,
        rust: st.rust,
    })
}

fn kernel_component(kern: &PreparedKernel, image: &kernel::KernelImage) -> ComponentSpec {
    let mut props = vec![
        (prop::ARTIFACT.to_owned(), KERNEL_ARTIFACT.to_owned()),
        (prop::KERNEL_FORMAT.to_owned(), image.format.to_owned()),
        (prop::KERNEL_ORIGIN.to_owned(), kern.origin.to_string()),
    ];
    if let Some(cfg) = &kern.config {
        props.push((prop::CONFIG_SHA256.into(), sha256_hex(cfg)));
    }
    if let Some(src) = &kern.source_sha256 {
        props.push((prop::SOURCE_SHA256.into(), src.to_string()));
    }
    ComponentSpec {
        bom_ref: "kernel".into(),
        classification: "operating-system",
        name: "linux".into(),
        version: image.version.clone().unwrap_or_else(|| "unknown".into()),
        description: Some("Linux kernel image and the modules the image loads".into()),
        purl: None,
        license: Some("GPL-2.0-only".into()),
        sha256: sha256_hex(&kern.image),
        files: Vec::new(),
        properties: props,
        depends_on: Vec::new(),
    }
}

fn init_component(init: &[u8]) -> ComponentSpec {
    ComponentSpec {
        bom_ref: "init".into(),
        classification: "application",
        name: "stratos-init".into(),
        version: BUILDER_VERSION.into(),
        description: Some("StratOS PID 1".into()),
        purl: None,
        license: Some("Apache-2.0".into()),
        sha256: sha256_hex(init),
        files: Vec::new(),
        properties: Vec::new(),
        depends_on: Vec::new(),
    }
}

fn generated_component(profile: &Profile, tree: &Tree) -> ComponentSpec {
    let g = Origin::new("generated");
    let generated: Vec<_> = tree.iter().filter(|(_, e)| e.origin == g).collect();
    ComponentSpec {
        bom_ref: "generated".into(),
        classification: "data",
        name: "stratos-generated".into(),
        version: profile.image.version.clone(),
        description: Some("files the builder generates: init config, passwd, group, hostname, mount points, device nodes".into()),
        purl: None,
        license: None,
        sha256: hex::encode(Tree::digest_entries(generated)),
        files: Vec::new(),
        properties: Vec::new(),
        depends_on: Vec::new(),
    }
}

/// Every entry of the final tree goes to the component of its origin, with the paths it took
/// over from another; an entry whose origin has no component is a builder bug.
fn attribute_files(tree: &Tree, components: &mut [ComponentSpec]) -> Result<(), BuildError> {
    for c in components.iter_mut() {
        c.files = origin_files(tree, &c.bom_ref);
        for o in tree.overrides().iter().filter(|o| o.by == c.bom_ref) {
            c.properties.push((
                prop::OVERRIDES.into(),
                format!("{} (replaced {})", o.path, o.replaced),
            ));
        }
    }
    let known: std::collections::BTreeSet<&str> =
        components.iter().map(|c| c.bom_ref.as_str()).collect();
    match tree
        .iter()
        .find(|(_, e)| !known.contains(e.origin.as_str()))
    {
        Some((path, e)) => Err(BuildError::Orphan {
            path: path.to_string(),
            origin: e.origin.to_string(),
        }),
        None => Ok(()),
    }
}

/// Runs the whole pipeline and writes the image directory atomically: check the output
/// directory, load the init, check every input, prepare the kernel, assemble the tree, write the archives, the
/// SBOM and the manifest, sign it, put the directory in place.
pub fn build(
    profile: &Profile,
    opts: &BuildOptions,
    progress: &Progress,
) -> Result<BuildResult, BuildError> {
    // Checked first: an --out that cannot be replaced or written fails before any work.
    let out = output::OutputDir::prepare(&opts.out)?;
    let init = init_binary::load(&opts.init_binary, profile.image.arch)?;
    preflight(profile, &opts.sources, progress)?;
    let kernel = prepare_kernel(
        profile,
        opts.allow_config_drift,
        &opts.sources.cache,
        progress,
    )?;
    check_kernel_features(profile, &kernel)?;
    let step = progress.step("assembling the root filesystem");
    let a = assemble(profile, &kernel, &init, &opts.sources, progress)?;
    step.done();
    let archives = write_archives(profile, &a, opts, progress)?;
    let mut files: Vec<(&'static str, Vec<u8>)> = vec![
        (archives.root_name, archives.root),
        (KERNEL_ARTIFACT, kernel.image.clone()),
        (ROOTFS_ARTIFACT, archives.tar),
    ];
    if let Some(cfg) = &kernel.config {
        files.push((KERNEL_CONFIG_ARTIFACT, cfg.clone()));
    }
    let sbom = sbom::write_sbom(
        &sbom::Subject {
            name: &profile.image.name,
            version: &profile.image.version,
            source_date_epoch: profile.image.source_date_epoch,
            builder_version: BUILDER_VERSION,
            dev: opts.dev,
            arch: profile.image.arch,
        },
        &a.components,
    )?;
    files.push((SBOM_ARTIFACT, sbom));
    files.sort_by(|x, y| x.0.cmp(y.0));
    let mut manifest = manifest(profile, &kernel, &a, archives.root_info, &files);
    if opts.dev {
        manifest.dev = true;
        manifest.compression.level = opts.level();
    }
    let manifest_bytes = manifest.to_canonical();
    files.push((MANIFEST_FILE, manifest_bytes.clone()));
    if let Some(key) = opts.sign_key {
        files.push((
            SIGNATURE_FILE,
            crate::sign::manifest::signature_file(key, &manifest_bytes),
        ));
    }
    out.commit(&files)?;
    Ok(BuildResult {
        out: opts.out.clone(),
        manifest,
        signed_by: opts.sign_key.map(|k| k.id().clone()),
        files: a.tree.len(),
        overrides: a.tree.overrides().to_vec(),
    })
}

/// The root the kernel boots and the distribution tar.
struct Archives {
    root_name: &'static str,
    root: Vec<u8>,
    /// For a block-device root: its format and verity parameters.
    root_info: Option<crate::sign::manifest::RootInfo>,
    tar: Vec<u8>,
}

/// Writes the root (an initramfs, or EROFS with its verity tree) and the tar, in parallel.
fn write_archives(
    profile: &Profile,
    a: &Assembly,
    opts: &BuildOptions,
    progress: &Progress,
) -> Result<Archives, BuildError> {
    let (cache, level) = (&opts.sources.cache, opts.level());
    let epoch = profile.image.source_date_epoch;
    let root_format = profile.image.root;
    let step = progress.step(format!(
        "writing {} and rootfs ({} entries, {:.1} MiB, zstd -{}{})",
        match root_format {
            RootFormat::Initramfs => "initramfs",
            RootFormat::Erofs => "EROFS + dm-verity",
        },
        a.tree.len(),
        a.tree.content_bytes() as f64 / (1 << 20) as f64,
        level,
        if opts.dev { ", --dev" } else { "" }
    ));
    let (root, tar) = std::thread::scope(|s| {
        let root = s.spawn(|| match root_format {
            RootFormat::Initramfs => archive::cpio::write_cpio(&a.tree, epoch)
                .and_then(|c| {
                    cache
                        .compress_cached(&c, level)
                        .map_err(archive::ArchiveError::Io)
                })
                .map(|c| (INITRAMFS_ARTIFACT, c, None)),
            RootFormat::Erofs => archive::erofs::write_erofs(&a.tree, epoch).map(|mut img| {
                let verity = archive::verity::append(&mut img, &profile.image.verity_salt);
                (EROFS_ARTIFACT, img, Some(verity))
            }),
        });
        let tar = archive::tar::write_tar(&a.tree, epoch).and_then(|t| {
            cache
                .compress_cached(&t, level)
                .map_err(archive::ArchiveError::Io)
        });
        (root.join().expect("root writer does not panic"), tar)
    });
    let ((root_name, root, verity), tar) = (root?, tar?);
    step.done();
    Ok(Archives {
        root_name,
        root,
        root_info: verity.map(|v| crate::sign::manifest::RootInfo {
            format: RootFormat::Erofs,
            artifact: ArtifactName::from_static(EROFS_ARTIFACT),
            verity: v,
        }),
        tar,
    })
}

/// The manifest naming every artifact (`files`, sorted by name) with its size and digest.
fn manifest(
    profile: &Profile,
    kernel: &PreparedKernel,
    a: &Assembly,
    root: Option<crate::sign::manifest::RootInfo>,
    files: &[(&'static str, Vec<u8>)],
) -> Manifest {
    // The kernel finds and checks a block-device root from its (signed) command line.
    let cmdline = match &root {
        None => profile.kernel.cmdline.clone(),
        Some(r) => format!(
            "{} {}",
            profile.kernel.cmdline,
            archive::verity::kernel_args(&r.verity)
        ),
    };
    Manifest {
        format: FORMAT,
        image: ImageInfo {
            name: profile.image.name.clone(),
            version: profile.image.version.clone(),
            arch: profile.image.arch,
        },
        builder: BuilderInfo {
            name: "stratos".into(),
            version: BUILDER_VERSION.into(),
        },
        source_date_epoch: profile.image.source_date_epoch,
        profile: ProfileInfo {
            file: profile
                .path
                .file_name()
                .and_then(|s| s.to_str())
                .unwrap_or("profile.toml")
                .to_owned(),
            sha256: crate::digest::Sha256::from_bytes(profile.digest),
        },
        kernel: KernelInfo {
            artifact: ArtifactName::from_static(KERNEL_ARTIFACT),
            format: KernelFormat::from_name(a.kernel_image.format)
                .expect("inspect_image names one of the kernel formats"),
            version: a.kernel_image.version.clone(),
            cmdline,
            config_sha256: kernel.config.as_deref().map(crate::digest::Sha256::of),
            origin: kernel.origin,
            source_sha256: kernel.source_sha256,
        },
        compression: Compression {
            algorithm: "zstd".into(),
            level: archive::zst::LEVEL,
            library_version: archive::zst::library_version(),
        },
        sbom: ArtifactName::from_static(SBOM_ARTIFACT),
        seccomp: a.seccomp.clone(),
        preload: a.preload.clone(),
        dev: false,
        observe: profile.observe.map(|o| crate::sign::manifest::ObserveInfo {
            syscalls: o.syscalls,
            latency: o.latency,
        }),
        go: a.go.clone(),
        rust: a.rust.clone(),
        lambda: profile
            .init
            .lambda
            .as_ref()
            .map(|l| crate::sign::manifest::LambdaInfo {
                invoke_port: l.port,
            }),
        root,
        artifacts: files
            .iter()
            .map(|(name, data)| Artifact {
                name: ArtifactName::from_static(name),
                size: data.len() as u64,
                sha256: crate::digest::Sha256::of(data),
            })
            .collect(),
    }
}

#[cfg(test)]
mod init_config_tests {
    use super::*;

    fn profile(init: &str) -> Profile {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vmlinuz"), b"kernel").unwrap();
        let text = format!(
            "schema = 1\n[image]\nname = \"hello\"\nversion = \"0.1.0\"\nsource-date-epoch = 1700000000\n[kernel]\nprebuilt = \"vmlinuz\"\n[init]\nargv = [\"/var/task/bootstrap\"]\n{init}"
        );
        Profile::parse(&text, std::path::Path::new("p.toml"), dir.path(), None).unwrap()
    }

    #[test]
    fn an_http_profile_has_no_lambda_config() {
        let c = init_config(&profile(""), vec![], vec![]);
        assert_eq!(c.lambda, None);
        assert!(!String::from_utf8(c.to_json()).unwrap().contains("lambda"));
    }

    #[test]
    fn a_lambda_profile_carries_its_settings_to_the_init() {
        let c = init_config(
            &profile("cwd = \"/var/task\"\ninterface = \"lambda\"\n[init.lambda]\nhandler = \"app.handler\"\ntimeout-ms = 5000\n"),
            vec![],
            vec![],
        );
        assert_eq!(
            c.lambda,
            Some(wire::Lambda {
                api_port: 9001,
                invoke_port: 8080,
                timeout_ms: 5000,
                function_name: "hello".into(),
                handler: "app.handler".into(),
                task_root: "/var/task".into(),
            })
        );
        assert_eq!(c.readiness, None);
        // The runtime's environment comes from the init (which knows its ports), not from here.
        assert!(!c.runtime.env.iter().any(|(k, _)| k.starts_with("AWS_")));
    }
}
