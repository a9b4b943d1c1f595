//! qmeta-config
