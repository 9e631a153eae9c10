//! The image manifest and its canonical bytes.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::keys::KeyId;
use crate::digest::Sha256;
pub use crate::profile::{KernelFormat, KernelOriginKind, RootFormat, SeccompMode};

/// The manifest format this builder writes and reads.
pub const FORMAT: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const SIGNATURE_FILE: &str = "manifest.sig";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub image: ImageInfo,
    pub builder: BuilderInfo,
    pub source_date_epoch: u64,
    pub profile: ProfileInfo,
    pub kernel: KernelInfo,
    pub compression: Compression,
    /// Built with `stratos build --dev` (fast compression): for local iteration, never for
    /// release (`stratos publish` refuses it). Absent from a release build's manifest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dev: bool,
    /// The artifact holding the SBOM (`sbom.cdx.json`).
    pub sbom: ArtifactName,
    /// The seccomp baseline the runtime runs under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<SeccompInfo>,
    /// Files the init warms at boot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preload: Vec<String>,
    /// The root filesystem the kernel boots from a block device, when it is not the
    /// initramfs: the artifact, its format and its dm-verity parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<RootInfo>,
    /// `[observe]`: the init prints `stratos-metrics` lines and answers metrics requests on
    /// the control channel (which the harness attaches to every boot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observe: Option<ObserveInfo>,
    /// `[runtime.go]`: the function compiled at build time, and the toolchain that did it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub go: Option<GoInfo>,
    /// `[runtime.cargo]`: the Rust function compiled at build time, and the toolchain that
    /// did it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rust: Option<RustInfo>,
    /// `[init] interface = "lambda"`: the function is a Lambda function, invoked by POSTing an
    /// event (as AWS's Runtime Interface Emulator takes it) rather than by any HTTP request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<LambdaInfo>,
    /// Sorted by name.
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub name: String,
    pub version: String,
    /// The architecture the image runs on ("x86_64", "aarch64"). Manifests written before
    /// images had a second architecture have none: they are x86-64.
    #[serde(default)]
    pub arch: crate::arch::Arch,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuilderInfo {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileInfo {
    /// The profile's file name (no directory: the manifest does not depend on where it was built).
    pub file: String,
    pub sha256: Sha256,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInfo {
    /// The artifact holding the kernel image.
    pub artifact: ArtifactName,
    /// `bzImage` or `vmlinux`.
    pub format: KernelFormat,
    /// The release string read from the image (`6.1.0-28-cloud-amd64`), when found.
    pub version: Option<String>,
    pub cmdline: String,
    /// sha256 of `kernel.config`, when the profile gave the kernel's config.
    pub config_sha256: Option<Sha256>,
    /// `prebuilt` or `source`.
    pub origin: KernelOriginKind,
    /// sha256 of the source tarball, for kernels built from source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sha256: Option<Sha256>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompInfo {
    /// The policy's file name.
    pub policy: String,
    pub policy_sha256: Sha256,
    /// In-image path of the compiled BPF program.
    pub filter: String,
    pub filter_sha256: Sha256,
    pub instructions: u64,
    /// `enforce` or `log`.
    pub mode: SeccompMode,
}

/// What the image's init observes of its runtime (`[observe]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObserveInfo {
    pub syscalls: bool,
    pub latency: bool,
}

/// A Lambda function (`[init] interface = "lambda"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LambdaInfo {
    /// The guest port of the invoke endpoint (`POST /2015-03-31/functions/function/invocations`).
    pub invoke_port: u16,
}

/// A Go function compiled at build time (`[runtime.go]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoInfo {
    /// The function's module path.
    pub module: String,
    /// The toolchain's version (`go1.19.8`).
    pub toolchain: String,
    /// Where the binary is in the image.
    pub binary: String,
}

/// A Rust function compiled at build time (`[runtime.cargo]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RustInfo {
    /// The function's Cargo package.
    pub package: String,
    /// The toolchain's `rustc -V` (`rustc 1.95.0 (59807616e 2026-04-14)`).
    pub toolchain: String,
    /// Where the binary is in the image.
    pub binary: String,
}

/// A block-device root: `artifact` holds the filesystem, then (at `verity.hash_offset`) its
/// dm-verity superblock and hash tree. The kernel command line sets the verity device up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootInfo {
    /// `erofs`.
    pub format: RootFormat,
    pub artifact: ArtifactName,
    pub verity: crate::archive::verity::VerityInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {
    pub algorithm: String,
    pub level: i32,
    pub library_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Artifact {
    pub name: ArtifactName,
    pub size: u64,
    pub sha256: Sha256,
}

/// The name of an artifact: a plain file name of the image directory (no directories, `.`,
/// `..` or control characters), checked when it is made or read, so that joining it to the
/// image directory never leaves it (tough's `TargetName` is the model). It is not a `String`:
/// read it with [`ArtifactName::as_str`], open it with `dir.join(name)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ArtifactName(String);

/// A name that is not a plain file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("artifact name {0:?} is not a plain file name")]
pub struct ArtifactNameError(pub String);

impl ArtifactName {
    pub fn new(name: impl Into<String>) -> Result<Self, ArtifactNameError> {
        let name = name.into();
        if is_plain_name(&name) {
            Ok(ArtifactName(name))
        } else {
            Err(ArtifactNameError(name))
        }
    }

    /// One of the builder's own constant names.
    pub fn from_static(name: &'static str) -> Self {
        Self::new(name).expect("the builder's artifact names are plain file names")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A file name without directories, `.`/`..` or control characters.
fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 255
        && !s.contains('/')
        && !s.chars().any(|c| c.is_control())
}

impl<'de> Deserialize<'de> for ArtifactName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ArtifactName::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Like the string it is (widths and alignment apply: names are printed in columns).
impl fmt::Display for ArtifactName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl AsRef<Path> for ArtifactName {
    fn as_ref(&self) -> &Path {
        Path::new(&self.0)
    }
}

impl PartialEq<str> for ArtifactName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ArtifactName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// The detached signature over the exact bytes of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    pub format: u32,
    pub algorithm: String,
    pub key_id: KeyId,
    /// 64 bytes, hex.
    pub signature: String,
}

/// A detached signature file (`manifest.sig`, `snapshot.sig`): the key's id and its ed25519
/// signature over `signed`'s exact bytes.
pub fn signature_file(key: &crate::sign::SecretKey, signed: &[u8]) -> Vec<u8> {
    let sig = SignatureFile {
        format: 1,
        algorithm: "ed25519".into(),
        key_id: key.id().clone(),
        signature: hex::encode(key.sign(signed)),
    };
    let mut bytes = serde_json::to_vec_pretty(&sig).expect("plain struct serialises");
    bytes.push(b'\n');
    bytes
}

impl Manifest {
    /// Whether a node boots this image without the artifact `name`: the tarball of a root
    /// that is an EROFS disk image (kept for inspection and diffing).
    pub fn boots_without(&self, name: &ArtifactName) -> bool {
        self.root.is_some() && name.as_str() == crate::image::ROOTFS_ARTIFACT
    }

    pub fn artifact(&self, name: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.name == name)
    }

    /// Canonical bytes: sorted keys, two-space indent, no floats, trailing newline.
    pub fn to_canonical(&self) -> Vec<u8> {
        let v = serde_json::to_value(self).expect("manifest is plain data");
        canonical_json(&v)
            .expect("manifest holds no floats")
            .into_bytes()
    }
}

/// Serialises a JSON value with object keys sorted (whatever map type serde_json was built
/// with), two-space indentation and a trailing newline. Floats are refused: their text is not
/// stable across implementations.
pub fn canonical_json(v: &Value) -> Result<String, String> {
    fn write(v: &Value, indent: usize, out: &mut String) -> Result<(), String> {
        match v {
            Value::Null | Value::Bool(_) | Value::String(_) => {
                out.push_str(&serde_json::to_string(v).map_err(|e| e.to_string())?)
            }
            Value::Number(n) => {
                if n.is_f64() {
                    return Err(format!("canonical JSON holds no floats (found {n})"));
                }
                out.push_str(&n.to_string());
            }
            Value::Array(a) => {
                if a.is_empty() {
                    out.push_str("[]");
                    return Ok(());
                }
                out.push_str("[\n");
                for (i, x) in a.iter().enumerate() {
                    out.push_str(&" ".repeat(indent + 2));
                    write(x, indent + 2, out)?;
                    out.push_str(if i + 1 < a.len() { ",\n" } else { "\n" });
                }
                out.push_str(&" ".repeat(indent));
                out.push(']');
            }
            Value::Object(m) => {
                if m.is_empty() {
                    out.push_str("{}");
                    return Ok(());
                }
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push_str("{\n");
                for (i, k) in keys.iter().enumerate() {
                    out.push_str(&" ".repeat(indent + 2));
                    out.push_str(&serde_json::to_string(k).map_err(|e| e.to_string())?);
                    out.push_str(": ");
                    write(&m[*k], indent + 2, out)?;
                    out.push_str(if i + 1 < keys.len() { ",\n" } else { "\n" });
                }
                out.push_str(&" ".repeat(indent));
                out.push('}');
            }
        }
        Ok(())
    }
    let mut out = String::new();
    write(v, 0, &mut out)?;
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_sorts_and_refuses_floats() {
        let v: Value = serde_json::json!({"b": 1, "a": [true, null, {"z": "x", "y": []}]});
        assert_eq!(
            canonical_json(&v).unwrap(),
            "{\n  \"a\": [\n    true,\n    null,\n    {\n      \"y\": [],\n      \"z\": \"x\"\n    }\n  ],\n  \"b\": 1\n}\n"
        );
        assert!(canonical_json(&serde_json::json!({"f": 1.5})).is_err());
    }

    #[test]
    fn artifact_names_are_plain_file_names_when_read() {
        for bad in ["", ".", "..", "../kernel", "a/b", "/etc/passwd", "k\nernel"] {
            let json = serde_json::to_string(bad).unwrap();
            let e = serde_json::from_str::<ArtifactName>(&json).unwrap_err();
            assert!(
                e.to_string().contains("is not a plain file name"),
                "{bad:?}: {e}"
            );
        }
        let n: ArtifactName = serde_json::from_str("\"rootfs.tar.zst\"").unwrap();
        assert_eq!(n, "rootfs.tar.zst");
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"rootfs.tar.zst\"");
        assert_eq!(format!("[{n:<16}]"), "[rootfs.tar.zst  ]");
    }
}
