//! zerowire-core: the pure-Rust half of zerowire. Nothing here knows about Node.
//!
//! Module map:
//! - [`options`]  — client options with their defaults and validation (the limits).
//! - [`protocol`] — the two-frame wire envelope: correlation ids, what an inbound message is.
//! - [`queue`]    — the bounded send queue between the host thread and the engine, and its wake-up.
//! - [`outbox`]   — batches of events (replies, timeouts, pushes) from the engine back to the host.
//! - [`stats`]    — counters shared by the host and the engine.
//! - [`engine`]   — the background thread: a current-thread tokio runtime owning the DEALER socket.
//! - [`client`]   — [`client::Client`], the handle the binding layer drives.
//! - [`error`]    — the error enum of this layer, each variant with a Node-style code.
//! - [`sniff`]    — finds the top-level "type" value in the first bytes of a JSON message.
//!
//! Threads: the host (JS main thread) only pushes [`queue::Command`]s and reads atomics; the
//! engine thread owns the socket, the pending-request table and every timer.

pub mod bind;
pub mod client;
pub mod engine;
pub mod error;
pub mod options;
pub mod outbox;
pub mod protocol;
pub mod queue;
pub mod server;
pub mod sniff;
pub mod stats;
mod writer;

pub use client::Client;
pub use error::Error;
pub use options::ClientOptions;
pub use outbox::{Event, Waker};
