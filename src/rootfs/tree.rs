//! The single in-memory model of an image's files. Every output format is written from it.

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::path::ImagePath;

/// Which part of the build put an entry into the tree (an SBOM component's `bom-ref`):
/// `overlay:hello`, `file:/etc/x`, `package:busybox-static`, `generated`, `init`, `kernel-modules`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin(Arc<str>);

impl Origin {
    pub fn new(s: impl AsRef<str>) -> Self {
        Origin(Arc::from(s.as_ref()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Arc<Vec<u8>>),
    /// The target exactly as written (relative or absolute); never followed on the host.
    Symlink(String),
    /// A hard link to another regular file in the tree.
    Hardlink(ImagePath),
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Dir => "directory",
            Kind::File(_) => "file",
            Kind::Symlink(_) => "symlink",
            Kind::Hardlink(_) => "hard link",
            Kind::CharDevice { .. } => "character device",
            Kind::BlockDevice { .. } => "block device",
        }
    }

    /// The `S_IF*` file type bits.
    pub fn type_bits(&self) -> u32 {
        match self {
            Kind::Dir => 0o040000,
            Kind::File(_) | Kind::Hardlink(_) => 0o100000,
            Kind::Symlink(_) => 0o120000,
            Kind::CharDevice { .. } => 0o020000,
            Kind::BlockDevice { .. } => 0o060000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`0o7777` mask).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub origin: Origin,
}

impl Entry {
    pub fn dir(mode: u32, origin: &Origin) -> Self {
        Self::new(Kind::Dir, mode, origin)
    }
    pub fn file(data: Vec<u8>, mode: u32, origin: &Origin) -> Self {
        Self::new(Kind::File(Arc::new(data)), mode, origin)
    }
    pub fn symlink(target: impl Into<String>, origin: &Origin) -> Self {
        Self::new(Kind::Symlink(target.into()), 0o777, origin)
    }
    pub fn new(kind: Kind, mode: u32, origin: &Origin) -> Self {
        Entry {
            kind,
            mode: mode & 0o7777,
            uid: 0,
            gid: 0,
            origin: origin.clone(),
        }
    }
    pub fn owned_by(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }
    /// Bytes of content (regular files and symlink targets).
    pub fn size(&self) -> u64 {
        match &self.kind {
            Kind::File(d) => d.len() as u64,
            Kind::Symlink(t) => t.len() as u64,
            _ => 0,
        }
    }
}

/// A later layer replaced an entry that an earlier one put at the same path.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Override {
    pub path: ImagePath,
    /// The component whose entry was replaced.
    pub replaced: String,
    /// The component whose entry is in the image.
    pub by: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("cannot put {path} into the image ({origin}): {parent} is a {kind} (from {parent_origin}), not a directory")]
    ParentNotDir {
        path: ImagePath,
        origin: Origin,
        parent: ImagePath,
        kind: &'static str,
        parent_origin: Origin,
    },
    #[error("cannot replace directory {path} (from {existing}) with a {kind} from {origin}: the directory is not empty")]
    NonEmptyDir {
        path: ImagePath,
        existing: Origin,
        kind: &'static str,
        origin: Origin,
    },
    #[error("symlinks loop while resolving {0} ({1})")]
    SymlinkLoop(ImagePath, Origin),
    #[error(
        "hard link {path} ({origin}) points at {target}, which is not a regular file in the image"
    )]
    BadHardlink {
        path: ImagePath,
        target: ImagePath,
        origin: Origin,
    },
}

/// Sorted, normalised image contents. Parents always exist and are directories.
#[derive(Clone, Debug)]
pub struct Tree {
    entries: BTreeMap<ImagePath, Entry>,
    overrides: Vec<Override>,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Tree {
    /// A tree holding only the root directory (0755, root:root).
    pub fn new() -> Self {
        let mut entries = BTreeMap::new();
        entries.insert(
            ImagePath::root(),
            Entry::dir(0o755, &Origin::new("generated")),
        );
        Tree {
            entries,
            overrides: Vec::new(),
        }
    }

    pub fn get(&self, path: &ImagePath) -> Option<&Entry> {
        self.entries.get(path)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ImagePath, &Entry)> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.len() <= 1
    }

    pub fn overrides(&self) -> &[Override] {
        &self.overrides
    }

    /// Removes `path` and everything below it; returns how many entries went.
    pub fn remove_all(&mut self, path: &ImagePath) -> usize {
        let doomed: Vec<ImagePath> = self
            .entries
            .range(path.clone()..)
            .take_while(|(p, _)| p.starts_with(path))
            .map(|(p, _)| p.clone())
            .collect();
        for p in &doomed {
            if !p.is_root() {
                self.entries.remove(p);
            }
        }
        doomed.len()
    }

    /// Resolves directory symlinks among the ancestors of `path`, inside the tree only, so that
    /// `/bin/sh` lands in `/usr/bin/sh` when `/bin -> usr/bin` (what dpkg does on extraction).
    /// Creates missing ancestors as root-owned 0755 directories attributed to `origin`.
    fn prepare_parent(
        &mut self,
        path: &ImagePath,
        origin: &Origin,
    ) -> Result<ImagePath, TreeError> {
        let mut hops = 0;
        let mut current = path.clone();
        'restart: loop {
            let mut prefix = ImagePath::root();
            let names: Vec<String> = current.components().map(str::to_owned).collect();
            for (i, name) in names.iter().enumerate() {
                if i + 1 == names.len() {
                    break;
                }
                let next = prefix.join(name).expect("components of a valid path");
                match self.entries.get(&next).map(|e| &e.kind) {
                    None => {
                        self.entries.insert(next.clone(), Entry::dir(0o755, origin));
                    }
                    Some(Kind::Dir) => {}
                    Some(Kind::Symlink(target)) => {
                        hops += 1;
                        if hops > 40 {
                            return Err(TreeError::SymlinkLoop(path.clone(), origin.clone()));
                        }
                        let mut resolved = ImagePath::resolve_link_target(&next, target);
                        for rest in &names[i + 1..] {
                            resolved = resolved.join(rest).expect("components of a valid path");
                        }
                        current = resolved;
                        continue 'restart;
                    }
                    Some(other) => {
                        let e = &self.entries[&next];
                        return Err(TreeError::ParentNotDir {
                            path: path.clone(),
                            origin: origin.clone(),
                            parent: next.clone(),
                            kind: other.name(),
                            parent_origin: e.origin.clone(),
                        });
                    }
                }
                prefix = next;
            }
            return Ok(current);
        }
    }

    /// Puts an entry into the tree; a later insert at the same path wins (directories merge,
    /// taking the later metadata). Returns the path it ended up at (after resolving symlinked
    /// parents).
    pub fn insert(&mut self, path: &ImagePath, entry: Entry) -> Result<ImagePath, TreeError> {
        if path.is_root() {
            if let Kind::Dir = entry.kind {
                let root = self.entries.get_mut(path).expect("root always exists");
                root.mode = entry.mode;
                root.uid = entry.uid;
                root.gid = entry.gid;
                return Ok(path.clone());
            }
        }
        let path = self.prepare_parent(path, &entry.origin)?;
        if let Some(existing) = self.entries.get(&path) {
            match (&existing.kind, &entry.kind) {
                (Kind::Dir, Kind::Dir) => {
                    // Directories merge; the later layer's metadata wins, quietly.
                }
                (Kind::Dir, _) => {
                    let has_children = self
                        .entries
                        .range(path.clone()..)
                        .nth(1)
                        .is_some_and(|(p, _)| p.starts_with(&path));
                    if has_children {
                        return Err(TreeError::NonEmptyDir {
                            path: path.clone(),
                            existing: existing.origin.clone(),
                            kind: entry.kind.name(),
                            origin: entry.origin.clone(),
                        });
                    }
                    self.record_override(&path, existing.origin.clone(), &entry.origin);
                }
                _ => {
                    if existing.kind != entry.kind
                        || existing.mode != entry.mode
                        || existing.origin != entry.origin
                    {
                        self.record_override(&path, existing.origin.clone(), &entry.origin);
                    }
                }
            }
        }
        self.entries.insert(path.clone(), entry);
        Ok(path)
    }

    fn record_override(&mut self, path: &ImagePath, replaced: Origin, by: &Origin) {
        if replaced == *by {
            return;
        }
        self.overrides.retain(|o| &o.path != path);
        self.overrides.push(Override {
            path: path.clone(),
            replaced: replaced.to_string(),
            by: by.to_string(),
        });
    }

    /// Checks every hard link points at a regular file in the tree.
    pub fn check_links(&self) -> Result<(), TreeError> {
        for (path, e) in &self.entries {
            if let Kind::Hardlink(target) = &e.kind {
                match self.entries.get(target).map(|t| &t.kind) {
                    Some(Kind::File(_)) => {}
                    _ => {
                        return Err(TreeError::BadHardlink {
                            path: path.clone(),
                            target: target.clone(),
                            origin: e.origin.clone(),
                        })
                    }
                }
            }
        }
        Ok(())
    }

    /// Entries grouped by origin, in path order.
    pub fn by_origin(&self) -> BTreeMap<&Origin, Vec<(&ImagePath, &Entry)>> {
        let mut map: BTreeMap<&Origin, Vec<(&ImagePath, &Entry)>> = BTreeMap::new();
        for (p, e) in &self.entries {
            map.entry(&e.origin).or_default().push((p, e));
        }
        map
    }

    /// A digest of a set of entries: path, type, mode, owner and content of each, in order.
    pub fn digest_entries<'a>(
        entries: impl IntoIterator<Item = (&'a ImagePath, &'a Entry)>,
    ) -> [u8; 32] {
        let mut h = Sha256::new();
        for (p, e) in entries {
            h.update(p.as_str().as_bytes());
            h.update([0]);
            h.update(format!(
                "{:o} {:o} {} {}",
                e.kind.type_bits(),
                e.mode,
                e.uid,
                e.gid
            ));
            h.update([0]);
            match &e.kind {
                Kind::File(d) => h.update(Sha256::digest(d.as_slice())),
                Kind::Symlink(t) => h.update(t.as_bytes()),
                Kind::Hardlink(t) => h.update(t.as_str().as_bytes()),
                Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } => {
                    h.update(format!("{major}:{minor}"))
                }
                Kind::Dir => {}
            }
            h.update([0xff]);
        }
        h.finalize().into()
    }

    /// Total bytes of file contents.
    pub fn content_bytes(&self) -> u64 {
        self.entries.values().map(Entry::size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ImagePath {
        ImagePath::parse(s).unwrap()
    }

    #[test]
    fn creates_parents_and_sorts() {
        let o = Origin::new("overlay:a");
        let mut t = Tree::new();
        t.insert(&p("/usr/bin/env"), Entry::file(b"x".to_vec(), 0o755, &o))
            .unwrap();
        t.insert(&p("/etc/hostname"), Entry::file(b"h".to_vec(), 0o644, &o))
            .unwrap();
        let paths: Vec<&str> = t.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/",
                "/etc",
                "/etc/hostname",
                "/usr",
                "/usr/bin",
                "/usr/bin/env"
            ]
        );
        assert_eq!(t.get(&p("/usr")).unwrap().kind, Kind::Dir);
    }

    #[test]
    fn later_layer_wins_and_is_recorded() {
        let a = Origin::new("overlay:a");
        let b = Origin::new("overlay:b");
        let mut t = Tree::new();
        t.insert(&p("/etc/motd"), Entry::file(b"a".to_vec(), 0o644, &a))
            .unwrap();
        t.insert(&p("/etc/motd"), Entry::file(b"b".to_vec(), 0o644, &b))
            .unwrap();
        assert_eq!(t.get(&p("/etc/motd")).unwrap().origin, b);
        assert_eq!(
            t.overrides(),
            &[Override {
                path: p("/etc/motd"),
                replaced: "overlay:a".into(),
                by: "overlay:b".into()
            }]
        );
    }

    #[test]
    fn follows_directory_symlinks_inside_the_tree() {
        let o = Origin::new("x");
        let mut t = Tree::new();
        t.insert(&p("/usr/bin"), Entry::dir(0o755, &o)).unwrap();
        t.insert(&p("/bin"), Entry::symlink("usr/bin", &o)).unwrap();
        let at = t
            .insert(&p("/bin/sh"), Entry::file(vec![], 0o755, &o))
            .unwrap();
        assert_eq!(at.as_str(), "/usr/bin/sh");
        // An escaping link target is clamped at the root.
        t.insert(&p("/evil"), Entry::symlink("../../../../tmp", &o))
            .unwrap();
        let at = t
            .insert(&p("/evil/x"), Entry::file(vec![], 0o644, &o))
            .unwrap();
        assert_eq!(at.as_str(), "/tmp/x");
    }

    #[test]
    fn symlink_loops_are_errors() {
        let o = Origin::new("x");
        let mut t = Tree::new();
        t.insert(&p("/a"), Entry::symlink("b", &o)).unwrap();
        t.insert(&p("/b"), Entry::symlink("a", &o)).unwrap();
        assert!(matches!(
            t.insert(&p("/a/x"), Entry::file(vec![], 0o644, &o)),
            Err(TreeError::SymlinkLoop(..))
        ));
    }

    #[test]
    fn file_as_parent_is_an_error() {
        let o = Origin::new("x");
        let mut t = Tree::new();
        t.insert(&p("/f"), Entry::file(vec![], 0o644, &o)).unwrap();
        let err = t
            .insert(&p("/f/x"), Entry::file(vec![], 0o644, &o))
            .unwrap_err();
        assert!(err.to_string().contains("/f is a file"), "{err}");
    }

    #[test]
    fn non_empty_dir_cannot_become_a_file() {
        let o = Origin::new("x");
        let mut t = Tree::new();
        t.insert(&p("/d/x"), Entry::file(vec![], 0o644, &o))
            .unwrap();
        assert!(matches!(
            t.insert(&p("/d"), Entry::file(vec![], 0o644, &o)),
            Err(TreeError::NonEmptyDir { .. })
        ));
    }

    #[test]
    fn remove_all_removes_subtree_only() {
        let o = Origin::new("x");
        let mut t = Tree::new();
        t.insert(&p("/usr/share/doc/a"), Entry::file(vec![], 0o644, &o))
            .unwrap();
        t.insert(&p("/usr/share/docs"), Entry::file(vec![], 0o644, &o))
            .unwrap();
        assert_eq!(t.remove_all(&p("/usr/share/doc")), 2);
        assert!(t.get(&p("/usr/share/docs")).is_some());
    }

    #[test]
    fn hardlinks_must_point_at_files() {
        let o = Origin::new("x");
        let mut t = Tree::new();
        t.insert(
            &p("/l"),
            Entry::new(Kind::Hardlink(p("/missing")), 0o644, &o),
        )
        .unwrap();
        assert!(t.check_links().is_err());
    }
}
