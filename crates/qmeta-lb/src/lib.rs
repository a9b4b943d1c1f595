//! qmeta-lb
