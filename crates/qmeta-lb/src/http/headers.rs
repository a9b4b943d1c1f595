//! Request/response header rewriting for HTTP mode. Pure functions on
//! header maps: no I/O, no clock.

use crate::config::{HttpConfig, MAX_HEADER_FIELD_LEN};
use crate::facts::RequestFacts;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST};
use hyper::{Request, Uri, Version};
use std::net::IpAddr;

/// Headers the LB adds (with `forward_headers`) or that claim to carry
/// client facts: a client-supplied copy is always removed, so a backend
/// never mistakes a spoofed value for one the LB vouches for.
const STRIPPED: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-original-forwarded-for",
    "client-ip",
    "ssl-client-cert",
];
/// Header families that carry client facts in common proxies (nginx, Envoy,
/// Cloudflare, AWS): every name starting with one of these is removed.
const STRIPPED_PREFIXES: &[&str] = &["x-forwarded-", "x-ssl-client-", "x-client-cert", "x-amzn-"];
/// Any header starting with this is reserved for qmeta.
const RESERVED_PREFIX: &str = "x-qmeta-";

/// Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection and
/// are never forwarded.
const HOP_BY_HOP: &[&str] =
    &["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

/// True for a (lowercase) header name the LB removes from every request.
///
/// Names with `_` go too: CGI-style servers map `X_Forwarded_For` to the
/// same variable as `X-Forwarded-For`.
pub(crate) fn is_stripped(name: &str) -> bool {
    STRIPPED.contains(&name)
        || name.starts_with(RESERVED_PREFIX)
        || STRIPPED_PREFIXES.iter().any(|p| name.starts_with(p))
        || name.contains('_')
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(*n);
    }
}

/// The request's HTTP facts: path (for route scopes), host, user agent,
/// accept-language and the configured header fields. A header whose value
/// is not UTF-8 or is longer than [`MAX_HEADER_FIELD_LEN`] gives no value.
pub(crate) fn request_facts<B>(req: &Request<B>, cfg: &HttpConfig) -> RequestFacts {
    let h = req.headers();
    let text = |name: &str| {
        h.get(name)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .filter(|v| v.len() <= MAX_HEADER_FIELD_LEN)
            .map(str::to_string)
    };
    // HTTP/2 carries the host in :authority, HTTP/1.1 in Host.
    let host = text("host").or_else(|| req.uri().authority().map(|a| a.as_str().to_string()));
    RequestFacts {
        path: req.uri().path().to_string(),
        host,
        user_agent: text("user-agent"),
        accept_language: text("accept-language"),
        headers: cfg.header_fields.iter().filter_map(|(name, id)| text(name).map(|v| (*id, v))).collect(),
    }
}

/// Turns a client request into the upstream HTTP/1.1 request: origin-form
/// target, a Host header, no hop-by-hop or spoofable headers, and the
/// forwarding headers when configured.
pub(crate) fn rewrite_request<B>(req: &mut Request<B>, cfg: &HttpConfig, client_ip: IpAddr) {
    let host = req
        .headers()
        .get(HOST)
        .cloned()
        .or_else(|| req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
    let target = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    if let Ok(uri) = target.parse::<Uri>() {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    remove_hop_by_hop(headers);
    let spoofable: Vec<HeaderName> = headers.keys().filter(|n| is_stripped(n.as_str())).cloned().collect();
    for n in spoofable {
        headers.remove(n);
    }
    if let Some(h) = host {
        headers.insert(HOST, h);
    }
    if cfg.forward_headers {
        let ip = client_ip.to_canonical();
        let node = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("\"[{v6}]\""),
        };
        // Built from an IP address: always a valid header value.
        if let Ok(v) = HeaderValue::from_str(&ip.to_string()) {
            headers.insert("x-forwarded-for", v);
        }
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        if let Ok(v) = HeaderValue::from_str(&format!("for={node};proto=https")) {
            headers.insert("forwarded", v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qmeta_fields::FieldId;

    fn cfg(forward: bool) -> HttpConfig {
        HttpConfig { forward_headers: forward, header_fields: vec![("x-tenant".into(), FieldId::new(1001).unwrap())] }
    }

    fn request() -> Request<()> {
        Request::builder()
            .uri("https://app.example:8443/api/v1?q=1")
            .version(Version::HTTP_2)
            .header("user-agent", "ua/1")
            .header("x-tenant", "acme")
            .header("X-Forwarded-For", "6.6.6.6")
            .header("x-forwarded-proto", "gopher")
            .header("Forwarded", "for=6.6.6.6")
            .header("X-Qmeta-Src", "6.6.6.6")
            .header("x-real-ip", "6.6.6.6")
            .header("connection", "keep-alive, x-drop-me")
            .header("x-drop-me", "1")
            .header("te", "trailers")
            .header("x-kept", "yes")
            .body(())
            .unwrap()
    }

    #[test]
    fn spoofed_and_hop_by_hop_headers_are_removed() {
        let mut r = request();
        rewrite_request(&mut r, &cfg(false), "192.0.2.1".parse().unwrap());
        let names: Vec<&str> = r.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(names, vec!["user-agent", "x-tenant", "x-kept", "host"]);
        assert_eq!(r.headers()["host"], "app.example:8443");
        assert_eq!(r.uri().to_string(), "/api/v1?q=1");
        assert_eq!(r.version(), Version::HTTP_11);
    }

    #[test]
    fn forwarding_headers_are_the_lbs_own() {
        let mut r = request();
        rewrite_request(&mut r, &cfg(true), "::ffff:192.0.2.1".parse().unwrap());
        assert_eq!(r.headers().get_all("x-forwarded-for").iter().collect::<Vec<_>>(), vec!["192.0.2.1"]);
        assert_eq!(r.headers()["x-forwarded-proto"], "https");
        assert_eq!(r.headers()["forwarded"], "for=192.0.2.1;proto=https");
        assert!(r.headers().get("x-qmeta-src").is_none());
        let mut r = request();
        rewrite_request(&mut r, &cfg(true), "2001:db8::1".parse().unwrap());
        assert_eq!(r.headers()["forwarded"], "for=\"[2001:db8::1]\";proto=https");
    }

    #[test]
    fn facts_of_a_request() {
        let f = request_facts(&request(), &cfg(false));
        assert_eq!(f.path, "/api/v1");
        assert_eq!(f.host.as_deref(), Some("app.example:8443"));
        assert_eq!(f.user_agent.as_deref(), Some("ua/1"));
        assert_eq!(f.accept_language, None);
        assert_eq!(f.headers, vec![(FieldId::new(1001).unwrap(), "acme".to_string())]);
        let long = Request::builder().header("x-tenant", "a".repeat(MAX_HEADER_FIELD_LEN + 1)).body(()).unwrap();
        assert!(request_facts(&long, &cfg(false)).headers.is_empty());
        let ok = Request::builder().header("x-tenant", "a".repeat(MAX_HEADER_FIELD_LEN)).body(()).unwrap();
        assert_eq!(request_facts(&ok, &cfg(false)).headers.len(), 1);
    }

    #[test]
    fn stripped_names() {
        assert!(is_stripped("x-qmeta-anything"));
        for name in [
            "x_forwarded_for",
            "x-forwarded-client-cert",
            "x-ssl-client-cert",
            "true-client-ip",
            "cf-connecting-ip",
            "x-forwarded-prefix",
        ] {
            assert!(is_stripped(name), "{name}");
        }
        for name in ["user-agent", "accept-language", "x-tenant", "authorization"] {
            assert!(!is_stripped(name), "{name}");
        }
        assert!(is_stripped("forwarded"));
        assert!(!is_stripped("x-tenant"));
    }
}
