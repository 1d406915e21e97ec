//! Counters written by exactly one thread (the host or an engine): writers use plain
//! load+store and never a locked read-modify-write on the hot path; readers may be on any
//! thread and see a value at most one batch old.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Bumps a counter that only the calling thread writes.
#[inline]
pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(by), Relaxed);
}
