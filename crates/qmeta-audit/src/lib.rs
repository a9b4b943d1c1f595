//! qmeta-audit (to be implemented)
