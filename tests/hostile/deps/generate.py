#!/usr/bin/env python3
"""Writes the hostile wheels and npm tarballs of tests/deps.rs (deterministic; run from
anywhere). Each is a small, otherwise well-formed package with one thing wrong:

  record-hash-wrong/evil-1.0-py3-none-any.whl  evil.py differs from its RECORD hash
  dotdot/evil-1.0-py3-none-any.whl             a member ../../../../etc/evil.py (in RECORD)
  absolute/evil-1.0-py3-none-any.whl           a member /etc/evil.py (in RECORD)
  unrecorded/evil-1.0-py3-none-any.whl         a member RECORD does not list
  windows/evil-1.0-cp311-cp311-win_amd64.whl   a good wheel for another platform
  good/evil-1.0-py3-none-any.whl               a good wheel (pinned by another hash in a test)
  native/evil-1.0-cp311-cp311-manylinux_2_17_x86_64.whl
                                               a compiled module that needs libq.so.6, which no
                                               image has (an empty C file built with gcc, its
                                               DT_NEEDED libc.so.6 renamed in place)
  escape.tgz                                   npm: package/../../../../etc/evil.js
  symlink.tgz                                  npm: package/evil -> ../../../../etc/passwd
  good.tgz                                     npm: a good package (replaced under its name)
"""
import base64
import hashlib
import io
import os
import subprocess
import tarfile
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
DATE = (2025, 1, 1, 0, 0, 0)


def b64(data):
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel(path, files, record_override=None, unrecorded=None, tag="py3-none-any"):
    info = "evil-1.0.dist-info"
    files = dict(files)
    files[info + "/METADATA"] = b"Metadata-Version: 2.1\nName: evil\nVersion: 1.0\nLicense-Expression: MIT\n"
    files[info + "/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: generate.py\nRoot-Is-Purelib: true\nTag: %s\n" % tag).encode()
    record = ""
    for name, data in files.items():
        digest = (record_override or {}).get(name, b64(data))
        record += "%s,sha256=%s,%d\n" % (name, digest, len(data))
    record += info + "/RECORD,,\n"
    files[info + "/RECORD"] = record.encode()
    if unrecorded:
        files.update(unrecorded)
    full = os.path.join(HERE, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with zipfile.ZipFile(full, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            zi = zipfile.ZipInfo(name, DATE)
            zi.external_attr = 0o100644 << 16
            zi.create_system = 3
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)


def tgz(path, members):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data, link in members:
            ti = tarfile.TarInfo(name)
            ti.mtime = 499162500
            ti.mode = 0o644
            if link is not None:
                ti.type = tarfile.SYMTYPE
                ti.linkname = link
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    out = io.BytesIO()
    import gzip
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as g:
        g.write(raw.getvalue())
    with open(os.path.join(HERE, path), "wb") as f:
        f.write(out.getvalue())


GOOD = {"evil/__init__.py": b"VALUE = 1\n"}
wheel("record-hash-wrong/evil-1.0-py3-none-any.whl", GOOD,
      record_override={"evil/__init__.py": b64(b"something else\n")})
wheel("dotdot/evil-1.0-py3-none-any.whl", {"../../../../etc/evil.py": b"x = 1\n"})
wheel("absolute/evil-1.0-py3-none-any.whl", {"/etc/evil.py": b"x = 1\n"})
wheel("unrecorded/evil-1.0-py3-none-any.whl", GOOD, unrecorded={"evil/backdoor.py": b"x = 1\n"})
wheel("windows/evil-1.0-cp311-cp311-win_amd64.whl", GOOD, tag="cp311-cp311-win_amd64")
wheel("good/evil-1.0-py3-none-any.whl", GOOD)


def native_module():
    with tempfile.TemporaryDirectory() as d:
        src, out = os.path.join(d, "m.c"), os.path.join(d, "m.so")
        with open(src, "w") as f:
            f.write("int evil_answer(void) { return 42; }\n")
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-s", "-Wl,--no-as-needed",
                        "-Wl,--build-id=none", "-o", out, src, "-lc"], check=True)
        data = open(out, "rb").read()
    assert data.count(b"libc.so.6\0") == 1
    return data.replace(b"libc.so.6\0", b"libq.so.6\0")


wheel("native/evil-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
      {"evil/__init__.py": b"", "evil/_native.cpython-311-x86_64-linux-gnu.so": native_module()},
      tag="cp311-cp311-manylinux_2_17_x86_64")

PKG = b'{"name": "evil", "version": "1.0.0", "license": "MIT"}\n'
tgz("escape.tgz", [("package/package.json", PKG, None), ("package/../../../../etc/evil.js", b"1\n", None)])
tgz("symlink.tgz", [("package/package.json", PKG, None), ("package/evil", None, "../../../../etc/passwd")])
tgz("good.tgz", [("package/package.json", PKG, None), ("package/index.js", b"module.exports = 1;\n", None)])
