#!/usr/bin/env bash
# Criterion micro-benchmarks of qmeta's per-connection work, then a summary
# in bench/results/micro.json (median estimates) that run-load.sh's goals
# table reads (two-handshakes-alone cost, audit append rate).
#
#   bench/run-micro.sh                 # all benches
#   bench/run-micro.sh cert            # one bench: cert dmcp audit handshake hello
#
# "hello" is qmeta-hello's own bench (ClientHello capture + JA4/JA3), run
# from here so that one command gives every figure.
#
# Extra criterion options can follow after the bench name, e.g.
#   bench/run-micro.sh handshake --measurement-time 10
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BENCHES=${1:-"cert dmcp audit handshake hello"}
shift || true
OPTS=("$@")
((${#OPTS[@]})) || OPTS=(--warm-up-time 1 --measurement-time 4)
for b in $BENCHES; do
    if [[ $b == hello ]]; then
        cargo bench -q -p qmeta-hello --bench ja4 -- "${OPTS[@]}"
    else
        cargo bench -q -p qmeta-bench --bench "$b" -- "${OPTS[@]}"
    fi
done
python3 - "$ROOT/target/criterion" "$ROOT/bench/results/micro.json" <<'PY'
import json, sys, subprocess
from pathlib import Path
root, out = Path(sys.argv[1]), Path(sys.argv[2])
est = {}
# Only our benches and qmeta-hello's (the criterion dir is shared).
OURS = ("cert_", "dmcp", "audit", "handshake", "capture", "ja4", "ja3", "capture+ja4")
for f in sorted(root.glob("**/new/estimates.json")):
    name = str(f.parent.parent.relative_to(root))
    if not name.startswith(OURS):
        continue
    e = json.loads(f.read_text())
    est[name] = {"median_ns": e["median"]["point_estimate"],
                 "ci95_ns": [e["median"]["confidence_interval"]["lower_bound"],
                             e["median"]["confidence_interval"]["upper_bound"]]}
def us(name):
    return est[name]["median_ns"] / 1000 if name in est else None
doc = {"estimates": est}
a, b = us("handshake/client_facing_server_side"), us("handshake/upstream_client_side/p256-x25519")
if a and b:
    doc["handshakes_alone_us"] = a + b
    doc["handshakes_alone_parts_us"] = {"client_facing_server_side": a, "upstream_client_side_p256_x25519": b}
if "audit/log_append_flushed" in est:
    doc["audit_records_per_s"] = 1e9 / est["audit/log_append_flushed"]["median_ns"]
doc["clienthello_ja4"] = ("qmeta-hello bench ja4: capture, ja4, capture+ja4, ja3"
                          if "capture+ja4" in est else "not run (bench/run-micro.sh hello)")
doc["rustc"] = subprocess.run(["rustc", "-V"], capture_output=True, text=True).stdout.strip()
out.write_text(json.dumps(doc, indent=2))
w = max(len(k) for k in est) if est else 10
for k, v in est.items():
    print(f"{k:{w}}  {v['median_ns'] / 1000:10.2f} µs")
for k in ("handshakes_alone_us", "audit_records_per_s"):
    if k in doc:
        print(f"{k}: {doc[k]:,.1f}")
print(f"wrote {out}")
PY
