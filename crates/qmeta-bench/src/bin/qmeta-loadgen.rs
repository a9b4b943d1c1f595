//! `qmeta-loadgen`: TLS load generator for the side-by-side benchmarks.
//! Every connection is a full handshake (resumption disabled). Prints one
//! JSON report on stdout (and writes it to `--out`).

use clap::{Parser, ValueEnum};
use qmeta_bench::client::{tls_config, Kx, Target};
use qmeta_bench::modes::{self, Meter};
use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// Closed loop: new connections per second, latency percentiles.
    MaxRate,
    /// Open loop at --rate: latency from each connection's scheduled start.
    FixedRate,
    /// Large responses (--path names a big file): MiB/s, CPU per MiB.
    Bulk,
    /// Open --connections TLS connections and hold them: RSS per connection.
    Idle,
}

#[derive(Parser, Debug)]
#[command(name = "qmeta-loadgen", about = "TLS load generator that defeats session resumption")]
struct Args {
    #[arg(long, value_enum)]
    mode: Mode,
    /// Proxy address, e.g. 127.0.0.1:19443.
    #[arg(long)]
    target: SocketAddr,
    /// CA file the proxy's certificate chains to.
    #[arg(long)]
    ca: PathBuf,
    #[arg(long, default_value = "localhost")]
    server_name: String,
    #[arg(long, value_enum, default_value = "x25519")]
    kx: Kx,
    #[arg(long, default_value = "/")]
    path: String,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds before the measured window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Closed-loop workers (max-rate, bulk).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Connections per second (fixed-rate).
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Connections to hold open (idle).
    #[arg(long, default_value_t = 2000)]
    connections: usize,
    /// Backend port whose established connections are counted (idle).
    #[arg(long)]
    backend_port: Option<u16>,
    /// PID of the proxy: CPU time (and RSS in idle mode) is read from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// `getconf CLK_TCK`.
    #[arg(long, default_value_t = 100)]
    clk_tck: u64,
    /// Label copied into the report (e.g. "qmeta", "haproxy").
    #[arg(long, default_value = "")]
    label: String,
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Also write the report here.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    qmeta_pki::install_provider();
    // One thread: the generator is pinned to one core beside nginx.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report = rt.block_on(run(&a))?;
    let text = serde_json::to_string_pretty(&report)?;
    if let Some(out) = &a.out {
        std::fs::write(out, &text)?;
    }
    println!("{text}");
    Ok(())
}

async fn run(a: &Args) -> anyhow::Result<serde_json::Value> {
    let target = Target {
        addr: a.target,
        server_name: ServerName::try_from(a.server_name.clone())?,
        connector: tokio_rustls::TlsConnector::from(tls_config(&a.ca, a.kx)?),
        timeout: Duration::from_secs_f64(a.timeout),
    };
    let meter = Meter { pid: a.pid, clk_tck: a.clk_tck };
    let req = qmeta_bench::http::request(&a.path, &a.server_name);
    let (warmup, duration) = (Duration::from_secs_f64(a.warmup), Duration::from_secs_f64(a.duration));
    let mut report = match a.mode {
        Mode::MaxRate => modes::max_rate(&target, &req, a.concurrency, warmup, duration, meter).await,
        Mode::Bulk => modes::bulk(&target, &req, a.concurrency, warmup, duration, meter).await,
        Mode::FixedRate => modes::fixed_rate(&target, &req, a.rate, warmup, duration, 10_000, meter).await,
        Mode::Idle => modes::idle(&target, a.connections, 64, warmup, a.backend_port, meter).await,
    };
    report["label"] = serde_json::json!(a.label);
    report["target"] = serde_json::json!(a.target.to_string());
    report["kx"] = serde_json::json!(format!("{:?}", a.kx));
    report["path"] = serde_json::json!(a.path);
    Ok(report)
}
