//! The engine thread as its handle sees it: started once with its runtime, told to close
//! once, joined with a bound.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::outbox::Outbox;
use crate::error::Error;
use crate::hooks::{self, EngineKind};

pub(crate) struct EngineThread {
    closing: AtomicBool,
    /// Signalled by the thread as its very last act.
    exited: crossbeam_channel::Receiver<()>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl EngineThread {
    /// Runs `run` on a new thread with a current-thread tokio runtime (a multi-thread
    /// runtime's hand-offs between its workers cost round trips), then publishes `closed`: also when
    /// no runtime could be built, so nothing waits forever.
    pub(crate) fn spawn<E: super::queue::Weighed + Send + 'static>(
        kind: EngineKind,
        outbox: Arc<Outbox<E>>,
        closed: E,
        run: impl FnOnce(tokio::runtime::Runtime) + Send + 'static,
    ) -> Result<Self, Error> {
        let name = match kind {
            EngineKind::Client => "zerowire-client",
            EngineKind::Server => "zerowire-server",
        };
        let (exit_tx, exited) = crossbeam_channel::bounded(1);
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                hooks::engine_start(kind);
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    run(runtime);
                }
                outbox.publish(&mut vec![closed]);
                let _ = exit_tx.send(());
            })
            .map_err(|e| Error::Spawn(e.to_string()))?;
        Ok(EngineThread {
            closing: AtomicBool::new(false),
            exited,
            handle: Mutex::new(Some(handle)),
        })
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Marks the handle closing; true only for the first call.
    pub(crate) fn start_closing(&self) -> bool {
        !self.closing.swap(true, Ordering::AcqRel)
    }

    /// Waits at most `wait` for the thread to end, and joins it if it did.
    pub(crate) fn join(&self, wait: Duration) -> bool {
        let ended = self.exited.recv_timeout(wait).is_ok();
        let handle = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let (true, Some(handle)) = (ended, handle) {
            let _ = handle.join();
        }
        ended
    }
}
