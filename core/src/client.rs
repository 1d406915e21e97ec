//! [`Client`]: what the binding layer holds. Calls are cheap and never block: they validate,
//! stage the message and return. The host owns a [`Staging`] and calls [`Client::flush`] at the
//! end of its tick (the calls flush by themselves every `STAGE_MAX` messages). Results come
//! back as [`Event`]s through the [`Outbox`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::engine::Engine;
use crate::error::Error;
use crate::hooks::EngineKind;
use crate::options::{validate_endpoint, ClientOptions};
use crate::outbox::{Event, Outbox, Waker};
use crate::queue::{self, Control, Outgoing, Producer, QueueShared, Refusal, Request, Staging};
use crate::stats::{bump, StatsSnapshot};
use crate::thread::EngineThread;

/// More endpoints than this is a configuration mistake, not a topology.
pub const MAX_ENDPOINTS: usize = 64;

pub struct Client {
    shared: Arc<QueueShared>,
    outbox: Arc<Outbox>,
    producer: Producer,
    max_message_bytes: usize,
    request_timeout: Duration,
    linger: Duration,
    thread: EngineThread,
}

/// What `send`/`request` did with a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    Yes,
    /// A high-water mark was reached: not queued, counted as refused.
    Refused,
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
        for endpoint in endpoints {
            validate_endpoint(endpoint)?;
        }
        options.validate()?;
        let shared = Arc::new(QueueShared::new());
        let outbox = Arc::new(Outbox::new(waker));
        // With drop-oldest the engine trims to the marks; the host's refusal at twice them only
        // bounds memory when the engine thread falls behind.
        let refuse_at = if options.drop_oldest { 2 } else { 1 };
        let (producer, consumer) = queue::channel(
            options.send_high_water_mark,
            options.send_high_water_bytes,
            refuse_at,
        );
        let engine = Engine::new(
            endpoints.iter().map(|e| e.to_string()).collect(),
            options.clone(),
            shared.clone(),
            outbox.clone(),
            consumer,
        );
        let thread = EngineThread::spawn(EngineKind::Client, move || engine.run())?;
        Ok(Client {
            shared,
            outbox,
            producer,
            max_message_bytes: options.max_message_bytes,
            request_timeout: options.request_timeout,
            linger: options.linger,
            thread,
        })
    }

    fn check(&self, body: &Bytes) -> Result<(), Error> {
        if self.thread.is_closing() {
            return Err(Error::Closed);
        }
        if body.len() > self.max_message_bytes {
            return Err(Error::MessageTooLarge {
                size: body.len(),
                max: self.max_message_bytes,
            });
        }
        Ok(())
    }

    fn push(&self, staging: &mut Staging, out: Outgoing) -> Result<Queued, Error> {
        match self.producer.push(&self.shared, staging, out) {
            Ok(()) => Ok(Queued::Yes),
            Err(Refusal::Full) => Ok(Queued::Refused),
            Err(Refusal::Closed) => Err(Error::Closed),
        }
    }

    /// Fire-and-forget. Every call that passes the argument checks is counted in `sent` and
    /// ends as refused (now), delivered or dropped with a reason (later).
    #[inline]
    pub fn send(&self, staging: &mut Staging, body: Bytes) -> Result<Queued, Error> {
        self.check(&body)?;
        let queued = self.push(
            staging,
            Outgoing {
                request: None,
                body,
                queued_at: None,
            },
        )?;
        bump(&self.shared.host.sent, 1);
        if queued == Queued::Refused {
            bump(&self.shared.host.refused, 1);
        }
        Ok(queued)
    }

    /// A request with a host-chosen id; its outcome arrives as a Reply, ErrorReply or Timeout
    /// event carrying that id (or, at close, as `Event::Closed`).
    #[inline]
    pub fn request(
        &self,
        staging: &mut Staging,
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
        staging: &mut Staging,
        id: u32,
        body: Bytes,
        timeout: Option<Duration>,
        retries: u32,
    ) -> Result<Queued, Error> {
        self.check(&body)?;
        let timeout = timeout.unwrap_or(self.request_timeout);
        let queued = self.push(
            staging,
            Outgoing {
                request: Some(Request {
                    id,
                    timeout,
                    retries,
                }),
                body,
                queued_at: None,
            },
        )?;
        bump(
            if queued == Queued::Yes {
                &self.shared.host.requests
            } else {
                &self.shared.host.requests_refused
            },
            1,
        );
        Ok(queued)
    }

    /// Hands what is staged to the engine.
    pub fn flush(&self, staging: &mut Staging) {
        // Refusal::Closed: the engine is gone and so are these messages; nothing to add.
        let _ = self.producer.flush(&self.shared, staging);
    }

    /// Forgets a pending request; a reply that still comes is counted as late.
    pub fn cancel(&self, staging: &mut Staging, id: u32) {
        // The request may still be staged: hand it over first so the order holds.
        self.flush(staging);
        let _ = self.producer.control(&self.shared, Control::Cancel(id));
    }

    /// Starts closing: later calls fail with `Closed`; the engine drains what was staged and
    /// queued for at most the linger time and then publishes `Event::Closed`. Returns false if
    /// already closing.
    pub fn close(&self, staging: &mut Staging) -> bool {
        self.close_with(staging, self.linger)
    }

    pub fn close_with(&self, staging: &mut Staging, linger: Duration) -> bool {
        self.flush(staging);
        if !self.thread.start_closing() {
            return false;
        }
        let _ = self
            .producer
            .control(&self.shared, Control::Close { linger });
        true
    }

    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    pub fn is_closing(&self) -> bool {
        self.thread.is_closing()
    }

    /// Closes (if not yet) and waits for the engine thread for at most `wait`. Returns whether
    /// it ended. Used when the host environment goes away and nobody will await `close()`.
    pub fn shutdown(&self, staging: &mut Staging, linger: Duration, wait: Duration) -> bool {
        self.close_with(staging, linger);
        self.thread.join(wait)
    }

    pub fn take_events(&self) -> Vec<Event> {
        self.outbox.take()
    }

    /// At most `max` events; the host is woken again for the rest.
    pub fn take_events_max(&self, max: usize) -> Vec<Event> {
        self.outbox.take_max(max)
    }

    pub fn stats(&self) -> StatsSnapshot {
        let e = &self.shared.engine;
        let connected = e.connects.load(Ordering::Relaxed) > e.disconnects.load(Ordering::Relaxed);
        StatsSnapshot::read(&self.shared.host, e, connected)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // The engine also gets an explicit close so it stops reconnecting. The thread is not
        // joined here: `shutdown` is the place for that. Staged messages were the host's to
        // flush; a dropped client has none it can still reach.
        self.close_with(&mut Staging::default(), Duration::ZERO);
    }
}
