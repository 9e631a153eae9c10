//! The node side: verify the repository's metadata against what the node already trusts,
//! decide from a stable hash whether the rollout has reached this node, and stage the image.
//!
//! State directory:
//! ```text
//! trusted/root.json, trusted/root.sigs.json          the newest root the node accepted
//! trusted/channels/<name>.json, <name>.sigs.json      the newest channel document accepted
//! current.json                                       {"version", "manifest_sha256"} of the running image (optional)
//! images/<manifest sha256>/                          staged images (manifest, signature, artifacts)
//! staged.json                                        which staged image boots next (A/B slots build on this)
//! .staging-XXXXXX/                                   a download in progress (removed on failure, or at the next run)
//! ```
//! Nothing in the state changes unless every check passed; trusted metadata is stored last. A
//! run holds an exclusive lock on the state directory; with it held, what an interrupted run
//! left behind (only names StratOS makes) is removed first.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::transport::Source;
use super::*;
use crate::fsio::write_atomic;
use crate::fsio::{self, caps, Links};
use crate::sign::manifest::{Manifest, MANIFEST_FILE, SIGNATURE_FILE};
use crate::sign::sha256_hex;

/// A temporary directory a download is assembled in: `.staging-` and [`RAND_LEN`] letters
/// or digits (what `tempfile` makes of this prefix). A leftover one is removed at the next run.
const STAGING_PREFIX: &str = ".staging-";
/// The temporary file [`write_atomic`] writes before its rename.
const TMP_FILE_PREFIX: &str = ".stratos-tmp-";
const RAND_LEN: usize = 6;

pub struct Node {
    pub source: Source,
    pub channel: ChannelName,
    pub node_id: String,
    pub state: PathBuf,
    /// The time decisions are made at (seconds); `now()` outside tests.
    pub now: u64,
    /// Largest artifact accepted.
    pub max_artifact_bytes: u64,
    /// Oldest channel document accepted, in seconds since it was signed (freeze protection;
    /// [`DEFAULT_MAX_AGE`] unless the operator of the node says otherwise).
    pub max_age: u64,
}

/// What a check decided, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub selected: bool,
    pub reason: String,
    pub channel: ChannelName,
    pub channel_version: u64,
    pub image: String,
    pub image_version: String,
    /// This node's cohort and the share reached, in basis points (0-10000).
    pub cohort: u32,
    pub reached: u32,
    pub staged: Option<String>,
    /// Housekeeping done on the way (leftovers of an interrupted run removed, …).
    pub notes: Vec<String>,
}

/// What `update check --json` prints when the check failed: the shape of a [`Decision`] that
/// selected nothing, with why. (Fields in the order the JSON lists them.)
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub channel: ChannelName,
    /// Always null: no channel document was accepted.
    pub channel_version: Option<u64>,
    /// Always null.
    pub image_version: Option<String>,
    pub reason: String,
    /// Verification refused something; a failed or slow repository or a local error is not a
    /// rejection (the exit code is 1 or 2 all the same).
    pub rejected: bool,
    pub selected: bool,
}

impl Failure {
    pub fn of(channel: &ChannelName, e: &ChannelError) -> Failure {
        Failure {
            channel: channel.clone(),
            channel_version: None,
            image_version: None,
            reason: e.to_string(),
            rejected: e.is_rejection(),
            selected: false,
        }
    }
}

/// The image in service (`current.json`), or the one before it (`previous.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Current {
    pub version: String,
    pub manifest_sha256: String,
    /// The image's name.
    #[serde(default)]
    pub image: String,
    /// Its directory, relative to the state directory (`images/<manifest sha256>`).
    #[serde(default)]
    pub dir: String,
    /// The channel and channel version it came from.
    #[serde(default)]
    pub channel: Option<ChannelName>,
    #[serde(default)]
    pub channel_version: u64,
    /// The image this one replaced when it went into service: `previous.json` is written from
    /// it, and a switch interrupted between the two files is finished from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<Box<Current>>,
    /// The switch that put it in service: `apply` or `rollback`.
    #[serde(default)]
    pub by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Staged {
    pub channel: ChannelName,
    pub channel_version: u64,
    pub image: ImageRef,
    /// Relative to the state directory.
    pub dir: String,
}

/// A state file: regular (never a link, FIFO or device), at most [`caps::METADATA`] bytes;
/// `None` if absent.
pub(super) fn read_opt(p: &Path) -> Result<Option<Vec<u8>>, ChannelError> {
    match fsio::read_regular(p, caps::METADATA, "a node state file", Links::Refuse) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(ChannelError::Read(e)),
    }
}

pub(super) fn write(p: &Path, bytes: &[u8]) -> Result<(), ChannelError> {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
    }
    write_atomic(p, bytes, 0o644).map_err(io(format!("writing {}", p.display())))
}

/// Writes a new file and flushes it to disk (inside a staging directory renamed afterwards).
fn write_new(p: &Path, bytes: &[u8]) -> Result<(), ChannelError> {
    use std::io::Write;
    let err = io(format!("writing {}", p.display()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(p)
        .map_err(io(format!("creating {}", p.display())))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(err)
}

/// Flushes a directory's entries (after a rename into it).
pub(super) fn sync_dir(d: &Path) -> Result<(), ChannelError> {
    std::fs::File::open(d)
        .and_then(|f| f.sync_all())
        .map_err(io(format!("syncing {}", d.display())))
}

fn no_trusted_root(state: &Path) -> ChannelError {
    StateError::NoTrustedRoot {
        state: state.to_owned(),
    }
    .into()
}

/// An exclusive lock on the state directory (`flock` on the directory itself, so no lock file
/// changes the state), held while a run reads and writes it. Released on drop.
pub struct StateLock {
    _dir: std::fs::File,
}

/// How long a run waits for another one holding the state lock before giving up.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub(super) fn lock_state(state: &Path) -> Result<StateLock, ChannelError> {
    use rustix::fs::{flock, FlockOperation};
    let dir = match std::fs::File::open(state) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_trusted_root(state)),
        Err(e) => return Err(io(format!("opening {}", state.display()))(e)),
    };
    let start = std::time::Instant::now();
    loop {
        match flock(&dir, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(StateLock { _dir: dir }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK && start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                return Err(io(format!(
                    "locking {} (another `stratos update` has been using it for over {}s; try again when it has finished)",
                    state.display(),
                    LOCK_WAIT.as_secs()
                ))(e.into()))
            }
            Err(e) => return Err(io(format!("locking {}", state.display()))(e.into())),
        }
    }
}

/// Whether `name` is `prefix` followed by exactly [`RAND_LEN`] ASCII letters or digits: a
/// temporary name StratOS made, and nothing a user would name a file.
fn is_ours(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|r| r.len() == RAND_LEN && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Removes what an interrupted run left behind, with the state locked: `.staging-XXXXXX`
/// directories at the top of the state directory (partial downloads) and `.stratos-tmp-XXXXXX`
/// files where the node writes metadata (partial writes). Only those names, only real
/// directories and files: a symlink is neither followed nor removed, anything else stays.
/// Returns a note per removal.
pub(super) fn clean_leftovers(state: &Path) -> Result<Vec<String>, ChannelError> {
    let mut notes = Vec::new();
    let places = [
        (state.to_owned(), true),
        (state.join("trusted"), false),
        (state.join("trusted/channels"), false),
    ];
    for (dir, staging_too) in places {
        let entries = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(format!("listing {}", dir.display()))(e)),
        };
        for e in entries {
            let e = e.map_err(io(format!("listing {}", dir.display())))?;
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue; // not UTF-8: not a name we make
            };
            let path = e.path();
            // DirEntry::file_type does not follow symlinks.
            let ft = e
                .file_type()
                .map_err(io(format!("inspecting {}", path.display())))?;
            if staging_too && ft.is_dir() && is_ours(&name, STAGING_PREFIX) {
                std::fs::remove_dir_all(&path)
                    .map_err(io(format!("removing the leftover {}", path.display())))?;
                notes.push(format!(
                    "removed {}, left by an interrupted update",
                    path.display()
                ));
            } else if ft.is_file() && is_ours(&name, TMP_FILE_PREFIX) {
                std::fs::remove_file(&path)
                    .map_err(io(format!("removing the leftover {}", path.display())))?;
                notes.push(format!(
                    "removed {}, left by an interrupted write",
                    path.display()
                ));
            }
        }
    }
    Ok(notes)
}

/// Copies a trusted root (and its `.sigs.json` next to it) into a new state directory.
pub fn bootstrap(state: &Path, root_json: &Path) -> Result<(), ChannelError> {
    let trusted = state.join("trusted/root.json");
    // Only a root known to be there is kept: one that cannot be looked at is an error, never
    // taken for "none yet" and replaced by the bootstrap root.
    if metadata_if_there(&trusted)?.is_some() {
        return Ok(());
    }
    let read = |p: &Path| {
        fsio::read_file(p, caps::METADATA, "a root document")
            .map_err(ChannelError::flag("--bootstrap-root"))
    };
    let bytes = read(root_json)?;
    let sigs_path =
        root_json.with_file_name(root_json.file_name().and_then(|n| n.to_str()).map_or(
            "root.sigs.json".to_owned(),
            |n| {
                n.replace(".root.json", ".sigs.json")
                    .replace("root.json", "root.sigs.json")
            },
        ));
    let sigs = read(&sigs_path)?;
    let root = parse_root(&bytes, &root_json.display().to_string())?;
    verify_threshold("bootstrap root", &bytes, &sigs, &root, RoleName::Root)?;
    std::fs::create_dir_all(state).map_err(io(format!("creating {}", state.display())))?;
    let _lock = lock_state(state)?;
    write(&state.join("trusted/root.sigs.json"), &sigs)?;
    write(&trusted, &bytes)
}

/// A document's bytes and the bytes of its signatures.
type Signed = (Vec<u8>, Vec<u8>);

/// Verified metadata, not yet stored.
struct Verified {
    /// (bytes, sigs) of each new root, in order.
    new_roots: Vec<Signed>,
    channel_bytes: Vec<u8>,
    channel_sigs: Vec<u8>,
    channel: Channel,
    /// The image's manifest and its signature, verified against the root's image keys and
    /// agreeing with the channel document's name and version.
    manifest_bytes: Vec<u8>,
    signature_bytes: Vec<u8>,
    manifest: Manifest,
}
/// Whether the node `node_id`, running `current` with `staged` waiting, takes the channel's
/// image at time `now`, and why. Pure: the same inputs give the same decision on every node.
pub fn decide(
    c: &Channel,
    node_id: &str,
    now: u64,
    current: Option<&Current>,
    staged: Option<&Staged>,
) -> Decision {
    let cohort = cohort(node_id, c.channel.as_str(), &c.image.version);
    let reached = c.rollout.reached_bp(now);
    let mut d = Decision {
        selected: false,
        reason: String::new(),
        channel: c.channel.clone(),
        channel_version: c.version,
        image: c.image.name.clone(),
        image_version: c.image.version.clone(),
        cohort,
        reached,
        staged: None,
        notes: Vec::new(),
    };
    let target = &c.image.manifest_sha256;
    if current.is_some_and(|cur| &cur.manifest_sha256 == target) {
        d.reason = format!(
            "up to date: already running {} {}",
            c.image.name, c.image.version
        );
    } else if staged.is_some_and(|s| &s.image.manifest_sha256 == target) {
        d.reason = format!("already staged: {} {}", c.image.name, c.image.version);
        d.staged = staged.map(|s| s.dir.clone());
    } else if c.halted {
        // A halt wins over everything else, min_version included: the operator has seen
        // something wrong with this image.
        d.reason = format!(
            "rollout halted at {:.2}% of the fleet; cohort {:.2}% not selected",
            f64::from(reached) / 100.0,
            f64::from(cohort) / 100.0
        );
    } else if let (Some(min), Some(cur)) = (&c.min_version, current) {
        if compare_versions(&cur.version, min).is_lt() {
            d.selected = true;
            d.reason = format!("running {} below the channel's min_version {min}: updating regardless of the rollout", cur.version);
        }
    }
    if d.reason.is_empty() {
        if cohort < reached {
            d.selected = true;
            d.reason = format!(
                "selected: cohort {:.2}% < {:.2}% of the fleet reached",
                f64::from(cohort) / 100.0,
                f64::from(reached) / 100.0
            );
        } else {
            d.reason = format!(
                "not yet: cohort {:.2}% >= {:.2}% of the fleet reached",
                f64::from(cohort) / 100.0,
                f64::from(reached) / 100.0
            );
        }
    }
    d
}

impl Node {
    fn fetch(&self, rel: &str, cap: u64) -> Result<Vec<u8>, ChannelError> {
        self.source
            .fetch(rel, cap)?
            .ok_or_else(|| ChannelError::NotFound {
                rel: rel.to_owned(),
            })
    }

    fn trusted_root(&self) -> Result<(Root, Vec<u8>), ChannelError> {
        let p = self.state.join("trusted/root.json");
        let bytes = read_opt(&p)?.ok_or_else(|| no_trusted_root(&self.state))?;
        Ok((parse_root(&bytes, &p.display().to_string())?, bytes))
    }

    /// Walks root rotations, verifies the channel document and the manifest it points at.
    fn verify_metadata(&self) -> Result<Verified, ChannelError> {
        let (root, new_roots) = self.follow_root()?;
        let (channel_bytes, channel_sigs, channel) = self.verify_channel(&root)?;
        let rel = self.channel.document();
        let (manifest_bytes, signature_bytes, manifest) =
            self.verify_manifest(&root, &rel, &channel)?;
        Ok(Verified {
            new_roots,
            channel_bytes,
            channel_sigs,
            channel,
            manifest_bytes,
            signature_bytes,
            manifest,
        })
    }

    /// The repository's current root, reached from the trusted one through every rotation
    /// (each signed by the keys before it and its own), unexpired; with the new roots' (bytes,
    /// signatures) in order.
    fn follow_root(&self) -> Result<(Root, Vec<Signed>), ChannelError> {
        let (mut root, trusted_bytes) = self.trusted_root()?;
        let latest_bytes = self.fetch("root.json", MAX_METADATA_BYTES)?;
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
            let (next, b, s) = self.next_root(&root, v)?;
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
    fn next_root(&self, root: &Root, v: u64) -> Result<(Root, Vec<u8>, Vec<u8>), ChannelError> {
        let b = self
            .source
            .fetch(&format!("roots/{v}.root.json"), MAX_METADATA_BYTES)?
            .ok_or(ChannelError::RotationSkipped { version: v })?;
        let s = self.fetch(&format!("roots/{v}.sigs.json"), MAX_METADATA_BYTES)?;
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
    fn verify_channel(&self, root: &Root) -> Result<(Vec<u8>, Vec<u8>, Channel), ChannelError> {
        let rel = self.channel.document();
        let cb = self.fetch(&rel, MAX_METADATA_BYTES)?;
        let cs = self.fetch(&self.channel.signatures(), MAX_METADATA_BYTES)?;
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

    /// Fetches the manifest the channel document `rel` points at and its signature, checks
    /// both against the document's digests, the signature against the root's image keys, and
    /// the image name and version the document claims against the signed manifest (a channel
    /// key alone cannot relabel an old image as a new one).
    fn verify_manifest(
        &self,
        root: &Root,
        rel: &str,
        c: &Channel,
    ) -> Result<(Vec<u8>, Vec<u8>, Manifest), ChannelError> {
        let img = &c.image;
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
        )?;
        if manifest.len() as u64 != img.manifest_length
            || sha256_hex(&manifest) != img.manifest_sha256
        {
            return Err(ChannelError::ManifestMismatch);
        }
        let sig = self.fetch(
            &format!("objects/sha256/{}", img.signature_sha256),
            img.signature_length,
        )?;
        if sha256_hex(&sig) != img.signature_sha256 {
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
        Ok((manifest, sig, m))
    }

    fn store_trust(&self, v: &Verified) -> Result<(), ChannelError> {
        if let Some((b, s)) = v.new_roots.last() {
            write(&self.state.join("trusted/root.sigs.json"), s)?;
            write(&self.state.join("trusted/root.json"), b)?;
        }
        let trusted = self.state.join("trusted");
        write(&trusted.join(self.channel.signatures()), &v.channel_sigs)?;
        write(&trusted.join(self.channel.document()), &v.channel_bytes)
    }

    /// The decision for this node, from the state [`Node::begin`] read (strictly: a malformed
    /// state file already stopped the run).
    fn decide(&self, c: &Channel, st: &super::lifecycle::NodeState) -> Decision {
        let mut d = decide(
            c,
            &self.node_id,
            self.now,
            st.current.as_ref(),
            st.staged.as_ref(),
        );
        // An image this node refused is never staged again, whatever the channel says.
        if let Some(r) = st.rejected.find(&c.image.manifest_sha256) {
            d.selected = false;
            d.reason = format!(
                "rejected on this node at {}: {} ({} {}); `stratos update clear-rejected --state {} --digest {}` lets it be tried again",
                super::fmt_time(r.at),
                r.reason,
                r.image,
                r.version,
                self.state.display(),
                r.manifest_sha256
            );
        }
        d
    }

    /// Locks the state, removes what an interrupted run left in it and finishes an
    /// interrupted switch (see [`super::lifecycle::open`]).
    fn begin(&self) -> Result<super::lifecycle::Opened, ChannelError> {
        super::lifecycle::open(&self.state)
    }

    /// Verifies metadata and decides; stores the newly trusted metadata. Downloads nothing but
    /// the image's manifest and signature.
    pub fn check(&self) -> Result<Decision, ChannelError> {
        let o = self.begin()?;
        let v = self.verify_metadata()?;
        let mut d = self.decide(&v.channel, &o.state);
        d.notes = o.notes;
        self.store_trust(&v)?;
        Ok(d)
    }

    /// Like [`Node::check`], and when selected downloads, verifies and stages the image.
    pub fn fetch_update(&self) -> Result<Decision, ChannelError> {
        let o = self.begin()?;
        let v = self.verify_metadata()?;
        let mut d = self.decide(&v.channel, &o.state);
        d.notes = o.notes.clone();
        if d.selected {
            let dir = self.stage(&v, &mut d.notes)?;
            d.staged = Some(dir);
            d.reason = format!("{}; staged", d.reason);
        }
        self.store_trust(&v)?;
        Ok(d)
    }

    fn stage(&self, v: &Verified, notes: &mut Vec<String>) -> Result<String, ChannelError> {
        let c = &v.channel;
        let img = &c.image;
        let m = &v.manifest;
        let rel = format!("images/{}", img.manifest_sha256);
        let dest = self.state.join(&rel);
        // The node has this image already (e.g. the previous one, which a channel rollback
        // names again): it is kept as it is, never deleted to be downloaded again.
        if dest.is_dir() && super::lifecycle::check_image(&dest, &img.manifest_sha256).is_ok() {
            return self.record_staged(c, rel, notes);
        }
        // Downloads go to a temporary directory in the state dir (removed if anything fails,
        // or at the next run if this one is killed), so a rejected update leaves the state
        // exactly as it was.
        let tmp = tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .rand_bytes(RAND_LEN)
            .tempdir_in(&self.state)
            .map_err(io(format!(
                "creating a directory in {}",
                self.state.display()
            )))?;
        for a in &m.artifacts {
            if !is_sha256_hex(&a.sha256) {
                return Err(ChannelError::MalformedArtifactDigest {
                    what: a.name.clone(),
                });
            }
            if a.size > self.max_artifact_bytes {
                return Err(ChannelError::ArtifactTooLarge {
                    name: a.name.clone(),
                    size: a.size,
                    cap: self.max_artifact_bytes,
                });
            }
            let bytes = self.fetch(&format!("objects/sha256/{}", a.sha256), a.size)?;
            if bytes.len() as u64 != a.size || sha256_hex(&bytes) != a.sha256 {
                return Err(ChannelError::ArtifactMismatch {
                    name: a.name.clone(),
                });
            }
            write_new(&tmp.path().join(&a.name), &bytes)?;
        }
        write_new(&tmp.path().join(MANIFEST_FILE), &v.manifest_bytes)?;
        write_new(&tmp.path().join(SIGNATURE_FILE), &v.signature_bytes)?;
        sync_dir(tmp.path())?;
        // The signature was checked on these manifest bytes above; what is left is that the
        // files on disk are the ones it names and the SBOM agrees with it.
        crate::sign::verify::verify_contents(tmp.path(), m).map_err(|source| {
            ChannelError::BadImage {
                what: "staged image".to_owned(),
                source,
            }
        })?;
        let images = self.state.join("images");
        std::fs::create_dir_all(&images).map_err(io(format!("creating {}", images.display())))?;
        if dest.exists() {
            // A damaged copy (it failed the check above): moved aside under a name the next
            // run removes, then the verified download takes its place.
            let aside = tempfile::Builder::new()
                .prefix(STAGING_PREFIX)
                .rand_bytes(RAND_LEN)
                .tempdir_in(&self.state)
                .map_err(io(format!(
                    "creating a directory in {}",
                    self.state.display()
                )))?
                .keep();
            std::fs::rename(&dest, aside.join("damaged"))
                .map_err(io(format!("moving the damaged {} aside", dest.display())))?;
        }
        super::lifecycle::failpoint("fetch:downloaded");
        let kept = tmp.keep();
        std::fs::rename(&kept, &dest)
            .map_err(io(format!("moving the image to {}", dest.display())))?;
        sync_dir(&images)?;
        self.record_staged(c, rel, notes)
    }

    /// Names the image in `staged.json` and frees the one staged before.
    fn record_staged(
        &self,
        c: &Channel,
        rel: String,
        notes: &mut Vec<String>,
    ) -> Result<String, ChannelError> {
        let staged = Staged {
            channel: c.channel.clone(),
            channel_version: c.version,
            image: c.image.clone(),
            dir: rel.clone(),
        };
        super::lifecycle::failpoint("fetch:image-moved");
        write(&self.state.join("staged.json"), &to_bytes(&staged))?;
        super::lifecycle::failpoint("fetch:staged-written");
        // The image staged before this one will not boot now: it goes (never the current or
        // the previous one).
        super::lifecycle::tidy(&self.state, notes);
        Ok(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(waves: Vec<Wave>, halted: bool) -> Channel {
        Channel {
            kind: CHANNEL_TYPE.into(),
            spec_version: SPEC_VERSION,
            channel: "stable".parse().unwrap(),
            version: 7,
            expires: u64::MAX,
            timestamp: 0,
            image: ImageRef {
                name: "hello".into(),
                version: "1.4.0".into(),
                manifest_sha256: "a".repeat(64),
                manifest_length: 10,
                signature_sha256: "b".repeat(64),
                signature_length: 10,
            },
            rollout: Rollout {
                started_at: 1_000_000,
                waves,
            },
            min_version: None,
            halted,
            previous: None,
        }
    }

    fn current(version: &str, digest: &str) -> Current {
        Current {
            version: version.into(),
            manifest_sha256: digest.repeat(64),
            image: "hello".into(),
            dir: format!("images/{}", digest.repeat(64)),
            channel: None,
            channel_version: 0,
            replaces: None,
            by: String::new(),
        }
    }

    fn waves() -> Vec<Wave> {
        vec![
            Wave {
                start_after: 0,
                fleet_percent: 1,
            },
            Wave {
                start_after: 3_600,
                fleet_percent: 10,
            },
            Wave {
                start_after: 6 * 3_600,
                fleet_percent: 50,
            },
            Wave {
                start_after: 86_400,
                fleet_percent: 100,
            },
        ]
    }

    #[test]
    fn a_hundred_thousand_nodes_follow_the_waves() {
        let c = channel(waves(), false);
        let ids: Vec<String> = (0..100_000).map(|i| format!("node-{i:06}")).collect();
        let start = c.rollout.started_at;
        // Just before the rollout: nobody. Then each wave: its share of the fleet, ±1%.
        assert!(ids
            .iter()
            .all(|n| !decide(&c, n, start - 1, None, None).selected));
        let mut first_selected: Vec<Option<u64>> = vec![None; ids.len()];
        for w in &c.rollout.waves {
            let t = start + w.start_after;
            for probe in [t, t + w.start_after / 2] {
                let mut n = 0;
                for (i, id) in ids.iter().enumerate() {
                    if decide(&c, id, probe, None, None).selected {
                        n += 1;
                        first_selected[i].get_or_insert(probe);
                    }
                }
                let share = n as f64 / ids.len() as f64 * 100.0;
                assert!(
                    (share - f64::from(w.fleet_percent)).abs() <= 1.0,
                    "wave {}%: {share:.2}%",
                    w.fleet_percent
                );
            }
        }
        // No node is selected before its wave: a node first selected at t has a cohort below
        // the share reached at t and not below the share reached just before that wave began.
        for (i, id) in ids.iter().enumerate() {
            let t = first_selected[i].expect("everyone is selected by the last wave");
            let co = cohort(id, "stable", "1.4.0");
            let wave = c
                .rollout
                .waves
                .iter()
                .rev()
                .find(|w| start + w.start_after <= t)
                .unwrap();
            assert!(co < wave.fleet_percent * 100);
            assert!(
                !decide(&c, id, start + wave.start_after - 1, None, None).selected
                    || wave.start_after == 0
            );
        }
    }

    #[test]
    fn nodes_that_missed_a_wave_catch_up_and_halting_stops_new_selections() {
        let c = channel(waves(), false);
        let start = c.rollout.started_at;
        // A node in the first 1% that was offline for the whole first day is still selected.
        let early = (0..)
            .map(|i| format!("n{i}"))
            .find(|n| cohort(n, "stable", "1.4.0") < 100)
            .unwrap();
        assert!(decide(&c, &early, start + 2 * 86_400, None, None).selected);
        // Halted: no new selection at any time; a node that already staged it says so.
        let h = channel(waves(), true);
        let mut staged_here = None;
        for i in 0..5_000 {
            let id = format!("n{i}");
            let d = decide(&h, &id, start + 2 * 86_400, None, None);
            assert!(!d.selected, "{id}: {}", d.reason);
            assert!(d.reason.contains("halted"));
            if staged_here.is_none() && decide(&c, &id, start + 2 * 86_400, None, None).selected {
                staged_here = Some(id);
            }
        }
        let staged = Staged {
            channel: "stable".parse().unwrap(),
            channel_version: 7,
            image: h.image.clone(),
            dir: "images/x".into(),
        };
        let d = decide(
            &h,
            &staged_here.unwrap(),
            start + 2 * 86_400,
            None,
            Some(&staged),
        );
        assert!(
            !d.selected && d.reason.starts_with("already staged"),
            "{}",
            d.reason
        );
        // Running the image: up to date, whatever the rollout says.
        let cur = current("1.4.0", "a");
        assert!(decide(&c, "x", start, Some(&cur), None)
            .reason
            .starts_with("up to date"));
    }

    #[test]
    fn min_version_overrides_the_rollout_but_not_a_halt() {
        let mut c = channel(
            vec![Wave {
                start_after: 0,
                fleet_percent: 1,
            }],
            false,
        );
        c.min_version = Some("1.3.0".into());
        let late = (0..)
            .map(|i| format!("n{i}"))
            .find(|n| cohort(n, "stable", "1.4.0") >= 100)
            .unwrap();
        let old = current("1.2.9", "c");
        let newer = current("1.3.1", "c");
        assert!(decide(&c, &late, c.rollout.started_at, Some(&old), None).selected);
        assert!(!decide(&c, &late, c.rollout.started_at, Some(&newer), None).selected);
        c.halted = true;
        assert!(!decide(&c, &late, c.rollout.started_at, Some(&old), None).selected);
    }
}
