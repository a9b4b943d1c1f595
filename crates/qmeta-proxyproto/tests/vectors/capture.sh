#!/bin/sh
# Regenerates the HAProxy capture vectors in this directory:
#   haproxy-v2-tls.hex   PROXY v2 with ALPN, AUTHORITY, SSL (+CN, cipher,
#                        sig/key alg), UNIQUE_ID and CRC32C TLVs, then "hello\n"
#   haproxy-v2-local.hex PROXY v2 LOCAL header of a health check
#   haproxy-v1.hex       PROXY v1 line, then "hello\n"
# Needs haproxy, openssl and python3 on PATH; uses 127.0.0.1 only.
# Ports 61401-61405 sit above the usual ephemeral range, so outgoing
# connections of other programs cannot hold them.
set -eu
for tool in haproxy openssl python3; do
    command -v "$tool" >/dev/null || { echo "capture.sh: $tool is required" >&2; exit 1; }
done
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=test-ca -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj /CN=lb.example.test -keyout srv.key -out srv.csr 2>/dev/null
openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out srv.pem 2>/dev/null
cat srv.pem srv.key > srv-bundle.pem
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj /CN=client.example.test -keyout cli.key -out cli.csr 2>/dev/null
openssl x509 -req -in cli.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out cli.pem 2>/dev/null

cat > haproxy.cfg <<CFG
global
    maxconn 100
defaults
    mode tcp
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend tls
    bind 127.0.0.1:61401 ssl crt $work/srv-bundle.pem ca-file $work/ca.pem verify optional alpn h2,http/1.1
    unique-id-format conn-%ci-%cp
    default_backend v2
frontend plain
    bind 127.0.0.1:61402
    default_backend v1
backend v2
    server s 127.0.0.1:61403 send-proxy-v2 proxy-v2-options ssl,cert-cn,ssl-cipher,cert-sig,cert-key,authority,crc32c,unique-id
backend v1
    server s 127.0.0.1:61404 send-proxy
backend health
    server s 127.0.0.1:61405 send-proxy-v2 check check-send-proxy inter 300ms
CFG

mkdir v2 v1 hc
python3 "$here/capture.py" 61403 v2 1 & echo $! > cap2.pid
python3 "$here/capture.py" 61404 v1 1 & echo $! > cap1.pid
python3 "$here/capture.py" 61405 hc 1 & echo $! > caphc.pid
sleep 0.5
haproxy -f haproxy.cfg -db & echo $! > haproxy.pid
sleep 1

(printf 'hello\n'; sleep 1) | openssl s_client -quiet -connect 127.0.0.1:61401 \
    -servername www.example.test -alpn h2 -cert cli.pem -key cli.key >/dev/null 2>&1 || true
(printf 'hello\n'; sleep 1) | python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", 61402)); s.sendall(sys.stdin.buffer.read()); s.close()'
wait $(cat cap2.pid) $(cat cap1.pid) $(cat caphc.pid)

cp v2/conn-0.hex "$here/haproxy-v2-tls.hex"
cp v1/conn-0.hex "$here/haproxy-v1.hex"
cp hc/conn-0.hex "$here/haproxy-v2-local.hex"
haproxy -v | head -n 1 > "$here/haproxy-version.txt"
echo "captured into $here"
