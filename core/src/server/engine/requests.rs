//! Requests waiting for the host's answer: reply tokens, their bound and their expiry.

use super::*;

impl ServerEngine {
    /// A fresh reply token (never 0, never one still pending).
    pub(super) fn new_token(&mut self) -> u32 {
        loop {
            self.next_token = self.next_token.wrapping_add(1).max(1);
            if !self.tokens.contains_key(&self.next_token) {
                return self.next_token;
            }
        }
    }

    /// Forgets requests unanswered past `pending_request_timeout`, oldest first.
    pub(super) fn expire_requests(&mut self, now: Instant) {
        while let Some(&(read, token)) = self.token_order.front() {
            if now.saturating_duration_since(read) < self.pending_request_timeout
                && self.token_order.len() <= 2 * self.max_pending_requests
            {
                break;
            }
            self.token_order.pop_front();
            // Answered, or gone with its client: nothing left to expire.
            let expired = self
                .tokens
                .get(&token)
                .is_some_and(|r| Instant::from_std(r.at) == read);
            if expired && now.saturating_duration_since(read) >= self.pending_request_timeout {
                if let Some(r) = self.tokens.remove(&token) {
                    if let Some(peer) = self.peers.get_mut(&r.client) {
                        peer.pending -= 1;
                    }
                    bump(&self.counters.requests_expired, 1);
                }
            }
        }
        self.counters
            .pending_requests
            .store(self.tokens.len() as u64, Ordering::Relaxed);
    }
}
