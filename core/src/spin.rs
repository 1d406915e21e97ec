//! Polling instead of parking, right after request traffic, rationed across the process.
//!
//! A wake-up across cores is costly on small VMs (bench/NOTES.md, "Poll 200 µs after request
//! traffic") and a request round trip crosses threads four times; a reply (or the host's next
//! request) usually comes sooner than a parked engine would wake for it, so
//! an engine that just wrote a request or delivered one keeps polling for [`SPIN`]. Only as many
//! engines as there are spare cores may do so at once: more would starve the JS threads they
//! are waiting for.
//!
//! The other side of sharing a core: an engine that has worked for [`STRETCH`] without a rest
//! offers its core once. Engines run below the JS thread's priority, but the scheduler weighs
//! priority only at a wake-up's check or at its tick (4 ms at 250 Hz): a JS thread woken (for
//! its timers, say) while its engine is mid-stretch on that core can wait out the tick, which
//! shows as event-loop delay. A yield with nothing else runnable returns at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long an engine keeps polling after request traffic before it parks.
pub(crate) const SPIN: Duration = Duration::from_micros(200);

/// How long an engine works without a rest before it offers its core (bench/NOTES.md,
/// "Engines offer their core after a long stretch").
pub(crate) const STRETCH: Duration = Duration::from_micros(200);

/// A wait at least this long counts as a rest: the engine slept, or others had the core.
const REST: Duration = Duration::from_micros(50);

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

/// An engine's polling (until when it polls, and its claim on a slot) and its current stretch
/// of work.
#[derive(Default)]
pub(crate) struct Spin {
    until: Option<tokio::time::Instant>,
    slot: SpinSlot,
    /// When the engine last rested (or offered its core); `None` before its first wait.
    busy_since: Option<tokio::time::Instant>,
}

impl Spin {
    /// Before a wait at `now`: true when the engine has worked for [`STRETCH`] without a rest
    /// and should offer its core now (the stretch then starts again).
    pub(crate) fn stretch_done(&mut self, now: tokio::time::Instant) -> bool {
        let since = *self.busy_since.get_or_insert(now);
        let done = now.saturating_duration_since(since) >= STRETCH;
        if done {
            self.busy_since = Some(now);
        }
        done
    }

    /// After a wait from `began` to `now`: a long wait, or a polling turn (which gave the core
    /// away), was a rest.
    pub(crate) fn waited(
        &mut self,
        began: tokio::time::Instant,
        now: tokio::time::Instant,
        polled: bool,
    ) {
        if polled || now.saturating_duration_since(began) >= REST {
            self.busy_since = Some(now);
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn a_stretch_of_work_without_rest_offers_the_core_once_per_stretch() {
        let mut spin = Spin::default();
        let t0 = Instant::now();
        // Waits that return at once (more work was handed over) are no rest.
        let mut offered = Vec::new();
        for step in 0..=100u32 {
            let now = t0 + 10 * step * US;
            if spin.stretch_done(now) {
                offered.push(step * 10);
            }
            spin.waited(now, now + 2 * US, false);
        }
        assert_eq!(offered, [200, 400, 600, 800, 1000]);
    }

    #[test]
    fn a_long_wait_or_a_polling_turn_is_a_rest() {
        let mut spin = Spin::default();
        let t0 = Instant::now();
        assert!(!spin.stretch_done(t0));
        // 150 µs of work, then a wait of 60 µs: the stretch starts again after it.
        assert!(!spin.stretch_done(t0 + 150 * US));
        spin.waited(t0 + 150 * US, t0 + 210 * US, false);
        assert!(!spin.stretch_done(t0 + 400 * US));
        assert!(spin.stretch_done(t0 + 410 * US));
        // A polling turn yields the core itself: it is a rest however short.
        spin.waited(t0 + 500 * US, t0 + 501 * US, true);
        assert!(!spin.stretch_done(t0 + 700 * US));
        assert!(spin.stretch_done(t0 + 701 * US));
    }
}
