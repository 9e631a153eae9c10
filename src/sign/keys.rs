//! ed25519 key files. Both are small JSON documents naming their key id (the first 8 bytes of
//! sha256 of the public key, hex). A secret key file is written 0600 and never printed.

use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const SECRET_KIND: &str = "stratos-ed25519-secret-key";
const PUBLIC_KIND: &str = "stratos-ed25519-public-key";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file: {0}")]
    File(#[from] crate::fsio::ReadError),
    #[error("{path} is not a stratos {what} key file: {why} (create one with `stratos keygen --out PREFIX`)")]
    Malformed {
        path: PathBuf,
        what: &'static str,
        why: String,
    },
    /// A public key file where a secret one is needed, or the other way round.
    #[error("{} is a {found} key, but a {wanted} key is needed here: pass {} (`stratos keygen --out PREFIX` writes the secret PREFIX.key and the public PREFIX.pub)", path.display(), sibling(path, wanted))]
    WrongKind {
        path: PathBuf,
        found: &'static str,
        wanted: &'static str,
    },
    #[error("{0} already exists; refusing to overwrite a key (remove it first, or choose another --out)")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot get randomness from the operating system: {0}")]
    Random(String),
}

/// First 8 bytes of sha256(public key), as 16 hex digits.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(String);

impl KeyId {
    pub fn of(public: &VerifyingKey) -> Self {
        KeyId(hex::encode(&Sha256::digest(public.as_bytes())[..8]))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.len() == 16
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(KeyId(s))
        } else {
            Err(format!("{s:?} is not a key id (16 lowercase hex digits)"))
        }
    }
}

impl From<KeyId> for String {
    fn from(k: KeyId) -> String {
        k.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretFile {
    kind: String,
    key_id: KeyId,
    secret_key: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicFile {
    kind: String,
    key_id: KeyId,
    public_key: String,
}

pub struct SecretKey {
    key: SigningKey,
    id: KeyId,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}, <redacted>)", self.id)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    id: KeyId,
}

impl SecretKey {
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_seed(seed))
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let id = KeyId::of(&key.verifying_key());
        SecretKey { key, id }
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: self.key.verifying_key(),
            id: self.id.clone(),
        }
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = crate::fsio::read_file(path, crate::fsio::caps::KEY, "a key file")?;
        let bad = |why: String| KeyError::Malformed {
            path: path.to_owned(),
            what: "secret",
            why,
        };
        let f: SecretFile = serde_json::from_slice(&text).map_err(|e| {
            if serde_json::from_slice::<PublicFile>(&text).is_ok() {
                wrong_kind(path, "secret")
            } else {
                bad(e.to_string())
            }
        })?;
        if f.kind != SECRET_KIND {
            return Err(bad(format!(
                "kind is {:?}, expected {SECRET_KIND:?}",
                f.kind
            )));
        }
        let seed: [u8; 32] = hex::decode(&f.secret_key)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("secret_key must be 64 hex digits".into()))?;
        let k = Self::from_seed(seed);
        if k.id != f.key_id {
            return Err(bad(format!(
                "key_id {} does not match the key (which is {})",
                f.key_id, k.id
            )));
        }
        Ok(k)
    }

    /// Writes `PREFIX.key` (0600) and `PREFIX.pub`, refusing to overwrite either.
    pub fn write_pair(&self, prefix: &Path) -> Result<(PathBuf, PathBuf), KeyError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let secret_path = with_suffix(prefix, "key");
        let public_path = with_suffix(prefix, "pub");
        for p in [&secret_path, &public_path] {
            if p.exists() {
                return Err(KeyError::Exists(p.clone()));
            }
        }
        if let Some(dir) = prefix.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| KeyError::Write {
                path: dir.to_owned(),
                source,
            })?;
        }
        let secret = SecretFile {
            kind: SECRET_KIND.into(),
            key_id: self.id.clone(),
            secret_key: hex::encode(self.key.to_bytes()),
        };
        let mut bytes = serde_json::to_vec_pretty(&secret).expect("plain struct serialises");
        bytes.push(b'\n');
        // create_new + 0600 from the start: the secret is never readable by others, not even briefly.
        let werr = |source| KeyError::Write {
            path: secret_path.clone(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&secret_path)
            .map_err(werr)?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(|source| KeyError::Write {
                path: secret_path.clone(),
                source,
            })?;
        self.public().write(&public_path)?;
        Ok((secret_path, public_path))
    }
}

fn wrong_kind(path: &Path, wanted: &'static str) -> KeyError {
    KeyError::WrongKind {
        path: path.to_owned(),
        found: if wanted == "secret" {
            "public"
        } else {
            "secret"
        },
        wanted,
    }
}

/// The file of the other kind next to `path` (`keys/a.pub` -> `keys/a.key`), as a hint.
fn sibling(path: &Path, wanted: &str) -> String {
    let ext = if wanted == "secret" { "key" } else { "pub" };
    format!(
        "the .{ext} file, e.g. {}",
        path.with_extension(ext).display()
    )
}

fn with_suffix(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

impl PublicKey {
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, String> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|e| e.to_string())?;
        Ok(PublicKey {
            id: KeyId::of(&key),
            key,
        })
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.key.as_bytes())
    }

    /// `verify_strict`: rejects non-canonical signatures and small-order keys.
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        self.key
            .verify_strict(msg, &Signature::from_bytes(sig))
            .is_ok()
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = crate::fsio::read_file(path, crate::fsio::caps::KEY, "a key file")?;
        let bad = |why: String| KeyError::Malformed {
            path: path.to_owned(),
            what: "public",
            why,
        };
        let f: PublicFile = serde_json::from_slice(&text).map_err(|e| {
            if serde_json::from_slice::<SecretFile>(&text).is_ok() {
                wrong_kind(path, "public")
            } else {
                bad(e.to_string())
            }
        })?;
        if f.kind != PUBLIC_KIND {
            return Err(bad(format!(
                "kind is {:?}, expected {PUBLIC_KIND:?}",
                f.kind
            )));
        }
        let raw: [u8; 32] = hex::decode(&f.public_key)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("public_key must be 64 hex digits".into()))?;
        let k = Self::from_bytes(&raw).map_err(bad)?;
        if k.id != f.key_id {
            return Err(bad(format!(
                "key_id {} does not match the key (which is {})",
                f.key_id, k.id
            )));
        }
        Ok(k)
    }

    pub fn to_file_bytes(&self) -> Vec<u8> {
        let f = PublicFile {
            kind: PUBLIC_KIND.into(),
            key_id: self.id.clone(),
            public_key: self.to_hex(),
        };
        let mut bytes = serde_json::to_vec_pretty(&f).expect("plain struct serialises");
        bytes.push(b'\n');
        bytes
    }

    pub fn write(&self, path: &Path) -> Result<(), KeyError> {
        crate::fsio::write_atomic(path, &self.to_file_bytes(), 0o644).map_err(|source| {
            KeyError::Write {
                path: path.to_owned(),
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_round_trip_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("k/release");
        let k = SecretKey::generate().unwrap();
        let (s, p) = k.write_pair(&prefix).unwrap();
        assert_eq!(
            std::fs::metadata(&s).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let k2 = SecretKey::load(&s).unwrap();
        let pk = PublicKey::load(&p).unwrap();
        assert_eq!(k2.id(), pk.id());
        let sig = k2.sign(b"msg");
        assert!(pk.verify(b"msg", &sig));
        assert!(!pk.verify(b"msh", &sig));
        assert!(matches!(k.write_pair(&prefix), Err(KeyError::Exists(_))));
        // A secret key passed where a public one is expected gets a pointed message.
        let e = PublicKey::load(&s).unwrap_err().to_string();
        assert!(e.contains("secret key"), "{e}");
    }

    #[test]
    fn a_key_of_the_wrong_kind_is_named_with_the_one_to_pass() {
        let dir = tempfile::tempdir().unwrap();
        let (s, p) = SecretKey::from_seed([9; 32])
            .write_pair(&dir.path().join("release"))
            .unwrap();
        let e = SecretKey::load(&p).unwrap_err();
        assert!(
            matches!(
                e,
                KeyError::WrongKind {
                    found: "public",
                    ..
                }
            ),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "{} is a public key, but a secret key is needed here: pass the .key file, e.g. {}",
                p.display(),
                s.display()
            )),
            "{text}"
        );
        let e = PublicKey::load(&s).unwrap_err();
        assert!(
            matches!(
                e,
                KeyError::WrongKind {
                    found: "secret",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e
            .to_string()
            .contains(&format!("pass the .pub file, e.g. {}", p.display())));
    }

    #[test]
    fn tampered_key_id_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let k = SecretKey::from_seed([7; 32]);
        let (s, _) = k.write_pair(&dir.path().join("a")).unwrap();
        let text = std::fs::read_to_string(&s)
            .unwrap()
            .replace(k.id().as_str(), "0000000000000000");
        std::fs::write(&s, text).unwrap();
        assert!(SecretKey::load(&s)
            .unwrap_err()
            .to_string()
            .contains("does not match"));
    }
}
