//! The build information Go 1.18+ writes into every binary (the `.go.buildinfo` section, read
//! as `go version -m` reads it, without running `go`): the toolchain's version and the module
//! lines (`path`, `mod`, `dep`, `=>`, `build`). Only the inline-string form (Go ≥ 1.18) is
//! read; every length is checked against the section before it is used.

/// What a Go binary says it was built from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildInfo {
    /// `go1.19.8`.
    pub go_version: String,
    /// The main package's import path.
    pub path: String,
    /// The main module's path.
    pub main: String,
    /// The modules linked in, after replacements: path, version, `h1:` (when recorded).
    pub deps: Vec<Dep>,
    /// `build` settings: key, value.
    pub settings: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    pub path: String,
    pub version: String,
    pub sum: Option<String>,
    /// The module it replaces, when it came from a `replace`.
    pub replaces: Option<String>,
}

const MAGIC: &[u8] = b"\xff Go buildinf:";

/// Reads the build information of the ELF `binary`.
pub fn read(binary: &[u8]) -> Result<BuildInfo, String> {
    let elf = goblin::elf::Elf::parse(binary).map_err(|e| format!("not an ELF file: {e}"))?;
    let section = elf
        .section_headers
        .iter()
        .find(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(".go.buildinfo"))
        .ok_or("no .go.buildinfo section: not a Go binary (or built by Go before 1.18)")?;
    let start = usize::try_from(section.sh_offset).map_err(|_| "section offset")?;
    let len = usize::try_from(section.sh_size).map_err(|_| "section size")?;
    let data = binary
        .get(start..start.saturating_add(len))
        .ok_or(".go.buildinfo lies past the end of the file")?;
    parse_section(data)
}

/// The section's bytes: the 32-byte header, then two length-prefixed strings.
pub fn parse_section(data: &[u8]) -> Result<BuildInfo, String> {
    if data.len() < 32 || !data.starts_with(MAGIC) {
        return Err(".go.buildinfo has no Go build-info header".into());
    }
    if data[15] & 2 == 0 {
        return Err("the build information is not inline (a Go before 1.18 built this)".into());
    }
    let mut rest = &data[32..];
    let version = string(&mut rest)?;
    let modinfo = string(&mut rest)?;
    let mut info = BuildInfo {
        go_version: String::from_utf8_lossy(version).into_owned(),
        ..BuildInfo::default()
    };
    // Sixteen sentinel bytes on each side of the text.
    let text = if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        modinfo
    };
    let text = std::str::from_utf8(text).map_err(|_| "the module information is not UTF-8")?;
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["path", p, ..] => info.path = (*p).to_owned(),
            ["mod", p, ..] => info.main = (*p).to_owned(),
            ["dep", p, v, rest @ ..] => info.deps.push(Dep {
                path: (*p).to_owned(),
                version: (*v).to_owned(),
                sum: rest
                    .first()
                    .filter(|s| !s.is_empty())
                    .map(|s| (*s).to_owned()),
                replaces: None,
            }),
            ["=>", p, v, rest @ ..] => {
                let Some(last) = info.deps.last_mut() else {
                    return Err("a replacement line before any dep line".into());
                };
                last.replaces = Some(std::mem::take(&mut last.path));
                last.path = (*p).to_owned();
                last.version = (*v).to_owned();
                last.sum = rest
                    .first()
                    .filter(|s| !s.is_empty())
                    .map(|s| (*s).to_owned());
            }
            ["build", kv, ..] => {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                info.settings.push((k.to_owned(), v.to_owned()));
            }
            _ => {}
        }
    }
    Ok(info)
}

/// A uvarint length, then that many bytes (checked against what is there).
fn string<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let mut n: u64 = 0;
    let mut shift = 0;
    let mut used = 0;
    loop {
        let b = *rest.get(used).ok_or("build information cut short")?;
        used += 1;
        if shift > 63 {
            return Err("an over-long length in the build information".into());
        }
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let n = usize::try_from(n).map_err(|_| "length")?;
    let body = rest
        .get(used..used.checked_add(n).ok_or("length")?)
        .ok_or("a length past the end of the build information")?;
    *rest = &rest[used + n..];
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(version: &str, modinfo: &str) -> Vec<u8> {
        let mut d = MAGIC.to_vec();
        d.push(8);
        d.push(2);
        d.resize(32, 0);
        for s in [version.as_bytes().to_vec(), {
            let mut m = vec![0x30; 16];
            m.extend_from_slice(modinfo.as_bytes());
            m.extend_from_slice(&[0x31; 16]);
            m
        }] {
            let mut n = s.len();
            loop {
                let b = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 {
                    d.push(b);
                    break;
                }
                d.push(b | 0x80);
            }
            d.extend_from_slice(&s);
        }
        d
    }

    #[test]
    fn module_lines_and_replacements() {
        let d = section(
            "go1.19.8",
            "path\texample.com/api\nmod\texample.com/api\t(devel)\t\ndep\texample.com/greet\tv1.0.0\th1:abc=\ndep\texample.com/old\tv1.2.0\n=>\texample.com/new\tv1.3.0\th1:def=\nbuild\t-trimpath=true\nbuild\tCGO_ENABLED=0\n",
        );
        let i = parse_section(&d).unwrap();
        assert_eq!(i.go_version, "go1.19.8");
        assert_eq!(i.path, "example.com/api");
        assert_eq!(i.deps.len(), 2);
        assert_eq!(i.deps[0].sum.as_deref(), Some("h1:abc="));
        assert_eq!(i.deps[1].path, "example.com/new");
        assert_eq!(i.deps[1].replaces.as_deref(), Some("example.com/old"));
        assert!(i.settings.contains(&("CGO_ENABLED".into(), "0".into())));
    }

    #[test]
    fn lengths_past_the_section_are_refused() {
        let mut d = section("go1.19.8", "path\tx\n");
        d.truncate(40);
        assert!(parse_section(&d).is_err());
        let mut d = MAGIC.to_vec();
        d.extend_from_slice(&[8, 2]);
        d.resize(32, 0);
        d.extend_from_slice(&[0xff; 12]);
        assert!(parse_section(&d).is_err());
        assert!(read(b"\x7fELF junk").is_err());
    }
}
