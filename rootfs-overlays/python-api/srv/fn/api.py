"""The python-api function: python-fn's small HTTP/1.0 server, answering with two third-party
libraries. GET /?name=<x> greets with the name HTML-escaped by MarkupSafe (its compiled
`_speedups` extension, from a manylinux wheel); GET /?host=xn--... decodes an IDNA host name
with idna (a pure-Python wheel). The answer says which files the imports came from.
"""
import os
import socket

import idna
import markupsafe
from markupsafe import _speedups


def handle(path):
    query = {}
    if "?" in path:
        for pair in path.split("?", 1)[1].split("&"):
            key, _, value = pair.partition("=")
            query[key] = value
    lines = []
    if "name" in query:
        lines.append("Hello, %s!" % markupsafe.escape(query["name"]))
    if "host" in query:
        lines.append("%s is %s" % (query["host"], idna.decode(query["host"])))
    lines.append(
        "markupsafe %s (compiled: %s), idna %s"
        % (
            markupsafe.__version__,
            os.path.basename(_speedups.__file__),
            idna.__version__,
        )
    )
    return "\n".join(lines) + "\n"


def main():
    port = int(os.environ.get("PORT", "8080"))
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(64)
    print(
        "python-api: listening on %d; markupsafe from %s, idna from %s"
        % (port, os.path.dirname(markupsafe.__file__), os.path.dirname(idna.__file__)),
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
            parts = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if len(parts) >= 2 and parts[0] == "GET":
                try:
                    status, body = "200 OK", handle(parts[1])
                except (idna.IDNAError, UnicodeError) as e:
                    status, body = "400 Bad Request", "%s\n" % e
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
