//! Detached signatures over a document's canonical bytes (`*.sigs.json`), and the threshold a
//! role's keys must meet.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::role::RoleName;
use super::Root;
use crate::channel::error::ChannelError;
use crate::sign::manifest::canonical_json;
use crate::sign::{KeyId, SecretKey};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub key_id: KeyId,
    /// 64 bytes, hex.
    pub sig: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signatures {
    pub signatures: Vec<Signature>,
}

/// Canonical bytes of a document.
pub fn to_bytes<T: Serialize>(doc: &T) -> Vec<u8> {
    canonical_json(&serde_json::to_value(doc).expect("plain data"))
        .expect("no floats")
        .into_bytes()
}

pub fn sign_bytes(bytes: &[u8], keys: &[&SecretKey]) -> Vec<u8> {
    let s = Signatures {
        signatures: keys
            .iter()
            .map(|k| Signature {
                key_id: k.id().clone(),
                sig: hex::encode(k.sign(bytes)),
            })
            .collect(),
    };
    to_bytes(&s)
}

/// Checks that at least `role.threshold` distinct keys of `role` signed `bytes`.
pub fn verify_threshold(
    what: &str,
    bytes: &[u8],
    sigs: &[u8],
    root: &Root,
    role: RoleName,
) -> Result<(), ChannelError> {
    let r = root.roles.get(role);
    let sigs: Signatures =
        serde_json::from_slice(sigs).map_err(|source| ChannelError::MalformedSignatures {
            what: what.to_owned(),
            source,
        })?;
    // Distinct *keys*, not ids: even if a root listed one key under two ids (parse_root
    // refuses that), one signature would count once.
    let mut good: BTreeSet<String> = BTreeSet::new();
    for s in &sigs.signatures {
        if !r.key_ids.contains(&s.key_id) {
            continue; // not a key of this role
        }
        let Some(pk) = root.key(&s.key_id) else {
            continue;
        };
        if pk.id() != &s.key_id || good.contains(&pk.to_hex()) {
            continue; // an id that is not its key's, or the same key counted again
        }
        // A malformed signature is one that does not count, like a wrong one: the threshold
        // below says how many did.
        let Some(sig) = hex::decode(&s.sig)
            .ok()
            .and_then(|v| <[u8; 64]>::try_from(v).ok())
        else {
            continue;
        };
        if pk.verify(bytes, &sig) {
            good.insert(pk.to_hex());
        }
    }
    if (good.len() as u32) < r.threshold.max(1) {
        return Err(ChannelError::ThresholdUnmet {
            what: what.to_owned(),
            role,
            have: good.len(),
            need: r.threshold.max(1),
        });
    }
    Ok(())
}
