//! `qmeta demo` and `qmeta init`: a complete loopback deployment.
//!
//! `init` generates every credential into a state directory (once; later
//! runs reuse them) and writes the config files of each part. `demo` then
//! starts each part from those files with the same loaders and start
//! functions the standalone subcommands use: the KME pair, two sample
//! backends, the LB and one policy agent per backend.

use anyhow::Context;
use qmeta_pki::Ca;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Where credentials, configs and the audit log live.
    #[arg(long, default_value = ".qmeta-state")]
    pub state_dir: PathBuf,
    /// Port of the LB's client-facing listener; the other parts use the
    /// ports just below it (DMCP: port-3, KMEs: port-2 and port-1) and
    /// above it (backends: port+1, port+2, admin API: port+3).
    #[arg(long, default_value_t = 8443)]
    pub port: u16,
}

/// Where everything of a loopback deployment is.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub pki: PathBuf,
    pub lb_port: u16,
    pub control_port: u16,
    pub kme_a_port: u16,
    pub kme_b_port: u16,
    pub backend_ports: [u16; 2],
    pub admin_port: u16,
}

pub const LB_SAE: &str = "sae-lb-1";
pub const BACKENDS: [(&str, &str); 2] = [("app-a", "sae-app-a"), ("app-b", "sae-app-b")];

impl Layout {
    pub fn new(dir: &Path, lb_port: u16) -> anyhow::Result<Layout> {
        anyhow::ensure!((4..=65533).contains(&lb_port), "--port must be between 4 and 65533");
        let dir = std::path::absolute(dir).with_context(|| format!("{}", dir.display()))?;
        Ok(Layout {
            pki: dir.join("pki"),
            dir,
            lb_port,
            control_port: lb_port - 3,
            kme_a_port: lb_port - 2,
            kme_b_port: lb_port - 1,
            backend_ports: [lb_port + 1, lb_port + 2],
            admin_port: lb_port + 3,
        })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The CA a client of the LB must trust.
    pub fn frontend_ca(&self) -> PathBuf {
        self.pki.join("frontend-ca.crt")
    }
}

/// Generates missing credentials (reusing existing ones).
pub fn credentials(l: &Layout) -> anyhow::Result<()> {
    let pki = &l.pki;
    std::fs::create_dir_all(pki).with_context(|| pki.display().to_string())?;
    let issue = |ca: &Ca, stem: &str, server: Option<&[&str]>| -> anyhow::Result<()> {
        if pki.join(format!("{stem}.crt")).exists() && pki.join(format!("{stem}.key")).exists() {
            return Ok(());
        }
        let cred = match server {
            Some(names) => ca.issue_server(stem, names)?,
            None => ca.issue_client(stem)?,
        };
        cred.write(pki, stem)?;
        Ok(())
    };
    // QKD PKI: KMEs and the SAEs that call them.
    let qkd = Ca::load_or_generate(pki, "qkd-ca", "qmeta QKD network CA")?;
    issue(&qkd, "kme-a", Some(&["kme-a", "localhost", "127.0.0.1"]))?;
    issue(&qkd, "kme-b", Some(&["kme-b", "localhost", "127.0.0.1"]))?;
    issue(&qkd, LB_SAE, None)?;
    for (_, sae) in BACKENDS {
        issue(&qkd, sae, None)?;
    }
    // The LB's metadata-certificate CA: backends trust it for client auth.
    Ca::load_or_generate(pki, "lb-ca", "qmeta LB metadata CA")?;
    // What clients of the LB trust.
    let front = Ca::load_or_generate(pki, "frontend-ca", "qmeta demo frontend CA")?;
    issue(&front, "frontend", Some(&["localhost", "api.localhost", "127.0.0.1", "::1"]))?;
    // Backend server certificates: the LB verifies them.
    let back = Ca::load_or_generate(pki, "backend-ca", "qmeta demo backend CA")?;
    for (name, _) in BACKENDS {
        issue(&back, name, Some(&[name, "localhost", "127.0.0.1"]))?;
    }
    Ok(())
}

pub async fn run(args: DemoArgs, start: bool) -> i32 {
    match run_inner(args, start).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("qmeta: {e:#}");
            1
        }
    }
}

async fn run_inner(args: DemoArgs, start: bool) -> anyhow::Result<()> {
    let layout = Layout::new(&args.state_dir, args.port)?;
    credentials(&layout)?;
    crate::demo_config::write_all(&layout)?;
    if !start {
        println!("Wrote credentials and configs to {}", layout.dir.display());
        for f in crate::demo_config::FILES {
            println!("  {}", layout.file(f).display());
        }
        return Ok(());
    }
    crate::demo_run::run(&layout).await
}
