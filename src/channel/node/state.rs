//! The node's records — the image in service (`current.json`), the one before it
//! (`previous.json`), the one staged (`staged.json`), the ones refused (`rejected.json`) — read
//! strictly, and the state a run opens: locked, recovered from an interrupted switch, cleaned.
//!
//! `current.json` is the commit point of every switch: it is written first (temp, fsync,
//! rename, fsync of the directory), then `previous.json`, then `staged.json` goes. A run
//! interrupted between those steps is finished by the next one, whatever command it is
//! ([`open`]): `previous.json` is rewritten from `replaces`, a staged image that is current or
//! rejected is unstaged. Then every image directory that is neither current, previous nor
//! staged is removed — and nothing at all when a state file cannot be read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::files::{clean_leftovers, lock_state, read_opt, sync_dir, write, StateLock};
use crate::channel::doc::{to_bytes, ChannelName, ImageRef};
use crate::channel::error::{ChannelError, StateError};
use crate::digest::Sha256;

/// Simulates a crash at a named step, for the crash-safety tests: in debug builds, when
/// `$STRATOS_FAILPOINT` names this step, the process aborts on the spot (no destructor, no
/// cleanup, as if killed). Release builds have no fail points.
#[cfg(debug_assertions)]
pub fn failpoint(name: &str) {
    if std::env::var("STRATOS_FAILPOINT").is_ok_and(|f| f == name) {
        eprintln!("stratos: fail point {name}: aborting");
        std::process::abort();
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn failpoint(_: &str) {}

/// The image in service (`current.json`), or the one before it (`previous.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Current {
    pub version: String,
    pub manifest_sha256: Sha256,
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

/// One refused image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub manifest_sha256: Sha256,
    pub image: String,
    pub version: String,
    pub reason: String,
    /// When (Unix seconds).
    pub at: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectedList {
    pub rejected: Vec<Rejected>,
}

impl RejectedList {
    pub fn find(&self, digest: &Sha256) -> Option<&Rejected> {
        self.rejected.iter().find(|r| r.manifest_sha256 == *digest)
    }

    /// The list with `r` (replacing an earlier rejection of the same image).
    pub fn with(&self, r: Rejected) -> RejectedList {
        let mut list = self.clone();
        list.rejected
            .retain(|x| x.manifest_sha256 != r.manifest_sha256);
        list.rejected.push(r);
        list
    }
}

/// The node's state files, each read strictly: a file that cannot be read or parsed stops the
/// command, naming it (it is never taken for "absent").
#[derive(Debug, Clone, Default)]
pub struct NodeState {
    pub current: Option<Current>,
    pub previous: Option<Current>,
    pub staged: Option<Staged>,
    pub rejected: RejectedList,
}

pub(super) fn read_json<T: DeserializeOwned>(
    state: &Path,
    name: &str,
) -> Result<Option<T>, ChannelError> {
    let p = state.join(name);
    read_opt(&p)?
        .map(|b| {
            serde_json::from_slice(&b).map_err(|source| {
                StateError::Malformed {
                    path: p.clone(),
                    source,
                }
                .into()
            })
        })
        .transpose()
}

/// A record's image directory must be `images/<its manifest sha256>`: what cleanup keeps is
/// what is booted, and no record can name a path elsewhere.
fn check_dir(state: &Path, file: &str, dir: &str, digest: &Sha256) -> Result<(), ChannelError> {
    if dir == format!("images/{digest}") {
        return Ok(());
    }
    Err(StateError::DirMismatch {
        path: state.join(file),
        dir: dir.to_owned(),
        digest: *digest,
    }
    .into())
}

impl NodeState {
    pub fn load(state: &Path) -> Result<NodeState, ChannelError> {
        let st = NodeState {
            current: read_json(state, "current.json")?,
            previous: read_json(state, "previous.json")?,
            staged: read_json(state, "staged.json")?,
            rejected: read_json(state, "rejected.json")?.unwrap_or_default(),
        };
        for (file, c) in [
            ("current.json", &st.current),
            ("previous.json", &st.previous),
        ] {
            if let Some(c) = c {
                check_dir(state, file, &c.dir, &c.manifest_sha256)?;
                if let Some(r) = &c.replaces {
                    check_dir(state, file, &r.dir, &r.manifest_sha256)?;
                }
            }
        }
        if let Some(s) = &st.staged {
            check_dir(state, "staged.json", &s.dir, &s.image.manifest_sha256)?;
        }
        Ok(st)
    }

    /// Image directories (relative) that must stay.
    fn kept(&self) -> BTreeSet<String> {
        let mut k = BTreeSet::new();
        for c in [&self.current, &self.previous].into_iter().flatten() {
            k.insert(format!("images/{}", c.manifest_sha256));
            if let Some(r) = &c.replaces {
                k.insert(format!("images/{}", r.manifest_sha256));
            }
        }
        if let Some(s) = &self.staged {
            k.insert(format!("images/{}", s.image.manifest_sha256));
        }
        k
    }
}

/// A locked state directory, recovered from any interrupted run and cleaned: what every command
/// of the node's lifecycle works on.
pub struct Opened {
    /// The state directory.
    pub dir: PathBuf,
    pub lock: StateLock,
    pub state: NodeState,
    /// What was done on the way (a switch finished, leftovers removed), for the user.
    pub notes: Vec<String>,
}

/// Locks `dir`, removes leftovers of interrupted runs, finishes an interrupted switch and
/// removes image directories nothing names.
pub fn open(dir: &Path) -> Result<Opened, ChannelError> {
    let lock = lock_state(dir)?;
    let mut notes = clean_leftovers(dir)?;
    let mut st = NodeState::load(dir)?;
    finish_switch(dir, &mut st, &mut notes)?;
    hygiene(dir, &st, &mut notes);
    Ok(Opened {
        dir: dir.to_owned(),
        lock,
        state: st,
        notes,
    })
}

impl Opened {
    /// Removes the image directories the state no longer names (see [`hygiene`]).
    pub(super) fn remove_unused_images(&mut self) {
        hygiene(&self.dir, &self.state, &mut self.notes);
    }

    /// Writes the state file `name` (atomically).
    pub(super) fn write(&self, name: &str, bytes: &[u8]) -> Result<(), ChannelError> {
        write(&self.dir.join(name), bytes)
    }

    /// Removes the state file `name` (a file already gone is fine).
    pub(super) fn remove(&self, name: &str) -> Result<(), ChannelError> {
        remove_file(&self.dir.join(name))
    }
}

/// `replaces` without its own history: a record names one step back only.
pub(super) fn flat(c: &Current) -> Current {
    Current {
        replaces: None,
        ..c.clone()
    }
}

fn finish_switch(
    dir: &Path,
    st: &mut NodeState,
    notes: &mut Vec<String>,
) -> Result<(), ChannelError> {
    if let Some(cur) = &st.current {
        if let Some(r) = &cur.replaces {
            if st.previous.as_ref().map(|p| &p.manifest_sha256) != Some(&r.manifest_sha256) {
                let prev = flat(r);
                write(&dir.join("previous.json"), &to_bytes(&prev))?;
                notes.push(format!(
                    "finished an interrupted {}: {} {} is current, {} {} previous",
                    if cur.by.is_empty() {
                        "switch"
                    } else {
                        cur.by.as_str()
                    },
                    cur.image,
                    cur.version,
                    prev.image,
                    prev.version
                ));
                st.previous = Some(prev);
            }
        }
    }
    let unstage = match (&st.staged, &st.current) {
        (Some(s), Some(c)) if s.image.manifest_sha256 == c.manifest_sha256 => {
            Some("it is the current image (an apply was interrupted)")
        }
        (Some(s), _) if st.rejected.find(&s.image.manifest_sha256).is_some() => {
            Some("it was rejected (a rejection was interrupted)")
        }
        _ => None,
    };
    if let Some(why) = unstage {
        remove_file(&dir.join("staged.json"))?;
        notes.push(format!("unstaged the staged image: {why}"));
        st.staged = None;
    }
    Ok(())
}

fn remove_file(p: &Path) -> Result<(), ChannelError> {
    match std::fs::remove_file(p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ChannelError::io(format!("removing {}", p.display()))(e)),
    }
    if let Some(d) = p.parent() {
        sync_dir(d)?;
    }
    Ok(())
}

/// After a fetch staged a new image: the one staged before goes (never current or previous).
/// A state file that cannot be read removes nothing (the fetch itself has succeeded).
pub(super) fn tidy(dir: &Path, notes: &mut Vec<String>) {
    match NodeState::load(dir) {
        Ok(st) => hygiene(dir, &st, notes),
        Err(e) => notes.push(format!("no unused image was removed: {e}")),
    }
}

/// Removes `images/<sha256>` directories that are neither current, previous nor staged. Only
/// directories with such names, never through a symlink. Freeing space never fails a command:
/// what cannot be removed is said in a note and tried again next time.
fn hygiene(dir: &Path, st: &NodeState, notes: &mut Vec<String>) {
    let images = dir.join("images");
    let rd = match std::fs::read_dir(&images) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            notes.push(format!("could not list {}: {e}", images.display()));
            return;
        }
    };
    let kept = st.kept();
    let mut removed = false;
    for e in rd.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if !is_dir || !Sha256::is_valid(&name) || kept.contains(&format!("images/{name}")) {
            continue;
        }
        match std::fs::remove_dir_all(e.path()) {
            Ok(()) => {
                notes.push(format!(
                    "removed {}: neither current, previous nor staged",
                    e.path().display()
                ));
                removed = true;
            }
            Err(err) => notes.push(format!(
                "could not remove the unused image {}: {err}; it is tried again next time",
                e.path().display()
            )),
        }
    }
    if removed {
        if let Err(e) = sync_dir(&images) {
            notes.push(format!("{e}"));
        }
    }
}
