//! qmeta-cert
