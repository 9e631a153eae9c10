//! The one digest type on the trust boundary: a SHA-256, parsed once from 64 lowercase hex
//! characters and compared as bytes everywhere after (tough's `Decoded<Hex>` is the model).
//!
//! Every digest StratOS stores or compares — artifact entries of the signed manifest, lock
//! entries, channel documents, snapshots, health reports — is a [`Sha256`]. It serialises as the
//! lowercase hex string the documents have always carried, so no stored byte changes; what changes
//! is that a malformed digest (wrong length, not hex, uppercase) is refused where it is read, by
//! one parser with one message, instead of passing one check and failing a later one as "the
//! archive changed".

use std::fmt;
use std::io::Read;
use std::str::FromStr;

use sha2::Digest as _;

/// A SHA-256 digest. `Display` and serde write it as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256([u8; 32]);

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("a sha256 is 64 hex characters, this is {0}")]
    Length(usize),
    #[error("a sha256 is written in lowercase hex (0-9, a-f); character {at} is {found:?}")]
    NotLowercaseHex { at: usize, found: char },
}

impl Sha256 {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Sha256(sha2::Sha256::digest(data).into())
    }

    /// The digest of everything `r` yields, with the number of bytes read.
    pub fn of_reader(mut r: impl Read) -> std::io::Result<(Self, u64)> {
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut n = 0u64;
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    h.update(&buf[..k]);
                    n += k as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok((Sha256(h.finalize().into()), n))
    }

    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Sha256(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 lowercase hex characters; anything else is an error saying what is wrong.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        if s.len() != 64 {
            return Err(DigestError::Length(s.chars().count()));
        }
        let mut out = [0u8; 32];
        for (i, c) in s.chars().enumerate() {
            let v = match c {
                '0'..='9' => c as u8 - b'0',
                'a'..='f' => c as u8 - b'a' + 10,
                _ => {
                    return Err(DigestError::NotLowercaseHex {
                        at: i + 1,
                        found: c,
                    })
                }
            };
            out[i / 2] |= if i % 2 == 0 { v << 4 } else { v };
        }
        Ok(Sha256(out))
    }

    /// Whether `s` is a well-formed digest (64 lowercase hex characters).
    pub fn is_valid(s: &str) -> bool {
        Self::parse(s).is_ok()
    }

    /// The lowercase hex form.
    pub fn hex(&self) -> String {
        self.to_string()
    }

    /// The first `n` hex characters, for short names (cache keys, log lines).
    pub fn short(&self, n: usize) -> String {
        let mut s = self.hex();
        s.truncate(n);
        s
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

impl FromStr for Sha256 {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl PartialEq<str> for Sha256 {
    fn eq(&self, other: &str) -> bool {
        Sha256::parse(other).is_ok_and(|o| o == *self)
    }
}

impl PartialEq<&str> for Sha256 {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialEq<String> for Sha256 {
    fn eq(&self, other: &String) -> bool {
        *self == *other.as_str()
    }
}

impl serde::Serialize for Sha256 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Sha256 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Sha256::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn known_digest_round_trips_through_text_and_serde() {
        let d = Sha256::of(b"");
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(Sha256::parse(EMPTY), Ok(d));
        assert_eq!(d, EMPTY);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{EMPTY}\""));
        assert_eq!(serde_json::from_str::<Sha256>(&json).unwrap(), d);
        assert_eq!(
            Sha256::of_reader(&b"abc"[..]).unwrap(),
            (Sha256::of(b"abc"), 3)
        );
        assert_eq!(d.short(12), &EMPTY[..12]);
    }

    #[test]
    fn uppercase_short_long_and_non_hex_are_refused_by_name() {
        let upper = EMPTY.to_uppercase();
        assert_eq!(
            Sha256::parse(&upper),
            Err(DigestError::NotLowercaseHex { at: 1, found: 'E' })
        );
        assert_eq!(Sha256::parse(&EMPTY[..63]), Err(DigestError::Length(63)));
        assert_eq!(
            Sha256::parse(&format!("{EMPTY}0")),
            Err(DigestError::Length(65))
        );
        let mut bad = EMPTY.to_string();
        bad.replace_range(10..11, "g");
        assert_eq!(
            Sha256::parse(&bad),
            Err(DigestError::NotLowercaseHex { at: 11, found: 'g' })
        );
        // Multi-byte characters: counted as characters, never sliced mid-character.
        assert_eq!(
            Sha256::parse(&"é".repeat(32)),
            Err(DigestError::NotLowercaseHex { at: 1, found: 'é' })
        );
        assert_eq!(Sha256::parse(&"é".repeat(33)), Err(DigestError::Length(33)));
        let e = serde_json::from_str::<Sha256>(&format!("\"{upper}\"")).unwrap_err();
        assert!(e.to_string().contains("lowercase hex"), "{e}");
    }
}
