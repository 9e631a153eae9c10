"""The @NAME@ function: `handle(path)` answers every GET; the rest is a small HTTP/1.0 server on
the standard library's socket module (python3.11-minimal has no http.server).

Readiness: once listening it writes READY=1 to the descriptor named by $STRATOS_NOTIFY_FD (the
stratos-init notify protocol), so `stratos boot --invoke` calls it only when it can answer.

Snapshots: every clone restored from one snapshot starts with the same memory. The init sends
SIGUSR1 after each restore (the profile's `on-restore`), and the function reseeds `random`.
"""
import os
import random
import signal
import socket


def handle(path):
    """The function: the request's path (with its query) in, the response's text out."""
    name = "world"
    if "?" in path:
        for pair in path.split("?", 1)[1].split("&"):
            key, _, value = pair.partition("=")
            if key == "name" and value:
                name = value
    return "Hello, %s! This is @NAME@ on StratOS.\n" % name


def _restored(signum, frame):
    random.seed()


def _serve(conn):
    conn.settimeout(10)
    request = b""
    while b"\r\n\r\n" not in request and len(request) < 16384:
        chunk = conn.recv(4096)
        if not chunk:
            break
        request += chunk
    parts = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
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


def main():
    port = int(os.environ.get("PORT", "8080"))
    signal.signal(signal.SIGUSR1, _restored)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(64)
    print("@NAME@: listening on %d" % port, flush=True)
    fd = os.environ.get("STRATOS_NOTIFY_FD")
    if fd:
        os.write(int(fd), b"READY=1\n")
        os.close(int(fd))
    while True:
        conn, _ = srv.accept()
        try:
            _serve(conn)
        except OSError:
            pass
        finally:
            conn.close()
