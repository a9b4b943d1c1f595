//! qmeta-fields
