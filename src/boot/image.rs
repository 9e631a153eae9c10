//! An image directory, opened to boot: its manifest, its kernel and root files (checked to be
//! regular files of the directory), and the machine its kernel can boot on.

use std::path::{Path, PathBuf};

use super::vm::{choose_accel, Accel, AccelChoice, Forward, Machine, QemuError, Root, VmSpec};
use super::BootError;
use crate::arch::Arch;
use crate::cache::Cache;
use crate::image::{INITRAMFS_ARTIFACT, KERNEL_CONFIG_ARTIFACT};
use crate::kernel::Config;
use crate::sign::manifest::{Manifest, MANIFEST_FILE};
use crate::sign::verify::load_manifest;

/// An image directory, ready to boot.
#[derive(Debug, Clone)]
pub struct BootImage {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// What the image was built for: which QEMU boots it.
    pub arch: Arch,
    pub machine: Machine,
}

impl BootImage {
    pub fn open(dir: &Path) -> Result<Self, BootError> {
        let mpath = dir.join(MANIFEST_FILE);
        let manifest = load_manifest(dir).map_err(|e| BootError::Image {
            path: mpath.clone(),
            why: format!("{e} (is this a stratos image directory?)"),
        })?;
        let config = kernel_config(dir)?;
        check_boot_files(dir, &manifest)?;
        Ok(BootImage {
            dir: dir.to_owned(),
            arch: arch_of(&manifest),
            machine: Machine::for_kernel(arch_of(&manifest), config.as_ref()),
            manifest,
        })
    }

    /// Resolves `auto` to KVM or TCG for this image's kernel (the KVM probe's answer kept in
    /// `cache`); `kvm` fails if KVM does not work. The second value says why KVM is not used,
    /// when `auto` fell back to TCG.
    pub fn choose_accel(
        &self,
        choice: AccelChoice,
        cache: &Cache,
    ) -> Result<(Accel, Option<String>), QemuError> {
        choose_accel(choice, self.arch, &self.kernel(), cache)
    }

    /// The call that checks the function answers when none was asked for: a GET of `/`, or,
    /// for a Lambda function (the manifest's `lambda`), a POST of the event `{}` to the path
    /// AWS's Runtime Interface Emulator takes events on.
    pub fn default_call(&self) -> (&'static str, Option<Vec<u8>>) {
        match self.manifest.lambda {
            Some(_) => (crate::boot::run::LAMBDA_INVOKE_PATH, Some(b"{}".to_vec())),
            None => ("/", None),
        }
    }

    /// The guest port the function is called on: `asked` (--port), else a Lambda function's
    /// invoke port, else 8080.
    pub fn function_port(&self, asked: Option<u16>) -> u16 {
        asked.unwrap_or(self.manifest.lambda.map_or(8080, |l| l.invoke_port))
    }

    pub fn kernel(&self) -> PathBuf {
        self.dir.join(&self.manifest.kernel.artifact)
    }

    pub fn spec(
        &self,
        accel: Accel,
        memory_mib: u32,
        forwards: Vec<Forward>,
        interactive: bool,
    ) -> VmSpec {
        VmSpec {
            arch: self.arch,
            kernel: self.kernel(),
            root: match &self.manifest.root {
                None => Root::Initramfs(self.dir.join(INITRAMFS_ARTIFACT)),
                Some(r) => Root::Disk(self.dir.join(&r.artifact)),
            },
            cmdline: self.manifest.kernel.cmdline.clone(),
            machine: self.machine,
            accel,
            memory_mib,
            cpus: 1,
            forwards,
            interactive,
            snapshot: None,
            control: None,
        }
    }
}

/// The architecture an image was built for, as its manifest names it.
fn arch_of(manifest: &Manifest) -> Arch {
    manifest.image.arch
}

/// The kernel's config, when the image has one. Optional: images of prebuilt kernels without a
/// known config have none.
fn kernel_config(dir: &Path) -> Result<Option<Config>, BootError> {
    let cfg_path = dir.join(KERNEL_CONFIG_ARTIFACT);
    let bad = |why: String| BootError::Image {
        path: cfg_path.clone(),
        why,
    };
    match crate::fsio::read_regular(
        &cfg_path,
        crate::fsio::caps::KERNEL_CONFIG,
        "a kernel config",
        crate::fsio::Links::Refuse,
    ) {
        Ok(t) => Config::parse(&String::from_utf8_lossy(&t))
            .map(Some)
            .map_err(|e| bad(e.to_string())),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// QEMU opens the kernel and the root by path: they must be regular files of the image
/// directory, not symlinks to somewhere else.
fn check_boot_files(dir: &Path, manifest: &Manifest) -> Result<(), BootError> {
    let root_artifact = manifest
        .root
        .as_ref()
        .map_or(INITRAMFS_ARTIFACT, |r| r.artifact.as_str());
    for name in [manifest.kernel.artifact.as_str(), root_artifact] {
        let p = dir.join(name);
        crate::fsio::open_regular(&p, crate::fsio::Links::Refuse).map_err(|e| {
            BootError::Image {
                path: p.clone(),
                why: e.to_string(),
            }
        })?;
    }
    Ok(())
}
