//! The roles a root delegates to: who signs roots, channel documents and images.

/// The roles a root delegates to: who signs roots, channel documents and images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RoleName {
    Channel,
    Image,
    Root,
}

impl RoleName {
    /// Every role, in the order root.json lists them.
    pub const ALL: [RoleName; 3] = [RoleName::Channel, RoleName::Image, RoleName::Root];

    pub fn as_str(self) -> &'static str {
        match self {
            RoleName::Channel => "channel",
            RoleName::Image => "image",
            RoleName::Root => "root",
        }
    }

    /// What a key of this role signs, for messages.
    pub fn what_it_signs(self) -> &'static str {
        match self {
            RoleName::Channel => "channel documents",
            RoleName::Image => "images nodes will stage",
            RoleName::Root => "root documents",
        }
    }
}

impl std::fmt::Display for RoleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}
