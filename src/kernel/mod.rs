//! Kernels: recognising kernel images, their configs and their modules.

pub mod build;
pub mod config;
pub mod kconfig;
pub mod lint;
pub mod modules;
pub mod profile;
pub mod shipped;

pub use config::Config;

/// What a kernel image file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelImage {
    /// `bzImage` or `vmlinux`.
    pub format: &'static str,
    /// The release (`6.1.0-28-cloud-amd64`), when it could be read.
    pub version: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotAKernel(pub String);

/// Recognises an x86 bzImage (boot protocol header `HdrS`) or an ELF vmlinux.
pub fn inspect_image(bytes: &[u8]) -> Result<KernelImage, NotAKernel> {
    if bytes.len() > 0x210 && &bytes[0x202..0x206] == b"HdrS" {
        // The setup header's kernel_version field points (minus 0x200) at a C string.
        let ptr = u16::from_le_bytes([bytes[0x20e], bytes[0x20f]]) as usize;
        let version = (ptr != 0)
            .then(|| bytes.get(ptr + 0x200..))
            .flatten()
            .and_then(|s| s.split(|&b| b == 0 || b == b' ').next())
            .and_then(|s| std::str::from_utf8(s).ok())
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        return Ok(KernelImage {
            format: "bzImage",
            version,
        });
    }
    // arm64's Image: "ARM\x64" at 0x38 of its header (Documentation/arm64/booting.rst);
    // uncompressed, so its banner is in it as in a vmlinux.
    let arm64 = bytes.len() > 0x40 && &bytes[0x38..0x3c] == b"ARM\x64";
    if bytes.starts_with(b"\x7fELF") || arm64 {
        let needle = b"Linux version ";
        let version = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .and_then(|i| {
                bytes[i + needle.len()..]
                    .split(|&b| b == b' ' || b == 0)
                    .next()
            })
            .and_then(|s| std::str::from_utf8(s).ok())
            .filter(|s| !s.is_empty() && !s.contains('%'))
            .map(str::to_owned);
        return Ok(KernelImage {
            format: if arm64 { "Image" } else { "vmlinux" },
            version,
        });
    }
    Err(NotAKernel(
        "not a kernel image: not an x86 bzImage (no \"HdrS\" boot header), an ELF vmlinux or an arm64 Image (no \"ARM\\x64\" at 0x38)"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bzimage_version() {
        let mut b = vec![0u8; 0x400];
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        b[0x300..0x300 + 20].copy_from_slice(b"6.1.0-28-cloud (x) \0");
        let k = inspect_image(&b).unwrap();
        assert_eq!(k.format, "bzImage");
        assert_eq!(k.version.as_deref(), Some("6.1.0-28-cloud"));
    }

    #[test]
    fn reads_an_arm64_image_and_its_banner() {
        let mut b = vec![0u8; 0x200];
        b[0x38..0x3c].copy_from_slice(b"ARM\x64");
        b.extend_from_slice(b"Linux version 6.1.192 (stratos@stratos) #1\0");
        let k = inspect_image(&b).unwrap();
        assert_eq!(k.format, "Image");
        assert_eq!(k.version.as_deref(), Some("6.1.192"));
    }

    #[test]
    fn rejects_other_files() {
        assert!(inspect_image(b"hello").is_err());
    }
}
