//! The documents of a release repository — root, channel, and the health reports nodes send
//! back — with their parsing, signing and verification. Both sides read them: the operator's
//! commands ([`crate::channel::operator`]) write them, nodes ([`crate::channel::node`]) verify
//! them. Metadata is tolerant of unknown fields (older nodes must read newer documents).

pub mod name;
pub mod report;
pub mod role;
pub mod rollout;
pub mod signed;
pub mod time;
pub mod track;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use name::ChannelName;
pub use report::{NotSigned, Report, ReportFile, ReportSignature, ReportSummary, REPORT_SCHEMA};
pub use role::RoleName;
pub use rollout::{cohort, compare_versions, Rollout, Wave};
pub use signed::{sign_bytes, to_bytes, verify_threshold, Signature, Signatures};
pub use time::{fmt_age, fmt_time, now, CLOCK_SKEW, DEFAULT_MAX_AGE, MAX_VALIDITY};
pub use track::{Delta, Track, MAX_DELTAS};

use crate::arch::Arch;
use crate::channel::error::ChannelError;
use crate::digest::Sha256;
use crate::sign::{KeyId, PublicKey};

pub const ROOT_TYPE: &str = "stratos-root";
pub const CHANNEL_TYPE: &str = "stratos-channel";
pub const SPEC_VERSION: u32 = 1;
/// Largest metadata document a node accepts.
pub const MAX_METADATA_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    #[serde(rename = "type")]
    pub kind: String,
    /// Hex public key.
    pub public: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub key_ids: Vec<KeyId>,
    pub threshold: u32,
}

/// A root's roles. On disk `"roles": {"channel": …, "image": …, "root": …}`; a root missing
/// one is malformed (the error names it). Unknown roles are ignored, as other unknown fields
/// of metadata are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRoles")]
pub struct Roles {
    pub channel: Role,
    pub image: Role,
    pub root: Role,
}

/// `roles` as read, before each role is known to be there.
#[derive(Deserialize)]
struct RawRoles {
    channel: Option<Role>,
    image: Option<Role>,
    root: Option<Role>,
}

impl TryFrom<RawRoles> for Roles {
    type Error = String;
    fn try_from(r: RawRoles) -> Result<Roles, String> {
        let missing = |name: RoleName| {
            format!("roles: no {name} role (a root names the keys of the channel, image and root roles)")
        };
        Ok(Roles {
            channel: r.channel.ok_or_else(|| missing(RoleName::Channel))?,
            image: r.image.ok_or_else(|| missing(RoleName::Image))?,
            root: r.root.ok_or_else(|| missing(RoleName::Root))?,
        })
    }
}

impl Roles {
    pub fn get(&self, name: RoleName) -> &Role {
        match name {
            RoleName::Channel => &self.channel,
            RoleName::Image => &self.image,
            RoleName::Root => &self.root,
        }
    }

    pub fn get_mut(&mut self, name: RoleName) -> &mut Role {
        match name {
            RoleName::Channel => &mut self.channel,
            RoleName::Image => &mut self.image,
            RoleName::Root => &mut self.root,
        }
    }

    /// Every role with its name, in [`RoleName::ALL`]'s order.
    pub fn iter(&self) -> impl Iterator<Item = (RoleName, &Role)> {
        RoleName::ALL.into_iter().map(|n| (n, self.get(n)))
    }

    /// Every role with its name, mutably, in [`RoleName::ALL`]'s order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (RoleName, &mut Role)> {
        [
            (RoleName::Channel, &mut self.channel),
            (RoleName::Image, &mut self.image),
            (RoleName::Root, &mut self.root),
        ]
        .into_iter()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    #[serde(rename = "type")]
    pub kind: String,
    pub spec_version: u32,
    pub version: u64,
    /// Unix seconds.
    pub expires: u64,
    pub keys: BTreeMap<KeyId, KeyEntry>,
    pub roles: Roles,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    pub name: String,
    pub version: String,
    /// The architecture the image runs on: the signed manifest's `image.arch`. Absent for
    /// x86_64 (as in every document written before images had a second architecture), so an
    /// x86_64 channel's bytes are what nodes that predate arm64 have always read.
    #[serde(default, skip_serializing_if = "is_x86_64")]
    pub arch: Arch,
    pub manifest_sha256: Sha256,
    pub manifest_length: u64,
    pub signature_sha256: Sha256,
    pub signature_length: u64,
}

fn is_x86_64(a: &Arch) -> bool {
    *a == Arch::X86_64
}

/// A channel: one image per architecture, each with its own rollout ([`Track`]). On disk the
/// x86_64 track keeps the fields it had before arm64 (`image`, `rollout`, `halted`,
/// `previous`), which nodes that predate arm64 read; the other architectures' tracks are listed
/// in `other_arches` (see [`track`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "track::RawChannel", into = "track::RawChannel")]
pub struct Channel {
    pub kind: String,
    pub spec_version: u32,
    pub channel: ChannelName,
    pub version: u64,
    pub expires: u64,
    /// When this version was written.
    pub timestamp: u64,
    /// Nodes running an image older than this update regardless of the rollout (whatever
    /// their architecture: every architecture's image has the same versions).
    pub min_version: Option<String>,
    /// One per architecture, in [`Arch::ALL`]'s order; never empty.
    pub tracks: Vec<Track>,
}

impl Root {
    /// The public key `id` as the root lists it (`None` if absent or malformed).
    pub fn key(&self, id: &KeyId) -> Option<PublicKey> {
        let raw: [u8; 32] = hex::decode(&self.keys.get(id)?.public)
            .ok()?
            .try_into()
            .ok()?;
        PublicKey::from_bytes(&raw).ok()
    }

    /// The key `id`, if the root trusts it to sign images; `what` names the image in errors.
    pub fn image_key(&self, id: &KeyId, what: &str) -> Result<PublicKey, ChannelError> {
        let role = &self.roles.image;
        if !role.key_ids.contains(id) {
            return Err(ChannelError::UntrustedImageKey {
                what: what.to_owned(),
                key: id.clone(),
                trusted: role.key_ids.clone(),
            });
        }
        self.key(id).ok_or_else(|| ChannelError::MalformedRootKey {
            version: self.version,
            key: id.clone(),
        })
    }
}

/// Refuses an expiry further ahead of `now` than anyone may sign ([`MAX_VALIDITY`]): such a
/// document would never expire (`what` names it).
pub fn check_expiry_bound(what: &str, expires: u64, now: u64) -> Result<(), ChannelError> {
    let ahead = expires.saturating_sub(now);
    if ahead > MAX_VALIDITY + CLOCK_SKEW {
        return Err(ChannelError::ValidTooLong {
            what: what.to_owned(),
            expires,
            days: ahead / 86_400,
            limit_days: MAX_VALIDITY / 86_400,
        });
    }
    Ok(())
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ChannelError> {
    serde_json::from_slice(bytes).map_err(|source| ChannelError::Malformed {
        what: what.to_owned(),
        source,
    })
}

fn wrong_kind(what: &str, kind: &'static str) -> ChannelError {
    ChannelError::WrongKind {
        what: what.to_owned(),
        kind,
        spec: SPEC_VERSION,
    }
}

pub fn parse_root(bytes: &[u8], what: &str) -> Result<Root, ChannelError> {
    let r: Root = parse_json(bytes, what)?;
    if r.kind != ROOT_TYPE || r.spec_version != SPEC_VERSION {
        return Err(wrong_kind(what, "root"));
    }
    // Each key id is bound to its key (the id is derived from the key): one key cannot be
    // listed under two ids to have one signature count twice.
    for (id, entry) in &r.keys {
        if entry.kind != "ed25519" {
            return Err(ChannelError::UnsupportedKeyType {
                what: what.to_owned(),
                key: id.clone(),
                kind: entry.kind.clone(),
            });
        }
        let pk = r.key(id).ok_or_else(|| ChannelError::InvalidKey {
            what: what.to_owned(),
            key: id.clone(),
        })?;
        if pk.id() != id {
            return Err(ChannelError::KeyIdMismatch {
                what: what.to_owned(),
                listed: id.clone(),
                actual: pk.id().clone(),
            });
        }
    }
    for (name, role) in r.roles.iter() {
        if role.threshold == 0 {
            return Err(ChannelError::ZeroThreshold {
                what: what.to_owned(),
                role: name,
            });
        }
        if let Some(id) = role.key_ids.iter().find(|id| !r.keys.contains_key(id)) {
            return Err(ChannelError::UnlistedKey {
                what: what.to_owned(),
                role: name,
                key: id.clone(),
            });
        }
    }
    Ok(r)
}

pub fn parse_channel(bytes: &[u8], what: &str) -> Result<Channel, ChannelError> {
    let c: Channel = parse_json(bytes, what)?;
    if c.kind != CHANNEL_TYPE || c.spec_version != SPEC_VERSION {
        return Err(wrong_kind(what, "channel"));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::manifest::canonical_json;

    #[test]
    fn expiry_is_bounded() {
        assert!(check_expiry_bound("d", 1000 + MAX_VALIDITY, 1000).is_ok());
        let e = check_expiry_bound("d", u64::MAX, 1000).unwrap_err();
        assert!(
            matches!(
                e,
                ChannelError::ValidTooLong {
                    limit_days: 3650,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(
            e.starts_with("d: expires ") && e.contains("3650-day limit"),
            "{e}"
        );
    }

    /// A root with the fields `repo init` writes.
    const ROOT: &str = r#"{"expires":1900000000,"keys":{"fe812c12f3ab4ce6":{"public":"ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c","type":"ed25519"}},"roles":{"channel":{"key_ids":["fe812c12f3ab4ce6"],"threshold":1},"image":{"key_ids":["fe812c12f3ab4ce6"],"threshold":1},"root":{"key_ids":["fe812c12f3ab4ce6"],"threshold":1}},"spec_version":1,"type":"stratos-root","version":1}"#;

    #[test]
    fn roles_are_fields_and_the_bytes_on_disk_stay_the_same() {
        let r = parse_root(ROOT.as_bytes(), "root.json").unwrap();
        assert_eq!(r.roles.image.threshold, 1);
        assert_eq!(r.roles.get(RoleName::Root), &r.roles.root);
        assert_eq!(
            r.roles.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["channel", "image", "root"]
        );
        // The same canonical bytes as the document read (the roles as sorted map keys).
        let v: serde_json::Value = serde_json::from_str(ROOT).unwrap();
        assert_eq!(
            String::from_utf8(to_bytes(&r)).unwrap(),
            canonical_json(&v).unwrap()
        );
    }

    #[test]
    fn a_root_missing_a_role_is_malformed_and_says_which() {
        for role in ["channel", "image", "root"] {
            let mut v: serde_json::Value = serde_json::from_str(ROOT).unwrap();
            v["roles"].as_object_mut().unwrap().remove(role);
            let bytes = serde_json::to_vec(&v).unwrap();
            let e = parse_root(&bytes, "root.json").unwrap_err();
            assert!(matches!(e, ChannelError::Malformed { .. }), "{e:?}");
            let e = e.to_string();
            assert!(
                e.starts_with("root.json: malformed: roles: no ")
                    && e.contains(&format!("no {role} role")),
                "{e}"
            );
        }
    }

    /// A channel document as `publish` writes it.
    const CHANNEL: &str = r#"{"channel":"stable","expires":1900000000,"halted":false,"image":{"manifest_length":10,"manifest_sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","name":"hello","signature_length":10,"signature_sha256":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","version":"1.0"},"min_version":null,"previous":null,"rollout":{"started_at":1,"waves":[{"fleet_percent":10,"start_after":0}]},"spec_version":1,"timestamp":1,"type":"stratos-channel","version":3}"#;

    #[test]
    fn channel_digests_are_parsed_once_and_written_back_as_they_were() {
        let c = parse_channel(CHANNEL.as_bytes(), "c.json").unwrap();
        assert_eq!(c.tracks[0].image.manifest_sha256, "a".repeat(64));
        let v: serde_json::Value = serde_json::from_str(CHANNEL).unwrap();
        assert_eq!(
            String::from_utf8(to_bytes(&c)).unwrap(),
            canonical_json(&v).unwrap()
        );
        // Object names are built from these: anything but 64 lowercase hex digits is refused
        // where the document is read.
        for bad in [
            "A".repeat(64),
            "a".repeat(63),
            "../../etc/passwd".to_owned(),
        ] {
            let doc = CHANNEL.replace(&"b".repeat(64), &bad);
            let e = parse_channel(doc.as_bytes(), "c.json").unwrap_err();
            assert!(matches!(e, ChannelError::Malformed { .. }), "{e:?}");
            assert!(
                e.to_string().starts_with("c.json: malformed: a sha256 is"),
                "{e}"
            );
        }
    }
}
