//! qmeta-qkd
