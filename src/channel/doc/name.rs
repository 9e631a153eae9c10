//! Channel names: checked once where they enter (a flag, a document, a directory listing) and
//! the only way to build a channel's paths, so a name can never step out of `channels/`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// 1-64 of a-z, 0-9, '-', '_': safe as a file name (`channels/<name>.json`) on every system.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChannelName(String);

impl ChannelName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The channel document, relative to the repository (or a node's `trusted/`).
    pub fn document(&self) -> String {
        format!("channels/{}.json", self.0)
    }

    /// Its detached signatures, next to it.
    pub fn signatures(&self) -> String {
        format!("channels/{}.sigs.json", self.0)
    }
}

fn valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

impl TryFrom<String> for ChannelName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if valid(&s) {
            Ok(ChannelName(s))
        } else {
            Err(format!(
                "{s:?} is not a channel name (1-64 of a-z, 0-9, -, _)"
            ))
        }
    }
}

impl std::str::FromStr for ChannelName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.to_owned().try_into()
    }
}

impl From<ChannelName> for String {
    fn from(n: ChannelName) -> String {
        n.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelName({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_channels_are_refused() {
        for bad in [
            "",
            "../root",
            "a/b",
            "Stable",
            "a b",
            ".",
            "..",
            "x.json",
            &"a".repeat(65),
        ] {
            let e = bad.parse::<ChannelName>().unwrap_err();
            assert!(
                e.ends_with("is not a channel name (1-64 of a-z, 0-9, -, _)"),
                "{e}"
            );
        }
        let n: ChannelName = "canary-2_b".parse().unwrap();
        assert_eq!(n.document(), "channels/canary-2_b.json");
        assert_eq!(n.signatures(), "channels/canary-2_b.sigs.json");
        assert!("a".repeat(64).parse::<ChannelName>().is_ok());
        // Shown in tables: padding applies as to a string.
        assert_eq!(format!("[{n:<12}]"), "[canary-2_b  ]");
    }

    #[test]
    fn a_document_naming_a_bad_channel_does_not_parse() {
        assert!(serde_json::from_str::<ChannelName>("\"../x\"").is_err());
        let n: ChannelName = serde_json::from_str("\"stable\"").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"stable\"");
    }
}
