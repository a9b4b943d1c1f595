#!/usr/bin/env python3
"""Capture server for capture.sh: accepts connections on 127.0.0.1:<port>,
stores the first bytes of each as hex in <outdir>/conn-<n>.hex."""
import socket, sys, os

port, outdir, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(16)
srv.settimeout(20)
for n in range(count):
    conn, _ = srv.accept()
    conn.settimeout(2)
    data = b""
    try:
        while len(data) < 8192:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
            # Health checks send a header only; clients send "hello\n".
            if data.endswith(b"hello\n") or (len(data) >= 16 and data[12] == 0x20 and len(data) >= 16 + int.from_bytes(data[14:16], "big")):
                break
    except socket.timeout:
        pass
    conn.close()
    with open(os.path.join(outdir, f"conn-{n}.hex"), "w") as f:
        f.write(data.hex() + "\n")
