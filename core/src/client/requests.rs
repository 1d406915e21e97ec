//! The client's pending requests: registered when the engine takes them (their deadlines run
//! from there, connected or not), each with the connection it was written on, its deadline in
//! one ordered heap, and what it may send again (Lazy Pirate).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use foldhash::HashMap;
use tokio::time::Instant;

use super::{ClientOut, Request};

/// A request the caller allowed to be sent again (idempotent).
struct Retry {
    left: u32,
    timeout: Duration,
    body: Bytes,
}

pub(super) struct Pending {
    deadline: Instant,
    /// The connection (epoch) it was written on; a request that went down with its
    /// connection is rejected (or retried) at once rather than left to time out.
    pub written_in: Option<u32>,
    /// The link's `written` count when it was written: its reply confirms that many.
    pub confirms: u64,
    /// When the engine took it: the round trip runs from there (retries included).
    pub started: Instant,
    retry: Option<Box<Retry>>,
}

#[derive(Default)]
pub(super) struct Requests {
    /// Pending requests by id.
    pending: HashMap<u32, Pending>,
    /// Cancels that overtook their request (the control channel is separate from the queue).
    cancelled_early: HashSet<u32>,
    /// Deadlines in order; entries whose request is gone are skipped lazily.
    deadlines: BinaryHeap<Reverse<(Instant, u32)>>,
}

impl Requests {
    /// Registers a request taken at `now`; false if it was cancelled before it arrived (it is
    /// then left unregistered, and dropped as expired when its turn to be written comes).
    pub fn admit(&mut self, r: &Request, body: &Bytes, now: Instant) -> bool {
        if self.cancelled_early.remove(&r.id) {
            return false;
        }
        let deadline = now + r.timeout;
        let retry = (r.retries > 0).then(|| {
            Box::new(Retry {
                left: r.retries,
                timeout: r.timeout,
                body: body.clone(),
            })
        });
        self.pending.insert(
            r.id,
            Pending {
                deadline,
                written_in: None,
                confirms: 0,
                started: now,
                retry,
            },
        );
        self.deadlines.push(Reverse((deadline, r.id)));
        true
    }

    /// The caller gave up on `id`: forget it, or remember to when it arrives.
    pub fn cancel(&mut self, id: u32) {
        if self.pending.remove(&id).is_none() {
            self.cancelled_early.insert(id);
        }
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Pending> {
        self.pending.get_mut(&id)
    }

    /// Settles `id` (replied, timed out, reset); `None` if it was not pending.
    pub fn remove(&mut self, id: u32) -> Option<Pending> {
        self.pending.remove(&id)
    }

    /// The next request whose deadline passed by `now`, if any.
    pub fn next_expired(&mut self, now: Instant) -> Option<u32> {
        while let Some(Reverse((deadline, id))) = self.deadlines.peek().copied() {
            if deadline > now {
                return None;
            }
            self.deadlines.pop();
            // A stale entry: the request settled, or a retry moved its deadline.
            if self
                .pending
                .get(&id)
                .is_some_and(|p| p.deadline == deadline)
            {
                return Some(id);
            }
        }
        None
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((t, _))| *t)
    }

    /// Every pending request.
    pub fn ids(&self) -> Vec<u32> {
        self.pending.keys().copied().collect()
    }

    /// The requests written on connection `epoch`.
    pub fn written_on(&self, epoch: u32) -> Vec<u32> {
        self.pending
            .iter()
            .filter(|(_, p)| p.written_in == Some(epoch))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Lazy Pirate: a retryable request's next attempt, with a fresh deadline, to go out
    /// before anything else. A reply to an earlier copy still settles it (same id); later
    /// copies' replies are counted as late. `None` when it has no attempts left.
    pub fn again(&mut self, id: u32, now: Instant) -> Option<ClientOut> {
        let p = self.pending.get_mut(&id)?;
        let retry = p.retry.as_mut().filter(|r| r.left > 0)?;
        retry.left -= 1;
        p.deadline = now + retry.timeout;
        p.written_in = None;
        self.deadlines.push(Reverse((p.deadline, id)));
        Some(ClientOut {
            request: Some(Request {
                id,
                timeout: retry.timeout,
                retries: retry.left,
            }),
            body: retry.body.clone(),
            queued_at: Some(now.into_std()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: u32, ms: u64, retries: u32) -> Request {
        Request {
            id,
            timeout: Duration::from_millis(ms),
            retries,
        }
    }

    #[test]
    fn a_cancel_that_overtakes_its_request_keeps_it_unregistered() {
        let mut r = Requests::default();
        let now = Instant::now();
        r.cancel(7);
        assert!(!r.admit(&request(7, 10, 0), &Bytes::new(), now));
        assert!(r.get_mut(7).is_none());
        assert_eq!(r.next_expired(now + Duration::from_secs(1)), None);
    }

    #[test]
    fn deadlines_in_order_and_a_retry_moves_its_own() {
        let mut r = Requests::default();
        let now = Instant::now();
        r.admit(&request(1, 30, 1), &Bytes::from_static(b"a"), now);
        r.admit(&request(2, 10, 0), &Bytes::new(), now);
        let later = now + Duration::from_millis(40);
        assert_eq!(r.next_expired(later), Some(2));
        r.remove(2);
        assert_eq!(r.next_expired(later), Some(1));
        let again = r.again(1, later).expect("one retry left");
        assert_eq!(&again.body[..], b"a");
        assert_eq!(again.request.unwrap().retries, 0);
        // The old deadline is stale now; the new one is 30 ms on.
        assert_eq!(r.next_expired(later), None);
        assert_eq!(r.next_expired(later + Duration::from_millis(30)), Some(1));
        assert!(r.again(1, later).is_none(), "no attempts left");
    }
}
