//! The backlog: what the engine took from the host and has yet to hand to a socket, and the
//! room each entry holds under the host's high-water marks until then.
//!
//! A request that settles before its first copy is written (aborted, timed out, refused) gives
//! its room back at once: during an outage, requests that are already dead must not hold the
//! marks against live ones until a server comes. Its copy is dropped when the backlog gets to
//! it, or sooner when such copies are half the backlog, so they take at most as much memory as
//! the live entries.

use super::*;

impl ClientEngine {
    pub(super) fn admit(&mut self, batch: Vec<ClientOut>) {
        // The host stamps no time: deadlines run from here. Batches leave the host at the end
        // of its tick and are taken on every wake-up, so the error is that delay (micro-seconds).
        let now = Instant::now();
        let stamp = Some(now.into_std());
        for mut out in batch {
            out.queued_at = stamp;
            match &out.request {
                None => {
                    self.backlog_sends += 1;
                    self.backlog_send_bytes += out.body.len() as u64;
                }
                Some(r) => {
                    if !self.requests.admit(r, &out.body, now) {
                        // Cancelled before it arrived: never written, its room back now.
                        self.shared.release(1, out.body.len() as u64);
                        bump(&self.counters.engine.expired_unsent, 1);
                        continue;
                    }
                }
            }
            self.backlog.push_back(out);
        }
    }

    /// `whenFull: "drop-oldest"`: the host admits up to twice the marks; the oldest sends go
    /// until the backlog is within them again.
    pub(super) fn trim_backlog(&mut self) {
        let (mark, mark_bytes) = (
            self.options.send_high_water_mark,
            self.options.send_high_water_bytes as u64,
        );
        let mut dropped = 0u64;
        let mut dropped_bytes = 0u64;
        while self.backlog_sends > mark
            || (self.backlog_sends > 1 && self.backlog_send_bytes > mark_bytes)
        {
            let Some(at) = self.backlog.iter().position(|o| o.request.is_none()) else {
                break;
            };
            let out = self.backlog.remove(at).expect("position is in range");
            let len = out.body.len() as u64;
            self.backlog_sends -= 1;
            self.backlog_send_bytes -= len;
            dropped += 1;
            dropped_bytes += len;
        }
        if dropped > 0 {
            self.shared.release(dropped, dropped_bytes);
            self.drop_sends(DropReason::Overflow, dropped);
        }
    }

    /// `p` settled: if its first copy was never written, that copy's room goes back now and,
    /// when `expired` (aborted or timed out rather than refused), it counts as expired unsent.
    pub(super) fn give_back_room(&mut self, p: &Pending, expired: bool) {
        let Some(len) = p.room else {
            return;
        };
        self.shared.release(1, len);
        if expired {
            bump(&self.counters.engine.expired_unsent, 1);
        }
        if self.requests.settled_unsent() * 2 > self.backlog.len() {
            self.compact_backlog();
        }
    }

    /// Drops the copies of settled requests from the backlog: first copies whose room went
    /// back when they settled, and retries of requests no longer pending.
    fn compact_backlog(&mut self) {
        let requests = &mut self.requests;
        self.backlog.retain(|o| match &o.request {
            None => true,
            // A pending request's retry waits for its turn.
            Some(r) if requests.contains(r.id) => true,
            // A copy still holding room is one `flush` must count; it stays for `flush`.
            Some(r) => requests.holds_room(r.id, o.counted),
        });
    }
}
