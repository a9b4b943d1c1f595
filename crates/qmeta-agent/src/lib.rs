//! qmeta-agent
