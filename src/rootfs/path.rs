//! In-image paths: absolute, normalised, never escaping the image root.

use std::fmt;

/// Why a string is not a valid in-image path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("in-image path {0:?} must be absolute (start with '/')")]
    NotAbsolute(String),
    #[error("in-image path {0:?} contains '..'; write the path it should resolve to instead")]
    DotDot(String),
    #[error("in-image path {0:?} contains a NUL byte")]
    Nul(String),
    #[error("in-image path {0:?}... is longer than 4095 bytes")]
    TooLong(String),
    #[error("file name {0:?} is not a single path component")]
    BadComponent(String),
    #[error(
        "file name {0:?}... is {1} bytes long; Linux allows at most 255 bytes per path component"
    )]
    ComponentTooLong(String, usize),
}

/// Linux's `NAME_MAX`: the longest file name, in bytes.
pub const NAME_MAX: usize = 255;
/// Linux's `PATH_MAX`, less its NUL.
pub const PATH_MAX: usize = 4095;

fn check_component(name: &str) -> Result<(), PathError> {
    if name.len() > NAME_MAX {
        return Err(PathError::ComponentTooLong(
            name.chars().take(40).collect(),
            name.len(),
        ));
    }
    Ok(())
}

/// An absolute, normalised path inside the image (`/`, `/etc/hostname`).
///
/// Construction rejects `..` (rather than resolving it, so a profile never means something
/// other than what it says), NUL bytes and relative paths; `.` components, repeated and trailing
/// slashes are normalised away. It orders byte-wise, so a parent always sorts before its children.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImagePath(String);

impl ImagePath {
    pub fn root() -> Self {
        ImagePath("/".to_owned())
    }

    pub fn parse(s: &str) -> Result<Self, PathError> {
        if s.contains('\0') {
            return Err(PathError::Nul(s.to_owned()));
        }
        if !s.starts_with('/') {
            return Err(PathError::NotAbsolute(s.to_owned()));
        }
        if s.len() > PATH_MAX {
            return Err(PathError::TooLong(s.chars().take(64).collect()));
        }
        let mut out = String::with_capacity(s.len());
        for part in s.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(PathError::DotDot(s.to_owned())),
                name => {
                    check_component(name)?;
                    out.push('/');
                    out.push_str(name);
                }
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        Ok(ImagePath(out))
    }

    /// Parses a path relative to the image root (`etc/passwd`, `./etc/passwd`), as found in
    /// archives and overlays.
    pub fn parse_relative(s: &str) -> Result<Self, PathError> {
        let trimmed = s.strip_prefix("./").unwrap_or(s);
        if trimmed.starts_with('/') {
            return Self::parse(trimmed);
        }
        Self::parse(&format!("/{trimmed}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The path without its leading '/', e.g. `etc/hostname` (empty for the root).
    pub fn relative(&self) -> &str {
        &self.0[1..]
    }

    /// Appends one file name.
    pub fn join(&self, name: &str) -> Result<Self, PathError> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(PathError::BadComponent(name.to_owned()));
        }
        if name.contains('\0') {
            return Err(PathError::Nul(name.to_owned()));
        }
        check_component(name)?;
        if self.0.len() + 1 + name.len() > PATH_MAX {
            return Err(PathError::TooLong(self.0.chars().take(64).collect()));
        }
        let mut s = self.0.clone();
        if !self.is_root() {
            s.push('/');
        }
        s.push_str(name);
        Ok(ImagePath(s))
    }

    pub fn parent(&self) -> Option<Self> {
        if self.is_root() {
            return None;
        }
        let idx = self.0.rfind('/').unwrap_or(0);
        Some(if idx == 0 {
            Self::root()
        } else {
            ImagePath(self.0[..idx].to_owned())
        })
    }

    pub fn file_name(&self) -> Option<&str> {
        if self.is_root() {
            None
        } else {
            self.0.rsplit('/').next()
        }
    }

    /// Path components, without the root.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// Whether `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &ImagePath) -> bool {
        other.is_root()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }

    /// Resolves a symlink target found at `link` to the absolute in-image path it names,
    /// clamping `..` at the image root (as the kernel does inside a chroot).
    pub fn resolve_link_target(link: &ImagePath, target: &str) -> ImagePath {
        let parent = link.parent().unwrap_or_else(Self::root);
        let mut parts: Vec<&str> = if target.starts_with('/') {
            Vec::new()
        } else {
            parent.components().collect()
        };
        for part in target.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                name => parts.push(name),
            }
        }
        let mut s = String::new();
        for p in parts {
            s.push('/');
            s.push_str(p);
        }
        if s.is_empty() {
            s.push('/');
        }
        ImagePath(s)
    }
}

impl fmt::Display for ImagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ImagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl serde::Serialize for ImagePath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        assert_eq!(ImagePath::parse("/").unwrap().as_str(), "/");
        assert_eq!(ImagePath::parse("//etc//./x/").unwrap().as_str(), "/etc/x");
        assert_eq!(ImagePath::parse("/.").unwrap().as_str(), "/");
        assert_eq!(
            ImagePath::parse_relative("./etc/x").unwrap().as_str(),
            "/etc/x"
        );
        assert_eq!(ImagePath::parse_relative("etc").unwrap().as_str(), "/etc");
    }

    #[test]
    fn rejects_escapes_and_garbage() {
        assert!(matches!(
            ImagePath::parse("/etc/../x"),
            Err(PathError::DotDot(_))
        ));
        assert!(matches!(ImagePath::parse("/.."), Err(PathError::DotDot(_))));
        assert!(matches!(
            ImagePath::parse("etc/x"),
            Err(PathError::NotAbsolute(_))
        ));
        assert!(matches!(
            ImagePath::parse(""),
            Err(PathError::NotAbsolute(_))
        ));
        assert!(matches!(ImagePath::parse("/a\0b"), Err(PathError::Nul(_))));
        assert!(matches!(
            ImagePath::parse_relative("../x"),
            Err(PathError::DotDot(_))
        ));
        assert!(ImagePath::root().join("..").is_err());
        assert!(ImagePath::root().join("a/b").is_err());
    }

    #[test]
    fn parents_and_names() {
        let p = ImagePath::parse("/usr/bin/env").unwrap();
        assert_eq!(p.parent().unwrap().as_str(), "/usr/bin");
        assert_eq!(p.file_name(), Some("env"));
        assert_eq!(
            ImagePath::parse("/usr").unwrap().parent().unwrap(),
            ImagePath::root()
        );
        assert!(ImagePath::root().parent().is_none());
        assert!(p.starts_with(&ImagePath::parse("/usr").unwrap()));
        assert!(!ImagePath::parse("/usrx")
            .unwrap()
            .starts_with(&ImagePath::parse("/usr").unwrap()));
    }

    #[test]
    fn sorts_parents_first() {
        let mut v: Vec<ImagePath> = ["/a/b", "/a-b", "/a", "/a b", "/"]
            .iter()
            .map(|s| ImagePath::parse(s).unwrap())
            .collect();
        v.sort();
        let pos = |s: &str| v.iter().position(|p| p.as_str() == s).unwrap();
        assert!(pos("/") < pos("/a"));
        assert!(pos("/a") < pos("/a/b"));
    }

    #[test]
    fn link_targets_stay_inside() {
        let link = ImagePath::parse("/etc/evil").unwrap();
        assert_eq!(
            ImagePath::resolve_link_target(&link, "../../../../x").as_str(),
            "/x"
        );
        assert_eq!(
            ImagePath::resolve_link_target(&link, "/usr/bin").as_str(),
            "/usr/bin"
        );
        assert_eq!(
            ImagePath::resolve_link_target(&link, "sub/./f").as_str(),
            "/etc/sub/f"
        );
    }
}
