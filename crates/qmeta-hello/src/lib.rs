//! qmeta-hello (in progress)
