#!/usr/bin/env python3
"""Writes the hostile .deb fixtures of tests/hostile.rs (run from anywhere; deterministic).

  deb-huge-size-header.deb  a 2.5 KB package whose only member's tar header declares 2^62 bytes
  deb-zstd-bomb.deb         data.tar.zst of ~70 KB that expands to one 2 GiB file of zeros
  deb-package-bomb.deb      three 40 MiB members (each under a 64 MiB file limit, together over
                            a 100 MiB package limit)

The bombs are small compressed, so they are committed; this script documents how they were
made and remakes them (it needs the `zstd` command).
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def header(name: str, size: int, typeflag: bytes = b"0") -> bytes:
    h = bytearray(512)
    h[0:len(name)] = name.encode()
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    if size < 8**11:
        h[124:136] = b"%011o\0" % size
    else:  # GNU base-256: the high bit of the first byte set, big-endian after it
        h[124:136] = bytes([0x80]) + size.to_bytes(11, "big")
    h[136:148] = b"00000000000\0"
    h[156:157] = typeflag
    h[257:265] = b"ustar  \0"
    h[148:156] = b"        "
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def ar(members) -> bytes:
    out = b"!<arch>\n"
    for name, body in members:
        out += b"%-16s%-12d%-6d%-6d%-8s%-10d`\n" % (name.encode(), 0, 0, 0, b"100644", len(body))
        out += body
        if len(body) % 2:
            out += b"\n"
    return out


def deb(data_name: str, data: bytes) -> bytes:
    return ar([("debian-binary", b"2.0\n"), (data_name, data)])


def zstd_stream(chunks) -> bytes:
    p = subprocess.Popen(["zstd", "-q", "-3", "-c", "--no-check"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out = []

    import threading
    t = threading.Thread(target=lambda: out.append(p.stdout.read()))
    t.start()
    for c in chunks:
        p.stdin.write(c)
    p.stdin.close()
    t.join()
    if p.wait() != 0:
        sys.exit("zstd failed")
    return out[0]


def zeros(n: int):
    block = bytes(1 << 20)
    while n > 0:
        k = min(n, len(block))
        yield block[:k]
        n -= k


def write(name: str, data: bytes):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
    print(f"{name}: {len(data)} bytes")


# 1. A header that lies: 2^62 bytes declared, 1 KiB there.
tar = header("./usr/bin/huge", 1 << 62) + bytes(1024)
write("deb-huge-size-header.deb", deb("data.tar", tar))

# 2. One member of 2 GiB of zeros, zstd-compressed.
size = 2 << 30
def bomb():
    yield header("./bomb", size)
    yield from zeros(size)
    yield bytes(1024)
write("deb-zstd-bomb.deb", deb("data.tar.zst", zstd_stream(bomb())))

# 3. Three members of 40 MiB each.
def three():
    for i in range(3):
        yield header(f"./part{i}", 40 << 20)
        yield from zeros(40 << 20)
    yield bytes(1024)
write("deb-package-bomb.deb", deb("data.tar.zst", zstd_stream(three())))
