//! `[init]`: the runtime the init starts, how, as whom, with which mounts and limits.

use std::collections::BTreeMap;

use super::spanned::Spanned;

use super::checks::{bytes_value, id, image_path, parse_size_bytes, positive_ms, IntOrString};
use super::{Ctx, ProfileError};
use crate::rootfs::ImagePath;

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawInit {
    pub argv: Spanned<Vec<String>>,
    #[serde(default)]
    pub env: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    pub cwd: Option<Spanned<String>>,
    #[serde(default)]
    pub uid: Option<Spanned<i64>>,
    #[serde(default)]
    pub gid: Option<Spanned<i64>>,
    #[serde(default)]
    pub readiness: Option<Spanned<RawReadiness>>,
    #[serde(default)]
    pub restart: Option<Spanned<String>>,
    #[serde(default)]
    pub max_restarts: Option<Spanned<i64>>,
    #[serde(default)]
    pub restart_backoff_ms: Option<Spanned<i64>>,
    #[serde(default)]
    pub restart_backoff_max_ms: Option<Spanned<i64>>,
    #[serde(default)]
    pub stop_timeout_ms: Option<Spanned<i64>>,
    #[serde(default)]
    pub tmpfs: Option<Vec<Spanned<RawTmpfs>>>,
    #[serde(default)]
    pub read_only_root: Option<bool>,
    #[serde(default)]
    pub preload: Vec<Spanned<String>>,
    /// Whether the runtime's executable and its shared-library closure are warmed (default true).
    #[serde(default)]
    pub preload_runtime: Option<bool>,
    #[serde(default)]
    pub stdio: Option<Spanned<String>>,
    #[serde(default)]
    pub limits: Option<RawLimits>,
    /// After a snapshot restore: "SIGUSR1" or "SIGUSR2" to the runtime, or "none".
    #[serde(default)]
    pub on_restore: Option<Spanned<String>>,
    /// How the host reaches the function: "http" (the runtime serves HTTP itself, the default)
    /// or "lambda" (the init serves AWS Lambda's Runtime API to it).
    #[serde(default)]
    pub interface: Option<Spanned<String>>,
    /// `[init.lambda]`: the Lambda function's settings (with `interface = "lambda"`).
    #[serde(default)]
    pub lambda: Option<Spanned<RawLambda>>,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawLambda {
    /// `_HANDLER` (e.g. "app.handler").
    #[serde(default)]
    pub handler: Option<String>,
    /// How long one invocation may run, in milliseconds (default 3000, Lambda's).
    #[serde(default)]
    pub timeout_ms: Option<i64>,
    /// `AWS_LAMBDA_FUNCTION_NAME` (default: the image's hostname).
    #[serde(default)]
    pub function_name: Option<String>,
    /// The guest port of the invoke endpoint (default 8080, RIE's).
    #[serde(default)]
    pub port: Option<i64>,
    /// `LAMBDA_TASK_ROOT` (default: `init.cwd`).
    #[serde(default)]
    pub task_root: Option<String>,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawReadiness {
    #[serde(default)]
    pub tcp: Option<i64>,
    #[serde(default)]
    pub notify: Option<bool>,
    #[serde(default)]
    pub timeout_ms: Option<i64>,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(super) enum RawTmpfs {
    Path(String),
    Table {
        path: String,
        #[serde(default)]
        size: Option<IntOrString>,
        #[serde(default)]
        mode: Option<IntOrString>,
    },
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawLimits {
    #[serde(default)]
    pub memory_max: Option<Spanned<IntOrString>>,
    #[serde(default)]
    pub memory_high: Option<Spanned<IntOrString>>,
    /// CPUs (0.5 = half a CPU) as a float or integer.
    #[serde(default)]
    #[schemars(with = "Option<f64>")]
    pub cpus: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub pids_max: Option<Spanned<i64>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Init {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: ImagePath,
    pub uid: u32,
    pub gid: u32,
    pub readiness: Option<stratos_wire::Readiness>,
    pub restart: stratos_wire::Restart,
    pub stop_timeout_ms: u64,
    pub tmpfs: Vec<stratos_wire::Tmpfs>,
    pub read_only_root: bool,
    pub preload: Vec<ImagePath>,
    /// Warm the runtime's executable and its shared-library closure (default true).
    pub preload_runtime: bool,
    pub stdio: stratos_wire::Stdio,
    pub limits: stratos_wire::Limits,
    /// The signal the runtime gets after a snapshot restore (reseeded, clock set).
    pub on_restore: Option<i32>,
    /// `interface = "lambda"`: the Lambda function's settings.
    pub lambda: Option<LambdaInit>,
}

/// `[init] interface = "lambda"` and `[init.lambda]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaInit {
    pub handler: String,
    pub timeout_ms: u64,
    /// None: the image's hostname.
    pub function_name: Option<String>,
    pub port: u16,
    pub task_root: ImagePath,
}

/// The Runtime API's port inside the VM (RIE's default), which the invoke endpoint cannot use.
pub const LAMBDA_API_PORT: u16 = 9001;

/// `[init]`.
pub(super) fn validate_init(cx: &Ctx, i: RawInit) -> Result<Init, ProfileError> {
    let argv_span = i.argv.span();
    let argv = i.argv.get_ref().clone();
    match argv.first() {
        None => {
            return Err(cx.at(
                argv_span,
                "init.argv",
                "must name the runtime to start, e.g. [\"/bin/busybox\", \"httpd\", \"-f\"]",
            ))
        }
        Some(a0) => {
            ImagePath::parse(a0).map_err(|e| {
                cx.at(
                    argv_span.clone(),
                    "init.argv[0]",
                    format!("{e} (the runtime is executed without a PATH search)"),
                )
            })?;
        }
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(cx.at(argv_span, "init.argv", "arguments cannot contain NUL bytes"));
    }
    let mut env = BTreeMap::new();
    if let Some(e) = &i.env {
        for (k, v) in e.get_ref() {
            if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
                return Err(cx.at(e.span(), format!("init.env.{k}"), "environment names cannot be empty or contain '=' or NUL; values cannot contain NUL"));
            }
            env.insert(k.clone(), v.clone());
        }
    }
    let cwd = match &i.cwd {
        Some(c) => image_path(cx, c, "init.cwd")?,
        None => ImagePath::root(),
    };
    Ok(Init {
        argv,
        env,
        uid: id(cx, i.uid.as_ref(), "init.uid")?,
        gid: id(cx, i.gid.as_ref(), "init.gid")?,
        readiness: readiness(cx, i.readiness.as_ref())?,
        restart: restart(cx, &i)?,
        stop_timeout_ms: match &i.stop_timeout_ms {
            Some(v) => positive_ms(cx, v, "init.stop-timeout-ms")?,
            None => 10_000,
        },
        tmpfs: tmpfs(cx, i.tmpfs.as_deref())?,
        read_only_root: i.read_only_root.unwrap_or(true),
        preload: i
            .preload
            .iter()
            .enumerate()
            .map(|(n, p)| image_path(cx, p, &format!("init.preload[{n}]")))
            .collect::<Result<_, _>>()?,
        preload_runtime: i.preload_runtime.unwrap_or(true),
        stdio: match &i.stdio {
            None => stratos_wire::Stdio::Console,
            Some(s) if s.get_ref() == "console" => stratos_wire::Stdio::Console,
            Some(s) if s.get_ref() == "null" => stratos_wire::Stdio::Null,
            Some(s) => {
                return Err(cx.at(s.span(), "init.stdio", "must be \"console\" or \"null\""))
            }
        },
        limits: limits(cx, i.limits.as_ref())?,
        on_restore: on_restore(cx, i.on_restore.as_ref())?,
        lambda: lambda(cx, &i, &cwd)?,
        cwd,
    })
}

/// `[init] interface` and `[init.lambda]`: the Lambda interface, or none (HTTP).
fn lambda(cx: &Ctx, i: &RawInit, cwd: &ImagePath) -> Result<Option<LambdaInit>, ProfileError> {
    let lambda = match &i.interface {
        None => false,
        Some(v) if v.get_ref() == "http" => false,
        Some(v) if v.get_ref() == "lambda" => true,
        Some(v) => {
            return Err(cx.at(
                v.span(),
                "init.interface",
                "must be \"http\" (the runtime serves HTTP) or \"lambda\" (the init serves AWS Lambda's Runtime API to it)",
            ))
        }
    };
    if !lambda {
        return match &i.lambda {
            Some(l) => Err(cx.at(
                l.span(),
                "init.lambda",
                "is only read with interface = \"lambda\"; add it to [init] or remove [init.lambda]",
            )),
            None => Ok(None),
        };
    }
    if let Some(r) = &i.readiness {
        return Err(cx.at(
            r.span(),
            "init.readiness",
            "with interface = \"lambda\" the runtime is ready when it first asks for an invocation; remove init.readiness",
        ));
    }
    let (span, raw) = match &i.lambda {
        Some(l) => (l.span(), Some(l.get_ref())),
        None => (0..0, None),
    };
    let key = |k: &str| format!("init.lambda.{k}");
    let timeout_ms = match raw.and_then(|r| r.timeout_ms) {
        None => 3000,
        Some(t) => u64::try_from(t)
            .ok()
            .filter(|&n| (1..=900_000).contains(&n))
            .ok_or_else(|| {
                cx.at(
                    span.clone(),
                    key("timeout-ms"),
                    "must be between 1 and 900000 (Lambda's limit, 15 minutes)",
                )
            })?,
    };
    let port = match raw.and_then(|r| r.port) {
        None => 8080,
        Some(p) => u16::try_from(p)
            .ok()
            .filter(|&p| p > 0 && p != LAMBDA_API_PORT)
            .ok_or_else(|| {
                cx.at(
                    span.clone(),
                    key("port"),
                    format!("must be a TCP port (1-65535) other than {LAMBDA_API_PORT}, the Runtime API's"),
                )
            })?,
    };
    let function_name = match raw.and_then(|r| r.function_name.clone()) {
        None => None,
        Some(n)
            if (1..=64).contains(&n.len())
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Some(n)
        }
        Some(_) => {
            return Err(cx.at(
                span,
                key("function-name"),
                "must be 1 to 64 letters, digits, '-' or '_' (Lambda's function names)",
            ))
        }
    };
    let handler = raw.and_then(|r| r.handler.clone()).unwrap_or_default();
    if handler.contains('\0') {
        return Err(cx.at(span, key("handler"), "cannot contain NUL bytes"));
    }
    let task_root = match raw.and_then(|r| r.task_root.as_deref()) {
        None => cwd.clone(),
        Some(t) => ImagePath::parse(t).map_err(|e| cx.at(span, key("task-root"), e.to_string()))?,
    };
    Ok(Some(LambdaInit {
        handler,
        timeout_ms,
        function_name,
        port,
        task_root,
    }))
}

/// `[init] on-restore`: the signal a restored runtime gets (the init forwards it like any
/// other), or none.
fn on_restore(cx: &Ctx, v: Option<&Spanned<String>>) -> Result<Option<i32>, ProfileError> {
    match v.map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "none")) => Ok(None),
        Some((_, "SIGUSR1")) => Ok(Some(10)),
        Some((_, "SIGUSR2")) => Ok(Some(12)),
        Some((v, other)) => Err(cx.at(
            v.span(),
            "init.on-restore",
            format!("{other:?} is not allowed here; use \"SIGUSR1\", \"SIGUSR2\" or \"none\""),
        )),
    }
}

fn readiness(
    cx: &Ctx,
    r: Option<&Spanned<RawReadiness>>,
) -> Result<Option<stratos_wire::Readiness>, ProfileError> {
    let Some(r) = r else { return Ok(None) };
    let span = r.span();
    let v = r.get_ref();
    let timeout_ms = match v.timeout_ms {
        Some(t) => u64::try_from(t)
            .ok()
            .filter(|&n| (1..=3_600_000).contains(&n))
            .ok_or_else(|| {
                cx.at(
                    span.clone(),
                    "init.readiness.timeout-ms",
                    "must be between 1 and 3600000",
                )
            })?,
        None => 30_000,
    };
    match (v.tcp, v.notify) {
        (Some(port), None | Some(false)) => {
            let port = u16::try_from(port).ok().filter(|&p| p > 0).ok_or_else(|| {
                cx.at(
                    span.clone(),
                    "init.readiness.tcp",
                    "must be a TCP port (1-65535)",
                )
            })?;
            Ok(Some(stratos_wire::Readiness::Tcp { port, timeout_ms }))
        }
        (None, Some(true)) => Ok(Some(stratos_wire::Readiness::Notify { timeout_ms })),
        _ => Err(cx.at(
            span,
            "init.readiness",
            "use either { tcp = PORT } or { notify = true }",
        )),
    }
}

fn restart(cx: &Ctx, i: &RawInit) -> Result<stratos_wire::Restart, ProfileError> {
    let mut r = stratos_wire::Restart::default();
    if let Some(p) = &i.restart {
        r.policy = match p.get_ref().as_str() {
            "never" => stratos_wire::RestartPolicy::Never,
            "on-failure" => stratos_wire::RestartPolicy::OnFailure,
            "always" => stratos_wire::RestartPolicy::Always,
            _ => {
                return Err(cx.at(
                    p.span(),
                    "init.restart",
                    "must be \"never\", \"on-failure\" or \"always\"",
                ))
            }
        };
    }
    if let Some(m) = &i.max_restarts {
        r.max_restarts = u32::try_from(*m.get_ref())
            .ok()
            .filter(|&n| n <= 1000)
            .ok_or_else(|| cx.at(m.span(), "init.max-restarts", "must be between 0 and 1000"))?;
    }
    if let Some(b) = &i.restart_backoff_ms {
        r.backoff_initial_ms = positive_ms(cx, b, "init.restart-backoff-ms")?;
    }
    if let Some(b) = &i.restart_backoff_max_ms {
        r.backoff_max_ms = positive_ms(cx, b, "init.restart-backoff-max-ms")?;
    }
    if r.backoff_max_ms < r.backoff_initial_ms {
        r.backoff_max_ms = r.backoff_initial_ms;
    }
    Ok(r)
}

/// `[init] tmpfs`: the tmpfs mounts the init makes (default: `/run` and `/tmp`).
fn tmpfs(
    cx: &Ctx,
    list: Option<&[Spanned<RawTmpfs>]>,
) -> Result<Vec<stratos_wire::Tmpfs>, ProfileError> {
    let Some(list) = list else {
        return Ok(vec![
            stratos_wire::Tmpfs {
                path: "/run".into(),
                mode: 0o755,
                size: 0,
            },
            stratos_wire::Tmpfs {
                path: "/tmp".into(),
                mode: 0o1777,
                size: 0,
            },
        ]);
    };
    let mut out: Vec<stratos_wire::Tmpfs> = Vec::new();
    for (n, t) in list.iter().enumerate() {
        let key = format!("init.tmpfs[{n}]");
        let mount = tmpfs_mount(cx, t, &key)?;
        if out.iter().any(|o| o.path == mount.path) {
            return Err(cx.at(t.span(), key, format!("{} is listed twice", mount.path)));
        }
        out.push(mount);
    }
    Ok(out)
}

/// One `[init] tmpfs` entry: a path (not `/` or under what the init mounts itself), with an
/// optional size and mode.
fn tmpfs_mount(
    cx: &Ctx,
    t: &Spanned<RawTmpfs>,
    key: &str,
) -> Result<stratos_wire::Tmpfs, ProfileError> {
    let (path, size, mode) = match t.get_ref() {
        RawTmpfs::Path(p) => (p.clone(), None, None),
        RawTmpfs::Table { path, size, mode } => (path.clone(), size.as_ref(), mode.as_ref()),
    };
    let p = ImagePath::parse(&path).map_err(|e| cx.at(t.span(), key, e.to_string()))?;
    if p.is_root()
        || ["/proc", "/sys", "/dev"]
            .iter()
            .any(|k| p.starts_with(&ImagePath::parse(k).expect("static")))
    {
        return Err(cx.at(
            t.span(),
            key,
            format!("{p} cannot be a tmpfs mount (the init mounts /, /proc, /sys and /dev itself)"),
        ));
    }
    let size = match size {
        None => 0,
        Some(s) => parse_size_bytes(s).ok_or_else(|| {
            cx.at(
                t.span(),
                format!("{key}.size"),
                "must be bytes or a size like \"64M\"",
            )
        })?,
    };
    let mode = match mode {
        None if p.as_str() == "/tmp" => 0o1777,
        None => 0o755,
        Some(m) => tmpfs_mode(m).ok_or_else(|| {
            cx.at(
                t.span(),
                format!("{key}.mode"),
                "must be octal permission bits",
            )
        })?,
    };
    Ok(stratos_wire::Tmpfs {
        path: p.to_string(),
        mode,
        size,
    })
}

/// Permission bits as a TOML integer or an octal string (`"1777"`, `"0o700"`).
fn tmpfs_mode(m: &IntOrString) -> Option<u32> {
    match m {
        IntOrString::Int(i) => u32::try_from(*i).ok(),
        IntOrString::Str(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).ok(),
    }
    .filter(|&m| m <= 0o7777)
}

fn limits(cx: &Ctx, l: Option<&RawLimits>) -> Result<stratos_wire::Limits, ProfileError> {
    let Some(l) = l else {
        return Ok(stratos_wire::Limits::default());
    };
    let cpu_max = match &l.cpus {
        None => None,
        Some(v) => {
            let cpus = match v.get_ref() {
                toml::Value::Float(f) => *f,
                toml::Value::Integer(i) => *i as f64,
                _ => -1.0,
            };
            if !(0.01..=1024.0).contains(&cpus) {
                return Err(cx.at(
                    v.span(),
                    "init.limits.cpus",
                    "must be a number of CPUs between 0.01 and 1024, e.g. 0.5",
                ));
            }
            Some(((cpus * 100_000.0).round() as u64, 100_000))
        }
    };
    Ok(stratos_wire::Limits {
        memory_max: l
            .memory_max
            .as_ref()
            .map(|v| bytes_value(cx, v, "init.limits.memory-max"))
            .transpose()?,
        memory_high: l
            .memory_high
            .as_ref()
            .map(|v| bytes_value(cx, v, "init.limits.memory-high"))
            .transpose()?,
        cpu_max,
        pids_max: l
            .pids_max
            .as_ref()
            .map(|v| {
                u64::try_from(*v.get_ref())
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| cx.at(v.span(), "init.limits.pids-max", "must be at least 1"))
            })
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use crate::profile::tests::{Fixture, BASE};

    #[test]
    fn the_runtime_is_an_absolute_path() {
        let f = Fixture::new();
        let e = f.err(&BASE.replace("\"/bin/busybox\"", "\"busybox\""));
        assert!(e.contains("init.argv[0]"), "{e}");
    }

    #[test]
    fn tmpfs_mounts() {
        let f = Fixture::new();
        let p = f.parse(BASE).unwrap();
        let paths: Vec<_> = p
            .init
            .tmpfs
            .iter()
            .map(|t| (t.path.as_str(), t.mode))
            .collect();
        assert_eq!(paths, [("/run", 0o755), ("/tmp", 0o1777)]);
        let with = |tmpfs: &str| format!("{BASE}tmpfs = {tmpfs}\n");
        let p = f
            .parse(&with(
                r#"["/tmp", { path = "/srv", size = "64M", mode = "0o700" }]"#,
            ))
            .unwrap();
        let t = &p.init.tmpfs;
        assert_eq!(
            (t[0].path.as_str(), t[0].mode, t[0].size),
            ("/tmp", 0o1777, 0)
        );
        assert_eq!(
            (t[1].path.as_str(), t[1].mode, t[1].size),
            ("/srv", 0o700, 64 << 20)
        );
        for (tmpfs, want) in [
            (r#"["/proc/x"]"#, "cannot be a tmpfs mount"),
            (r#"["/a", "/a"]"#, "/a is listed twice"),
            (r#"[{ path = "/a", mode = 0o17777 }]"#, "init.tmpfs[0].mode"),
            (r#"[{ path = "/a", size = "lots" }]"#, "init.tmpfs[0].size"),
        ] {
            let e = f.err(&with(tmpfs));
            assert!(e.contains(want), "{tmpfs}: {e}");
        }
    }

    #[test]
    fn the_interface_is_http_unless_lambda_is_asked_for() {
        let f = Fixture::new();
        assert_eq!(f.parse(BASE).unwrap().init.lambda, None);
        let p = f.parse(&format!("{BASE}interface = \"http\"\n")).unwrap();
        assert_eq!(p.init.lambda, None);
        let p = f
            .parse(&format!(
                "{BASE}interface = \"lambda\"\ncwd = \"/var/task\"\n"
            ))
            .unwrap();
        let l = p.init.lambda.unwrap();
        assert_eq!(
            (
                l.handler.as_str(),
                l.timeout_ms,
                l.port,
                l.task_root.as_str()
            ),
            ("", 3000, 8080, "/var/task")
        );
        assert_eq!(l.function_name, None);
        let p = f
            .parse(&format!(
                "{BASE}interface = \"lambda\"\n[init.lambda]\nhandler = \"app.handler\"\ntimeout-ms = 900000\nfunction-name = \"my-fn_1\"\nport = 9000\ntask-root = \"/srv/fn\"\n"
            ))
            .unwrap();
        let l = p.init.lambda.unwrap();
        assert_eq!(
            (
                l.handler.as_str(),
                l.timeout_ms,
                l.function_name.as_deref(),
                l.port,
                l.task_root.as_str()
            ),
            ("app.handler", 900_000, Some("my-fn_1"), 9000, "/srv/fn")
        );
    }

    #[test]
    fn lambda_settings_are_checked() {
        let f = Fixture::new();
        let lambda =
            |extra: &str| format!("{BASE}interface = \"lambda\"\n[init.lambda]\n{extra}\n");
        for (text, want) in [
            (format!("{BASE}interface = \"grpc\"\n"), "init.interface"),
            (
                format!("{BASE}[init.lambda]\nhandler = \"a\"\n"),
                "is only read with interface = \"lambda\"",
            ),
            (
                format!("{BASE}interface = \"lambda\"\nreadiness = {{ tcp = 8080 }}\n"),
                "remove init.readiness",
            ),
            (lambda("timeout-ms = 0"), "init.lambda.timeout-ms"),
            (lambda("timeout-ms = 900001"), "init.lambda.timeout-ms"),
            (lambda("port = 9001"), "other than 9001"),
            (lambda("port = 70000"), "init.lambda.port"),
            (
                lambda("function-name = \"a.b\""),
                "init.lambda.function-name",
            ),
            (lambda("task-root = \"rel\""), "init.lambda.task-root"),
            (lambda("memory = 128"), "unknown field"),
        ] {
            let e = f.err(&text);
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
