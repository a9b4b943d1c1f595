//! qmeta-dmcp
