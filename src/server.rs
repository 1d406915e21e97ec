//! The JS server's native half: binds the core [`Server`] and forwards calls to it. Safe code
//! only; the raw N-API work is in `ffi`, what client and server share in `handle`.

use std::collections::HashMap;

use napi::sys;
use napi_derive::napi;
use zerowire_core::server::{Server, ServerControl, ServerEvent, ServerHost, ServerOut};
use zerowire_core::{Error, Queued, ServerOptions, Staging};

use crate::convert;
use crate::ffi::{self, BufferRefs, Cx, Env, EventArray, Gate, Thrown, Value};
use crate::handle::{self, with_handle, Handle, Wing};
use crate::options::{self, ServerBuild};

/// The core server plus how this JS server wants message bodies: strings (the default) or,
/// with `encoding: 'buffer'`, Buffers, which spare the JS thread decoding UTF-8 (bench/NOTES.md,
/// "Server `encoding: 'buffer'`") when the handler only stores or forwards the bytes.
pub struct JsServer {
    core: Server,
    buffers: bool,
}

impl std::ops::Deref for JsServer {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.core
    }
}

impl Wing for JsServer {
    type Out = ServerOut;
    type Control = ServerControl;
    type Event = ServerEvent;
    const TAG: u32 = 0x5a57_5331; // "ZWS1"

    fn host(&self) -> &ServerHost {
        &self.core
    }

    fn handled(&self) {
        Server::handled(self)
    }

    /// One batch of events (see `EventArray`): `[kind, client, route, token, packed length]`,
    /// then each event's strings or Buffer. With `encoding: 'buffer'` small bodies are packed end to
    /// end into shared Buffers of about PACKED_MAX bytes, each announced by an SV_PACK event
    /// whose slot holds it. Numbers in one typed array and small Buffers in few allocations:
    /// per element N-API calls and per-Buffer backing stores were most of the server's cost
    /// per small message (bench/NOTES.md).
    fn deliver(&self, batch: &mut EventArray) -> bool {
        let events = self.take_events_max(ffi::MAX_BATCH);
        if events.is_empty() {
            return false;
        }
        let mut pack = Pack::default();
        let mut last = false;
        for event in events {
            match event {
                ServerEvent::Connect {
                    client,
                    id,
                    info,
                    public_key,
                    credentials,
                } => {
                    let (uid, pid, known) = credential_slots(credentials);
                    batch.event([SV_CONNECT, client, uid, pid, known]);
                    if info.is_empty() {
                        batch.skip();
                    } else {
                        batch.str(&info);
                    }
                    batch.str(id.as_bytes());
                    match public_key {
                        Some(key) => batch.str(key.as_bytes()),
                        None => {
                            batch.skip();
                        }
                    }
                }
                ServerEvent::Authorize {
                    request,
                    public_key,
                    socket_type,
                    credentials,
                } => {
                    let (uid, pid, known) = credential_slots(credentials);
                    batch.event([SV_AUTHORIZE, request, uid, pid, known]);
                    match public_key {
                        Some(key) => batch.str(key.as_bytes()),
                        None => {
                            batch.skip();
                        }
                    }
                    batch.str(socket_type.as_bytes());
                }
                ServerEvent::Message {
                    route,
                    client,
                    token,
                    body,
                    seq,
                    ..
                } => {
                    if let Some(seq) = seq {
                        // Numbers only, read by JS when a handler asks (`ctx.messageId`).
                        let flag = if seq.redelivered { 1 << 31 } else { 0 };
                        batch.event([
                            SV_SEQ,
                            (seq.session >> 32) as u32,
                            seq.session as u32,
                            seq.seq as u32,
                            ((seq.seq >> 32) as u32 & 0x7fff_ffff) | flag,
                        ]);
                    }
                    if self.buffers && body.len() < ffi::ZERO_COPY_MIN {
                        if pack.full_for(body.len()) {
                            pack.fill(batch);
                            batch.event([SV_PACK, 0, 0, 0, 0]);
                            pack.slot = Some(batch.skip());
                        }
                        batch.event([SV_PACKED, client, route, token, body.len() as u32]);
                        pack.len += body.len();
                        pack.bodies.push(body);
                        continue;
                    }
                    batch.event([SV_MESSAGE, client, route, token, 0]);
                    if self.buffers {
                        batch.bytes(body);
                    } else {
                        batch.text(body);
                    }
                }
                ServerEvent::Disconnect { client, reason } => {
                    batch.event([SV_DISCONNECT, client, 0, 0, 0]);
                    batch.str(reason.as_str().as_bytes());
                }
                ServerEvent::Drain => batch.event([SV_DRAIN, 0, 0, 0, 0]),
                ServerEvent::SinkError { route, message } => {
                    batch.event([SV_SINK_ERROR, 0, 0, 0, 0]);
                    batch.str(route.as_bytes());
                    batch.str(message.as_bytes());
                }
                ServerEvent::SinkRecovered { route } => {
                    batch.event([SV_SINK_RECOVERED, 0, 0, 0, 0]);
                    batch.str(route.as_bytes());
                }
                ServerEvent::Closed => {
                    last = true;
                    batch.event([SV_CLOSED, 0, 0, 0, 0]);
                }
            }
        }
        pack.fill(batch);
        last
    }
}

/// An ipc peer's credentials as three event slots: uid, pid, and which of them are known
/// (bit 0 the uid, bit 1 the pid).
fn credential_slots(credentials: Option<zerowire_core::peer::PeerCredentials>) -> (u32, u32, u32) {
    match credentials {
        Some(c) => (
            c.uid,
            c.pid.unwrap_or(0),
            1 | u32::from(c.pid.is_some()) << 1,
        ),
        None => (0, 0, 0),
    }
}

/// The small bodies bound for the current shared Buffer, and the batch slot it goes in.
#[derive(Default)]
struct Pack {
    slot: Option<u32>,
    bodies: Vec<bytes::Bytes>,
    len: usize,
}

impl Pack {
    /// Whether a body of `len` bytes needs a new shared Buffer (none yet, or this one is full).
    fn full_for(&self, len: usize) -> bool {
        self.slot.is_none() || (self.len > 0 && self.len + len > PACKED_MAX)
    }

    /// Copies the bodies, once, into the new Buffer at the slot, and starts over.
    fn fill(&mut self, batch: &mut EventArray) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        let bodies = &self.bodies;
        batch.bytes_at(slot, std::mem::take(&mut self.len), |out| {
            let mut at = 0;
            for body in bodies {
                out[at..at + body.len()].copy_from_slice(body);
                at += body.len();
            }
        });
        // Emptied, not replaced: the next pack of the batch reuses the vector.
        self.bodies.clear();
    }
}

// The server's event kinds, exported to JS by name (`serverEventKinds()`).
const SV_CONNECT: u32 = 0;
const SV_MESSAGE: u32 = 1;
const SV_DISCONNECT: u32 = 2;
const SV_CLOSED: u32 = 3;
/// A small Buffer body, cut from the current shared Buffer.
const SV_PACKED: u32 = 4;
/// The next shared Buffer of small bodies: its slot holds it; the SV_PACKED after it cut from it.
const SV_PACK: u32 = 5;
/// A refused reply or push can be retried (`'drain'`).
const SV_DRAIN: u32 = 6;
/// A CURVE client awaits the `authorize` function's answer (`serverAuthorize`).
const SV_AUTHORIZE: u32 = 7;
/// The next message's client session, seq and redelivered flag: [kind, session high, session
/// low, seq low, seq high | redelivered << 31].
const SV_SEQ: u32 = 8;
/// A sink cannot write: its route and the cause (`'error'`, once per episode).
const SV_SINK_ERROR: u32 = 9;
/// A sink writes again: its route (`'sinkRecovered'`).
const SV_SINK_RECOVERED: u32 = 10;
const EVENT_KINDS: &[(&str, u32)] = &[
    ("connect", SV_CONNECT),
    ("message", SV_MESSAGE),
    ("disconnect", SV_DISCONNECT),
    ("closed", SV_CLOSED),
    ("packed", SV_PACKED),
    ("pack", SV_PACK),
    ("drain", SV_DRAIN),
    ("authorize", SV_AUTHORIZE),
    ("seq", SV_SEQ),
    ("sinkError", SV_SINK_ERROR),
    ("sinkRecovered", SV_SINK_RECOVERED),
];

/// `{ connect: 0, … }`: the numbers a batch's events carry.
#[napi(js_name = "serverEventKinds")]
pub fn event_kinds() -> HashMap<&'static str, u32> {
    EVENT_KINDS.iter().copied().collect()
}

/// Small bodies share one Buffer up to about this size, so a handler that keeps one body keeps
/// at most this much alive (as with Node's own Buffer pool, `Buffer.from(raw)` detaches it).
/// Below glibc's mmap threshold (128 KiB), so the Buffers come from reused heap memory rather
/// than fresh mappings faulted in page by page (bench/NOTES.md, "shared Buffers of 64 KiB").
const PACKED_MAX: usize = 64 * 1024;

/// serverCreate(endpoint, options, onEvents) → handle; `options` is read by name
/// (`options::SERVER`). Binds synchronously, so EADDRINUSE, ENAMETOOLONG and friends are thrown
/// here.
pub extern "C" fn create(env: Env, info: sys::napi_callback_info) -> Value {
    let cx = Cx::new(env, info);
    let r = (|| {
        let endpoint = cx
            .string(0)
            .ok_or_else(|| Thrown::arg_type("endpoint must be a string"))?;
        let mut build = ServerBuild {
            core: ServerOptions::default(),
            buffers: false,
            authorize: None,
        };
        options::read(&cx, 1, options::SERVER, &mut build)?;
        let buffers = build.buffers;
        let mut core = build.finish()?;
        // JS registers its routes right after construction, then calls serverStart.
        core.start_paused = true;
        let gate = Gate::new();
        let refs = BufferRefs::new(gate.clone());
        let server = JsServer {
            core: Server::bind(&endpoint, core, Box::new(ffi::GateWaker(gate.clone())))?,
            buffers,
        };
        // A listening server keeps the process alive, like net.Server.
        let handle = Handle::install(&cx, cx.arg(2), server, gate, refs, true)?;
        Ok(cx.external(handle))
    })();
    cx.result(r)
}

/// The options `serverCreate` reads.
#[napi(js_name = "serverOptionNames")]
pub fn option_names() -> Vec<&'static str> {
    options::names(options::SERVER)
}

/// serverStart(handle): read messages from now on (the constructor's tick has registered the
/// routes it meant to).
pub extern "C" fn start(env: Env, info: sys::napi_callback_info) -> Value {
    with_handle::<JsServer>(env, info, |cx, h| {
        h.core.start();
        Ok(cx.undefined())
    })
}

/// Stages one outgoing message built from the payload argument `arg`.
fn stage(
    cx: &Cx,
    h: &Handle<JsServer>,
    arg: usize,
    call: impl FnOnce(&Server, &mut Staging<ServerOut>, bytes::Bytes) -> Result<Queued, Error>,
) -> Result<Value, Thrown> {
    let body = h.payload(cx, arg)?;
    let queued = call(&h.core, &mut h.staging(), body)?;
    Ok(cx.int(h.outcome(queued)))
}

/// serverEndpoint(handle) → the bound endpoint (real port for tcp://…:0).
pub extern "C" fn endpoint(env: Env, info: sys::napi_callback_info) -> Value {
    with_handle::<JsServer>(env, info, |cx, h| Ok(cx.str(h.core.endpoint())))
}

/// serverRoute(handle, name, index)
pub extern "C" fn route(env: Env, info: sys::napi_callback_info) -> Value {
    with_handle::<JsServer>(env, info, |cx, h| {
        let name = cx
            .string(1)
            .ok_or_else(|| Thrown::arg_type("the route name must be a string"))?;
        h.core.route(&name, cx.u32(2))?;
        Ok(cx.undefined())
    })
}

/// serverReply(handle, token, raw, isError) → 0 refused, 1 queued, 2 queued + schedule flush.
pub extern "C" fn reply(env: Env, info: sys::napi_callback_info) -> Value {
    with_handle::<JsServer>(env, info, |cx, h| {
        let (token, error) = (cx.u32(1), cx.bool(3));
        stage(cx, h, 2, |s, st, body| s.reply(st, token, body, error))
    })
}

/// serverSendTo(handle, client, raw) → like serverReply.
pub extern "C" fn send_to(env: Env, info: sys::napi_callback_info) -> Value {
    with_handle::<JsServer>(env, info, |cx, h| {
        let client = cx.u32(1);
        stage(cx, h, 2, |s, st, body| s.send_to(st, client, body))
    })
}

/// serverBroadcast(handle, raw) → like serverReply.
pub extern "C" fn broadcast(env: Env, info: sys::napi_callback_info) -> Value {
    with_handle::<JsServer>(env, info, |cx, h| {
        stage(cx, h, 1, |s, st, body| s.broadcast(st, body))
    })
}

/// serverAuthorize(handle, request, allow): the `authorize` function's answer.
pub extern "C" fn authorize(env: Env, info: sys::napi_callback_info) -> Value {
    with_handle::<JsServer>(env, info, |cx, h| {
        h.core.authorize(cx.u32(1), cx.bool(2));
        Ok(cx.undefined())
    })
}

/// serverStats(handle) → counters, and `latency: { queueWait, service }` of percentiles (µs).
pub extern "C" fn stats(env: Env, info: sys::napi_callback_info) -> Value {
    with_handle::<JsServer>(env, info, |cx, h| {
        let s = h.core.stats();
        let obj = cx.object(&convert::server_stats(&s), &[]);
        cx.set(
            obj,
            "latency",
            handle::latency(cx, &convert::server_latency(&s)),
        );
        Ok(obj)
    })
}

/// serverSinkSqlite(handle, name, path, table): messages of type `name` are written to the
/// SQLite database at `path` by a Rust thread and never reach JS. Opens the file now, so a
/// bad path throws here.
pub extern "C" fn sink_sqlite(env: Env, info: sys::napi_callback_info) -> Value {
    with_handle::<JsServer>(env, info, |cx, h| {
        let (Some(name), Some(path), Some(table)) = (cx.string(1), cx.string(2), cx.string(3))
        else {
            return Err(Thrown::arg_type("name, path and table must be strings"));
        };
        // Before opening: a closed server must not create the file.
        if h.core.is_closing() {
            return Err(Error::Closed.into());
        }
        open_sqlite(&h.core, &name, &path, &table)?;
        Ok(cx.undefined())
    })
}

#[cfg(feature = "sqlite")]
fn open_sqlite(server: &Server, name: &str, path: &str, table: &str) -> Result<(), Error> {
    let writer = zerowire_core::sqlite::open(std::path::Path::new(path), table)?;
    let sink = zerowire_core::sink::Sink::spawn(name, server.sink_counters(), writer)?;
    server.route_to_sink(name, sink)
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(_: &Server, _: &str, _: &str, _: &str) -> Result<(), Error> {
    Err(Error::Sink(
        "this build of zerowire has no SQLite (built with ZEROWIRE_SQLITE=0)".into(),
    ))
}

pub const FUNCTIONS: &[(&str, ffi::Callback)] = &[
    ("serverCreate", create),
    ("serverStart", start),
    ("serverEndpoint", endpoint),
    ("serverRoute", route),
    ("serverReply", reply),
    ("serverSendTo", send_to),
    ("serverBroadcast", broadcast),
    ("serverFlush", handle::flush::<JsServer>),
    ("serverClose", handle::close::<JsServer>),
    ("serverCloseSync", handle::close_sync::<JsServer>),
    ("serverRef", handle::set_ref::<JsServer>),
    ("serverStats", stats),
    ("serverAuthorize", authorize),
    ("serverSinkSqlite", sink_sqlite),
];
