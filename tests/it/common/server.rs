//! A static HTTP server for the tests that read a repository over HTTP: it serves a directory,
//! honours `Range`, logs the bytes of every body it sends, and can be told to misbehave.

use std::path::Path;

use super::require_tool;

/// A static HTTP server (Python's `http.server`) on 127.0.0.1 (a port the OS picks), serving
/// `dir`, that logs the bytes of every body it sends; killed on drop. It answers single-range
/// `Range` requests with `206` (as static servers and object stores do) unless told otherwise,
/// and can be told to misbehave ([`Server::set`]).
pub struct Server {
    child: std::process::Child,
    port: u16,
    log: tempfile::NamedTempFile,
    conf: tempfile::NamedTempFile,
}

/// The server: `SimpleHTTPRequestHandler` counting what it copies out, one "PATH BYTES" line
/// per response (written before the connection closes, so a client that has its whole body
/// finds it logged). Its configuration, a JSON file read at every request:
/// `{"ranges": false}` ignores `Range` (answers 200 with the whole file);
/// `{"tamper": {"object": SUFFIX, "kind": K, "min": A, "max": B, "from": PATH}}` changes the
/// answers to range requests for paths ending in SUFFIX that start at an offset in [A, B):
/// K = "flip" flips a bit in the middle of the body, "from" serves the same offsets of another
/// file, "truncate" sends half the body (the Content-Length of the whole); with `"full": true`
/// "flip" applies to whole-file answers too. `{"slow_after": N}` sends whole files' first N
/// bytes, then 4 KiB a second.
const SERVER_PY: &str = r#"
import functools, http.server, json, os, sys, time
log = open(sys.argv[2], "a", buffering=1)
conf_path = sys.argv[3]
def conf():
    try:
        with open(conf_path) as f:
            return json.load(f)
    except Exception:
        return {}
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        c = conf()
        self.conf = c
        rng = self.headers.get("Range")
        if rng and c.get("ranges", True):
            return self.range_get(rng, c)
        return super().do_GET()
    def tamper(self, start, c):
        t = c.get("tamper")
        if not t or not self.path.endswith(t.get("object", "")):
            return None
        if not (t.get("min", 0) <= start < t.get("max", 1 << 62)):
            return None
        return t
    def range_get(self, rng, c):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return
        size = os.path.getsize(path)
        spec = rng.strip()
        if not spec.startswith("bytes=") or "," in spec:
            self.send_error(400)
            return
        a, b = spec[6:].split("-", 1)
        start = int(a)
        end = min(int(b) if b else size - 1, size - 1)
        if start >= size:
            self.send_response(416)
            self.send_header("Content-Range", "bytes */%d" % size)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        t = self.tamper(start, c)
        src = t["from"] if t and t["kind"] == "from" else path
        with open(src, "rb") as f:
            f.seek(start)
            body = f.read(end - start + 1)
        length = len(body)
        if t and t["kind"] == "flip":
            k = len(body) // 2
            body = body[:k] + bytes([body[k] ^ 1]) + body[k + 1:]
        if t and t["kind"] == "truncate":
            body = body[: len(body) // 2]
        self.send_response(206)
        self.send_header("Content-Range", "bytes %d-%d/%d" % (start, start + length - 1, size))
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        log.write("%s %d\n" % (self.path, len(body)))
    def copyfile(self, src, dst):
        c = self.conf
        t = c.get("tamper")
        flip = t and t.get("full") and t["kind"] == "flip" and self.path.endswith(t.get("object", ""))
        slow = c.get("slow_after")
        n = 0
        while True:
            b = src.read(4096 if slow is not None and n >= slow else 64 * 1024)
            if not b:
                break
            if flip and n == 0:
                b = bytes([b[0] ^ 1]) + b[1:]
            if slow is not None and n >= slow:
                time.sleep(1)
            dst.write(b)
            dst.flush()
            n += len(b)
        log.write("%s %d\n" % (self.path, n))
    def log_message(self, *args):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=sys.argv[1]))
print("port", s.server_address[1], flush=True)
s.serve_forever()
"#;

impl Server {
    pub fn start(dir: &Path) -> Server {
        require_tool("python3");
        use std::io::BufRead;
        let log = tempfile::NamedTempFile::new().unwrap();
        let conf = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(conf.path(), "{}").unwrap();
        let mut child = std::process::Command::new("python3")
            .args(["-u", "-c", SERVER_PY])
            .arg(dir)
            .arg(log.path())
            .arg(conf.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("port ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Server {
            child,
            port,
            log,
            conf,
        }
    }

    /// How the server behaves from the next request on (see [`SERVER_PY`]).
    pub fn set(&self, conf: serde_json::Value) {
        std::fs::write(self.conf.path(), conf.to_string()).unwrap();
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// (path, body bytes) of every response so far, in order.
    pub fn served(&self) -> Vec<(String, u64)> {
        std::fs::read_to_string(self.log.path())
            .unwrap()
            .lines()
            .map(|l| {
                let (p, n) = l.rsplit_once(' ').unwrap();
                (p.to_owned(), n.parse().unwrap())
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
