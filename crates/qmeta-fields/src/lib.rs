//! The field map: every fact about a client connection that qmeta can
//! forward to a backend, with a stable numeric id, a name and a typed
//! canonical byte encoding.
//!
//! This crate does no I/O. It is shared by the certificate format
//! (`qmeta-cert`), the control protocol (`qmeta-dmcp`), the policy agent and
//! the backend SDK, so that every part agrees on what id 6 means and how its
//! value is laid out in bytes.
//!
//! Call order: look a field up with [`FieldId::from_name`] or
//! [`FieldId::new`], build a [`FieldValue`], turn it into bytes with
//! [`FieldValue::encode`]; the receiving side calls [`FieldValue::decode`]
//! with the id it read. [`FieldSet`] is the set type used for DMCP state.
#![forbid(unsafe_code)]

mod id;
mod set;
mod value;

pub use id::{FieldId, FieldKind, CUSTOM_MAX, CUSTOM_MIN, KNOWN};
pub use set::FieldSet;
pub use value::{DecodeError, FieldValue, MAX_VALUE_LEN};
