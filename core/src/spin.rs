//! Polling instead of parking, right after request traffic, rationed across the process, and
//! only while it pays.
//!
//! A wake-up across cores is costly on small VMs (bench/NOTES.md, "Poll 200 µs after request
//! traffic") and a request round trip crosses threads four times; a reply (or the host's next
//! request) usually comes sooner than a parked engine would wake for it, so
//! an engine that just wrote a request or delivered one keeps polling for [`SPIN`]. Only as many
//! engines as there are spare cores may do so at once: more would starve the JS threads they
//! are waiting for. On a machine whose cores are busy anyway, polling takes turns with the
//! threads it waits for and makes the wait longer: each engine times its waits in both modes
//! and polls only while polling's are the shorter ([`Spin`]).

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

/// Episodes in a row in the preferred mode before one tries the other, so the choice follows
/// the machine: rare enough not to show at p99 (under 1 % of episodes, per engine).
const EXPLORE_EVERY: u32 = 128;
/// Longer gaps are counted as this: past the polling window the mode made no difference to
/// how the episode ended, only to what it cost.
const GAP_CAP: std::time::Duration = std::time::Duration::from_micros(1000);

/// An engine's polling: until when it polls, its claim on a slot, and whether polling pays.
///
/// Polling pays when the threads it waits for have cores of their own; on a busy machine (other
/// processes, more threads than cores) it takes turns with them and makes the wait longer than
/// a wake-up would (bench/NOTES.md, "Polling on a busy machine"). So each wait after request
/// traffic (an episode: from one request-traffic event to the next, or to the reply on the
/// server) is timed, in the mode it ran in, and the engine prefers the mode whose recent
/// episodes were shorter, trying the other one now and then.
#[derive(Default)]
pub(crate) struct Spin {
    until: Option<tokio::time::Instant>,
    slot: SpinSlot,
    /// The open episode: when it started and whether it polls.
    episode: Option<(tokio::time::Instant, bool)>,
    /// Moving averages of episode lengths, µs, polling and parked (0: no sample yet).
    polled_us: f64,
    parked_us: f64,
    /// Episodes since the other mode was last tried.
    since_explore: u32,
}

impl Spin {
    /// Request traffic at `now`: a reply, or the host's next request, is near.
    pub(crate) fn after_traffic(&mut self, now: tokio::time::Instant) {
        self.settled(now);
        let prefer_poll = self.parked_us == 0.0 || self.polled_us <= self.parked_us;
        self.since_explore += 1;
        let explore = self.since_explore >= EXPLORE_EVERY;
        if explore {
            self.since_explore = 0;
        }
        let poll = prefer_poll != explore;
        self.episode = Some((now, poll));
        self.until = poll.then_some(now + SPIN);
    }

    /// What the last request traffic waited for has come (the server's host replied): the
    /// episode's length counts towards its mode.
    pub(crate) fn settled(&mut self, now: tokio::time::Instant) {
        let Some((start, polled)) = self.episode.take() else {
            return;
        };
        let gap = now.saturating_duration_since(start).min(GAP_CAP);
        let us = gap.as_secs_f64() * 1e6;
        let avg = if polled {
            &mut self.polled_us
        } else {
            &mut self.parked_us
        };
        *avg = if *avg == 0.0 {
            us
        } else {
            *avg + (us - *avg) / 8.0
        };
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
            if want {
                // No slot: this episode waits parked after all, and counts as such.
                if let Some((_, polled)) = self.episode.as_mut() {
                    *polled = false;
                }
            }
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

    /// Runs `n` episodes of `poll_us` when polling and `park_us` when parked; returns how many
    /// polled.
    fn episodes(spin: &mut Spin, start: &mut Instant, n: u32, poll_us: u64, park_us: u64) -> u32 {
        let mut polled = 0;
        for _ in 0..n {
            spin.after_traffic(*start);
            let poll = spin.until.is_some();
            polled += poll as u32;
            *start += Duration::from_micros(if poll { poll_us } else { park_us });
        }
        spin.settled(*start);
        polled
    }

    #[test]
    fn polls_while_it_pays_and_parks_once_parking_is_faster() {
        let mut spin = Spin::default();
        let mut now = Instant::now();
        // Replies come sooner when polling (cores to spare): it keeps polling, but for the
        // rare try of the other mode.
        let polled = episodes(&mut spin, &mut now, 1024, 40, 120);
        assert!(polled >= 1024 - 1024 / EXPLORE_EVERY - 1, "polled {polled}");
        // The machine gets busy: polling makes the wait longer than a wake-up would.
        episodes(&mut spin, &mut now, 1024, 90, 45);
        let polled = episodes(&mut spin, &mut now, 1024, 90, 45);
        assert!(polled <= 1024 / EXPLORE_EVERY + 1, "polled {polled}");
        // And back.
        episodes(&mut spin, &mut now, 1024, 40, 120);
        let polled = episodes(&mut spin, &mut now, 1024, 40, 120);
        assert!(polled >= 1024 - 1024 / EXPLORE_EVERY - 1, "polled {polled}");
    }

    #[test]
    fn long_gaps_count_as_the_cap() {
        let mut spin = Spin::default();
        let now = Instant::now();
        spin.after_traffic(now);
        spin.settled(now + Duration::from_secs(10));
        assert_eq!(spin.polled_us, GAP_CAP.as_micros() as f64);
    }
}
