//! The JS client's native half: creates the core [`Client`] and forwards calls to it. Safe
//! code only; the raw N-API work is in `ffi`, what client and server share in `handle`.

use std::time::Duration;

use napi::sys;
use zerowire_core::client::{ClientControl, ClientEvent, ClientHost, ClientOut};
use zerowire_core::{Client, ClientOptions};

use crate::ffi::{self, BufferRefs, Cx, Env, EventArray, Gate, Thrown, Value};
use crate::handle::{self, with_handle, Handle, Wing};
use crate::{convert, options};

impl Wing for Client {
    type Out = ClientOut;
    type Control = ClientControl;
    type Event = ClientEvent;
    const TAG: u32 = 0x5a57_4331; // "ZWC1"

    fn host(&self) -> &ClientHost {
        self
    }

    /// The batch is `[kind, id, body, …]`, three slots per event (see index.js).
    fn deliver(&self, batch: &mut EventArray) -> bool {
        let mut last = false;
        let mut text;
        for event in self.take_events_max(ffi::MAX_BATCH) {
            let (kind, id, body): (u32, u32, Option<&[u8]>) = match &event {
                ClientEvent::Reply { id, body } => (0, *id, Some(body)),
                ClientEvent::ErrorReply { id, message } => (1, *id, Some(message)),
                ClientEvent::Timeout { id } => (2, *id, None),
                ClientEvent::Push { body } => (3, 0, Some(body)),
                ClientEvent::Closed => {
                    last = true;
                    (4, 0, None)
                }
                ClientEvent::Ready {
                    link,
                    client_id,
                    server_pid,
                } => {
                    text = format!("{link}:{client_id}");
                    (5, *server_pid, Some(text.as_bytes()))
                }
                ClientEvent::Disconnected { link } => (6, *link, None),
                ClientEvent::Reset { id } => (7, *id, None),
                ClientEvent::Slow { id, micros } => {
                    text = micros.to_string();
                    (9, *id, Some(text.as_bytes()))
                }
                ClientEvent::Drain => (10, 0, None),
                ClientEvent::Dropped { reason, count } => (
                    8,
                    u32::try_from(*count).unwrap_or(u32::MAX),
                    Some(reason.as_str().as_bytes()),
                ),
            };
            batch.u32(kind);
            batch.u32(id);
            match body {
                Some(b) => batch.str(b),
                None => {
                    batch.skip();
                }
            }
        }
        last
    }
}

/// clientCreate(endpoints, options, onEvents) → handle. `endpoints` is one string, several
/// joined by "\n" (no endpoint can contain one); `options` is read by name (`options::CLIENT`).
pub extern "C" fn create(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = (|| {
        let endpoints = cx
            .string(0)
            .ok_or_else(|| Thrown::arg_type("endpoint must be a string"))?;
        let endpoints: Vec<&str> = endpoints.split('\n').collect();
        let mut options = ClientOptions::default();
        options::read(&cx, 1, options::CLIENT, &mut options)?;
        let gate = Gate::new();
        let refs = BufferRefs::new(gate.clone());
        let waker = Box::new(ffi::GateWaker(gate.clone()));
        let client = Client::connect_many(&endpoints, options, waker)?;
        // An idle client does not keep the process alive; JS refs it while something is awaited.
        let handle = Handle::install(&cx, cx.arg(2), client, gate, refs, false)?;
        Ok(cx.external(handle))
    })();
    cx.result(r)
}

/// clientOptionNames() → the options `clientCreate` reads, one per line.
pub extern "C" fn option_names(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    cx.str(&options::names(options::CLIENT))
}

/// clientSend(handle, raw) → 0 refused (full), 1 queued, 2 queued + schedule clientFlush.
pub extern "C" fn send(env: Env, info: sys::napi_callback_info) -> Value {
    with_handle::<Client>(env, info, |cx, h| {
        let body = h.payload(cx, 1)?;
        let queued = h.core.send(&mut h.staging(), body)?;
        Ok(cx.int(h.outcome(queued)))
    })
}

/// clientRequest(handle, id, raw, timeoutMs, retries) → like clientSend.
pub extern "C" fn request(env: Env, info: sys::napi_callback_info) -> Value {
    with_handle::<Client>(env, info, |cx, h| {
        let id = cx.u32(1);
        let body = h.payload(cx, 2)?;
        let timeout = cx
            .number(3)
            .filter(|t| *t >= 1.0 && t.is_finite())
            .map(|t| Duration::from_micros((t * 1000.0) as u64));
        // Range-checked by the JS wrapper; absent means none.
        let retries = cx.u32(4);
        let queued = h
            .core
            .request_retrying(&mut h.staging(), id, body, timeout, retries)?;
        Ok(cx.int(h.outcome(queued)))
    })
}

/// clientCancel(handle, id)
pub extern "C" fn cancel(env: Env, info: sys::napi_callback_info) -> Value {
    with_handle::<Client>(env, info, |cx, h| {
        h.core.cancel(&mut h.staging(), cx.u32(1));
        Ok(cx.undefined())
    })
}

/// clientStats(handle) → plain object of counters.
pub extern "C" fn stats(env: Env, info: sys::napi_callback_info) -> Value {
    with_handle::<Client>(env, info, |cx, h| {
        let s = h.core.stats();
        let obj = cx.object(&convert::client_stats(&s), &[("connected", s.connected)]);
        cx.set(
            obj,
            "latency",
            handle::latency(cx, &convert::client_latency(&s)),
        );
        Ok(obj)
    })
}

pub const FUNCTIONS: &[(&str, ffi::Callback)] = &[
    ("clientCreate", create),
    ("clientOptionNames", option_names),
    ("clientSend", send),
    ("clientRequest", request),
    ("clientFlush", handle::flush::<Client>),
    ("clientCancel", cancel),
    ("clientClose", handle::close::<Client>),
    ("clientCloseSync", handle::close_sync::<Client>),
    ("clientRef", handle::set_ref::<Client>),
    ("clientStats", stats),
];
