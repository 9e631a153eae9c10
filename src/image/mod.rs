//! An image directory's file names: what `stratos build` writes and what booting, inspecting
//! and publishing an image read. The manifest and its signature are named with the manifest's
//! format ([`MANIFEST_FILE`](crate::sign::manifest::MANIFEST_FILE),
//! [`SIGNATURE_FILE`](crate::sign::manifest::SIGNATURE_FILE)).
//!
//! A leaf: the builder and every reader of an image directory name its files from here, so
//! none of them imports another for a file name.
//!
//! [`oci`]: the same image as an OCI image layout (`stratos export --oci`), and its check
//! (`stratos verify --oci`).

pub mod oci;

/// The kernel image QEMU boots.
pub const KERNEL_ARTIFACT: &str = "kernel";
/// The kernel's `.config`, when known (it decides the machine the image boots on).
pub const KERNEL_CONFIG_ARTIFACT: &str = "kernel.config";
/// The root filesystem as an initramfs (images without `[image] root`).
pub const INITRAMFS_ARTIFACT: &str = "initramfs.cpio.zst";
/// The root filesystem as a verity-protected EROFS disk image.
pub const EROFS_ARTIFACT: &str = "rootfs.erofs";
/// The root filesystem as a tarball (for inspection and diffing).
pub const ROOTFS_ARTIFACT: &str = "rootfs.tar.zst";
/// The CycloneDX SBOM.
pub const SBOM_ARTIFACT: &str = "sbom.cdx.json";
