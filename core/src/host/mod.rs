//! The host layer: what a client and a server share between the thread that owns them (the
//! host: in Node, the JS thread) and their engine thread.
//!
//! - [`queue`]  — host → engine: per-tick staging, the bounded channel, the byte and message
//!   marks, the wake-up, `drain`.
//! - [`outbox`] — engine → host: batches of events, at most one wake-up per batch.
//! - `thread`   — the engine thread: spawned once with its runtime, closed once, joined with a
//!   bound.
//! - [`Host`]   — the handle both wings wrap: the checks, staging, flush, close, shutdown.
//!
//! Each wing supplies its three types: what the host sends (`O`, weighed for the byte mark),
//! its out-of-band orders (`C`, which include closing) and its events (`E`).

pub mod outbox;
pub mod queue;
mod thread;

use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::task::{Context, Poll};

use zeromq::{ZmqMessage, ZmqResult};

use crate::counter::bump;
use crate::error::Error;
use crate::hooks::EngineKind;
use crate::spin::Spin;
use outbox::{Outbox, Waker};
use queue::{Consumer, Producer, QueueShared, Refusal, Staging, Weighed};
use thread::EngineThread;

/// The largest queue we agree to preallocate: the channel is bounded by the message mark.
pub const MAX_HIGH_WATER_MARK: usize = 10_000_000;
/// Frames above this size are never sent; also bounds `maxMessageBytes`.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;
/// Most inbound messages an engine handles per wake-up before it looks at its queue again.
pub(crate) const RECV_BATCH: usize = 256;

/// The limits every handle's queue has, checked the same way for both wings.
pub(crate) fn check_limits(
    send_high_water_mark: usize,
    send_high_water_bytes: usize,
    max_message_bytes: usize,
) -> Result<(), Error> {
    let bad = |what: String| Err(Error::InvalidOption(what));
    if send_high_water_mark == 0 || send_high_water_mark > MAX_HIGH_WATER_MARK {
        return bad(format!(
            "sendHighWaterMark must be 1..={MAX_HIGH_WATER_MARK}, got {send_high_water_mark}"
        ));
    }
    if send_high_water_bytes == 0 {
        return bad("sendHighWaterBytes must be at least 1".into());
    }
    if max_message_bytes == 0 || max_message_bytes > MAX_MESSAGE_BYTES {
        return bad(format!(
            "maxMessageBytes must be 1..={MAX_MESSAGE_BYTES}, got {max_message_bytes}"
        ));
    }
    Ok(())
}

/// What a call that queues a message did with it.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    Yes,
    /// A high-water mark was reached: not queued (the wing counts it as refused).
    Refused,
}

/// A wing's out-of-band orders: never refused, never behind queued messages.
pub trait Orders: Send + 'static {
    /// Stop accepting, drain for at most `linger`, then publish the closed event.
    fn close(linger: Duration) -> Self;
}

/// The queue's marks: the host refuses at `refuse_at` times them (1, or 2 where the engine
/// trims to the marks itself) and hears `drain` at half of them.
pub(crate) struct Marks {
    pub messages: usize,
    pub bytes: usize,
    pub refuse_at: usize,
}

/// What an engine is built from.
pub(crate) struct EngineParts<O, C, E> {
    pub shared: Arc<QueueShared>,
    pub outbox: Arc<Outbox<E>>,
    pub queue: Consumer<O, C>,
}

/// The host's handle on an engine: messages in through the queue, events out through the
/// outbox. Calls never block.
pub struct Host<O: Weighed, C: Orders, E> {
    shared: Arc<QueueShared>,
    outbox: Arc<Outbox<E>>,
    producer: Producer<O, C>,
    max_message_bytes: usize,
    linger: Duration,
    thread: EngineThread,
}

impl<O: Weighed + Send + 'static, C: Orders, E: Weighed + Send + 'static> Host<O, C, E> {
    /// Builds the engine with `make` (on this thread) and starts its thread. `make` returns
    /// what runs there with a fresh current-thread runtime; `closed` is published after it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start<R>(
        kind: EngineKind,
        marks: Marks,
        max_message_bytes: usize,
        linger: Duration,
        waker: Box<dyn Waker>,
        closed: E,
        make: impl FnOnce(EngineParts<O, C, E>) -> R,
    ) -> Result<Self, Error>
    where
        R: FnOnce(tokio::runtime::Runtime) + Send + 'static,
    {
        let shared = Arc::new(QueueShared::new());
        let outbox = Arc::new(Outbox::new(waker));
        let (producer, queue) = queue::channel(marks.messages, marks.bytes, marks.refuse_at);
        let run = make(EngineParts {
            shared: shared.clone(),
            outbox: outbox.clone(),
            queue,
        });
        let thread = EngineThread::spawn(kind, outbox.clone(), closed, run)?;
        Ok(Host {
            shared,
            outbox,
            producer,
            max_message_bytes,
            linger,
            thread,
        })
    }

    /// Admits `out` into `staging`: refused at a mark, an error once closing or when it is
    /// larger than `maxMessageBytes`.
    #[inline]
    pub fn push(&self, staging: &mut Staging<O>, out: O) -> Result<Queued, Error> {
        if self.thread.is_closing() {
            return Err(Error::Closed);
        }
        let size = out.bytes() as usize;
        if size > self.max_message_bytes {
            return Err(self.too_large(size));
        }
        match self.producer.push(&self.shared, staging, out) {
            Ok(()) => Ok(Queued::Yes),
            Err(Refusal::Full) => Ok(Queued::Refused),
            Err(Refusal::Closed) => Err(Error::Closed),
        }
    }

    /// Refuses a payload of `size` bytes, over `maxMessageBytes`, and counts it. Also for a
    /// host that can tell before building the payload (a string's length bounds its bytes).
    pub fn too_large(&self, size: usize) -> Error {
        bump(&self.shared.host.too_large, 1);
        Error::MessageTooLarge {
            size,
            max: self.max_message_bytes,
        }
    }

    /// Hands what is staged to the engine.
    pub fn flush(&self, staging: &mut Staging<O>) {
        // Refusal::Closed: the engine is gone and so are these messages; nothing to add.
        let _ = self.producer.flush(&self.shared, staging);
    }

    /// An out-of-band order; false if the engine is gone.
    pub(crate) fn order(&self, order: C) -> bool {
        self.producer.control(&self.shared, order).is_ok()
    }

    /// Starts closing with the configured linger time; see [`Host::close_with`].
    pub fn close(&self, staging: &mut Staging<O>) -> bool {
        self.close_with(staging, self.linger)
    }

    /// Starts closing: later calls fail with `Closed`; the engine drains what was staged and
    /// queued for at most `linger` and then publishes its closed event. Returns false if
    /// already closing.
    pub fn close_with(&self, staging: &mut Staging<O>, linger: Duration) -> bool {
        self.flush(staging);
        if !self.thread.start_closing() {
            return false;
        }
        self.order(C::close(linger));
        true
    }

    /// Closes (if not yet) and waits for the engine thread for at most `wait`. Returns whether
    /// it ended. Used when the host environment goes away and nobody will await `close()`.
    pub fn shutdown(&self, staging: &mut Staging<O>, linger: Duration, wait: Duration) -> bool {
        self.close_with(staging, linger);
        self.thread.join(wait)
    }

    pub fn is_closing(&self) -> bool {
        self.thread.is_closing()
    }

    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    pub fn linger(&self) -> Duration {
        self.linger
    }

    /// Takes everything the engine published so far.
    pub fn take_events(&self) -> Vec<E> {
        self.outbox.take()
    }

    /// At most `max` events; the host is woken again for the rest.
    pub fn take_events_max(&self, max: usize) -> Vec<E> {
        self.outbox.take_max(max)
    }

    pub(crate) fn shared(&self) -> &QueueShared {
        &self.shared
    }

    pub(crate) fn outbox(&self) -> &Outbox<E> {
        &self.outbox
    }
}

impl<O: Weighed, C: Orders, E> Drop for Host<O, C, E> {
    fn drop(&mut self) {
        // The engine gets an explicit close so it stops (reconnecting, reading). The thread is
        // not joined here: `shutdown` is the place for that. Staged messages were the host's
        // to flush; a dropped handle has none it can still reach.
        if self.thread.start_closing() {
            let _ = self
                .producer
                .control(&self.shared, C::close(Duration::ZERO));
        }
    }
}

/// An engine's step before it waits: offer the core after a long stretch of work, then poll
/// (when `want_spin` and a slot is free) or tell the host it may have to wake us. `None` when
/// the host handed something over meanwhile: look at once instead of waiting. Otherwise when
/// the wait began and whether it polls (for [`woke`]).
pub(crate) fn prepare_wait<O, C>(
    shared: &QueueShared,
    queue: &Consumer<O, C>,
    spin: &mut Spin,
    want_spin: bool,
    host_behind: impl FnOnce() -> bool,
) -> Option<Waiting> {
    let began = tokio::time::Instant::now();
    if spin.stretch_done(began, crate::spin::thread_cpu, host_behind) {
        std::thread::yield_now();
    }
    let spinning = spin.claim(want_spin);
    if !spinning {
        shared.sleeping.store(true, Ordering::Relaxed);
        // Pairs with the fence in `QueueShared::wake_engine`.
        fence(Ordering::SeqCst);
    }
    if !queue.rx.is_empty() || !queue.ctl.is_empty() || queue.drain_due(shared) {
        shared.sleeping.store(false, Ordering::Relaxed);
        return None;
    }
    Some(Waiting { began, spinning })
}

/// A wait [`prepare_wait`] cleared.
#[derive(Clone, Copy)]
pub(crate) struct Waiting {
    began: tokio::time::Instant,
    /// Whether the wait polls (one turn) instead of parking.
    pub spinning: bool,
}

/// After a wait: the engine is awake and the host need not wake it; a long wait was a rest.
pub(crate) fn woke(shared: &QueueShared, spin: &mut Spin, wait: Waiting) {
    shared.sleeping.store(false, Ordering::Relaxed);
    spin.waited(wait.began, tokio::time::Instant::now(), wait.spinning);
}

/// A socket's receive half, read without a future: the crate's `SocketRecv::recv` is an
/// `async_trait` method, which boxes its future on every call (an allocation per message).
pub(crate) trait PollRecv {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<ZmqResult<ZmqMessage>>;
}

impl PollRecv for zeromq::DealerRecvHalf {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<ZmqResult<ZmqMessage>> {
        zeromq::DealerRecvHalf::poll_recv(self, cx)
    }
}

impl PollRecv for zeromq::RouterRecvHalf {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<ZmqResult<ZmqMessage>> {
        zeromq::RouterRecvHalf::poll_recv(self, cx)
    }
}

/// A message the socket already holds, without waiting: the rest of a receive batch is taken
/// with this after the first one woke the engine. (The no-op waker replaces the engine's in
/// the socket only until its next wait polls the socket again.)
pub(crate) fn ready<R: PollRecv>(recv: &mut R) -> Option<ZmqResult<ZmqMessage>> {
    match recv.poll_recv(&mut Context::from_waker(futures::task::noop_waker_ref())) {
        Poll::Ready(m) => Some(m),
        Poll::Pending => None,
    }
}
