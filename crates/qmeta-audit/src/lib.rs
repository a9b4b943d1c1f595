//! qmeta-audit
