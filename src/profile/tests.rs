use super::*;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vmlinuz"), b"kernel").unwrap();
        std::fs::create_dir(dir.path().join("ov")).unwrap();
        std::fs::write(dir.path().join("motd"), b"hi\n").unwrap();
        Fixture { dir }
    }

    fn parse(&self, text: &str) -> Result<Profile, ProfileError> {
        Profile::parse(text, Path::new("p.toml"), self.dir.path(), None)
    }

    fn err(&self, text: &str) -> String {
        self.parse(text).unwrap_err().to_string()
    }
}

const BASE: &str = r#"schema = 1
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
fn dotdot_in_image_path() {
    let f = Fixture::new();
    let e = f.err(&format!(
        "{BASE}[[file]]\nsource = \"motd\"\npath = \"/etc/../../x\"\n"
    ));
    assert!(e.starts_with("p.toml:12:8: file[0].path: "), "{e}");
    assert!(e.contains("'..'"), "{e}");
}

#[test]
fn missing_overlay() {
    let f = Fixture::new();
    let e = f.err(&format!("{BASE}[[overlay]]\npath = \"nope\"\n"));
    assert!(e.starts_with("p.toml:11:8: overlay[0].path: "), "{e}");
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn host_file_that_is_a_directory() {
    let f = Fixture::new();
    let e = f.err(&format!("{BASE}[[file]]\nsource = \"ov\"\npath = \"/x\"\n"));
    assert!(e.contains("file[0].source"), "{e}");
    assert!(e.contains("is a directory"), "{e}");
}

#[test]
fn bad_values() {
    let f = Fixture::new();
    for (snippet, want) in [
        ("[zram]\nsize = \"lots\"\n", "zram.size"),
        (
            "[zram]\nsize = \"1G\"\nalgorithm = \"gzip\"\n",
            "zram.algorithm",
        ),
        ("[network]\naddress = \"10.0.2.15\"\n", "network.address"),
        ("[sysctl]\n\"vm swappiness\" = 1\n", "sysctl.vm swappiness"),
        (
            "[[file]]\nsource = \"motd\"\npath = \"/m\"\nmode = \"999\"\n",
            "file[0].mode",
        ),
    ] {
        let e = f.err(&format!("{BASE}{snippet}"));
        assert!(e.contains(want), "{snippet:?}: {e}");
    }
    let e = f.err(&BASE.replace("schema = 1", "schema = 2"));
    assert!(e.contains("schema = 2 is not supported"), "{e}");
    let e = f.err(&BASE.replace("\"/bin/busybox\"", "\"busybox\""));
    assert!(e.contains("init.argv[0]"), "{e}");
    let e = f.err(&BASE.replace("hello", "Hello World"));
    assert!(e.contains("image.name"), "{e}");
}

#[test]
fn epoch_from_environment() {
    let f = Fixture::new();
    let text = BASE.replace("source-date-epoch = 1700000000\n", "");
    let p = Profile::parse(&text, Path::new("p.toml"), f.dir.path(), Some("42")).unwrap();
    assert_eq!(p.image.source_date_epoch, 42);
    let p = Profile::parse(&text, Path::new("p.toml"), f.dir.path(), None).unwrap();
    assert_eq!(p.image.source_date_epoch, 0);
}

#[test]
fn sizes() {
    assert_eq!(parse_size("512M"), Some(ZramSize::Bytes(512 << 20)));
    assert_eq!(parse_size("1G"), Some(ZramSize::Bytes(1 << 30)));
    assert_eq!(parse_size("8192"), Some(ZramSize::Bytes(8192)));
    assert_eq!(parse_size("25%"), Some(ZramSize::PercentOfRam(25)));
    assert_eq!(parse_size("0%"), None);
    assert_eq!(parse_size("12X"), None);
    assert_eq!(parse_size("100"), None);
}

#[test]
fn line_col_counts_from_one() {
    assert_eq!(line_col("ab\ncd", 0), (1, 1));
    assert_eq!(line_col("ab\ncd", 4), (2, 2));
}

#[test]
fn kernel_from_source() {
    let f = Fixture::new();
    std::fs::write(f.dir.path().join("linux.tar.xz"), b"x").unwrap();
    std::fs::write(f.dir.path().join("a.config"), b"CONFIG_A=y\n").unwrap();
    let text = BASE.replace(
        "prebuilt = \"vmlinuz\"",
        "source = { tarball = \"linux.tar.xz\" }\nfragments = [\"a.config\"]\nformat = \"vmlinux\"",
    );
    let p = f.parse(&text).unwrap();
    let KernelOrigin::Source(s) = p.kernel.origin else {
        panic!()
    };
    assert_eq!(s.base, KernelBase::Tinyconfig);
    assert_eq!(s.format, KernelFormat::Vmlinux);
    assert_eq!(s.fragments, [f.dir.path().join("a.config")]);
    let e = f.err(&BASE.replace(
        "prebuilt = \"vmlinuz\"",
        "prebuilt = \"vmlinuz\"\nsource = { tarball = \"linux.tar.xz\" }",
    ));
    assert!(e.contains("not both"), "{e}");
    let e = f.err(&text.replace("format = \"vmlinux\"", "format = \"zImage\""));
    assert!(e.contains("kernel.format"), "{e}");
    let e = f.err(&text.replace("a.config", "missing.config"));
    assert!(e.contains("kernel.fragments[0]"), "{e}");
}

#[test]
fn overlay_names_do_not_depend_on_how_the_path_is_typed() {
    use super::overlay_name;
    assert_eq!(overlay_name("../rootfs-overlays/hello", 0), "hello");
    assert_eq!(overlay_name("overlay/app/", 0), "app");
    assert_eq!(overlay_name("./overlay/./app", 0), "app");
    assert_eq!(overlay_name("a/b/..", 0), "a");
    // The profile's own directory, or one above it: named by position, not by the host.
    assert_eq!(overlay_name(".", 0), "overlay-0");
    assert_eq!(overlay_name("..", 2), "overlay-2");
    assert_eq!(overlay_name("../..", 1), "overlay-1");
}
