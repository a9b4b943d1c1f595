#!/usr/bin/env python3
"""Summarise the load generator's JSON reports: min / median / max per proxy
over the alternating runs, qmeta / HAProxy ratios and the goals table.

usage: summarize.py RAW_DIR OUT_JSON [--env key=value ...]
Reads bench/results/micro.json (from bench/run-micro.sh), when present, for
the two-handshakes-alone limit and the audit append rate.
"""
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

METRICS = {
    "rate": [
        ("cpu_us_per_conn", lambda r: r.get("target_cpu_us_per_conn")),
        ("conn_per_s", lambda r: r.get("conn_per_s")),
        ("p50_us", lambda r: r["latency"]["p50_us"]),
        ("p99_us", lambda r: r["latency"]["p99_us"]),
        ("errors", lambda r: r["errors"]),
        ("resumed_handshakes", lambda r: r["resumed_handshakes"]),
    ],
    "fixed": [
        ("p50_us", lambda r: r["latency"]["p50_us"]),
        ("p99_us", lambda r: r["latency"]["p99_us"]),
        ("p999_us", lambda r: r["latency"]["p999_us"]),
        ("cpu_us_per_conn", lambda r: r.get("target_cpu_us_per_conn")),
        ("errors", lambda r: r["errors"]),
    ],
    "bulk": [
        ("cpu_us_per_mib", lambda r: r.get("target_cpu_us_per_mib")),
        ("mib_per_s", lambda r: r.get("mib_per_s")),
        ("errors", lambda r: r["errors"]),
    ],
    "idle": [
        ("kib_per_conn", lambda r: r.get("rss_kib_per_conn")),
        ("backend_conns_open", lambda r: r.get("backend_conns_open")),
        ("open", lambda r: r.get("open")),
    ],
}


def cmd(*args):
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except Exception as e:  # a missing tool is recorded, not fatal
        return f"unavailable ({e})"


def environment(extra):
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "haproxy": cmd("haproxy", "-v"),
        "nginx": cmd("nginx", "-v"),
        "openssl": cmd("openssl", "version"),
        "rustc": cmd("rustc", "-V"),
        "qmeta_commit": cmd("git", "-C", str(Path(__file__).resolve().parent.parent), "rev-parse", "--short", "HEAD"),
    }
    env.update(extra)
    return env


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def main():
    raw, out = Path(sys.argv[1]), Path(sys.argv[2])
    extra = {}
    if "--env" in sys.argv:
        for kv in sys.argv[sys.argv.index("--env") + 1:]:
            k, _, v = kv.partition("=")
            extra[k] = v
    reports = {}
    for f in sorted(raw.glob("*.json")):
        test, rest = f.stem.split("-", 1)
        proxy, _, _run = rest.rpartition("-")
        reports.setdefault(test, {}).setdefault(proxy, []).append(json.loads(f.read_text()))
    summary = {}
    for test, by_proxy in reports.items():
        summary[test] = {}
        for proxy, rs in by_proxy.items():
            summary[test][proxy] = {name: spread([get(r) for r in rs]) for name, get in METRICS[test]}

    def med(test, proxy, metric):
        s = summary.get(test, {}).get(proxy, {}).get(metric)
        return s["median"] if s else None

    micro = {}
    micro_path = out.parent / "micro.json"
    if micro_path.exists():
        micro = json.loads(micro_path.read_text())

    goals = []

    def goal(name, value, limit, unit, ok_if_le=True):
        met = None if value is None or limit is None else (value <= limit if ok_if_le else value >= limit)
        goals.append({"goal": name, "value": value, "limit": limit, "unit": unit, "met": met})

    q_cpu = med("rate", "qmeta", "cpu_us_per_conn")
    h_cpu = med("rate", "haproxy", "cpu_us_per_conn")
    goal("proxy CPU per connection <= 0.5 x HAProxy default", q_cpu, h_cpu and 0.5 * h_cpu, "µs/conn")
    hs = micro.get("handshakes_alone_us")
    goal("proxy CPU per connection <= 1.15 x the two handshakes alone", q_cpu, hs and 1.15 * hs, "µs/conn")
    goal("proxy CPU per MiB <= HAProxy's", med("bulk", "qmeta", "cpu_us_per_mib"), med("bulk", "haproxy", "cpu_us_per_mib"), "µs/MiB")
    goal("p99 at fixed rate <= HAProxy's", med("fixed", "qmeta", "p99_us"), med("fixed", "haproxy", "p99_us"), "µs")
    goal("memory per idle proxied connection <= HAProxy's", med("idle", "qmeta", "kib_per_conn"), med("idle", "haproxy", "kib_per_conn"), "KiB")
    goal("audit log appends >= 200,000 records/s (hash chain)", micro.get("audit_records_per_s"), 200_000, "records/s", ok_if_le=False)

    doc = {"env": environment(extra), "summary": summary, "goals": goals, "micro": micro}
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False))

    def fmt(s, digits=0):
        if not s:
            return "—"
        f = lambda v: f"{v:,.{digits}f}"
        return f"{f(s['median'])} ({f(s['min'])}–{f(s['max'])})"

    rows = [
        ("rate", "cpu_us_per_conn", "CPU per connection, µs"),
        ("rate", "conn_per_s", "new connections/s"),
        ("rate", "p50_us", "max-rate latency p50, µs"),
        ("rate", "p99_us", "max-rate latency p99, µs"),
        ("fixed", "p50_us", "fixed-rate latency p50, µs"),
        ("fixed", "p99_us", "fixed-rate latency p99, µs"),
        ("fixed", "cpu_us_per_conn", "fixed-rate CPU per connection, µs"),
        ("bulk", "mib_per_s", "bulk MiB/s"),
        ("bulk", "cpu_us_per_mib", "bulk CPU per MiB, µs"),
        ("idle", "kib_per_conn", "RSS per idle connection, KiB"),
        ("idle", "backend_conns_open", "backend connections held open"),
    ]
    proxies = [p for p in ("qmeta", "haproxy", "haproxy-noreuse") if any(p in summary.get(t, {}) for t in summary)]
    print()
    print("| figure, median (min–max) | " + " | ".join(proxies) + " | qmeta / HAProxy default | qmeta / HAProxy no-ssl-reuse |")
    print("|---" * (len(proxies) + 3) + "|")
    for test, metric, label in rows:
        if test not in summary:
            continue
        cells = [fmt(summary[test].get(p, {}).get(metric), 1 if test == "idle" else 0) for p in proxies]
        ratios = []
        for ref in ("haproxy", "haproxy-noreuse"):
            q, h = med(test, "qmeta", metric), med(test, ref, metric)
            ratios.append(f"{q / h:.2f}" if q is not None and h else "—")
        print(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    print()
    print("| goal | qmeta | limit | met |")
    print("|---|---|---|---|")
    for g in goals:
        v = "—" if g["value"] is None else f"{g['value']:,.1f} {g['unit']}"
        l = "—" if g["limit"] is None else f"{g['limit']:,.1f} {g['unit']}"
        m = {True: "met", False: "not met", None: "not measured"}[g["met"]]
        print(f"| {g['goal']} | {v} | {l} | {m} |")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
