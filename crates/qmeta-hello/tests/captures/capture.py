#!/usr/bin/env python3
"""Regenerates the ClientHello captures in this directory.

Starts a TCP listener on 127.0.0.1, points real clients (curl, openssl
s_client) at it, records the TLS records carrying each ClientHello into
<name>.bin, and writes expected.tsv with JA4, JA4_r, the JA3 string and JA3
computed HERE, by a second implementation independent of the Rust crate
(standard library only). tests/captures.rs checks the crate against it.

Run from anywhere:  python3 crates/qmeta-hello/tests/captures/capture.py
Needs curl and openssl on PATH; fails loudly if either is missing.
"""

import hashlib
import os
import shutil
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
HOST = "qmeta.test"

CLIENTS = {
    # name: argv template ({port} is substituted)
    "curl": ["curl", "-sk", "--max-time", "5", "--resolve", HOST + ":{port}:127.0.0.1",
             "https://" + HOST + ":{port}/"],
    "curl-tls12-http11": ["curl", "-sk", "--max-time", "5", "--http1.1", "--tls-max", "1.2",
                          "--resolve", HOST + ":{port}:127.0.0.1", "https://" + HOST + ":{port}/"],
    "openssl": ["openssl", "s_client", "-connect", "127.0.0.1:{port}", "-servername", HOST],
    "openssl-tls10-nosni": ["openssl", "s_client", "-connect", "127.0.0.1:{port}", "-noservername",
                            "-tls1", "-cipher", "DEFAULT@SECLEVEL=0"],
    "openssl-alpn-hex": ["openssl", "s_client", "-connect", "127.0.0.1:{port}", "-servername", HOST,
                         "-alpn", "@bc,h2"],
}


def is_grease(v):
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


def read_hello(conn):
    """Reads whole records until the handshake message is complete."""
    data = b""
    hs = b""
    while True:
        while len(data) < 5:
            chunk = conn.recv(65536)
            if not chunk:
                raise SystemExit("client closed before sending a full ClientHello")
            data += chunk
        # Keep reading until every record we have is whole.
        pos = 0
        hs = b""
        while pos + 5 <= len(data):
            assert data[pos] == 0x16, "not a handshake record"
            n = int.from_bytes(data[pos + 3:pos + 5], "big")
            if pos + 5 + n > len(data):
                break
            hs += data[pos + 5:pos + 5 + n]
            pos += 5 + n
            if len(hs) >= 4 and len(hs) >= 4 + int.from_bytes(hs[1:4], "big"):
                return data[:pos]
        chunk = conn.recv(65536)
        if not chunk:
            raise SystemExit("client closed before sending a full ClientHello")
        data += chunk


def capture(name, argv):
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    lst.settimeout(10)
    port = lst.getsockname()[1]
    cmd = [a.replace("{port}", str(port)) for a in argv]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        conn, _ = lst.accept()
        conn.settimeout(10)
        records = read_hello(conn)
        conn.close()
    finally:
        lst.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with open(os.path.join(HERE, name + ".bin"), "wb") as f:
        f.write(records)
    return records


def parse(records):
    """Straightforward offset arithmetic, deliberately unlike the crate."""
    hs = b""
    pos = 0
    while pos < len(records):
        n = int.from_bytes(records[pos + 3:pos + 5], "big")
        hs += records[pos + 5:pos + 5 + n]
        pos += 5 + n
    assert hs[0] == 1
    body = hs[4:4 + int.from_bytes(hs[1:4], "big")]
    h = {"version": int.from_bytes(body[0:2], "big"), "exts": [], "alpn": [], "sv": [],
         "sig": [], "groups": [], "points": []}
    i = 2 + 32
    i += 1 + body[i]
    n = int.from_bytes(body[i:i + 2], "big")
    h["ciphers"] = [int.from_bytes(body[j:j + 2], "big") for j in range(i + 2, i + 2 + n, 2)]
    i += 2 + n
    i += 1 + body[i]
    if i == len(body):
        return h
    end = i + 2 + int.from_bytes(body[i:i + 2], "big")
    assert end == len(body)
    i += 2
    u16s = lambda b: [int.from_bytes(b[k:k + 2], "big") for k in range(0, len(b), 2)]
    while i < end:
        t = int.from_bytes(body[i:i + 2], "big")
        n = int.from_bytes(body[i + 2:i + 4], "big")
        d = body[i + 4:i + 4 + n]
        i += 4 + n
        h["exts"].append(t)
        if t == 0x10:
            k = 2
            while k < len(d):
                h["alpn"].append(d[k + 1:k + 1 + d[k]])
                k += 1 + d[k]
        elif t == 0x2B:
            h["sv"] = u16s(d[1:])
        elif t == 0x0D:
            h["sig"] = u16s(d[2:])
        elif t == 0x0A:
            h["groups"] = u16s(d[2:])
        elif t == 0x0B:
            h["points"] = list(d[1:])
    return h


def ja4(h):
    ng = lambda xs: [x for x in xs if not is_grease(x)]
    sv = ng(h["sv"])
    v = max(sv) if sv else h["version"]
    ver = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3"}.get(v, "00")
    sni = "d" if 0 in h["exts"] else "i"
    if h["alpn"]:
        a = h["alpn"][0]
        if chr(a[0]).isalnum() and chr(a[-1]).isalnum() and a[0] < 128 and a[-1] < 128:
            alpn = chr(a[0]) + chr(a[-1])
        else:
            alpn = a.hex()[0] + a.hex()[-1]
    else:
        alpn = "00"
    part_a = "t%s%s%02d%02d%s" % (ver, sni, min(len(ng(h["ciphers"])), 99),
                                  min(len(ng(h["exts"])), 99), alpn)
    ciphers = ",".join("%04x" % c for c in sorted(ng(h["ciphers"])))
    exts = ",".join("%04x" % e for e in sorted(ng(h["exts"])) if e not in (0, 0x10))
    sigs = ",".join("%04x" % s for s in ng(h["sig"]))
    c = exts + ("_" + sigs if sigs else "")
    h12 = lambda s: hashlib.sha256(s.encode()).hexdigest()[:12] if s else "000000000000"
    return "%s_%s_%s" % (part_a, h12(ciphers), h12(c)), "%s_%s_%s" % (part_a, ciphers, c)


def ja3(h):
    dec = lambda xs: "-".join(str(x) for x in xs if not is_grease(x))
    s = "%d,%s,%s,%s,%s" % (h["version"], dec(h["ciphers"]), dec(h["exts"]), dec(h["groups"]),
                            dec(h["points"]))
    return s, hashlib.md5(s.encode()).hexdigest()


def main():
    for tool in ("curl", "openssl"):
        if shutil.which(tool) is None:
            sys.exit("capture.py: %s not found on PATH" % tool)
    rows = []
    for name, argv in CLIENTS.items():
        h = parse(capture(name, argv))
        rows.append("\t".join((name,) + ja4(h) + ja3(h)))
        print(rows[-1].split("\t")[:2])
    with open(os.path.join(HERE, "expected.tsv"), "w") as f:
        f.write("# name\tja4\tja4_r\tja3_string\tja3 -- written by capture.py\n")
        f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
