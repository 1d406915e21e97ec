//! Polling instead of parking, right after request traffic, rationed across the process.
//!
//! A wake-up across cores is costly on small VMs (bench/NOTES.md, "Poll 200 µs after request
//! traffic") and a request round trip crosses threads four times; a reply (or the host's next
//! request) usually comes sooner than a parked engine would wake for it, so
//! an engine that just wrote a request or delivered one keeps polling for [`SPIN`]. Only as many
//! engines as there are spare cores may do so at once: more would starve the JS threads they
//! are waiting for.
//!
//! The other side of sharing a core: an engine that has run on its core for [`STRETCH`]
//! without a rest offers it once. Engines run below the JS thread's priority, but the
//! scheduler weighs priority only at a wake-up's check or at its tick (4 ms at 250 Hz): a JS
//! thread woken (for its timers, say) while its engine is mid-stretch on that core can wait
//! out the tick, which shows as event-loop delay. A stretch counts the engine's own CPU time:
//! one where other threads had the core for a good part was a rest already, and offering the
//! core again then would only hand it to whoever is busiest (another process, say) and starve
//! the engine. The exception is an engine whose own host has events waiting: its JS thread
//! has work, and under a flood that turn is what keeps the pipeline moving. A yield with
//! nothing else runnable returns at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long an engine keeps polling after request traffic before it parks.
pub(crate) const SPIN: Duration = Duration::from_micros(200);

/// How long an engine runs without a rest before it offers its core (bench/NOTES.md,
/// "Engines offer their core after a long stretch"). The engine's CPU clock is read only once
/// a stretch has lasted this long, so the first offer after a rest comes after one to two
/// stretches.
pub(crate) const STRETCH: Duration = Duration::from_micros(100);

/// A wait at least this long counts as a rest: the engine slept, or others had the core.
const REST: Duration = Duration::from_micros(50);

/// The calling thread's CPU time, where the system has such a clock.
pub(crate) fn thread_cpu() -> Option<Duration> {
    #[cfg(unix)]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Some(Duration::new(
            u64::try_from(t.tv_sec).ok()?,
            u32::try_from(t.tv_nsec).ok()?,
        ))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// An engine's current stretch of work.
#[derive(Clone, Copy, Debug)]
enum Stretch {
    /// Began at this time (a rest ended); its CPU clock not read yet.
    Since(tokio::time::Instant),
    /// Began at `wall` with the engine's CPU clock at `cpu`.
    Measured {
        wall: tokio::time::Instant,
        cpu: Duration,
    },
}

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
    /// Since when the engine has worked without a rest; `None` before its first wait.
    stretch: Option<Stretch>,
}

impl Spin {
    /// Before a wait at `now`: true when the engine should offer its core now, having run on
    /// it for nearly all of a stretch of at least [`STRETCH`] (`cpu` reads its CPU clock; it
    /// is called only once the stretch is that long). A new stretch begins then either way.
    pub(crate) fn stretch_done(
        &mut self,
        now: tokio::time::Instant,
        cpu: impl FnOnce() -> Option<Duration>,
        host_behind: impl FnOnce() -> bool,
    ) -> bool {
        let (began, cpu_then) = match self.stretch {
            None => {
                self.stretch = Some(Stretch::Since(now));
                return false;
            }
            Some(Stretch::Since(wall)) => (wall, None),
            Some(Stretch::Measured { wall, cpu }) => (wall, Some(cpu)),
        };
        let wall = now.saturating_duration_since(began);
        if wall < STRETCH {
            return false;
        }
        let Some(cpu_now) = cpu() else {
            self.stretch = Some(Stretch::Since(now));
            return false;
        };
        self.stretch = Some(Stretch::Measured {
            wall: now,
            cpu: cpu_now,
        });
        // On its core for at least three quarters of it (otherwise others had it meanwhile), or
        // its own host has events waiting: its JS thread is who most needs a turn.
        cpu_then.is_some_and(|then| cpu_now.saturating_sub(then) * 4 >= wall * 3) || host_behind()
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
            self.stretch = Some(Stretch::Since(now));
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

    /// Steps of 10 µs of wall time, each a wait that returned at once (no rest), the engine's
    /// CPU clock advancing by `share` of each step: the steps (in µs) where it offered its core.
    fn offers(share: f64, steps: u32) -> Vec<u32> {
        offers_with(share, steps, false)
    }

    fn offers_with(share: f64, steps: u32, host_behind: bool) -> Vec<u32> {
        let mut spin = Spin::default();
        let t0 = Instant::now();
        let mut offered = Vec::new();
        for step in 0..=steps {
            let now = t0 + 10 * step * US;
            let cpu = Duration::from_secs_f64(10e-6 * share * f64::from(step));
            if spin.stretch_done(now, || Some(cpu), || host_behind) {
                offered.push(step * 10);
            }
            spin.waited(now, now + 2 * US, false);
        }
        offered
    }

    #[test]
    fn an_engine_running_without_rest_offers_its_core_once_per_stretch() {
        // The clock is first read 100 µs into the stretch; from then on every 100 µs.
        assert_eq!(offers(1.0, 50), [200, 300, 400, 500]);
        assert_eq!(offers(0.8, 50), [200, 300, 400, 500]);
    }

    #[test]
    fn an_engine_that_others_preempted_does_not_offer_its_core() {
        // On its core for half the time: the other half was someone else's turn.
        assert_eq!(offers(0.5, 100), Vec::<u32>::new());
    }

    #[test]
    fn an_engine_whose_host_has_events_waiting_offers_its_core_however_preempted() {
        assert_eq!(offers_with(0.5, 50, true), [100, 200, 300, 400, 500]);
    }

    #[test]
    fn without_a_cpu_clock_it_never_offers() {
        let mut spin = Spin::default();
        let t0 = Instant::now();
        for step in 0..=100u32 {
            assert!(!spin.stretch_done(t0 + 10 * step * US, || None, || false));
        }
    }

    #[test]
    fn a_long_wait_or_a_polling_turn_is_a_rest() {
        let mut spin = Spin::default();
        let t0 = Instant::now();
        let cpu = |us: u64| move || Some(Duration::from_micros(us));
        assert!(!spin.stretch_done(t0, cpu(0), || false));
        assert!(!spin.stretch_done(t0 + 100 * US, cpu(100), || false));
        assert!(spin.stretch_done(t0 + 200 * US, cpu(200), || false));
        // A wait of 60 µs: the stretch starts again after it, its clock not read yet.
        spin.waited(t0 + 200 * US, t0 + 260 * US, false);
        assert!(!spin.stretch_done(t0 + 360 * US, cpu(300), || false));
        assert!(spin.stretch_done(t0 + 460 * US, cpu(400), || false));
        // A polling turn yields the core itself: it is a rest however short.
        spin.waited(t0 + 460 * US, t0 + 461 * US, true);
        assert!(!spin.stretch_done(t0 + 561 * US, cpu(500), || false));
        assert!(spin.stretch_done(t0 + 661 * US, cpu(600), || false));
    }
}
