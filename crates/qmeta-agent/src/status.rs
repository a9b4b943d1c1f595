//! The one-line JSON status file operators and tests read.

use qmeta_dmcp::Scope;
use qmeta_fields::FieldSet;
use std::path::Path;

/// The status line: backend, whether connected, the last acknowledged
/// version and scopes (field names only), and fields the LB refused.
pub fn render(
    backend: &str,
    connected: bool,
    version: Option<u64>,
    scopes: &[(Scope, FieldSet)],
    refused: &FieldSet,
) -> String {
    let scopes: serde_json::Map<String, serde_json::Value> =
        scopes.iter().map(|(s, f)| (s.to_string(), serde_json::json!(f.names()))).collect();
    serde_json::json!({
        "backend": backend,
        "connected": connected,
        "version": version,
        "scopes": scopes,
        "refused": refused.names(),
    })
    .to_string()
}

/// Replaces the file atomically (write a sibling, then rename), so a reader
/// never sees half a line.
pub fn write(path: &Path, line: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{line}\n"))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use qmeta_fields::FieldId;

    #[test]
    fn renders_names_only() {
        let set: FieldSet = [FieldId::SRC_IP, FieldId::SNI].into_iter().collect();
        let line = render("app1", true, Some(3), &[(Scope::Backend, set)], &FieldSet::new());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["version"], 3);
        assert_eq!(v["scopes"]["backend"], serde_json::json!(["src_ip", "sni"]));
        assert!(!line.contains('\n'));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        write(&p, &line).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("{line}\n"));
    }
}
