//! Publishing: a verified, signed image copied into the object store (each artifact also
//! zstd-compressed, as `<sha256>.zst`, when that is smaller), with kernel deltas from the images
//! the track carried before ([`super::deltas`]), and the channel versions that point at one
//! (`publish`, `promote`, `rollback`).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::deltas::{kernel_of, DeltaNote};
use super::repo::Repo;
use crate::arch::Arch;
use crate::channel::doc::{
    now, Channel, ChannelName, Delta, ImageRef, Rollout, Track, CHANNEL_TYPE, SPEC_VERSION,
};
use crate::channel::error::{ChannelError, UsageError};
use crate::channel::fs::metadata_if_there;
use crate::digest::Sha256;
use crate::fsio::{self, caps, Links};
use crate::sign::manifest::{Manifest, MANIFEST_FILE, SIGNATURE_FILE};
use crate::sign::SecretKey;

/// The zstd level of the compressed objects (`<sha256>.zst`), multithreaded. Measured on
/// node-fn's 104 MB `rootfs.erofs`, two threads on a shared 2-core machine (bench/update.md,
/// "Compressed objects"): level 19 gives 28.4 MB in 22 s, level 12 31.8 MB in 1.7 s. An object
/// is compressed once and downloaded by every node that needs it whole, as release builds
/// spend level 19 on `rootfs.tar.zst`.
pub const OBJECT_LEVEL: i32 = 19;

/// The zstd frame's magic number: an artifact that starts with it is compressed already.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// What `publish` did: the new channel version, the architecture whose track it changed, and
/// what it did about each kernel delta.
#[derive(Debug)]
pub struct Published {
    pub channel: Channel,
    pub arch: Arch,
    pub deltas: Vec<DeltaNote>,
}

/// A file of the image being published: regular and not a symlink (like `verify`).
fn read_image_file(p: &Path, cap: u64, what: &'static str) -> Result<Vec<u8>, ChannelError> {
    fsio::read_regular(p, cap, what, Links::Refuse).map_err(ChannelError::RefusedFile)
}

impl Repo {
    /// Copies a verified, signed image into the object store; returns its reference.
    ///
    /// Every file is opened as a regular file (a FIFO or device in the image is refused at
    /// once, never waited on), and what is copied is what was checked: each artifact is
    /// hashed while it is copied and must match the signed manifest.
    pub fn add_image(&self, image: &Path) -> Result<ImageRef, ChannelError> {
        self.add(image).map(|(r, _)| r)
    }

    /// [`Repo::add_image`], also returning the image's manifest.
    fn add(&self, image: &Path) -> Result<(ImageRef, Manifest), ChannelError> {
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
        if m.dev {
            return Err(ChannelError::DevImage {
                image: image.to_owned(),
            });
        }
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
        let (mh, sh) = (self.put_object(&manifest)?, self.put_object(&sigb)?);
        let r = ImageRef {
            name: m.image.name.clone(),
            version: m.image.version.clone(),
            arch: m.image.arch,
            manifest_sha256: mh,
            manifest_length: manifest.len() as u64,
            signature_sha256: sh,
            signature_length: sigb.len() as u64,
        };
        Ok((r, m))
    }

    /// Whether object `want` is in the store, whole (`size` bytes with that digest): such an
    /// object is not written again (its inode and time stay, and with them what a web server
    /// or CDN says of it); a damaged one is rewritten.
    fn has_object(&self, want: &Sha256, size: u64) -> Result<bool, ChannelError> {
        let p = self.object_path(want, "");
        match metadata_if_there(&p)? {
            Some(m) if m.is_file() && m.len() == size => {}
            _ => return Ok(false),
        }
        let (h, n) = fsio::sha256_file(&p, Links::Refuse).map_err(ChannelError::RefusedFile)?;
        Ok(n == size && Sha256::from_bytes(h) == *want)
    }

    /// Writes `bytes` as object `objects/sha256/<their sha256>` unless it is there already.
    pub(super) fn put_object(&self, bytes: &[u8]) -> Result<Sha256, ChannelError> {
        let sha = Sha256::of(bytes);
        if !self.has_object(&sha, bytes.len() as u64)? {
            self.write(&format!("objects/sha256/{sha}"), bytes)?;
        }
        Ok(sha)
    }

    /// Streams `src` into `objects/sha256/<sha256>` (temporary file, fsync, rename), checking
    /// on the way that it is `size` bytes with that digest, unless the store has it already;
    /// then its compressed form ([`Repo::compress_object`]).
    fn copy_object(&self, src: &Path, want: &Sha256, size: u64) -> Result<(), ChannelError> {
        use sha2::Digest as _;
        let dir = self.dir.join("objects/sha256");
        std::fs::create_dir_all(&dir)
            .map_err(ChannelError::io(format!("creating {}", dir.display())))?;
        if self.has_object(want, size)? {
            // `verify_image` checked the source against the same digest.
            return self.compress_object(want, size);
        }
        let (f, _) = fsio::open_regular(src, Links::Refuse).map_err(ChannelError::RefusedFile)?;
        let dest = dir.join(want.hex());
        let mut tmp = tempfile::Builder::new()
            .prefix(".stratos-tmp-")
            .tempfile_in(&dir)
            .map_err(ChannelError::io(format!(
                "creating a file in {}",
                dir.display()
            )))?;
        let mut h = sha2::Sha256::new();
        let mut n = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        // One byte past the size is enough to know it grew.
        let mut r = f.take(size + 1);
        loop {
            let k = r
                .read(&mut buf)
                .map_err(ChannelError::io(format!("reading {}", src.display())))?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            n += k as u64;
            tmp.write_all(&buf[..k])
                .map_err(ChannelError::io(format!("writing {}", dest.display())))?;
        }
        if n != size || Sha256::from_bytes(h.finalize().into()) != *want {
            return Err(ChannelError::ChangedWhilePublished {
                path: src.to_owned(),
            });
        }
        {
            let f = tmp.as_file();
            f.set_permissions(std::fs::Permissions::from_mode(0o644))
                .and_then(|_| f.sync_all())
                .map_err(ChannelError::io(format!("writing {}", dest.display())))?;
        }
        tmp.persist(&dest)
            .map_err(|e| ChannelError::io(format!("writing {}", dest.display()))(e.error))?;
        self.compress_object(want, size)
    }

    /// Writes `objects/sha256/<sha256>.zst` beside the object `sha256` (`size` bytes): its
    /// bytes as one zstd frame at [`OBJECT_LEVEL`] (content size and checksum in the frame,
    /// the window within a decoder's default limit), kept only when smaller than the object.
    /// An existing `.zst` is left as it is, and an object that is a zstd frame already is not
    /// compressed again. The object itself stays (for nodes that fetch ranges of it).
    fn compress_object(&self, sha256: &Sha256, size: u64) -> Result<(), ChannelError> {
        let (src, dest) = (
            self.object_path(sha256, ""),
            self.object_path(sha256, ".zst"),
        );
        if metadata_if_there(&dest)?.is_some() {
            return Ok(());
        }
        let io = |what: &str, p: &Path| ChannelError::io(format!("{what} {}", p.display()));
        let mut f = std::fs::File::open(&src).map_err(io("reading", &src))?;
        let mut magic = [0u8; 4];
        let head = f.read(&mut magic).map_err(io("reading", &src))?;
        if head == magic.len() && magic == ZSTD_MAGIC {
            return Ok(());
        }
        let dir = fsio::parent_of(&dest);
        let tmp = tempfile::Builder::new()
            .prefix(".stratos-tmp-")
            .tempfile_in(dir)
            .map_err(io("creating a file in", dir))?;
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 8));
        let mut compress = || -> std::io::Result<u64> {
            let mut enc = zstd::stream::write::Encoder::new(
                std::io::BufWriter::new(tmp.as_file()),
                OBJECT_LEVEL,
            )?;
            enc.multithread(workers as u32)?;
            enc.include_checksum(true)?;
            enc.set_pledged_src_size(Some(size))?;
            std::io::copy(&mut (&magic[..head]).chain(&mut f), &mut enc)?;
            enc.finish()?.into_inner().map_err(|e| e.into_error())?;
            let f = tmp.as_file();
            f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
            f.sync_all()?;
            Ok(f.metadata()?.len())
        };
        let packed = compress().map_err(io("writing", &dest))?;
        if packed >= size {
            return Ok(()); // no smaller: not kept (the temporary file goes)
        }
        tmp.persist(&dest)
            .map_err(|e| io("writing", &dest)(e.error))?;
        fsio::sync_dir(dir).map_err(io("writing", &dest))
    }

    /// The channel's next version with `image` in its architecture's track, rolling out as
    /// `rollout` (the other architectures' tracks are kept as they are).
    fn next(
        &self,
        old: Option<&Channel>,
        name: &ChannelName,
        image: ImageRef,
        rollout: Rollout,
        expires: u64,
        deltas: Vec<Delta>,
    ) -> Channel {
        let now = now();
        let was = old.and_then(|c| c.track(image.arch));
        let track = Track {
            previous: was.and_then(|t| {
                if t.image != image {
                    Some(t.image.clone())
                } else {
                    t.previous.clone()
                }
            }),
            halted: false,
            image,
            rollout,
            deltas,
        };
        let mut c = Channel {
            kind: CHANNEL_TYPE.into(),
            spec_version: SPEC_VERSION,
            channel: name.clone(),
            version: old.map_or(1, |c| c.version + 1),
            expires,
            timestamp: now,
            min_version: old.and_then(|c| c.min_version.clone()),
            tracks: old.map_or_else(Vec::new, |c| c.tracks.clone()),
        };
        c.set_track(track);
        c
    }

    /// Publishes the image in `image` to its architecture's track of channel `name` (the
    /// other architectures' images and rollouts are kept), with kernel deltas from the images
    /// that track carried ([`Repo::kernel_deltas`]).
    pub fn publish(
        &self,
        image: &Path,
        name: &ChannelName,
        keys: &[SecretKey],
        rollout: Rollout,
        expires: u64,
    ) -> Result<Published, ChannelError> {
        let (r, m) = self.add(image)?;
        let arch = r.arch;
        let old = self.channel(name)?;
        let old_track = old.as_ref().and_then(|c| c.track(arch));
        let (deltas, notes) = self.kernel_deltas(old_track, kernel_of(&m))?;
        let c = self.next(old.as_ref(), name, r, rollout, expires, deltas);
        self.write_channel(&c, keys)?;
        Ok(Published {
            channel: c,
            arch,
            deltas: notes,
        })
    }

    /// Points `to` at the image `from` carries for `arch` (the only one it carries when
    /// `None`); `to`'s other architectures are left as they are. Returns the new version of
    /// `to` and the architecture promoted.
    pub fn promote(
        &self,
        from: &ChannelName,
        to: &ChannelName,
        arch: Option<Arch>,
        keys: &[SecretKey],
        rollout: Rollout,
        expires: u64,
    ) -> Result<(Channel, Arch), ChannelError> {
        let src = self.require_channel(from)?;
        let arch = src.pick(arch)?;
        let track = src.track(arch).expect("picked");
        let old = self.channel(to)?;
        // The deltas that come with the image, and those `to` listed that also rebuild its
        // kernel; none is computed.
        let carried = track.deltas.iter().cloned();
        let listed = old.as_ref().and_then(|c| c.track(arch));
        let listed = listed.into_iter().flat_map(|t| t.deltas.iter().cloned());
        let deltas = self.deltas_to(&track.image, carried.chain(listed))?;
        let image = track.image.clone();
        let c = self.next(old.as_ref(), to, image, rollout, expires, deltas);
        self.write_channel(&c, keys)?;
        Ok((c, arch))
    }

    /// A new, higher version pointing `arch`'s track (see [`Channel::pick`]) at its previous
    /// image.
    pub fn rollback(
        &self,
        name: &ChannelName,
        arch: Option<Arch>,
        keys: &[SecretKey],
        expires: u64,
    ) -> Result<Channel, ChannelError> {
        self.update_track(name, arch, keys, expires, |name, t| {
            let prev = t
                .previous
                .take()
                .ok_or_else(|| UsageError::NoPreviousImage {
                    channel: name.clone(),
                    arch: t.arch(),
                })?;
            // Only the deltas that rebuild the previous image's kernel stay (usually none: they
            // were made for the image rolled back from).
            t.deltas = self.deltas_to(&prev, std::mem::take(&mut t.deltas))?;
            t.previous = Some(std::mem::replace(&mut t.image, prev));
            t.rollout = Rollout::percent(100, now());
            t.halted = false;
            Ok(())
        })
    }
}
