//! The documentation's walkthroughs, run as printed: the ```sh blocks of docs/rollout.md and the
//! README's "Step by step" block are extracted literally and executed in order, each document
//! as one `bash -euo pipefail` script in an empty directory, with the `stratos` these tests
//! were built with first on the PATH. A renamed flag, a missing step or a command that fails as
//! written fails the test.
//!
//! What a real user has and a test cannot (a kernel built from source, QEMU and a guest, a web
//! server on a fixed port, `/etc` and `/var/lib`) is substituted, and only by [`SUBSTITUTIONS`]:
//! every entry must match the document (an entry that no longer matches fails too), nothing else
//! is changed. The guest is `tests/fixtures/fake-guest.py` (a QEMU stand-in that boots in a
//! blink and answers every call, and fakes QEMU's side of a snapshot); the real guest is the VM tier's.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;

/// One substitution: `from` (as printed in the document) becomes `to`, in which `{profile}`,
/// `{tmp}` and `{port}` stand for the fixture profile, a private directory and a free loopback
/// port. `why` is the reason, for whoever reads a failure.
struct Substitution {
    from: &'static str,
    to: &'static str,
    why: &'static str,
}

const SUBSTITUTIONS: &[Substitution] = &[
    Substitution {
        from: "cargo build --release --workspace",
        to: "true",
        why: "the test runs the stratos (and stratos-init) it was built with",
    },
    Substitution {
        from: "export PATH=$PWD/target/x86_64-unknown-linux-gnu/release:$PATH",
        to: "export PATH=$PATH",
        why: "the test's PATH starts with the directory of that stratos",
    },
    Substitution {
        from: "profiles/hello.toml",
        to: "{profile}",
        why: "the real hello builds a kernel from source (VM tier): the fixture is hello's \
              [image] with a fake kernel",
    },
    Substitution {
        from: "busybox httpd -f -p 127.0.0.1:8000 -h releases/ >/dev/null 2>&1 &",
        to: "busybox httpd -f -p 127.0.0.1:{port} -h releases/ >/dev/null 2>&1 &\nwait_for_port {port}",
        why: "a free port instead of 8000; the script waits for the server a person would not race",
    },
    Substitution {
        from: "http://127.0.0.1:8000/",
        to: "http://127.0.0.1:{port}/",
        why: "the server above",
    },
    Substitution {
        from: "/etc/stratos",
        to: "{tmp}/etc/stratos",
        why: "no test writes to the host's /etc",
    },
    Substitution {
        from: "/var/lib/stratos",
        to: "{tmp}/var/lib/stratos",
        why: "no test writes to the host's /var/lib",
    },
];

/// The script's first lines (not from the document): stop every job it started when it ends,
/// and `wait_for_port` for the substituted server.
const PRELUDE: &str = r#"trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
wait_for_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    return 1
}
"#;

/// The ```sh blocks of `markdown`, in order (only those under the heading `section`, if given).
pub(crate) fn sh_blocks(markdown: &str, section: Option<&str>) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut inside: Option<String> = None;
    let mut in_section = section.is_none();
    for line in markdown.lines() {
        if let Some(b) = inside.as_mut() {
            if line.trim_end() == "```" {
                blocks.push(inside.take().unwrap());
            } else {
                b.push_str(line);
                b.push('\n');
            }
            continue;
        }
        if let Some(title) = line.strip_prefix("## ") {
            in_section = section.map_or(true, |s| title.trim() == s);
        } else if line.trim_end() == "```sh" && in_section {
            inside = Some(String::new());
        }
    }
    assert!(inside.is_none(), "a ```sh block is not closed");
    blocks
}

/// The blocks as one script, every substitution applied (each must match).
fn script(blocks: &[String], profile: &Path, tmp: &Path, port: u16) -> String {
    let mut s = blocks.join("");
    for sub in SUBSTITUTIONS {
        let to = sub
            .to
            .replace("{profile}", profile.to_str().unwrap())
            .replace("{tmp}", tmp.to_str().unwrap())
            .replace("{port}", &port.to_string());
        s = s.replace(sub.from, &to);
    }
    let table: String = SUBSTITUTIONS
        .iter()
        .map(|t| format!("# substituted {:?}: {}\n", t.from, t.why))
        .collect();
    format!("{table}{PRELUDE}{s}")
}

/// The substitutions that match none of `texts`: each must still describe the documents.
fn unused_substitutions(texts: &[String]) -> Vec<&'static str> {
    SUBSTITUTIONS
        .iter()
        .filter(|s| !texts.iter().any(|t| t.contains(s.from)))
        .map(|s| s.from)
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The fixture profile (fake kernel, see [`Fixture`]) with `profiles/hello.toml`'s name, version
/// (the cohort depends on the version) and architectures (the aarch64 build uses the cross-built
/// init, `target/aarch64-unknown-linux-gnu/debug/stratos-init`, which ci/test builds).
fn fixture_profile() -> Fixture {
    let hello: toml::Value =
        toml::from_str(&std::fs::read_to_string(root().join("profiles/hello.toml")).unwrap())
            .unwrap();
    let image = &hello["image"];
    let profile = PROFILE
        .replace("name = \"fixture\"", &format!("name = {}", image["name"]))
        .replace(
            "version = \"1.2.3\"",
            &format!("version = {}\narch = {}", image["version"], image["arch"]),
        )
        .replace(
            "[init]",
            "[kernel.aarch64]\nprebuilt = \"Image-arm64\"\ncmdline = \"console=ttyAMA0 panic=-1\"\n\n[init]",
        );
    let fx = Fixture::new();
    fx.write("Image-arm64", &fake_arm64_kernel());
    fx.write("profile.toml", profile.as_bytes());
    fx
}

/// What running a document's script printed.
struct Ran {
    stdout: String,
    stderr: String,
}

/// Runs the sh blocks of `doc` (under `section`) in `work` as one `bash -euo pipefail` script.
fn run_doc(doc: &str, section: Option<&str>, work: &Path) -> Ran {
    let text = std::fs::read_to_string(root().join(doc)).unwrap();
    if text.contains("busybox httpd") {
        require_tool("busybox");
    }
    let blocks = sh_blocks(&text, section);
    assert!(!blocks.is_empty(), "{doc}: no ```sh block");
    let tmp = work.join("host");
    let dir = work.join("walk");
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = fixture_profile();
    let port = free_port();
    let s = script(&blocks, &fixture.profile(), &tmp, port);
    std::fs::write(work.join("walkthrough.sh"), &s).unwrap();
    require_init();
    let path = format!(
        "{}:{}",
        bin().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let child = Command::new("bash")
        .args(["-euo", "pipefail", "-x"])
        .arg(work.join("walkthrough.sh"))
        .current_dir(&dir)
        .env("PATH", path)
        .env("STRATOS_QEMU", root().join("tests/fixtures/fake-guest.py"))
        .env("STRATOS_CACHE", work.join("cache"))
        .env_remove("STRATOS_SIGNING_KEY")
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let ran = Ran {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        out.status.success(),
        "{doc}: the walkthrough failed ({}); script {}\n--- stdout\n{}\n--- stderr (the last command shown with +)\n{}",
        out.status,
        work.join("walkthrough.sh").display(),
        ran.stdout,
        ran.stderr
    );
    if std::env::var_os("STRATOS_WALK_SHOW").is_some() {
        eprintln!("--- stdout\n{}\n--- stderr\n{}", ran.stdout, ran.stderr);
    }
    ran
}

/// The JSON objects printed in `out`, each starting at a line that starts with `{`.
fn json_objects(out: &str) -> Vec<serde_json::Value> {
    let mut found = Vec::new();
    let mut at = 0;
    for line in out.split_inclusive('\n') {
        if line.starts_with('{') {
            if let Some(Ok(v)) = serde_json::Deserializer::from_str(&out[at..])
                .into_iter::<serde_json::Value>()
                .next()
            {
                found.push(v);
            }
        }
        at += line.len();
    }
    found
}

#[test]
fn every_substitution_still_matches_the_documents() {
    let texts: Vec<String> = [
        ("README.md", Some("Step by step")),
        ("docs/rollout.md", None),
    ]
    .iter()
    .flat_map(|(doc, section)| {
        sh_blocks(
            &std::fs::read_to_string(root().join(doc)).unwrap(),
            *section,
        )
    })
    .collect();
    let unused = unused_substitutions(&texts);
    assert!(
        unused.is_empty(),
        "substitutions that no longer match the documents (update walkthrough.rs): {unused:?}"
    );
}

#[test]
fn extraction_takes_only_sh_blocks_of_the_section() {
    let md =
        "# T\n```sh\na\n```\n## One\n```sh\nb\nc\n```\n```text\nd\n```\n## Two\n```sh\ne\n```\n";
    assert_eq!(sh_blocks(md, None), ["a\n", "b\nc\n", "e\n"]);
    assert_eq!(sh_blocks(md, Some("One")), ["b\nc\n"]);
}

#[test]
fn the_readme_step_by_step_runs_as_printed() {
    let work = tempfile::tempdir().unwrap();
    let ran = run_doc("README.md", Some("Step by step"), work.path());
    let dir = work.path().join("walk");
    assert!(dir.join("keys/release.key").is_file());
    assert!(dir.join("out/hello/manifest.sig").is_file());
    assert!(dir.join("out/hello.snap/snapshot.json").is_file());
    for path in ["/cgi-bin/hello", "/cgi-bin/id"] {
        assert!(
            ran.stdout.contains(&format!(
                "HTTP 200 from {path} ---\nhello from the fake guest"
            )),
            "the answer to {path} (the restored clone's for /cgi-bin/id) is printed: {}",
            ran.stdout
        );
    }
}

#[test]
fn the_rollout_walkthrough_runs_as_printed() {
    use stratos::channel::doc::ReportFile;
    let work = tempfile::tempdir().unwrap();
    let ran = run_doc("docs/rollout.md", None, work.path());
    let dir = work.path().join("walk");
    // The node the doc says is selected was, and the check said why.
    let check = json_objects(&ran.stdout)
        .into_iter()
        .find(|v| v.get("cohort").is_some())
        .unwrap_or_else(|| panic!("no `update check --json` output: {}", ran.stdout));
    assert_eq!(check["selected"], true, "{check}");
    // The cohorts the doc names are the ones a node computes.
    let doc = std::fs::read_to_string(root().join("docs/rollout.md")).unwrap();
    for (node, c) in [("node-25", 102), ("node-17", 6681)] {
        assert_eq!(stratos::channel::cohort(node, "canary", "0.1.0"), c);
        assert!(
            doc.contains(&format!("{node}'s cohort is {c}")),
            "docs/rollout.md must name {node}'s cohort, {c}"
        );
    }
    // The canary applied it and reported a pass, signed: the gate widened canary on it.
    let report: ReportFile =
        serde_json::from_slice(&std::fs::read(dir.join("reports/node-25.json")).unwrap()).unwrap();
    assert!(report.report.passed, "{:?}", report.report);
    assert!(report.signature.is_some());
    let state = work.path().join("host/var/lib/stratos");
    let current: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("current.json")).unwrap()).unwrap();
    assert_eq!(
        current["manifest_sha256"],
        report.report.manifest_sha256.to_string()
    );
    let canary = stratos::channel::parse_channel(
        &std::fs::read(dir.join("releases/channels/canary.json")).unwrap(),
        "canary",
    )
    .unwrap();
    assert_eq!(
        canary.tracks[0]
            .rollout
            .reached_bp(stratos::channel::now() + 60),
        10_000
    );
    assert!(
        !ran.stderr.contains("the rollout was not widened"),
        "{}",
        ran.stderr
    );
    two_architectures(work.path(), &ran);
}

/// "Two architectures": the aarch64 build next to the x86_64 one, each node with its own, and
/// stable's aarch64 rollout moved without the x86_64 one.
fn two_architectures(work: &Path, ran: &Ran) {
    use stratos::arch::Arch;
    let dir = work.join("walk");
    let doc = |name: &str| {
        stratos::channel::parse_channel(
            &std::fs::read(dir.join(format!("releases/channels/{name}.json"))).unwrap(),
            name,
        )
        .unwrap()
    };
    let canary = doc("canary");
    assert_eq!(canary.arches(), [Arch::X86_64, Arch::Aarch64]);
    let arm = canary.track(Arch::Aarch64).unwrap();
    assert_eq!(
        (arm.image.name.as_str(), arm.image.version.as_str()),
        ("hello", "0.1.0")
    );
    // The doc's aarch64 node is within canary's 10%.
    let doc_text = std::fs::read_to_string(root().join("docs/rollout.md")).unwrap();
    assert_eq!(stratos::channel::cohort("node-40", "canary", "0.1.0"), 706);
    assert!(doc_text.contains("cohort for hello 0.1.0 on canary is 706"));
    // The x86_64 node found nothing new; the aarch64 node runs the aarch64 image.
    assert!(
        ran.stdout
            .contains("hello 0.1.0 (x86_64): up to date: already running hello 0.1.0"),
        "{}",
        ran.stdout
    );
    let current: serde_json::Value = serde_json::from_slice(
        &std::fs::read(work.join("host/var/lib/stratos-aarch64/current.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        current["manifest_sha256"],
        arm.image.manifest_sha256.to_string()
    );
    // Stable: the aarch64 rollout advanced to its second wave and halted; x86_64's did not move.
    let stable = doc("stable");
    let (x86, arm) = (
        stable.track(Arch::X86_64).unwrap(),
        stable.track(Arch::Aarch64).unwrap(),
    );
    let now = stratos::channel::now();
    assert_eq!(arm.rollout.reached_bp(now), 2500);
    assert!(arm.halted && !x86.halted);
    assert_ne!(x86.rollout, arm.rollout);
}

/// The `run:` steps of a GitHub Actions workflow, in order: `run: COMMAND` or a `run: |` block
/// (the lines indented deeper than `run:`, their common indentation removed).
fn workflow_run_steps(yaml: &str) -> Vec<String> {
    let mut steps = Vec::new();
    let mut lines = yaml.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        let Some(rest) = trimmed.strip_prefix("run:") else {
            continue;
        };
        let rest = rest.trim();
        if rest != "|" {
            steps.push(format!("{rest}\n"));
            continue;
        }
        let key_indent = line.len() - line.trim_start().len();
        let mut block = String::new();
        let mut indent = None;
        while let Some(next) = lines.peek() {
            let n = next.len() - next.trim_start().len();
            if !next.trim().is_empty() && n <= key_indent {
                break;
            }
            let i = *indent.get_or_insert(n);
            block.push_str(next.get(i..).unwrap_or(""));
            block.push('\n');
            lines.next();
        }
        steps.push(block);
    }
    steps
}

#[test]
fn workflow_steps_are_extracted_in_order() {
    let y = "jobs:\n  a:\n    steps:\n      - run: one\n      - name: x\n        run: |\n          two\n            three\n\n          four\n      - uses: y\n";
    assert_eq!(workflow_run_steps(y), ["one\n", "two\n  three\n\nfour\n"]);
}

/// docs/ci/github-actions.yml's shell steps, run in order as one script the way the runner
/// would (its `env:` values exported, its secrets made with `stratos keygen`, `$GITHUB_OUTPUT`
/// and friends files), the publish step included (as on a tag). Substituted: `./ci/setup` and
/// the `cargo build` (done before any test runs), the profile (the fake-kernel fixture with
/// hello's name) and QEMU (the fake guest). A release repository for the publish step is made
/// first, as its operator would have (docs/rollout.md, step 1).
#[test]
fn the_ci_example_s_steps_run_as_written() {
    let yaml = std::fs::read_to_string(root().join("docs/ci/github-actions.yml")).unwrap();
    let steps = workflow_run_steps(&yaml);
    assert!(steps.len() >= 6, "{steps:?}");
    let env_value = |key: &str| {
        yaml.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("docs/ci/github-actions.yml: no env {key}"))
            .to_owned()
    };
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("repo");
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = fixture_profile();
    let mut body = steps.join("");
    for (from, to) in [
        ("./ci/setup\n", "true # ./ci/setup: run before the tests\n"),
        (
            "cargo build --release --workspace --locked\n",
            "true # cargo build: the test runs the stratos it was built with\n",
        ),
    ] {
        assert!(body.contains(from), "the workflow no longer runs {from:?}");
        body = body.replace(from, to);
    }
    let prelude = format!(
        r#"export PROFILE={profile} IMAGE={image} INVOKE={invoke}
export STRATOS_CACHE=$PWD/.stratos-cache RUNNER_TEMP={tmp} GITHUB_OUTPUT={tmp}/output GITHUB_PATH={tmp}/path
mkdir -p {tmp}
stratos keygen --out {tmp}/root >/dev/null
stratos keygen --out {tmp}/image >/dev/null
stratos keygen --out {tmp}/channel >/dev/null
stratos repo init --repo releases/ --root-key {tmp}/root.key --image-key {tmp}/image.pub --channel-key {tmp}/channel.pub >/dev/null
export STRATOS_IMAGE_KEY="$(cat {tmp}/image.key)" STRATOS_CHANNEL_KEY="$(cat {tmp}/channel.key)"
"#,
        profile = fixture.profile().display(),
        image = env_value("IMAGE"),
        invoke = env_value("INVOKE"),
        tmp = work.path().join("runner").display(),
    );
    std::fs::write(work.path().join("ci.sh"), format!("{prelude}{body}")).unwrap();
    require_init();
    let path = format!(
        "{}:{}",
        bin().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-x"])
        .arg(work.path().join("ci.sh"))
        .current_dir(&dir)
        .env("PATH", path)
        .env("STRATOS_QEMU", root().join("tests/fixtures/fake-guest.py"))
        .env_remove("STRATOS_SIGNING_KEY")
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the CI example failed; script {}\n{}",
        work.path().join("ci.sh").display(),
        stderr
    );
    let key = std::fs::read_to_string(work.path().join("runner/output")).unwrap();
    assert!(key.starts_with("key=") && key.trim().len() == 20, "{key}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("boot-test.json")).unwrap()).unwrap();
    assert_eq!(report["image"]["name"], "hello", "{report}");
    let canary = stratos::channel::parse_channel(
        &std::fs::read(dir.join("releases/channels/canary.json")).unwrap(),
        "canary",
    )
    .unwrap();
    assert_eq!(canary.tracks[0].image.name, "hello");
}
