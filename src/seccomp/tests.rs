use std::collections::BTreeSet;

use super::bpf::LD_W_ABS;
use super::*;
use crate::arch::Arch;

fn nr(name: &str) -> u32 {
    table::number(Arch::X86_64, name).unwrap()
}

const POLICY: &str = r#"{
  "defaultAction": "SCMP_ACT_ERRNO",
  "defaultErrnoRet": 1,
  "architectures": ["SCMP_ARCH_X86_64"],
  "syscalls": [
    {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
    {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
    {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
    {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 4294967295, "op": "SCMP_CMP_EQ"}]},
    {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_NE"}]},
    {"names": ["mmap"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 2, "value": 4, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
    {"names": ["lseek"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 2, "value": 2, "op": "SCMP_CMP_LE"}]},
    {"names": ["pread64"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 3, "value": 4294967296, "op": "SCMP_CMP_LT"}]},
    {"names": ["pwrite64"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 3, "value": 4294967300, "op": "SCMP_CMP_GT"}]},
    {"names": ["fadvise64"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 3, "value": 3, "op": "SCMP_CMP_GE"}, {"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]},
    {"names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS"},
    {"names": ["reboot"], "action": "SCMP_ACT_TRAP"},
    {"names": ["mkdir"], "action": "SCMP_ACT_LOG"}
  ]
}"#;

/// Values around the interesting boundaries of 64-bit comparisons.
fn probe_values() -> Vec<u64> {
    let mut v = vec![
        0,
        1,
        2,
        3,
        4,
        5,
        15,
        16,
        17,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0001,
        0x1_0000_0004,
        0x1_0000_0005,
        u64::MAX,
        1 << 63,
    ];
    v.extend([0x2_0000_0000, 0xffff_ffff_0000_0000, 0x8000_0004]);
    v
}

#[test]
fn every_rule_decides_like_the_policy_for_allowed_and_mutated_arguments() {
    let p = Policy::parse(POLICY, "t.json", Arch::X86_64).unwrap();
    let prog = compile(&p).unwrap();
    for (n, rules) in &p.rules {
        for r in rules {
            let indices: BTreeSet<u32> = r.args.iter().map(|c| c.index).collect();
            for &a in &probe_values() {
                for &b in &probe_values() {
                    let mut args = [0u64; 6];
                    let idx: Vec<u32> = indices.iter().copied().collect();
                    if let Some(i) = idx.first() {
                        args[*i as usize] = a;
                    }
                    if let Some(i) = idx.get(1) {
                        args[*i as usize] = b;
                    }
                    assert_eq!(
                        run(&prog, Arch::X86_64.audit_arch(), *n, args),
                        decide(&p, *n, args),
                        "{} ({}) args {args:x?}",
                        table::name(Arch::X86_64, *n).unwrap(),
                        r.origin
                    );
                }
            }
        }
    }
    // Calls with no rule get the default.
    assert_eq!(
        run(&prog, Arch::X86_64.audit_arch(), nr("mount"), [0; 6]),
        RET_ERRNO | 1
    );
}

#[test]
fn actions_and_per_rule_errno() {
    let p = Policy::parse(POLICY, "t.json", Arch::X86_64).unwrap();
    let prog = compile(&p).unwrap();
    let call = |n: &str, args: [u64; 6]| run(&prog, Arch::X86_64.audit_arch(), nr(n), args);
    assert_eq!(call("read", [0; 6]), RET_ALLOW);
    assert_eq!(call("clone3", [0; 6]), RET_ERRNO | 38);
    assert_eq!(call("ptrace", [0; 6]), RET_KILL_PROCESS);
    assert_eq!(call("reboot", [0; 6]), RET_TRAP);
    assert_eq!(call("mkdir", [0; 6]), RET_LOG);
    assert_eq!(call("personality", [0xffff_ffff, 0, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(
        call("personality", [0x1_ffff_ffff, 0, 0, 0, 0, 0]),
        RET_ERRNO | 1
    );
    assert_eq!(call("socket", [16, 0, 0, 0, 0, 0]), RET_ERRNO | 1);
    assert_eq!(call("socket", [2, 0, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(call("mmap", [0, 0, 3, 0, 0, 0]), RET_ALLOW);
    assert_eq!(call("mmap", [0, 0, 7, 0, 0, 0]), RET_ERRNO | 1);
}

#[test]
fn architecture_is_checked_first_and_x32_is_refused() {
    let p = Policy::parse(POLICY, "t.json", Arch::X86_64).unwrap();
    let prog = compile(&p).unwrap();
    assert_eq!(prog[0], Insn::new(LD_W_ABS, 0, 0, 4));
    assert_eq!(
        run(&prog, 0x4000_0003, nr("read"), [0; 6]),
        RET_KILL_PROCESS
    );
    assert_eq!(
        run(
            &prog,
            Arch::X86_64.audit_arch(),
            nr("read") | Arch::X86_64.second_abi_syscall_bit().unwrap(),
            [0; 6]
        ),
        RET_KILL_PROCESS
    );
}

#[test]
fn log_mode_allows_and_logs_what_would_be_denied() {
    let p = Policy::parse(POLICY, "t.json", Arch::X86_64)
        .unwrap()
        .log_mode();
    let prog = compile(&p).unwrap();
    assert_eq!(
        run(&prog, Arch::X86_64.audit_arch(), nr("mount"), [0; 6]),
        RET_LOG
    );
    assert_eq!(
        run(&prog, Arch::X86_64.audit_arch(), nr("read"), [0; 6]),
        RET_ALLOW
    );
    assert_eq!(
        run(&prog, Arch::X86_64.audit_arch(), nr("ptrace"), [0; 6]),
        RET_LOG
    );
}

#[test]
fn bad_policies_name_the_rule() {
    let cases = [
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"},{"names":["no_such_call"],"action":"SCMP_ACT_ALLOW"}]}"#,
            "syscalls[1]: unknown system call \"no_such_call\"",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_MAYBE"}]}"#,
            "syscalls[0]: unknown action \"SCMP_ACT_MAYBE\"",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"SCMP_CMP_SOMETIMES"}]}]}"#,
            "syscalls[0].args[0]: unsupported argument operator",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"},{"names":["write","read"],"action":"SCMP_ACT_ALLOW"}]}"#,
            "syscalls[1]: duplicate rule for read (same arguments as syscalls[0])",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_TRACE"}"#,
            "defaultAction: action SCMP_ACT_TRACE is not supported",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_AARCH64"]}"#,
            "do not include SCMP_ARCH_X86_64",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
            "index 6 is out of range",
        ),
    ];
    for (text, want) in cases {
        let e = Policy::parse(text, "bad.json", Arch::X86_64)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{want}: {e}");
        assert!(e.starts_with("bad.json: "), "{e}");
    }
    let e = Policy::parse("{\"defaultAction\": ", "m.json", Arch::X86_64)
        .unwrap_err()
        .to_string();
    assert!(e.contains("m.json: malformed policy JSON at line 1"), "{e}");
}

#[test]
fn oversized_filters_are_refused() {
    // 1000 distinct conditional rules on one call: about 5000 instructions.
    let rules: Vec<String> = (0..1000)
        .map(|i| format!(r#"{{"names":["ioctl"],"action":"SCMP_ACT_ALLOW","args":[{{"index":1,"value":{i},"op":"SCMP_CMP_EQ"}}]}}"#))
        .collect();
    let text = format!(
        r#"{{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{}]}}"#,
        rules.join(",")
    );
    let p = Policy::parse(&text, "big.json", Arch::X86_64).unwrap();
    let e = match compile(&p) {
        Ok(prog) => panic!(
            "an oversized filter ({} instructions) was accepted",
            prog.len()
        ),
        Err(e) => e,
    };
    assert!(e.contains("over the kernel's limit of 4096"), "{e}");
}

#[test]
fn bytes_round_trip() {
    let p = Policy::parse(POLICY, "t.json", Arch::X86_64).unwrap();
    let prog = compile(&p).unwrap();
    assert_eq!(from_bytes(&to_bytes(&prog)), prog);
}

#[test]
fn allowed_set() {
    let p = Policy::parse(POLICY, "t.json", Arch::X86_64).unwrap();
    let (always, cond) = p.allowed();
    assert!(always.contains("read") && !always.contains("clone3"));
    assert_eq!(cond["personality"].len(), 2);
}

#[test]
fn hostile_misspelled_top_level_key_is_an_error_not_allow_all() {
    // `sycalls` was silently ignored: the policy then allowed everything.
    let text = r#"{"defaultAction":"SCMP_ACT_ALLOW","sycalls":[{"names":["mount"],"action":"SCMP_ACT_ERRNO"}]}"#;
    let e = Policy::parse(text, "p.json", Arch::X86_64)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `sycalls`"), "{e}");
    for bad in [
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","includes":{"kaps":["CAP_SYS_ADMIN"]}}]}"#,
        r#"{"defaultAction":"SCMP_ACT_ERRNO","archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":[],"extra":1}]}"#,
    ] {
        let e = Policy::parse(bad, "p.json", Arch::X86_64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
    }
}

#[test]
fn hostile_unknown_architectures_and_out_of_range_errno() {
    let cases = [
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86_65"]}"#,
            "unknown architecture \"SCMP_ARCH_X86_65\"",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["amd46"]}}]}"#,
            "syscalls[0].includes.arches: unknown architecture \"amd46\"",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","errnoRet":70000}]}"#,
            "syscalls[0]: errno 70000 is out of range",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":4096}"#,
            "defaultErrnoRet 4096 is out of range",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMN"]}}]}"#,
            "unknown capability \"CAP_SYS_ADMN\"",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","flags":["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}"#,
            "flags: \"SECCOMP_FILTER_FLAG_SPEC_ALLOW\" is not supported",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"six"}}]}"#,
            "minKernel: \"six\" is not a kernel version",
        ),
    ];
    for (text, want) in cases {
        let e = Policy::parse(text, "p.json", Arch::X86_64)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{want}: {e}");
    }
}

#[test]
fn conditions_are_evaluated_for_the_runtime() {
    // Docker's shape: mount only with CAP_SYS_ADMIN, bpf excluded below 5.8, a rule for arm64.
    let text = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
        {"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}},
        {"names":["bpf"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"5.8"}},
        {"names":["ptrace"],"action":"SCMP_ACT_ALLOW","excludes":{"caps":["CAP_SYS_PTRACE"]}},
        {"names":["read"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["arm64"]}},
        {"names":["write"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["amd64"]}}
    ]}"#;
    let allowed = |t: &Target| {
        let p = Policy::parse_for(text, "p.json", t).unwrap();
        let (always, _) = p.allowed();
        always.into_iter().collect::<Vec<_>>()
    };
    let root_61 = Target::new(Arch::X86_64, 0, Some("6.1.0-28-cloud-amd64"));
    assert_eq!(allowed(&root_61), ["bpf", "mount", "write"]);
    let user_54 = Target::new(Arch::X86_64, 1000, Some("5.4.0"));
    assert_eq!(allowed(&user_54), ["ptrace", "write"]);
    // A kernel whose version is unknown cannot satisfy minKernel: refused, not guessed.
    let e = Policy::parse_for(text, "p.json", &Target::new(Arch::X86_64, 0, None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("kernel version is unknown"), "{e}");
}

#[test]
fn the_policy_vocabularies_know_every_architecture_built() {
    use super::oci::{GO_ARCHES, SCMP_ARCHES};
    for &arch in Arch::ALL {
        assert!(SCMP_ARCHES.contains(&arch.seccomp()), "{arch}");
        for name in arch.policy_names() {
            assert!(GO_ARCHES.contains(name), "{arch}: {name}");
        }
    }
}

#[test]
fn architecture_messages_name_the_image_architecture() {
    let e = Policy::parse(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_AARCH64"]}"#,
        "p.json",
        Arch::X86_64,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(e, "p.json: architectures [\"SCMP_ARCH_AARCH64\"] do not include SCMP_ARCH_X86_64, the architecture of the image it is compiled for; add it to use the policy on x86-64");
    let e = Policy::parse(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["nope"],"action":"SCMP_ACT_ALLOW"}]}"#,
        "p.json",
        Arch::X86_64,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "p.json: syscalls[0]: unknown system call \"nope\" (in no table of Linux 6.1: x86-64, aarch64)"
    );
}

const SMALL: &str = r#"{
  "defaultAction": "SCMP_ACT_ERRNO",
  "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
  "syscalls": [
    {"names": ["read", "open", "openat", "stat", "newfstatat", "fork", "clone", "exit_group"], "action": "SCMP_ACT_ALLOW"},
    {"names": ["poll", "ptrace"], "action": "SCMP_ACT_KILL_PROCESS"}
  ]
}"#;

#[test]
fn an_aarch64_filter_checks_its_audit_arch_and_uses_its_numbers() {
    let a = Arch::Aarch64;
    let p = Policy::parse(SMALL, "small.json", a).unwrap();
    let prog = compile(&p).unwrap();
    // ld arch; jeq AUDIT_ARCH_AARCH64; ret kill; ld nr; then straight to the dispatch: no x32
    // check (32-bit Arm has its own audit arch, refused by the first check).
    assert_eq!(prog[0], Insn::new(LD_W_ABS, 0, 0, 4));
    assert_eq!(prog[1].k, 0xC000_00B7);
    assert_eq!(prog[2].k, RET_KILL_PROCESS);
    assert_eq!(prog[3], Insn::new(LD_W_ABS, 0, 0, 0));
    // The generic table's numbers: read 63, openat 56, newfstatat 79, clone 220, ptrace 117.
    let dispatched: Vec<u32> = prog[4..]
        .chunks(2)
        .take(p.rules.len())
        .map(|c| c[0].k)
        .collect();
    assert_eq!(dispatched, [56, 63, 79, 94, 117, 220]);
    let audit = a.audit_arch();
    for (nr, want) in [
        (63, RET_ALLOW),
        (56, RET_ALLOW),
        (79, RET_ALLOW),
        (220, RET_ALLOW),
        (94, RET_ALLOW),
        (117, RET_KILL_PROCESS),
        (57, RET_ERRNO | 1), // close: not listed
    ] {
        assert_eq!(run(&prog, audit, nr, [0; 6]), want, "nr {nr}");
    }
    // x86-64 numbers under x86-64's audit arch, and 32-bit Arm's, are killed.
    assert_eq!(
        run(&prog, Arch::X86_64.audit_arch(), 0, [0; 6]),
        RET_KILL_PROCESS
    );
    assert_eq!(run(&prog, 0x4000_0028, 3, [0; 6]), RET_KILL_PROCESS);
    // The same policy for x86-64 allows by x86-64's numbers and keeps its x32 check.
    let x = compile(&Policy::parse(SMALL, "small.json", Arch::X86_64).unwrap()).unwrap();
    let x86 = Arch::X86_64.audit_arch();
    assert_eq!(run(&x, x86, nr("open"), [0; 6]), RET_ALLOW);
    assert_eq!(run(&x, x86, nr("poll"), [0; 6]), RET_KILL_PROCESS);
    assert_eq!(
        run(&x, x86, nr("read") | 0x4000_0000, [0; 6]),
        RET_KILL_PROCESS
    );
}

#[test]
fn calls_another_architecture_has_are_skipped_with_a_note() {
    let p = Policy::parse(SMALL, "small.json", Arch::Aarch64).unwrap();
    assert_eq!(p.skipped, ["open", "stat", "fork", "poll"]);
    let note = p.skipped_note("profiles/seccomp/small.json").unwrap();
    assert!(
        note.starts_with(
            "profiles/seccomp/small.json: 4 system call(s) it names do not exist on aarch64 and are left out of its filter: open, stat, fork, poll;"
        ),
        "{note}"
    );
    assert_eq!(p.log_mode().skipped, p.skipped);
    let x = Policy::parse(SMALL, "small.json", Arch::X86_64).unwrap();
    assert!(x.skipped.is_empty());
    assert_eq!(x.skipped_note("small.json"), None);
    // A name no architecture has is still a mistake, on either.
    let bad = SMALL.replace("\"fork\"", "\"frok\"");
    for &arch in Arch::ALL {
        let e = Policy::parse(&bad, "small.json", arch)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("syscalls[0]: unknown system call \"frok\""),
            "{arch}: {e}"
        );
    }
}

/// Every baseline shipped in profiles/seccomp, by file name.
fn baselines() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/seccomp");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_str().unwrap().to_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(out.len() >= 4, "{out:?}");
    out
}

/// x86-64 calls that arm64's generic table does not have, and the call glibc makes for each
/// there instead (none: nothing to allow, e.g. arch_prctl, the TLS register is set directly).
const ARM64_FORMS: &[(&str, &[&str])] = &[
    ("access", &["faccessat"]),
    ("alarm", &["setitimer"]),
    ("arch_prctl", &[]),
    ("chmod", &["fchmodat"]),
    ("chown", &["fchownat"]),
    ("creat", &["openat"]),
    ("dup2", &["dup3"]),
    ("epoll_create", &["epoll_create1"]),
    ("epoll_wait", &["epoll_pwait"]),
    ("eventfd", &["eventfd2"]),
    ("fork", &["clone"]),
    ("futimesat", &["utimensat"]),
    ("get_thread_area", &[]),
    ("getdents", &["getdents64"]),
    ("getpgrp", &["getpgid"]),
    ("inotify_init", &["inotify_init1"]),
    ("lchown", &["fchownat"]),
    ("link", &["linkat"]),
    ("lstat", &["newfstatat"]),
    ("mkdir", &["mkdirat"]),
    ("mknod", &["mknodat"]),
    ("open", &["openat"]),
    ("pause", &["ppoll"]),
    ("pipe", &["pipe2"]),
    ("poll", &["ppoll"]),
    ("readlink", &["readlinkat"]),
    ("rename", &["renameat"]),
    ("rmdir", &["unlinkat"]),
    ("select", &["pselect6"]),
    ("set_thread_area", &[]),
    ("signalfd", &["signalfd4"]),
    ("stat", &["newfstatat"]),
    ("symlink", &["symlinkat"]),
    ("time", &["clock_gettime"]),
    ("unlink", &["unlinkat"]),
    ("utime", &["utimensat"]),
    ("utimes", &["utimensat"]),
    ("vfork", &["clone"]),
];

#[test]
fn the_baselines_compile_for_every_architecture_and_allow_the_arm64_forms() {
    for (file, text) in baselines() {
        for &arch in Arch::ALL {
            for uid in [0, 1000] {
                let t = Target::new(arch, uid, Some("6.1.0-28-cloud"));
                let p = Policy::parse_for(&text, &file, &t)
                    .unwrap_or_else(|e| panic!("{file} for {arch}: {e}"));
                let prog = compile(&p).unwrap_or_else(|e| panic!("{file} for {arch}: {e}"));
                assert_eq!(prog[1].k, arch.audit_arch(), "{file}");
                // The baselines mark their x86-64-only calls (`includes.arches`): nothing is
                // left out with a note on either architecture.
                assert!(p.skipped.is_empty(), "{file} {arch}: {:?}", p.skipped);
            }
        }
        let x86 = Policy::parse(&text, &file, Arch::X86_64).unwrap();
        let arm = Policy::parse(&text, &file, Arch::Aarch64).unwrap();
        let (x86_allowed, _) = x86.allowed();
        let (arm_allowed, _) = arm.allowed();
        for call in &x86_allowed {
            if table::number(Arch::Aarch64, call).is_some() {
                // A call both have is decided the same on both.
                assert!(arm_allowed.contains(call), "{file}: {call} on aarch64");
                continue;
            }
            let forms = ARM64_FORMS
                .iter()
                .find(|(n, _)| n == call)
                .unwrap_or_else(|| panic!("{file}: {call}: which call does arm64 make for it?"))
                .1;
            for form in forms {
                assert!(
                    arm_allowed.contains(form),
                    "{file}: allows {call} on x86-64 but not {form}, what arm64 makes for it"
                );
            }
        }
        // Nothing opens on arm64 that x86-64 does not allow, but the arm64 forms.
        for call in &arm_allowed {
            assert!(
                x86_allowed.contains(call)
                    || ARM64_FORMS
                        .iter()
                        .any(|(x, forms)| { forms.contains(call) && x86_allowed.contains(x) }),
                "{file}: {call} is allowed on aarch64 only"
            );
        }
    }
}
