//! Polling instead of parking, right after request traffic, rationed across the process.
//!
//! A wake-up across cores is costly on small VMs (bench/NOTES.md, "Poll 200 µs after request
//! traffic") and a request round trip crosses threads four times; a reply (or the host's next
//! request) usually comes sooner than a parked engine would wake for it, so
//! an engine that just wrote a request or delivered one keeps polling for [`SPIN`]. Only as many
//! engines as there are spare cores may do so at once: more would starve the JS threads they
//! are waiting for.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long an engine keeps polling after request traffic before it parks.
pub(crate) const SPIN: Duration = Duration::from_micros(200);

/// Engines polling right now, process-wide; at most one fewer than the cores (and one).
static SPINNERS: AtomicUsize = AtomicUsize::new(0);

fn max_spinners() -> usize {
    static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get().saturating_sub(1).max(1))
            .unwrap_or(1)
    })
}

/// One engine's claim on a spinning slot.
#[derive(Default)]
pub(crate) struct SpinSlot {
    held: bool,
}

impl SpinSlot {
    pub(crate) fn acquire(&mut self) -> bool {
        if !self.held {
            self.held = SPINNERS
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max_spinners()).then_some(n + 1)
                })
                .is_ok();
        }
        self.held
    }

    pub(crate) fn release(&mut self) {
        if std::mem::take(&mut self.held) {
            SPINNERS.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for SpinSlot {
    fn drop(&mut self) {
        self.release();
    }
}

/// One turn of polling: completes at once (after giving the core away) while spinning, never
/// otherwise. Used as a branch of the engines' select.
pub(crate) async fn turn(spinning: bool) {
    if spinning {
        // Give the core to a runnable thread (the JS thread, a local server) if there is one;
        // with two cores that is often who we are waiting for.
        std::thread::yield_now();
        tokio::task::yield_now().await
    } else {
        std::future::pending().await
    }
}

/// An engine's polling: until when it polls, and its claim on a slot.
#[derive(Default)]
pub(crate) struct Spin {
    until: Option<tokio::time::Instant>,
    slot: SpinSlot,
}

impl Spin {
    /// Request traffic at `now`: a reply, or the host's next request, is near.
    pub(crate) fn after_traffic(&mut self, now: tokio::time::Instant) {
        self.until = Some(now + SPIN);
    }

    /// Whether the last request traffic is recent enough to poll for.
    pub(crate) fn wanted(&self) -> bool {
        self.until.is_some_and(|t| t > tokio::time::Instant::now())
    }

    /// Takes a slot if `want` and one is free; otherwise gives up polling until the next
    /// request traffic. Returns whether the engine polls.
    pub(crate) fn claim(&mut self, want: bool) -> bool {
        let spinning = want && self.slot.acquire();
        if !spinning {
            self.until = None;
            self.slot.release();
        }
        spinning
    }
}
