//! CycloneDX 1.5 JSON SBOM, deterministic: the serial number is derived from the content and
//! the timestamp is the source date epoch. Every file in the image belongs to exactly one
//! component, listed in that component's `evidence.occurrences`.

pub mod view;

pub use view::prop;

use std::str::FromStr;

use cyclonedx_bom::external_models::date_time::DateTime;
use cyclonedx_bom::models::component::{
    Classification, ComponentEvidence, Occurrence, Occurrences,
};
use cyclonedx_bom::models::dependency::{Dependencies, Dependency};
use cyclonedx_bom::models::hash::{Hash, HashAlgorithm, HashValue, Hashes};
use cyclonedx_bom::models::license::{LicenseChoice, Licenses};
use cyclonedx_bom::models::property::{Properties, Property};
use cyclonedx_bom::models::tool::{Tool, Tools};
use cyclonedx_bom::prelude::*;
use sha2::{Digest, Sha256};

/// The spec version written; tests validate against `bom-1.5.schema.json`.
pub const SPEC_VERSION: &str = "1.5";

#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error("cannot write the SBOM: {0}")]
    Write(String),
    #[error("SBOM component {0}: {1}")]
    Component(String, String),
}

/// One component, as the builder knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentSpec {
    /// Unique within the SBOM: `kernel`, `init`, `overlay:hello`, `pkg:deb/debian/...`.
    pub bom_ref: String,
    /// CycloneDX classification: `application`, `library`, `operating-system`, `file`, `data`, ...
    pub classification: &'static str,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub purl: Option<String>,
    /// SPDX expression, when known.
    pub license: Option<String>,
    /// Hex sha256 of the component's content (for a directory: of its entries).
    pub sha256: String,
    /// In-image paths this component provides (its files in the final image).
    pub files: Vec<String>,
    /// Extra `stratos:*` properties (sorted by name when written).
    pub properties: Vec<(String, String)>,
    /// bom-refs this component depends on.
    pub depends_on: Vec<String>,
}

/// The image the SBOM describes.
pub struct Subject<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub source_date_epoch: u64,
    pub builder_version: &'a str,
    /// A `stratos build --dev` image: the SBOM's metadata says `stratos:build = dev`.
    pub dev: bool,
    /// The metadata says `stratos:arch = x86_64|aarch64`; the Debian components' purls say it
    /// too (`?arch=arm64`).
    pub arch: crate::arch::Arch,
}

/// RFC 3339 UTC time for a Unix timestamp (civil-from-days, proleptic Gregorian).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// A UUID (version-5 layout) from the first 16 bytes of a sha256.
pub fn uuid_from_digest(d: &[u8]) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    stratos_wire::uuid(b, 5)
}

fn sha256_hashes(hex: &str) -> Hashes {
    Hashes(vec![Hash {
        alg: HashAlgorithm::SHA_256,
        content: HashValue(hex.to_owned()),
    }])
}

fn to_component(c: &ComponentSpec) -> Result<Component, SbomError> {
    let mut comp = Component::new(
        Classification::new_unchecked(c.classification),
        &c.name,
        &c.version,
        Some(c.bom_ref.clone()),
    );
    comp.description = c.description.as_deref().map(NormalizedString::new);
    comp.hashes = Some(sha256_hashes(&c.sha256));
    if let Some(p) = &c.purl {
        comp.purl = Some(
            Purl::from_str(p)
                .map_err(|_| SbomError::Component(c.bom_ref.clone(), format!("bad purl {p}")))?,
        );
    }
    if let Some(l) = &c.license {
        comp.licenses = Some(Licenses(vec![LicenseChoice::Expression(
            SpdxExpression::new(l),
        )]));
    }
    let mut props: Vec<(String, String)> = c.properties.clone();
    props.sort();
    if !props.is_empty() {
        comp.properties = Some(Properties(
            props.iter().map(|(k, v)| Property::new(k, v)).collect(),
        ));
    }
    if !c.files.is_empty() {
        comp.evidence = Some(ComponentEvidence {
            licenses: None,
            copyright: None,
            occurrences: Some(Occurrences(
                c.files.iter().map(|f| Occurrence::new(f)).collect(),
            )),
            callstack: None,
            identity: None,
        });
    }
    Ok(comp)
}

/// Writes the SBOM JSON for the image. Components are sorted by bom-ref.
pub fn write_sbom(subject: &Subject, components: &[ComponentSpec]) -> Result<Vec<u8>, SbomError> {
    let mut comps: Vec<&ComponentSpec> = components.iter().collect();
    comps.sort_by(|a, b| a.bom_ref.cmp(&b.bom_ref));
    let build = |serial: Option<UrnUuid>| -> Result<Vec<u8>, SbomError> {
        let mut image = Component::new(
            Classification::OperatingSystem,
            subject.name,
            subject.version,
            Some(format!("image:{}@{}", subject.name, subject.version)),
        );
        image.description = Some(NormalizedString::new("StratOS micro-OS image"));
        let metadata = Metadata {
            timestamp: Some(
                DateTime::try_from(rfc3339(subject.source_date_epoch))
                    .map_err(|e| SbomError::Write(e.to_string()))?,
            ),
            tools: Some(Tools::List(vec![Tool {
                vendor: None,
                name: Some(NormalizedString::new("stratos")),
                version: Some(NormalizedString::new(subject.builder_version)),
                hashes: None,
                external_references: None,
            }])),
            authors: None,
            component: Some(image),
            manufacture: None,
            supplier: None,
            licenses: None,
            properties: Some(Properties({
                let mut p = vec![Property::new(prop::ARCH, subject.arch.name())];
                if subject.dev {
                    p.push(Property::new(prop::BUILD, prop::BUILD_DEV));
                }
                p
            })),
            lifecycles: None,
        };
        let mut dependencies = vec![Dependency {
            dependency_ref: format!("image:{}@{}", subject.name, subject.version),
            dependencies: comps.iter().map(|c| c.bom_ref.clone()).collect(),
        }];
        for c in &comps {
            let mut d = c.depends_on.clone();
            d.sort();
            d.dedup();
            dependencies.push(Dependency {
                dependency_ref: c.bom_ref.clone(),
                dependencies: d,
            });
        }
        let bom = Bom {
            version: 1,
            serial_number: serial,
            metadata: Some(metadata),
            components: Some(Components(
                comps
                    .iter()
                    .map(|c| to_component(c))
                    .collect::<Result<_, _>>()?,
            )),
            services: None,
            external_references: None,
            dependencies: Some(Dependencies(dependencies)),
            compositions: None,
            properties: None,
            vulnerabilities: None,
            signature: None,
            annotations: None,
            formulation: None,
            spec_version: SpecVersion::V1_5,
        };
        let mut out = Vec::new();
        bom.output_as_json_v1_5(&mut out)
            .map_err(|e| SbomError::Write(e.to_string()))?;
        out.push(b'\n');
        Ok(out)
    };
    // The serial number is derived from everything else in the document.
    let unsealed = build(None)?;
    let uuid = uuid_from_digest(&Sha256::digest(&unsealed));
    let serial =
        UrnUuid::new(format!("urn:uuid:{uuid}")).map_err(|e| SbomError::Write(format!("{e:?}")))?;
    build(Some(serial))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn uuid_shape() {
        let u = uuid_from_digest(&[0xff; 32]);
        assert_eq!(u, "ffffffff-ffff-5fff-bfff-ffffffffffff");
    }

    #[test]
    fn deterministic() {
        let s = Subject {
            name: "x",
            version: "1",
            source_date_epoch: 5,
            builder_version: "0.1.0",
            dev: false,
            arch: crate::arch::Arch::X86_64,
        };
        let c = ComponentSpec {
            bom_ref: "overlay:a".into(),
            classification: "data",
            name: "a".into(),
            version: "1".into(),
            description: None,
            purl: None,
            license: None,
            sha256: "00".repeat(32),
            files: vec!["/etc/a".into()],
            properties: vec![(prop::ORIGIN.into(), "overlay".into())],
            depends_on: vec![],
        };
        let a = write_sbom(&s, std::slice::from_ref(&c)).unwrap();
        let b = write_sbom(&s, &[c]).unwrap();
        assert_eq!(a, b);
        let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["specVersion"], "1.5");
        assert!(v["serialNumber"].as_str().unwrap().starts_with("urn:uuid:"));
        assert_eq!(v["metadata"]["timestamp"], "1970-01-01T00:00:05Z");
        assert_eq!(
            v["metadata"]["properties"],
            serde_json::json!([{"name": "stratos:arch", "value": "x86_64"}])
        );
    }

    #[test]
    fn a_dev_image_says_so_in_the_sbom_metadata() {
        let s = Subject {
            name: "x",
            version: "1",
            source_date_epoch: 5,
            builder_version: "0.1.0",
            dev: true,
            arch: crate::arch::Arch::Aarch64,
        };
        let v: serde_json::Value = serde_json::from_slice(&write_sbom(&s, &[]).unwrap()).unwrap();
        assert_eq!(
            v["metadata"]["properties"],
            serde_json::json!([
                {"name": "stratos:arch", "value": "aarch64"},
                {"name": "stratos:build", "value": "dev"}
            ])
        );
    }
}
