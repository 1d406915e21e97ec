//! zerowire-core: the pure-Rust half of zerowire. Nothing here knows about Node.
//!
//! Module map:
//! - [`client`]   — [`Client`], the handle the binding drives for a DEALER.
//! - [`engine`]   — the client's background thread: a current-thread tokio runtime that owns
//!   the DEALER socket, reconnects, keeps the backlog, times requests out, pings, drains.
//! - [`server`]   — the ROUTER: its engine thread and [`server::Server`], its handle.
//! - [`bind`]     — binding server endpoints: ipc socket files (stale, live, permissions), tcp.
//! - [`sniff`]    — finds the top-level "type" value in the first bytes of a JSON message.
//! - [`protocol`] — the wire envelope: correlation ids, control messages, inbound shapes.
//! - [`arena`]    — host side: the chunks short messages are encoded into, reused once written.
//! - [`queue`]    — host → engine: per-tick staging, the bounded channel, the wake-up.
//! - [`outbox`]   — engine → host: batches of events and at most one wake-up per batch.
//! - [`options`]  — client options, their defaults and limits; endpoint validation.
//! - [`stats`]    — counters, each written by one thread only.
//! - [`latency`]  — latency histograms (percentiles), one writer thread each.
//! - [`sink`]     — routes written by Rust instead of JS: a writer thread per sink, batches.
//! - `sqlite`     — the SQLite writer of a sink (cargo feature `sqlite`, on by default).
//! - [`error`]    — the error enum of this layer, each variant with a Node-style code.
//! - `writer`     — the send half and the one send that may be suspended on it.
//! - `spin`       — polling right after request traffic, rationed across the process.
//! - [`hooks`]    — what the host supplies to engine threads: scheduling, returning memory.
//! - `trim`       — giving memory back to the OS once an engine is quiet after a burst.
//! - `thread`     — the engine thread as a handle sees it: spawn, close once, bounded join.
//!
//! Threads: the host (JS thread) stages messages and hands them over in batches; each engine
//! thread owns its socket, its pending-request table and every timer.

pub mod arena;
pub mod bind;
pub mod client;
pub mod engine;
pub mod error;
pub mod hooks;
pub mod latency;
pub mod options;
pub mod outbox;
pub mod protocol;
pub mod queue;
pub mod server;
pub mod sink;
pub mod sniff;
mod spin;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod stats;
mod thread;
mod trim;
mod writer;

pub use client::Client;
pub use error::Error;
pub use hooks::{set_host_hooks, EngineKind, HostHooks};
pub use options::ClientOptions;
pub use outbox::{Event, Waker};
