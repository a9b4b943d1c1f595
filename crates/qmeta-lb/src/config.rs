//! `qmeta lb` configuration: TOML text → validated [`LbConfig`] in one pure
//! step that reports every bad key at once.

use qmeta_config::{ConfigErrors, Document, Section};
use qmeta_fields::{FieldId, FieldSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest allowed interval between QKD key rotations.
pub const MAX_ROTATION: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct LbConfig {
    /// This LB's node id (field `lb_node_id`, certificate subject).
    pub node_id: String,
    pub listen: ListenConfig,
    pub control: ControlConfig,
    pub kme: qmeta_qkd::client::KmeClientConfig,
    pub certificates: CertConfig,
    pub keys: KeyConfig,
    pub upstream: UpstreamConfig,
    pub audit: AuditConfig,
    /// The admin API (metrics, JSON state); off when absent.
    pub admin: Option<AdminConfig>,
    /// How backends are chosen (`balance = "round_robin"`, the default,
    /// `"least_connections"` or `"consistent_hash"` on the client address).
    pub balance: crate::balance::Algorithm,
    /// MaxMind-format databases for the geo fields; none when absent.
    pub geo: Option<qmeta_geo::GeoConfig>,
    pub health: HealthConfig,
    /// HTTP mode settings (`[http]`); only used when `listen.mode = "http"`.
    pub http: HttpConfig,
    /// Static operator-defined fields (ids 1000–1999) sent when a backend asks for them.
    pub custom_fields: Vec<(FieldId, String)>,
    pub backends: Vec<BackendConfig>,
}

/// What an active health check does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthCheck {
    /// No active checks: only passive ejection after failed connections.
    None,
    /// TCP connect.
    Tcp,
    /// mTLS handshake presenting a minted certificate (no fields).
    Tls,
    /// `GET http_path` over that connection; 2xx or 3xx is healthy.
    Http,
}

#[derive(Clone, Debug)]
pub struct HealthConfig {
    pub check: HealthCheck,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes to bring a down backend up.
    pub rise: u32,
    /// Consecutive failures to take an up backend down.
    pub fall: u32,
    pub http_path: String,
    /// How long a failed client connection ejects a backend.
    pub eject_for: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            check: HealthCheck::None,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            rise: 2,
            fall: 3,
            http_path: "/".into(),
            eject_for: Duration::from_secs(10),
        }
    }
}

fn health(s: Option<Section>) -> HealthConfig {
    let d = HealthConfig::default();
    let Some(s) = s else { return d };
    let check = match s.opt_str("check").as_deref() {
        None | Some("none") => HealthCheck::None,
        Some("tcp") => HealthCheck::Tcp,
        Some("tls") => HealthCheck::Tls,
        Some("http") => HealthCheck::Http,
        Some(other) => {
            s.error("check", format!("{other:?} is not one of \"none\", \"tcp\", \"tls\", \"http\""));
            HealthCheck::None
        }
    };
    let interval = s.opt_duration("interval").unwrap_or(d.interval);
    let timeout = s.opt_duration("timeout").unwrap_or(d.timeout);
    if interval < Duration::from_millis(100) {
        s.error("interval", "must be at least 100ms");
    }
    if timeout.is_zero() || timeout > interval {
        s.error("timeout", "must be greater than zero and at most `interval`");
    }
    let rise = s.opt_int("rise", 1..=100).unwrap_or(2) as u32;
    let fall = s.opt_int("fall", 1..=100).unwrap_or(3) as u32;
    let http_path = s.opt_str("http_path").unwrap_or_else(|| "/".into());
    if !http_path.starts_with('/') || http_path.bytes().any(|c| c <= b' ' || c == 0x7f) {
        s.error("http_path", "must start with / and contain no spaces or control characters");
    }
    let eject_for = s.opt_duration("eject_for").unwrap_or(d.eject_for);
    s.deny_unknown();
    HealthConfig { check, interval, timeout, rise, fall, http_path, eject_for }
}

/// What the client listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ListenMode {
    /// TLS-terminating TCP proxy: one upstream connection per client connection.
    #[default]
    Tcp,
    /// HTTP/1.1 and HTTP/2 (by ALPN): per-request HTTP fields, route scopes.
    Http,
}

/// `[http]`: what HTTP mode adds to and strips from requests.
#[derive(Clone, Debug, Default)]
pub struct HttpConfig {
    /// Add `X-Forwarded-For`, `X-Forwarded-Proto` and `Forwarded`.
    pub forward_headers: bool,
    /// `[[http.header_field]]`: request header (lowercase) → custom field id.
    pub header_fields: Vec<(String, FieldId)>,
}

/// Longest header value taken into a custom field.
pub const MAX_HEADER_FIELD_LEN: usize = 1024;

fn http(s: Option<Section>) -> HttpConfig {
    let Some(s) = s else { return HttpConfig::default() };
    let forward_headers = s.bool_or("forward_headers", false);
    let mut header_fields: Vec<(String, FieldId)> = Vec::new();
    for t in s.tables("header_field", false) {
        let header = t.str("header").map(|h| h.to_ascii_lowercase());
        let id = t.int("id", i64::from(qmeta_fields::CUSTOM_MIN)..=i64::from(qmeta_fields::CUSTOM_MAX));
        t.deny_unknown();
        let (Some(header), Some(id)) = (header, id) else { continue };
        let Some(f) = FieldId::new(id as u16) else { continue };
        if header.is_empty() || !header.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
            t.error("header", format!("{header:?} is not a valid header name"));
        } else if crate::http::is_stripped(&header) {
            t.error("header", format!("{header:?} is removed from every request by the LB"));
        } else if header_fields.iter().any(|(_, o)| *o == f) {
            t.error("id", format!("{id} is mapped twice"));
        } else {
            header_fields.push((header, f));
        }
    }
    s.deny_unknown();
    HttpConfig { forward_headers, header_fields }
}

#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// Plain HTTP, no authentication: bind it to loopback.
    pub address: SocketAddr,
}

#[derive(Clone, Debug)]
pub struct ListenConfig {
    pub address: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// ALPN protocols offered to clients, in preference order.
    pub alpn: Vec<String>,
    pub handshake_timeout: Duration,
    /// Expect a PROXY protocol (v1 or v2) header on every connection; only
    /// peers in `trusted_proxies` may connect then.
    pub proxy_protocol: bool,
    pub trusted_proxies: Option<qmeta_proxyproto::TrustedPeers>,
    /// Most client connections open at once on this listener.
    pub max_connections: usize,
    /// A client connection is closed after this long, busy or not (0: never).
    pub max_connection_duration: Duration,
    /// `mode = "tcp"` (default) or `"http"`.
    pub mode: ListenMode,
}

#[derive(Clone, Debug)]
pub struct ControlConfig {
    /// Where agents connect with DMCP.
    pub address: SocketAddr,
    /// Accepted distance between a frame's timestamp and the LB's clock.
    pub max_clock_skew: Duration,
}

#[derive(Clone, Debug)]
pub struct CertConfig {
    /// The LB CA that signs minted certificates (backends trust it).
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub validity: Duration,
    pub leaf_alg: qmeta_cert::LeafAlg,
}

#[derive(Clone, Debug)]
pub struct KeyConfig {
    pub rotation: Duration,
    pub grace: Duration,
}

#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// CA that backend server certificates must chain to.
    pub ca: PathBuf,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct AuditConfig {
    pub path: PathBuf,
    pub fsync_interval: Duration,
    pub max_file_bytes: u64,
}

#[derive(Clone, Debug)]
pub struct BackendConfig {
    pub name: String,
    pub address: SocketAddr,
    /// Name the backend's server certificate must carry.
    pub server_name: String,
    /// The backend's SAE id at its KME: its key stream, and who signs its DMCP frames.
    pub sae_id: String,
    /// Fields sent before any DMCP command, and after RESET.
    pub default_fields: FieldSet,
    /// Fields the operator allows this backend to ask for.
    pub allowed_fields: FieldSet,
    /// Relative share of connections (1..=256).
    pub weight: u32,
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<LbConfig, ConfigErrors> {
    let doc = Document::load(path)?;
    from_document(&doc)
}

/// Validates config text (`file` is only used in messages and for relative paths).
pub fn parse(file: &str, text: &str) -> Result<LbConfig, ConfigErrors> {
    let doc = Document::parse(file, text)?;
    from_document(&doc)
}

fn from_document(doc: &Document) -> Result<LbConfig, ConfigErrors> {
    let root = doc.root();
    let node_id = root.opt_str("node_id").unwrap_or_else(|| "lb-1".into());
    // The certificate subject is "qmeta <node_id>", at most 64 bytes.
    if node_id.is_empty() || node_id.len() > qmeta_cert::MAX_CN_LEN - 6 {
        root.error("node_id", format!("must be 1 to {} bytes", qmeta_cert::MAX_CN_LEN - 6));
    }
    let listen = root.table("listen").and_then(|s| listen(&s));
    let control = root.table("control").and_then(|s| control(&s));
    let kme = root.table("kme").and_then(|s| qmeta_qkd::client::read_config_section(&s));
    let certificates = root.table("certificates").and_then(|s| certificates(&s));
    let keys = keys(root.opt_table("keys"));
    let upstream = root.table("upstream").and_then(|s| upstream(&s));
    let audit = root.table("audit").and_then(|s| audit(&s));
    let balance = match root.opt_str("balance").as_deref() {
        None => crate::balance::Algorithm::RoundRobin,
        Some(name) => crate::balance::Algorithm::parse(name).unwrap_or_else(|| {
            root.error(
                "balance",
                format!("{name:?} is not one of \"round_robin\", \"least_connections\", \"consistent_hash\""),
            );
            crate::balance::Algorithm::RoundRobin
        }),
    };
    let geo = root.opt_table("geo").map(|s| {
        let cfg = qmeta_geo::GeoConfig { city_db: s.opt_path("city_db", true), asn_db: s.opt_path("asn_db", true) };
        if cfg.city_db.is_none() && cfg.asn_db.is_none() && !s.has("city_db") && !s.has("asn_db") {
            s.error("city_db", "[geo] needs city_db, asn_db or both");
        }
        s.deny_unknown();
        cfg
    });
    let health = health(root.opt_table("health"));
    let http = http(root.opt_table("http"));
    let mut custom_fields: Vec<(FieldId, String)> = Vec::new();
    for t in root.tables("custom_field", false) {
        let id = t.int("id", i64::from(qmeta_fields::CUSTOM_MIN)..=i64::from(qmeta_fields::CUSTOM_MAX));
        let value = t.str("value");
        t.deny_unknown();
        if let (Some(id), Some(value)) = (id, value) {
            let Some(f) = FieldId::new(id as u16) else { continue };
            if value.len() > qmeta_fields::MAX_VALUE_LEN {
                t.error("value", format!("longer than {} bytes", qmeta_fields::MAX_VALUE_LEN));
            } else if custom_fields.iter().any(|(o, _)| *o == f) {
                t.error("id", format!("{id} is defined twice"));
            } else {
                custom_fields.push((f, value));
            }
        }
    }
    let admin = root.opt_table("admin").map(|s| {
        let address = s.socket_addr("address");
        s.deny_unknown();
        address.map(|address| AdminConfig { address })
    });
    let backend_sections = root.tables("backend", true);
    if root.has("backend") && backend_sections.is_empty() {
        root.error("backend", "at least one [[backend]] is required");
    }
    let mut backends = Vec::new();
    for b in &backend_sections {
        if let Some(cfg) = backend(b) {
            if backends.iter().any(|o: &BackendConfig| o.name == cfg.name) {
                b.error("name", format!("duplicate backend name {:?}", cfg.name));
            }
            if backends.iter().any(|o: &BackendConfig| o.sae_id == cfg.sae_id) {
                b.error("sae_id", format!("duplicate SAE id {:?}: each backend needs its own key stream", cfg.sae_id));
            }
            backends.push(cfg);
        }
    }
    if let (Some(l), Some(c)) = (&listen, &control) {
        if l.address == c.address {
            root.error("control.address", format!("{} is also listen.address", c.address));
        }
        if let Some(Some(a)) = &admin {
            if a.address == l.address || a.address == c.address {
                root.error("admin.address", format!("{} is already used by listen or control", a.address));
            }
        }
    }
    root.finish()?;
    // Every getter above recorded its error; with none recorded all are Some.
    match (listen, control, kme, certificates, keys, upstream, audit) {
        (Some(listen), Some(control), Some(kme), Some(certificates), Some(keys), Some(upstream), Some(audit)) => {
            Ok(LbConfig {
                node_id,
                listen,
                control,
                kme,
                certificates,
                keys,
                upstream,
                audit,
                admin: admin.flatten(),
                balance,
                geo,
                health,
                http,
                custom_fields,
                backends,
            })
        }
        _ => Err(ConfigErrors(vec![qmeta_config::ConfigError {
            file: String::new(),
            key: String::new(),
            message: "incomplete configuration".into(),
        }])),
    }
}

fn listen(s: &Section) -> Option<ListenConfig> {
    let address = s.socket_addr("address");
    let cert = s.path("cert", true);
    let key = s.path("key", true);
    let mode = match s.opt_str("mode").as_deref() {
        None | Some("tcp") => ListenMode::Tcp,
        Some("http") => ListenMode::Http,
        Some(other) => {
            s.error("mode", format!("{other:?} is not one of \"tcp\", \"http\""));
            ListenMode::Tcp
        }
    };
    let default_alpn: &[&str] = match mode {
        ListenMode::Tcp => &["http/1.1"],
        ListenMode::Http => &["h2", "http/1.1"],
    };
    let alpn = s.opt_strings("alpn").unwrap_or_else(|| default_alpn.iter().map(|a| a.to_string()).collect());
    if mode == ListenMode::Http {
        if let Some(bad) = alpn.iter().find(|a| *a != "h2" && *a != "http/1.1") {
            s.error("alpn", format!("{bad:?}: in HTTP mode only \"h2\" and \"http/1.1\" can be served"));
        }
    }
    let handshake_timeout = s.opt_duration("handshake_timeout").unwrap_or(Duration::from_secs(10));
    let proxy_protocol = s.bool_or("proxy_protocol", false);
    let trusted_proxies = match s.opt_strings("trusted_proxies") {
        Some(list) => match qmeta_proxyproto::TrustedPeers::parse(&list) {
            Ok(t) => Some(t),
            Err(e) => {
                s.error("trusted_proxies", e);
                None
            }
        },
        None => None,
    };
    if proxy_protocol && !s.has("trusted_proxies") {
        s.error(
            "trusted_proxies",
            "required when proxy_protocol = true (PROXY headers are only taken from trusted peers)",
        );
    }
    let max_connections = s.opt_int("max_connections", 1..=1_000_000).unwrap_or(10_000) as usize;
    let max_connection_duration = s.opt_duration("max_connection_duration").unwrap_or(Duration::ZERO);
    s.deny_unknown();
    Some(ListenConfig {
        address: address?,
        cert: cert?,
        key: key?,
        alpn,
        handshake_timeout,
        proxy_protocol,
        trusted_proxies,
        max_connections,
        max_connection_duration,
        mode,
    })
}

fn control(s: &Section) -> Option<ControlConfig> {
    let address = s.socket_addr("address");
    let max_clock_skew = s.opt_duration("max_clock_skew").unwrap_or(Duration::from_secs(30));
    s.deny_unknown();
    Some(ControlConfig { address: address?, max_clock_skew })
}

fn certificates(s: &Section) -> Option<CertConfig> {
    let ca_cert = s.path("ca_cert", true);
    let ca_key = s.path("ca_key", true);
    let validity = s.opt_duration("validity").unwrap_or(Duration::from_secs(300));
    if validity < Duration::from_secs(10) || validity > Duration::from_secs(24 * 3600) {
        s.error("validity", "must be between 10s and 24h");
    }
    let leaf_alg = match s.opt_str("leaf_alg").as_deref() {
        None | Some("p256") => qmeta_cert::LeafAlg::P256,
        Some("ed25519") => qmeta_cert::LeafAlg::Ed25519,
        Some(other) => {
            s.error("leaf_alg", format!("{other:?} is not one of \"p256\", \"ed25519\""));
            qmeta_cert::LeafAlg::P256
        }
    };
    s.deny_unknown();
    Some(CertConfig { ca_cert: ca_cert?, ca_key: ca_key?, validity, leaf_alg })
}

fn keys(s: Option<Section>) -> Option<KeyConfig> {
    let Some(s) = s else {
        return Some(KeyConfig { rotation: MAX_ROTATION, grace: Duration::from_secs(30) });
    };
    let rotation = s.opt_duration("rotation").unwrap_or(MAX_ROTATION);
    if rotation > MAX_ROTATION || rotation < Duration::from_millis(100) {
        s.error("rotation", "must be between 100ms and 60s: QKD metadata keys are replaced at least every minute");
    }
    let grace = s.opt_duration("grace").unwrap_or(Duration::from_secs(30));
    if grace > Duration::from_secs(300) {
        s.error("grace", "must be at most 5m");
    }
    if let Some(policy) = s.opt_str("on_unavailable") {
        if policy != "refuse" {
            s.error(
                "on_unavailable",
                format!("{policy:?}: only \"refuse\" is supported (no key → no certificate → no connection)"),
            );
        }
    }
    s.deny_unknown();
    Some(KeyConfig { rotation, grace })
}

fn upstream(s: &Section) -> Option<UpstreamConfig> {
    let ca = s.path("ca", true);
    let connect_timeout = s.opt_duration("connect_timeout").unwrap_or(Duration::from_secs(3));
    let idle_timeout = s.opt_duration("idle_timeout").unwrap_or(Duration::from_secs(300));
    s.deny_unknown();
    Some(UpstreamConfig { ca: ca?, connect_timeout, idle_timeout })
}

fn audit(s: &Section) -> Option<AuditConfig> {
    let path = s.path("path", false);
    let fsync_interval = s.opt_duration("fsync_interval").unwrap_or(Duration::from_millis(100));
    let max_file_bytes = s.opt_int("max_file_bytes", 0..=i64::MAX).unwrap_or(0) as u64;
    s.deny_unknown();
    Some(AuditConfig { path: path?, fsync_interval, max_file_bytes })
}

fn field_set(s: &Section, key: &str, default: FieldSet) -> FieldSet {
    let Some(names) = s.opt_strings(key) else {
        return default;
    };
    let mut set = FieldSet::new();
    for n in names {
        match FieldId::from_name(&n) {
            Some(f) => {
                set.insert(f);
            }
            None => s.error(key, format!("unknown field {n:?}")),
        }
    }
    set
}

fn backend(s: &Section) -> Option<BackendConfig> {
    let name = s.str("name");
    let address = s.socket_addr("address");
    let server_name = s.opt_str("server_name").or_else(|| name.clone());
    let sae_id = s.str("sae_id");
    let weight = s.opt_int("weight", 1..=256).unwrap_or(1) as u32;
    let default_fields = field_set(s, "default_fields", [FieldId::SRC_IP, FieldId::TIMESTAMP].into_iter().collect());
    // Default: every field, custom ones included (an undefined custom field has no value to send).
    let allowed_fields = field_set(
        s,
        "allowed_fields",
        FieldId::known()
            .chain((qmeta_fields::CUSTOM_MIN..=qmeta_fields::CUSTOM_MAX).filter_map(FieldId::new))
            .collect(),
    );
    for f in default_fields.difference(&allowed_fields).iter() {
        s.error("default_fields", format!("{f} is not in allowed_fields"));
    }
    if let Some(n) = &server_name {
        if rustls_pki_types::ServerName::try_from(n.as_str()).is_err() {
            s.error("server_name", format!("{n:?} is not a valid DNS name or IP address"));
        }
    }
    s.deny_unknown();
    Some(BackendConfig {
        name: name?,
        address: address?,
        server_name: server_name?,
        sae_id: sae_id?,
        default_fields,
        allowed_fields,
        weight,
    })
}
