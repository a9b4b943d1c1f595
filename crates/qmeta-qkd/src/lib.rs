//! qmeta-qkd (API stub; to be implemented)
#![forbid(unsafe_code)]
use std::fmt;
use zeroize::Zeroizing;

/// One QKD key as delivered by a KME: its id and its bytes. `Debug` never
/// prints the bytes; the bytes are zeroized on drop.
#[derive(Clone)]
pub struct Key {
    pub id: uuid::Uuid,
    pub bytes: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key {{ id: {}, bytes: <{} bytes redacted> }}", self.id, self.bytes.len())
    }
}
