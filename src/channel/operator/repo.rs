//! The release repository as the operator writes it: open it, read its root and channels, and
//! write a new channel version. Every write is atomic (temporary file + fsync + rename) and
//! objects are written before the channel document that names them. Creating a repository
//! ([`super::init`]), publishing ([`super::publish`]), rotating keys ([`super::rotate`]) and
//! rollouts ([`super::rollout`]) are `Repo` methods in their own files.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::arch::Arch;
use crate::channel::doc::{
    now, parse_channel, parse_root, sign_bytes, to_bytes, verify_threshold, Channel, ChannelName,
    RoleName, Root, Track,
};
use crate::channel::error::{ChannelError, UsageError};
use crate::channel::fs::metadata_if_there;
use crate::fsio::{self, caps, write_atomic};
use crate::sign::SecretKey;

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

/// Signing keys short of the threshold of the role they sign for: bad input, with `hint`.
pub(super) fn keys_short(hint: &'static str) -> impl FnOnce(ChannelError) -> ChannelError {
    move |e| {
        UsageError::KeysShort {
            source: Box::new(e),
            hint,
        }
        .into()
    }
}

/// What `repo status` shows: the root's version and expiry, and a row per channel and
/// architecture. (Fields in the order the JSON lists them.)
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub channels: Vec<StatusRow>,
    pub root_expires: u64,
    pub root_version: u64,
}

/// One row of `repo status`: a channel's image for one architecture.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    pub channel: ChannelName,
    pub arch: Arch,
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
    fn of(c: &Channel, track: &Track, t: u64) -> StatusRow {
        StatusRow {
            channel: c.channel.clone(),
            arch: track.arch(),
            version: c.version,
            image: track.image.name.clone(),
            image_version: track.image.version.clone(),
            reached_percent: f64::from(track.rollout.reached_bp(t)) / 100.0,
            halted: track.halted,
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

    pub(super) fn write(&self, rel: &str, bytes: &[u8]) -> Result<(), ChannelError> {
        let p = self.dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(ChannelError::io(format!("creating {}", parent.display())))?;
        }
        write_atomic(&p, bytes, 0o644).map_err(ChannelError::io(format!("writing {}", p.display())))
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

    pub(super) fn require_channel(&self, name: &ChannelName) -> Result<Channel, ChannelError> {
        self.channel(name)?.ok_or_else(|| {
            UsageError::NoSuchChannel {
                channel: name.clone(),
                repo: self.dir.clone(),
            }
            .into()
        })
    }

    /// Signs and writes a channel document (objects must already be in place).
    pub(super) fn write_channel(
        &self,
        c: &Channel,
        keys: &[SecretKey],
    ) -> Result<(), ChannelError> {
        let root = self.root()?;
        let bytes = to_bytes(c);
        let signers: Vec<&SecretKey> = keys.iter().collect();
        let sigs = sign_bytes(&bytes, &signers);
        let what = format!("channel {}", c.channel);
        verify_threshold(&what, &bytes, &sigs, &root, RoleName::Channel).map_err(keys_short(
            "sign with the channel role's keys (--channel-key, repeat it to meet the threshold)",
        ))?;
        // Signatures first: a reader that sees the new document also finds its signatures.
        self.write(&c.channel.signatures(), &sigs)?;
        self.write(&c.channel.document(), &bytes)?;
        Ok(())
    }

    /// A new version of the channel with `f` applied to the track of `arch` (see
    /// [`Channel::pick`]; `f` is given the channel's name); the other tracks are left as they
    /// are.
    pub fn update_track(
        &self,
        name: &ChannelName,
        arch: Option<Arch>,
        keys: &[SecretKey],
        expires: u64,
        f: impl FnOnce(&ChannelName, &mut Track) -> Result<(), ChannelError>,
    ) -> Result<Channel, ChannelError> {
        self.update(name, keys, expires, |c| {
            let arch = c.pick(arch)?;
            let t = c.track_mut(arch).expect("picked");
            f(name, t)
        })
    }

    /// A new version of the channel with `f` applied (same images).
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

    /// Writes root version `v` (its numbered copy for nodes walking rotations, then the
    /// current one; signatures before each document).
    pub(super) fn write_root(&self, v: u64, bytes: &[u8], sigs: &[u8]) -> Result<(), ChannelError> {
        self.write(&format!("roots/{v}.root.json"), bytes)?;
        self.write(&format!("roots/{v}.sigs.json"), sigs)?;
        self.write("root.sigs.json", sigs)?;
        self.write("root.json", bytes)
    }

    /// The names of the channels in the repository, sorted.
    pub fn channel_names(&self) -> Result<Vec<ChannelName>, ChannelError> {
        let dir = self.dir.join("channels");
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ChannelError::io(format!("listing {}", dir.display()))(e)),
        };
        let mut names = Vec::new();
        for e in rd {
            let e = e.map_err(ChannelError::io(format!("listing {}", dir.display())))?;
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
                channels.extend(c.tracks.iter().map(|track| StatusRow::of(&c, track, t)));
            }
        }
        Ok(Status {
            channels,
            root_expires: root.expires,
            root_version: root.version,
        })
    }
}
