//! `repo init`: a new repository, root version 1, and the checks on the keys it is given (which
//! a rotation makes too).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::repo::Repo;
use crate::channel::doc::{
    sign_bytes, to_bytes, KeyEntry, Role, Roles, Root, ROOT_TYPE, SPEC_VERSION,
};
use crate::channel::error::{ChannelError, UsageError};
use crate::channel::fs::metadata_if_there;
use crate::sign::{KeyId, PublicKey, SecretKey};

/// Refuses a list of keys naming one key twice (`flag` says where they came from): a threshold
/// counts distinct keys, so a repeated key only makes a threshold unreachable.
pub(super) fn distinct(ids: &[KeyId], flag: &'static str) -> Result<(), ChannelError> {
    let mut seen = BTreeSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(UsageError::KeyGivenTwice {
                flag,
                key: id.clone(),
            }
            .into());
        }
    }
    Ok(())
}

/// Refuses to make a repository where one is (or may be: a root.json that cannot be looked at
/// is not overwritten either).
fn refuse_existing_repo(dir: &Path) -> Result<(), ChannelError> {
    if metadata_if_there(&dir.join("root.json"))?.is_some() {
        return Err(UsageError::RepoExists {
            dir: dir.to_owned(),
        }
        .into());
    }
    Ok(())
}

/// `keys`, or the root keys when none are given.
fn or_root_keys(keys: &[PublicKey], root: &[PublicKey]) -> Vec<PublicKey> {
    if keys.is_empty() { root } else { keys }.to_vec()
}

/// At least one root key, no key given twice for a role, a root threshold the keys meet.
fn check_keys(
    root: &[PublicKey],
    threshold: u32,
    channel: &[PublicKey],
    image: &[PublicKey],
) -> Result<(), ChannelError> {
    if root.is_empty() {
        return Err(UsageError::NoRootKey.into());
    }
    let ids = |ks: &[PublicKey]| ks.iter().map(|k| k.id().clone()).collect::<Vec<_>>();
    distinct(&ids(root), "--root-key")?;
    distinct(&ids(channel), "--channel-key")?;
    distinct(&ids(image), "--image-key")?;
    check_threshold("--threshold", threshold, root.len(), "root keys")
}

/// A threshold between 1 and the number of keys that can meet it.
pub(super) fn check_threshold(
    flag: &'static str,
    t: u32,
    keys: usize,
    what: &'static str,
) -> Result<(), ChannelError> {
    if t == 0 || t as usize > keys {
        return Err(UsageError::BadThreshold {
            flag,
            threshold: t,
            keys,
            what,
        }
        .into());
    }
    Ok(())
}

/// Root version 1: the keys and threshold of the root, channel and image roles.
fn first_root(
    expires: u64,
    root: (&[PublicKey], u32),
    channel: (&[PublicKey], u32),
    image: (&[PublicKey], u32),
) -> Root {
    let mut keys = BTreeMap::new();
    let mut role = |(pubs, threshold): (&[PublicKey], u32)| {
        for p in pubs {
            keys.insert(p.id().clone(), key_entry(p));
        }
        Role {
            key_ids: pubs.iter().map(|p| p.id().clone()).collect(),
            threshold,
        }
    };
    let roles = Roles {
        root: role(root),
        channel: role(channel),
        image: role(image),
    };
    Root {
        kind: ROOT_TYPE.into(),
        spec_version: SPEC_VERSION,
        version: 1,
        expires,
        keys,
        roles,
    }
}

pub(super) fn key_entry(k: &PublicKey) -> KeyEntry {
    KeyEntry {
        kind: "ed25519".into(),
        public: k.to_hex(),
    }
}

impl Repo {
    /// Creates a repository with root version 1. The channel and image roles trust the root
    /// keys unless given keys of their own.
    pub fn init(
        dir: &Path,
        root_keys: &[SecretKey],
        threshold: u32,
        channel_keys: &[PublicKey],
        channel_threshold: u32,
        image_keys: &[PublicKey],
        expires: u64,
    ) -> Result<Root, ChannelError> {
        refuse_existing_repo(dir)?;
        let root_pubs: Vec<PublicKey> = root_keys.iter().map(SecretKey::public).collect();
        let channel_pubs = or_root_keys(channel_keys, &root_pubs);
        let image_pubs = or_root_keys(image_keys, &root_pubs);
        check_keys(&root_pubs, threshold, channel_keys, image_keys)?;
        check_threshold(
            "--channel-threshold",
            channel_threshold,
            channel_pubs.len(),
            "channel keys",
        )?;
        let root = first_root(
            expires,
            (&root_pubs, threshold),
            (&channel_pubs, channel_threshold),
            (&image_pubs, 1),
        );
        std::fs::create_dir_all(dir)
            .map_err(ChannelError::io(format!("creating {}", dir.display())))?;
        let repo = Repo {
            dir: dir.to_owned(),
        };
        let bytes = to_bytes(&root);
        let signers: Vec<&SecretKey> = root_keys.iter().collect();
        repo.write_root(1, &bytes, &sign_bytes(&bytes, &signers))?;
        Ok(root)
    }
}
