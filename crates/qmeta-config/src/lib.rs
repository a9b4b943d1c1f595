//! Reading TOML configuration so that every mistake is reported at once.
//!
//! Each qmeta part (`lb`, `kme`, `agent`) turns its config text into a typed,
//! validated value with one pure function built on [`Section`]: every getter
//! records an error naming the dotted key at fault instead of stopping, and
//! [`Section::finish`] reports keys nobody asked for (typos). The binary
//! prints all of them and exits with [`EXIT_CONFIG`].
//!
//! ```
//! let doc = qmeta_config::Document::parse("cfg.toml", "listen = 'nope'\nextra = 1").unwrap();
//! let mut root = doc.root();
//! let _ = root.socket_addr("listen");
//! let errors = root.finish().unwrap_err();
//! assert_eq!(errors.len(), 2); // bad address, unknown key `extra`
//! ```
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// Exit code for a bad configuration (sysexits' `EX_USAGE`).
pub const EXIT_CONFIG: i32 = 64;

/// One problem in a config file: the file, the dotted key, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: `{}`: {}", self.file, self.key, self.message)
        }
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// True if some error names exactly this key.
    pub fn mentions(&self, key: &str) -> bool {
        self.0.iter().any(|e| e.key == key)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

type Sink = Rc<RefCell<Vec<ConfigError>>>;

/// A parsed TOML file and the errors found in it so far.
pub struct Document {
    file: String,
    base_dir: PathBuf,
    table: toml::Table,
    errors: Sink,
}

impl Document {
    /// Parses TOML text. A syntax error is reported at once (with its line).
    pub fn parse(file: &str, text: &str) -> Result<Document, ConfigErrors> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigErrors(vec![ConfigError {
                file: file.to_string(),
                key: String::new(),
                message: format!("not valid TOML: {}", e.to_string().trim()),
            }])
        })?;
        let base_dir = Path::new(file).parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Document { file: file.to_string(), base_dir, table, errors: Rc::default() })
    }

    /// Reads and parses a file; an unreadable file is a config error too.
    pub fn load(path: &Path) -> Result<Document, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError { file: file.clone(), key: String::new(), message: e.to_string() }])
        })?;
        Document::parse(&file, &text)
    }

    /// The top-level table.
    pub fn root(&self) -> Section {
        Section {
            file: self.file.clone(),
            base_dir: self.base_dir.clone(),
            prefix: String::new(),
            table: self.table.clone(),
            used: RefCell::default(),
            errors: self.errors.clone(),
        }
    }
}

/// A table being read. Getters return `None` (and record an error) when a
/// value is missing or wrong; `opt_*` getters return `None` silently when
/// the key is absent.
pub struct Section {
    file: String,
    base_dir: PathBuf,
    prefix: String,
    table: toml::Table,
    used: RefCell<BTreeSet<String>>,
    errors: Sink,
}

impl Section {
    /// The dotted name of `key` in this section.
    pub fn key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{}", self.prefix, key)
        }
    }

    /// Records an error against `key` (relative to this section).
    pub fn error(&self, key: &str, message: impl Into<String>) {
        self.errors.borrow_mut().push(ConfigError {
            file: self.file.clone(),
            key: self.key(key),
            message: message.into(),
        });
    }

    fn get(&self, key: &str) -> Option<&toml::Value> {
        self.used.borrow_mut().insert(key.to_string());
        self.table.get(key)
    }

    fn typed<T>(&self, key: &str, required: bool, what: &str, f: impl Fn(&toml::Value) -> Option<T>) -> Option<T> {
        match self.get(key) {
            None => {
                if required {
                    self.error(key, format!("missing (expected {what})"));
                }
                None
            }
            Some(v) => {
                let out = f(v);
                if out.is_none() {
                    self.error(key, format!("expected {what}, found {}", describe(v)));
                }
                out
            }
        }
    }

    pub fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    pub fn str(&self, key: &str) -> Option<String> {
        self.typed(key, true, "a string", |v| v.as_str().map(str::to_string))
    }
    pub fn opt_str(&self, key: &str) -> Option<String> {
        self.typed(key, false, "a string", |v| v.as_str().map(str::to_string))
    }
    pub fn bool_or(&self, key: &str, default: bool) -> bool {
        self.typed(key, false, "true or false", |v| v.as_bool()).unwrap_or(default)
    }
    /// An integer within `range`.
    pub fn int(&self, key: &str, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
        self.int_impl(key, true, range)
    }
    pub fn opt_int(&self, key: &str, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
        self.int_impl(key, false, range)
    }
    fn int_impl(&self, key: &str, required: bool, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
        let v = self.typed(key, required, "an integer", |v| v.as_integer())?;
        if !range.contains(&v) {
            self.error(key, format!("{v} is out of range {}..={}", range.start(), range.end()));
            return None;
        }
        Some(v)
    }
    pub fn strings(&self, key: &str) -> Option<Vec<String>> {
        self.typed(key, true, "an array of strings", string_array)
    }
    pub fn opt_strings(&self, key: &str) -> Option<Vec<String>> {
        self.typed(key, false, "an array of strings", string_array)
    }

    /// An `ip:port` socket address.
    pub fn socket_addr(&self, key: &str) -> Option<SocketAddr> {
        self.parsed(key, true, "an address like \"127.0.0.1:8443\"")
    }
    pub fn opt_socket_addr(&self, key: &str) -> Option<SocketAddr> {
        self.parsed(key, false, "an address like \"127.0.0.1:8443\"")
    }

    fn parsed<T: std::str::FromStr>(&self, key: &str, required: bool, what: &str) -> Option<T> {
        let s = self.typed(key, required, what, |v| v.as_str().map(str::to_string))?;
        match s.parse() {
            Ok(v) => Some(v),
            Err(_) => {
                self.error(key, format!("expected {what}, found {s:?}"));
                None
            }
        }
    }

    /// A duration written as "30s", "500ms", "2m" or a number of seconds.
    pub fn duration(&self, key: &str) -> Option<Duration> {
        self.duration_impl(key, true)
    }
    pub fn opt_duration(&self, key: &str) -> Option<Duration> {
        self.duration_impl(key, false)
    }
    fn duration_impl(&self, key: &str, required: bool) -> Option<Duration> {
        let what = "a duration like \"30s\", \"500ms\" or \"2m\"";
        self.typed(key, required, what, |v| match v {
            toml::Value::Integer(i) if *i >= 0 => Some(Duration::from_secs(*i as u64)),
            toml::Value::String(s) => parse_duration(s),
            _ => None,
        })
    }

    /// A path, resolved against the config file's directory when relative.
    /// `must_exist` checks that the file is there now.
    pub fn path(&self, key: &str, must_exist: bool) -> Option<PathBuf> {
        self.path_impl(key, true, must_exist)
    }
    pub fn opt_path(&self, key: &str, must_exist: bool) -> Option<PathBuf> {
        self.path_impl(key, false, must_exist)
    }
    fn path_impl(&self, key: &str, required: bool, must_exist: bool) -> Option<PathBuf> {
        let s = self.typed(key, required, "a file path", |v| v.as_str().map(str::to_string))?;
        let p = self.base_dir.join(&s);
        if must_exist && !p.exists() {
            self.error(key, format!("file {} does not exist", p.display()));
            return None;
        }
        Some(p)
    }

    /// A sub-table. Missing and required → error.
    pub fn table(&self, key: &str) -> Option<Section> {
        self.table_impl(key, true)
    }
    pub fn opt_table(&self, key: &str) -> Option<Section> {
        self.table_impl(key, false)
    }
    fn table_impl(&self, key: &str, required: bool) -> Option<Section> {
        let t = self.typed(key, required, "a table", |v| v.as_table().cloned())?;
        Some(self.child(self.key(key), t))
    }

    /// An array of tables (`[[backend]]`), each as a section named `key[i]`.
    pub fn tables(&self, key: &str, required: bool) -> Vec<Section> {
        let Some(arr) = self.typed(key, required, "an array of tables", |v| v.as_array().cloned()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, v) in arr.into_iter().enumerate() {
            let name = format!("{}[{i}]", self.key(key));
            match v {
                toml::Value::Table(t) => out.push(self.child(name, t)),
                other => self.errors.borrow_mut().push(ConfigError {
                    file: self.file.clone(),
                    key: name,
                    message: format!("expected a table, found {}", describe(&other)),
                }),
            }
        }
        out
    }

    fn child(&self, prefix: String, table: toml::Table) -> Section {
        Section {
            file: self.file.clone(),
            base_dir: self.base_dir.clone(),
            prefix,
            table,
            used: RefCell::default(),
            errors: self.errors.clone(),
        }
    }

    /// Flags keys of this section that no getter asked for.
    pub fn deny_unknown(&self) {
        let used = self.used.borrow().clone();
        for k in self.table.keys() {
            if !used.contains(k) {
                self.error(k, "unknown key");
            }
        }
    }

    /// Flags unknown keys of this (root) section, then returns every error
    /// recorded in the document, or `Ok` when there were none.
    pub fn finish(&self) -> Result<(), ConfigErrors> {
        self.deny_unknown();
        let errors = std::mem::take(&mut *self.errors.borrow_mut());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

fn string_array(v: &toml::Value) -> Option<Vec<String>> {
    v.as_array()?.iter().map(|x| x.as_str().map(str::to_string)).collect()
}

fn describe(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("string {s:?}"),
        toml::Value::Integer(i) => format!("integer {i}"),
        toml::Value::Float(f) => format!("float {f}"),
        toml::Value::Boolean(b) => format!("boolean {b}"),
        toml::Value::Datetime(_) => "a datetime".into(),
        toml::Value::Array(_) => "an array".into(),
        toml::Value::Table(_) => "a table".into(),
    }
}

/// Parses "250ms", "30s", "2m", "1h" or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_error_with_its_key() {
        let text = r#"
            listen = "not-an-address"
            rotation = "forever"
            typo = 1
            [[backend]]
            name = 5
            [[backend]]
            name = "b"
            address = "127.0.0.1:9000"
        "#;
        let doc = Document::parse("lb.toml", text).unwrap();
        let root = doc.root();
        root.socket_addr("listen");
        root.duration("rotation");
        root.str("node_id");
        for b in root.tables("backend", true) {
            b.str("name");
            b.socket_addr("address");
            b.deny_unknown();
        }
        let errs = root.finish().unwrap_err();
        for key in ["listen", "rotation", "node_id", "typo", "backend[0].name", "backend[0].address"] {
            assert!(errs.mentions(key), "missing {key} in {errs}");
        }
        assert_eq!(errs.len(), 6, "{errs}");
        assert!(errs.to_string().contains("lb.toml: `listen`"));
    }

    #[test]
    fn syntax_error_is_one_error() {
        let err = Document::parse("x.toml", "a = [").err().unwrap();
        assert_eq!(err.len(), 1);
        assert!(err.to_string().starts_with("x.toml: not valid TOML"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("7x"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn ranges_and_paths() {
        let doc = Document::parse("/etc/q/a.toml", "n = 70\np = \"ca.crt\"").unwrap();
        let root = doc.root();
        assert_eq!(root.int("n", 1..=60), None);
        assert_eq!(root.path("p", false), Some(PathBuf::from("/etc/q/ca.crt")));
        let errs = root.finish().unwrap_err();
        assert!(errs.mentions("n"));
        assert_eq!(errs.len(), 1);
    }
}
