//! `agent.toml` → [`AgentConfig`], policy file included, every error at once.

use crate::policy::{load_policy, Policy};
use qmeta_config::{ConfigErrors, Document};
use qmeta_qkd::client::KmeClientConfig;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default wait before the first reconnect (doubling up to [`MAX_BACKOFF`]).
pub const DEFAULT_RECONNECT: Duration = Duration::from_secs(2);
/// Longest wait between reconnect attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Default bound on one exchange (key fetch + request + reply).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A validated agent configuration.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The backend's name, for logs and the status file.
    pub backend: String,
    /// `host:port` of the LB's DMCP control port.
    pub lb_control: String,
    /// The LB's SAE id: the slave of the keys this agent fetches.
    pub lb_sae_id: String,
    /// The policy file (re-read on SIGHUP).
    pub policy_path: PathBuf,
    /// The policy as loaded at start.
    pub policy: Policy,
    /// The agent's own KME (its certificate CN is the agent's SAE id).
    pub kme: KmeClientConfig,
    /// First reconnect delay; doubles on each failure up to [`MAX_BACKOFF`].
    pub reconnect: Duration,
    /// Bound on one exchange with the LB.
    pub timeout: Duration,
    /// Where to write a one-line JSON status after every change.
    pub status_file: Option<PathBuf>,
}

/// Reads `agent.toml` and the policy file it names.
///
/// ```toml
/// backend = "app1"
/// lb_control = "127.0.0.1:9440"
/// lb_sae_id = "lb-1"
/// policy = "policy-app1.toml"      # relative to this file
/// reconnect = "2s"                 # optional
/// timeout = "10s"                  # optional, per exchange
/// status_file = "agent-app1.json"  # optional
/// [kme]
/// url = "https://127.0.0.1:8444"
/// kme_id = "kme-b"
/// ca = "ca.crt"
/// cert = "app1-sae.crt"
/// key = "app1-sae.key"
/// timeout = "5s"                   # optional
/// ```
pub fn load_config(path: &Path) -> Result<AgentConfig, ConfigErrors> {
    let doc = Document::load(path)?;
    let root = doc.root();
    let backend = root.str("backend");
    let lb_control = root.str("lb_control");
    if let Some(addr) = &lb_control {
        if !valid_host_port(addr) {
            root.error("lb_control", format!("expected \"host:port\", found {addr:?}"));
        }
    }
    let lb_sae_id = root.str("lb_sae_id");
    if lb_sae_id.as_deref().is_some_and(|s| s.is_empty() || s.len() > qmeta_dmcp::MAX_SENDER_LEN) {
        root.error("lb_sae_id", format!("must be 1..={} characters", qmeta_dmcp::MAX_SENDER_LEN));
    }
    let policy_path = root.path("policy", true);
    let reconnect = root.opt_duration("reconnect").unwrap_or(DEFAULT_RECONNECT);
    if reconnect.is_zero() {
        root.error("reconnect", "must be more than 0");
    }
    let timeout = root.opt_duration("timeout").unwrap_or(DEFAULT_TIMEOUT);
    if timeout.is_zero() {
        root.error("timeout", "must be more than 0");
    }
    let status_file = root.opt_path("status_file", false);
    let kme = root.table("kme").and_then(|k| qmeta_qkd::client::read_config_section(&k));
    // The policy's own errors name the policy file; report them together.
    let policy = policy_path.as_deref().map(load_policy);
    let mut errors = match root.finish() {
        Ok(()) => Vec::new(),
        Err(e) => e.0,
    };
    let policy = match policy {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            errors.extend(e.0);
            None
        }
        None => None,
    };
    match (backend, lb_control, lb_sae_id, policy_path, policy, kme) {
        (Some(backend), Some(lb_control), Some(lb_sae_id), Some(policy_path), Some(policy), Some(kme))
            if errors.is_empty() =>
        {
            Ok(AgentConfig {
                backend,
                lb_control,
                lb_sae_id,
                policy_path,
                policy,
                kme,
                reconnect,
                timeout,
                status_file,
            })
        }
        _ => Err(ConfigErrors(errors)),
    }
}

fn valid_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn every_bad_key_is_named_across_both_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "policy.toml", "required = ['nope']\ntypo = 1");
        let cfg = write(
            dir.path(),
            "agent.toml",
            r#"
            lb_control = "no-port"
            lb_sae_id = ""
            policy = "policy.toml"
            reconnect = "soon"
            extra = 1
            [kme]
            url = "https://127.0.0.1:1"
            ca = "missing-ca.crt"
            cert = "missing.crt"
            key = "missing.key"
            "#,
        );
        let errs = load_config(&cfg).unwrap_err();
        for key in [
            "backend",
            "lb_control",
            "lb_sae_id",
            "reconnect",
            "extra",
            "kme.kme_id",
            "kme.ca",
            "kme.cert",
            "kme.key",
            "required",
            "typo",
        ] {
            assert!(errs.mentions(key), "{key} not named in:\n{errs}");
        }
        assert!(errs.to_string().contains("policy.toml: `required`: unknown field `nope`"), "{errs}");
    }

    #[test]
    fn the_example_loads() {
        // examples/ points at the state directory `qmeta init` creates beside
        // it; stand in empty files for the generated credentials.
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let ex = dir.path().join("examples");
        let pki = dir.path().join(".qmeta-state/pki");
        std::fs::create_dir_all(&ex).unwrap();
        std::fs::create_dir_all(&pki).unwrap();
        for name in ["agent-a.toml", "policy-a.toml"] {
            std::fs::copy(root.join(name), ex.join(name)).unwrap();
        }
        for name in ["qkd-ca.crt", "sae-app-a.crt", "sae-app-a.key"] {
            write(&pki, name, "");
        }
        let cfg = load_config(&ex.join("agent-a.toml")).unwrap();
        assert_eq!(cfg.backend, "app-a");
        assert_eq!(cfg.lb_sae_id, "sae-lb-1");
        assert_eq!(cfg.kme.cert, ex.join("../.qmeta-state/pki/sae-app-a.crt"));
        assert_eq!(cfg.policy.scopes.len(), 1);
    }

    #[test]
    fn host_port() {
        assert!(valid_host_port("127.0.0.1:9440"));
        assert!(valid_host_port("lb.internal:9440"));
        assert!(valid_host_port("[::1]:9440"));
        assert!(!valid_host_port("lb.internal"));
        assert!(!valid_host_port(":9440"));
        assert!(!valid_host_port("x:0"));
    }
}
