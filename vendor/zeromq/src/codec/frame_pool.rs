//! zerowire patch: memory for large frames, kept warm between messages.
//!
//! A frame body of [`WHOLE_FRAME_MIN`] bytes or more is read into a buffer of its own
//! (`ZmqFramedRead`), and that buffer is the frame's `Bytes`. Each one used to be a fresh
//! allocation: on a flood of 1 MiB messages the reader faulted every page of every message in,
//! and the free, wherever the last reference went, trimmed or unmapped the pages again
//! (bench/NOTES.md, "Per-message costs on the read path"). A dropped frame's buffer now waits
//! here for the next large frame, process-wide, up to [`POOL_BUFFERS`] buffers and
//! [`POOL_BYTES`] of written pages, and only while large frames are being read
//! ([`KEEP_WHILE_READING`]); otherwise it is freed as before. `release_frame_pool` empties it
//! (after a burst, when the owner gives memory back).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Frame bodies from this size up are read whole into a pooled buffer.
pub(crate) const WHOLE_FRAME_MIN: usize = 128 * 1024;
const POOL_BUFFERS: usize = 32;
const POOL_BYTES: usize = 32 << 20;

struct Kept {
    buf: Vec<u8>,
    touched: usize,
}

/// A buffer dropped this long after the last large frame was read is freed, not kept: once
/// large frames stop, the pool stops filling (their memory is often let go later, at a
/// garbage collection of the JS objects that held it).
const KEEP_WHILE_READING: Duration = Duration::from_secs(1);

/// Where dropped frame buffers wait. One per process ([`POOL`]); tests make their own.
pub(crate) struct FramePool {
    state: Mutex<State>,
    keep_while_reading: Duration,
}

struct State {
    kept: Vec<Kept>,
    /// When a large frame was last read.
    last_read: Option<Instant>,
}

pub(crate) static POOL: FramePool = FramePool::new(KEEP_WHILE_READING);

impl FramePool {
    pub(crate) const fn new(keep_while_reading: Duration) -> Self {
        FramePool {
            state: Mutex::new(State {
                kept: Vec::new(),
                last_read: None,
            }),
            keep_while_reading,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty buffer for a frame body of `len` bytes: the smallest kept one with room, or
    /// new (with room rounded up to a power of two, so that it fits frames a little longer
    /// later).
    pub(crate) fn frame_buf(&'static self, len: usize) -> FrameBuf {
        let mut state = self.lock();
        state.last_read = Some(Instant::now());
        let kept = &mut state.kept;
        let best = (0..kept.len())
            .filter(|&i| kept[i].buf.capacity() >= len)
            .min_by_key(|&i| kept[i].buf.capacity());
        let (buf, touched) = match best {
            Some(i) => {
                let Kept { buf, touched } = kept.swap_remove(i);
                (buf, touched)
            }
            None => (
                Vec::with_capacity(len.checked_next_power_of_two().unwrap_or(len)),
                0,
            ),
        };
        FrameBuf {
            buf,
            touched,
            pool: self,
        }
    }

    fn keep(&self, mut buf: Vec<u8>, touched: usize) {
        let mut state = self.lock();
        let reading = state
            .last_read
            .is_some_and(|t| t.elapsed() < self.keep_while_reading);
        let held: usize = state.kept.iter().map(|k| k.touched).sum();
        if reading && state.kept.len() < POOL_BUFFERS && held + touched <= POOL_BYTES {
            buf.clear();
            state.kept.push(Kept { buf, touched });
            return;
        }
        // Freed outside the lock: a large free may unmap pages.
        drop(state);
        drop(buf);
    }

    fn release(&self) {
        let kept = std::mem::take(&mut self.lock().kept);
        drop(kept);
    }

    #[cfg(test)]
    pub(crate) fn held(&self) -> (usize, usize) {
        let state = self.lock();
        (state.kept.len(), state.kept.iter().map(|k| k.touched).sum())
    }
}

/// Frees the buffers the pool keeps (the process's memory use then drops by up to
/// [`POOL_BYTES`]; the next large frames are read into fresh memory again).
pub fn release_frame_pool() {
    POOL.release();
}

/// A frame body's memory; back to its pool when the last `Bytes` of it is dropped.
pub(crate) struct FrameBuf {
    buf: Vec<u8>,
    /// The most bytes ever written into `buf`: the pages it keeps resident.
    touched: usize,
    pool: &'static FramePool,
}

impl FrameBuf {
    pub(crate) fn vec(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

impl AsRef<[u8]> for FrameBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for FrameBuf {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.capacity() >= WHOLE_FRAME_MIN {
            let touched = self.touched.max(buf.len());
            self.pool.keep(buf, touched);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_warm_and_the_pool_stays_bounded() {
        static POOL: FramePool = FramePool::new(Duration::from_secs(3600));
        let mut first = POOL.frame_buf(WHOLE_FRAME_MIN + 1);
        assert_eq!(first.vec().capacity(), 2 * WHOLE_FRAME_MIN);
        first.vec().resize(WHOLE_FRAME_MIN + 1, 7);
        let at = first.vec().as_ptr();
        drop(first);
        assert_eq!(POOL.held(), (1, WHOLE_FRAME_MIN + 1));

        // The same memory for the next frame that fits, emptied.
        let mut again = POOL.frame_buf(WHOLE_FRAME_MIN);
        assert_eq!(again.vec().as_ptr(), at);
        assert!(again.vec().is_empty());
        assert_eq!(POOL.held(), (0, 0));
        drop(again);
        // Too long for it: fresh memory, and the kept one stays.
        let mut longer = POOL.frame_buf(4 * WHOLE_FRAME_MIN);
        assert_ne!(longer.vec().as_ptr(), at);
        assert_eq!(POOL.held(), (1, WHOLE_FRAME_MIN + 1));
        drop(longer);

        // Bounded by written pages: buffers past POOL_BYTES are freed, not kept.
        POOL.release();
        let big = POOL_BYTES / 4;
        let bufs: Vec<FrameBuf> = (0..6)
            .map(|_| {
                let mut b = POOL.frame_buf(big);
                b.vec().resize(big, 1);
                b
            })
            .collect();
        drop(bufs);
        assert_eq!(POOL.held(), (4, POOL_BYTES));
        // And by count.
        POOL.release();
        let bufs: Vec<FrameBuf> = (0..POOL_BUFFERS + 3)
            .map(|_| POOL.frame_buf(WHOLE_FRAME_MIN))
            .collect();
        drop(bufs);
        assert_eq!(POOL.held().0, POOL_BUFFERS);
        POOL.release();
        assert_eq!(POOL.held(), (0, 0));
    }

    #[test]
    fn buffers_dropped_once_large_frames_stopped_are_freed() {
        static POOL: FramePool = FramePool::new(Duration::from_millis(50));
        let early = POOL.frame_buf(WHOLE_FRAME_MIN);
        drop(early);
        assert_eq!(POOL.held().0, 1, "kept while large frames are read");
        let late = POOL.frame_buf(WHOLE_FRAME_MIN);
        std::thread::sleep(Duration::from_millis(100));
        drop(late);
        assert_eq!(POOL.held().0, 0, "freed: no large frame read for a while");
    }
}
