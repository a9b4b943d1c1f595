#!/usr/bin/env bash
# Side-by-side load benchmark: qmeta (minting a certificate per backend
# connection) against HAProxy (static client certificate; default, which
# resumes TLS sessions to the backend, and with no-ssl-reuse). Both front
# the same nginx backend, which verifies the client certificate.
#
#   bench/run-load.sh            # everything, 3 alternating runs
#
# Knobs (environment): RUNS=3 DURATION=10 WARMUP=2 CONCURRENCY=16
#   FIXED_RATE=100 IDLE_CONNS=3000 BULK_MIB=64 BULK_CONCURRENCY=4
#   LEAF_ALG=p256|ed25519 LB_CA=p256|ed25519 TESTS="rate fixed bulk idle"
#   PROXIES="qmeta haproxy haproxy-noreuse" PROXY_CPU=0 LOAD_CPU=1
#   TAG=<name of the result file> BENCH_DIR=/tmp/qmeta-bench
#   SKIP_BUILD=1 (use the binaries already in target/release)
#   PROFILE="qmeta haproxy" (perf-record these proxies during the rate test;
#     flat profiles by DSO and by symbol go to bench/results/profile-<tag>-<proxy>.txt)
#
# Layout: both proxies are pinned to core $PROXY_CPU (one at a time is
# under load); the load generator, nginx and the KME share core $LOAD_CPU.
# Proxy CPU time comes from /proc/PID/stat (utime+stime) over each
# measured window. Results: bench/results/raw/<tag>/*.json (one per
# measurement), bench/results/load-<tag>.json (summary), and a table on
# stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONCURRENCY=${CONCURRENCY:-16}
FIXED_RATE=${FIXED_RATE:-100}
IDLE_CONNS=${IDLE_CONNS:-3000}
BULK_MIB=${BULK_MIB:-64}
BULK_CONCURRENCY=${BULK_CONCURRENCY:-4}
LEAF_ALG=${LEAF_ALG:-p256}
LB_CA=${LB_CA:-p256}
TESTS=${TESTS:-"rate fixed bulk idle"}
PROXIES=${PROXIES:-"qmeta haproxy haproxy-noreuse"}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
TAG=${TAG:-${LEAF_ALG}-leaf-${LB_CA}-ca}
WORK=${BENCH_DIR:-/tmp/qmeta-bench}
RAW=$ROOT/bench/results/raw/$TAG

# Ports (loopback only). qmeta init puts control/KMEs just below LB_PORT.
LB_PORT=19443          # qmeta (KME A: 19441, KME B: 19442, DMCP: 19440)
NGINX_PORT=19450
HAPROXY_PORT=19460
HAPROXY_NOREUSE_PORT=19461

log() { printf '== %s\n' "$*" >&2; }

install_tools() {
    local missing=()
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v nginx >/dev/null || missing+=(nginx-light)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v python3 >/dev/null || missing+=(python3)
    command -v taskset >/dev/null || missing+=(util-linux)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

build() {
    if [[ -z ${SKIP_BUILD:-} ]]; then
        log "building release binaries"
        (cd "$ROOT" && cargo build --release -q -p qmeta -p qmeta-bench --bins)
    fi
    QMETA=$ROOT/target/release/qmeta
    LOADGEN=$ROOT/target/release/qmeta-loadgen
    BENCH_PKI=$ROOT/target/release/qmeta-bench-pki
}

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

wait_port() {
    local port=$1 i
    for i in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listens on port $port after 10 s" >&2
    return 1
}

setup_files() {
    mkdir -p "$WORK" "$RAW"
    # Re-running some tests replaces only their results under this tag.
    for t in $TESTS; do rm -f "$RAW/$t"-*.json; done
    log "credentials and configs in $WORK"
    "$QMETA" init --state-dir "$WORK/state" --port "$LB_PORT" >/dev/null
    local pki=$WORK/state/pki
    "$BENCH_PKI" "$pki" >/dev/null
    cat "$pki/lb-ca.crt" "$pki/lb-ca-ed25519.crt" >"$WORK/lb-cas.pem"
    cat "$pki/frontend.crt" "$pki/frontend.key" >"$WORK/haproxy-frontend.pem"
    local hp_client=haproxy-client ca_stem=lb-ca
    if [[ $LB_CA == ed25519 ]]; then hp_client=haproxy-client-ed25519; ca_stem=lb-ca-ed25519; fi
    cat "$pki/$hp_client.crt" "$pki/$hp_client.key" >"$WORK/haproxy-client.pem"

    mkdir -p "$WORK/www" "$WORK/nginx-tmp"
    printf 'hello from nginx\n' >"$WORK/www/index.txt"
    if [[ ! -f $WORK/www/big.bin || $(stat -c %s "$WORK/www/big.bin") -ne $((BULK_MIB * 1048576)) ]]; then
        head -c $((BULK_MIB * 1048576)) /dev/urandom >"$WORK/www/big.bin"
    fi

    cat >"$WORK/nginx.conf" <<EOF
user root;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 12000; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx-tmp;
    proxy_temp_path $WORK/nginx-tmp;
    fastcgi_temp_path $WORK/nginx-tmp;
    uwsgi_temp_path $WORK/nginx-tmp;
    scgi_temp_path $WORK/nginx-tmp;
    default_type application/octet-stream;
    sendfile off;
    keepalive_timeout 300s;
    client_header_timeout 300s;
    server {
        # The default backlog (511) overflows when thousands of idle
        # connections are opened at once: dropped SYNs then time out.
        listen 127.0.0.1:$NGINX_PORT ssl backlog=4096;
        ssl_certificate $pki/app-a.crt;
        ssl_certificate_key $pki/app-a.key;
        ssl_protocols TLSv1.3;
        ssl_session_cache shared:SSL:20m;
        # Both proxies pay for mutual TLS: the client certificate must
        # chain to an LB CA (the minted ones and HAProxy's static one).
        ssl_verify_client on;
        ssl_client_certificate $WORK/lb-cas.pem;
        ssl_verify_depth 1;
        root $WORK/www;
        location = / { default_type text/plain; return 200 "hello from nginx\n"; }
    }
}
EOF

    for variant in default noreuse; do
        local port=$HAPROXY_PORT reuse=""
        if [[ $variant == noreuse ]]; then port=$HAPROXY_NOREUSE_PORT; reuse="no-ssl-reuse"; fi
        cat >"$WORK/haproxy-$variant.cfg" <<EOF
global
    maxconn 9000
    ssl-server-verify required
    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-server-options ssl-min-ver TLSv1.3

defaults
    mode tcp
    maxconn 9000
    timeout connect 3s
    timeout client 300s
    timeout server 300s

frontend fe
    bind 127.0.0.1:$port ssl crt $WORK/haproxy-frontend.pem alpn http/1.1
    default_backend be

backend be
    server nginx 127.0.0.1:$NGINX_PORT ssl verify required ca-file $pki/backend-ca.crt crt $WORK/haproxy-client.pem sni str(app-a) verifyhost app-a alpn http/1.1 $reuse
EOF
    done

    cat >"$WORK/lb.toml" <<EOF
node_id = "lb-bench"

[listen]
address = "127.0.0.1:$LB_PORT"
cert = "$pki/frontend.crt"
key = "$pki/frontend.key"
alpn = ["http/1.1"]

[control]
address = "127.0.0.1:$((LB_PORT - 3))"

[kme]
url = "https://127.0.0.1:$((LB_PORT - 2))"
kme_id = "kme-a"
ca = "$pki/qkd-ca.crt"
cert = "$pki/sae-lb-1.crt"
key = "$pki/sae-lb-1.key"

[certificates]
ca_cert = "$pki/$ca_stem.crt"
ca_key = "$pki/$ca_stem.key"
validity = "5m"
leaf_alg = "$LEAF_ALG"

[keys]
rotation = "60s"
grace = "30s"

[upstream]
ca = "$pki/backend-ca.crt"
idle_timeout = "5m"
# Covers TCP connect and the TLS handshake. When thousands of idle
# connections open at once, nginx (sharing a core with the load generator)
# falls seconds behind; HAProxy waits for it (timeout server), so qmeta does too.
connect_timeout = "30s"

[audit]
path = "$WORK/audit.log"
fsync_interval = "100ms"

[[backend]]
name = "app-a"
address = "127.0.0.1:$NGINX_PORT"
server_name = "app-a"
sae_id = "sae-app-a"
default_fields = ["src_ip", "timestamp"]
EOF
}

start_backends() {
    log "starting KME and nginx on core $LOAD_CPU"
    taskset -c "$LOAD_CPU" "$QMETA" kme --config "$WORK/state/kme.toml" >"$WORK/kme.log" 2>&1 &
    PIDS+=($!)
    taskset -c "$LOAD_CPU" nginx -c "$WORK/nginx.conf" -g 'daemon off;' >"$WORK/nginx.out" 2>&1 &
    PIDS+=($!)
    wait_port "$((LB_PORT - 2))"
    wait_port "$NGINX_PORT"
}

# start_proxy NAME: starts it on core $PROXY_CPU, sets PROXY_PID and PROXY_PORT.
declare -A RUNNING_PID=()
start_proxy() {
    local name=$1
    case $name in
    qmeta)
        rm -f "$WORK"/audit.log*
        taskset -c "$PROXY_CPU" "$QMETA" lb --config "$WORK/lb.toml" >"$WORK/qmeta.log" 2>&1 &
        PROXY_PORT=$LB_PORT ;;
    haproxy)
        taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/haproxy-default.cfg" >"$WORK/haproxy.log" 2>&1 &
        PROXY_PORT=$HAPROXY_PORT ;;
    haproxy-noreuse)
        taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/haproxy-noreuse.cfg" >"$WORK/haproxy-noreuse.log" 2>&1 &
        PROXY_PORT=$HAPROXY_NOREUSE_PORT ;;
    esac
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    RUNNING_PID[$name]=$PROXY_PID
    wait_port "$PROXY_PORT"
}

stop_proxy() {
    local name=$1 pid=${RUNNING_PID[$1]:-}
    [[ -n $pid ]] || return 0
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "RUNNING_PID[$name]"
    sleep 0.5
}

proxy_port() {
    case $1 in
    qmeta) echo "$LB_PORT" ;;
    haproxy) echo "$HAPROXY_PORT" ;;
    haproxy-noreuse) echo "$HAPROXY_NOREUSE_PORT" ;;
    esac
}

# loadgen PROXY TEST RUN
loadgen() {
    local proxy=$1 test=$2 run=$3 port pid args=()
    port=$(proxy_port "$proxy")
    pid=${RUNNING_PID[$proxy]}
    case $test in
    rate) args=(--mode max-rate --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP") ;;
    fixed) args=(--mode fixed-rate --rate "$FIXED_RATE" --duration "$DURATION" --warmup "$WARMUP") ;;
    bulk) args=(--mode bulk --path /big.bin --concurrency "$BULK_CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP") ;;
    idle) args=(--mode idle --connections "$IDLE_CONNS" --warmup 3 --backend-port "$NGINX_PORT") ;;
    esac
    local perf_pid=""
    if [[ $test == rate && " ${PROFILE:-} " == *" $proxy "* ]] && command -v perf >/dev/null; then
        perf record -q -F 1999 -p "$pid" -o "$WORK/perf-$proxy.data" -- sleep "$((WARMUP + DURATION))" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    taskset -c "$LOAD_CPU" "$LOADGEN" --target "127.0.0.1:$port" --ca "$WORK/state/pki/frontend-ca.crt" \
        --server-name localhost --kx x25519 --pid "$pid" --clk-tck "$(getconf CLK_TCK)" \
        --label "$proxy" "${args[@]}" --out "$RAW/$test-$proxy-$run.json" >/dev/null
    if [[ -n $perf_pid ]]; then
        wait "$perf_pid" || true
        local prof=$ROOT/bench/results/profile-$TAG-$proxy.txt
        {
            echo "# perf record -F 1999 -p <$proxy> during 'rate' run $run; flat profile (no call graphs)"
            echo "## by DSO"
            perf report -i "$WORK/perf-$proxy.data" --no-children --sort dso --stdio --percent-limit 0.1 2>/dev/null |
                grep -v '^#' | grep -v '^$' | sed 's/  */ /g' || true
            echo "## by symbol (>= 0.4 %)"
            perf report -i "$WORK/perf-$proxy.data" --no-children --sort dso,symbol --stdio --percent-limit 0.4 2>/dev/null |
                grep -v '^#' | grep -v '^$' | sed 's/  */ /g; s/ - - *$//' || true
        } >"$prof"
        log "profile written to $prof"
    fi
    python3 - "$RAW/$test-$proxy-$run.json" <<'EOF' >&2
import json, sys
r = json.load(open(sys.argv[1]))
m = r["mode"]
if m == "idle":
    print(f"   {r['label']:16} idle: {r['open']} open, {r['rss_kib_per_conn']} KiB/conn, backend conns {r['backend_conns_open']}, errors {r['errors']}")
else:
    extra = f"{r.get('conn_per_s', 0):.0f} conn/s" if m != "bulk" else f"{r['mib_per_s']:.0f} MiB/s"
    per = r.get("target_cpu_us_per_conn") or r.get("target_cpu_us_per_mib")
    unit = "µs/MiB" if m == "bulk" else "µs/conn"
    print(f"   {r['label']:16} {m}: ok {r['ok']} err {r['errors']} resumed {r['resumed_handshakes']} {extra}, p50 {r['latency']['p50_us']} µs p99 {r['latency']['p99_us']} µs, CPU {per:.0f} {unit}")
    for e in r["first_errors"][:2]:
        print(f"      error: {e}")
EOF
}

main() {
    ulimit -n "$(ulimit -Hn)"
    install_tools
    build
    setup_files
    start_backends
    log "runs: $RUNS, tests: $TESTS, proxies: $PROXIES (proxy core $PROXY_CPU, load core $LOAD_CPU), leaf $LEAF_ALG, LB CA $LB_CA"
    for run in $(seq 1 "$RUNS"); do
        for test in $TESTS; do
            for proxy in $PROXIES; do
                # Idle memory is measured on a fresh process: RSS that an
                # earlier test grew is not given back and would hide growth.
                if [[ $test == idle || -z ${RUNNING_PID[$proxy]:-} ]]; then
                    stop_proxy "$proxy"
                    start_proxy "$proxy"
                fi
                log "run $run/$RUNS $test $proxy"
                loadgen "$proxy" "$test" "$run"
                # One proxy under load at a time; the idle one only sleeps.
            done
        done
    done
    for proxy in $PROXIES; do stop_proxy "$proxy"; done
    python3 "$ROOT/bench/summarize.py" "$RAW" "$ROOT/bench/results/load-$TAG.json" \
        --env leaf_alg="$LEAF_ALG" lb_ca="$LB_CA" duration_s="$DURATION" concurrency="$CONCURRENCY" \
        fixed_rate="$FIXED_RATE" idle_conns="$IDLE_CONNS" bulk_mib="$BULK_MIB" \
        bulk_concurrency="$BULK_CONCURRENCY" proxy_cpu="$PROXY_CPU" load_cpu="$LOAD_CPU"
}

main "$@"
