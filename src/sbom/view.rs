//! Reading an SBOM back: the parts of a CycloneDX document StratOS itself writes and checks,
//! as types (for `verify` and `inspect`), instead of walking untyped JSON in each command.

use serde::Deserialize;

/// The `stratos:*` property names StratOS writes on components, in one place.
pub mod prop {
    /// What installed the component: `debian-package`, `overlay`, `file`.
    pub const ORIGIN: &str = "stratos:origin";
    /// The image artifact a component stands for (its digest must match the manifest's).
    pub const ARTIFACT: &str = "stratos:artifact";
    pub const BYTES_INSTALLED: &str = "stratos:bytes-installed";
    pub const BYTES_TRIMMED: &str = "stratos:bytes-trimmed";
    /// Which package or the profile pulled a package in.
    pub const REQUIRED_BY: &str = "stratos:required-by";
    /// A path this component's entry replaced (`PATH (replaced ORIGIN)`).
    pub const OVERRIDES: &str = "stratos:overrides";
    pub const KERNEL_FORMAT: &str = "stratos:kernel-format";
    pub const KERNEL_ORIGIN: &str = "stratos:kernel-origin";
    pub const CONFIG_SHA256: &str = "stratos:config-sha256";
    pub const SOURCE_SHA256: &str = "stratos:source-sha256";
    pub const SECCOMP_POLICY: &str = "stratos:seccomp-policy";
    pub const SECCOMP_POLICY_SHA256: &str = "stratos:seccomp-policy-sha256";
    pub const SECCOMP_MODE: &str = "stratos:seccomp-mode";
    /// On the image (the SBOM's metadata): `dev` for a `stratos build --dev` image, not for
    /// release; absent on a release build.
    pub const BUILD: &str = "stratos:build";
    /// The image's architecture (`x86_64`, `aarch64`), in the metadata.
    pub const ARCH: &str = "stratos:arch";
    pub const BUILD_DEV: &str = "dev";
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SbomView {
    pub bom_format: String,
    pub metadata: MetadataView,
    #[serde(default)]
    pub components: Vec<ComponentView>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MetadataView {
    pub component: SubjectView,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SubjectView {
    pub name: String,
    #[serde(default)]
    pub version: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ComponentView {
    #[serde(rename = "bom-ref", default)]
    pub bom_ref: String,
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub hashes: Vec<HashView>,
    #[serde(default)]
    pub properties: Vec<PropertyView>,
    #[serde(default)]
    pub evidence: Option<EvidenceView>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HashView {
    pub alg: String,
    pub content: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PropertyView {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EvidenceView {
    #[serde(default)]
    pub occurrences: Vec<OccurrenceView>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OccurrenceView {
    pub location: String,
}

impl SbomView {
    pub fn parse(bytes: &[u8]) -> Result<SbomView, String> {
        let v: SbomView = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if v.bom_format != "CycloneDX" {
            return Err("not a CycloneDX document".into());
        }
        Ok(v)
    }
}

impl ComponentView {
    /// The first value of property `name`.
    pub fn prop(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }

    /// Every value of property `name`.
    pub fn props<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.properties
            .iter()
            .filter(move |p| p.name == name)
            .map(|p| p.value.as_str())
    }

    pub fn sha256(&self) -> Option<&str> {
        self.hashes
            .iter()
            .find(|h| h.alg == "SHA-256")
            .map(|h| h.content.as_str())
    }

    /// The in-image paths this component claims.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.evidence
            .iter()
            .flat_map(|e| e.occurrences.iter())
            .map(|o| o.location.as_str())
    }
}
