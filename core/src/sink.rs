//! Sinks: a route whose messages are written somewhere by Rust (see [`crate::sqlite`]) instead of
//! being handed to JS. The server engine must never wait on a disk, so each sink has its own
//! writer thread fed by a bounded channel; the writer takes whatever has queued up since its
//! last write as one batch (one transaction), so batches grow exactly when the disk is the
//! bottleneck and a lone message is written at once.
//!
//! When the channel is full the engine keeps the rows it could not hand over and stops
//! reading its socket until the writer catches up: clients are then pushed back by ZeroMQ's
//! own flow control, and no row is dropped.
//!
//! A batch that fails (disk full, a lock held past the busy timeout, the file removed) is
//! kept and written again after a backoff, never dropped; meanwhile the sink counts as
//! backed up, so the engine stops reading as well. The writer publishes how many rows it has
//! committed: the engine acks a sink row to its client (and answers a request to a sink) only
//! once that count has passed it. Each failing episode is published once, with its first
//! cause, and so is its end.

use std::collections::VecDeque;
use std::sync::atomic::{
    AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::error::Error;
use crate::host::queue::QueueShared;

/// Rows queued between the engine and one writer.
const CHANNEL_ROWS: usize = 16_384;
/// Rows written per batch at most, so one transaction stays short.
pub const MAX_BATCH: usize = 4096;
/// The wait before writing a failed batch again: it doubles per failure up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How often an idle writer asks its store whether it is still sound (a removed file).
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// Once the server closes, how long a failing writer keeps trying before the rows it still
/// holds are given up (counted in `lost`).
const CLOSE_GRACE: Duration = Duration::from_secs(5);

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
    /// Failed attempts to write a batch (each is retried; none loses a row).
    pub errors: AtomicU64,
    /// Rows given up: only when the server closed while its sink could not write for
    /// [`CLOSE_GRACE`]. Never acked to their clients.
    pub lost: AtomicU64,
    /// Sinks that cannot write right now.
    pub failing: AtomicU64,
}

/// Where a writer stores its batches.
pub trait Store: Send {
    /// Writes one batch as one transaction. On `Err` nothing of it is stored, and the same
    /// batch is written again after a backoff.
    fn write(&mut self, rows: &[Row]) -> Result<(), String>;

    /// Called after each commit and while idle: `Err` when the storage went wrong meanwhile
    /// (its file removed), reported like a failed write.
    fn check(&mut self) -> Result<(), String> {
        Ok(())
    }
}

impl<F: FnMut(&[Row]) -> Result<(), String> + Send> Store for F {
    fn write(&mut self, rows: &[Row]) -> Result<(), String> {
        self(rows)
    }
}

/// A sink's store, as the writer thread takes it.
pub type WriteBatch = Box<dyn Store>;

/// What a sink's engine end and its writer thread share.
#[derive(Default)]
struct Shared {
    /// Rows committed, in the order they were pushed.
    committed: AtomicU64,
    /// True while a batch waits to be written again.
    failing: AtomicBool,
    /// Failing episodes begun and ended; the cause of the latest one (its first error).
    episodes: AtomicU64,
    recoveries: AtomicU64,
    cause: Mutex<String>,
    /// Set when the engine lets the sink go: a failing writer then gives up after CLOSE_GRACE.
    closing: AtomicBool,
    /// Wakes the engine when the writer has news for it.
    engine: OnceLock<Arc<QueueShared>>,
}

impl Shared {
    fn wake(&self) {
        if let Some(engine) = self.engine.get() {
            engine.wake_engine();
        }
    }
}

/// What a sink has to tell the server since it last asked.
#[derive(Debug, PartialEq, Eq)]
pub enum SinkNews {
    /// It could not write: the first cause of this episode.
    Failing(String),
    /// It writes again: every row it held is stored.
    Recovered,
}

/// The engine's end of a sink: the channel, the rows waiting for room in it, the writer thread.
pub struct Sink {
    name: String,
    tx: Option<Sender<Row>>,
    overflow: VecDeque<Row>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    /// Rows pushed so far (the position of the last one).
    pushed: u64,
    /// The episodes and recoveries already told.
    told: (u64, u64),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("name", &self.name)
            .field("overflow", &self.overflow.len())
            .finish_non_exhaustive()
    }
}

impl Sink {
    pub fn spawn(
        name: &str,
        counters: Arc<SinkCounters>,
        write: WriteBatch,
    ) -> Result<Sink, Error> {
        let (tx, rx) = crossbeam_channel::bounded::<Row>(CHANNEL_ROWS);
        let shared = Arc::new(Shared::default());
        let writer = Writer {
            rx,
            store: write,
            counters,
            shared: shared.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("zerowire-sink-{name}"))
            .spawn(move || writer.run())
            .map_err(|e| Error::Spawn(e.to_string()))?;
        Ok(Sink {
            name: name.to_owned(),
            tx: Some(tx),
            overflow: VecDeque::new(),
            thread: Some(thread),
            shared,
            pushed: 0,
            told: (0, 0),
        })
    }

    /// The route this sink serves.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Lets the writer wake this engine when rows commit or a failure begins or ends.
    pub(crate) fn attach(&self, engine: Arc<QueueShared>) {
        let _ = self.shared.engine.set(engine);
    }

    /// Engine side: never waits. A row with no room goes to the overflow (see
    /// [`Sink::backed_up`]). Returns the row's position: it is stored once
    /// [`Sink::committed`] reaches it.
    pub fn push(&mut self, row: Row) -> u64 {
        self.pushed += 1;
        if !self.overflow.is_empty() {
            self.overflow.push_back(row);
            self.retry();
        } else if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(row)) = tx.try_send(row) {
                self.overflow.push_back(row);
            }
        }
        self.pushed
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

    /// How many of the rows pushed are committed.
    pub fn committed(&self) -> u64 {
        self.shared.committed.load(Acquire)
    }

    /// True once every row pushed is committed.
    pub fn settled(&self) -> bool {
        self.committed() >= self.pushed
    }

    /// True while rows wait for room, or the writer cannot write: the engine stops reading
    /// until this clears.
    pub fn backed_up(&self) -> bool {
        !self.overflow.is_empty() || self.shared.failing.load(Relaxed)
    }

    /// A failing episode begun, or ended, since the last call (a begun one first).
    pub fn news(&mut self) -> Option<SinkNews> {
        let episodes = self.shared.episodes.load(Acquire);
        if episodes > self.told.0 {
            self.told.0 = episodes;
            let cause = self
                .shared
                .cause
                .lock()
                .map(|c| c.clone())
                .unwrap_or_default();
            return Some(SinkNews::Failing(cause));
        }
        let recoveries = self.shared.recoveries.load(Acquire);
        if recoveries > self.told.1 {
            self.told.1 = recoveries;
            return Some(SinkNews::Recovered);
        }
        None
    }
}

impl Drop for Sink {
    /// Hands over the overflow (waiting for room: this is the server closing), lets the writer
    /// drain the channel and joins it, so every row read before close is in the database —
    /// unless the writer cannot write for CLOSE_GRACE, when what it holds is counted as lost.
    fn drop(&mut self) {
        self.shared.closing.store(true, Relaxed);
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

/// The writer thread's side of a sink.
struct Writer {
    rx: Receiver<Row>,
    store: WriteBatch,
    counters: Arc<SinkCounters>,
    shared: Arc<Shared>,
}

impl Writer {
    /// Ends once the engine dropped its sender and every queued row was written (or given up).
    fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut backoff = FIRST_BACKOFF;
        let mut closing_since: Option<Instant> = None;
        loop {
            if batch.is_empty() {
                match self.rx.recv_timeout(IDLE_CHECK) {
                    Ok(first) => {
                        batch.push(first);
                        batch.extend(self.rx.try_iter().take(MAX_BATCH - 1));
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        match self.store.check() {
                            Ok(()) => self.recovered(),
                            Err(cause) => self.failed(cause),
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            match self.store.write(&batch) {
                Ok(()) => {
                    let n = batch.len() as u64;
                    self.counters.rows.fetch_add(n, Relaxed);
                    self.counters.batches.fetch_add(1, Relaxed);
                    self.shared.committed.fetch_add(n, Release);
                    batch.clear();
                    backoff = FIRST_BACKOFF;
                    self.recovered();
                    // What the store noticed while writing (its files replaced, say).
                    if let Err(cause) = self.store.check() {
                        self.failed(cause);
                    }
                    self.shared.wake();
                }
                Err(cause) => {
                    self.failed(cause);
                    if self.shared.closing.load(Relaxed) {
                        let since = *closing_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= CLOSE_GRACE {
                            self.give_up(batch.len() as u64);
                            return;
                        }
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn failed(&self, cause: String) {
        self.counters.errors.fetch_add(1, Relaxed);
        if !self.shared.failing.swap(true, Relaxed) {
            if let Ok(mut c) = self.shared.cause.lock() {
                *c = cause;
            }
            self.counters.failing.fetch_add(1, Relaxed);
            self.shared.episodes.fetch_add(1, Release);
            self.shared.wake();
        }
    }

    fn recovered(&self) {
        if self.shared.failing.swap(false, Relaxed) {
            self.counters.failing.fetch_sub(1, Relaxed);
            self.shared.recoveries.fetch_add(1, Release);
            self.shared.wake();
        }
    }

    /// The server closed and the store still fails: counts what is held as lost, and takes
    /// the rest from the channel so the engine's last sends do not wait on a full channel.
    fn give_up(&self, held: u64) {
        let rest = self.rx.iter().count() as u64;
        self.counters.lost.fetch_add(held + rest, Relaxed);
        // Gone, not failing: no recovery to tell.
        if self.shared.failing.swap(false, Relaxed) {
            self.counters.failing.fetch_sub(1, Relaxed);
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
            Box::new(move |rows: &[Row]| {
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
        assert_eq!(counters.lost.load(Relaxed), 0);
    }

    /// A store that fails its first `fail` writes, then records what it is given.
    fn flaky(fail: u32, written: Arc<Mutex<Vec<i64>>>) -> WriteBatch {
        let mut left = fail;
        Box::new(move |rows: &[Row]| {
            if left > 0 {
                left -= 1;
                return Err(format!("disk full ({left} more)"));
            }
            written
                .lock()
                .unwrap()
                .extend(rows.iter().map(|r| r.received_at_ms));
            Ok(())
        })
    }

    fn wait_for(what: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !what() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_failed_batch_is_kept_and_written_again_with_one_episode_told() {
        let counters = Arc::new(SinkCounters::default());
        let written = Arc::new(Mutex::new(Vec::new()));
        let mut sink = Sink::spawn("test", counters.clone(), flaky(4, written.clone())).unwrap();
        assert_eq!(sink.push(row(1)), 1);
        assert_eq!(sink.push(row(2)), 2);
        // The writer takes row 1 alone or with row 2; either way it fails four times first.
        wait_for(|| counters.errors.load(Relaxed) >= 1);
        assert!(
            sink.backed_up() || sink.settled(),
            "a failing sink holds reading back"
        );
        wait_for(|| sink.settled());
        assert_eq!(sink.committed(), 2);
        assert_eq!(*written.lock().unwrap(), vec![1, 2]);
        assert_eq!(
            counters.errors.load(Relaxed),
            4,
            "each failed attempt counted"
        );
        assert_eq!(counters.rows.load(Relaxed), 2);
        assert_eq!(counters.lost.load(Relaxed), 0);
        assert_eq!(counters.failing.load(Relaxed), 0);
        assert!(!sink.backed_up());
        // Four failures in a row are one episode: told once, with its first cause, then its end.
        assert_eq!(
            sink.news(),
            Some(SinkNews::Failing("disk full (3 more)".into()))
        );
        assert_eq!(sink.news(), Some(SinkNews::Recovered));
        assert_eq!(sink.news(), None);
        drop(sink);
        assert_eq!(counters.lost.load(Relaxed), 0);
    }

    #[test]
    fn a_sink_failing_past_close_gives_its_rows_up_as_lost_and_close_ends() {
        let counters = Arc::new(SinkCounters::default());
        let mut sink = Sink::spawn(
            "test",
            counters.clone(),
            Box::new(|_: &[Row]| Err("read-only".to_string())),
        )
        .unwrap();
        for i in 0..10 {
            sink.push(row(i));
        }
        wait_for(|| counters.errors.load(Relaxed) >= 1);
        assert!(sink.backed_up());
        assert_eq!(counters.failing.load(Relaxed), 1);
        let started = Instant::now();
        drop(sink);
        assert!(started.elapsed() >= CLOSE_GRACE);
        assert_eq!(counters.lost.load(Relaxed), 10);
        assert_eq!(
            counters.failing.load(Relaxed),
            0,
            "a sink gone is not failing"
        );
        assert_eq!(counters.rows.load(Relaxed), 0);
    }

    #[test]
    fn an_idle_writer_reports_what_its_store_check_finds() {
        struct Checked(Arc<AtomicBool>);
        impl Store for Checked {
            fn write(&mut self, _: &[Row]) -> Result<(), String> {
                Ok(())
            }
            fn check(&mut self) -> Result<(), String> {
                if self.0.swap(false, Relaxed) {
                    Err("removed".into())
                } else {
                    Ok(())
                }
            }
        }
        let gone = Arc::new(AtomicBool::new(true));
        let counters = Arc::new(SinkCounters::default());
        let mut sink = Sink::spawn("test", counters.clone(), Box::new(Checked(gone))).unwrap();
        wait_for(|| counters.errors.load(Relaxed) == 1 && counters.failing.load(Relaxed) == 0);
        assert_eq!(sink.news(), Some(SinkNews::Failing("removed".into())));
        assert_eq!(sink.news(), Some(SinkNews::Recovered));
    }
}
