//! Sinks: a route whose messages are written somewhere by Rust (see [`crate::sqlite`]) instead of
//! being handed to JS. The server engine must never wait on a disk, so each sink has its own
//! writer thread fed by a bounded channel; the writer takes whatever has queued up since its
//! last write as one batch (one transaction), so batches grow exactly when the disk is the
//! bottleneck and a lone message is written at once.
//!
//! When the channel is full the engine keeps the rows it could not hand over and stops
//! reading its socket until the writer catches up: clients are then pushed back by ZeroMQ's
//! own flow control, and no row is dropped.

use std::collections::VecDeque;
use std::sync::atomic::{
    AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::{Sender, TrySendError};

use crate::error::Error;

/// Rows queued between the engine and one writer.
const CHANNEL_ROWS: usize = 16_384;
/// Rows written per batch at most, so one transaction stays short.
pub const MAX_BATCH: usize = 4096;

/// One message for a sink.
#[derive(Debug, Clone)]
pub struct Row {
    /// When the server read it, in milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    /// The sender's client id, as `server.clients()` shows it.
    pub client: Arc<str>,
    /// The message, exactly as it arrived.
    pub raw: Bytes,
    /// Its client session and seq, if its client numbers its sends: the writer stores each
    /// (session, seq) once, whatever replays bring.
    pub seq: Option<(u64, u64)>,
}

/// Counters of every sink of one server. Several writer threads add to them, hence fetch_add
/// (once per batch, not per row).
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// Rows committed.
    pub rows: AtomicU64,
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Rows lost because their batch failed (disk full, file removed, …).
    pub errors: AtomicU64,
}

/// Writes one batch; an `Err` loses the batch (counted in `errors`).
pub type WriteBatch = Box<dyn FnMut(&[Row]) -> Result<(), String> + Send>;

/// The engine's end of a sink: the channel, the rows waiting for room in it, the writer thread.
pub struct Sink {
    tx: Option<Sender<Row>>,
    /// Rows pushed so far, and how many of them the writer has finished with (in push order):
    /// a client's send to a sink is acked only once its row is done.
    pushed: u64,
    done: Arc<AtomicU64>,
    overflow: VecDeque<Row>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("overflow", &self.overflow.len())
            .finish_non_exhaustive()
    }
}

impl Sink {
    pub fn spawn(
        name: &str,
        counters: Arc<SinkCounters>,
        mut write: WriteBatch,
    ) -> Result<Sink, Error> {
        let (tx, rx) = crossbeam_channel::bounded::<Row>(CHANNEL_ROWS);
        let done = Arc::new(AtomicU64::new(0));
        let finished = done.clone();
        let thread = std::thread::Builder::new()
            .name(format!("zerowire-sink-{name}"))
            .spawn(move || {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                // Ends once the engine dropped its sender and every queued row was written.
                while let Ok(first) = rx.recv() {
                    batch.push(first);
                    batch.extend(rx.try_iter().take(MAX_BATCH - 1));
                    match write(&batch) {
                        Ok(()) => {
                            counters.rows.fetch_add(batch.len() as u64, Relaxed);
                            counters.batches.fetch_add(1, Relaxed);
                        }
                        Err(_) => {
                            counters.errors.fetch_add(batch.len() as u64, Relaxed);
                        }
                    }
                    finished.fetch_add(batch.len() as u64, Release);
                    batch.clear();
                }
            })
            .map_err(|e| Error::Spawn(e.to_string()))?;
        Ok(Sink {
            tx: Some(tx),
            pushed: 0,
            done,
            overflow: VecDeque::new(),
            thread: Some(thread),
        })
    }

    /// Engine side: never waits. A row with no room goes to the overflow (see [`Sink::backed_up`]).
    pub fn push(&mut self, row: Row) {
        self.pushed += 1;
        if !self.overflow.is_empty() {
            self.overflow.push_back(row);
            self.retry();
            return;
        }
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(row)) = tx.try_send(row) {
                self.overflow.push_back(row);
            }
        }
    }

    /// How many rows have been pushed: the next row is number `pushed() + 1`.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// How many of the pushed rows the writer has finished with (committed, or counted in
    /// `errors`), in push order.
    pub fn done(&self) -> u64 {
        self.done.load(Acquire)
    }

    /// Moves overflow rows into the channel while there is room.
    pub fn retry(&mut self) {
        let Some(tx) = &self.tx else { return };
        while let Some(row) = self.overflow.pop_front() {
            if let Err(TrySendError::Full(row)) = tx.try_send(row) {
                self.overflow.push_front(row);
                break;
            }
        }
    }

    /// True while rows wait for room: the engine stops reading until this clears.
    pub fn backed_up(&self) -> bool {
        !self.overflow.is_empty()
    }
}

impl Drop for Sink {
    /// Hands over the overflow (waiting for room: this is the server closing), lets the writer
    /// drain the channel and joins it, so every row read before close is in the database.
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            for row in self.overflow.drain(..) {
                if tx.send(row).is_err() {
                    break;
                }
            }
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn row(i: u32) -> Row {
        Row {
            received_at_ms: i64::from(i),
            client: Arc::from("c"),
            raw: Bytes::from(i.to_string()),
            seq: None,
        }
    }

    #[test]
    fn every_row_is_written_once_in_order_even_past_the_channel_bound() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let counters = Arc::new(SinkCounters::default());
        let (gate_tx, gate_rx) = crossbeam_channel::bounded::<()>(0);
        let w = written.clone();
        let mut first = true;
        let mut sink = Sink::spawn(
            "test",
            counters.clone(),
            Box::new(move |rows| {
                if first {
                    // Hold the writer so the channel fills up and rows overflow.
                    first = false;
                    let _ = gate_rx.recv();
                }
                w.lock()
                    .unwrap()
                    .extend(rows.iter().map(|r| r.received_at_ms));
                Ok(())
            }),
        )
        .unwrap();
        let n = (CHANNEL_ROWS * 2) as u32;
        for i in 0..n {
            sink.push(row(i));
        }
        assert!(sink.backed_up(), "the channel bound was reached");
        gate_tx.send(()).unwrap();
        drop(sink);
        let written = written.lock().unwrap();
        assert_eq!(*written, (0..i64::from(n)).collect::<Vec<_>>());
        assert_eq!(counters.rows.load(Relaxed), u64::from(n));
        assert!(counters.batches.load(Relaxed) >= u64::from(n) / MAX_BATCH as u64);
        assert_eq!(counters.errors.load(Relaxed), 0);
    }

    #[test]
    fn a_failed_batch_is_counted_as_errors() {
        let counters = Arc::new(SinkCounters::default());
        let mut sink = Sink::spawn(
            "test",
            counters.clone(),
            Box::new(|_| Err("disk full".into())),
        )
        .unwrap();
        sink.push(row(1));
        sink.push(row(2));
        drop(sink);
        assert_eq!(counters.errors.load(Relaxed), 2);
        assert_eq!(counters.rows.load(Relaxed), 0);
    }
}
