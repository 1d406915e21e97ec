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
    /// The bytes of its first copy while that copy waits in the backlog, holding room under
    /// the host's marks; `None` once it is written (retries never hold room).
    pub room: Option<u64>,
    retry: Option<Box<Retry>>,
}

#[derive(Default)]
pub(super) struct Requests {
    /// Pending requests by id.
    pending: HashMap<u32, Pending>,
    /// Cancels that overtook their request (the control channel is separate from the queue).
    cancelled_early: HashSet<u32>,
    /// Requests that settled (aborted, timed out, refused) while their first copy still waited
    /// in the backlog: its room was given back then, so the backlog drops the copy without
    /// counting it again.
    settled_unsent: HashSet<u32>,
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
                room: Some(body.len() as u64),
                retry,
            },
        );
        self.deadlines.push(Reverse((deadline, r.id)));
        true
    }

    /// The caller gave up on `id`: forget it (as `remove`), or remember to when it arrives.
    pub fn cancel(&mut self, id: u32) -> Option<Pending> {
        let p = self.remove(id);
        if p.is_none() {
            self.cancelled_early.insert(id);
        }
        p
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Pending> {
        self.pending.get_mut(&id)
    }

    /// Settles `id` (replied, timed out, reset, cancelled); `None` if it was not pending. When
    /// its `room` is `Some`, its first copy was never written: the caller gives that room back
    /// now and counts it as expired unsent, and [`Requests::holds_room`] says no when the
    /// backlog reaches the copy.
    pub fn remove(&mut self, id: u32) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        if p.room.is_some() {
            self.settled_unsent.insert(id);
        }
        Some(p)
    }

    /// Settles `id` on a reply: only if it was written. A reply to a request whose first copy
    /// still waits in the backlog answers nothing this client asked (`None`, counted late).
    pub fn remove_replied(&mut self, id: u32) -> Option<Pending> {
        if self.pending.get(&id)?.room.is_some() {
            return None;
        }
        self.remove(id)
    }

    /// Whether a backlog entry of request `id` holds room under the marks: a first copy
    /// (`counted`; retries never do) of a pending request, or of one that did not settle
    /// while unsent (whose room went back then). Forgets `id` once it is not pending.
    pub fn holds_room(&mut self, id: u32, counted: bool) -> bool {
        counted && (self.pending.contains_key(&id) || !self.settled_unsent.remove(&id))
    }

    /// Settled requests whose first copies still wait in the backlog.
    pub fn settled_unsent(&self) -> usize {
        self.settled_unsent.len()
    }

    /// Requests awaiting their reply.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn contains(&self, id: u32) -> bool {
        self.pending.contains_key(&id)
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
    /// copies' replies are counted as late. `None` when it has no attempts left; `Some(None)`
    /// when its first copy was never written: that copy still waits in the backlog and is
    /// the next attempt.
    pub fn again(&mut self, id: u32, now: Instant) -> Option<Option<ClientOut>> {
        let p = self.pending.get_mut(&id)?;
        let retry = p.retry.as_mut().filter(|r| r.left > 0)?;
        retry.left -= 1;
        p.deadline = now + retry.timeout;
        self.deadlines.push(Reverse((p.deadline, id)));
        if p.room.is_some() {
            return Some(None);
        }
        p.written_in = None;
        Some(Some(ClientOut {
            request: Some(Request {
                id,
                timeout: retry.timeout,
                retries: retry.left,
            }),
            body: retry.body.clone(),
            queued_at: Some(now.into_std()),
            counted: false,
        }))
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
        r.get_mut(1).unwrap().room = None;
        let again = r
            .again(1, later)
            .expect("one retry left")
            .expect("written before");
        assert_eq!(&again.body[..], b"a");
        assert_eq!(again.request.unwrap().retries, 0);
        // The old deadline is stale now; the new one is 30 ms on.
        assert_eq!(r.next_expired(later), None);
        assert_eq!(r.next_expired(later + Duration::from_millis(30)), Some(1));
        assert!(r.again(1, later).is_none(), "no attempts left");
    }

    #[test]
    fn a_request_settled_unsent_gives_its_room_back_once() {
        let mut r = Requests::default();
        let now = Instant::now();
        r.admit(&request(1, 10, 0), &Bytes::from_static(b"abc"), now);
        r.admit(&request(2, 10, 0), &Bytes::from_static(b"de"), now);
        r.get_mut(2).unwrap().room = None;
        // 1 never left the backlog: its 3 bytes are the caller's to give back, once.
        assert_eq!(r.cancel(1).and_then(|p| p.room), Some(3));
        assert_eq!(r.settled_unsent(), 1);
        assert!(!r.holds_room(1, true), "given back when it settled");
        assert!(r.holds_room(1, true), "forgotten after that");
        assert_eq!(r.settled_unsent(), 0);
        // 2 was written: its room went with the write.
        assert_eq!(r.remove(2).map(|p| p.room), Some(None));
        assert_eq!(r.settled_unsent(), 0);
        // A retry's copy never holds room.
        assert!(!r.holds_room(3, false));
    }

    #[test]
    fn a_retry_of_an_unsent_request_queues_no_second_copy() {
        let mut r = Requests::default();
        let now = Instant::now();
        r.admit(&request(1, 10, 2), &Bytes::from_static(b"a"), now);
        let later = now + Duration::from_millis(20);
        assert_eq!(r.next_expired(later), Some(1));
        assert!(
            matches!(r.again(1, later), Some(None)),
            "the first copy is still queued"
        );
        r.get_mut(1).unwrap().room = None;
        assert!(matches!(r.again(1, later), Some(Some(_))));
        assert!(r.again(1, later).is_none(), "two attempts were allowed");
    }

    #[test]
    fn a_reply_to_an_unwritten_request_settles_nothing() {
        let mut r = Requests::default();
        let now = Instant::now();
        r.admit(&request(1, 10, 0), &Bytes::new(), now);
        assert!(r.remove_replied(1).is_none());
        assert!(r.contains(1));
        r.get_mut(1).unwrap().room = None;
        assert!(r.remove_replied(1).is_some());
    }
}
