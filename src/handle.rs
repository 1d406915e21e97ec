//! What the client and server handles share on the native side: the per-tick staging, the
//! buffer references, the wake-up, and the functions that only flush, close or (un)ref. Safe
//! code only; the raw N-API work is in `ffi`.

use std::cell::{Cell, RefCell, RefMut};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use napi::sys;
use zerowire_core::host::queue::{Staging, Weighed};
use zerowire_core::host::{Host, Orders};
use zerowire_core::latency::Summary;
use zerowire_core::Queued;

use crate::ffi::{
    BufferRefs, Cx, Delivery, Env, EventArray, Gate, Limit, Tagged, Thrown, Value, Wakeup,
};

/// A wing of the core (client or server) as the binding drives it: its generic host handle,
/// and how its events become a batch for JS.
pub trait Wing: 'static {
    type Out: Weighed + Send + 'static;
    type Control: Orders;
    type Event: Weighed + Send + 'static;
    /// Tells the kinds of handle apart when JS passes one back.
    const TAG: u32;
    fn host(&self) -> &Host<Self::Out, Self::Control, Self::Event>;
    /// Appends one delivery's events to `batch`; true when the engine has ended.
    fn deliver(&self, batch: &mut EventArray) -> bool;
    /// The JS callback has returned on the last batch.
    fn handled(&self) {}
}

/// Everything one JS client or server owns natively. Only the JS thread touches it (every
/// N-API callback, finalizer and cleanup hook runs there), hence `Rc` and `Cell`.
pub struct Handle<W: Wing> {
    pub core: W,
    /// Messages of the current JS tick, handed to the engine by the flush function.
    staging: RefCell<Staging<W::Out>>,
    /// A flush is already scheduled for this tick.
    flush_scheduled: Cell<bool>,
    refs: Arc<BufferRefs>,
    wakeup: RefCell<Option<Wakeup>>,
    linger: Duration,
}

impl<W: Wing> Tagged for Handle<W> {
    const TAG: u32 = W::TAG;
}

impl<W: Wing> Handle<W> {
    /// Wraps `core` and installs its wake-up over the JS `callback`. A handle that keeps the
    /// process alive (a listening server) is ref'd from the start.
    pub fn install(
        cx: &Cx,
        callback: Value,
        core: W,
        gate: Arc<Gate>,
        refs: Arc<BufferRefs>,
        keep_alive: bool,
    ) -> Result<Rc<Self>, Thrown> {
        let linger = core.host().linger();
        let handle = Rc::new(Handle {
            core,
            staging: RefCell::new(Staging::default()),
            flush_scheduled: Cell::new(false),
            refs,
            wakeup: RefCell::new(None),
            linger,
        });
        match Wakeup::install(cx, callback, gate, &handle) {
            Ok(w) => {
                w.set_ref(cx.env(), keep_alive);
                *handle.wakeup.borrow_mut() = Some(w);
                Ok(handle)
            }
            Err(t) => {
                handle.shutdown(Duration::ZERO, Duration::from_secs(1));
                Err(t)
            }
        }
    }

    pub fn staging(&self) -> RefMut<'_, Staging<W::Out>> {
        self.staging.borrow_mut()
    }

    /// The payload argument `i` of a call on this handle.
    pub fn payload(&self, cx: &Cx, i: usize) -> Result<Bytes, Thrown> {
        self.refs.release(cx.env());
        let host = self.core.host();
        let limit = Limit {
            max: host.max_message_bytes(),
            refuse: &|size| host.too_large(size),
        };
        cx.payload(i, &limit, &self.refs)
    }

    /// 0 refused, 1 queued, 2 queued and the caller must schedule the flush function for the
    /// end of the tick (the first message of a tick).
    pub fn outcome(&self, queued: Queued) -> i32 {
        match queued {
            Queued::Refused => 0,
            Queued::Yes if self.flush_scheduled.get() || self.staging.borrow().is_empty() => 1,
            Queued::Yes => {
                self.flush_scheduled.set(true);
                2
            }
        }
    }

    fn shutdown(&self, linger: Duration, wait: Duration) -> bool {
        self.core.host().shutdown(&mut self.staging(), linger, wait)
    }

    fn with_wakeup(&self, f: impl FnOnce(&Wakeup)) {
        if let Some(w) = self.wakeup.borrow().as_ref() {
            f(w);
        }
    }
}

impl<W: Wing> Delivery for Handle<W> {
    fn deliver(&self, env: Env, batch: &mut EventArray) -> bool {
        self.refs.release(env);
        self.core.deliver(batch)
    }

    fn handled(&self) {
        self.core.handled();
    }

    fn finished(&self, env: Env) {
        self.refs.release(env);
        // The engine thread has signalled its end: joining is immediate.
        self.shutdown(Duration::ZERO, Duration::from_millis(100));
        self.with_wakeup(|w| w.finish(Some(env), self));
    }

    fn env_teardown(&self) {
        self.with_wakeup(|w| w.gate().shut());
        // No JS can run any more: let the engine drain (bounded) and end its thread so
        // nothing outlives the env.
        self.shutdown(self.linger, self.linger + Duration::from_millis(500));
        self.with_wakeup(|w| w.finish(None, self));
    }
}

/// Runs `f` on the handle argument 0, throwing if it is not a handle of this kind.
pub fn with_handle<W: Wing>(
    env: Env,
    info: sys::napi_callback_info,
    f: impl FnOnce(&Cx, &Handle<W>) -> Result<Value, Thrown>,
) -> Value {
    let cx = Cx::new(env, info);
    let r = cx.handle::<Handle<W>>(0).and_then(|h| f(&cx, h));
    cx.result(r)
}

/// flush(handle): hands the messages staged during this tick to the engine.
pub extern "C" fn flush<W: Wing>(env: Env, info: sys::napi_callback_info) -> Value {
    with_handle::<W>(env, info, |cx, h| {
        h.flush_scheduled.set(false);
        h.core.host().flush(&mut h.staging());
        Ok(cx.undefined())
    })
}

/// close(handle) → true if this call started the close.
pub extern "C" fn close<W: Wing>(env: Env, info: sys::napi_callback_info) -> Value {
    with_handle::<W>(env, info, |cx, h| {
        Ok(cx.boolean(h.core.host().close(&mut h.staging())))
    })
}

/// closeSync(handle) → true if the engine ended. Blocks for at most linger + 250 ms; meant for
/// `process.on('exit')`, where nothing asynchronous can run any more.
pub extern "C" fn close_sync<W: Wing>(env: Env, info: sys::napi_callback_info) -> Value {
    with_handle::<W>(env, info, |cx, h| {
        let finished = h.wakeup.borrow().as_ref().is_none_or(|w| w.finished());
        let ended = finished || h.shutdown(h.linger, h.linger + Duration::from_millis(250));
        Ok(cx.boolean(ended))
    })
}

/// ref(handle, bool): keep the process alive (something is awaited) or not.
pub extern "C" fn set_ref<W: Wing>(env: Env, info: sys::napi_callback_info) -> Value {
    with_handle::<W>(env, info, |cx, h| {
        let want = cx.bool(1);
        h.with_wakeup(|w| w.set_ref(env, want));
        Ok(cx.undefined())
    })
}

/// `stats().latency`: one object of percentiles (µs) per histogram, by JS name.
pub fn latency(cx: &Cx, histograms: &[(&str, Summary)]) -> Value {
    let latency = cx.object(&[], &[]);
    for (name, summary) in histograms {
        cx.set(latency, name, cx.object(&summary.fields(), &[]));
    }
    latency
}
