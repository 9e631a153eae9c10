//! `repo rotate-key`: a new root version with new root keys, signed by the old keys and the new,
//! and the channel and image roles following the root keys when asked (`--also`).

use std::collections::BTreeSet;

use super::init::{check_threshold, distinct, key_entry};
use super::repo::{keys_short, Repo};
use crate::channel::doc::{
    sign_bytes, to_bytes, verify_threshold, ChannelName, Role, RoleName, Root,
};
use crate::channel::error::{ChannelError, UsageError};
use crate::sign::{KeyId, SecretKey};

/// Refuses a rotation to keys given twice, a threshold the new keys cannot meet, or `--also
/// root` (the root role is the one being rotated).
fn check_rotation(
    new_keys: &[SecretKey],
    threshold: u32,
    also: &[RoleName],
) -> Result<(), ChannelError> {
    let new_ids: Vec<KeyId> = new_keys.iter().map(|k| k.id().clone()).collect();
    distinct(&new_ids, "--new-root-key")?;
    check_threshold("--threshold", threshold, new_keys.len(), "new root keys")?;
    if let Some(r) = also.iter().find(|r| **r == RoleName::Root) {
        return Err(UsageError::CannotFollowRoot { role: *r }.into());
    }
    Ok(())
}

/// The next root: `new_keys` in the root role, the retired root keys replaced in the roles
/// of `also`, keys no role uses any more dropped. Says which roles still trust a retired key.
fn rotated_root(
    old: &Root,
    new_keys: &[SecretKey],
    threshold: u32,
    expires: u64,
    also: &[RoleName],
) -> Result<Rotation, ChannelError> {
    let new_ids: Vec<KeyId> = new_keys.iter().map(|k| k.id().clone()).collect();
    let mut root = old.clone();
    root.version += 1;
    root.expires = expires;
    let retired: Vec<KeyId> = old
        .roles
        .root
        .key_ids
        .iter()
        .filter(|id| !new_ids.contains(id))
        .cloned()
        .collect();
    root.roles.root = Role {
        key_ids: new_ids.clone(),
        threshold,
    };
    let mut rotated = Vec::new();
    let mut still_trusting = Vec::new();
    for name in [RoleName::Channel, RoleName::Image] {
        let role = root.roles.get_mut(name);
        let stale: Vec<KeyId> = role
            .key_ids
            .iter()
            .filter(|id| retired.contains(id))
            .cloned()
            .collect();
        if stale.is_empty() {
            continue;
        }
        if !also.contains(&name) {
            still_trusting.push((name, stale));
            continue;
        }
        follow_root_keys(name, role, &retired, &new_ids)?;
        rotated.push(name);
    }
    for k in new_keys {
        root.keys.insert(k.id().clone(), key_entry(&k.public()));
    }
    drop_unused_keys(&mut root);
    Ok(Rotation {
        root,
        retired,
        rotated,
        still_trusting,
        resigned: Vec::new(),
    })
}

/// Replaces the `retired` root keys of `role` by the `new` ones (its threshold unchanged).
fn follow_root_keys(
    name: RoleName,
    role: &mut Role,
    retired: &[KeyId],
    new: &[KeyId],
) -> Result<(), ChannelError> {
    role.key_ids.retain(|id| !retired.contains(id));
    for id in new {
        if !role.key_ids.contains(id) {
            role.key_ids.push(id.clone());
        }
    }
    if role.threshold as usize > role.key_ids.len() {
        return Err(UsageError::RotationBelowThreshold {
            role: name,
            threshold: role.threshold,
            keys: role.key_ids.len(),
        }
        .into());
    }
    Ok(())
}

/// Drops the keys no role uses any more.
fn drop_unused_keys(root: &mut Root) {
    let used: BTreeSet<KeyId> = root
        .roles
        .iter()
        .flat_map(|(_, r)| r.key_ids.iter().cloned())
        .collect();
    root.keys.retain(|id, _| used.contains(id));
}

/// The bytes of the rotated root and its signatures by the old and the new keys, each set
/// meeting its own root's threshold.
fn sign_rotated_root(
    old: &Root,
    root: &Root,
    old_keys: &[SecretKey],
    new_keys: &[SecretKey],
) -> Result<(Vec<u8>, Vec<u8>), ChannelError> {
    let bytes = to_bytes(root);
    let mut signers: Vec<&SecretKey> = old_keys.iter().collect();
    for k in new_keys {
        if !signers.iter().any(|s| s.id() == k.id()) {
            signers.push(k);
        }
    }
    let sigs = sign_bytes(&bytes, &signers);
    verify_threshold("new root (old keys)", &bytes, &sigs, old, RoleName::Root)
        .map_err(keys_short("pass the current root keys with --old-root-key"))?;
    verify_threshold("new root (new keys)", &bytes, &sigs, root, RoleName::Root)?;
    Ok((bytes, sigs))
}

/// What `repo rotate-key` did.
#[derive(Debug)]
pub struct Rotation {
    pub root: Root,
    /// Root key ids no longer in the root role.
    pub retired: Vec<KeyId>,
    /// Roles in which the retired keys were replaced by the new root keys (`--also`).
    pub rotated: Vec<RoleName>,
    /// Other roles that still trust a retired key, with those keys.
    pub still_trusting: Vec<(RoleName, Vec<KeyId>)>,
    /// Channels re-signed with the new keys because their role was rotated.
    pub resigned: Vec<ChannelName>,
}

impl Repo {
    /// A new root version with `new_keys` as root keys, signed by the old keys (meeting the old
    /// threshold) and the new ones (meeting the new threshold).
    ///
    /// Other roles (`channel`, `image`) that trusted a retired root key keep trusting it unless
    /// named in `also`: there the retired keys are replaced by the new root keys (thresholds
    /// unchanged), and when the channel role changes every channel document is re-signed with
    /// the new keys, so nodes accept them under the new root.
    pub fn rotate(
        &self,
        old_keys: &[SecretKey],
        new_keys: &[SecretKey],
        threshold: u32,
        expires: u64,
        also: &[RoleName],
    ) -> Result<Rotation, ChannelError> {
        let old = self.root()?;
        check_rotation(new_keys, threshold, also)?;
        let mut rot = rotated_root(&old, new_keys, threshold, expires, also)?;
        let (bytes, sigs) = sign_rotated_root(&old, &rot.root, old_keys, new_keys)?;
        // The channels to re-sign, read before anything changes.
        let channels = if rot.rotated.contains(&RoleName::Channel) {
            self.channel_names()?
        } else {
            Vec::new()
        };
        self.write_root(rot.root.version, &bytes, &sigs)?;
        rot.resigned = self.resign(channels, new_keys, rot.root.version)?;
        Ok(rot)
    }

    /// Re-signs `channels` unchanged with `keys` after root version `v` was written.
    fn resign(
        &self,
        channels: Vec<ChannelName>,
        keys: &[SecretKey],
        v: u64,
    ) -> Result<Vec<ChannelName>, ChannelError> {
        let mut resigned = Vec::new();
        for name in channels {
            let c = self.require_channel(&name)?;
            self.update(&name, keys, c.expires, |_| Ok(()))
                .map_err(|e| UsageError::ResignFailed {
                    version: v,
                    channel: name.clone(),
                    source: Box::new(e),
                })?;
            resigned.push(name);
        }
        Ok(resigned)
    }
}
