//! A small QMP client (QEMU's JSON control protocol) over a unix socket: what snapshots need —
//! stop, migrate to a file, watch the migration, restore from it, continue.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP socket {path}: {source}")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to QEMU over QMP: {0}")]
    Io(#[from] std::io::Error),
    #[error("QEMU's QMP answer is not JSON: {0}")]
    Malformed(String),
    #[error("QEMU refused `{command}`: {why}")]
    Refused { command: String, why: String },
    #[error("timed out after {0:?} waiting for QEMU: {1}")]
    TimedOut(Duration, String),
}

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects (retrying until QEMU has created the socket, up to `deadline`), reads the
    /// greeting and negotiates capabilities.
    pub fn connect(path: &Path, deadline: Duration) -> Result<Qmp, QmpError> {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if start.elapsed() < deadline => {
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                    ) {
                        return Err(QmpError::Connect {
                            path: path.display().to_string(),
                            source: e,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => {
                    return Err(QmpError::Connect {
                        path: path.display().to_string(),
                        source: e,
                    })
                }
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut q = Qmp {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        };
        let greeting = q.read()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Malformed(greeting.to_string()));
        }
        q.execute("qmp_capabilities", json!({}))?;
        Ok(q)
    }

    fn read(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(QmpError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "QEMU closed the QMP socket",
            )));
        }
        serde_json::from_str(&line).map_err(|_| QmpError::Malformed(line.trim().to_owned()))
    }

    /// Runs one command and returns its `return` value; events that arrive meanwhile are
    /// skipped.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, QmpError> {
        let mut req = json!({ "execute": command });
        if arguments.as_object().is_some_and(|o| !o.is_empty()) {
            req["arguments"] = arguments;
        }
        let mut bytes = serde_json::to_vec(&req).expect("plain JSON");
        bytes.push(b'\n');
        self.writer.write_all(&bytes)?;
        loop {
            let v = self.read()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(QmpError::Refused {
                    command: command.to_owned(),
                    why: e["desc"].as_str().unwrap_or("unknown error").to_owned(),
                });
            }
            // An event: not ours.
        }
    }

    /// Polls `query-migrate` until the migration completed (or failed), up to `deadline`.
    pub fn wait_migration(&mut self, deadline: Duration) -> Result<(), QmpError> {
        let start = Instant::now();
        loop {
            let r = self.execute("query-migrate", json!({}))?;
            match r["status"].as_str().unwrap_or("") {
                "completed" => return Ok(()),
                "failed" | "cancelled" => {
                    return Err(QmpError::Refused {
                        command: "migrate".into(),
                        why: r["error-desc"]
                            .as_str()
                            .unwrap_or("the migration failed")
                            .to_owned(),
                    })
                }
                _ => {}
            }
            if start.elapsed() > deadline {
                return Err(QmpError::TimedOut(deadline, "the migration".into()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Polls `query-status` until the VM is in `status` (e.g. `paused` after an incoming
    /// migration), up to `deadline`.
    pub fn wait_status(&mut self, status: &str, deadline: Duration) -> Result<(), QmpError> {
        let start = Instant::now();
        loop {
            let r = self.execute("query-status", json!({}))?;
            if r["status"] == status {
                return Ok(());
            }
            if r["status"] == "inmigrate" || r["status"] == "prelaunch" || r["status"] == "running"
            {
                if start.elapsed() > deadline {
                    return Err(QmpError::TimedOut(deadline, format!("status {status}")));
                }
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            return Err(QmpError::Refused {
                command: "query-status".into(),
                why: format!("the VM is {}, not {status}", r["status"]),
            });
        }
    }
}
