//! lambda-python without a VM (a fake kernel): a Python Lambda handler run by AWS's published
//! `awslambdaric` wheel builds offline from the hashes its requirements file pins, bit-identically
//! twice; its SBOM names the client and its dependencies (`pkg:pypi/…`) and the Debian packages
//! it needs beyond python3.11-minimal. Then the image's own interpreter runs
//! `python3.11 -m awslambdaric handler.handler` in a bubblewrap chroot of the built root, under
//! the image's own seccomp filter, against the init's Runtime API server (stratos-init's
//! `lambda::Server`, on loopback): every import the client makes at run time is in the image,
//! and the published client and our server understand each other (a response, a function
//! error, a handler past its deadline and the restarted runtime's next answer). (Booting it is
//! the VM tier's.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stratos_init::lambda::{LambdaEvent, Server, ServerConfig, INVOKE_PATH};

use crate::common::*;

/// profiles/lambda-python.toml (and its requirements file) with the fake kernel in place of
/// the one built from source.
fn profile(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("bzImage"), fake_kernel()).unwrap();
    let req = "lambda-python.requirements.txt";
    std::fs::copy(root().join("profiles").join(req), dir.join(req)).unwrap();
    copy_profile("lambda-python", dir, |text| {
        let (head, rest) = text.split_once("[kernel]\n").unwrap();
        let (_, init) = rest.split_once("[init]\n").unwrap();
        format!(
            "{head}[kernel]\nprebuilt = \"{}\"\ncmdline = \"console=ttyS0\"\n\n[init]\n{init}",
            dir.join("bzImage").display()
        )
    })
}

fn build(profile: &Path, out: &Path) {
    stratos(&shared_cache())
        .arg("build")
        .arg(profile)
        .arg("--out")
        .arg(out)
        .args(["--offline", "-q"])
        .assert()
        .success();
}

/// The runtime in its sandbox; killed when dropped.
struct Runtime(Child);

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `python3.11 -B -m awslambdaric handler.handler` as the image's init starts it (its argv,
/// cwd and the Lambda environment), in a chroot of `root` under the image's seccomp filter;
/// its output goes to `log`.
fn start_runtime(root: &Path, api: SocketAddr, log: &Path) -> Runtime {
    let init: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("etc/stratos/init.json")).unwrap())
            .unwrap();
    assert_eq!(init["seccomp"]["mode"], "enforce", "{init}");
    let filter = std::fs::File::open(root.join("etc/stratos/seccomp.bpf")).unwrap();
    let argv: Vec<String> = serde_json::from_value(init["runtime"]["argv"].clone()).unwrap();
    assert_eq!(
        argv,
        [
            "/usr/bin/python3.11",
            "-B",
            "-m",
            "awslambdaric",
            "handler.handler"
        ]
    );
    let mut c = Command::new("bwrap");
    c.arg("--bind")
        .arg(root)
        .arg("/")
        .args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"])
        .args(["--chdir", init["runtime"]["cwd"].as_str().unwrap()])
        .args(["--die-with-parent", "--clearenv"]);
    let env = [
        ("LANG", "C.UTF-8"),
        ("AWS_LAMBDA_RUNTIME_API", &api.to_string()),
        ("_HANDLER", "handler.handler"),
        ("LAMBDA_TASK_ROOT", "/var/task"),
        ("AWS_LAMBDA_FUNCTION_NAME", "lambda-python"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("TZ", ":UTC"),
    ];
    for (k, v) in env {
        c.args(["--setenv", k, v]);
    }
    // bwrap reads the filter (the image's compiled BPF program) from an inherited descriptor and
    // loads it just before it executes the runtime.
    rustix::io::fcntl_setfd(&filter, rustix::io::FdFlags::empty()).unwrap();
    {
        use std::os::fd::AsRawFd;
        c.args(["--seccomp", &filter.as_raw_fd().to_string()]);
    }
    c.args(&argv);
    let log = std::fs::File::create(log).unwrap();
    c.stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    Runtime(c.spawn().unwrap())
}

/// One invocation on RIE's path: (status, X-Amz-Function-Error, X-Amzn-RequestId, body).
fn invoke(addr: SocketAddr, event: &str) -> (u16, Option<String>, String, serde_json::Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {INVOKE_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{event}",
        event.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(": "))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_owned())
    };
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {raw}"));
    (
        status,
        header("X-Amz-Function-Error"),
        header("X-Amzn-RequestId").unwrap_or_default(),
        body,
    )
}

/// Waits (at most `within`) for the server to report the runtime's first `GET …/next`.
fn wait_ready(server: &Server, rt: &mut Runtime, log: &Path, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let events = server.take_events();
        if events.contains(&LambdaEvent::Ready) {
            return start.elapsed();
        }
        assert!(events.is_empty(), "{events:?}");
        if let Some(status) = rt.0.try_wait().unwrap() {
            panic!(
                "the runtime ended ({status}) before it asked for an invocation:\n{}",
                std::fs::read_to_string(log).unwrap()
            );
        }
        assert!(
            start.elapsed() < within,
            "the runtime never asked for an invocation:\n{}",
            std::fs::read_to_string(log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The built root, unpacked from its archive.
fn unpack(out: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    let ok = Command::new("tar")
        .args(["--zstd", "-xf"])
        .arg(out.join("rootfs.tar.zst"))
        .arg("-C")
        .arg(dest)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cannot unpack {}", out.display());
}

#[test]
fn lambda_python_builds_offline_reproducibly_and_awslambdaric_answers_from_the_image() {
    for t in ["bwrap", "tar", "zstd"] {
        require_tool(t);
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let p = profile(w);
    let (a, b) = (w.join("a"), w.join("b"));
    build(&p, &a);
    build(&p, &b);
    assert_eq!(digests(&a), digests(&b), "two builds differ");

    let sbom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("sbom.cdx.json")).unwrap()).unwrap();
    validate_sbom(&sbom).unwrap();
    let ric = component(&sbom, "pkg:pypi/awslambdaric@4.2.2");
    assert_eq!(ric["licenses"][0]["expression"], "Apache-2.0", "{ric}");
    component(&sbom, "pkg:pypi/simplejson@4.3.0");
    component(&sbom, "pkg:pypi/snapshot-restore-py@1.0.0");
    let purls: Vec<&str> = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .collect();
    for deb in ["libpython3.11-stdlib", "libstdc++6"] {
        let prefix = format!("pkg:deb/debian/{deb}@");
        assert!(
            purls.iter().any(|p| p.starts_with(&prefix)),
            "{deb} not in the SBOM: {purls:?}"
        );
    }

    let root = w.join("root");
    unpack(&a, &root);
    let server = Server::start(
        &ServerConfig {
            api: "127.0.0.1:0".parse().unwrap(),
            invoke: "127.0.0.1:0".parse().unwrap(),
            timeout: Duration::from_secs(2),
            init_timeout: stratos_init::lambda::INIT_TIMEOUT,
            function_arn: stratos_init::lambda::function_arn("lambda-python"),
        },
        Box::new(|| {}),
    )
    .unwrap();
    let log = w.join("runtime.log");
    let mut rt = start_runtime(&root, server.api_addr, &log);
    let ready = wait_ready(&server, &mut rt, &log, Duration::from_secs(60));
    eprintln!("awslambdaric: exec -> first GET …/next in {ready:?}");
    let console = || std::fs::read_to_string(&log).unwrap();

    let (status, error, id, body) = invoke(server.invoke_addr, r#"{"name":"StratOS"}"#);
    assert_eq!((status, error), (200, None), "{body} {}", console());
    assert_eq!(body["message"], "Hello, StratOS!", "{body}");
    assert_eq!(body["request_id"], id.as_str(), "{body}");
    assert_eq!(body["function_name"], "lambda-python", "{body}");
    let remaining = body["remaining_ms"].as_u64().unwrap();
    assert!((1..=2000).contains(&remaining), "{body}");

    let (status, error, id2, body) = invoke(server.invoke_addr, r#"{"fail":true}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(error.as_deref(), Some("Unhandled"), "{body}");
    assert_ne!(id2, id);
    assert_eq!(body["errorType"], "HandlerFailed", "{body}");
    assert_eq!(body["errorMessage"], "asked to fail", "{body}");
    assert_eq!(body["requestId"], id2.as_str(), "{body}");

    // Past the 2 s deadline: Lambda's timeout document, and the server asks for the runtime to
    // be killed; a new one (as the init starts it) takes the next event.
    let (status, error, id3, body) = invoke(server.invoke_addr, r#"{"sleep_ms":5000}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(error.as_deref(), Some("Unhandled"), "{body}");
    assert_eq!(body["errorType"], "Sandbox.Timedout", "{body}");
    assert!(rt.0.try_wait().unwrap().is_none(), "{}", console());
    assert_eq!(
        server.take_events(),
        [LambdaEvent::TimedOut {
            request_id: id3,
            timeout_ms: 2000
        }]
    );
    drop(rt);
    server.runtime_ended("killed by signal 9 (SIGKILL)");
    let mut rt = start_runtime(&root, server.api_addr, &log);
    wait_ready(&server, &mut rt, &log, Duration::from_secs(60));
    let (status, error, _, body) = invoke(server.invoke_addr, r#"{"name":"again"}"#);
    assert_eq!((status, error), (200, None), "{body} {}", console());
    assert_eq!(body["message"], "Hello, again!", "{body}");
    assert!(rt.0.try_wait().unwrap().is_none(), "{}", console());
}
