#!/usr/bin/env python3
"""Decodes a qmeta LB certificate without the Rust SDK (docs/SDK.md).

Usage: decode.py CERT.pem QKD_KEY_HEX  -> prints the metadata as JSON, in the
same shape as qmeta_sdk::Metadata::to_json. The functions are the ones
docs/SDK.md shows; tests/python_decoder.rs runs this against certificates
minted by qmeta-cert.
"""
import base64, ipaddress, json, ssl, sys, urllib.parse, urllib.request, uuid
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

BASE = "2.25.124070837015947442550821970482993388561"
KINDS = {1: "ip", 2: "u16", 3: "ip", 4: "u16", 5: "u64", 6: "text", 7: "text",
         8: "u16", 9: "u16", 14: "u32", 16: "bytes", 20: "u64"}  # all others: text
NAMES = ["src_ip", "src_port", "dst_ip", "dst_port", "timestamp", "sni", "alpn",
         "tls_version", "cipher_suite", "ja4", "ja3", "geo_country", "geo_region",
         "geo_asn", "client_cert_subject", "client_cert_fingerprint", "http_host",
         "http_user_agent", "http_accept_language", "connection_id", "lb_node_id",
         "proxied_for", "geo_city"]

def name(fid):
    return NAMES[fid - 1] if fid <= len(NAMES) else f"custom_{fid}"

def der(buf, pos=0):
    """One DER TLV at pos: (tag, content, next_pos). Short and long lengths."""
    tag, n = buf[pos], buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(buf[pos:pos + k], "big")
        pos += k
    if pos + n > len(buf):
        raise ValueError("truncated DER")
    return tag, buf[pos:pos + n], pos + n

def header(value):
    tag, seq, end = der(value)
    if tag != 0x30 or end != len(value):
        raise ValueError("header is not one SEQUENCE")
    out, pos = [], 0
    while pos < len(seq):
        tag, content, pos = der(seq, pos)
        out.append((tag, content))
    (_, ver), (_, key_id), (_, state), (_, aead), (_, dropped) = out
    drops, p = [], 0
    while p < len(dropped):
        _, c, p = der(dropped, p)
        drops.append(int.from_bytes(c, "big"))
    return (int.from_bytes(ver, "big"), uuid.UUID(bytes=key_id),
            int.from_bytes(state, "big"), int.from_bytes(aead, "big"), drops)

def decode(fid, pt):
    kind = KINDS.get(fid, "text")
    if kind == "ip":
        return str(ipaddress.ip_address(pt))
    if kind in ("u16", "u32", "u64"):
        return int.from_bytes(pt, "big")
    return pt.hex() if kind == "bytes" else pt.decode("utf-8")

def open_cert(pem, get_key):
    cert = x509.load_pem_x509_certificate(pem)
    serial = cert.serial_number.to_bytes(16, "big")
    exts = {e.oid.dotted_string: e.value.value for e in cert.extensions
            if e.oid.dotted_string.startswith(BASE + ".")}
    ver, key_id, state, aead, dropped = header(exts[BASE + ".1"])
    if ver != 1 or aead != 1:
        raise ValueError("unsupported qmeta format")
    k = HKDF(hashes.SHA256(), 32, serial, b"qmeta cert v1 value key").derive(get_key(key_id))
    fields = {}
    for oid, value in sorted(exts.items()):
        if not oid.startswith(BASE + ".2."):
            continue
        fid = int(oid.rsplit(".", 1)[1])
        _, sealed, _ = der(value)                     # OCTET STRING
        n = fid.to_bytes(2, "big")
        pt = AESGCM(k).decrypt(bytes(10) + n, sealed, b"qmeta field v1" + n)  # raises if altered
        fields[name(fid)] = decode(fid, pt)
    return {"serial": serial.hex(), "key_id": str(key_id), "state_version": state,
            "fields": fields, "dropped": [name(f) for f in dropped]}

def kme_key(url, lb_sae, ca, cert, key):
    """get_key for open_cert: dec_keys at the backend's KME (cache the result per id!)."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    def get(key_id):
        body = json.dumps({"key_IDs": [{"key_ID": str(key_id)}]}).encode()
        req = urllib.request.Request(
            f"{url}/api/v1/keys/{urllib.parse.quote(lb_sae, safe='')}/dec_keys", body,
            {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
            return base64.b64decode(json.load(r)["keys"][0]["key"])
    return get


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        pem = f.read()
    qkd_key = bytes.fromhex(sys.argv[2])
    print(json.dumps(open_cert(pem, lambda key_id: qkd_key)))
