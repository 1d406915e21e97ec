//! Where the host encodes short messages: chunks of memory that messages are cut from, and
//! reused once the engine has written every message cut from them.
//!
//! A message is cut from the current chunk with `BytesMut::split`, which shares the chunk by
//! reference count: one allocation per chunk instead of one per message. Chunks the arena has
//! moved on from are kept (up to [`RETIRED_MAX`]) and reclaimed in place once the engine has
//! dropped their messages. Fresh chunks, freed on the engine thread and trimmed back to the OS
//! by malloc, were faulted in page by page on the JS thread: about a quarter of its CPU under a
//! 1 KiB flood (bench/NOTES.md). Reclaimed ones are warm.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::BytesMut;

/// Size of a chunk.
pub const CHUNK: usize = 64 * 1024;
/// Chunks kept for reuse at most: 16 MiB, a burst of 16 000 1 KiB messages.
pub const RETIRED_MAX: usize = 256;
/// What the arena shrinks back to once bursts stop: 1 MiB.
pub const RETIRED_KEEP: usize = 16;
/// How long after the last burst (a chunk needed while the oldest was still queued) the arena
/// starts giving chunks back, one per chunk used.
pub const SHRINK_AFTER: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Arena {
    current: BytesMut,
    /// Whether `current` is a chunk (the default is not).
    started: bool,
    /// Earlier chunks, oldest first; each still refers to its whole allocation.
    retired: VecDeque<BytesMut>,
    /// The last time a fresh chunk had to be allocated because the oldest was still queued.
    last_burst: Option<Instant>,
}

impl Arena {
    /// The current chunk, with room for at least `need` more bytes.
    pub fn room(&mut self, need: usize) -> &mut BytesMut {
        if self.current.capacity() < need {
            let next = self.next_chunk(need);
            let done = std::mem::replace(&mut self.current, next);
            // A chunk used up to its last byte has capacity 0 but still refers to its memory.
            if std::mem::replace(&mut self.started, true) {
                self.retired.push_back(done);
                if self.retired.len() > RETIRED_MAX {
                    self.retired.pop_front();
                }
            }
        }
        &mut self.current
    }

    fn next_chunk(&mut self, need: usize) -> BytesMut {
        let size = CHUNK.max(need);
        // The oldest chunk is usually free (its messages were written first). When it is still
        // held by queued messages (a peer that does not read), the newest may be free instead:
        // in a refused flood every message cut from it was dropped at once, and taking it keeps
        // the flood in the same memory. Two looks, not a scan: this runs on every chunk.
        let n = self.retired.len();
        let free = [0, n.saturating_sub(1)]
            .into_iter()
            .filter(|&i| i < n)
            .find(|&i| self.retired[i].try_reclaim(size));
        let Some(at) = free else {
            if !self.retired.is_empty() {
                self.last_burst = Some(Instant::now());
            }
            return BytesMut::with_capacity(size);
        };
        let chunk = self.retired.remove(at).expect("index is in range");
        let calm = self.last_burst.is_none_or(|t| t.elapsed() >= SHRINK_AFTER);
        if calm
            && self.retired.len() > RETIRED_KEEP
            && self
                .retired
                .front_mut()
                .is_some_and(|c| c.try_reclaim(size))
        {
            // Steady traffic well after the last burst: give one spare chunk back.
            self.retired.pop_front();
        }
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cuts `n` messages of `len` bytes, as the host does.
    fn cut(arena: &mut Arena, n: usize, len: usize) -> Vec<bytes::Bytes> {
        (0..n)
            .map(|i| {
                let chunk = arena.room(len);
                chunk.extend(std::iter::repeat_n(i as u8, len));
                chunk.split().freeze()
            })
            .collect()
    }

    #[test]
    fn written_chunks_are_reused_and_queued_ones_are_not() {
        let mut arena = Arena::default();
        let first = cut(&mut arena, 64, 1024); // exactly one chunk
        let base = first[0].as_ptr();
        assert!(first.iter().all(|b| b.len() == 1024));
        // The engine still holds the first chunk's messages: the next one is fresh.
        let second = cut(&mut arena, 64, 1024);
        assert_ne!(second[0].as_ptr(), base);
        drop(first); // written
        let third = cut(&mut arena, 64, 1024);
        assert_eq!(
            third[0].as_ptr(),
            base,
            "the written chunk was not reclaimed"
        );
        // What was cut from the reused chunk is what was written into it.
        assert!(third
            .iter()
            .enumerate()
            .all(|(i, b)| b.iter().all(|&x| x == i as u8)));
        // A message still alive keeps its chunk out of reuse.
        let (keep, second_base) = (second[10].clone(), second[0].as_ptr());
        drop(second);
        let fourth = cut(&mut arena, 64, 1024);
        assert_ne!(fourth[0].as_ptr(), second_base);
        assert!(keep.iter().all(|&x| x == 10));
    }

    #[test]
    fn a_refused_flood_behind_queued_messages_stays_in_the_same_chunks() {
        let mut arena = Arena::default();
        // Queued and never written (a peer that does not read): the oldest chunks stay held.
        let queued = cut(&mut arena, 4 * 64, 1024);
        // Then every message is refused: cut, and dropped at once.
        for _ in 0..1000 {
            drop(cut(&mut arena, 64, 1024));
        }
        // 64 000 refused messages went through the chunks already there, not a fresh one
        // per 64 (which would keep up to RETIRED_MAX of them).
        assert!(
            arena.retired.len() <= 6,
            "{} chunks kept",
            arena.retired.len()
        );
        assert!(queued.iter().enumerate().all(|(i, b)| b[0] == i as u8));
    }

    #[test]
    fn kept_chunks_are_bounded_and_shrink_after_bursts() {
        let mut arena = Arena::default();
        // A burst far larger than the bound, all of it queued.
        let burst = cut(&mut arena, (RETIRED_MAX + 50) * 64, 1024);
        assert!(arena.retired.len() <= RETIRED_MAX);
        drop(burst);
        // Right after the burst, steady traffic reuses chunks without giving any back.
        let kept = arena.retired.len();
        drop(cut(&mut arena, 20 * 64, 1024));
        assert!(
            arena.retired.len() >= kept - 1,
            "{} of {kept}",
            arena.retired.len()
        );
        // Once calm, each chunk used gives one back, down to RETIRED_KEEP.
        arena.last_burst = Some(Instant::now() - SHRINK_AFTER);
        for _ in 0..RETIRED_MAX {
            drop(cut(&mut arena, 64, 1024));
        }
        assert_eq!(arena.retired.len(), RETIRED_KEEP + 1);
    }
}
