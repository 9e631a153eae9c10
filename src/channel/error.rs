//! Why a channel operation failed: a variant per failure, named after the attack or the mistake
//! it is (tough's `error.rs` is the model), carrying what its message names. Tests match the
//! variant; people read the message, which says what failed and where.
//!
//! Four kinds, which decide the exit code and the `rejected` field of `update check --json`:
//! - a **rejection** ([`ChannelError::is_rejection`]): verification refused a document, an image
//!   or a gate (exit 1);
//! - **bad input** ([`ChannelError::is_bad_input`]): a flag, a key, a file or a state directory
//!   that cannot be used as given (exit 2);
//! - **I/O** on this machine and **HTTP** failures of the repository's server (exit 1, not
//!   rejections).
//!
//! A wrapped error is kept as `source()` and quoted in the message; the command line prints each
//! cause once.

use std::path::PathBuf;

use super::doc::name::ChannelName;
use super::doc::role::RoleName;
use super::doc::time::fmt_age;
use crate::arch::Arch;
use crate::digest::Sha256;
use crate::fsio::ReadError;
use crate::http::HttpError;
use crate::sign::manifest::MANIFEST_FILE;
use crate::sign::verify::VerifyError;
use crate::sign::{KeyError, KeyId};

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    // --- documents: their shape, their keys, their signatures ---------------------------------
    /// Not JSON of the document's shape.
    #[error("{what}: malformed: {source}")]
    Malformed {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// Another kind of document (`root`, `channel`), or another spec version.
    #[error("{what}: not a stratos {kind} document (spec {spec})")]
    WrongKind {
        what: String,
        kind: &'static str,
        spec: u32,
    },
    /// A root listing a key of another type than ed25519.
    #[error("{what}: key {key} has type {kind:?}; only \"ed25519\" is supported")]
    UnsupportedKeyType {
        what: String,
        key: KeyId,
        kind: String,
    },
    /// A root listing a key that is no ed25519 public key.
    #[error("{what}: key {key} is not a valid ed25519 public key (64 hex digits)")]
    InvalidKey { what: String, key: KeyId },
    /// A key of an image signature that the root lists malformed (a root not checked by
    /// [`super::doc::parse_root`]).
    #[error("root version {version}: malformed key {key}")]
    MalformedRootKey { version: u64, key: KeyId },
    /// A root listing a key under an id that is not that key's: one key under two ids would
    /// count twice towards a threshold.
    #[error("{what}: key id {listed} is not the id of the key it lists (that key's id is {actual}); a key id is the first 8 bytes of the sha256 of its key")]
    KeyIdMismatch {
        what: String,
        listed: KeyId,
        actual: KeyId,
    },
    #[error("{what}: the {role} role has threshold 0")]
    ZeroThreshold { what: String, role: RoleName },
    /// A role naming a key the root does not list.
    #[error("{what}: the {role} role names key {key}, which the root does not list")]
    UnlistedKey {
        what: String,
        role: RoleName,
        key: KeyId,
    },
    /// A signatures file that is not one.
    #[error("{what}: malformed signatures: {source}")]
    MalformedSignatures {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// Fewer distinct keys of the role signed than its threshold: unsigned, signed by the wrong
    /// key, by one key counted twice, or by too few.
    #[error("{what}: {have} valid signature(s) from distinct {role} keys, {need} required")]
    ThresholdUnmet {
        what: String,
        role: RoleName,
        have: usize,
        need: u32,
    },
    /// An image signed by a key the root does not trust for images.
    #[error("{what}: signed by key {key}, which the repository's root does not trust for images (trusted: {})", join_ids(.trusted))]
    UntrustedImageKey {
        what: String,
        key: KeyId,
        trusted: Vec<KeyId>,
    },

    // --- freshness: expiry, replay, freeze, rotation ------------------------------------------
    /// A document past its expiry.
    #[error("{}", expired(*.role, .what, *.version, *.at))]
    Expired {
        role: RoleName,
        what: String,
        version: u64,
        at: u64,
    },
    /// A document valid for longer than anyone may sign: it would practically never expire.
    #[error("{what}: expires {days} days from now (at {expires}), beyond the {limit_days}-day limit on validity; refusing a document that would practically never expire")]
    ValidTooLong {
        what: String,
        expires: u64,
        days: u64,
        limit_days: u64,
    },
    /// An older version than the one trusted: a replay of a channel document, a rollback of
    /// the root.
    #[error("{}", replayed(*.role, .what, *.have, *.got))]
    Replayed {
        role: RoleName,
        what: String,
        /// The version trusted.
        have: u64,
        /// The version served.
        got: u64,
    },
    /// The trusted version, with other bytes: a fork.
    #[error("{what}: version {version} differs from the {} of the same version", trusted(*.role))]
    Forked {
        role: RoleName,
        what: String,
        version: u64,
    },
    /// An unexpired channel document signed longer ago than the node's maximum age: a mirror
    /// freezing the node on an old document, or an operator who has not re-signed it.
    #[error("{what}: version {version} was signed {} ago, longer than this node's maximum age of {} (--max-age); either the repository is frozen on an old document (a freeze attack) or the operator has not re-signed it: `stratos repo refresh --channel {channel}` does", fmt_age(*.age), fmt_age(*.max_age))]
    Frozen {
        what: String,
        version: u64,
        age: u64,
        max_age: u64,
        channel: ChannelName,
    },
    /// A root rotation whose intermediate version is missing.
    #[error("root rotation skips version {version}: roots/{version}.root.json is missing")]
    RotationSkipped { version: u64 },
    /// `roots/<N>.root.json` holding another version than N.
    #[error("roots/{version}.root.json claims version {claimed}")]
    RootVersionMismatch { version: u64, claimed: u64 },
    /// Another channel's (validly signed) document served as this channel's.
    #[error("{what}: the document is for channel {:?}, not {:?}", .got.as_str(), .want.as_str())]
    WrongChannel {
        what: String,
        got: ChannelName,
        want: ChannelName,
    },

    // --- fetching from the repository ---------------------------------------------------------
    #[error("{rel}: not found in the repository")]
    NotFound { rel: String },
    /// A download past its size cap (aborted there).
    #[error("{rel}: larger than the {cap}-byte limit; aborted")]
    TooLarge { rel: String, cap: u64 },
    /// A channel document announcing a manifest or signature larger than a node accepts.
    #[error("{what}: the {object} is {len} bytes, over the {cap}-byte limit")]
    DeclaredTooLarge {
        what: String,
        object: &'static str,
        len: u64,
        cap: u64,
    },
    /// An artifact larger than the node's cap (`--max-artifact-mib`).
    #[error("{name}: {size} bytes is over the {cap}-byte artifact limit")]
    ArtifactTooLarge { name: String, size: u64, cap: u64 },
    /// A file of the repository or of the image being published that cannot be read as a
    /// regular file within its cap (a FIFO, a device, a directory).
    #[error(transparent)]
    RefusedFile(ReadError),

    // --- the image a channel names -------------------------------------------------------------
    /// The manifest served is not the one the channel document names.
    #[error("manifest: its sha256 or length does not match the channel document")]
    ManifestMismatch,
    /// The manifest signature served is not the one the channel document names.
    #[error("manifest signature: its sha256 does not match the channel document")]
    SignatureMismatch,
    /// An artifact served is not the one the manifest names.
    #[error("{name}: the downloaded artifact does not match the manifest (sha256 or length)")]
    ArtifactMismatch { name: String },
    /// An artifact that changed between the check of the image and its copy into the repository.
    #[error("{}: changed while it was being published (its size or sha256 no longer matches the manifest)", .path.display())]
    ChangedWhilePublished { path: PathBuf },
    /// An object of the repository whose bytes are not the sha256 it is named by.
    #[error("{}: its sha256 is not the one it is named by (the object is damaged); publish its image again to rewrite it", .path.display())]
    DamagedObject { path: PathBuf },
    /// A manifest signature file that is not one (`what` names it).
    #[error("{what}: {source}")]
    MalformedSignatureFile {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A manifest signature that is not 64 bytes of hex: the file published (`path`), or the
    /// one fetched.
    #[error("{}", match .path { Some(p) => format!("{}: malformed signature", p.display()), None => "manifest signature: malformed".to_owned() })]
    MalformedImageSignature { path: Option<PathBuf> },
    /// A manifest signature that does not verify: the file published (`path`), or the one
    /// fetched.
    #[error("{}", match .path { Some(p) => format!("{}: the signature does not match {MANIFEST_FILE} (the manifest or the signature was modified)", p.display()), None => "manifest signature does not verify".to_owned() })]
    ImageSignatureInvalid { path: Option<PathBuf> },
    #[error("{}: the image is unsigned; only signed images can be published", .image.display())]
    Unsigned { image: PathBuf },
    #[error("{}: built with `stratos build --dev` (fast compression, not for release); rebuild it without --dev to publish it", .image.display())]
    DevImage { image: PathBuf },
    /// An image that does not verify (`what` names it).
    #[error("{what}: {source}")]
    BadImage {
        what: String,
        #[source]
        source: VerifyError,
    },
    /// A signed manifest that is not one.
    #[error(transparent)]
    BadManifest(VerifyError),
    /// A channel document naming an image other than the signed manifest it points at: the
    /// channel key alone relabelling an old image as a new one.
    #[error("{what}: names the image {name} {version}, but the signed manifest it points at is {signed_name} {signed_version}; refusing a relabelled image")]
    Relabelled {
        what: String,
        name: String,
        version: String,
        signed_name: String,
        signed_version: String,
    },
    /// A channel document listing an image under another architecture than its signed
    /// manifest's: the channel key alone sending one architecture's image to another's nodes.
    #[error("{what}: lists the image {name} {version} as {}, but its signed manifest says {}; refusing it", .arch.name(), .signed_arch.name())]
    ArchMismatch {
        what: String,
        name: String,
        version: String,
        arch: Arch,
        signed_arch: Arch,
    },

    // --- what an operator or a node asked ------------------------------------------------------
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Gate(#[from] GateError),
    #[error(transparent)]
    Waves(#[from] WavesError),

    // --- this machine ------------------------------------------------------------------------
    /// A file of this machine (a node state file, a repository metadata file) that cannot be
    /// read.
    #[error(transparent)]
    Read(ReadError),
    /// A file named by a flag that cannot be read.
    #[error("{flag}: {source}")]
    Flag {
        flag: String,
        #[source]
        source: ReadError,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The repository's server failed or was too slow (the message names the URL).
    #[error(transparent)]
    Http(HttpError),
}

/// What kind of failure a [`ChannelError`] is (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rejection,
    BadInput,
    Io,
    Http,
}

impl ChannelError {
    /// Verification refused something: a document, an image, a gate. (Not a failed or slow
    /// repository, not a local error.)
    pub fn is_rejection(&self) -> bool {
        self.kind() == Kind::Rejection
    }

    /// Bad input: a flag, a key, a file or a state directory that cannot be used as given.
    pub fn is_bad_input(&self) -> bool {
        self.kind() == Kind::BadInput
    }

    fn kind(&self) -> Kind {
        match self {
            Self::Malformed { .. }
            | Self::WrongKind { .. }
            | Self::UnsupportedKeyType { .. }
            | Self::InvalidKey { .. }
            | Self::MalformedRootKey { .. }
            | Self::KeyIdMismatch { .. }
            | Self::ZeroThreshold { .. }
            | Self::UnlistedKey { .. }
            | Self::MalformedSignatures { .. }
            | Self::ThresholdUnmet { .. }
            | Self::UntrustedImageKey { .. }
            | Self::Expired { .. }
            | Self::ValidTooLong { .. }
            | Self::Replayed { .. }
            | Self::Forked { .. }
            | Self::Frozen { .. }
            | Self::RotationSkipped { .. }
            | Self::RootVersionMismatch { .. }
            | Self::WrongChannel { .. }
            | Self::NotFound { .. }
            | Self::TooLarge { .. }
            | Self::DeclaredTooLarge { .. }
            | Self::ArtifactTooLarge { .. }
            | Self::RefusedFile(_)
            | Self::ManifestMismatch
            | Self::SignatureMismatch
            | Self::ArtifactMismatch { .. }
            | Self::ChangedWhilePublished { .. }
            | Self::DamagedObject { .. }
            | Self::MalformedSignatureFile { .. }
            | Self::MalformedImageSignature { .. }
            | Self::ImageSignatureInvalid { .. }
            | Self::Unsigned { .. }
            | Self::DevImage { .. }
            | Self::BadImage { .. }
            | Self::BadManifest(_)
            | Self::Relabelled { .. }
            | Self::ArchMismatch { .. } => Kind::Rejection,
            Self::Gate(g) if g.is_rejection() => Kind::Rejection,
            Self::Gate(_)
            | Self::Usage(_)
            | Self::State(_)
            | Self::Waves(_)
            | Self::Read(_)
            | Self::Flag { .. }
            | Self::Key(_) => Kind::BadInput,
            Self::Io { .. } => Kind::Io,
            Self::Http(_) => Kind::Http,
        }
    }

    /// Maps an I/O error to [`ChannelError::Io`] naming what was being done.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ChannelError {
        let what = what.into();
        move |source| ChannelError::Io { what, source }
    }

    /// A file named by `flag` that cannot be read.
    pub(crate) fn flag(flag: &str) -> impl FnOnce(ReadError) -> ChannelError + '_ {
        move |source| ChannelError::Flag {
            flag: flag.to_owned(),
            source,
        }
    }
}

/// What an operator or a node asked that cannot be done as asked (bad input, exit 2).
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("{url}: {why}")]
    BadRepoUrl { url: String, why: &'static str },
    #[error("no signing key: pass {flag} FILE (a key from `stratos keygen`)")]
    NoSigningKey { flag: String },
    #[error("{} is not a release repository (no root.json); create one with `stratos repo init`", .dir.display())]
    NotARepo { dir: PathBuf },
    #[error("{} already holds a repository (root.json); refusing to overwrite it", .dir.display())]
    RepoExists { dir: PathBuf },
    #[error("channel {channel} does not exist in {}; publish to it first", .repo.display())]
    NoSuchChannel { channel: ChannelName, repo: PathBuf },
    #[error("channel {channel} has no previous {} image to roll back to", .arch.name())]
    NoPreviousImage { channel: ChannelName, arch: Arch },
    /// `--arch` naming an architecture the channel carries no image for.
    #[error("channel {channel} carries no {} image (it carries {carries}); publish an {} build to it first", .arch.name(), .arch.name())]
    NoImageForArch {
        channel: ChannelName,
        arch: Arch,
        /// The architectures it carries, as words.
        carries: String,
    },
    /// A command on a channel carrying images for two architectures, without `--arch`.
    #[error("channel {channel} carries images for {carries}: say which with --arch")]
    WhichArch {
        channel: ChannelName,
        carries: String,
    },
    /// `update apply` of an image staged for another architecture than the node's.
    #[error("the staged image {image} is not for this node: the image is {}, this node is {}; `stratos update fetch --arch {}` stages this node's image (nothing was booted)", .image_arch.name(), .node_arch.name(), .node_arch.name())]
    OtherArch {
        /// `NAME VERSION`.
        image: String,
        image_arch: Arch,
        node_arch: Arch,
    },
    #[error("at least one --root-key is needed")]
    NoRootKey,
    /// A key given twice: thresholds count distinct keys, so it only makes one unreachable.
    #[error(
        "{flag}: key {key} is given twice; thresholds count distinct keys, so give each key once"
    )]
    KeyGivenTwice { flag: &'static str, key: KeyId },
    #[error("{flag} {threshold} must be between 1 and the number of {what} ({keys})")]
    BadThreshold {
        flag: &'static str,
        threshold: u32,
        keys: usize,
        what: &'static str,
    },
    /// `--also root`: the root role is the one being rotated.
    #[error("--also {:?}: the roles that can follow the root keys are channel and image", .role.as_str())]
    CannotFollowRoot { role: RoleName },
    /// `--also ROLE` leaving the role fewer keys than its threshold.
    #[error("--also {role}: the {role} role needs {threshold} signatures but would have {keys} key(s) after the rotation; give more --new-root-key")]
    RotationBelowThreshold {
        role: RoleName,
        threshold: u32,
        keys: usize,
    },
    /// Signing keys that do not meet the threshold of the role they sign for (`hint` says
    /// which to pass).
    #[error("{source}: {hint}")]
    KeysShort {
        #[source]
        source: Box<ChannelError>,
        hint: &'static str,
    },
    /// A rotation written whose channels could not all be re-signed.
    #[error("root version {version} is written, but re-signing channel {channel} failed: {source}; run `stratos repo refresh --channel {channel}` with the new key")]
    ResignFailed {
        version: u64,
        channel: ChannelName,
        #[source]
        source: Box<ChannelError>,
    },
    #[error("--node-keys {}: {source}", .dir.display())]
    NodeKeysDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--node-keys: {} is not a UTF-8 name", .path.display())]
    NodeKeyName { path: PathBuf },
    #[error("--node-keys {}: no *.pub key in it", .dir.display())]
    NoNodeKeys { dir: PathBuf },
    #[error("channel {channel} ({}) is already halted", .arch.name())]
    AlreadyHalted { channel: ChannelName, arch: Arch },
    #[error("channel {channel} ({}) is not halted", .arch.name())]
    NotHalted { channel: ChannelName, arch: Arch },
    #[error("channel {channel} ({}) is halted; resume it before widening the rollout", .arch.name())]
    Halted { channel: ChannelName, arch: Arch },
    /// `rollout advance` that would not widen the rollout: to `--percent` (`percent`) at or
    /// below what it reaches, or past its last wave.
    #[error("{}", would_not_widen(*.reached, *.percent))]
    WouldNotWiden {
        /// Basis points reached now.
        reached: u32,
        percent: Option<u32>,
    },
}

/// A node's state directory cannot be used as it is (bad input, exit 2). Nothing is changed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{} has no trusted root; bootstrap it with --bootstrap-root PATH/TO/root.json (from the image or the operator)", .state.display())]
    NoTrustedRoot { state: PathBuf },
    /// A state file that does not parse.
    #[error("{}: malformed ({source}); nothing was changed or deleted: repair it (`stratos update status` shows what the node has) or remove it", .path.display())]
    Malformed {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A record whose image directory is not `images/<its manifest sha256>`.
    #[error("{}: malformed (dir {dir:?} is not images/<manifest sha256 \"{digest}\">); nothing was changed or deleted: repair it or remove it", .path.display())]
    DirMismatch {
        path: PathBuf,
        dir: String,
        digest: Sha256,
    },
    #[error("nothing is staged")]
    NothingStaged,
    /// `update rollback` without a current or a previous image.
    #[error("{}: there is no {} to roll back {}", .state.display(), if *.no_current { "current image" } else { "previous image" }, if *.no_current { "from" } else { "to" })]
    NothingToRollBack { state: PathBuf, no_current: bool },
    #[error(
        "the previous image {image} {version} cannot be put back: {source}; nothing was changed"
    )]
    PreviousImageDamaged {
        image: String,
        version: String,
        #[source]
        source: Box<ImageCheckError>,
    },
    /// `clear-rejected` of an image not rejected (`digest`), or with nothing rejected.
    #[error("{}", match .digest { Some(d) => format!("{d} is not in {}/rejected.json", .state.display()), None => format!("{}/rejected.json lists nothing", .state.display()) })]
    NotRejected {
        state: PathBuf,
        digest: Option<String>,
    },
    #[error("{}: no current image (no current.json); `stratos update fetch` then `stratos update apply` put one in service", .state.display())]
    NoCurrentImage { state: PathBuf },
    #[error("{}/current.json: dir {dir:?} is not images/<its manifest sha256>", .state.display())]
    CurrentDirMismatch { state: PathBuf, dir: String },
    #[error("{}: the report counter is at its maximum; repair it", .path.display())]
    ReportCounterFull { path: PathBuf },
}

/// Why an image directory is not the image a digest names, or cannot be checked.
#[derive(Debug, thiserror::Error)]
pub enum ImageCheckError {
    /// The manifest cannot be read (missing: the image is not there).
    #[error(transparent)]
    Unreadable(ReadError),
    /// The manifest hashes to another digest.
    #[error("{}: the manifest is not the one the channel named (sha256 differs): the image changed on disk", .dir.display())]
    ManifestChanged { dir: PathBuf },
    /// The manifest does not parse.
    #[error(transparent)]
    BadManifest(VerifyError),
    /// The files are not those the manifest lists, or cannot be read.
    #[error(transparent)]
    Contents(VerifyError),
}

impl ImageCheckError {
    /// The directory does not hold the image (missing, changed or damaged); `false` when this
    /// machine could not read it.
    pub fn is_mismatch(&self) -> bool {
        match self {
            Self::Unreadable(e) => e.is_not_found(),
            Self::ManifestChanged { .. } | Self::BadManifest(_) => true,
            Self::Contents(e) => {
                !matches!(e, VerifyError::Read { .. })
                    && !matches!(e, VerifyError::File(f) if !f.is_not_found())
            }
        }
    }
}

/// A rollout gate that did not pass, or cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("{path}: not a boot-test result ({source}); produce one with `stratos boot-test IMAGE --slo ... --json-out {path}`")]
    NotABootTest {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: schema {schema:?} is not {want:?}")]
    WrongSchema {
        path: String,
        schema: String,
        want: &'static str,
    },
    /// A boot test of another image than the one rolled out.
    #[error("{path}: the boot test ran image {tested}, but the channel rolls out {rolled_out}; test the image being rolled out")]
    WrongImage {
        path: String,
        tested: Box<ImageNamed>,
        rolled_out: Box<ImageNamed>,
    },
    #[error("{path}: the result does not say which image it tested (no image.manifest_sha256); rerun boot-test on the published image")]
    UnknownImage { path: String },
    /// A boot test that restored a snapshot without verifying its signature.
    #[error("{path}: the boot test restored the snapshot {} (snapshot.json sha256 {snapshot_sha256}) without verifying it, so what it measured may not be the signed snapshot; rerun boot-test with --snapshot {} --verify --image-key KEY", crate::fsio::Shown(std::path::Path::new(.dir)), crate::fsio::Shown(std::path::Path::new(.dir)))]
    UnverifiedSnapshot {
        path: String,
        dir: String,
        snapshot_sha256: String,
    },
    #[error("{path}: the boot test had no objectives, so it cannot gate a rollout; rerun it with --slo and/or --baseline --max-regression")]
    NoObjectives { path: String },
    /// The boot test failed (`failed`: each failed objective and why).
    #[error("{path}: the boot test failed{}{}; the rollout was not widened", if .failed.is_empty() { "" } else { " its objectives: " }, .failed.join("; "))]
    Failed { path: String, failed: Vec<String> },
    /// `--gate-reports DIR` cannot be listed.
    #[error("--gate-reports {}: {source}", .dir.display())]
    ReportDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Two different reports of one node that tie: which is its latest cannot be told.
    #[error("--gate-reports {}: {}; remove the wrong report(s); the rollout was not widened", .dir.display(), join(.ties, "; "))]
    ReportsTie { dir: PathBuf, ties: Vec<Tie> },
    #[error("--gate-reports {}: {have} report(s) for {image} {version} from nodes the rollout reached, {need} required; the rollout was not widened{}", .dir.display(), ignored_note(.ignored))]
    TooFewReports {
        dir: PathBuf,
        have: usize,
        image: String,
        version: String,
        need: usize,
        /// Reports that did not count, with why.
        ignored: Vec<String>,
    },
    #[error("--gate-reports {}: {} of {total} node(s) failed ({rate:.1}% > {max}%): {}; the rollout was not widened{}", .dir.display(), .failed.len(), join(.failed, ", "), ignored_note(.ignored))]
    TooManyFailures {
        dir: PathBuf,
        failed: Vec<FailedNode>,
        total: usize,
        rate: f64,
        max: f64,
        ignored: Vec<String>,
    },
}

impl GateError {
    /// The gate held and refused (as opposed to one that cannot be read or decided).
    pub fn is_rejection(&self) -> bool {
        !matches!(
            self,
            Self::NotABootTest { .. }
                | Self::WrongSchema { .. }
                | Self::ReportDir { .. }
                | Self::ReportsTie { .. }
        )
    }
}

/// An image as a gate names it: `NAME VERSION (manifest sha256 DIGEST)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageNamed {
    pub name: String,
    pub version: String,
    pub digest: String,
}

impl std::fmt::Display for ImageNamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} (manifest sha256 {})",
            self.name, self.version, self.digest
        )
    }
}

/// One node's reports that tie: the files, the channel version and `seq` they share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tie {
    pub node: String,
    pub files: Vec<String>,
    pub channel_version: u64,
    pub seq: Option<u64>,
}

impl std::fmt::Display for Tie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (first, rest) = self
            .files
            .split_first()
            .map_or(("", &[][..]), |(a, b)| (a.as_str(), b));
        write!(
            f,
            "node {}'s reports {first} and {} are both for channel version {} with ",
            self.node,
            rest.join(" and "),
            self.channel_version
        )?;
        match self.seq {
            Some(s) => write!(f, "seq {s}")?,
            None => f.write_str("no seq")?,
        }
        f.write_str(
            ": which is the latest cannot be told (their `at` is the node's clock, not trusted)",
        )
    }
}

/// A node whose latest report failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedNode {
    pub node: String,
    pub reason: String,
}

impl std::fmt::Display for FailedNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.node, self.reason)
    }
}

/// A waves file that is not one (bad input).
#[derive(Debug, thiserror::Error)]
pub enum WavesError {
    #[error("{path}:{line}:{col}: {message}")]
    Syntax {
        path: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{path}: wave[{index}]{}", .fault.describe(*.index))]
    BadWave {
        path: String,
        index: usize,
        fault: WaveFault,
    },
    #[error("{path}: no [[wave]]")]
    NoWaves { path: String },
}

/// What is wrong with one wave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaveFault {
    /// `start-after` (as written) is no duration.
    NotADuration(String),
    PercentOutOfRange,
    /// It starts no later than the wave before.
    NotLater,
    /// It reaches no more of the fleet than the wave before.
    NotLarger,
}

impl WaveFault {
    fn describe(&self, i: usize) -> String {
        match self {
            Self::NotADuration(s) => {
                format!(".start-after {s:?} is not a duration like 90s, 30m, 1h or 6d")
            }
            Self::PercentOutOfRange => ".fleet-percent must be between 1 and 100".to_owned(),
            Self::NotLater => format!(
                " must start after wave[{}] (start-after values must increase)",
                i.saturating_sub(1)
            ),
            Self::NotLarger => format!(
                ".fleet-percent must be larger than wave[{}]'s",
                i.saturating_sub(1)
            ),
        }
    }
}

fn join_ids(ids: &[KeyId]) -> String {
    ids.iter().map(KeyId::as_str).collect::<Vec<_>>().join(", ")
}

fn join<T: std::fmt::Display>(items: &[T], sep: &str) -> String {
    items.iter().map(T::to_string).collect::<Vec<_>>().join(sep)
}

fn ignored_note(ignored: &[String]) -> String {
    if ignored.is_empty() {
        String::new()
    } else {
        format!(" (ignored: {})", ignored.join("; "))
    }
}

fn expired(role: RoleName, what: &str, version: u64, at: u64) -> String {
    match role {
        RoleName::Root => format!("root version {version} expired at {at}"),
        _ => format!("{what}: version {version} expired at {at}"),
    }
}

fn replayed(role: RoleName, what: &str, have: u64, got: u64) -> String {
    match role {
        RoleName::Root => format!(
            "{what}: version {got} is older than the trusted root (version {have}); refusing a rollback of the root"
        ),
        _ => format!(
            "{what}: version {got} is older than the version {have} this node already accepted (replay)"
        ),
    }
}

/// What a node compares a document of `role` with.
fn trusted(role: RoleName) -> &'static str {
    match role {
        RoleName::Root => "trusted root",
        _ => "accepted document",
    }
}

fn would_not_widen(reached: u32, percent: Option<u32>) -> String {
    let now = f64::from(reached) / 100.0;
    match percent {
        Some(p) => format!(
            "the rollout already reaches {now:.2}% of the fleet; --percent {p} would not widen it"
        ),
        None => format!(
            "the rollout already reaches {now:.2}% of the fleet, its last wave; nothing to advance"
        ),
    }
}
