//! The operator side: writing the release repository. Every write is atomic (temporary file +
//! fsync + rename) and objects are written before the channel document that names them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::*;
use crate::fsio::write_atomic;
use crate::fsio::{self, caps, Links};
use crate::sign::manifest::{MANIFEST_FILE, SIGNATURE_FILE};
use crate::sign::sha256_hex;

pub struct Repo {
    pub dir: PathBuf,
}

/// A metadata file of the repository: regular, at most [`caps::METADATA`] bytes.
fn read(p: &Path) -> Result<Vec<u8>, ChannelError> {
    fsio::read_file(p, caps::METADATA, "a repository metadata file").map_err(ChannelError::Read)
}

/// Like [`read`], `None` if the file is not there.
fn read_opt(p: &Path) -> Result<Option<Vec<u8>>, ChannelError> {
    match fsio::read_file(p, caps::METADATA, "a repository metadata file") {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(ChannelError::Read(e)),
    }
}

/// A file of the image being published: regular and not a symlink (like `verify`).
fn read_image_file(p: &Path, cap: u64, what: &'static str) -> Result<Vec<u8>, ChannelError> {
    fsio::read_regular(p, cap, what, Links::Refuse).map_err(ChannelError::RefusedFile)
}

/// Refuses a list of keys naming one key twice (`flag` says where they came from): a threshold
/// counts distinct keys, so a repeated key only makes a threshold unreachable.
fn distinct(ids: &[KeyId], flag: &'static str) -> Result<(), ChannelError> {
    let mut seen = BTreeSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(UsageError::KeyGivenTwice {
                flag,
                key: id.clone(),
            }
            .into());
        }
    }
    Ok(())
}

/// Refuses to make a repository where one is (or may be: a root.json that cannot be looked at
/// is not overwritten either).
fn refuse_existing_repo(dir: &Path) -> Result<(), ChannelError> {
    if metadata_if_there(&dir.join("root.json"))?.is_some() {
        return Err(UsageError::RepoExists {
            dir: dir.to_owned(),
        }
        .into());
    }
    Ok(())
}

/// `keys`, or the root keys when none are given.
fn or_root_keys(keys: &[PublicKey], root: &[PublicKey]) -> Vec<PublicKey> {
    if keys.is_empty() { root } else { keys }.to_vec()
}

/// At least one root key, no key given twice for a role, a root threshold the keys meet.
fn check_keys(
    root: &[PublicKey],
    threshold: u32,
    channel: &[PublicKey],
    image: &[PublicKey],
) -> Result<(), ChannelError> {
    if root.is_empty() {
        return Err(UsageError::NoRootKey.into());
    }
    let ids = |ks: &[PublicKey]| ks.iter().map(|k| k.id().clone()).collect::<Vec<_>>();
    distinct(&ids(root), "--root-key")?;
    distinct(&ids(channel), "--channel-key")?;
    distinct(&ids(image), "--image-key")?;
    check_threshold("--threshold", threshold, root.len(), "root keys")
}

/// A threshold between 1 and the number of keys that can meet it.
fn check_threshold(
    flag: &'static str,
    t: u32,
    keys: usize,
    what: &'static str,
) -> Result<(), ChannelError> {
    if t == 0 || t as usize > keys {
        return Err(UsageError::BadThreshold {
            flag,
            threshold: t,
            keys,
            what,
        }
        .into());
    }
    Ok(())
}

/// Root version 1: the keys and threshold of the root, channel and image roles.
fn first_root(
    expires: u64,
    root: (&[PublicKey], u32),
    channel: (&[PublicKey], u32),
    image: (&[PublicKey], u32),
) -> Root {
    let mut keys = BTreeMap::new();
    let mut role = |(pubs, threshold): (&[PublicKey], u32)| {
        for p in pubs {
            keys.insert(p.id().clone(), key_entry(p));
        }
        Role {
            key_ids: pubs.iter().map(|p| p.id().clone()).collect(),
            threshold,
        }
    };
    let roles = Roles {
        root: role(root),
        channel: role(channel),
        image: role(image),
    };
    Root {
        kind: ROOT_TYPE.into(),
        spec_version: SPEC_VERSION,
        version: 1,
        expires,
        keys,
        roles,
    }
}

/// Refuses a rotation to keys given twice, a threshold the new keys cannot meet, or `--also
/// root` (the root role is the one being rotated).
fn check_rotation(
    new_keys: &[SecretKey],
    threshold: u32,
    also: &[RoleName],
) -> Result<(), ChannelError> {
    let new_ids: Vec<KeyId> = new_keys.iter().map(|k| k.id().clone()).collect();
    distinct(&new_ids, "--new-key")?;
    check_threshold("--threshold", threshold, new_keys.len(), "new root keys")?;
    if let Some(r) = also.iter().find(|r| **r == RoleName::Root) {
        return Err(UsageError::CannotFollowRoot { role: *r }.into());
    }
    Ok(())
}

/// The next root: `new_keys` in the root role, the retired root keys replaced in the roles
/// of `also`, keys no role uses any more dropped. Says which roles still trust a retired key.
fn rotated_root(
    old: &Root,
    new_keys: &[SecretKey],
    threshold: u32,
    expires: u64,
    also: &[RoleName],
) -> Result<Rotation, ChannelError> {
    let new_ids: Vec<KeyId> = new_keys.iter().map(|k| k.id().clone()).collect();
    let mut root = old.clone();
    root.version += 1;
    root.expires = expires;
    let retired: Vec<KeyId> = old
        .roles
        .root
        .key_ids
        .iter()
        .filter(|id| !new_ids.contains(id))
        .cloned()
        .collect();
    root.roles.root = Role {
        key_ids: new_ids.clone(),
        threshold,
    };
    let mut rotated = Vec::new();
    let mut still_trusting = Vec::new();
    for name in [RoleName::Channel, RoleName::Image] {
        let role = root.roles.get_mut(name);
        let stale: Vec<KeyId> = role
            .key_ids
            .iter()
            .filter(|id| retired.contains(id))
            .cloned()
            .collect();
        if stale.is_empty() {
            continue;
        }
        if !also.contains(&name) {
            still_trusting.push((name, stale));
            continue;
        }
        follow_root_keys(name, role, &retired, &new_ids)?;
        rotated.push(name);
    }
    for k in new_keys {
        root.keys.insert(k.id().clone(), key_entry(&k.public()));
    }
    drop_unused_keys(&mut root);
    Ok(Rotation {
        root,
        retired,
        rotated,
        still_trusting,
        resigned: Vec::new(),
    })
}

/// Replaces the `retired` root keys of `role` by the `new` ones (its threshold unchanged).
fn follow_root_keys(
    name: RoleName,
    role: &mut Role,
    retired: &[KeyId],
    new: &[KeyId],
) -> Result<(), ChannelError> {
    role.key_ids.retain(|id| !retired.contains(id));
    for id in new {
        if !role.key_ids.contains(id) {
            role.key_ids.push(id.clone());
        }
    }
    if role.threshold as usize > role.key_ids.len() {
        return Err(UsageError::RotationBelowThreshold {
            role: name,
            threshold: role.threshold,
            keys: role.key_ids.len(),
        }
        .into());
    }
    Ok(())
}

/// Drops the keys no role uses any more.
fn drop_unused_keys(root: &mut Root) {
    let used: BTreeSet<KeyId> = root
        .roles
        .iter()
        .flat_map(|(_, r)| r.key_ids.iter().cloned())
        .collect();
    root.keys.retain(|id, _| used.contains(id));
}

/// The bytes of the rotated root and its signatures by the old and the new keys, each set
/// meeting its own root's threshold.
fn sign_rotated_root(
    old: &Root,
    root: &Root,
    old_keys: &[SecretKey],
    new_keys: &[SecretKey],
) -> Result<(Vec<u8>, Vec<u8>), ChannelError> {
    let bytes = to_bytes(root);
    let mut signers: Vec<&SecretKey> = old_keys.iter().collect();
    for k in new_keys {
        if !signers.iter().any(|s| s.id() == k.id()) {
            signers.push(k);
        }
    }
    let sigs = sign_bytes(&bytes, &signers);
    verify_threshold("new root (old keys)", &bytes, &sigs, old, RoleName::Root)
        .map_err(keys_short("pass the current root keys with --old-key"))?;
    verify_threshold("new root (new keys)", &bytes, &sigs, root, RoleName::Root)?;
    Ok((bytes, sigs))
}

/// Signing keys short of the threshold of the role they sign for: bad input, with `hint`.
fn keys_short(hint: &'static str) -> impl FnOnce(ChannelError) -> ChannelError {
    move |e| {
        UsageError::KeysShort {
            source: Box::new(e),
            hint,
        }
        .into()
    }
}

/// What `repo rotate-key` did.
#[derive(Debug)]
pub struct Rotation {
    pub root: Root,
    /// Root key ids no longer in the root role.
    pub retired: Vec<KeyId>,
    /// Roles in which the retired keys were replaced by the new root keys (`--also`).
    pub rotated: Vec<RoleName>,
    /// Other roles that still trust a retired key, with those keys.
    pub still_trusting: Vec<(RoleName, Vec<KeyId>)>,
    /// Channels re-signed with the new keys because their role was rotated.
    pub resigned: Vec<ChannelName>,
}

fn key_entry(k: &PublicKey) -> KeyEntry {
    KeyEntry {
        kind: "ed25519".into(),
        public: k.to_hex(),
    }
}

/// What `repo status` shows: the root's version and expiry, and a row per channel. (Fields in
/// the order the JSON lists them.)
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub channels: Vec<StatusRow>,
    pub root_expires: u64,
    pub root_version: u64,
}

/// One row of `repo status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    pub channel: ChannelName,
    pub version: u64,
    pub image: String,
    pub image_version: String,
    pub reached_percent: f64,
    pub halted: bool,
    pub expires: u64,
    pub expired: bool,
    /// When this version was signed (nodes refuse documents older than their --max-age).
    pub timestamp: u64,
}

impl StatusRow {
    fn of(c: &Channel, t: u64) -> StatusRow {
        StatusRow {
            channel: c.channel.clone(),
            version: c.version,
            image: c.image.name.clone(),
            image_version: c.image.version.clone(),
            reached_percent: f64::from(c.rollout.reached_bp(t)) / 100.0,
            halted: c.halted,
            expires: c.expires,
            expired: c.expires <= t,
            timestamp: c.timestamp,
        }
    }
}

impl Repo {
    pub fn open(dir: &Path) -> Result<Repo, ChannelError> {
        let root = metadata_if_there(&dir.join("root.json"))?;
        if !root.is_some_and(|m| m.is_file()) {
            return Err(UsageError::NotARepo {
                dir: dir.to_owned(),
            }
            .into());
        }
        Ok(Repo {
            dir: dir.to_owned(),
        })
    }

    fn write(&self, rel: &str, bytes: &[u8]) -> Result<(), ChannelError> {
        let p = self.dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        write_atomic(&p, bytes, 0o644).map_err(io(format!("writing {}", p.display())))
    }

    /// Creates a repository with root version 1. The channel and image roles trust the root
    /// keys unless given keys of their own.
    pub fn init(
        dir: &Path,
        root_keys: &[SecretKey],
        threshold: u32,
        channel_keys: &[PublicKey],
        channel_threshold: u32,
        image_keys: &[PublicKey],
        expires: u64,
    ) -> Result<Root, ChannelError> {
        refuse_existing_repo(dir)?;
        let root_pubs: Vec<PublicKey> = root_keys.iter().map(SecretKey::public).collect();
        let channel_pubs = or_root_keys(channel_keys, &root_pubs);
        let image_pubs = or_root_keys(image_keys, &root_pubs);
        check_keys(&root_pubs, threshold, channel_keys, image_keys)?;
        check_threshold(
            "--channel-threshold",
            channel_threshold,
            channel_pubs.len(),
            "channel keys",
        )?;
        let root = first_root(
            expires,
            (&root_pubs, threshold),
            (&channel_pubs, channel_threshold),
            (&image_pubs, 1),
        );
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let repo = Repo {
            dir: dir.to_owned(),
        };
        let bytes = to_bytes(&root);
        let signers: Vec<&SecretKey> = root_keys.iter().collect();
        repo.write_root(1, &bytes, &sign_bytes(&bytes, &signers))?;
        Ok(root)
    }

    /// The current root, checked against its own root role.
    pub fn root(&self) -> Result<Root, ChannelError> {
        let bytes = read(&self.dir.join("root.json"))?;
        let root = parse_root(&bytes, "root.json")?;
        verify_threshold(
            "root.json",
            &bytes,
            &read(&self.dir.join("root.sigs.json"))?,
            &root,
            RoleName::Root,
        )?;
        Ok(root)
    }

    /// The channel document of `name`; `None` if the repository has none (any other failure
    /// to read it is an error, never taken for "no channel").
    pub fn channel(&self, name: &ChannelName) -> Result<Option<Channel>, ChannelError> {
        let rel = name.document();
        let bytes = match read_opt(&self.dir.join(&rel))? {
            Some(b) => b,
            None => return Ok(None),
        };
        Ok(Some(parse_channel(&bytes, &rel)?))
    }

    fn require_channel(&self, name: &ChannelName) -> Result<Channel, ChannelError> {
        self.channel(name)?.ok_or_else(|| {
            UsageError::NoSuchChannel {
                channel: name.clone(),
                repo: self.dir.clone(),
            }
            .into()
        })
    }

    /// Signs and writes a channel document (objects must already be in place).
    fn write_channel(&self, c: &Channel, keys: &[SecretKey]) -> Result<(), ChannelError> {
        let root = self.root()?;
        let bytes = to_bytes(c);
        let signers: Vec<&SecretKey> = keys.iter().collect();
        let sigs = sign_bytes(&bytes, &signers);
        let what = format!("channel {}", c.channel);
        verify_threshold(&what, &bytes, &sigs, &root, RoleName::Channel).map_err(keys_short(
            "sign with the channel role's keys (--sign-key, repeat it to meet the threshold)",
        ))?;
        // Signatures first: a reader that sees the new document also finds its signatures.
        self.write(&c.channel.signatures(), &sigs)?;
        self.write(&c.channel.document(), &bytes)?;
        Ok(())
    }

    /// Copies a verified, signed image into the object store; returns its reference.
    ///
    /// Every file is opened as a regular file (a FIFO or device in the image is refused at
    /// once, never waited on), and what is copied is what was checked: each artifact is
    /// hashed while it is copied and must match the signed manifest.
    pub fn add_image(&self, image: &Path) -> Result<ImageRef, ChannelError> {
        let root = self.root()?;
        let sig_path = image.join(SIGNATURE_FILE);
        if metadata_if_there(&sig_path)?.is_none() {
            return Err(ChannelError::Unsigned {
                image: image.to_owned(),
            });
        }
        let sigb = read_image_file(&sig_path, caps::SIGNATURE, "a signature")?;
        let manifest = read_image_file(&image.join(MANIFEST_FILE), caps::MANIFEST, "a manifest")?;
        let sig: crate::sign::manifest::SignatureFile =
            serde_json::from_slice(&sigb).map_err(|source| {
                ChannelError::MalformedSignatureFile {
                    what: sig_path.display().to_string(),
                    source,
                }
            })?;
        let pk = root.image_key(&sig.key_id, &image.display().to_string())?;
        let raw: [u8; 64] = hex::decode(&sig.signature)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| ChannelError::MalformedImageSignature {
                path: Some(sig_path.clone()),
            })?;
        if !pk.verify(&manifest, &raw) {
            return Err(ChannelError::ImageSignatureInvalid {
                path: Some(sig_path),
            });
        }
        let bad_image = |source| ChannelError::BadImage {
            what: image.display().to_string(),
            source,
        };
        let m = crate::sign::verify::parse_manifest(&manifest).map_err(bad_image)?;
        // Every artifact must be a regular file before anything reads it whole.
        for a in &m.artifacts {
            let p = image.join(&a.name);
            match fsio::open_regular(&p, Links::Refuse) {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {} // verify_image names it as missing
                Err(e) => return Err(ChannelError::RefusedFile(e)),
            }
        }
        crate::sign::verify::verify_image(image, &pk).map_err(bad_image)?;
        for a in &m.artifacts {
            self.copy_object(&image.join(&a.name), &a.sha256, a.size)?;
        }
        let (mh, sh) = (sha256_hex(&manifest), sha256_hex(&sigb));
        self.write(&format!("objects/sha256/{mh}"), &manifest)?;
        self.write(&format!("objects/sha256/{sh}"), &sigb)?;
        Ok(ImageRef {
            name: m.image.name.clone(),
            version: m.image.version.clone(),
            manifest_sha256: mh,
            manifest_length: manifest.len() as u64,
            signature_sha256: sh,
            signature_length: sigb.len() as u64,
        })
    }

    /// Streams `src` into `objects/sha256/<sha256>` (temporary file, fsync, rename), checking
    /// on the way that it is `size` bytes with that digest.
    fn copy_object(&self, src: &Path, sha256: &str, size: u64) -> Result<(), ChannelError> {
        use sha2::{Digest, Sha256};
        if !is_sha256_hex(sha256) {
            return Err(ChannelError::MalformedArtifactDigest {
                what: src.display().to_string(),
            });
        }
        let (f, _) = fsio::open_regular(src, Links::Refuse).map_err(ChannelError::RefusedFile)?;
        let dir = self.dir.join("objects/sha256");
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let dest = dir.join(sha256);
        let mut tmp = tempfile::Builder::new()
            .prefix(".stratos-tmp-")
            .tempfile_in(&dir)
            .map_err(io(format!("creating a file in {}", dir.display())))?;
        let mut h = Sha256::new();
        let mut n = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        // One byte past the size is enough to know it grew.
        let mut r = f.take(size + 1);
        loop {
            let k = r
                .read(&mut buf)
                .map_err(io(format!("reading {}", src.display())))?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            n += k as u64;
            tmp.write_all(&buf[..k])
                .map_err(io(format!("writing {}", dest.display())))?;
        }
        if n != size || hex::encode(h.finalize()) != sha256 {
            return Err(ChannelError::ChangedWhilePublished {
                path: src.to_owned(),
            });
        }
        {
            use std::os::unix::fs::PermissionsExt;
            let f = tmp.as_file();
            f.set_permissions(std::fs::Permissions::from_mode(0o644))
                .and_then(|_| f.sync_all())
                .map_err(io(format!("writing {}", dest.display())))?;
        }
        tmp.persist(&dest)
            .map_err(|e| io(format!("writing {}", dest.display()))(e.error))?;
        Ok(())
    }

    fn next(
        &self,
        old: Option<&Channel>,
        name: &ChannelName,
        image: ImageRef,
        rollout: Rollout,
        expires: u64,
    ) -> Channel {
        let now = now();
        Channel {
            kind: CHANNEL_TYPE.into(),
            spec_version: SPEC_VERSION,
            channel: name.clone(),
            version: old.map_or(1, |c| c.version + 1),
            expires,
            timestamp: now,
            previous: old.and_then(|c| {
                if c.image != image {
                    Some(c.image.clone())
                } else {
                    c.previous.clone()
                }
            }),
            min_version: old.and_then(|c| c.min_version.clone()),
            halted: false,
            image,
            rollout,
        }
    }

    pub fn publish(
        &self,
        image: &Path,
        name: &ChannelName,
        keys: &[SecretKey],
        rollout: Rollout,
        expires: u64,
    ) -> Result<Channel, ChannelError> {
        let r = self.add_image(image)?;
        let old = self.channel(name)?;
        let c = self.next(old.as_ref(), name, r, rollout, expires);
        self.write_channel(&c, keys)?;
        Ok(c)
    }

    pub fn promote(
        &self,
        from: &ChannelName,
        to: &ChannelName,
        keys: &[SecretKey],
        rollout: Rollout,
        expires: u64,
    ) -> Result<Channel, ChannelError> {
        let src = self.require_channel(from)?;
        let old = self.channel(to)?;
        let c = self.next(old.as_ref(), to, src.image.clone(), rollout, expires);
        self.write_channel(&c, keys)?;
        Ok(c)
    }

    /// A new version of the channel with `f` applied (same image).
    pub fn update(
        &self,
        name: &ChannelName,
        keys: &[SecretKey],
        expires: u64,
        f: impl FnOnce(&mut Channel) -> Result<(), ChannelError>,
    ) -> Result<Channel, ChannelError> {
        let mut c = self.require_channel(name)?;
        c.version += 1;
        c.timestamp = now();
        c.expires = expires;
        f(&mut c)?;
        self.write_channel(&c, keys)?;
        Ok(c)
    }

    /// A new, higher version pointing at the previous image.
    pub fn rollback(
        &self,
        name: &ChannelName,
        keys: &[SecretKey],
        expires: u64,
    ) -> Result<Channel, ChannelError> {
        self.update(name, keys, expires, |c| {
            let prev = c
                .previous
                .take()
                .ok_or_else(|| UsageError::NoPreviousImage {
                    channel: name.clone(),
                })?;
            c.previous = Some(std::mem::replace(&mut c.image, prev));
            c.rollout = Rollout::percent(100, now());
            c.halted = false;
            Ok(())
        })
    }

    /// A new root version with `new_keys` as root keys, signed by the old keys (meeting the old
    /// threshold) and the new ones (meeting the new threshold).
    ///
    /// Other roles (`channel`, `image`) that trusted a retired root key keep trusting it unless
    /// named in `also`: there the retired keys are replaced by the new root keys (thresholds
    /// unchanged), and when the channel role changes every channel document is re-signed with
    /// the new keys, so nodes accept them under the new root.
    pub fn rotate(
        &self,
        old_keys: &[SecretKey],
        new_keys: &[SecretKey],
        threshold: u32,
        expires: u64,
        also: &[RoleName],
    ) -> Result<Rotation, ChannelError> {
        let old = self.root()?;
        check_rotation(new_keys, threshold, also)?;
        let mut rot = rotated_root(&old, new_keys, threshold, expires, also)?;
        let (bytes, sigs) = sign_rotated_root(&old, &rot.root, old_keys, new_keys)?;
        // The channels to re-sign, read before anything changes.
        let channels = if rot.rotated.contains(&RoleName::Channel) {
            self.channel_names()?
        } else {
            Vec::new()
        };
        self.write_root(rot.root.version, &bytes, &sigs)?;
        rot.resigned = self.resign(channels, new_keys, rot.root.version)?;
        Ok(rot)
    }

    /// Writes root version `v` (its numbered copy for nodes walking rotations, then the
    /// current one; signatures before each document).
    fn write_root(&self, v: u64, bytes: &[u8], sigs: &[u8]) -> Result<(), ChannelError> {
        self.write(&format!("roots/{v}.root.json"), bytes)?;
        self.write(&format!("roots/{v}.sigs.json"), sigs)?;
        self.write("root.sigs.json", sigs)?;
        self.write("root.json", bytes)
    }

    /// Re-signs `channels` unchanged with `keys` after root version `v` was written.
    fn resign(
        &self,
        channels: Vec<ChannelName>,
        keys: &[SecretKey],
        v: u64,
    ) -> Result<Vec<ChannelName>, ChannelError> {
        let mut resigned = Vec::new();
        for name in channels {
            let c = self.require_channel(&name)?;
            self.update(&name, keys, c.expires, |_| Ok(()))
                .map_err(|e| UsageError::ResignFailed {
                    version: v,
                    channel: name.clone(),
                    source: Box::new(e),
                })?;
            resigned.push(name);
        }
        Ok(resigned)
    }

    /// The names of the channels in the repository, sorted.
    pub fn channel_names(&self) -> Result<Vec<ChannelName>, ChannelError> {
        let dir = self.dir.join("channels");
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(format!("listing {}", dir.display()))(e)),
        };
        let mut names = Vec::new();
        for e in rd {
            let e = e.map_err(io(format!("listing {}", dir.display())))?;
            let Some(n) = e.file_name().to_str().map(str::to_owned) else {
                continue; // not a name publish writes
            };
            let Some(s) = n.strip_suffix(".json").filter(|s| !s.ends_with(".sigs")) else {
                continue; // signatures, or not a document
            };
            // A file whose name is no channel name is not a channel publish wrote: skipped,
            // not an error (the listing is of channels, and nothing else is read from it).
            if let Ok(name) = s.parse::<ChannelName>() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Re-signs a channel unchanged: a new version with a new timestamp and expiry, so nodes
    /// enforcing a maximum age (freeze protection) keep accepting a channel that did not change.
    pub fn refresh(
        &self,
        name: &ChannelName,
        keys: &[SecretKey],
        expires: u64,
    ) -> Result<Channel, ChannelError> {
        self.update(name, keys, expires, |_| Ok(()))
    }

    /// The root (checked against its own keys) and every channel, as `repo status` shows them.
    pub fn status(&self) -> Result<Status, ChannelError> {
        let root = self.root()?;
        let t = now();
        let mut channels = Vec::new();
        for n in self.channel_names()? {
            if let Some(c) = self.channel(&n)? {
                channels.push(StatusRow::of(&c, t));
            }
        }
        Ok(Status {
            channels,
            root_expires: root.expires,
            root_version: root.version,
        })
    }
}
