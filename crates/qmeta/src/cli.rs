//! Command-line interface.

use clap::{Parser, Subcommand};
use qmeta_config::{ConfigErrors, EXIT_CONFIG};
use std::path::PathBuf;
use tokio::sync::watch;

#[derive(Parser, Debug)]
#[command(
    name = "qmeta",
    version,
    about = "Load balancer that forwards client metadata to backends in QKD-keyed, encrypted, backend-chosen X.509 certificates"
)]
pub struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the whole system on loopback: KME pair, LB, two sample backends, two agents.
    Demo(crate::demo::DemoArgs),
    /// Generate credentials and configs for a loopback deployment, then exit.
    Init(crate::demo::DemoArgs),
    /// Run the load balancer.
    Lb(RunArgs),
    /// Run a simulated KME pair (ETSI GS QKD 014 over HTTPS + mTLS).
    Kme(RunArgs),
    /// Run a backend's policy agent (DMCP client).
    Agent(RunArgs),
    /// Run the sample HTTPS backend that decodes LB certificates.
    Backend(RunArgs),
    /// Inspect LB certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// The simulated QKD link (BB84 with Cascade and privacy amplification).
    #[command(subcommand)]
    Qkd(QkdCommand),
    /// Work with audit logs.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The TOML configuration file.
    #[arg(short, long)]
    pub config: PathBuf,
    /// Validate the configuration and exit.
    #[arg(long)]
    pub check: bool,
}

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Print a certificate's metadata extensions; decrypt them when given a
    /// backend config (its [kme] section and the LB's SAE id).
    Inspect {
        /// PEM or DER certificate file.
        file: PathBuf,
        /// A sample-backend config whose KME credentials fetch the key.
        #[arg(long)]
        backend_config: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum QkdCommand {
    /// Run BB84 blocks per QBER and print measured QBER, Cascade efficiency,
    /// secret key fraction and key rate; `--plot out.svg` draws key rate vs
    /// QBER against 1 − 2h(Q). `qmeta qkd simulate --help` lists the options.
    #[command(disable_help_flag = true)]
    Simulate {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the hash chain; names the first bad line. Exit 0: intact;
    /// 1: broken; 66: the file cannot be read.
    Verify { file: PathBuf },
}

pub fn init_logging(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("QMETA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Prints config errors and returns the config exit code.
pub fn config_failed(errors: &ConfigErrors) -> i32 {
    eprintln!("qmeta: invalid configuration ({} error{}):", errors.len(), if errors.len() == 1 { "" } else { "s" });
    for e in &errors.0 {
        eprintln!("  {e}");
    }
    EXIT_CONFIG
}

/// A receiver that turns true on SIGINT or SIGTERM.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        let _ = tx.send(true);
    });
    rx
}

/// Waits for SIGINT/SIGTERM. SIGHUP — "reload" to an operator — is logged
/// and ignored by the parts that have nothing to reload, instead of killing
/// them.
async fn wait(mut rx: watch::Receiver<bool>) {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    while !*rx.borrow() {
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => {
                tracing::info!("SIGHUP: nothing to reload here (restart to apply a new configuration)");
            }
        }
    }
}

pub async fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Demo(args) => crate::demo::run(args, true).await,
        Command::Init(args) => crate::demo::run(args, false).await,
        Command::Lb(a) => {
            let cfg = match qmeta_lb::config::load(&a.config) {
                Ok(c) => c,
                Err(e) => return config_failed(&e),
            };
            if a.check {
                println!("{}: OK", a.config.display());
                return 0;
            }
            let lb = match qmeta_lb::Lb::start(cfg, Some(a.config.clone())).await {
                Ok(lb) => lb,
                Err(e) => return fatal(&e),
            };
            println!("qmeta lb: listening on {} (DMCP on {})", lb.addr(), lb.control_addr());
            let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(h) => h,
                Err(e) => return fatal(&e),
            };
            let mut stop = shutdown_signal();
            loop {
                tokio::select! {
                    _ = hup.recv() => match lb.reload().await {
                        Ok(summary) => tracing::info!("SIGHUP: {summary}"),
                        Err(errors) => tracing::error!("SIGHUP: reload refused, configuration unchanged: {errors}"),
                    },
                    _ = stop.changed() => break,
                }
            }
            lb.shutdown().await;
            0
        }
        Command::Kme(a) => {
            let cfg = match qmeta_qkd::kme::load(&a.config) {
                Ok(c) => c,
                Err(e) => return config_failed(&e),
            };
            if a.check {
                println!("{}: OK", a.config.display());
                return 0;
            }
            let kme = match qmeta_qkd::kme::start(cfg).await {
                Ok(k) => k,
                Err(e) => return fatal(&e),
            };
            match kme.addrs().as_slice() {
                [a, b] => println!("qmeta kme: site A on {a}, site B on {b}"),
                addrs => println!(
                    "qmeta kme: listening on {}",
                    addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
                ),
            }
            wait(shutdown_signal()).await;
            kme.shutdown().await;
            0
        }
        Command::Agent(a) => {
            let cfg = match qmeta_agent::load_config(&a.config) {
                Ok(c) => c,
                Err(e) => return config_failed(&e),
            };
            if a.check {
                println!("{}: OK", a.config.display());
                return 0;
            }
            match qmeta_agent::run(cfg, shutdown_signal()).await {
                Ok(()) => 0,
                Err(e) => fatal(&e),
            }
        }
        Command::Backend(a) => {
            let cfg = match qmeta_sdk::sample::load_config(&a.config) {
                Ok(c) => c,
                Err(e) => return config_failed(&e),
            };
            if a.check {
                println!("{}: OK", a.config.display());
                return 0;
            }
            let b = match qmeta_sdk::sample::start(cfg).await {
                Ok(b) => b,
                Err(e) => return fatal(&e),
            };
            println!("qmeta backend: listening on {}", b.addr());
            wait(shutdown_signal()).await;
            b.shutdown().await;
            0
        }
        Command::Cert(CertCommand::Inspect { file, backend_config }) => {
            crate::inspect::run(&file, backend_config.as_deref()).await
        }
        Command::Qkd(QkdCommand::Simulate { args }) => {
            // CPU-bound: run it off the async runtime's workers.
            tokio::task::spawn_blocking(move || qmeta_bb84::cli_main(&args)).await.unwrap_or(1)
        }
        Command::Audit(AuditCommand::Verify { file }) => match qmeta_audit::verify_file(&file) {
            Ok(s) => {
                println!("{}: OK, {} records, head {} (seq {})", file.display(), s.records, s.head.hash, s.head.seq);
                0
            }
            Err(e) if e.line == 0 => {
                eprintln!("{}: {}", file.display(), e.reason);
                66
            }
            Err(e) => {
                eprintln!("{}: chain broken at {e}", file.display());
                1
            }
        },
    }
}

fn fatal(e: &dyn std::fmt::Display) -> i32 {
    eprintln!("qmeta: {e}");
    1
}
