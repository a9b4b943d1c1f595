//! `qmeta-bench-pki DIR`: the extra credentials the side-by-side benchmark
//! needs beside what `qmeta init` wrote into DIR: an Ed25519 LB CA (to
//! compare leaf/CA algorithms) and HAProxy's static client certificates,
//! issued by the same LB CAs the minted certificates chain to.

use qmeta_pki::{Ca, KeyAlg};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let dir: PathBuf =
        std::env::args_os().nth(1).ok_or_else(|| anyhow::anyhow!("usage: qmeta-bench-pki PKI_DIR"))?.into();
    let p256 = Ca::from_credential(qmeta_pki::Credential::read(&dir, "lb-ca")?, "lb-ca")?;
    if !dir.join("lb-ca-ed25519.crt").exists() {
        Ca::generate("qmeta LB metadata CA (Ed25519)", KeyAlg::Ed25519)?.credential.write(&dir, "lb-ca-ed25519")?;
    }
    let ed = Ca::from_credential(qmeta_pki::Credential::read(&dir, "lb-ca-ed25519")?, "lb-ca-ed25519")?;
    // HAProxy's static certificate: a P-256 key (OpenSSL 3.0 loads it)
    // signed by each LB CA.
    p256.issue_client("haproxy-static")?.write(&dir, "haproxy-client")?;
    ed.issue_client("haproxy-static")?.write(&dir, "haproxy-client-ed25519")?;
    println!("wrote lb-ca-ed25519 and haproxy-client certificates to {}", dir.display());
    Ok(())
}
