//! The JS client's native half: creates the core [`Client`] and forwards calls to it. Safe
//! code only; the raw N-API work is in `ffi`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use napi::sys;
use zerowire_core::client::Queued;
use zerowire_core::queue::Staging;
use zerowire_core::{Client, Error, Event};

use crate::convert;
use crate::ffi::{
    self, BufferRefs, Cx, Delivery, Env, EventArray, Gate, Tagged, Thrown, Value, Wakeup,
};

/// Everything one JS client owns natively. Only the JS thread touches it (every N-API
/// callback, finalizer and cleanup hook runs there), hence `Rc` and `Cell`.
pub struct Handle {
    client: Client,
    /// Messages of the current JS tick, handed to the engine by `clientFlush`.
    staging: RefCell<Staging>,
    /// A `clientFlush` is already scheduled for this tick.
    flush_scheduled: Cell<bool>,
    refs: Arc<BufferRefs>,
    wakeup: RefCell<Option<Wakeup>>,
    linger: Duration,
}

impl Tagged for Handle {
    const TAG: u32 = 0x5a57_4331; // "ZWC1"
}

impl Handle {
    /// 0 refused, 1 queued, 2 queued and the caller must schedule `clientFlush` for the end
    /// of the tick (the first message of a tick).
    fn outcome(&self, queued: Queued) -> i32 {
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
        self.client
            .shutdown(&mut self.staging.borrow_mut(), linger, wait)
    }

    fn with_wakeup(&self, f: impl FnOnce(&Wakeup)) {
        if let Some(w) = self.wakeup.borrow().as_ref() {
            f(w);
        }
    }
}

impl Delivery for Handle {
    /// The batch is `[kind, id, body, …]`, three slots per event (see index.js).
    fn deliver(&self, env: Env, batch: &mut EventArray) -> bool {
        self.refs.release(env);
        let mut last = false;
        for event in self.client.take_events_max(crate::ffi::MAX_BATCH) {
            let (kind, id, body): (u32, u32, Option<&[u8]>) = match &event {
                Event::Reply { id, body } => (0, *id, Some(body)),
                Event::ErrorReply { id, message } => (1, *id, Some(message)),
                Event::Timeout { id } => (2, *id, None),
                Event::Push { body } => (3, 0, Some(body)),
                Event::Closed => {
                    last = true;
                    (4, 0, None)
                }
                Event::Ready {
                    client_id,
                    server_pid,
                } => (5, *server_pid, Some(client_id.as_bytes())),
                Event::Disconnected => (6, 0, None),
                Event::Reset { id } => (7, *id, None),
            };
            batch.u32(kind);
            batch.u32(id);
            match body {
                Some(b) => batch.str(b),
                None => batch.skip(),
            }
        }
        last
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

fn handle(cx: &Cx) -> Result<&Handle, Thrown> {
    cx.handle::<Handle>(0)
}

/// clientCreate(endpoint, numbers[CLIENT_NUMBERS], name | undefined, onEvents) → handle.
/// The JS wrapper has checked the types; ranges are checked here.
pub extern "C" fn create(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = (|| {
        let endpoint = cx
            .string(0)
            .ok_or_else(|| Thrown::arg_type("endpoint must be a string"))?;
        let mut numbers = [f64::NAN; convert::CLIENT_NUMBERS];
        for (i, n) in numbers.iter_mut().enumerate() {
            *n = cx.element_number(1, i as u32).unwrap_or(f64::NAN);
        }
        let mut options = convert::client_options(&numbers)?;
        options.name = cx.string(2);
        let linger = options.linger;
        let gate = Gate::new();
        let refs = BufferRefs::new(gate.clone());
        let client = Client::connect(&endpoint, options, Box::new(ffi::GateWaker(gate.clone())))?;
        let handle = Rc::new(Handle {
            client,
            staging: RefCell::default(),
            flush_scheduled: Cell::new(false),
            refs,
            wakeup: RefCell::new(None),
            linger,
        });
        match Wakeup::install(&cx, cx.arg(3), gate, &handle) {
            Ok(w) => *handle.wakeup.borrow_mut() = Some(w),
            Err(t) => {
                handle.shutdown(Duration::ZERO, Duration::from_secs(1));
                return Err(t);
            }
        }
        Ok(cx.external(handle))
    })();
    cx.result(r)
}

fn check_open(h: &Handle) -> Result<(), Thrown> {
    if h.client.is_closing() {
        return Err(Error::Closed.into());
    }
    Ok(())
}

/// clientSend(handle, raw) → 0 refused (full), 1 queued, 2 queued + schedule clientFlush.
pub extern "C" fn send(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = (|| {
        let h = handle(&cx)?;
        check_open(h)?;
        h.refs.release(env);
        let body = cx.payload(1, h.client.max_message_bytes(), &h.refs)?;
        let queued = h.client.send(&mut h.staging.borrow_mut(), body)?;
        Ok(cx.int(h.outcome(queued)))
    })();
    cx.result(r)
}

/// clientRequest(handle, id, raw, timeoutMs) → like clientSend.
pub extern "C" fn request(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = (|| {
        let h = handle(&cx)?;
        check_open(h)?;
        let id = cx.u32(1);
        let body = cx.payload(2, h.client.max_message_bytes(), &h.refs)?;
        let timeout = cx
            .number(3)
            .filter(|t| *t >= 1.0 && t.is_finite())
            .map(|t| Duration::from_micros((t * 1000.0) as u64));
        let queued = h
            .client
            .request(&mut h.staging.borrow_mut(), id, body, timeout)?;
        Ok(cx.int(h.outcome(queued)))
    })();
    cx.result(r)
}

/// clientFlush(handle): hands the messages staged during this tick to the engine.
pub extern "C" fn flush(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = handle(&cx).map(|h| {
        h.flush_scheduled.set(false);
        h.client.flush(&mut h.staging.borrow_mut());
        cx.undefined()
    });
    cx.result(r)
}

/// clientCancel(handle, id)
pub extern "C" fn cancel(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = handle(&cx).map(|h| {
        h.client.cancel(&mut h.staging.borrow_mut(), cx.u32(1));
        cx.undefined()
    });
    cx.result(r)
}

/// clientClose(handle) → true if this call started the close.
pub extern "C" fn close(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = handle(&cx).map(|h| cx.boolean(h.client.close(&mut h.staging.borrow_mut())));
    cx.result(r)
}

/// clientCloseSync(handle) → true if the engine ended. Blocks for at most linger + 250 ms;
/// meant for `process.on('exit')`, where nothing asynchronous can run any more.
pub extern "C" fn close_sync(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = handle(&cx).map(|h| {
        let finished = h.wakeup.borrow().as_ref().is_none_or(|w| w.finished());
        let ended = finished || h.shutdown(h.linger, h.linger + Duration::from_millis(250));
        cx.boolean(ended)
    });
    cx.result(r)
}

/// clientRef(handle, bool): keep the process alive (a request or close is pending) or not.
pub extern "C" fn set_ref(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = handle(&cx).map(|h| {
        let want = cx.bool(1);
        h.with_wakeup(|w| w.set_ref(env, want));
        cx.undefined()
    });
    cx.result(r)
}

/// clientStats(handle) → plain object of counters.
pub extern "C" fn stats(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = handle(&cx).map(|h| {
        let s = h.client.stats();
        cx.object(&convert::client_stats(&s), &[("connected", s.connected)])
    });
    cx.result(r)
}

pub const FUNCTIONS: &[(&str, ffi::Callback)] = &[
    ("clientCreate", create),
    ("clientSend", send),
    ("clientRequest", request),
    ("clientFlush", flush),
    ("clientCancel", cancel),
    ("clientClose", close),
    ("clientCloseSync", close_sync),
    ("clientRef", set_ref),
    ("clientStats", stats),
];
