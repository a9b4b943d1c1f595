//! The `qmeta` command: subcommands that run each part of the system, and
//! `qmeta demo`, which generates credentials and configs for a complete
//! loopback deployment and runs it from the same code.
#![forbid(unsafe_code)]

pub mod cli;
pub mod demo;
mod demo_config;
mod demo_run;
mod inspect;
