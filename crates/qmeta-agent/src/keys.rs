//! Where the agent's one-time keys come from.

use qmeta_qkd::client::KmeClient;
use qmeta_qkd::Key;
use std::future::Future;

/// Bits per DMCP key: 256 for the request MAC, 256 for the reply MAC.
pub const DMCP_KEY_BITS: u32 = 512;

/// A source of fresh 512-bit keys shared with the LB's SAE. The KME
/// implementation is [`KmeKeys`]; tests use an in-memory one.
pub trait KeySource: Send + Sync {
    /// The agent's SAE id (the `master` of its keys; the DMCP sender).
    fn sae_id(&self) -> &str;
    /// One fresh key of [`DMCP_KEY_BITS`] bits.
    fn fresh_key(&self) -> impl Future<Output = anyhow::Result<Key>> + Send;
}

/// Keys from the agent's KME over ETSI GS QKD 014 (`enc_keys`, slave = the
/// LB's SAE id).
pub struct KmeKeys {
    pub client: KmeClient,
    pub lb_sae_id: String,
}

impl KeySource for KmeKeys {
    fn sae_id(&self) -> &str {
        self.client.sae_id()
    }

    async fn fresh_key(&self) -> anyhow::Result<Key> {
        let mut keys = self.client.enc_keys(&self.lb_sae_id, 1, DMCP_KEY_BITS).await?;
        let key = keys.pop().ok_or_else(|| anyhow::anyhow!("KME returned no key"))?;
        anyhow::ensure!(
            key.bytes.len() * 8 == DMCP_KEY_BITS as usize,
            "KME returned a {}-bit key, expected {DMCP_KEY_BITS}",
            key.bytes.len() * 8
        );
        Ok(key)
    }
}
