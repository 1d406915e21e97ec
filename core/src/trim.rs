//! Giving memory back after a burst.
//!
//! A burst of sends (or of received messages) passes through the allocator: the queue holds up
//! to the high-water marks, then it all is freed, and glibc keeps most of it in its arenas.
//! After a flood a client kept far more RSS than zeromq.js's (bench/NOTES.md, "Client RSS stays
//! high after a burst"). So once an engine has let go of [`AFTER`] bytes and then been quiet for [`QUIET`],
//! it empties the socket library's pool of large-frame buffers and asks the host to return free
//! memory to the OS (`hooks`; the binding calls glibc's `malloc_trim`).
//! Only when quiet: trimming during a flood would hand back pages that are faulted in again
//! at once, and it holds the allocator's locks while it walks the heap.

use std::time::Duration;

use tokio::time::Instant;

/// Bytes released since the last trim before one is considered.
pub const AFTER: u64 = 16 << 20;
/// How long no large release may have happened before the trim.
pub const QUIET: Duration = Duration::from_secs(1);

/// One engine's count of what it let go since its last trim.
#[derive(Default)]
pub(crate) struct Trim {
    released: u64,
    due: Option<Instant>,
}

impl Trim {
    /// `bytes` were just freed (written, or handed to the host): postpones a due trim.
    pub(crate) fn released(&mut self, bytes: u64, now: Instant) {
        if bytes == 0 {
            return;
        }
        self.released += bytes;
        if self.released >= AFTER {
            self.due = Some(now + QUIET);
        }
    }

    /// When the engine should wake to trim, if it should.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.due
    }

    /// Trims if one is due and the engine is `idle` (asked only then); true if it did.
    pub(crate) fn run_if_due(&mut self, now: Instant, idle: impl FnOnce() -> bool) -> bool {
        match self.due {
            Some(t) if t <= now && idle() => {
                *self = Trim::default();
                zeromq::release_frame_pool();
                crate::hooks::return_free_memory();
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_after_a_burst_and_a_quiet_second() {
        let mut trim = Trim::default();
        let t0 = Instant::now();
        trim.released(AFTER / 2, t0);
        assert_eq!(trim.deadline(), None, "not a burst yet");
        trim.released(AFTER / 2, t0);
        assert_eq!(trim.deadline(), Some(t0 + QUIET));
        // More traffic pushes it back.
        let t1 = t0 + QUIET / 2;
        trim.released(1024, t1);
        assert_eq!(trim.deadline(), Some(t1 + QUIET));
        assert!(
            !trim.run_if_due(t0 + QUIET, || true),
            "not quiet for a second yet"
        );
        assert!(
            !trim.run_if_due(t1 + QUIET, || false),
            "something is still queued"
        );
        assert!(trim.run_if_due(t1 + QUIET, || true));
        assert_eq!(trim.deadline(), None);
        assert!(!trim.run_if_due(t1 + 2 * QUIET, || true), "once per burst");
    }
}
