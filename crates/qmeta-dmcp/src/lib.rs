//! DMCP, the Dynamic Metadata Control Protocol: how a backend's agent tells
//! the load balancer which metadata fields to put in the certificates
//! minted for that backend. Byte-level spec: `docs/DMCP.md`.
//!
//! This crate is sans-IO: bytes, time (`now_unix_ms`) and randomness go in,
//! bytes and [`Outcome`]s come out. It opens no socket, reads no clock and
//! fetches no key — the caller gets one-time keys from its KME (ETSI GS QKD
//! 014) and passes them in. It is not the policy engine (`qmeta-agent`)
//! nor the LB's listener (`qmeta-lb`).
//!
//! Call order, LB side (one [`Endpoint`] per backend, for the process'
//! lifetime): [`parse_frame`] on the bytes read so far → on `Ok(None)` read
//! more; on `Err` send [`reject_unparsable`] and close; on a frame fetch the
//! key named by [`Incoming::key_id`] (`dec_keys`, master =
//! [`Incoming::sender`]) → [`Endpoint::handle`] → send `reply`, audit
//! `outcome`. Certificates are minted with
//! [`ControlState::fields_for`] of [`Endpoint::state`] (TCP mode) or
//! [`ControlState::fields_for_request`] (HTTP mode, route scopes).
//!
//! Agent side: fetch a 512-bit key (`enc_keys`, slave = the LB's SAE) →
//! [`ClientSession::request`] → send → [`ClientSession::read_reply`] on
//! what comes back. [`diff`] turns the last acknowledged state into the
//! commands that reach the desired one.
#![forbid(unsafe_code)]

mod client;
mod codes;
mod command;
mod diff;
mod endpoint;
mod frame;
mod scope;
mod state;
mod wire;

pub use client::ClientSession;
pub use codes::ErrorCode;
pub use command::{Command, Reply};
pub use diff::diff;
pub use endpoint::{reject_unparsable, Endpoint, Handled, Limits, Outcome, KEY_LEN};
pub use frame::{parse_frame, FrameError, Incoming, HEADER_LEN, MAGIC, MAX_FRAME, MAX_SENDER_LEN, TAG_LEN, VERSION};
pub use scope::{valid_path_prefix, Scope, MAX_PATH_PREFIX_LEN, MAX_SNI_LEN};
pub use state::{Applied, ControlState, Refusal, MAX_SCOPES, MAX_SET_LEN};
pub use wire::{BodyError, MAX_REASON_LEN};
