"""The python-fn function: a small HTTP/1.0 server on the standard library's socket module
(python3.11-minimal has no http.server), answering every GET with a greeting.

It lives in a module (not the entry script) so that its bytecode is compiled at build time
too: Python never caches the script it runs, only the modules it imports.

Readiness: once listening it writes READY=1 to the descriptor named by $STRATOS_NOTIFY_FD, the
stratos-init notify protocol, so runtime_ready marks the moment the function can answer.

Snapshots: every clone restored from one snapshot starts with the same memory. GET /id answers
a fresh request identifier from os.urandom, the kernel's generator, which stratos-init reseeds
with the host's entropy on every restore. What the process holds itself is its own to reseed:
the profile asks the init to send SIGUSR1 after every restore (`on-restore`), and the handler
reseeds the `random` module, which seeded itself once, at import, in the snapshotted boot.
"""
import os
import random
import signal
import socket


def _restored(signum, frame):
    random.seed()
    print("python-fn: restored from a snapshot; random reseeded", flush=True)


def handle(path):
    if path == "/id":
        return os.urandom(16).hex() + "\n"
    name = "world"
    if "?" in path:
        for pair in path.split("?", 1)[1].split("&"):
            key, _, value = pair.partition("=")
            if key == "name" and value:
                name = value
    return "Hello, %s! This is StratOS on Python.\n" % name


def main(compiled_at_start=()):
    port = int(os.environ.get("PORT", "8080"))
    signal.signal(signal.SIGUSR1, _restored)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(64)
    # What the interpreter had to compile from source to get here: nothing, when the image's
    # bytecode is complete (the build compiles every .py; the root is read-only).
    print(
        "python-fn: listening on %d; modules compiled from source at start: %d%s"
        % (
            port,
            len(compiled_at_start),
            (" (" + ", ".join(compiled_at_start) + ")") if compiled_at_start else "",
        ),
        flush=True,
    )
    fd = os.environ.get("STRATOS_NOTIFY_FD")
    if fd:
        os.write(int(fd), b"READY=1\n")
        os.close(int(fd))
    while True:
        conn, _ = srv.accept()
        try:
            conn.settimeout(10)
            request = b""
            while b"\r\n\r\n" not in request and len(request) < 16384:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                request += chunk
            line = request.split(b"\r\n", 1)[0].decode("latin-1")
            parts = line.split(" ")
            if len(parts) >= 2 and parts[0] == "GET":
                status, body = "200 OK", handle(parts[1])
            else:
                status, body = "405 Method Not Allowed", "only GET\n"
            data = body.encode("utf-8")
            conn.sendall(
                (
                    "HTTP/1.0 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                    "Content-Length: %d\r\nConnection: close\r\n\r\n" % (status, len(data))
                ).encode("latin-1")
                + data
            )
        except OSError:
            pass
        finally:
            conn.close()

