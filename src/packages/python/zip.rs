//! A strict reader of ZIP archives (what a Python wheel is): the central directory, stored and
//! deflated members, CRC-checked. Every size in the archive is checked against the bytes that
//! are there and against the caller's caps before anything is allocated or inflated; what a
//! wheel never needs (encryption, ZIP64, spanning, links) is refused rather than guessed at.

use std::io::Read;

/// Why an archive was refused; `what` names the archive.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZipError {
    #[error("{what}: not a readable ZIP archive: {why}")]
    Format { what: String, why: String },
    #[error("{what}: member {member:?}: {why}")]
    Member {
        what: String,
        member: String,
        why: String,
    },
    #[error("{what}: member {member:?} inflates past {limit} bytes ({key}); if it is genuine, raise {key} in the profile")]
    TooLarge {
        what: String,
        member: String,
        limit: u64,
        key: &'static str,
    },
}

/// One member, as the central directory describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// Unix permission bits when the archive records them (made on Unix), else 0.
    pub mode: u32,
    pub is_dir: bool,
    method: u16,
    crc: u32,
    compressed: u64,
    size: u64,
    /// Where the member's data starts (after its local header).
    data_at: usize,
}

impl Member {
    /// The size the archive claims (checked against the data when read).
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// A ZIP archive over borrowed bytes.
pub struct Zip<'a> {
    bytes: &'a [u8],
    what: String,
    pub members: Vec<Member>,
}

const EOCD_SIG: u32 = 0x0605_4b50;
const CDH_SIG: u32 = 0x0201_4b50;
const LFH_SIG: u32 = 0x0403_4b50;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> Zip<'a> {
    /// Reads the central directory. `what` names the archive in errors.
    pub fn open(bytes: &'a [u8], what: &str) -> Result<Self, ZipError> {
        let dir = Directory::find(bytes).map_err(|why| format_error(what, why))?;
        let cd = &bytes[dir.at..dir.at + dir.size];
        let mut members = Vec::with_capacity(dir.count);
        let mut names = std::collections::BTreeSet::new();
        let mut at = 0usize;
        for _ in 0..dir.count {
            let h = CentralHeader::parse(cd, at, what)?;
            at += h.len;
            members.push(h.member(bytes, dir.at, &mut names, what)?);
        }
        Ok(Zip {
            bytes,
            what: what.to_owned(),
            members,
        })
    }
    /// A member's contents: inflated at most to `cap` bytes (`key` is the profile setting that
    /// raises it), then checked against the size and CRC-32 the directory recorded.
    pub fn read(&self, m: &Member, cap: u64, key: &'static str) -> Result<Vec<u8>, ZipError> {
        let err = |why: String| ZipError::Member {
            what: self.what.clone(),
            member: m.name.clone(),
            why,
        };
        if m.size > cap {
            return Err(ZipError::TooLarge {
                what: self.what.clone(),
                member: m.name.clone(),
                limit: cap,
                key,
            });
        }
        let raw = &self.bytes[m.data_at..m.data_at + m.compressed as usize];
        let mut out = Vec::new();
        if m.method == 0 {
            out.extend_from_slice(raw);
        } else {
            // Never more than the claimed size plus one byte: a member that inflates past what
            // it claims is refused without inflating the rest.
            flate2::read::DeflateDecoder::new(raw)
                .take(m.size + 1)
                .read_to_end(&mut out)
                .map_err(|e| err(format!("does not inflate: {e}")))?;
        }
        if out.len() as u64 != m.size {
            return Err(err(format!(
                "holds {}{} bytes but the directory says {}",
                out.len(),
                if out.len() as u64 > m.size { "+" } else { "" },
                m.size
            )));
        }
        let mut crc = flate2::Crc::new();
        crc.update(&out);
        if crc.sum() != m.crc {
            return Err(err(
                "its CRC-32 does not match: the archive is damaged".into()
            ));
        }
        Ok(out)
    }
}

fn format_error(what: &str, why: &str) -> ZipError {
    ZipError::Format {
        what: what.to_owned(),
        why: why.to_owned(),
    }
}

/// Where the central directory is, as the end-of-central-directory record says.
struct Directory {
    count: usize,
    size: usize,
    at: usize,
}

impl Directory {
    /// The end-of-central-directory record: 22 bytes plus a comment of at most 64 KiB, at the
    /// very end; a single-disk, non-ZIP64 archive whose directory lies before it.
    fn find(bytes: &[u8]) -> Result<Directory, &'static str> {
        if bytes.len() < 22 {
            return Err("shorter than an end-of-central-directory record");
        }
        let lowest = bytes.len().saturating_sub(22 + 0xffff);
        let eocd = (lowest..=bytes.len() - 22)
            .rev()
            .find(|&i| {
                u32_at(bytes, i) == Some(EOCD_SIG)
                    && u16_at(bytes, i + 20).map(|c| i + 22 + c as usize) == Some(bytes.len())
            })
            .ok_or("no end-of-central-directory record")?;
        let field = |off: usize| u16_at(bytes, eocd + off).unwrap_or(0);
        if field(4) != 0 || field(6) != 0 {
            return Err("a multi-disk (spanned) archive");
        }
        let count = field(10) as usize;
        let size = u32_at(bytes, eocd + 12).unwrap_or(0) as usize;
        let at = u32_at(bytes, eocd + 16).unwrap_or(0) as usize;
        if count == 0xffff || size == 0xffff_ffff || at == 0xffff_ffff {
            return Err("a ZIP64 archive (wheels never need one)");
        }
        if field(8) as usize != count {
            return Err("inconsistent member counts");
        }
        if at.checked_add(size).map_or(true, |end| end > eocd) {
            return Err("the central directory lies outside the archive");
        }
        // Each central header is at least 46 bytes: a count beyond that is a lie.
        if count > size / 46 {
            return Err("more members claimed than the central directory holds");
        }
        Ok(Directory { count, size, at })
    }
}

/// One central directory header, as read.
struct CentralHeader<'b> {
    made_by: u16,
    flags: u16,
    method: u16,
    crc: u32,
    compressed: u64,
    size: u64,
    external: u32,
    local: usize,
    name_bytes: &'b [u8],
    name: String,
    /// The header's length in the directory.
    len: usize,
}

impl<'b> CentralHeader<'b> {
    fn parse(cd: &'b [u8], at: usize, what: &str) -> Result<Self, ZipError> {
        let bad = |why: &str| format_error(what, why);
        if u32_at(cd, at) != Some(CDH_SIG) {
            return Err(bad("a damaged central directory"));
        }
        let h = |off: usize| u16_at(cd, at + off).ok_or_else(|| bad("truncated header"));
        let w = |off: usize| u32_at(cd, at + off).ok_or_else(|| bad("truncated header"));
        let made_by = h(4)? >> 8;
        let flags = h(8)?;
        let method = h(10)?;
        let crc = w(16)?;
        let compressed = w(20)? as u64;
        let size = w(24)? as u64;
        let (name_len, extra_len, comment_len) =
            (h(28)? as usize, h(30)? as usize, h(32)? as usize);
        let external = w(38)?;
        let local = w(42)? as usize;
        let name_bytes = cd
            .get(at + 46..at + 46 + name_len)
            .ok_or_else(|| bad("truncated member name"))?;
        let name = String::from_utf8(name_bytes.to_vec()).map_err(|_| ZipError::Member {
            what: what.to_owned(),
            member: String::from_utf8_lossy(name_bytes).into_owned(),
            why: "the name is not UTF-8".into(),
        })?;
        Ok(CentralHeader {
            made_by,
            flags,
            method,
            crc,
            compressed,
            size,
            external,
            local,
            name_bytes,
            name,
            len: 46 + name_len + extra_len + comment_len,
        })
    }

    /// The member the header describes, checked: not encrypted, stored or deflated, a file or
    /// a directory, named once, with a local header naming it and data inside the archive.
    fn member(
        self,
        bytes: &[u8],
        cd_at: usize,
        names: &mut std::collections::BTreeSet<String>,
        what: &str,
    ) -> Result<Member, ZipError> {
        let member_err = |why: &str| ZipError::Member {
            what: what.to_owned(),
            member: self.name.clone(),
            why: why.to_owned(),
        };
        let (method, compressed, size) = (self.method, self.compressed, self.size);
        if self.flags & 1 != 0 {
            return Err(member_err("encrypted"));
        }
        if method != 0 && method != 8 {
            return Err(member_err(&format!(
                "compression method {method} (only stored and deflate are read)"
            )));
        }
        if compressed == 0xffff_ffff || size == 0xffff_ffff {
            return Err(member_err("ZIP64 sizes"));
        }
        let unix = self.made_by == 3;
        let mode = if unix { self.external >> 16 } else { 0 };
        let file_type = mode & 0o170000;
        if unix && file_type != 0 && file_type != 0o100000 && file_type != 0o040000 {
            return Err(member_err(if file_type == 0o120000 {
                "a symbolic link (a wheel holds only files)"
            } else {
                "neither a file nor a directory"
            }));
        }
        if !names.insert(self.name.clone()) {
            return Err(member_err("appears twice"));
        }
        // The local header repeats the name and may carry its own extra field.
        let local = self.local;
        if u32_at(bytes, local) != Some(LFH_SIG) || local >= cd_at {
            return Err(member_err("no local header where the directory points"));
        }
        let lname = u16_at(bytes, local + 26).unwrap_or(0) as usize;
        let lextra = u16_at(bytes, local + 28).unwrap_or(0) as usize;
        let data_at = local + 30 + lname + lextra;
        if bytes.get(local + 30..local + 30 + lname) != Some(self.name_bytes) {
            return Err(member_err("the local header names another member"));
        }
        if (data_at as u64)
            .checked_add(compressed)
            .map_or(true, |end| end > cd_at as u64)
        {
            return Err(member_err("its data runs past the archive"));
        }
        if method == 0 && compressed != size {
            return Err(member_err("a stored member whose sizes disagree"));
        }
        Ok(Member {
            is_dir: self.name.ends_with('/'),
            name: self.name,
            mode: mode & 0o7777,
            method,
            crc: self.crc,
            compressed,
            size,
            data_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ZIP writer for the tests: stored or deflated members with Unix modes.
    pub(crate) fn build(members: &[(&str, &[u8], u32, bool)]) -> Vec<u8> {
        use std::io::Write;
        let mut out = Vec::new();
        let mut cd = Vec::new();
        for (name, data, mode, deflate) in members {
            let mut crc = flate2::Crc::new();
            crc.update(data);
            let body = if *deflate {
                let mut e =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            } else {
                data.to_vec()
            };
            let local = out.len() as u32;
            let method: u16 = if *deflate { 8 } else { 0 };
            out.extend_from_slice(&LFH_SIG.to_le_bytes());
            out.extend_from_slice(&[20, 0, 0, 0]);
            out.extend_from_slice(&method.to_le_bytes());
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&crc.sum().to_le_bytes());
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&body);
            cd.extend_from_slice(&CDH_SIG.to_le_bytes());
            cd.extend_from_slice(&[20, 3, 20, 0, 0, 0]);
            cd.extend_from_slice(&method.to_le_bytes());
            cd.extend_from_slice(&[0; 4]);
            cd.extend_from_slice(&crc.sum().to_le_bytes());
            cd.extend_from_slice(&(body.len() as u32).to_le_bytes());
            cd.extend_from_slice(&(data.len() as u32).to_le_bytes());
            cd.extend_from_slice(&(name.len() as u16).to_le_bytes());
            cd.extend_from_slice(&[0; 8]);
            cd.extend_from_slice(&(mode << 16).to_le_bytes());
            cd.extend_from_slice(&local.to_le_bytes());
            cd.extend_from_slice(name.as_bytes());
        }
        let cd_at = out.len() as u32;
        out.extend_from_slice(&cd);
        out.extend_from_slice(&EOCD_SIG.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(members.len() as u16).to_le_bytes());
        out.extend_from_slice(&(members.len() as u16).to_le_bytes());
        out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_at.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    #[test]
    fn reads_stored_and_deflated_members() {
        let z = build(&[
            ("a.txt", b"hello", 0o100644, false),
            ("b/c.py", &[b'x'; 5000], 0o100755, true),
        ]);
        let zip = Zip::open(&z, "t.whl").unwrap();
        assert_eq!(zip.members.len(), 2);
        assert_eq!(zip.members[1].mode, 0o755);
        assert_eq!(zip.read(&zip.members[0], 100, "k").unwrap(), b"hello");
        assert_eq!(zip.read(&zip.members[1], 5000, "k").unwrap().len(), 5000);
        let e = zip.read(&zip.members[1], 4999, "k").unwrap_err();
        assert!(matches!(e, ZipError::TooLarge { .. }), "{e}");
    }

    #[test]
    fn a_member_that_inflates_past_its_claimed_size_is_refused() {
        let mut z = build(&[("bomb", &[0u8; 100_000], 0o100644, true)]);
        // Claim 10 bytes in both headers.
        let n = z.len();
        let cd_at = u32::from_le_bytes(z[n - 6..n - 2].try_into().unwrap()) as usize;
        z[cd_at + 24..cd_at + 28].copy_from_slice(&10u32.to_le_bytes());
        z[22..26].copy_from_slice(&10u32.to_le_bytes());
        let zip = Zip::open(&z, "t.whl").unwrap();
        let e = zip.read(&zip.members[0], 1 << 30, "k").unwrap_err();
        assert!(e.to_string().contains("holds 11+ bytes"), "{e}");
    }

    #[test]
    fn hostile_archives_are_refused() {
        let link = build(&[("evil", b"/etc/passwd", 0o120777, false)]);
        let e = Zip::open(&link, "t.whl").err().unwrap();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let dup = build(&[("a", b"1", 0o100644, false), ("a", b"2", 0o100644, false)]);
        assert!(Zip::open(&dup, "t.whl")
            .err()
            .unwrap()
            .to_string()
            .contains("appears twice"));
        let mut crc = build(&[("a", b"hello", 0o100644, false)]);
        crc[30 + 1] ^= 1;
        let zip = Zip::open(&crc, "t.whl").unwrap();
        assert!(zip
            .read(&zip.members[0], 10, "k")
            .unwrap_err()
            .to_string()
            .contains("CRC"));
        for junk in [&b""[..], b"PK\x05\x06", &[0u8; 100]] {
            assert!(Zip::open(junk, "t.whl").is_err());
        }
    }

    #[test]
    fn truncations_and_bit_flips_never_panic() {
        let z = build(&[
            ("a.txt", b"hello", 0o100644, false),
            ("b/c.py", &[b'x'; 300], 0o100755, true),
        ]);
        for cut in 0..z.len() {
            if let Ok(zip) = Zip::open(&z[..cut], "t") {
                for m in &zip.members {
                    let _ = zip.read(m, 1 << 20, "k");
                }
            }
        }
        for i in 0..z.len() {
            for bit in [1u8, 0x80] {
                let mut b = z.clone();
                b[i] ^= bit;
                if let Ok(zip) = Zip::open(&b, "t") {
                    for m in &zip.members {
                        let _ = zip.read(m, 1 << 20, "k");
                    }
                }
            }
        }
    }
}
