//! The operator side: writing the release repository. Every write is atomic (temporary file +
//! rename) and objects are written before the channel document that names them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::sign::manifest::{MANIFEST_FILE, SIGNATURE_FILE};
use crate::sign::{sha256_hex, write_atomic};

pub struct Repo {
    pub dir: PathBuf,
}

fn read(p: &Path) -> Result<Vec<u8>, ChannelError> {
    std::fs::read(p).map_err(io(format!("reading {}", p.display())))
}

fn key_entry(k: &PublicKey) -> KeyEntry {
    KeyEntry {
        kind: "ed25519".into(),
        public: k.to_hex(),
    }
}

/// One row of `repo status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    pub channel: String,
    pub version: u64,
    pub image: String,
    pub image_version: String,
    pub reached_percent: f64,
    pub halted: bool,
    pub expires: u64,
    pub expired: bool,
}

impl Repo {
    pub fn open(dir: &Path) -> Result<Repo, ChannelError> {
        if !dir.join("root.json").is_file() {
            return Err(ChannelError::input(format!(
                "{} is not a release repository (no root.json); create one with `stratos repo init`",
                dir.display()
            )));
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

    /// Creates a repository with root version 1.
    pub fn init(
        dir: &Path,
        root_keys: &[SecretKey],
        threshold: u32,
        channel_keys: &[PublicKey],
        channel_threshold: u32,
        image_keys: &[PublicKey],
        expires: u64,
    ) -> Result<Root, ChannelError> {
        if dir.join("root.json").exists() {
            return Err(ChannelError::input(format!(
                "{} already holds a repository (root.json); refusing to overwrite it",
                dir.display()
            )));
        }
        if root_keys.is_empty() {
            return Err(ChannelError::input("at least one --root-key is needed"));
        }
        if threshold == 0 || threshold as usize > root_keys.len() {
            return Err(ChannelError::input(format!(
                "--threshold {threshold} must be between 1 and the number of root keys ({})",
                root_keys.len()
            )));
        }
        let mut keys = BTreeMap::new();
        let root_pubs: Vec<PublicKey> = root_keys.iter().map(SecretKey::public).collect();
        let channel_pubs = if channel_keys.is_empty() {
            root_pubs.clone()
        } else {
            channel_keys.to_vec()
        };
        let image_pubs = if image_keys.is_empty() {
            root_pubs.clone()
        } else {
            image_keys.to_vec()
        };
        if channel_threshold == 0 || channel_threshold as usize > channel_pubs.len() {
            return Err(ChannelError::input(
                "--channel-threshold must be between 1 and the number of channel keys",
            ));
        }
        let mut role = |pubs: &[PublicKey], t: u32| {
            for p in pubs {
                keys.insert(p.id().clone(), key_entry(p));
            }
            Role {
                key_ids: pubs.iter().map(|p| p.id().clone()).collect(),
                threshold: t,
            }
        };
        let roles: BTreeMap<String, Role> = [
            ("root".to_owned(), role(&root_pubs, threshold)),
            ("channel".to_owned(), role(&channel_pubs, channel_threshold)),
            ("image".to_owned(), role(&image_pubs, 1)),
        ]
        .into_iter()
        .collect();
        let root = Root {
            kind: ROOT_TYPE.into(),
            spec_version: SPEC_VERSION,
            version: 1,
            expires,
            keys,
            roles,
        };
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let repo = Repo {
            dir: dir.to_owned(),
        };
        let bytes = to_bytes(&root);
        let signers: Vec<&SecretKey> = root_keys.iter().collect();
        let sigs = sign_bytes(&bytes, &signers);
        repo.write("roots/1.root.json", &bytes)?;
        repo.write("roots/1.sigs.json", &sigs)?;
        repo.write("root.sigs.json", &sigs)?;
        repo.write("root.json", &bytes)?;
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
            "root",
        )?;
        Ok(root)
    }

    pub fn channel(&self, name: &str) -> Result<Option<Channel>, ChannelError> {
        let p = self.dir.join(format!("channels/{name}.json"));
        if !p.exists() {
            return Ok(None);
        }
        Ok(Some(parse_channel(
            &read(&p)?,
            &format!("channels/{name}.json"),
        )?))
    }

    fn require_channel(&self, name: &str) -> Result<Channel, ChannelError> {
        self.channel(name)?.ok_or_else(|| {
            ChannelError::input(format!(
                "channel {name} does not exist in {}; publish to it first",
                self.dir.display()
            ))
        })
    }

    /// Signs and writes a channel document (objects must already be in place).
    fn write_channel(&self, c: &Channel, keys: &[SecretKey]) -> Result<(), ChannelError> {
        let root = self.root()?;
        let bytes = to_bytes(c);
        let signers: Vec<&SecretKey> = keys.iter().collect();
        let sigs = sign_bytes(&bytes, &signers);
        let what = format!("channel {}", c.channel);
        verify_threshold(&what, &bytes, &sigs, &root, "channel").map_err(|e| {
            ChannelError::input(format!("{e}: sign with the channel role's keys (--sign-key, repeat it to meet the threshold)"))
        })?;
        // Signatures first: a reader that sees the new document also finds its signatures.
        self.write(&format!("channels/{}.sigs.json", c.channel), &sigs)?;
        self.write(&format!("channels/{}.json", c.channel), &bytes)?;
        Ok(())
    }

    /// Copies a verified, signed image into the object store; returns its reference.
    pub fn add_image(&self, image: &Path) -> Result<ImageRef, ChannelError> {
        let root = self.root()?;
        let sig_path = image.join(SIGNATURE_FILE);
        if !sig_path.is_file() {
            return Err(ChannelError::rejected(format!(
                "{}: the image is unsigned; only signed images can be published",
                image.display()
            )));
        }
        let sig: crate::sign::manifest::SignatureFile =
            serde_json::from_slice(&read(&sig_path)?)
                .map_err(|e| ChannelError::rejected(format!("{}: {e}", sig_path.display())))?;
        let pk = root.image_key(&sig.key_id, &image.display().to_string())?;
        let v = crate::sign::verify::verify_image(image, &pk)
            .map_err(|e| ChannelError::rejected(format!("{}: {e}", image.display())))?;
        for a in &v.manifest.artifacts {
            let bytes = read(&image.join(&a.name))?;
            self.write(&format!("objects/sha256/{}", a.sha256), &bytes)?;
        }
        let manifest = read(&image.join(MANIFEST_FILE))?;
        let sigb = read(&sig_path)?;
        let (mh, sh) = (sha256_hex(&manifest), sha256_hex(&sigb));
        self.write(&format!("objects/sha256/{mh}"), &manifest)?;
        self.write(&format!("objects/sha256/{sh}"), &sigb)?;
        Ok(ImageRef {
            name: v.manifest.image.name.clone(),
            version: v.manifest.image.version.clone(),
            manifest_sha256: mh,
            manifest_length: manifest.len() as u64,
            signature_sha256: sh,
            signature_length: sigb.len() as u64,
        })
    }

    fn next(
        &self,
        old: Option<&Channel>,
        name: &str,
        image: ImageRef,
        rollout: Rollout,
        expires: u64,
    ) -> Channel {
        let now = now();
        Channel {
            kind: CHANNEL_TYPE.into(),
            spec_version: SPEC_VERSION,
            channel: name.to_owned(),
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
        name: &str,
        keys: &[SecretKey],
        rollout: Rollout,
        expires: u64,
    ) -> Result<Channel, ChannelError> {
        if !valid_channel_name(name) {
            return Err(ChannelError::input(format!(
                "{name:?} is not a channel name (1-64 of a-z, 0-9, -, _)"
            )));
        }
        let r = self.add_image(image)?;
        let old = self.channel(name)?;
        let c = self.next(old.as_ref(), name, r, rollout, expires);
        self.write_channel(&c, keys)?;
        Ok(c)
    }

    pub fn promote(
        &self,
        from: &str,
        to: &str,
        keys: &[SecretKey],
        rollout: Rollout,
        expires: u64,
    ) -> Result<Channel, ChannelError> {
        if !valid_channel_name(to) {
            return Err(ChannelError::input(format!("{to:?} is not a channel name")));
        }
        let src = self.require_channel(from)?;
        let old = self.channel(to)?;
        let c = self.next(old.as_ref(), to, src.image.clone(), rollout, expires);
        self.write_channel(&c, keys)?;
        Ok(c)
    }

    /// A new version of the channel with `f` applied (same image).
    pub fn update(
        &self,
        name: &str,
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
        name: &str,
        keys: &[SecretKey],
        expires: u64,
    ) -> Result<Channel, ChannelError> {
        self.update(name, keys, expires, |c| {
            let prev = c.previous.take().ok_or_else(|| {
                ChannelError::input(format!(
                    "channel {name} has no previous image to roll back to"
                ))
            })?;
            c.previous = Some(std::mem::replace(&mut c.image, prev));
            c.rollout = Rollout::percent(100, now());
            c.halted = false;
            Ok(())
        })
    }

    /// A new root version with `new_keys` as root keys, signed by the old keys (meeting the old
    /// threshold) and the new ones (meeting the new threshold).
    pub fn rotate(
        &self,
        old_keys: &[SecretKey],
        new_keys: &[SecretKey],
        threshold: u32,
        expires: u64,
    ) -> Result<Root, ChannelError> {
        let old = self.root()?;
        if new_keys.is_empty() || threshold == 0 || threshold as usize > new_keys.len() {
            return Err(ChannelError::input(
                "--threshold must be between 1 and the number of new root keys",
            ));
        }
        let mut root = old.clone();
        root.version += 1;
        root.expires = expires;
        let old_role = old.roles["root"].clone();
        for id in &old_role.key_ids {
            // Keep keys other roles still use.
            let used = root
                .roles
                .iter()
                .any(|(n, r)| n != "root" && r.key_ids.contains(id));
            if !used {
                root.keys.remove(id);
            }
        }
        for k in new_keys {
            root.keys.insert(k.id().clone(), key_entry(&k.public()));
        }
        root.roles.insert(
            "root".into(),
            Role {
                key_ids: new_keys.iter().map(|k| k.id().clone()).collect(),
                threshold,
            },
        );
        let bytes = to_bytes(&root);
        let mut signers: Vec<&SecretKey> = old_keys.iter().collect();
        for k in new_keys {
            if !signers.iter().any(|s| s.id() == k.id()) {
                signers.push(k);
            }
        }
        let sigs = sign_bytes(&bytes, &signers);
        verify_threshold("new root (old keys)", &bytes, &sigs, &old, "root").map_err(|e| {
            ChannelError::input(format!("{e}: pass the current root keys with --old-key"))
        })?;
        verify_threshold("new root (new keys)", &bytes, &sigs, &root, "root")?;
        let v = root.version;
        self.write(&format!("roots/{v}.root.json"), &bytes)?;
        self.write(&format!("roots/{v}.sigs.json"), &sigs)?;
        self.write("root.sigs.json", &sigs)?;
        self.write("root.json", &bytes)?;
        Ok(root)
    }

    pub fn status(&self) -> Result<Vec<StatusRow>, ChannelError> {
        let mut out = Vec::new();
        let dir = self.dir.join("channels");
        let mut names: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|n| {
                    n.strip_suffix(".json")
                        .filter(|s| !s.ends_with(".sigs"))
                        .map(str::to_owned)
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        let t = now();
        for n in names {
            if let Some(c) = self.channel(&n)? {
                out.push(StatusRow {
                    channel: c.channel.clone(),
                    version: c.version,
                    image: c.image.name.clone(),
                    image_version: c.image.version.clone(),
                    reached_percent: f64::from(c.rollout.reached_bp(t)) / 100.0,
                    halted: c.halted,
                    expires: c.expires,
                    expired: c.expires <= t,
                });
            }
        }
        Ok(out)
    }
}
