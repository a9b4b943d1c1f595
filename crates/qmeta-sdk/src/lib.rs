//! qmeta-sdk
