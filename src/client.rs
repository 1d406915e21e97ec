//! The JS client's native half: creates the core [`Client`] and forwards calls to it. Safe
//! code only; the raw N-API work is in `ffi`, what client and server share in `handle`.

use std::collections::HashMap;
use std::time::Duration;

use napi::sys;
use napi_derive::napi;
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

    /// One batch of events (see `EventArray`): the kind, then per kind the request id, the
    /// endpoint's index or a count, and at most one value.
    fn deliver(&self, batch: &mut EventArray) -> bool {
        let mut last = false;
        for event in self.take_events_max(ffi::MAX_BATCH) {
            match event {
                ClientEvent::Reply { id, body } => {
                    batch.event([EV_REPLY, id, 0, 0, 0]);
                    batch.text(body);
                }
                ClientEvent::ErrorReply { id, message } => {
                    batch.event([EV_ERROR_REPLY, id, 0, 0, 0]);
                    batch.str(&message);
                }
                ClientEvent::Timeout { id } => batch.event([EV_TIMEOUT, id, 0, 0, 0]),
                ClientEvent::Reset { id } => batch.event([EV_RESET, id, 0, 0, 0]),
                ClientEvent::AuthFailed { id } => batch.event([EV_AUTH_FAILED, id, 0, 0, 0]),
                ClientEvent::ServerUidRefused { id } => batch.event([EV_PEER_UID, id, 0, 0, 0]),
                ClientEvent::Push { body } => {
                    batch.event([EV_PUSH, 0, 0, 0, 0]);
                    batch.text(body);
                }
                ClientEvent::Ready {
                    link,
                    client_id,
                    server_pid,
                } => {
                    batch.event([EV_READY, link, server_pid, 0, 0]);
                    batch.str(client_id.as_bytes());
                }
                ClientEvent::Disconnected { link } => {
                    batch.event([EV_DISCONNECTED, link, 0, 0, 0]);
                }
                ClientEvent::ConnectFailed {
                    link,
                    errno,
                    timed_out,
                    auth,
                    peer_uid,
                    retry_ms,
                    message,
                } => {
                    batch.event([
                        EV_CONNECT_FAILED,
                        link,
                        errno,
                        u32::from(timed_out) | u32::from(auth) << 1 | u32::from(peer_uid) << 2,
                        retry_ms,
                    ]);
                    batch.str(message.as_bytes());
                }
                ClientEvent::Slow { id, micros } => {
                    let (low, high) = split(micros);
                    batch.event([EV_SLOW, id, low, high, 0]);
                }
                ClientEvent::Dropped { reason, count } => {
                    let (low, high) = split(count);
                    batch.event([EV_DROPPED, low, high, 0, 0]);
                    batch.str(reason.as_str().as_bytes());
                }
                ClientEvent::Drain => batch.event([EV_DRAIN, 0, 0, 0, 0]),
                ClientEvent::Closed => {
                    last = true;
                    batch.event([EV_CLOSED, 0, 0, 0, 0]);
                }
            }
        }
        last
    }
}

/// A u64 as two u32 slots, low first (JS: `low + high * 2 ** 32`).
fn split(n: u64) -> (u32, u32) {
    (n as u32, (n >> 32) as u32)
}

// The client's event kinds, exported to JS by name (`clientEventKinds()`).
const EV_REPLY: u32 = 0;
const EV_ERROR_REPLY: u32 = 1;
const EV_TIMEOUT: u32 = 2;
const EV_RESET: u32 = 3;
const EV_PUSH: u32 = 4;
const EV_READY: u32 = 5;
const EV_DISCONNECTED: u32 = 6;
const EV_SLOW: u32 = 7;
const EV_DROPPED: u32 = 8;
const EV_DRAIN: u32 = 9;
const EV_CLOSED: u32 = 10;
const EV_AUTH_FAILED: u32 = 11;
const EV_CONNECT_FAILED: u32 = 12;
const EV_PEER_UID: u32 = 13;
const EVENT_KINDS: &[(&str, u32)] = &[
    ("reply", EV_REPLY),
    ("errorReply", EV_ERROR_REPLY),
    ("timeout", EV_TIMEOUT),
    ("reset", EV_RESET),
    ("push", EV_PUSH),
    ("ready", EV_READY),
    ("disconnected", EV_DISCONNECTED),
    ("slow", EV_SLOW),
    ("dropped", EV_DROPPED),
    ("drain", EV_DRAIN),
    ("closed", EV_CLOSED),
    ("authFailed", EV_AUTH_FAILED),
    ("connectFailed", EV_CONNECT_FAILED),
    ("peerUid", EV_PEER_UID),
];

/// `{ reply: 0, … }`: the numbers a batch's events carry.
#[napi(js_name = "clientEventKinds")]
pub fn event_kinds() -> HashMap<&'static str, u32> {
    EVENT_KINDS.iter().copied().collect()
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

/// The options `clientCreate` reads.
#[napi(js_name = "clientOptionNames")]
pub fn option_names() -> Vec<&'static str> {
    options::names(options::CLIENT)
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
            .filter(|t| *t > 0.0 && t.is_finite())
            .map(|t| Duration::from_micros((t * 1000.0).ceil() as u64));
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
    ("clientSend", send),
    ("clientRequest", request),
    ("clientFlush", handle::flush::<Client>),
    ("clientCancel", cancel),
    ("clientClose", handle::close::<Client>),
    ("clientCloseSync", handle::close_sync::<Client>),
    ("clientRef", handle::set_ref::<Client>),
    ("clientStats", stats),
];
