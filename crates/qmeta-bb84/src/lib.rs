//! qmeta-bb84 (in progress)
