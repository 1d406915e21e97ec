//! The server wing: a ROUTER on its own engine thread (the client wing's mirror) that routes
//! what clients send by a field sniffed from the first bytes, knows its clients, and pushes to
//! them.
//!
//! - this file — [`Server`], the handle the host drives, and what it hands the engine
//!   ([`ServerOut`], [`ServerControl`]);
//! - [`engine`] — the engine thread's loop: clients, routes, reply tokens, acks, the writes;
//! - [`options`], [`event`], [`stats`] — what the host configures, hears and reads.
//!
//! Inbound, per message: find (or create) the peer by routing identity; answer control
//! traffic (hello → ack, goodbye → reply) itself; sniff the route for everything else and
//! publish one [`ServerEvent::Message`] carrying the route index, so only that route's handler
//! runs in JS. Requests get a reply token; the corr stays here until the host replies with it.
//! Outbound, the host stages replies, pushes and broadcasts exactly like a client stages sends.
//! A route may instead be a [`Sink`]: its messages go to a writer thread and never reach JS.
//!
//! Latency: every message carries the instant it was read, so the host records how long it
//! waited before JS got it (`queue_wait`) and the engine how long a request took until its
//! reply was handed to the socket (`service`).

mod engine;
pub mod event;
pub mod options;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::bind;
use crate::counter::bump;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::hooks::EngineKind;
use crate::host::outbox::Waker;
use crate::host::queue::{Staging, Weighed};
use crate::host::{Host, Marks, Orders, Queued};
use crate::latency::Histogram;
use crate::sink::{Sink, SinkCounters};
use engine::ServerEngine;
pub use event::{DisconnectReason, ServerEvent};
pub use options::ServerOptions;
pub use stats::{ServerCounters, ServerStats};

/// Route index of messages no route matched (the `message` event).
pub const NO_ROUTE: u32 = 0;
/// Reply token of a fire-and-forget message.
pub const NO_TOKEN: u32 = 0;

/// What the host asks the server to send.
#[derive(Debug)]
pub enum ServerOut {
    Reply {
        token: u32,
        body: Bytes,
        error: bool,
    },
    SendTo {
        client: u32,
        body: Bytes,
    },
    Broadcast {
        body: Bytes,
    },
}

impl Weighed for ServerOut {
    fn bytes(&self) -> u64 {
        match self {
            ServerOut::Reply { body, .. }
            | ServerOut::SendTo { body, .. }
            | ServerOut::Broadcast { body } => body.len() as u64,
        }
    }
}

#[derive(Debug)]
pub enum ServerControl {
    /// Messages whose sniffed type equals `name` go to route `index`.
    Route {
        name: Vec<u8>,
        index: u32,
    },
    /// Messages whose sniffed type equals `name` go to this sink, not to the host.
    Sink {
        name: Vec<u8>,
        sink: Sink,
    },
    Close {
        linger: Duration,
    },
    /// Start reading (after `start_paused`).
    Start,
    /// The host's answer to `ServerEvent::Authorize`.
    Authorize {
        request: u32,
        allow: bool,
    },
}

impl Orders for ServerControl {
    fn close(linger: Duration) -> Self {
        ServerControl::Close { linger }
    }
}

pub type ServerHost = Host<ServerOut, ServerControl, ServerEvent>;

/// The host's handle on a server.
pub struct Server {
    host: ServerHost,
    endpoint: String,
    counters: Arc<ServerCounters>,
    /// Read → taken by the host, µs. Written by the host thread (in `take_events*`).
    queue_wait: Histogram,
    service: Arc<Histogram>,
    sink_counters: Arc<SinkCounters>,
}

impl std::ops::Deref for Server {
    type Target = ServerHost;

    fn deref(&self) -> &ServerHost {
        &self.host
    }
}

impl Server {
    /// Binds now (so a taken address or a bad path is an error of this call) and starts the
    /// engine thread.
    pub fn bind(
        endpoint: &str,
        options: ServerOptions,
        waker: Box<dyn Waker>,
    ) -> Result<Server, Error> {
        let endpoint = Endpoint::for_bind(endpoint)?;
        options.validate()?;
        if options.authorize_by_host && options.curve.is_none() && endpoint.ipc_path().is_none() {
            return Err(Error::InvalidOption(
                "options.authorize without options.curve needs an ipc:// endpoint: a tcp peer has neither a proven key nor a uid to decide by".into(),
            ));
        }
        let bound = bind::bind(&endpoint, options.socket_mode)?;
        if options.curve.is_none() && !options.insecure {
            if let Some(address) = bound.reachable_from_elsewhere() {
                return Err(Error::Insecure(address));
            }
        }
        let endpoint = bound.endpoint();
        let (listener, file) = bound.into_parts();
        let counters = Arc::new(ServerCounters::default());
        let service = Arc::new(Histogram::default());
        let marks = Marks {
            messages: options.send_high_water_mark,
            bytes: options.send_high_water_bytes,
            refuse_at: 1,
        };
        let (engine_counters, engine_service) = (counters.clone(), service.clone());
        let host = Host::start(
            EngineKind::Server,
            marks,
            options.max_message_bytes,
            options.linger,
            waker,
            ServerEvent::Closed,
            move |parts| {
                let engine = ServerEngine::new(&options, engine_counters, engine_service, parts);
                move |runtime: tokio::runtime::Runtime| {
                    runtime.block_on(engine.run(listener));
                    // The crate's connection tasks end with the runtime; only then is the
                    // socket file ours to remove.
                    drop(runtime);
                    if let Some(file) = file {
                        file.remove_file();
                    }
                }
            },
        )?;
        Ok(Server {
            host,
            endpoint,
            counters,
            queue_wait: Histogram::default(),
            service,
            sink_counters: Arc::default(),
        })
    }

    /// The bound endpoint (with the real port for `tcp://…:0`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn route(&self, name: &str, index: u32) -> Result<(), Error> {
        let name = name.as_bytes().to_vec();
        if self.host.is_closing() || !self.host.order(ServerControl::Route { name, index }) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Messages of type `name` go to `sink` from now on (replacing a handler route of that
    /// name). The sink is flushed and its writer joined when the engine ends.
    pub fn route_to_sink(&self, name: &str, sink: Sink) -> Result<(), Error> {
        let name = name.as_bytes().to_vec();
        if self.host.is_closing() || !self.host.order(ServerControl::Sink { name, sink }) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// What the writers of this server's sinks count into (hand it to [`Sink::spawn`]).
    pub fn sink_counters(&self) -> Arc<SinkCounters> {
        self.sink_counters.clone()
    }

    fn push(&self, staging: &mut Staging<ServerOut>, out: ServerOut) -> Result<Queued, Error> {
        let queued = self.host.push(staging, out)?;
        if queued == Queued::Refused {
            bump(&self.counters.refused, 1);
        }
        Ok(queued)
    }

    /// Answers the request that carried `token` (`error`: an error reply, rejected with EREMOTE).
    pub fn reply(
        &self,
        staging: &mut Staging<ServerOut>,
        token: u32,
        body: Bytes,
        error: bool,
    ) -> Result<Queued, Error> {
        self.push(staging, ServerOut::Reply { token, body, error })
    }

    pub fn send_to(
        &self,
        staging: &mut Staging<ServerOut>,
        client: u32,
        body: Bytes,
    ) -> Result<Queued, Error> {
        self.push(staging, ServerOut::SendTo { client, body })
    }

    pub fn broadcast(
        &self,
        staging: &mut Staging<ServerOut>,
        body: Bytes,
    ) -> Result<Queued, Error> {
        self.push(staging, ServerOut::Broadcast { body })
    }

    /// Answers an `Authorize` event: the client's held messages go on, or it is disconnected.
    pub fn authorize(&self, request: u32, allow: bool) {
        self.host.order(ServerControl::Authorize { request, allow });
    }

    /// Starts reading messages (for a server bound with `start_paused`).
    pub fn start(&self) {
        self.host.order(ServerControl::Start);
    }

    /// The host has run its handlers on every event it took: the sends among them may be
    /// acked to their clients.
    pub fn handled(&self) {
        self.host.outbox().mark_handled();
    }

    /// Host thread only (it records the queue wait of what it takes).
    pub fn take_events(&self) -> Vec<ServerEvent> {
        self.waited(self.host.take_events())
    }

    /// At most `max` events; the host is woken again for the rest. Host thread only.
    pub fn take_events_max(&self, max: usize) -> Vec<ServerEvent> {
        self.waited(self.host.take_events_max(max))
    }

    fn waited(&self, events: Vec<ServerEvent>) -> Vec<ServerEvent> {
        let now = std::time::Instant::now();
        for e in &events {
            if let ServerEvent::Message { arrived, .. } = e {
                self.queue_wait
                    .record_duration(now.saturating_duration_since(*arrived));
            }
        }
        events
    }

    pub fn stats(&self) -> ServerStats {
        ServerStats::read(
            &self.counters,
            self.host.shared(),
            &self.sink_counters,
            &self.queue_wait,
            &self.service,
        )
    }
}
