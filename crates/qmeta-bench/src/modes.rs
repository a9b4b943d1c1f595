//! The load generator's four modes. Each returns a JSON report; CPU time of
//! the process under test is sampled around the measured window only.

use crate::client::Target;
use crate::procfs::{self, CpuSample};
use crate::stats;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Samples the CPU time of the process under test (and of this one).
#[derive(Clone, Copy, Debug)]
pub struct Meter {
    pub pid: Option<u32>,
    /// `getconf CLK_TCK`; 100 on Linux.
    pub clk_tck: u64,
}

/// CPU counters at the start of a measured window.
pub struct Window {
    at: Instant,
    target: Option<CpuSample>,
    me: Option<CpuSample>,
}

impl Meter {
    pub fn start(&self) -> Window {
        Window {
            at: Instant::now(),
            target: self.pid.and_then(|p| procfs::read_cpu(p).ok()),
            me: procfs::read_cpu(std::process::id()).ok(),
        }
    }

    /// CPU spent since `w` as JSON, plus the target's CPU in µs.
    pub fn finish(&self, w: &Window) -> (Value, Option<f64>, Duration) {
        let elapsed = w.at.elapsed();
        let us = |s: CpuSample| s.total() as f64 * 1e6 / self.clk_tck as f64;
        let target = match (self.pid, w.target) {
            (Some(p), Some(before)) => procfs::read_cpu(p).ok().map(|now| now.since(before)),
            _ => None,
        };
        let me = w.me.and_then(|b| procfs::read_cpu(std::process::id()).ok().map(|n| n.since(b)));
        let target_us = target.map(us);
        (
            json!({
                "elapsed_s": elapsed.as_secs_f64(),
                "target_pid": self.pid,
                "target_utime_ticks": target.map(|t| t.utime),
                "target_stime_ticks": target.map(|t| t.stime),
                "target_cpu_us": target_us,
                "target_cpu_util": target_us.map(|t| t / elapsed.as_secs_f64() / 1e6),
                "loadgen_cpu_us": me.map(us),
                "clk_tck": self.clk_tck,
                // Other work on the machine skews latency and throughput
                // (not the per-connection CPU time): keep it on record.
                "loadavg_after": std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.trim().to_string()),
            }),
            target_us,
            elapsed,
        )
    }
}

/// Outcomes collected by the workers of one phase.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    errors: AtomicU64,
    resumed: AtomicU64,
    retried: AtomicU64,
    body_bytes: AtomicU64,
    latencies: Mutex<Vec<u32>>,
    first_errors: Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, r: anyhow::Result<crate::client::Exchange>, latency: Duration) {
        match r {
            Ok(x) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                self.body_bytes.fetch_add(x.body_bytes, Ordering::Relaxed);
                if x.resumed {
                    self.resumed.fetch_add(1, Ordering::Relaxed);
                }
                if x.retried {
                    self.retried.fetch_add(1, Ordering::Relaxed);
                }
                let us = latency.as_micros().min(u32::MAX as u128) as u32;
                self.latencies.lock().unwrap().push(us);
            }
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_errors.lock().unwrap();
                if first.len() < 5 {
                    first.push(format!("{e:#}"));
                }
            }
        }
    }

    fn report(&self) -> Value {
        let mut lat = std::mem::take(&mut *self.latencies.lock().unwrap());
        json!({
            "ok": self.ok.load(Ordering::Relaxed),
            "errors": self.errors.load(Ordering::Relaxed),
            "first_errors": *self.first_errors.lock().unwrap(),
            "resumed_handshakes": self.resumed.load(Ordering::Relaxed),
            "hello_retries": self.retried.load(Ordering::Relaxed),
            "body_bytes": self.body_bytes.load(Ordering::Relaxed),
            "latency": stats::summary(&mut lat),
        })
    }
}

/// `concurrency` closed-loop workers, each repeating full exchanges until
/// `duration` has passed.
async fn closed_loop(target: &Target, req: &[u8], concurrency: usize, duration: Duration) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (t, req, tally) = (target.clone(), req.to_vec(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            while Instant::now() < deadline {
                let start = Instant::now();
                let r = t.exchange(&req, &mut buf).await;
                tally.record(r, start.elapsed());
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    tally
}

/// New connections per second: each one a full handshake, one small
/// request and response, close.
pub async fn max_rate(
    target: &Target,
    req: &[u8],
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    meter: Meter,
) -> Value {
    closed_loop(target, req, concurrency, warmup).await;
    let w = meter.start();
    let tally = closed_loop(target, req, concurrency, duration).await;
    let (cpu, target_us, elapsed) = meter.finish(&w);
    let ok = tally.ok.load(Ordering::Relaxed);
    let mut r = tally.report();
    r["mode"] = json!("max-rate");
    r["concurrency"] = json!(concurrency);
    r["conn_per_s"] = json!(ok as f64 / elapsed.as_secs_f64());
    r["target_cpu_us_per_conn"] = json!(target_us.filter(|_| ok > 0).map(|t| t / ok as f64));
    r["cpu"] = cpu;
    r
}

/// Large responses: MiB/s through the proxy and its CPU per MiB.
pub async fn bulk(
    target: &Target,
    req: &[u8],
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    meter: Meter,
) -> Value {
    closed_loop(target, req, concurrency, warmup).await;
    let w = meter.start();
    let tally = closed_loop(target, req, concurrency, duration).await;
    let (cpu, target_us, elapsed) = meter.finish(&w);
    let mib = tally.body_bytes.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0);
    let mut r = tally.report();
    r["mode"] = json!("bulk");
    r["concurrency"] = json!(concurrency);
    r["mib_per_s"] = json!(mib / elapsed.as_secs_f64());
    r["target_cpu_us_per_mib"] = json!(target_us.filter(|_| mib > 0.0).map(|t| t / mib));
    r["cpu"] = cpu;
    r
}

/// Open loop at `rate` connections per second: latency is measured from
/// each connection's scheduled start, so a stalled proxy cannot hide its
/// queueing (no coordinated omission).
pub async fn fixed_rate(
    target: &Target,
    req: &[u8],
    rate: f64,
    warmup: Duration,
    duration: Duration,
    max_in_flight: usize,
    meter: Meter,
) -> Value {
    let period = Duration::from_secs_f64(1.0 / rate);
    let warm = Arc::new(Tally::default());
    let tally = Arc::new(Tally::default());
    let in_flight = Arc::new(AtomicU64::new(0));
    let skipped = AtomicU64::new(0);
    let t0 = tokio::time::Instant::now();
    let measure_from = t0 + warmup;
    let end = measure_from + duration;
    let mut w = None;
    let mut tasks = Vec::new();
    for i in 0u64.. {
        let at = t0 + period.mul_f64(i as f64);
        if at >= end {
            break;
        }
        tokio::time::sleep_until(at).await;
        if w.is_none() && at >= measure_from {
            w = Some(meter.start());
        }
        if in_flight.load(Ordering::Relaxed) as usize >= max_in_flight {
            skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let sink = if at >= measure_from { tally.clone() } else { warm.clone() };
        let (t, req, in_flight) = (target.clone(), req.to_vec(), in_flight.clone());
        in_flight.fetch_add(1, Ordering::Relaxed);
        tasks.push(tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let r = t.exchange(&req, &mut buf).await;
            sink.record(r, at.elapsed());
            in_flight.fetch_sub(1, Ordering::Relaxed);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let w = w.unwrap_or_else(|| meter.start());
    let (cpu, target_us, _) = meter.finish(&w);
    let ok = tally.ok.load(Ordering::Relaxed);
    let mut r = tally.report();
    r["mode"] = json!("fixed-rate");
    r["rate"] = json!(rate);
    r["skipped_over_in_flight_cap"] = json!(skipped.load(Ordering::Relaxed));
    r["target_cpu_us_per_conn"] = json!(target_us.filter(|_| ok > 0).map(|t| t / ok as f64));
    r["cpu"] = cpu;
    r
}

/// Opens `count` TLS connections through the proxy and holds them without
/// sending a byte; reports the proxy's RSS growth per connection.
pub async fn idle(
    target: &Target,
    count: usize,
    open_concurrency: usize,
    settle: Duration,
    backend_port: Option<u16>,
    meter: Meter,
) -> Value {
    let rss_before = meter.pid.and_then(|p| procfs::read_rss_kib(p).ok());
    let backend_before = backend_port.and_then(|p| procfs::established_to(p).ok());
    let w = meter.start();
    let sem = Arc::new(tokio::sync::Semaphore::new(open_concurrency.max(1)));
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let (t, sem) = (target.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            t.open().await
        }));
    }
    let mut open = Vec::with_capacity(count);
    let mut errors = 0u64;
    let mut first_errors = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => open.push(s),
            Ok(Err(e)) => {
                errors += 1;
                if first_errors.len() < 5 {
                    first_errors.push(format!("{e:#}"));
                }
            }
            Err(e) => {
                errors += 1;
                if first_errors.len() < 5 {
                    first_errors.push(e.to_string());
                }
            }
        }
    }
    // Let the proxy finish its upstream handshakes before measuring: wait
    // (bounded) until every held connection has its backend connection,
    // then `settle` more for allocations to land.
    if let (Some(port), Some(before)) = (backend_port, backend_before) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let now_open = procfs::established_to(port).unwrap_or(0);
            if now_open.saturating_sub(before) >= open.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tokio::time::sleep(settle).await;
    let (cpu, target_us, _) = meter.finish(&w);
    let rss_after = meter.pid.and_then(|p| procfs::read_rss_kib(p).ok());
    let backend_after = backend_port.and_then(|p| procfs::established_to(p).ok());
    let n = open.len();
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if n > 0 => Some((a.saturating_sub(b)) as f64 / n as f64),
        _ => None,
    };
    drop(open);
    json!({
        "mode": "idle",
        "requested": count,
        "open": n,
        "errors": errors,
        "first_errors": first_errors,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_kib_per_conn": per_conn,
        "backend_conns_before": backend_before,
        "backend_conns_open": backend_after,
        "target_cpu_us_per_conn": target_us.filter(|_| n > 0).map(|t| t / n as f64),
        "cpu": cpu,
    })
}
