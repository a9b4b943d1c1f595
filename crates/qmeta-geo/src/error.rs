use std::path::PathBuf;

/// Why a geolocation database could not be used. Every variant names the
/// file, so the operator knows which `geo.*` setting to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GeoError {
    /// The file could not be read (missing, permission denied, a directory).
    #[error("geolocation database {path}: cannot read: {message}")]
    Open { path: PathBuf, message: String },
    /// The file was read but is not a valid MaxMind DB file (truncated,
    /// corrupt, or some other format). Replace the file.
    #[error("geolocation database {path}: not a valid MaxMind DB file: {message}")]
    Invalid { path: PathBuf, message: String },
    /// A valid MaxMind DB of the wrong kind, e.g. an ASN database configured
    /// as the city database. Swap the paths or fetch the right edition.
    #[error("geolocation database {path}: expected {expected} database, found {found:?}")]
    WrongType { path: PathBuf, expected: &'static str, found: String },
}
