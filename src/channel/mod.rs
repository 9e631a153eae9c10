//! Signed release channels: a static repository of signed metadata and content-addressed
//! objects, operator commands that write it, and the node-side client that decides, verifies
//! and stages updates.
//!
//! Layout (servable by any static HTTP server, object store or CDN):
//! ```text
//! root.json, root.sigs.json                 current root: keys, role thresholds, version, expiry
//! roots/<N>.root.json, roots/<N>.sigs.json   every root version, for nodes walking rotations
//! channels/<name>.json, <name>.sigs.json    channel: image, rollout, halted, version, expiry
//! objects/sha256/<hex>                      manifest.json, manifest.sig and every artifact
//! ```
//! Signatures are detached: `*.sigs.json` holds ed25519 signatures over the exact bytes of the
//! document next to it.
//!
//! Freshness: every channel document carries the time it was signed (`timestamp`); nodes refuse
//! one older than their maximum age ([`DEFAULT_MAX_AGE`], `update --max-age`), so a mirror
//! cannot freeze a node on an old but unexpired document. `stratos repo refresh` re-signs a
//! channel unchanged (a new version and timestamp) for channels that do not change for weeks.

pub mod client;
mod error;
pub mod gate;
pub mod keys;
pub mod lifecycle;
mod name;
pub mod repo;
pub mod rollout;
pub mod transport;
pub mod waves;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use error::{
    ChannelError, FailedNode, GateError, ImageCheckError, ImageNamed, StateError, Tie, UsageError,
    WaveFault, WavesError,
};
pub use name::ChannelName;
pub use rollout::{Rollout, Wave};

use crate::sign::manifest::canonical_json;
use crate::sign::{KeyId, PublicKey, SecretKey};

pub const ROOT_TYPE: &str = "stratos-root";
pub const CHANNEL_TYPE: &str = "stratos-channel";
pub const SPEC_VERSION: u32 = 1;
/// Largest metadata document a node accepts.
pub const MAX_METADATA_BYTES: u64 = 1 << 20;
/// Longest validity an operator may give a root or channel document (`--expires`): 10 years.
pub const MAX_VALIDITY: u64 = 3650 * 86_400;
/// How far beyond [`MAX_VALIDITY`] a node still accepts an expiry (operator clocks ahead).
pub const CLOCK_SKEW: u64 = 86_400;
/// Oldest channel document a node accepts by default (`update --max-age`): a week. The
/// operator re-signs channels at least that often (`stratos repo refresh`, e.g. daily from cron).
pub const DEFAULT_MAX_AGE: u64 = 7 * 86_400;

/// Seconds since the epoch, now. A clock set before 1970 reads as 0 (no error to report
/// there: documents signed then expire at once, and nodes reach no rollout).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

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

/// The roles a root delegates to: who signs roots, channel documents and images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RoleName {
    Channel,
    Image,
    Root,
}

impl RoleName {
    /// Every role, in the order root.json lists them.
    pub const ALL: [RoleName; 3] = [RoleName::Channel, RoleName::Image, RoleName::Root];

    pub fn as_str(self) -> &'static str {
        match self {
            RoleName::Channel => "channel",
            RoleName::Image => "image",
            RoleName::Root => "root",
        }
    }

    /// What a key of this role signs, for messages.
    pub fn what_it_signs(self) -> &'static str {
        match self {
            RoleName::Channel => "channel documents",
            RoleName::Image => "images nodes will stage",
            RoleName::Root => "root documents",
        }
    }
}

impl std::fmt::Display for RoleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
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
    pub manifest_sha256: String,
    pub manifest_length: u64,
    pub signature_sha256: String,
    pub signature_length: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    #[serde(rename = "type")]
    pub kind: String,
    pub spec_version: u32,
    pub channel: ChannelName,
    pub version: u64,
    pub expires: u64,
    /// When this version was written.
    pub timestamp: u64,
    pub image: ImageRef,
    pub rollout: Rollout,
    /// Nodes running an image older than this update regardless of the rollout.
    #[serde(default)]
    pub min_version: Option<String>,
    #[serde(default)]
    pub halted: bool,
    /// The image this channel pointed at before (what `rollback` returns to).
    #[serde(default)]
    pub previous: Option<ImageRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub key_id: KeyId,
    /// 64 bytes, hex.
    pub sig: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signatures {
    pub signatures: Vec<Signature>,
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

/// What is at `p` (following links): `None` when nothing is (the path or a directory on it is
/// missing, or a file stands where a directory would be); an error when it cannot be told.
pub(crate) fn metadata_if_there(p: &Path) -> Result<Option<std::fs::Metadata>, ChannelError> {
    match std::fs::metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
        {
            Ok(None)
        }
        Err(e) => Err(io(format!("looking for {}", p.display()))(e)),
    }
}

/// Maps an I/O error to [`ChannelError::Io`] naming what was being done.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ChannelError {
    ChannelError::io(what)
}

/// `8d 2h`, `3h 5m`, `45s`: an age or a duration for messages.
pub fn fmt_age(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// `YYYY-MM-DD HH:MM UTC` from Unix seconds (the raw number past the year 9999).
pub fn fmt_time(t: u64) -> String {
    // 9999-12-31T23:59:59Z
    if t > 253_402_300_799 {
        return format!("{t} (after the year 9999)");
    }
    let s = crate::sbom::rfc3339(t); // YYYY-MM-DDTHH:MM:SSZ
    format!("{} {} UTC", &s[..10], &s[11..16])
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

/// Canonical bytes of a document.
pub fn to_bytes<T: Serialize>(doc: &T) -> Vec<u8> {
    canonical_json(&serde_json::to_value(doc).expect("plain data"))
        .expect("no floats")
        .into_bytes()
}

pub fn sign_bytes(bytes: &[u8], keys: &[&SecretKey]) -> Vec<u8> {
    let s = Signatures {
        signatures: keys
            .iter()
            .map(|k| Signature {
                key_id: k.id().clone(),
                sig: hex::encode(k.sign(bytes)),
            })
            .collect(),
    };
    to_bytes(&s)
}

/// Checks that at least `role.threshold` distinct keys of `role` signed `bytes`.
pub fn verify_threshold(
    what: &str,
    bytes: &[u8],
    sigs: &[u8],
    root: &Root,
    role: RoleName,
) -> Result<(), ChannelError> {
    let r = root.roles.get(role);
    let sigs: Signatures =
        serde_json::from_slice(sigs).map_err(|source| ChannelError::MalformedSignatures {
            what: what.to_owned(),
            source,
        })?;
    // Distinct *keys*, not ids: even if a root listed one key under two ids (parse_root
    // refuses that), one signature would count once.
    let mut good: BTreeSet<String> = BTreeSet::new();
    for s in &sigs.signatures {
        if !r.key_ids.contains(&s.key_id) {
            continue; // not a key of this role
        }
        let Some(pk) = root.key(&s.key_id) else {
            continue;
        };
        if pk.id() != &s.key_id || good.contains(&pk.to_hex()) {
            continue; // an id that is not its key's, or the same key counted again
        }
        // A malformed signature is one that does not count, like a wrong one: the threshold
        // below says how many did.
        let Some(sig) = hex::decode(&s.sig)
            .ok()
            .and_then(|v| <[u8; 64]>::try_from(v).ok())
        else {
            continue;
        };
        if pk.verify(bytes, &sig) {
            good.insert(pk.to_hex());
        }
    }
    if (good.len() as u32) < r.threshold.max(1) {
        return Err(ChannelError::ThresholdUnmet {
            what: what.to_owned(),
            role,
            have: good.len(),
            need: r.threshold.max(1),
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
    for r in std::iter::once(&c.image).chain(c.previous.as_ref()) {
        if !is_sha256_hex(&r.manifest_sha256) || !is_sha256_hex(&r.signature_sha256) {
            return Err(ChannelError::MalformedDigests {
                what: what.to_owned(),
            });
        }
    }
    Ok(c)
}

/// 64 lowercase hex digits (object names are built from these).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Orders versions like `1.2.10` > `1.2.9`: numeric runs compare as numbers, the rest as text.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = Vec::new();
        for c in s.chars() {
            let d = c.is_ascii_digit();
            match out.last_mut() {
                Some((kind, cur)) if *kind == d => cur.push(c),
                _ => out.push((d, c.to_string())),
            }
        }
        out
    }
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(&pb) {
        let o = match (x.0, y.0) {
            (true, true) => {
                let (xs, ys) = (x.1.trim_start_matches('0'), y.1.trim_start_matches('0'));
                xs.len().cmp(&ys.len()).then_with(|| xs.cmp(ys))
            }
            _ => x.1.cmp(&y.1),
        };
        if o.is_ne() {
            return o;
        }
    }
    pa.len().cmp(&pb.len())
}

/// The node's cohort in basis points: SHA-256(node-id ‖ channel ‖ image version) → [0, 10000).
pub fn cohort(node_id: &str, channel: &str, image_version: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(node_id.as_bytes());
    h.update([0]);
    h.update(channel.as_bytes());
    h.update([0]);
    h.update(image_version.as_bytes());
    let d = h.finalize();
    (u64::from_be_bytes(d[..8].try_into().expect("8 bytes")) % 10_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_expiry_bounds() {
        assert_eq!(fmt_age(45), "45s");
        assert_eq!(fmt_age(8 * 86_400 + 2 * 3600 + 5), "8d 2h");
        assert_eq!(fmt_age(3 * 3600 + 5 * 60), "3h 5m");
        assert_eq!(fmt_age(7 * 86_400), "7d");
        assert!(check_expiry_bound("d", 1000 + MAX_VALIDITY, 1000).is_ok());
        let e = check_expiry_bound("d", u64::MAX, 1000)
            .unwrap_err()
            .to_string();
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

    #[test]
    fn times() {
        assert_eq!(fmt_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(fmt_time(1_795_392_000), "2026-11-23 00:00 UTC");
        assert_eq!(fmt_time(951_782_400), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn versions_order_naturally() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("1.2.10", "1.2.9"), Greater);
        assert_eq!(compare_versions("1.0", "1.0"), Equal);
        assert_eq!(compare_versions("1.0", "1.0.1"), Less);
        assert_eq!(compare_versions("0.10.0", "0.9.9"), Greater);
    }

    #[test]
    fn cohorts_are_spread_evenly_and_stable() {
        let n = 100_000;
        for pct in [1u32, 10, 25, 50] {
            let sel = (0..n)
                .filter(|i| cohort(&format!("node-{i}"), "stable", "1.2.0") < pct * 100)
                .count();
            let share = sel as f64 / n as f64 * 100.0;
            assert!((share - pct as f64).abs() <= 1.0, "{pct}%: {share}%");
        }
        assert_eq!(cohort("a", "b", "c"), cohort("a", "b", "c"));
        assert_ne!(cohort("a", "b", "1"), cohort("a", "b", "2"));
    }
}
