//! The client wing: a DEALER on its own engine thread.
//!
//! - this file — [`Client`], the handle the host drives, and what it hands the engine
//!   ([`ClientOut`], [`ClientControl`]);
//! - [`engine`]  — the engine thread's loop: the backlog, requests and their deadlines,
//!   delivery accounting, the drain at close;
//! - [`link`]    — one endpoint's connection: connect, backoff, the ipc directory watch,
//!   hello / ping / goodbye;
//! - [`requests`] — pending requests: deadlines, the connection each was written on, retries;
//! - [`options`], [`event`], [`stats`] — what the host configures, hears and reads.
//!
//! Calls are cheap and never block: they validate, stage the message and return. The host
//! owns a [`Staging`] and calls [`Client::flush`] at the end of its tick (calls flush by
//! themselves every `STAGE_MAX` messages). Results come back as [`ClientEvent`]s.

mod engine;
pub mod event;
mod link;
pub mod options;
mod requests;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::counter::bump;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::hooks::EngineKind;
use crate::host::outbox::Waker;
use crate::host::queue::{Staging, Weighed};
use crate::host::{Host, Marks, Orders, Queued};
use engine::ClientEngine;
pub use event::{ClientEvent, DropReason};
pub use options::ClientOptions;
pub use stats::{ClientCounters, ClientStats};

/// More endpoints than this is a configuration mistake, not a topology.
pub const MAX_ENDPOINTS: usize = 64;

/// One message for the wire, as the client queues it.
#[derive(Debug)]
pub struct ClientOut {
    /// `None` for fire-and-forget.
    pub request: Option<Request>,
    pub body: Bytes,
    /// When the engine took it (the host leaves it `None`): its queue wait runs from there.
    pub queued_at: Option<std::time::Instant>,
    /// Whether it holds room under the host's marks until written: everything the host queues
    /// does; a request's retry does not (its first copy did, once).
    pub counted: bool,
}

impl Weighed for ClientOut {
    fn bytes(&self) -> u64 {
        self.body.len() as u64
    }
}

/// What makes a message a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Chosen by the host; the reply event carries it.
    pub id: u32,
    /// Per attempt.
    pub timeout: Duration,
    /// How many more times it may be sent after a timeout or a lost connection (idempotent
    /// requests only: the server may see it more than once).
    pub retries: u32,
}

/// The client's out-of-band orders.
#[derive(Debug)]
pub enum ClientControl {
    /// Forget a pending request (aborted by the caller).
    Cancel(u32),
    /// Stop accepting, drain for at most `linger`, then report `ClientEvent::Closed`.
    Close { linger: Duration },
}

impl Orders for ClientControl {
    fn close(linger: Duration) -> Self {
        ClientControl::Close { linger }
    }
}

pub type ClientHost = Host<ClientOut, ClientControl, ClientEvent>;

pub struct Client {
    host: ClientHost,
    counters: Arc<ClientCounters>,
    request_timeout: Duration,
}

impl std::ops::Deref for Client {
    type Target = ClientHost;

    fn deref(&self) -> &ClientHost {
        &self.host
    }
}

impl Client {
    /// Validates, then starts the engine thread. Connecting happens in the background: a
    /// missing server is not an error, messages wait in the queue until it appears.
    pub fn connect(
        endpoint: &str,
        options: ClientOptions,
        waker: Box<dyn Waker>,
    ) -> Result<Client, Error> {
        Self::connect_many(&[endpoint], options, waker)
    }

    /// One client over several endpoints: sends go round-robin to the connected ones, and
    /// what one cannot take (it is down or busy) goes to the others.
    pub fn connect_many(
        endpoints: &[&str],
        options: ClientOptions,
        waker: Box<dyn Waker>,
    ) -> Result<Client, Error> {
        if endpoints.is_empty() || endpoints.len() > MAX_ENDPOINTS {
            return Err(Error::InvalidEndpoint(format!(
                "1..={MAX_ENDPOINTS} endpoints, got {}",
                endpoints.len()
            )));
        }
        let endpoints = endpoints
            .iter()
            .map(|e| Endpoint::for_connect(e))
            .collect::<Result<Vec<_>, _>>()?;
        options.validate()?;
        // One key pair for the client's lifetime: its reconnects present the same key.
        let mut options = options;
        options.curve = options.curve.as_ref().map(crate::curve::with_client_keys);
        let counters = Arc::new(ClientCounters::default());
        // With drop-oldest the engine trims to the marks; the host's refusal at twice them only
        // bounds memory when the engine thread falls behind.
        let marks = Marks {
            messages: options.send_high_water_mark,
            bytes: options.send_high_water_bytes,
            refuse_at: if options.drop_oldest { 2 } else { 1 },
        };
        let request_timeout = options.request_timeout;
        let engine_counters = counters.clone();
        let host = Host::start(
            EngineKind::Client,
            marks,
            options.max_message_bytes,
            options.linger,
            waker,
            ClientEvent::Closed,
            move |parts| {
                let engine = ClientEngine::new(endpoints, options, engine_counters, parts);
                move |runtime: tokio::runtime::Runtime| runtime.block_on(engine.run())
            },
        )?;
        Ok(Client {
            host,
            counters,
            request_timeout,
        })
    }

    /// Fire-and-forget. Every call that passes the argument checks is counted in `sent` and
    /// ends as refused (now), delivered or dropped with a reason (later).
    #[inline]
    pub fn send(&self, staging: &mut Staging<ClientOut>, body: Bytes) -> Result<Queued, Error> {
        let out = ClientOut {
            request: None,
            body,
            queued_at: None,
            counted: true,
        };
        let queued = self.host.push(staging, out)?;
        bump(&self.counters.host.sent, 1);
        if queued == Queued::Refused {
            bump(&self.counters.host.refused, 1);
        }
        Ok(queued)
    }

    /// A request with a host-chosen id; its outcome arrives as a Reply, ErrorReply or Timeout
    /// event carrying that id (or, at close, as `ClientEvent::Closed`).
    #[inline]
    pub fn request(
        &self,
        staging: &mut Staging<ClientOut>,
        id: u32,
        body: Bytes,
        timeout: Option<Duration>,
    ) -> Result<Queued, Error> {
        self.request_retrying(staging, id, body, timeout, 0)
    }

    /// A request that may be sent up to `retries` more times, each with a fresh `timeout`,
    /// when an attempt times out or its connection goes down (Lazy Pirate). For idempotent
    /// requests only: the server may see it more than once.
    #[inline]
    pub fn request_retrying(
        &self,
        staging: &mut Staging<ClientOut>,
        id: u32,
        body: Bytes,
        timeout: Option<Duration>,
        retries: u32,
    ) -> Result<Queued, Error> {
        let timeout = timeout.unwrap_or(self.request_timeout);
        let out = ClientOut {
            request: Some(Request {
                id,
                timeout,
                retries,
            }),
            body,
            queued_at: None,
            counted: true,
        };
        let queued = self.host.push(staging, out)?;
        bump(
            if queued == Queued::Yes {
                &self.counters.host.requests
            } else {
                &self.counters.host.requests_refused
            },
            1,
        );
        Ok(queued)
    }

    /// Forgets a pending request; a reply that still comes is counted as late.
    pub fn cancel(&self, staging: &mut Staging<ClientOut>, id: u32) {
        // The request may still be staged: hand it over first so the order holds.
        self.host.flush(staging);
        self.host.order(ClientControl::Cancel(id));
    }

    pub fn stats(&self) -> ClientStats {
        ClientStats::read(&self.counters, self.host.shared())
    }
}
