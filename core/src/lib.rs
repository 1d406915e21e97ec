//! zerowire-core: the pure-Rust half of zerowire. Nothing here knows about Node.
//!
//! Two wings of the same shape, and what they share:
//!
//! - [`client`] — the DEALER wing: [`Client`] (the handle), its engine, its links (one per
//!   endpoint: connect, backoff, ipc watch, hello/ping/goodbye), options, events, stats.
//! - [`server`] — the ROUTER wing: [`Server`] (the handle), its engine, options, events,
//!   stats.
//! - [`host`]   — what both wings are built on: the generic handle ([`host::Host`]: checks,
//!   staging, flush, close once, shutdown), the host → engine [`host::queue`], the
//!   engine → host [`host::outbox`], the engine thread and the step before an engine waits.
//! - [`endpoint`] — `ipc://` / `tcp://`, parsed once; the OS's ipc path limit.
//! - [`bind`]     — binding server endpoints: ipc socket files (stale, live, permissions), tcp.
//! - [`curve`]    — CURVE keys of both wings, who may connect to a CURVE server.
//! - [`peer`]     — who a peer is: the server's identity → key and ipc credentials record,
//!   the uid a client expects of its ipc server.
//! - [`protocol`] — the wire envelope: correlation ids, control messages, inbound shapes.
//! - [`sniff`]    — finds the top-level "type" value in the first bytes of a JSON message.
//! - [`sink`]     — routes written by Rust instead of JS: a writer thread per sink, batches,
//!   a failed batch kept and retried, the committed count acks wait for; `sqlite` is the
//!   SQLite writer (cargo feature `sqlite`, on by default).
//! - [`arena`]    — host side: the chunks short messages are encoded into, reused once written.
//! - [`latency`]  — latency histograms (percentiles), one writer thread each.
//! - [`error`]    — the error enum of this layer, each variant with a Node-style code.
//! - [`hooks`]    — what the host supplies to engine threads: scheduling, returning memory.
//! - `counter`, `spin`, `trim`, `writer` — engine-thread helpers: single-writer counters,
//!   polling right after request traffic, giving memory back after a burst, the one send
//!   that may be suspended on a socket.
//! - `watch`    — noticing a server's bind of an ipc endpoint (inotify on Linux, a poll elsewhere).
//! - `testing`  — unit tests' scratch files (integration tests have `tests/common`).
//!
//! Threads: the host (JS thread) stages messages and hands them over in batches; each engine
//! thread owns its socket, its pending-request (or reply-token) table and every timer.
//! docs/ARCHITECTURE.md says where a new option, control kind or transport goes.

pub mod arena;
pub mod bind;
pub mod client;
mod counter;
pub mod curve;
pub mod endpoint;
pub mod error;
pub mod hooks;
pub mod host;
pub mod latency;
pub mod peer;
pub mod protocol;
pub mod server;
pub mod sink;
pub mod sniff;
mod spin;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(test)]
mod testing;
mod trim;
mod watch;
mod writer;

pub use client::{Client, ClientEvent, ClientOptions, ClientStats};
pub use endpoint::Endpoint;
pub use error::Error;
pub use hooks::{set_host_hooks, EngineKind, HostHooks};
pub use host::outbox::Waker;
pub use host::queue::Staging;
pub use host::Queued;
pub use server::{Server, ServerEvent, ServerOptions, ServerStats};
