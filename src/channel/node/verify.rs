//! Verifying what the repository serves, against what the node already trusts: the root
//! (walking every rotation), the channel document (signed, for this channel, unexpired, fresh,
//! not replayed) and the signed manifest it points at. Nothing is stored here.

use super::client::Node;
use super::files::{no_trusted_root, read_opt, write};
use super::transfer::Meter;
use crate::channel::doc::{
    check_expiry_bound, parse_channel, parse_root, verify_threshold, Channel, ImageRef, RoleName,
    Root, MAX_METADATA_BYTES,
};
use crate::channel::error::ChannelError;
use crate::digest::Sha256;
use crate::fsio::caps;
use crate::sign::manifest::Manifest;

/// A document's bytes and the bytes of its signatures.
type Signed = (Vec<u8>, Vec<u8>);

/// Verified metadata, not yet stored.
pub(super) struct Verified {
    /// (bytes, sigs) of each new root, in order.
    pub(super) new_roots: Vec<Signed>,
    pub(super) channel_bytes: Vec<u8>,
    pub(super) channel_sigs: Vec<u8>,
    pub(super) channel: Channel,
    /// The channel's image for the node's architecture, if it carries one.
    pub(super) image: Option<VerifiedImage>,
    /// Bytes received for all of it.
    pub(super) received: u64,
}

/// An image a verified channel document names, with its manifest and the manifest's signature,
/// verified against the root's image keys and agreeing with the document's name, version and
/// architecture.
pub(super) struct VerifiedImage {
    pub(super) image: ImageRef,
    pub(super) manifest_bytes: Vec<u8>,
    pub(super) signature_bytes: Vec<u8>,
    pub(super) manifest: Manifest,
}

impl Node {
    /// Reads `rel` (see [`super::Source::fetch`]), counting its bytes in `m`.
    fn fetch_opt(&self, rel: &str, cap: u64, m: &Meter) -> Result<Option<Vec<u8>>, ChannelError> {
        let b = self.source.fetch(rel, cap)?;
        m.add(b.as_ref().map_or(0, Vec::len));
        Ok(b)
    }

    /// Like [`Node::fetch_opt`]; a missing file is an error.
    fn fetch(&self, rel: &str, cap: u64, m: &Meter) -> Result<Vec<u8>, ChannelError> {
        self.fetch_opt(rel, cap, m)?
            .ok_or_else(|| ChannelError::NotFound {
                rel: rel.to_owned(),
            })
    }

    fn trusted_root(&self) -> Result<(Root, Vec<u8>), ChannelError> {
        let p = self.state.join("trusted/root.json");
        let bytes = read_opt(&p)?.ok_or_else(|| no_trusted_root(&self.state))?;
        Ok((parse_root(&bytes, &p.display().to_string())?, bytes))
    }

    /// Walks root rotations, verifies the channel document and the manifest it points at for
    /// this node's architecture (the other architectures' images are not looked at).
    pub(super) fn verify_metadata(&self) -> Result<Verified, ChannelError> {
        let m = Meter::default();
        let (root, new_roots) = self.follow_root(&m)?;
        let (channel_bytes, channel_sigs, channel) = self.verify_channel(&root, &m)?;
        let rel = self.channel.document();
        let image = match channel.track(self.arch) {
            Some(t) => {
                let (manifest_bytes, signature_bytes, manifest) =
                    self.verify_manifest(&root, &rel, &t.image, &m)?;
                Some(VerifiedImage {
                    image: t.image.clone(),
                    manifest_bytes,
                    signature_bytes,
                    manifest,
                })
            }
            None => None,
        };
        Ok(Verified {
            new_roots,
            channel_bytes,
            channel_sigs,
            channel,
            image,
            received: m.get(),
        })
    }

    /// The repository's current root, reached from the trusted one through every rotation
    /// (each signed by the keys before it and its own), unexpired; with the new roots' (bytes,
    /// signatures) in order.
    fn follow_root(&self, m: &Meter) -> Result<(Root, Vec<Signed>), ChannelError> {
        let (mut root, trusted_bytes) = self.trusted_root()?;
        let latest_bytes = self.fetch("root.json", MAX_METADATA_BYTES, m)?;
        let latest = parse_root(&latest_bytes, "root.json")?;
        if latest.version < root.version {
            return Err(ChannelError::Replayed {
                role: RoleName::Root,
                what: "root.json".to_owned(),
                have: root.version,
                got: latest.version,
            });
        }
        if latest.version == root.version && latest_bytes != trusted_bytes {
            return Err(ChannelError::Forked {
                role: RoleName::Root,
                what: "root.json".to_owned(),
                version: latest.version,
            });
        }
        let mut new_roots = Vec::new();
        for v in root.version + 1..=latest.version {
            let (next, b, s) = self.next_root(&root, v, m)?;
            new_roots.push((b, s));
            root = next;
        }
        if root.expires <= self.now {
            return Err(ChannelError::Expired {
                role: RoleName::Root,
                what: "root.json".to_owned(),
                version: root.version,
                at: root.expires,
            });
        }
        check_expiry_bound(
            &format!("root version {}", root.version),
            root.expires,
            self.now,
        )?;
        Ok((root, new_roots))
    }

    /// Root version `v`, signed by the keys of `root` (version `v - 1`) and by its own.
    fn next_root(
        &self,
        root: &Root,
        v: u64,
        m: &Meter,
    ) -> Result<(Root, Vec<u8>, Vec<u8>), ChannelError> {
        let b = self
            .fetch_opt(&format!("roots/{v}.root.json"), MAX_METADATA_BYTES, m)?
            .ok_or(ChannelError::RotationSkipped { version: v })?;
        let s = self.fetch(&format!("roots/{v}.sigs.json"), MAX_METADATA_BYTES, m)?;
        let next = parse_root(&b, &format!("roots/{v}.root.json"))?;
        if next.version != v {
            return Err(ChannelError::RootVersionMismatch {
                version: v,
                claimed: next.version,
            });
        }
        verify_threshold(
            &format!("root version {v} (by the keys of version {})", root.version),
            &b,
            &s,
            root,
            RoleName::Root,
        )?;
        verify_threshold(
            &format!("root version {v} (by its own keys)"),
            &b,
            &s,
            &next,
            RoleName::Root,
        )?;
        Ok((next, b, s))
    }

    /// This node's channel document (bytes, signatures, parsed): signed by the channel role,
    /// for this channel, unexpired, fresh, and no older than the one already accepted.
    fn verify_channel(
        &self,
        root: &Root,
        m: &Meter,
    ) -> Result<(Vec<u8>, Vec<u8>, Channel), ChannelError> {
        let rel = self.channel.document();
        let cb = self.fetch(&rel, MAX_METADATA_BYTES, m)?;
        let cs = self.fetch(&self.channel.signatures(), MAX_METADATA_BYTES, m)?;
        verify_threshold(&rel, &cb, &cs, root, RoleName::Channel)?;
        let c = parse_channel(&cb, &rel)?;
        if c.channel != self.channel {
            return Err(ChannelError::WrongChannel {
                what: rel,
                got: c.channel,
                want: self.channel.clone(),
            });
        }
        self.check_channel_fresh(&rel, &c)?;
        self.check_not_replayed(&rel, &c, &cb)?;
        Ok((cb, cs, c))
    }

    /// Refuses an expired channel document, one valid for too long, and one signed longer ago
    /// than this node's maximum age.
    fn check_channel_fresh(&self, rel: &str, c: &Channel) -> Result<(), ChannelError> {
        if c.expires <= self.now {
            return Err(ChannelError::Expired {
                role: RoleName::Channel,
                what: rel.to_owned(),
                version: c.version,
                at: c.expires,
            });
        }
        check_expiry_bound(rel, c.expires, self.now)?;
        // Freeze protection: an unexpired document can still be one the operator has long
        // replaced; a mirror serving it forever would keep this node from ever updating.
        let age = self.now.saturating_sub(c.timestamp);
        if age > self.max_age {
            return Err(ChannelError::Frozen {
                what: rel.to_owned(),
                version: c.version,
                age,
                max_age: self.max_age,
                channel: self.channel.clone(),
            });
        }
        Ok(())
    }

    /// Refuses a channel version older than the one this node accepted, or the same version
    /// with other bytes.
    fn check_not_replayed(&self, rel: &str, c: &Channel, bytes: &[u8]) -> Result<(), ChannelError> {
        let stored = read_opt(&self.state.join("trusted").join(self.channel.document()))?;
        let Some(sb) = stored else {
            return Ok(());
        };
        let s = parse_channel(&sb, "stored channel")?;
        if c.version < s.version {
            return Err(ChannelError::Replayed {
                role: RoleName::Channel,
                what: rel.to_owned(),
                have: s.version,
                got: c.version,
            });
        }
        if c.version == s.version && bytes != sb.as_slice() {
            return Err(ChannelError::Forked {
                role: RoleName::Channel,
                what: rel.to_owned(),
                version: c.version,
            });
        }
        Ok(())
    }

    /// Fetches the manifest of the image `img` the channel document `rel` lists and its
    /// signature, checks both against the document's digests, the signature against the root's
    /// image keys, and the image name, version and architecture the document claims against
    /// the signed manifest (a channel key alone cannot relabel an old image as a new one, nor
    /// send one architecture's image to another's nodes).
    fn verify_manifest(
        &self,
        root: &Root,
        rel: &str,
        img: &ImageRef,
        m: &Meter,
    ) -> Result<(Vec<u8>, Vec<u8>, Manifest), ChannelError> {
        for (what, len, cap) in [
            ("manifest", img.manifest_length, caps::MANIFEST),
            ("manifest signature", img.signature_length, caps::SIGNATURE),
        ] {
            if len > cap {
                return Err(ChannelError::DeclaredTooLarge {
                    what: rel.to_owned(),
                    object: what,
                    len,
                    cap,
                });
            }
        }
        let manifest = self.fetch(
            &format!("objects/sha256/{}", img.manifest_sha256),
            img.manifest_length,
            m,
        )?;
        if manifest.len() as u64 != img.manifest_length
            || Sha256::of(&manifest) != img.manifest_sha256
        {
            return Err(ChannelError::ManifestMismatch);
        }
        let sig = self.fetch(
            &format!("objects/sha256/{}", img.signature_sha256),
            img.signature_length,
            m,
        )?;
        if Sha256::of(&sig) != img.signature_sha256 {
            return Err(ChannelError::SignatureMismatch);
        }
        let sf: crate::sign::manifest::SignatureFile =
            serde_json::from_slice(&sig).map_err(|source| {
                ChannelError::MalformedSignatureFile {
                    what: "manifest signature".to_owned(),
                    source,
                }
            })?;
        let pk = root.image_key(&sf.key_id, &format!("{} {}", img.name, img.version))?;
        let raw: [u8; 64] = hex::decode(&sf.signature)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(ChannelError::MalformedImageSignature { path: None })?;
        if !pk.verify(&manifest, &raw) {
            return Err(ChannelError::ImageSignatureInvalid { path: None });
        }
        let m =
            crate::sign::verify::parse_manifest(&manifest).map_err(ChannelError::BadManifest)?;
        if m.image.name != img.name || m.image.version != img.version {
            return Err(ChannelError::Relabelled {
                what: rel.to_owned(),
                name: img.name.clone(),
                version: img.version.clone(),
                signed_name: m.image.name.clone(),
                signed_version: m.image.version.clone(),
            });
        }
        if m.image.arch != img.arch {
            return Err(ChannelError::ArchMismatch {
                what: rel.to_owned(),
                name: img.name.clone(),
                version: img.version.clone(),
                arch: img.arch,
                signed_arch: m.image.arch,
            });
        }
        Ok((manifest, sig, m))
    }
}

impl Verified {
    /// Stores what `node` now trusts: the newest root (signatures first), then the channel
    /// document. Done last, once everything else succeeded.
    pub(super) fn store(&self, node: &Node) -> Result<(), ChannelError> {
        if let Some((b, s)) = self.new_roots.last() {
            write(&node.state.join("trusted/root.sigs.json"), s)?;
            write(&node.state.join("trusted/root.json"), b)?;
        }
        let trusted = node.state.join("trusted");
        write(&trusted.join(node.channel.signatures()), &self.channel_sigs)?;
        write(&trusted.join(node.channel.document()), &self.channel_bytes)
    }
}
