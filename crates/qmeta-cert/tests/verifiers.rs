//! Real verifiers accept minted certificates: rustls-webpki (what a rustls
//! backend runs) and the OpenSSL command line (what nginx/HAProxy link).

mod common;

use common::*;
use qmeta_cert::{mint, LeafAlg, OID_BASE};
use qmeta_pki::KeyAlg;
use rustls_pki_types::{CertificateDer, UnixTime};
use std::process::Command;
use std::time::Duration;

fn webpki_verify(ca_der: &[u8], leaf_der: &[u8], at: u64) -> Result<(), webpki::Error> {
    let ca = CertificateDer::from(ca_der.to_vec());
    let anchor = webpki::anchor_from_trusted_cert(&ca)?;
    let leaf = CertificateDer::from(leaf_der.to_vec());
    let ee = webpki::EndEntityCert::try_from(&leaf)?;
    let algs = [webpki::aws_lc_rs::ECDSA_P256_SHA256, webpki::aws_lc_rs::ED25519];
    ee.verify_for_usage(
        &algs,
        &[anchor],
        &[],
        UnixTime::since_unix_epoch(Duration::from_secs(at)),
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map(|_| ())
}

#[test]
fn webpki_accepts_minted_certificates() {
    let combos = [
        (KeyAlg::P256, LeafAlg::P256),
        (KeyAlg::P256, LeafAlg::Ed25519),
        (KeyAlg::Ed25519, LeafAlg::P256),
        (KeyAlg::Ed25519, LeafAlg::Ed25519),
    ];
    for (ca_alg, leaf_alg) in combos {
        let s = setup(ca_alg, leaf_alg);
        let fields = sample_fields(16, true);
        let now = now();
        let minted = mint(&s.issuer, &s.leaf, &request(&fields, &QKD_KEY, now)).unwrap();
        let ca_der = s.issuer.ca_cert_der();
        webpki_verify(ca_der, &minted.der, now).unwrap_or_else(|e| panic!("{ca_alg:?}/{leaf_alg:?}: {e:?}"));
        // And it must fail for the right reasons, or the check above proves nothing.
        assert!(matches!(webpki_verify(ca_der, &minted.der, now + 301), Err(webpki::Error::CertExpired { .. })));
        let other = setup(ca_alg, leaf_alg);
        assert!(webpki_verify(other.issuer.ca_cert_der(), &minted.der, now).is_err());
        let mut tampered = minted.der.clone();
        let r = sealed_range(&tampered, qmeta_fields::FieldId::SRC_IP);
        tampered[r.start] ^= 1;
        assert!(webpki_verify(ca_der, &tampered, now).is_err(), "signature covers the sealed values");
    }
}

fn openssl() -> Command {
    let found = Command::new("openssl").arg("version").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(found, "the `openssl` binary is required for this test: install it (apt-get install openssl)");
    Command::new("openssl")
}

#[test]
fn openssl_prints_and_verifies_minted_certificates() {
    for ca_alg in [KeyAlg::P256, KeyAlg::Ed25519] {
        let s = setup(ca_alg, LeafAlg::P256);
        let fields = sample_fields(8, false);
        let minted = mint(&s.issuer, &s.leaf, &request(&fields, &QKD_KEY, now())).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.pem");
        let leaf_path = dir.path().join("leaf.pem");
        std::fs::write(&ca_path, &s.ca.credential.cert_pem).unwrap();
        std::fs::write(&leaf_path, pem("CERTIFICATE", &minted.der)).unwrap();

        let text = openssl().args(["x509", "-noout", "-text", "-in"]).arg(&leaf_path).output().unwrap();
        let stdout = String::from_utf8_lossy(&text.stdout);
        assert!(text.status.success(), "openssl x509 failed: {}", String::from_utf8_lossy(&text.stderr));
        assert!(stdout.contains(&format!("{OID_BASE}.1")), "{stdout}");
        assert!(stdout.contains(&format!("{OID_BASE}.2.8")), "{stdout}");
        assert!(stdout.contains("TLS Web Client Authentication"), "{stdout}");
        // OpenSSL prints the serial's value: the 16 bytes, colon-separated.
        let serial_colons: Vec<&str> = (0..16).map(|i| &minted.serial_hex[2 * i..2 * i + 2]).collect();
        assert!(stdout.contains(&serial_colons.join(":")), "{stdout}");

        let verify = openssl()
            .current_dir(dir.path())
            .args(["verify", "-purpose", "sslclient", "-CAfile", "ca.pem", "leaf.pem"])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&verify.stdout);
        assert!(
            verify.status.success() && out.trim() == "leaf.pem: OK",
            "{ca_alg:?}: stdout={out} stderr={}",
            String::from_utf8_lossy(&verify.stderr)
        );
    }
}
