//! The JS server's native half: binds the core [`Server`] and forwards calls to it. Safe code
//! only; the raw N-API work is in `ffi`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use napi::sys;
use zerowire_core::client::Queued;
use zerowire_core::queue::Staging;
use zerowire_core::server::{Server, ServerEvent, ServerOut};
use zerowire_core::Error;

use crate::convert;
use crate::ffi::{
    self, BufferRefs, Cx, Delivery, Env, EventArray, Gate, Tagged, Thrown, Value, Wakeup,
};

pub struct Handle {
    server: Server,
    staging: RefCell<Staging<ServerOut>>,
    flush_scheduled: Cell<bool>,
    refs: Arc<BufferRefs>,
    wakeup: RefCell<Option<Wakeup>>,
    linger: Duration,
}

impl Tagged for Handle {
    const TAG: u32 = 0x5a57_5331; // "ZWS1"
}

impl Handle {
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
        self.server
            .shutdown(&mut self.staging.borrow_mut(), linger, wait)
    }

    fn with_wakeup(&self, f: impl FnOnce(&Wakeup)) {
        if let Some(w) = self.wakeup.borrow().as_ref() {
            f(w);
        }
    }
}

impl Delivery for Handle {
    /// The batch is `[kind, client, route|reason, token|info, body|id, …]`, five slots per
    /// event (see index.js).
    fn deliver(&self, env: Env, batch: &mut EventArray) -> bool {
        self.refs.release(env);
        let mut last = false;
        for event in self.server.take_events_max(crate::ffi::MAX_BATCH) {
            match event {
                ServerEvent::Connect { client, id, info } => {
                    batch.u32(0);
                    batch.u32(client);
                    batch.skip();
                    if info.is_empty() {
                        batch.skip();
                    } else {
                        batch.str(&info);
                    }
                    batch.str(id.as_bytes());
                }
                ServerEvent::Message {
                    route,
                    client,
                    token,
                    body,
                } => {
                    batch.u32(1);
                    batch.u32(client);
                    batch.u32(route);
                    batch.u32(token);
                    batch.str(&body);
                }
                ServerEvent::Disconnect { client, reason } => {
                    batch.u32(2);
                    batch.u32(client);
                    batch.str(reason.as_str().as_bytes());
                    batch.skip();
                    batch.skip();
                }
                ServerEvent::Closed => {
                    last = true;
                    batch.u32(3);
                    batch.skip();
                    batch.skip();
                    batch.skip();
                    batch.skip();
                }
            }
        }
        last
    }

    fn finished(&self, env: Env) {
        self.refs.release(env);
        self.shutdown(Duration::ZERO, Duration::from_millis(100));
        self.with_wakeup(|w| w.finish(Some(env), self));
    }

    fn env_teardown(&self) {
        self.with_wakeup(|w| w.gate().shut());
        self.shutdown(self.linger, self.linger + Duration::from_millis(500));
        self.with_wakeup(|w| w.finish(None, self));
    }
}

fn handle(cx: &Cx) -> Result<&Handle, Thrown> {
    cx.handle::<Handle>(0)
}

/// serverCreate(endpoint, numbers[SERVER_NUMBERS], typeField, onEvents) → handle. Binds synchronously, so
/// EADDRINUSE, ENAMETOOLONG and friends are thrown here.
pub extern "C" fn create(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = (|| {
        let endpoint = cx
            .string(0)
            .ok_or_else(|| Thrown::arg_type("endpoint must be a string"))?;
        let mut numbers = [f64::NAN; convert::SERVER_NUMBERS];
        for (i, n) in numbers.iter_mut().enumerate() {
            *n = cx.element_number(1, i as u32).unwrap_or(f64::NAN);
        }
        let mut options = convert::server_options(&numbers)?;
        if let Some(field) = cx.string(2) {
            options.type_field = field;
        }
        let linger = options.linger;
        let gate = Gate::new();
        let refs = BufferRefs::new(gate.clone());
        let server = Server::bind(&endpoint, options, Box::new(ffi::GateWaker(gate.clone())))?;
        let handle = Rc::new(Handle {
            server,
            staging: RefCell::default(),
            flush_scheduled: Cell::new(false),
            refs,
            wakeup: RefCell::new(None),
            linger,
        });
        match Wakeup::install(&cx, cx.arg(3), gate, &handle) {
            Ok(w) => {
                // A listening server keeps the process alive, like net.Server.
                w.set_ref(env, true);
                *handle.wakeup.borrow_mut() = Some(w);
            }
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
    if h.server.is_closing() {
        return Err(Error::Closed.into());
    }
    Ok(())
}

/// serverEndpoint(handle) → the bound endpoint (real port for tcp://…:0).
pub extern "C" fn endpoint(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = handle(&cx).map(|h| cx.str(h.server.endpoint()));
    cx.result(r)
}

/// serverRoute(handle, name, index)
pub extern "C" fn route(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = (|| {
        let h = handle(&cx)?;
        let name = cx
            .string(1)
            .ok_or_else(|| Thrown::arg_type("the route name must be a string"))?;
        h.server.route(&name, cx.u32(2));
        Ok(cx.undefined())
    })();
    cx.result(r)
}

/// serverReply(handle, token, raw, isError) → 0 refused, 1 queued, 2 queued + schedule flush.
pub extern "C" fn reply(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = (|| {
        let h = handle(&cx)?;
        check_open(h)?;
        let body = cx.payload(2, h.server.max_message_bytes(), &h.refs)?;
        let q = h
            .server
            .reply(&mut h.staging.borrow_mut(), cx.u32(1), body, cx.bool(3))?;
        Ok(cx.int(h.outcome(q)))
    })();
    cx.result(r)
}

/// serverSendTo(handle, client, raw) → like serverReply.
pub extern "C" fn send_to(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = (|| {
        let h = handle(&cx)?;
        check_open(h)?;
        let body = cx.payload(2, h.server.max_message_bytes(), &h.refs)?;
        let q = h
            .server
            .send_to(&mut h.staging.borrow_mut(), cx.u32(1), body)?;
        Ok(cx.int(h.outcome(q)))
    })();
    cx.result(r)
}

/// serverBroadcast(handle, raw) → like serverReply.
pub extern "C" fn broadcast(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = (|| {
        let h = handle(&cx)?;
        check_open(h)?;
        let body = cx.payload(1, h.server.max_message_bytes(), &h.refs)?;
        let q = h.server.broadcast(&mut h.staging.borrow_mut(), body)?;
        Ok(cx.int(h.outcome(q)))
    })();
    cx.result(r)
}

/// serverFlush(handle)
pub extern "C" fn flush(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = handle(&cx).map(|h| {
        h.flush_scheduled.set(false);
        h.server.flush(&mut h.staging.borrow_mut());
        cx.undefined()
    });
    cx.result(r)
}

/// serverClose(handle) → true if this call started the close.
pub extern "C" fn close(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = handle(&cx).map(|h| cx.boolean(h.server.close(&mut h.staging.borrow_mut())));
    cx.result(r)
}

/// serverCloseSync(handle) → true if the engine ended (bounded by linger + 250 ms).
pub extern "C" fn close_sync(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = handle(&cx).map(|h| {
        let finished = h.wakeup.borrow().as_ref().is_none_or(|w| w.finished());
        let ended = finished || h.shutdown(h.linger, h.linger + Duration::from_millis(250));
        cx.boolean(ended)
    });
    cx.result(r)
}

/// serverRef(handle, bool)
pub extern "C" fn set_ref(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = handle(&cx).map(|h| {
        let want = cx.bool(1);
        h.with_wakeup(|w| w.set_ref(env, want));
        cx.undefined()
    });
    cx.result(r)
}

/// serverStats(handle) → plain object of counters.
pub extern "C" fn stats(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = handle(&cx).map(|h| cx.object(&convert::server_stats(&h.server.stats()), &[]));
    cx.result(r)
}

pub const FUNCTIONS: &[(&str, ffi::Callback)] = &[
    ("serverCreate", create),
    ("serverEndpoint", endpoint),
    ("serverRoute", route),
    ("serverReply", reply),
    ("serverSendTo", send_to),
    ("serverBroadcast", broadcast),
    ("serverFlush", flush),
    ("serverClose", close),
    ("serverCloseSync", close_sync),
    ("serverRef", set_ref),
    ("serverStats", stats),
];
