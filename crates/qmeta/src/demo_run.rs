//! Starting the loopback deployment in one process, each part from its
//! config file through the same loader and start function as its own
//! subcommand.

use crate::demo::Layout;
use anyhow::Context;
use std::time::{Duration, Instant};

fn config_error(file: &str) -> impl Fn(qmeta_config::ConfigErrors) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("{file}: invalid configuration:\n{e}")
}

pub async fn run(l: &Layout) -> anyhow::Result<()> {
    let kme_cfg = qmeta_qkd::kme::load(&l.file("kme.toml")).map_err(config_error("kme.toml"))?;
    let kmes = qmeta_qkd::kme::start(kme_cfg).await.context("starting the KME pair")?;

    let mut backends = Vec::new();
    for letter in ["a", "b"] {
        let file = format!("backend-{letter}.toml");
        let cfg = qmeta_sdk::sample::load_config(&l.file(&file)).map_err(config_error(&file))?;
        let name = cfg.name.clone();
        let b = qmeta_sdk::sample::start(cfg).await.with_context(|| format!("starting backend {name}"))?;
        backends.push((name, b));
    }

    let lb_cfg = qmeta_lb::config::load(&l.file("lb.toml")).map_err(config_error("lb.toml"))?;
    let lb = qmeta_lb::Lb::start(lb_cfg, Some(l.file("lb.toml"))).await.context("starting the load balancer")?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut agents = Vec::new();
    for letter in ["a", "b"] {
        let file = format!("agent-{letter}.toml");
        let cfg = qmeta_agent::load_config(&l.file(&file)).map_err(config_error(&file))?;
        let rx = stop_rx.clone();
        agents.push(tokio::spawn(async move {
            if let Err(e) = qmeta_agent::run(cfg, rx).await {
                tracing::error!("agent stopped: {e:#}");
            }
        }));
    }
    wait_for_agents(l).await;

    let ca = l.frontend_ca();
    println!();
    println!("qmeta demo is running (state in {}).", l.dir.display());
    println!("  load balancer  https://localhost:{}/   DMCP on {}", lb.addr().port(), lb.control_addr());
    if let Some(admin) = lb.admin_addr() {
        println!("  admin API      http://{admin}/metrics  http://{admin}/api/v1/backends");
    }
    let addrs: Vec<String> = kmes.addrs().iter().map(|a| format!("https://{a}")).collect();
    println!("  KME pair       {} (simulated BB84 link)", addrs.join("  "));
    for (name, b) in &backends {
        println!("  backend        {name} on {} (requires the LB's client certificate)", b.addr());
    }
    println!(
        "  agents         {} and {} — edit, then `kill -HUP {}` to apply",
        l.file("policy-a.toml").display(),
        l.file("policy-b.toml").display(),
        std::process::id()
    );
    println!("  audit log      {}", l.file("audit.log").display());
    println!();
    println!("Trust this CA: {}", ca.display());
    println!("Try:");
    println!("  curl --cacert {} https://localhost:{}/", ca.display(), lb.addr().port());
    println!("  {} audit verify {}", exe(), l.file("audit.log").display());
    println!();
    println!("Press Ctrl-C to stop.");

    let mut stop = crate::cli::shutdown_signal();
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            break;
        }
    }
    println!("stopping…");
    let _ = stop_tx.send(true);
    for a in agents {
        let _ = tokio::time::timeout(Duration::from_secs(3), a).await;
    }
    lb.shutdown().await;
    for (_, b) in backends {
        b.shutdown().await;
    }
    kmes.shutdown().await;
    Ok(())
}

/// Gives the agents a moment to deliver their first SYNC, so the first
/// request already shows the fields their policies ask for.
async fn wait_for_agents(l: &Layout) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let files = [l.file("agent-a.status.json"), l.file("agent-b.status.json")];
    let started = std::time::SystemTime::now();
    while Instant::now() < deadline {
        let fresh = files.iter().all(|f| {
            let recent = std::fs::metadata(f).and_then(|m| m.modified()).map(|t| t >= started).unwrap_or(false);
            recent && std::fs::read_to_string(f).map(|s| s.contains("\"connected\":true")).unwrap_or(false)
        });
        if fresh {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn exe() -> String {
    std::env::args().next().unwrap_or_else(|| "qmeta".into())
}
