//! The host → engine queue.
//!
//! The host stages admitted messages in a local [`Staging`] vector and hands them to the engine
//! as one batch: at the end of the JS tick (the binding schedules a microtask) or every
//! [`STAGE_MAX`] messages. Per message that leaves a bounds check and a `Vec::push`; the
//! channel operation, the fence and the possible wake-up are paid once per batch.
//!
//! Batches travel through a bounded crossbeam channel whose capacity is the message high-water
//! mark (a batch holds at least one message, so it never fills before the counters refuse).
//! The byte high-water mark and the count of what is still queued come from monotonic counters
//! (pushed by the host, released by the engine), so the host never contends on a shared
//! read-modify-write. The engine is woken only when it said it may sleep.
//!
//! A refusal also asks the engine for a `drain` report ([`Consumer::take_drain`]): the host
//! learns when there is room again without polling, as with a socket's `'drain'`.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use tokio::sync::Notify;

use crate::counter::bump;

/// What the host has pushed into the queue: written by the host thread only.
#[derive(Default)]
#[repr(align(64))]
pub struct Pushed {
    /// Messages ever pushed, and their bytes.
    pub pushed: AtomicU64,
    pub pushed_bytes: AtomicU64,
    /// Payloads refused for being larger than `maxMessageBytes`.
    pub too_large: AtomicU64,
}

/// What the engine has taken out of the queue: written by the engine thread only.
#[derive(Default)]
#[repr(align(64))]
pub struct Released {
    /// Messages that left the queue (handed to the socket or dropped), and their bytes.
    pub released: AtomicU64,
    pub released_bytes: AtomicU64,
}

/// What the queue needs to know of a message: its payload size, for the byte high-water mark.
pub trait Weighed {
    fn bytes(&self) -> u64;
}

/// The state both threads see.
pub struct QueueShared {
    pub host: Pushed,
    pub engine: Released,
    /// True while the engine is (about to be) parked on `notify`.
    pub(crate) sleeping: AtomicBool,
    pub(crate) notify: Notify,
    /// Set by the host when it refused a message; cleared by the engine when it reports that
    /// the queue is down to its low-water marks.
    want_drain: AtomicBool,
}

impl QueueShared {
    pub fn new() -> Self {
        QueueShared {
            host: Pushed::default(),
            engine: Released::default(),
            sleeping: AtomicBool::new(false),
            notify: Notify::new(),
            want_drain: AtomicBool::new(false),
        }
    }

    /// Host side, after a refusal: ask for a drain report, and wake the engine so that it looks
    /// even if what it was waiting for has already happened.
    fn want_drain(&self) {
        if !self.want_drain.load(Ordering::Relaxed) {
            self.want_drain.store(true, Ordering::Release);
            self.wake_engine();
        }
    }

    /// Engine side: messages left the queue (written or dropped); the host's marks see them go.
    pub(crate) fn release(&self, messages: u64, bytes: u64) {
        let e = &self.engine;
        // Each message the host pushed is released once: more would make the queue look full
        // for good (the host subtracts these from what it pushed).
        debug_assert!(
            e.released.load(Ordering::Relaxed) + messages
                <= self.host.pushed.load(Ordering::Acquire)
                && e.released_bytes.load(Ordering::Relaxed) + bytes
                    <= self.host.pushed_bytes.load(Ordering::Acquire),
            "released more than the host queued"
        );
        bump(&e.released_bytes, bytes);
        // Release count last: the host reads it with Acquire and must then see the bytes too.
        e.released.store(
            e.released.load(Ordering::Relaxed) + messages,
            Ordering::Release,
        );
    }

    /// Host side, after pushing: wake the engine only if it may be asleep.
    #[inline]
    pub(crate) fn wake_engine(&self) {
        // Pairs with the fence in `Engine::park`: either we see `sleeping` or it sees our message.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }
}

impl Default for QueueShared {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a message was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A high-water mark was reached; the message was not queued.
    Full,
    /// The engine is gone.
    Closed,
}

/// Most messages staged before they are handed over without waiting for the end of the tick:
/// the engine starts writing the first while the host still makes the rest (a tick that
/// answers a batch of replies makes as many new requests, or replies).
pub const STAGE_MAX: usize = 32;

/// Messages admitted by the host but not yet handed to the engine, and the engine's release
/// counters as the host last read them. Owned by the host thread.
#[derive(Debug)]
pub struct Staging<T> {
    msgs: Vec<T>,
    /// `released` / `released_bytes` when last read. They only grow, so a check against these
    /// never admits past a mark; the shared cache line is read again only when it would refuse
    /// (an engine that loops fast rewrites it constantly, and each read would be a miss).
    released_seen: u64,
    released_bytes_seen: u64,
}

impl<T> Default for Staging<T> {
    fn default() -> Self {
        Staging {
            msgs: Vec::new(),
            released_seen: 0,
            released_bytes_seen: 0,
        }
    }
}

impl<T> Staging<T> {
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }
}

/// Host half of the queue.
pub struct Producer<T, C> {
    tx: Sender<Vec<T>>,
    ctl: Sender<C>,
    high_water_mark: u64,
    high_water_bytes: u64,
}

/// Engine half of the queue.
pub struct Consumer<T, C> {
    pub rx: Receiver<Vec<T>>,
    pub ctl: Receiver<C>,
    /// Messages and bytes queued at or below which a refused host hears `drain`: half the
    /// high-water marks, so that it refills a queue that is still being written.
    low_water: (u64, u64),
}

impl<T, C> Consumer<T, C> {
    /// Whether a refusal is waiting for its drain report and the queue is down to the low
    /// marks. Part of the engine's check before parking, so a refusal that raced with the last
    /// release still gets its report.
    pub(crate) fn drain_due(&self, shared: &QueueShared) -> bool {
        if !shared.want_drain.load(Ordering::Acquire) {
            return false;
        }
        let (h, e) = (&shared.host, &shared.engine);
        let queued = h.pushed.load(Ordering::Acquire) - e.released.load(Ordering::Acquire);
        let queued_bytes =
            h.pushed_bytes.load(Ordering::Acquire) - e.released_bytes.load(Ordering::Acquire);
        queued <= self.low_water.0 && queued_bytes <= self.low_water.1
    }

    /// True once per refusal episode, when [`Self::drain_due`]. A refusal racing with this may
    /// set the flag again just after: the host then hears of room twice, which costs it a
    /// retry; never zero times, since the flag stays set until reported.
    pub(crate) fn take_drain(&self, shared: &QueueShared) -> bool {
        self.drain_due(shared) && shared.want_drain.swap(false, Ordering::AcqRel)
    }
}

/// A queue whose host refuses at `refuse_at` times the marks (1, or 2 with drop-oldest,
/// where the engine trims to the marks itself) and hears `drain` at half the marks.
pub fn channel<T, C>(
    high_water_mark: usize,
    high_water_bytes: usize,
    refuse_at: usize,
) -> (Producer<T, C>, Consumer<T, C>) {
    let low_water = (high_water_mark as u64 / 2, high_water_bytes as u64 / 2);
    let high_water_mark = high_water_mark * refuse_at;
    let high_water_bytes = high_water_bytes.saturating_mul(refuse_at);
    let (tx, rx) = crossbeam_channel::bounded(high_water_mark);
    let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded();
    (
        Producer {
            tx,
            ctl: ctl_tx,
            high_water_mark: high_water_mark as u64,
            high_water_bytes: high_water_bytes as u64,
        },
        Consumer {
            rx,
            ctl: ctl_rx,
            low_water,
        },
    )
}

impl<T: Weighed, C> Producer<T, C> {
    /// Admits one message into `staging`. Never blocks. Must be called from one thread only
    /// (the host's), which also owns `staging`.
    #[inline]
    pub fn push(
        &self,
        shared: &QueueShared,
        staging: &mut Staging<T>,
        msg: T,
    ) -> Result<(), Refusal> {
        let len = msg.bytes();
        let pushed = shared.host.pushed.load(Ordering::Relaxed);
        let pushed_bytes = shared.host.pushed_bytes.load(Ordering::Relaxed);
        // The engine moves messages out of the channel into its backlog while disconnected, so
        // the channel's capacity alone does not bound what is queued: the counters do. What is
        // staged here already counts as pushed.
        let over = |released: u64, released_bytes: u64| {
            let queued = pushed - released;
            let queued_bytes = pushed_bytes - released_bytes;
            // A single message larger than the byte mark still goes through an empty queue;
            // otherwise a small high-water mark would make such payloads unsendable.
            queued >= self.high_water_mark
                || (queued_bytes > 0 && queued_bytes + len > self.high_water_bytes)
        };
        if over(staging.released_seen, staging.released_bytes_seen) {
            staging.released_seen = shared.engine.released.load(Ordering::Acquire);
            staging.released_bytes_seen = shared.engine.released_bytes.load(Ordering::Acquire);
            if over(staging.released_seen, staging.released_bytes_seen) {
                shared.want_drain();
                // Counted by the caller, which knows what kind of call was refused.
                return Err(Refusal::Full);
            }
        }
        bump(&shared.host.pushed, 1);
        bump(&shared.host.pushed_bytes, len);
        staging.msgs.push(msg);
        if staging.msgs.len() >= STAGE_MAX {
            self.flush(shared, staging)?;
        }
        Ok(())
    }

    /// Hands everything staged to the engine and wakes it if it may be asleep.
    pub fn flush(&self, shared: &QueueShared, staging: &mut Staging<T>) -> Result<(), Refusal> {
        if staging.msgs.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut staging.msgs, Vec::with_capacity(STAGE_MAX));
        match self.tx.try_send(batch) {
            Ok(()) => {
                shared.wake_engine();
                Ok(())
            }
            // Cannot happen while the counters hold (every batch has a message and at most
            // high-water-mark messages are pushed and unreleased); refuse rather than block.
            Err(TrySendError::Full(_)) => Err(Refusal::Full),
            Err(TrySendError::Disconnected(_)) => Err(Refusal::Closed),
        }
    }

    pub fn control(&self, shared: &QueueShared, order: C) -> Result<(), Refusal> {
        self.ctl.send(order).map_err(|_| Refusal::Closed)?;
        shared.wake_engine();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message of `0` bytes.
    struct Msg(u64);

    impl Weighed for Msg {
        fn bytes(&self) -> u64 {
            self.0
        }
    }

    fn channel(hwm: usize, hwb: usize) -> (Producer<Msg, ()>, Consumer<Msg, ()>) {
        super::channel(hwm, hwb, 1)
    }

    fn msg(n: u64) -> Msg {
        Msg(n)
    }

    #[test]
    fn message_mark_refuses_and_counts() {
        let shared = QueueShared::new();
        let mut st = Staging::default();
        let (p, c) = channel(3, 1 << 20);
        for _ in 0..3 {
            assert_eq!(p.push(&shared, &mut st, msg(1)), Ok(()));
        }
        assert_eq!(p.push(&shared, &mut st, msg(1)), Err(Refusal::Full));
        // Handed over and taken out of the channel but not yet released: still queued.
        p.flush(&shared, &mut st).unwrap();
        assert!(st.is_empty());
        assert_eq!(c.rx.try_recv().unwrap().len(), 3);
        assert_eq!(p.push(&shared, &mut st, msg(1)), Err(Refusal::Full));
        bump(&shared.engine.released, 1);
        bump(&shared.engine.released_bytes, 1);
        assert_eq!(p.push(&shared, &mut st, msg(1)), Ok(()));
    }

    #[test]
    fn a_refusal_gets_one_drain_report_once_the_queue_is_down_to_the_low_marks() {
        let shared = QueueShared::new();
        let mut st = Staging::default();
        let (p, c) = channel(4, 1 << 20);
        for _ in 0..4 {
            p.push(&shared, &mut st, msg(10)).unwrap();
        }
        // No refusal yet: nothing to report, however empty the queue gets.
        bump(&shared.engine.released, 4);
        bump(&shared.engine.released_bytes, 40);
        assert!(!c.take_drain(&shared));
        for _ in 0..4 {
            p.push(&shared, &mut st, msg(10)).unwrap();
        }
        assert_eq!(p.push(&shared, &mut st, msg(10)), Err(Refusal::Full));
        assert_eq!(p.push(&shared, &mut st, msg(10)), Err(Refusal::Full));
        // Three still queued: above the low mark of two.
        bump(&shared.engine.released, 1);
        bump(&shared.engine.released_bytes, 10);
        assert!(!c.take_drain(&shared));
        bump(&shared.engine.released, 1);
        bump(&shared.engine.released_bytes, 10);
        assert!(c.take_drain(&shared));
        // Once per refusal episode.
        assert!(!c.take_drain(&shared));
        assert_eq!(p.push(&shared, &mut st, msg(10)), Ok(()));
    }

    #[test]
    fn the_byte_mark_holds_the_drain_report_too() {
        let shared = QueueShared::new();
        let mut st = Staging::default();
        // Low marks: 50 messages, 20 bytes.
        let (p, c) = channel(100, 40);
        for _ in 0..4 {
            p.push(&shared, &mut st, msg(10)).unwrap();
        }
        assert_eq!(p.push(&shared, &mut st, msg(10)), Err(Refusal::Full));
        bump(&shared.engine.released, 1);
        bump(&shared.engine.released_bytes, 10);
        assert!(!c.take_drain(&shared), "30 bytes queued, above 20");
        bump(&shared.engine.released, 1);
        bump(&shared.engine.released_bytes, 10);
        assert!(c.take_drain(&shared));
    }

    #[test]
    fn byte_mark_counts_released_bytes() {
        let shared = QueueShared::new();
        let mut st = Staging::default();
        let (p, _c) = channel(100, 10);
        // An oversized message passes an empty queue...
        assert_eq!(p.push(&shared, &mut st, msg(25)), Ok(()));
        // ...but nothing fits behind it until the engine releases it.
        assert_eq!(p.push(&shared, &mut st, msg(1)), Err(Refusal::Full));
        bump(&shared.engine.released_bytes, 25);
        assert_eq!(p.push(&shared, &mut st, msg(6)), Ok(()));
        assert_eq!(p.push(&shared, &mut st, msg(4)), Ok(()));
        assert_eq!(p.push(&shared, &mut st, msg(1)), Err(Refusal::Full));
    }

    #[test]
    fn a_full_stage_is_handed_over_without_waiting() {
        let shared = QueueShared::new();
        let mut st = Staging::default();
        let (p, c) = channel(1000, 1 << 20);
        for _ in 0..STAGE_MAX + 1 {
            p.push(&shared, &mut st, msg(1)).unwrap();
        }
        assert_eq!(c.rx.try_recv().unwrap().len(), STAGE_MAX);
        assert!(c.rx.try_recv().is_err());
        p.flush(&shared, &mut st).unwrap();
        assert_eq!(c.rx.try_recv().unwrap().len(), 1);
    }

    #[test]
    fn closed_engine_is_reported() {
        let shared = QueueShared::new();
        let mut st = Staging::default();
        let (p, c) = channel(4, 100);
        drop(c);
        p.push(&shared, &mut st, msg(1)).unwrap();
        assert_eq!(p.flush(&shared, &mut st), Err(Refusal::Closed));
    }
}
