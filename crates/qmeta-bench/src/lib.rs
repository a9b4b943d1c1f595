//! qmeta-bench (in progress)
