//! Engine → host: events are collected in one shared batch and the host is woken at most once
//! per batch. The host's callback clears `scheduled` before taking the batch, so an event pushed
//! after the take always schedules a fresh wake-up and none is stranded.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use super::queue::Weighed;

/// How the engine wakes the host. The binding implements it with a libuv async handle.
pub trait Waker: Send + Sync + 'static {
    fn wake(&self);
}

pub struct Outbox<E> {
    events: Mutex<Vec<E>>,
    scheduled: AtomicBool,
    waker: Box<dyn Waker>,
    /// Events the host has taken, and of those the ones it has run its handlers on (it says
    /// so after each batch). Both written by the host only.
    taken: AtomicU64,
    handled: AtomicU64,
    /// Bytes of the events published (engine) and taken (host) so far: what waits for the
    /// host is the difference, which an engine keeps under its receive bound.
    published_bytes: AtomicU64,
    taken_bytes: AtomicU64,
}

impl<E: Weighed> Outbox<E> {
    pub fn new(waker: Box<dyn Waker>) -> Self {
        Outbox {
            events: Mutex::new(Vec::new()),
            scheduled: AtomicBool::new(false),
            waker,
            taken: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            published_bytes: AtomicU64::new(0),
            taken_bytes: AtomicU64::new(0),
        }
    }

    /// Host side, once its handlers have run on everything it took.
    pub fn mark_handled(&self) {
        self.handled
            .store(self.taken.load(Ordering::Relaxed), Ordering::Release);
    }

    fn count_taken(&self, batch: &[E]) {
        crate::counter::bump(&self.taken, batch.len() as u64);
        let bytes = batch.iter().map(Weighed::bytes).sum();
        crate::counter::bump(&self.taken_bytes, bytes);
    }

    /// Bytes of the events waiting for the host.
    pub fn bytes(&self) -> u64 {
        let taken = self.taken_bytes.load(Ordering::Acquire);
        self.published_bytes
            .load(Ordering::Acquire)
            .saturating_sub(taken)
    }

    /// How many events the host has handled, oldest first.
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Acquire)
    }

    /// Engine side: appends a batch and wakes the host if no wake-up is outstanding.
    pub fn publish(&self, batch: &mut Vec<E>) {
        if batch.is_empty() {
            return;
        }
        let bytes = batch.iter().map(Weighed::bytes).sum();
        crate::counter::bump(&self.published_bytes, bytes);
        {
            let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
            if events.is_empty() {
                std::mem::swap(&mut *events, batch);
            } else {
                events.append(batch);
            }
        }
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// How many events wait for the host (the server stops reading past a bound).
    pub fn len(&self) -> usize {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Host side: takes everything published so far.
    pub fn take(&self) -> Vec<E> {
        self.scheduled.store(false, Ordering::Release);
        let batch = std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()));
        self.count_taken(&batch);
        batch
    }

    /// Host side: takes at most `max` events, oldest first. With more left, the outbox stays
    /// scheduled and the host is woken again, so one flood never holds the JS thread for long:
    /// other work (timers, I/O, other handles) runs between the batches.
    pub fn take_max(&self, max: usize) -> Vec<E> {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if events.len() <= max {
            self.scheduled.store(false, Ordering::Release);
            let batch = std::mem::take(&mut *events);
            drop(events);
            self.count_taken(&batch);
            return batch;
        }
        let rest = events.split_off(max);
        let batch = std::mem::replace(&mut *events, rest);
        drop(events);
        self.count_taken(&batch);
        self.waker.wake();
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[derive(Debug, PartialEq, Eq)]
    enum Event {
        Timeout { id: u32 },
        Closed,
    }

    impl Weighed for Event {
        fn bytes(&self) -> u64 {
            0
        }
    }

    struct Count(Arc<AtomicUsize>);
    impl Waker for Count {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn take_max_leaves_the_rest_and_wakes_again() {
        let wakes = Arc::new(AtomicUsize::new(0));
        let outbox: Outbox<Event> = Outbox::new(Box::new(Count(wakes.clone())));
        outbox.publish(&mut (0..5).map(|id| Event::Timeout { id }).collect());
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        assert_eq!(
            outbox.take_max(2),
            vec![Event::Timeout { id: 0 }, Event::Timeout { id: 1 }]
        );
        assert_eq!(wakes.load(Ordering::SeqCst), 2, "woken again for the rest");
        assert_eq!(outbox.take_max(2).len(), 2);
        assert_eq!(outbox.take_max(2), vec![Event::Timeout { id: 4 }]);
        assert_eq!(wakes.load(Ordering::SeqCst), 3);
        // Drained: the next publish wakes once more.
        outbox.publish(&mut vec![Event::Closed]);
        assert_eq!(wakes.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn one_wake_per_batch() {
        let wakes = Arc::new(AtomicUsize::new(0));
        let outbox: Outbox<Event> = Outbox::new(Box::new(Count(wakes.clone())));
        outbox.publish(&mut vec![Event::Timeout { id: 1 }]);
        outbox.publish(&mut vec![Event::Timeout { id: 2 }]);
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        assert_eq!(outbox.take().len(), 2);
        outbox.publish(&mut vec![Event::Timeout { id: 3 }]);
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
        assert_eq!(outbox.take(), vec![Event::Timeout { id: 3 }]);
        assert!(outbox.take().is_empty());
    }
}
