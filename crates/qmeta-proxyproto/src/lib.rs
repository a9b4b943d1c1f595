//! qmeta-proxyproto (in progress)
