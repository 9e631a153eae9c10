//! Mutation fuzzing of every parser of user-facing input: valid documents (the repository's own
//! profiles, locks, policies, a channel document, a Packages index, consoles) are mutated with
//! a seeded generator — bit flips, byte insertions and deletions, truncations, splices of
//! structural characters — and each parser must return `Ok` or `Err`, never panic or hang.
//! Deterministic (fixed seeds), so a failure reproduces; `STRATOS_FUZZ_ITERS` raises the count.

use std::path::Path;

use crate::common::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SPICE: &[&[u8]] = &[
    b"\"",
    b"'",
    b"[",
    b"]",
    b"{",
    b"}",
    b"=",
    b"\n",
    b"\0",
    b"..",
    b"/",
    b"\\",
    b":",
    b",",
    b"\xff\xfe",
    b"-1",
    b"99999999999999999999",
    b"1e309",
    b"[[",
    b"]]",
    b"#",
    b" (",
    b")",
    b"|",
    b"\t",
    b"\r\n",
    b"\xe2\x80\xae",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let s = SPICE[rng.below(SPICE.len())];
                v.splice(at..at, s.iter().copied());
            }
            2 if at < v.len() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at..end);
            }
            3 => v.truncate(at),
            4 if !input.is_empty() => {
                // Duplicate a random slice of the input somewhere.
                let a = rng.below(input.len());
                let b = (a + 1 + rng.below(64)).min(input.len());
                v.splice(at..at, input[a..b].iter().copied());
            }
            _ => v.insert(at.min(v.len()), rng.next() as u8),
        }
    }
    v
}

fn iterations() -> usize {
    std::env::var("STRATOS_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400)
}

fn fuzz(name: &str, seeds: &[Vec<u8>], mut parse: impl FnMut(&[u8])) {
    let mut rng = Rng(0x5157_2A7D_0000_0001 ^ name.len() as u64);
    for s in seeds {
        parse(s);
    }
    for i in 0..iterations() {
        let seed = &seeds[i % seeds.len()];
        let m = mutate(&mut rng, seed);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse(&m)));
        if r.is_err() {
            panic!(
                "{name}: parser panicked on iteration {i}, input:\n{}",
                String::from_utf8_lossy(&m)
            );
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn profiles() {
    let dir = root().join("profiles");
    let seeds: Vec<Vec<u8>> = ["hello.toml", "python-fn.toml", "hello-stock.toml"]
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .chain([PROFILE.as_bytes().to_vec()])
        .collect();
    fuzz("profile", &seeds, |b| {
        let _ = stratos::profile::Profile::parse(&text(b), Path::new("p.toml"), &dir, None);
    });
}

#[test]
fn locks_waves_and_policies() {
    let seeds: Vec<Vec<u8>> = ["profiles/hello.lock", "profiles/python-fn.lock"]
        .iter()
        .map(|f| std::fs::read(root().join(f)).unwrap())
        .collect();
    fuzz("lock", &seeds, |b| {
        let _ = stratos::packages::lock::LockFile::parse(
            &text(b),
            Path::new("x.lock"),
            stratos::arch::Arch::X86_64,
        );
    });
    let waves = b"[[wave]]\nstart-after = \"0s\"\nfleet-percent = 1\n[[wave]]\nstart-after = \"1h\"\nfleet-percent = 100\n".to_vec();
    fuzz("waves", &[waves], |b| {
        let _ = stratos::channel::operator::waves::parse(&text(b), "w.toml");
    });
    let seeds: Vec<Vec<u8>> = ["busybox-httpd.json", "python.json"]
        .iter()
        .map(|f| std::fs::read(root().join("profiles/seccomp").join(f)).unwrap())
        .collect();
    fuzz("seccomp policy", &seeds, |b| {
        let x86_64 = stratos::arch::Arch::X86_64;
        if let Ok(p) = stratos::seccomp::Policy::parse(&text(b), "p.json", x86_64) {
            let _ = stratos::seccomp::compile(&p);
        }
    });
}

#[test]
fn release_metadata_and_manifests() {
    let channel = br#"{"channel":"stable","expires":1900000000,"halted":false,"image":{"manifest_length":10,"manifest_sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","name":"hello","signature_length":10,"signature_sha256":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","version":"1.0"},"min_version":null,"previous":null,"rollout":{"started_at":1,"waves":[{"fleet_percent":10,"start_after":0}]},"spec_version":1,"timestamp":1,"type":"stratos-channel","version":3}"#.to_vec();
    fuzz("channel", &[channel], |b| {
        if let Ok(c) = stratos::channel::parse_channel(b, "c") {
            let _ = stratos::channel::node::decide(
                &c,
                stratos::arch::Arch::X86_64,
                "node",
                5,
                None,
                None,
            );
        }
    });
    let root_doc = br#"{"expires":1900000000,"keys":{"fe812c12f3ab4ce6":{"public":"ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c","type":"ed25519"}},"roles":{"channel":{"key_ids":["fe812c12f3ab4ce6"],"threshold":1},"image":{"key_ids":["fe812c12f3ab4ce6"],"threshold":1},"root":{"key_ids":["fe812c12f3ab4ce6"],"threshold":1}},"spec_version":1,"type":"stratos-root","version":1}"#.to_vec();
    fuzz("root", std::slice::from_ref(&root_doc), |b| {
        if let Ok(r) = stratos::channel::parse_root(b, "r") {
            let _ = stratos::channel::verify_threshold(
                "r",
                b,
                b"{\"signatures\":[]}",
                &r,
                stratos::channel::RoleName::Root,
            );
        }
    });
    let sigs = br#"{"signatures":[{"key_id":"fe812c12f3ab4ce6","sig":"00"}]}"#.to_vec();
    let root: stratos::channel::Root = stratos::channel::parse_root(&root_doc, "r").unwrap();
    fuzz("signatures", &[sigs], |b| {
        let _ = stratos::channel::verify_threshold(
            "r",
            &root_doc,
            b,
            &root,
            stratos::channel::RoleName::Root,
        );
    });
    let f = Fixture::new();
    let cache = tempfile::tempdir().unwrap();
    let out = f.path("img");
    stratos(cache.path())
        .arg("build")
        .arg(f.profile())
        .arg("--out")
        .arg(&out)
        .arg("-q")
        .assert()
        .success();
    let manifest = std::fs::read(out.join("manifest.json")).unwrap();
    fuzz("manifest", &[manifest], |b| {
        let _ = stratos::sign::verify::parse_manifest(b);
    });
    let snapshot = br#"{"accel":"tcg","cmdline":"console=ttyS0","files":[{"name":"memory","sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":536870912},{"name":"state","sha256":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","size":58824}],"format":1,"guest_port":8080,"image":{"manifest_sha256":"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc","name":"hello","version":"0.1.0"},"machine":"-M microvm -m 512","memory_mib":512,"qemu_version":"QEMU emulator version 7.2.19","warm":["/"]}"#.to_vec();
    assert!(stratos::boot::snapshot::Snapshot::parse(Path::new("s"), snapshot.clone()).is_ok());
    fuzz("snapshot.json", &[snapshot], |b| {
        let _ = stratos::boot::snapshot::Snapshot::parse(Path::new("s"), b.to_vec());
    });
}

#[test]
fn packages_indexes_kernel_configs_and_consoles() {
    let packages = b"Package: a\nVersion: 1:2.0-1~b1\nArchitecture: amd64\nDepends: b (>= 1) | c, d:any (<< 3) [amd64] <!nocheck>\nPre-Depends: e\nProvides: v (= 1)\nFilename: pool/a.deb\nSize: 10\nSHA256: 00\n\nPackage: b\nVersion: 1\nArchitecture: all\nDescription: x\n continued\n .\n".to_vec();
    fuzz("Packages", &[packages], |b| {
        let mut i = stratos::packages::debian::index::Index::default();
        if i.add(&text(b), "P", stratos::arch::Arch::X86_64).is_ok() {
            let _ = stratos::packages::resolve::resolve(&i, &["a".into()]);
        }
    });
    fuzz(
        "dpkg versions",
        &[b"1:2.0~rc1-1+deb12u1 3.0".to_vec()],
        |b| {
            let t = text(b);
            let mut parts = t.splitn(2, ' ');
            let (x, y) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let _ = stratos::packages::debian::index::compare_versions(x, y);
        },
    );
    let config = b"CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x y\"\nCONFIG_D=0x10\n".to_vec();
    fuzz("kernel config", &[config], |b| {
        let _ = stratos::kernel::config::Config::parse(&text(b));
    });
    let console = b"stratos-phase init_start 100\nfn> Kernel panic - not syncing: x\nKernel panic - not syncing: x\nreboot: System halted\ndevice-mapper: verity: 254:0: data block 0 is corrupted\n".to_vec();
    fuzz("console hints", &[console], |b| {
        for l in text(b).lines() {
            let _ = stratos::boot::vm::console::hint(l);
        }
    });
    let control = br#"{"phase":{"name":"runtime_ready","ns":1200491103}}
{"restart":{"count":1,"max":3,"ending":{"killed":{"signal":9}}}}
{"metrics":{"reason":"request","seq":2,"stratos.time_ns":1327581034,"faas.coldstart":true,"faas.init_duration":0.612,"faas.max_memory":268435456,"faas.mem_usage":11206656,"faas.cpu_usage":0.43,"stratos.restarts":0,"stratos.phases_ns":{"init_start":422119647,"runtime_ready":1200491103},"stratos.syscalls":{"accept4":2,"read":5},"stratos.syscalls.total":7,"stratos.syscall_latency_log2_ns":{"accept4":[[19,1],[31,1]]}}}
{"seccomp_log":{"record":"audit: type=1326 syscall=83 code=0x7ffc0000"}}
"power_off"
"#
    .to_vec();
    for l in control.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        assert!(stratos_wire::Control::parse(l).is_ok(), "{}", text(l));
    }
    fuzz("control messages", &[control], |b| {
        for l in b.split(|&c| c == b'\n') {
            let _ = stratos_wire::Control::parse(l);
        }
        for &arch in stratos::arch::Arch::ALL {
            let _ = stratos::boot::vm::console::seccomp_log(
                &text(b).lines().map(str::to_owned).collect::<Vec<_>>(),
                arch,
            );
        }
    });
    let relayed = b"fn> \\x1b[2J \\\\ caf\xc3\xa9 \\x".to_vec();
    fuzz("relayed lines", &[relayed], |b| {
        if let Some(back) = stratos_wire::control::unescape(&text(b)) {
            // What unescapes, escapes back to text that unescapes to the same bytes.
            let again = stratos_wire::control::escape(&back);
            assert_eq!(stratos_wire::control::unescape(&again), Some(back));
        }
        let _ = stratos_wire::control::printable(b);
    });
}

#[test]
fn seccomp_suggest_bases() {
    use stratos::seccomp::suggest::{suggest, Observed};
    let obs = Observed {
        image: "python-fn 0.1.0".into(),
        runs: 1,
        calls: [("read".to_owned(), 3), ("accept4".to_owned(), 1)]
            .into_iter()
            .collect(),
    };
    let base = std::fs::read(root().join("profiles/seccomp/python.json")).unwrap();
    fuzz("seccomp suggest --base", &[base], |b| {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(b) {
            let _ = suggest(&obs, Some((&v, "base.json")), stratos::arch::Arch::X86_64);
        }
    });
}

#[test]
fn requirements_wheels_npm_locks_and_tarballs() {
    use stratos::packages::{npm, python as pypi};
    use stratos::rootfs::{Budget, ExpandLimits, ImagePath, Origin, Tree};
    let req = std::fs::read(root().join("profiles/python-api.requirements.txt")).unwrap();
    fuzz("requirements", &[req], |b| {
        let _ = pypi::parse_requirements(&text(b), Path::new("r.txt"));
    });
    let hostile = root().join("tests/hostile/deps");
    let wheels: Vec<Vec<u8>> = [
        "good/evil-1.0-py3-none-any.whl",
        "record-hash-wrong/evil-1.0-py3-none-any.whl",
    ]
    .iter()
    .map(|f| std::fs::read(hostile.join(f)).unwrap())
    .collect();
    let r = pypi::Requirement {
        name: "evil".into(),
        version: "1.0".into(),
        hashes: Default::default(),
        line: 1,
    };
    let scheme = pypi::Scheme::debian_local((3, 11), "/usr/bin/python3.11");
    let budget = Budget {
        limits: ExpandLimits {
            file: 1 << 20,
            package: 4 << 20,
            image: 8 << 20,
        },
        image_used: 0,
    };
    fuzz("wheel", &wheels, |b| {
        let w = pypi::Fetched {
            file_name: "evil-1.0-py3-none-any.whl".into(),
            sha256: stratos::digest::Sha256::of(b),
            bytes: b.to_vec(),
        };
        let mut tree = Tree::new();
        let _ = pypi::install(&r, &w, &scheme, &mut tree, &Origin::new("w"), budget);
        // Whatever was installed stayed inside the install scheme.
        for (p, _) in tree.iter() {
            assert!(
                p.is_root() || p.as_str().starts_with("/usr"),
                "{p} outside the scheme"
            );
        }
    });
    let lock =
        std::fs::read(root().join("rootfs-overlays/node-fn/srv/fn/package-lock.json")).unwrap();
    fuzz("npm lock", &[lock], |b| {
        let _ = npm::plan(
            b,
            Path::new("package-lock.json"),
            stratos::arch::Arch::X86_64,
        );
    });
    let tarballs: Vec<Vec<u8>> = ["good.tgz", "escape.tgz"]
        .iter()
        .map(|f| std::fs::read(hostile.join(f)).unwrap())
        .collect();
    let dir = ImagePath::parse("/srv/fn/node_modules/evil").unwrap();
    let p = npm::LockedPackage {
        key: "node_modules/evil".into(),
        name: "evil".into(),
        version: "1.0.0".into(),
        resolved: "https://registry.npmjs.org/evil/-/evil-1.0.0.tgz".into(),
        sha512: vec![0; 64],
        license: None,
        has_install_script: false,
        bin: Default::default(),
    };
    fuzz("npm tarball", &tarballs, |b| {
        let mut tree = Tree::new();
        let _ = npm::unpack(&p, b, &dir, &mut tree, &Origin::new("n"), budget);
        for (q, _) in tree.iter() {
            assert!(
                dir.starts_with(q) || q.starts_with(&dir),
                "{q} outside the package"
            );
        }
    });
}

#[test]
fn delta_updates_trees_deltas_and_channel_deltas() {
    use stratos::archive::{delta, verity};
    // A channel listing a kernel delta.
    let channel = br#"{"channel":"stable","deltas":[{"artifact":"kernel","from":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","sha256":"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc","size":4000,"to":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}],"expires":1900000000,"halted":false,"image":{"manifest_length":10,"manifest_sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","name":"hello","signature_length":10,"signature_sha256":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","version":"1.0"},"min_version":null,"previous":null,"rollout":{"started_at":1,"waves":[{"fleet_percent":10,"start_after":0}]},"spec_version":1,"timestamp":1,"type":"stratos-channel","version":3}"#.to_vec();
    let c = stratos::channel::parse_channel(&channel, "c").unwrap();
    assert_eq!(c.tracks[0].deltas.len(), 1);
    fuzz("channel with deltas", &[channel], |b| {
        let _ = stratos::channel::parse_channel(b, "c");
    });
    // A verity tree as a repository serves it: the whole tail, and its upper part.
    let mut img: Vec<u8> = (0..300 * verity::BLOCK)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let info = verity::append(&mut img, &verity::name_salt("fuzz"));
    let tail = img[info.data_size as usize..].to_vec();
    let (upper_len, _) = verity::bottom_level(info.data_blocks);
    let upper = tail[..upper_len as usize].to_vec();
    assert!(verity::leaves(&tail, &info).is_ok());
    fuzz("verity tree", &[tail], |b| {
        let _ = verity::leaves(b, &info);
    });
    fuzz("verity upper levels", &[upper], |b| {
        let _ = verity::bottom_hashes(b, &info);
    });
    // A kernel delta: whatever the patch says, the output stays within its bound.
    let base: Vec<u8> = (0..20_000u32).map(|i| (i * 31 % 253) as u8).collect();
    let mut target = base.clone();
    target[5_000..5_100].fill(7);
    let patch = delta::encode(&base, &target).unwrap();
    let mut out = Vec::new();
    delta::decode(&base, &patch[..], &mut out, target.len() as u64).unwrap();
    assert_eq!(out, target);
    fuzz("kernel delta", &[patch], |b| {
        let mut out = Vec::new();
        let _ = delta::decode(&base, b, &mut out, target.len() as u64);
        assert!(out.len() <= target.len() + 1, "{} bytes out", out.len());
    });
}

/// Go: go.mod and go.sum as StratOS reads them, a Go binary's build information, and module
/// zips (the h1: hash over hostile archives). Seeds: go-api's own files, its proxy's zip and a
/// `.go.buildinfo` section laid out as Go 1.18+ writes it.
#[test]
fn go_modules_sums_build_info_and_zips() {
    use stratos::packages::go::{buildinfo, h1, modfile};
    let api = root().join("functions/go-api");
    let go_mod = std::fs::read(api.join("go.mod")).unwrap();
    let go_sum = std::fs::read(api.join("go.sum")).unwrap();
    let extra = b"module example.com/x\ngo 1.19\ntoolchain go1.21.0\nrequire (\n\ta.com/b v1.0.0 // indirect\n)\nreplace a.com/b v1.0.0 => ./b\nreplace \"c.com/d\" => c.com/e v1.2.3\nexclude a.com/b v0.9.0\n".to_vec();
    fuzz("go.mod", &[go_mod, extra], |b| {
        let _ = modfile::parse_go_mod(&text(b));
    });
    fuzz("go.sum", &[go_sum], |b| {
        let _ = modfile::parse_go_sum(&text(b));
    });
    let zip =
        std::fs::read(root().join("functions/go-proxy/example.com/greet/@v/v1.0.0.zip")).unwrap();
    fuzz("module zip", &[zip], |b| {
        let _ = h1::of_zip(b, "example.com/greet@v1.0.0/");
    });
    let mut info = b"\xff Go buildinf:\x08\x02".to_vec();
    info.resize(32, 0);
    info.push(8);
    info.extend_from_slice(b"go1.19.8");
    let modinfo = "0123456789abcdefpath\texample.com/x\nmod\texample.com/x\t(devel)\t\ndep\ta.com/b\tv1.0.0\th1:x=\n=>\ta.com/c\tv1.1.0\th1:y=\nbuild\tCGO_ENABLED=0\n\n0123456789abcdef";
    info.push(u8::try_from(modinfo.len()).unwrap());
    info.extend_from_slice(modinfo.as_bytes());
    fuzz("go build info", &[info], |b| {
        let _ = buildinfo::parse_section(b);
    });
}

#[test]
fn cargo_locks_and_crates() {
    use stratos::packages::cargo::{lock, vendor, CrateFile};
    let lock_text = std::fs::read(root().join("functions/lambda-rust/Cargo.lock")).unwrap();
    fuzz("Cargo.lock", &[lock_text], |b| {
        let _ = lock::parse(&text(b));
    });
    // A real .crate when ci/setup fetched it, and a hand-made one with a member that leaves
    // its directory.
    let mut seeds = Vec::new();
    if let Ok(b) = std::fs::read("/var/cache/stratos/crates/itoa-1.0.19.crate") {
        seeds.push(b);
    }
    let mut evil = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("x-1.0.0/Cargo.toml", &b"[package]"[..]),
        ("x-1.0.0/../../escape", b"!"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        evil.append(&h, data).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &evil.into_inner().unwrap()).unwrap();
    seeds.push(gz.finish().unwrap());
    let locked = lock::Locked {
        name: "x".into(),
        version: "1.0.0".into(),
        source: lock::Source::Local,
    };
    let work = tempfile::tempdir().unwrap();
    let evil = seeds.last().unwrap().clone();
    let e = vendor(
        &work.path().join("evil"),
        &[CrateFile {
            locked: locked.clone(),
            sha256: stratos::digest::Sha256::of(&evil),
            bytes: evil,
        }],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("crate x 1.0.0") && e.contains("refusing member"),
        "{e}"
    );
    let mut n = 0;
    fuzz(".crate", &seeds, |b| {
        n += 1;
        let dir = work.path().join(n.to_string()).join("vendor");
        let _ = vendor(
            &dir,
            &[CrateFile {
                locked: locked.clone(),
                sha256: stratos::digest::Sha256::of(b),
                bytes: b.to_vec(),
            }],
        );
        // Whatever the archive says, nothing lands outside the crate's directory.
        assert!(!work.path().join(n.to_string()).join("escape").exists());
        assert!(!dir.join("escape").exists());
        let _ = std::fs::remove_dir_all(work.path().join(n.to_string()));
    });
}
