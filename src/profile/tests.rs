//! Tests of the profile as a whole; each section's own tests live in its file.

use super::*;
use crate::rootfs::ImagePath;

/// A profile directory holding what `BASE` and the section tests name: a kernel `vmlinuz`, a
/// directory `ov` and a file `motd`.
pub(super) struct Fixture {
    pub(super) dir: tempfile::TempDir,
}

impl Fixture {
    pub(super) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vmlinuz"), b"kernel").unwrap();
        std::fs::create_dir(dir.path().join("ov")).unwrap();
        std::fs::write(dir.path().join("motd"), b"hi\n").unwrap();
        Fixture { dir }
    }

    pub(super) fn parse(&self, text: &str) -> Result<Profile, ProfileError> {
        Profile::parse(text, Path::new("p.toml"), self.dir.path(), None)
    }

    pub(super) fn err(&self, text: &str) -> String {
        self.parse(text).unwrap_err().to_string()
    }
}

/// The smallest valid profile; section tests append to it or replace parts of it.
pub(super) const BASE: &str = r#"schema = 1
[image]
name = "hello"
version = "0.1.0"
source-date-epoch = 1700000000
[kernel]
prebuilt = "vmlinuz"
[init]
argv = ["/bin/busybox", "httpd", "-f"]
"#;

#[test]
fn minimal_profile() {
    let f = Fixture::new();
    let p = f.parse(BASE).unwrap();
    assert_eq!(p.image.name, "hello");
    assert_eq!(p.image.hostname, "hello");
    assert_eq!(p.image.source_date_epoch, 1_700_000_000);
    assert_eq!(
        p.kernel.origin,
        KernelOrigin::Prebuilt {
            image: f.dir.path().join("vmlinuz"),
            config: None
        }
    );
    assert_eq!(p.kernel.cmdline, "console=ttyS0");
    assert_eq!(p.init.cwd, ImagePath::root());
    assert!(p.overlays.is_empty());
}

#[test]
fn full_profile() {
    let f = Fixture::new();
    let text = format!(
        r#"{BASE}env = {{ PATH = "/bin" }}
cwd = "/srv"
uid = 1000
gid = 1000
[[overlay]]
path = "ov"
[[file]]
source = "motd"
path = "/etc/motd"
mode = 0o600
[sysctl]
"vm.swappiness" = 10
[sysctl.net.core]
somaxconn = 1024
[zram]
size = "50%"
algorithm = "lz4"
[network]
address = "10.0.2.15/24"
gateway = "10.0.2.2"
"#
    );
    let p = f.parse(&text).unwrap();
    assert_eq!(p.init.uid, 1000);
    assert_eq!(p.overlays[0].name, "ov");
    assert_eq!(p.files[0].mode, Some(0o600));
    assert_eq!(p.sysctl["vm.swappiness"], "10");
    assert_eq!(p.sysctl["net.core.somaxconn"], "1024");
    assert_eq!(p.zram.as_ref().unwrap().size, ZramSize::PercentOfRam(50));
    assert_eq!(p.zram.as_ref().unwrap().priority, 100);
    let n = p.network.unwrap();
    assert_eq!((n.interface.as_str(), n.prefix_len), ("eth0", 24));
}

#[test]
fn unknown_key_names_line_and_key() {
    let f = Fixture::new();
    let e = f.err(&BASE.replace("[init]", "[init]\nbogus = 1"));
    assert!(e.starts_with("p.toml:9:1: "), "{e}");
    assert!(e.contains("unknown field `bogus`"), "{e}");
}

#[test]
fn wrong_type() {
    let f = Fixture::new();
    let e = f.err(&BASE.replace("version = \"0.1.0\"", "version = 3"));
    assert!(e.starts_with("p.toml:4:11: "), "{e}");
    assert!(e.contains("string"), "{e}");
}

#[test]
fn missing_required_field() {
    let f = Fixture::new();
    let e = f.err(&BASE.replace("name = \"hello\"\n", ""));
    assert!(e.contains("missing field `name`"), "{e}");
    assert!(e.starts_with("p.toml:2:"), "{e}");
}

#[test]
fn unsupported_schema() {
    let f = Fixture::new();
    let e = f.err(&BASE.replace("schema = 1", "schema = 2"));
    assert!(e.contains("schema = 2 is not supported"), "{e}");
}

#[test]
fn line_col_counts_from_one() {
    assert_eq!(line_col("ab\ncd", 0), (1, 1));
    assert_eq!(line_col("ab\ncd", 4), (2, 2));
}
