//! qmeta-pki
