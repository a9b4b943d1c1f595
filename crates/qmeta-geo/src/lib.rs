//! qmeta-geo (in progress)
