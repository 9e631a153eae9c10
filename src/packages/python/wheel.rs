//! Installing a wheel into the image's `dist-packages` without running any of its code: every
//! member checked against the wheel's `RECORD`, nothing outside the install scheme.

use std::collections::{BTreeMap, BTreeSet};

use super::metadata::{license_of, metadata_headers, parse_record, record_digest, RecordHash};
use super::platform::WheelName;
use super::pypi::Fetched;
use super::requirements::{normalize, Requirement};
use super::zip::{Member, Zip};
use super::PypiError;
use crate::rootfs::{Budget, Entry, ImagePath, Origin, Tree};
use crate::sbom::{prop, ComponentSpec};

/// Where a wheel's parts go in the image (Debian's scheme for locally installed packages).
pub struct Scheme {
    pub site: ImagePath,
    pub scripts: ImagePath,
    pub data: ImagePath,
    pub headers: ImagePath,
    /// The interpreter `#!python` scripts are pointed at.
    pub interpreter: String,
}

impl Scheme {
    pub fn debian_local(python: (u32, u32), interpreter: &str) -> Scheme {
        let (a, b) = python;
        let p = |s: &str| ImagePath::parse(s).expect("static path");
        Scheme {
            site: p(&format!("/usr/local/lib/python{a}.{b}/dist-packages")),
            scripts: p("/usr/local/bin"),
            data: p("/usr/local"),
            headers: p(&format!("/usr/local/include/python{a}.{b}")),
            interpreter: interpreter.to_owned(),
        }
    }
}

/// What installing a wheel put in the tree.
pub struct Installed {
    pub files: usize,
    pub bytes: u64,
    /// Compiled extension modules and libraries (checked for their system libraries).
    pub native: Vec<ImagePath>,
    pub license: Option<String>,
    pub summary: Option<String>,
}

/// Joins a wheel member's relative name under `base`, refusing anything that could leave it
/// (a wheel lists files only: empty and `.` components are malformed too).
fn safe_join(base: &ImagePath, rel: &str) -> Result<ImagePath, String> {
    crate::packages::unpack::join_under(base, rel, true, "the install scheme")
}

/// Unpacks a wheel into `tree` under `scheme`: the `.dist-info` must be the requirement's,
/// every member must be in `RECORD` with a matching hash and every hashed row must be a member;
/// `.data/` directories go to their scheme paths; no code runs.
pub fn install(
    r: &Requirement,
    wheel: &Fetched,
    scheme: &Scheme,
    tree: &mut Tree,
    origin: &Origin,
    budget: Budget,
) -> Result<Installed, PypiError> {
    let bad = |why: String| wheel_error(r, wheel, why);
    let wname =
        WheelName::parse(&wheel.file_name).ok_or_else(|| bad("not a wheel file name".into()))?;
    if normalize(&wname.dist) != r.normalized() || wname.version != r.version {
        return Err(bad(format!(
            "the file is for {} {}",
            wname.dist, wname.version
        )));
    }
    let zip = Zip::open(&wheel.bytes, &wheel.file_name)?;
    let w = Unpacking::new(r, wheel, scheme, zip)?;
    let record = parse_record(&w.read_text(&w.record_name())?).map_err(&bad)?;
    let metadata = w.read_text(&format!("{}/METADATA", w.info))?;
    let mut listed: BTreeSet<&str> = record
        .iter()
        .filter(|(_, h)| h.is_some())
        .map(|(p, _)| p.as_str())
        .collect();
    let mut out = Installed {
        files: 0,
        bytes: 0,
        native: Vec::new(),
        license: license_of(&metadata),
        summary: metadata_headers(&metadata)
            .into_iter()
            .find(|(k, _)| k == "summary")
            .map(|(_, v)| v),
    };
    for m in w.zip.members.iter().filter(|m| !m.is_dir) {
        let dest = w.destination(m)?;
        let (cap, key) = member_cap(budget, out.bytes);
        let data = w.zip.read(m, cap, key)?;
        if w.is_hashed(m) {
            check_record(&record, m, &data).map_err(&bad)?;
            listed.remove(m.name.as_str());
        }
        let (data, mode) = w.script_fixed(m, data);
        if data.starts_with(b"\x7fELF") {
            out.native.push(dest.clone());
        }
        out.bytes += data.len() as u64;
        out.files += 1;
        tree.insert(&dest, Entry::file(data, mode, origin))
            .map_err(|e| bad(e.to_string()))?;
    }
    let record_name = w.record_name();
    if let Some(missing) = listed.iter().find(|p| **p != record_name) {
        return Err(bad(format!(
            "RECORD lists {missing:?}, which the wheel does not hold"
        )));
    }
    // Installed by us, not by pip: tools that ask (pip list, importlib.metadata) see that.
    let installer = safe_join(&scheme.site, &format!("{}/INSTALLER", w.info)).map_err(&bad)?;
    tree.insert(
        &installer,
        Entry::file(b"stratos\n".to_vec(), 0o644, origin),
    )
    .map_err(|e| bad(e.to_string()))?;
    Ok(out)
}

fn wheel_error(r: &Requirement, wheel: &Fetched, why: String) -> PypiError {
    PypiError::Wheel {
        name: r.name.clone(),
        version: r.version.clone(),
        why: format!("{}: {why}", wheel.file_name),
    }
}

/// A wheel being installed: its archive and its one `.dist-info` directory.
struct Unpacking<'a> {
    r: &'a Requirement,
    wheel: &'a Fetched,
    scheme: &'a Scheme,
    zip: Zip<'a>,
    /// `NAME-VERSION.dist-info`.
    info: String,
    /// `NAME-VERSION.data/`.
    data_dir: String,
}

impl<'a> Unpacking<'a> {
    /// Finds the `.dist-info` directory (exactly one, for this distribution and version) and
    /// checks the wheel format version its `WHEEL` file names.
    fn new(
        r: &'a Requirement,
        wheel: &'a Fetched,
        scheme: &'a Scheme,
        zip: Zip<'a>,
    ) -> Result<Self, PypiError> {
        let bad = |why: String| wheel_error(r, wheel, why);
        let infos: BTreeSet<&str> = zip
            .members
            .iter()
            .filter_map(|m| m.name.split('/').next())
            .filter(|top| top.ends_with(".dist-info"))
            .collect();
        let info = match infos.iter().collect::<Vec<_>>().as_slice() {
            [one] => (**one).to_owned(),
            _ => {
                return Err(bad(format!(
                    "expected one .dist-info directory, found {infos:?}"
                )))
            }
        };
        let info_stem = info.trim_end_matches(".dist-info");
        let (idist, iver) = info_stem
            .rsplit_once('-')
            .ok_or_else(|| bad(format!("{info}: not NAME-VERSION.dist-info")))?;
        if normalize(idist) != r.normalized() || iver != r.version {
            return Err(bad(format!("{info} is not {} {}", r.name, r.version)));
        }
        let data_dir = format!("{info_stem}.data/");
        let w = Unpacking {
            r,
            wheel,
            scheme,
            zip,
            info,
            data_dir,
        };
        let wheel_meta = w.read_text(&format!("{}/WHEEL", w.info))?;
        let wv = metadata_headers(&wheel_meta)
            .into_iter()
            .find(|(k, _)| k == "wheel-version")
            .map(|(_, v)| v)
            .ok_or_else(|| bad("WHEEL names no Wheel-Version".into()))?;
        if !wv.starts_with("1.") {
            return Err(bad(format!(
                "Wheel-Version {wv}: only version 1 wheels are understood"
            )));
        }
        Ok(w)
    }

    fn bad(&self, why: String) -> PypiError {
        wheel_error(self.r, self.wheel, why)
    }

    fn record_name(&self) -> String {
        format!("{}/RECORD", self.info)
    }

    /// A metadata member as text (at most 16 MiB).
    fn read_text(&self, name: &str) -> Result<String, PypiError> {
        let m = self
            .zip
            .members
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| self.bad(format!("no {name}")))?;
        let bytes = self
            .zip
            .read(m, 16 << 20, "the 16 MiB cap on wheel metadata")?;
        String::from_utf8(bytes).map_err(|_| self.bad(format!("{name} is not UTF-8")))
    }

    /// Whether RECORD must hash the member: all but RECORD itself and its signatures.
    fn is_hashed(&self, m: &Member) -> bool {
        let info = &self.info;
        m.name != self.record_name()
            && m.name != format!("{info}/RECORD.jws")
            && m.name != format!("{info}/RECORD.p7s")
    }

    /// Where a member goes: the scheme path for `.data/` members, the site directory for the
    /// rest.
    fn destination(&self, m: &Member) -> Result<ImagePath, PypiError> {
        let scheme = self.scheme;
        match m.name.strip_prefix(&self.data_dir) {
            Some(rest) => {
                let (key, rel) = rest.split_once('/').ok_or_else(|| {
                    self.bad(format!(
                        "{:?}: a file directly in {}",
                        m.name, self.data_dir
                    ))
                })?;
                let base = match key {
                    "purelib" | "platlib" => scheme.site.clone(),
                    "scripts" => scheme.scripts.clone(),
                    "data" => scheme.data.clone(),
                    "headers" => scheme
                        .headers
                        .join(&normalize(&self.r.name))
                        .map_err(|e| self.bad(e.to_string()))?,
                    other => {
                        return Err(
                            self.bad(format!("{:?}: unknown scheme directory {other:?}", m.name))
                        )
                    }
                };
                safe_join(&base, rel)
            }
            None => safe_join(&scheme.site, &m.name),
        }
        .map_err(|why| self.bad(format!("refusing member {:?}: {why}", m.name)))
    }

    /// The member's mode, and for a script its `#!python` pointed at the image's interpreter
    /// (what the line means: "the interpreter this is installed for").
    fn script_fixed(&self, m: &Member, mut data: Vec<u8>) -> (Vec<u8>, u32) {
        let mut mode = if m.mode & 0o111 != 0 { 0o755 } else { 0o644 };
        if m.name.starts_with(&format!("{}scripts/", self.data_dir)) {
            mode = 0o755;
            if let Some(rest) = data.strip_prefix(b"#!python") {
                let nl = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
                let mut fixed = format!("#!{}", self.scheme.interpreter).into_bytes();
                fixed.extend_from_slice(&rest[nl..]);
                data = fixed;
            }
        }
        (data, mode)
    }
}

/// The most a member may inflate to, and the profile key that sets it: the file cap, what is
/// left of the package's, or what is left of the image's, whichever is least.
fn member_cap(budget: Budget, installed: u64) -> (u64, &'static str) {
    let limits = budget.limits;
    let budget_left = limits.package.saturating_sub(installed);
    let image_left = limits.image.saturating_sub(budget.image_used + installed);
    if limits.file <= budget_left.min(image_left) {
        (limits.file, "[image] max-file-size")
    } else if budget_left <= image_left {
        (budget_left, "[image] max-package-size")
    } else {
        (image_left, "[image] max-image-size")
    }
}

/// The member's bytes against its `RECORD` row: listed with a hash, and that hash and size.
fn check_record(
    record: &BTreeMap<String, Option<RecordHash>>,
    m: &Member,
    data: &[u8],
) -> Result<(), String> {
    let Some(Some((algo, digest, size))) = record.get(&m.name) else {
        return Err(format!(
            "{:?} is not in RECORD with a hash: a file was added after the wheel was built",
            m.name
        ));
    };
    let actual = record_digest(algo, data).ok_or_else(|| {
        format!(
            "RECORD hashes {:?} with {algo}; sha256, sha384 or sha512 are checked",
            m.name
        )
    })?;
    if &actual != digest || size.is_some_and(|s| s != data.len() as u64) {
        return Err(format!(
            "{:?} does not match its RECORD entry ({algo}={digest}, {} bytes): the wheel was altered after it was built",
            m.name,
            size.map_or("no size".into(), |s| s.to_string())
        ));
    }
    Ok(())
}

/// The SBOM component of an installed wheel.
pub fn component(r: &Requirement, w: &Fetched, inst: &Installed, purl: &str) -> ComponentSpec {
    ComponentSpec {
        bom_ref: purl.to_owned(),
        classification: "library",
        name: r.normalized(),
        version: r.version.clone(),
        description: Some(match &inst.summary {
            Some(s) => format!("Python wheel {} ({s})", w.file_name),
            None => format!("Python wheel {}", w.file_name),
        }),
        purl: Some(purl.to_owned()),
        license: inst.license.clone(),
        sha256: w.sha256.to_string(),
        files: Vec::new(),
        properties: vec![
            (prop::ORIGIN.into(), "python-wheel".into()),
            (prop::BYTES_INSTALLED.into(), inst.bytes.to_string()),
            ("stratos:wheel".into(), w.file_name.clone()),
        ],
        depends_on: Vec::new(),
    }
}

/// `pkg:pypi/NAME@VERSION`, the name in PEP 503 form (the purl spec's rule for PyPI).
pub fn purl(r: &Requirement) -> String {
    format!("pkg:pypi/{}@{}", r.normalized(), r.version)
}
