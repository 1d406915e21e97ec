//! Every raw N-API call of the addon lives here, and so does every `unsafe` block.
//!
//! The hot functions (`clientSend`, `clientRequest`) are plain N-API callbacks rather than
//! `#[napi]` methods: a class method measured ≈ 250 ns more per call, and the string argument
//! is written straight into the buffer we send instead of going through an intermediate
//! `String`. Buffers of 16 KiB and more are not copied at all: we keep a reference to the JS
//! object until the engine has written the bytes, and the reference is released on the main
//! thread at the next wake-up.

use std::cell::{Cell, RefCell, RefMut};
use std::ffi::{c_char, c_void, CString};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use napi::sys;
use zerowire_core::client::Queued;
use zerowire_core::queue::Staging;
use zerowire_core::stats::StatsSnapshot;
use zerowire_core::{Client, Error, Event, Waker};

use crate::convert;

/// Buffers at least this large are sent without a copy (a reference is cheaper than memcpy).
const ZERO_COPY_MIN: usize = 16 * 1024;
/// Strings up to this many UTF-16 units are converted in a reusable scratch buffer and then
/// copied to an exact-size allocation; longer ones are written in place and shrunk.
const SCRATCH_UNITS: usize = 8 * 1024;

/// A raw pointer that may cross threads because N-API says the object is thread-safe
/// (threadsafe functions) or because only the main thread dereferences it (refs).
#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// References to JS buffers whose bytes the engine no longer needs; deleted on the main thread.
#[derive(Default)]
struct ReleaseList(Mutex<Vec<SendPtr<sys::napi_ref__>>>);

/// Everything one JS client owns on the native side. Only the JS thread touches a Handle (every
/// N-API callback and finalizer runs there), hence `Rc`; the engine thread gets the `Gate` and
/// the release list through their own `Arc`s.
struct Handle {
    client: OnceLock<Client>,
    /// Messages of the current JS tick, handed to the engine by `clientFlush`.
    staging: RefCell<Staging>,
    /// A `clientFlush` is already scheduled for this tick.
    flush_scheduled: Cell<bool>,
    tsfn: OnceLock<SendPtr<sys::napi_threadsafe_function__>>,
    /// Closed when the env goes away or the client finished closing: no more calls into JS.
    gate: Arc<Gate>,
    releases: Arc<ReleaseList>,
    refd: AtomicBool,
    finished: AtomicBool,
    linger: Duration,
}

struct Gate {
    open: Mutex<bool>,
    tsfn: OnceLock<SendPtr<sys::napi_threadsafe_function__>>,
}

impl Gate {
    fn call(&self) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let (true, Some(tsfn)) = (*open, self.tsfn.get()) {
            // Non-blocking and unbounded queue: this never waits on the JS thread.
            unsafe {
                sys::napi_call_threadsafe_function(
                    tsfn.0,
                    ptr::null_mut(),
                    sys::ThreadsafeFunctionCallMode::nonblocking,
                );
            }
        }
    }

    fn shut(&self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = false;
    }
}

struct GateWaker(Arc<Gate>);
impl Waker for GateWaker {
    fn wake(&self) {
        self.0.call();
    }
}

/// Keeps a JS buffer alive while the engine holds its bytes. Dropped on the engine thread, so
/// it only hands the reference back; the main thread deletes it.
struct JsBytes {
    data: SendPtr<u8>,
    len: usize,
    reference: SendPtr<sys::napi_ref__>,
    releases: Arc<ReleaseList>,
    gate: Arc<Gate>,
}

impl AsRef<[u8]> for JsBytes {
    fn as_ref(&self) -> &[u8] {
        // The referenced buffer keeps `data` alive and in place until we release it.
        unsafe { std::slice::from_raw_parts(self.data.0, self.len) }
    }
}

impl Drop for JsBytes {
    fn drop(&mut self) {
        let first = {
            let mut list = self.releases.0.lock().unwrap_or_else(|e| e.into_inner());
            list.push(self.reference);
            list.len() == 1
        };
        if first {
            self.gate.call();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers over raw N-API.

type Env = sys::napi_env;
type Value = sys::napi_value;

fn cstr(s: &str) -> CString {
    CString::new(s.replace('\0', "?")).unwrap_or_default()
}

enum Thrown {
    Type(&'static str, String),
    Range(&'static str, String),
    Plain(&'static str, String),
}

impl From<Error> for Thrown {
    fn from(e: Error) -> Self {
        match e {
            Error::MessageTooLarge { .. } | Error::InvalidOption(_) => {
                Thrown::Range(e.code(), e.to_string())
            }
            Error::InvalidEndpoint(_) => Thrown::Type(e.code(), e.to_string()),
            _ => Thrown::Plain(e.code(), e.to_string()),
        }
    }
}

unsafe fn throw(env: Env, t: Thrown) -> Value {
    let (code, msg) = match &t {
        Thrown::Type(c, m) | Thrown::Range(c, m) | Thrown::Plain(c, m) => (cstr(c), cstr(m)),
    };
    match t {
        Thrown::Type(..) => sys::napi_throw_type_error(env, code.as_ptr(), msg.as_ptr()),
        Thrown::Range(..) => sys::napi_throw_range_error(env, code.as_ptr(), msg.as_ptr()),
        Thrown::Plain(..) => sys::napi_throw_error(env, code.as_ptr(), msg.as_ptr()),
    };
    ptr::null_mut()
}

unsafe fn args<const N: usize>(env: Env, info: sys::napi_callback_info) -> [Value; N] {
    let mut argv = [ptr::null_mut(); N];
    let mut argc = N;
    sys::napi_get_cb_info(
        env,
        info,
        &mut argc,
        argv.as_mut_ptr(),
        ptr::null_mut(),
        ptr::null_mut(),
    );
    // Missing arguments read as undefined, like in JS.
    if argc < N {
        let mut undef = ptr::null_mut();
        sys::napi_get_undefined(env, &mut undef);
        for a in argv.iter_mut().skip(argc) {
            *a = undef;
        }
    }
    argv
}

unsafe fn handle<'a>(env: Env, v: Value) -> Result<&'a Handle, Thrown> {
    let mut data: *mut c_void = ptr::null_mut();
    if sys::napi_get_value_external(env, v, &mut data) != sys::Status::napi_ok || data.is_null() {
        return Err(Thrown::Type(
            "ERR_INVALID_ARG_TYPE",
            "not a zerowire client handle".into(),
        ));
    }
    // The external owns one strong count, so the Handle outlives this call.
    Ok(&*(data as *const Handle))
}

unsafe fn number(env: Env, v: Value) -> Option<f64> {
    let mut out = 0f64;
    (sys::napi_get_value_double(env, v, &mut out) == sys::Status::napi_ok).then_some(out)
}

unsafe fn string(env: Env, v: Value) -> Option<String> {
    let mut len = 0usize;
    if sys::napi_get_value_string_utf8(env, v, ptr::null_mut(), 0, &mut len) != sys::Status::napi_ok
    {
        return None;
    }
    let mut buf = vec![0u8; len + 1];
    sys::napi_get_value_string_utf8(env, v, buf.as_mut_ptr() as *mut c_char, len + 1, &mut len);
    buf.truncate(len);
    String::from_utf8(buf).ok()
}

unsafe fn boolean(env: Env, b: bool) -> Value {
    let mut out = ptr::null_mut();
    sys::napi_get_boolean(env, b, &mut out);
    out
}

unsafe fn undefined(env: Env) -> Value {
    let mut out = ptr::null_mut();
    sys::napi_get_undefined(env, &mut out);
    out
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0u8; SCRATCH_UNITS * 3 + 1]);
}

/// The payload of a `send`/`request` argument: a string (UTF-8 encoded here, the one copy
/// that cannot be avoided) or a Uint8Array/Buffer (copied if small, referenced if large).
unsafe fn payload(env: Env, v: Value, h: &Handle, max: usize) -> Result<Bytes, Thrown> {
    let mut ty = sys::ValueType::napi_undefined;
    sys::napi_typeof(env, v, &mut ty);
    if ty == sys::ValueType::napi_string {
        let mut units = 0usize;
        sys::napi_get_value_string_utf16(env, v, ptr::null_mut(), 0, &mut units);
        // Every UTF-16 unit is at least one UTF-8 byte: refuse before converting anything.
        if units > max {
            return Err(Error::MessageTooLarge { size: units, max }.into());
        }
        let bytes = if units <= SCRATCH_UNITS {
            SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                let mut written = 0usize;
                sys::napi_get_value_string_utf8(
                    env,
                    v,
                    s.as_mut_ptr() as *mut c_char,
                    units * 3 + 1,
                    &mut written,
                );
                Bytes::copy_from_slice(&s[..written])
            })
        } else {
            let mut buf: Vec<u8> = Vec::with_capacity(units * 3 + 1);
            let mut written = 0usize;
            sys::napi_get_value_string_utf8(
                env,
                v,
                buf.as_mut_ptr() as *mut c_char,
                buf.capacity(),
                &mut written,
            );
            buf.set_len(written);
            // Large blocks are mmapped: shrinking is a cheap mremap, not a copy.
            if buf.capacity() - written > 4096 {
                buf.shrink_to_fit();
            }
            Bytes::from(buf)
        };
        if bytes.len() > max {
            return Err(Error::MessageTooLarge {
                size: bytes.len(),
                max,
            }
            .into());
        }
        return Ok(bytes);
    }
    if ty == sys::ValueType::napi_object {
        let mut is_typed = false;
        sys::napi_is_typedarray(env, v, &mut is_typed);
        if is_typed {
            let mut kind = sys::TypedarrayType::int8_array;
            let mut len = 0usize;
            let mut data: *mut c_void = ptr::null_mut();
            sys::napi_get_typedarray_info(
                env,
                v,
                &mut kind,
                &mut len,
                &mut data,
                ptr::null_mut(),
                ptr::null_mut(),
            );
            if kind == sys::TypedarrayType::uint8_array {
                if len > max {
                    return Err(Error::MessageTooLarge { size: len, max }.into());
                }
                if len < ZERO_COPY_MIN || data.is_null() {
                    let slice = if len == 0 {
                        &[][..]
                    } else {
                        std::slice::from_raw_parts(data as *const u8, len)
                    };
                    return Ok(Bytes::copy_from_slice(slice));
                }
                let mut reference = ptr::null_mut();
                sys::napi_create_reference(env, v, 1, &mut reference);
                return Ok(Bytes::from_owner(JsBytes {
                    data: SendPtr(data as *mut u8),
                    len,
                    reference: SendPtr(reference),
                    releases: h.releases.clone(),
                    gate: h.gate.clone(),
                }));
            }
        }
    }
    Err(Thrown::Type(
        "ERR_INVALID_ARG_TYPE",
        "the message must be a string, a Buffer or a Uint8Array".into(),
    ))
}

unsafe fn release_refs(env: Env, h: &Handle) {
    let refs = std::mem::take(&mut *h.releases.0.lock().unwrap_or_else(|e| e.into_inner()));
    for r in refs {
        sys::napi_delete_reference(env, r.0);
    }
}

// ---------------------------------------------------------------------------------------------
// The exported functions.

/// clientCreate(endpoint, [timeoutMs, hwm, hwBytes, maxBytes, lingerMs, reconnectMs,
/// reconnectMaxMs], onEvents) → handle. The JS wrapper has already checked the types.
unsafe extern "C" fn client_create(env: Env, info: sys::napi_callback_info) -> Value {
    let [endpoint_v, numbers_v, on_events] = args::<3>(env, info);
    let endpoint = match string(env, endpoint_v) {
        Some(s) => s,
        None => {
            return throw(
                env,
                Thrown::Type("ERR_INVALID_ARG_TYPE", "endpoint must be a string".into()),
            )
        }
    };
    let mut n = [0f64; 7];
    for (i, slot) in n.iter_mut().enumerate() {
        let mut el = ptr::null_mut();
        sys::napi_get_element(env, numbers_v, i as u32, &mut el);
        *slot = number(env, el).unwrap_or(f64::NAN);
    }
    let options = match convert::options(&n) {
        Ok(o) => o,
        Err(e) => return throw(env, e.into()),
    };
    let linger = options.linger;
    let h = Rc::new(Handle {
        client: OnceLock::new(),
        staging: RefCell::new(Staging::default()),
        flush_scheduled: Cell::new(false),
        tsfn: OnceLock::new(),
        gate: Arc::new(Gate {
            open: Mutex::new(true),
            tsfn: OnceLock::new(),
        }),
        releases: Arc::new(ReleaseList::default()),
        refd: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        linger,
    });

    let mut name = ptr::null_mut();
    let label = b"zerowire.client";
    sys::napi_create_string_utf8(
        env,
        label.as_ptr() as *const c_char,
        label.len() as isize,
        &mut name,
    );
    let mut tsfn = ptr::null_mut();
    // The threadsafe function owns one strong count, given back in `tsfn_finalize`.
    let context = Rc::into_raw(h.clone()) as *mut c_void;
    let status = sys::napi_create_threadsafe_function(
        env,
        on_events,
        ptr::null_mut(),
        name,
        0,
        1,
        ptr::null_mut(),
        Some(tsfn_finalize),
        context,
        Some(deliver),
        &mut tsfn,
    );
    if status != sys::Status::napi_ok {
        drop(Rc::from_raw(context as *const Handle));
        return throw(
            env,
            Thrown::Type("ERR_INVALID_ARG_TYPE", "onEvents must be a function".into()),
        );
    }
    // Weak until a request is pending: an idle client does not keep the process alive.
    sys::napi_unref_threadsafe_function(env, tsfn);
    let _ = h.tsfn.set(SendPtr(tsfn));
    let _ = h.gate.tsfn.set(SendPtr(tsfn));

    match Client::connect(&endpoint, options, Box::new(GateWaker(h.gate.clone()))) {
        Ok(c) => {
            let _ = h.client.set(c);
        }
        Err(e) => {
            h.gate.shut();
            sys::napi_release_threadsafe_function(tsfn, sys::ThreadsafeFunctionReleaseMode::abort);
            return throw(env, e.into());
        }
    }
    // Runs if the env is torn down (worker terminated, process exiting) before close().
    // Registered after the threadsafe function, so it runs before Node finalizes it.
    sys::napi_add_env_cleanup_hook(
        env,
        Some(env_cleanup),
        Rc::into_raw(h.clone()) as *mut c_void,
    );

    let mut external = ptr::null_mut();
    sys::napi_create_external(
        env,
        Rc::into_raw(h) as *mut c_void,
        Some(external_finalize),
        ptr::null_mut(),
        &mut external,
    );
    external
}

unsafe extern "C" fn external_finalize(_env: Env, data: *mut c_void, _hint: *mut c_void) {
    drop(Rc::from_raw(data as *const Handle));
}

unsafe extern "C" fn tsfn_finalize(_env: Env, _data: *mut c_void, context: *mut c_void) {
    drop(Rc::from_raw(context as *const Handle));
}

unsafe extern "C" fn env_cleanup(arg: *mut c_void) {
    let h = Rc::from_raw(arg as *const Handle);
    if !h.finished.swap(true, Ordering::AcqRel) {
        // No JS can run any more; stop calling into it, then let the engine drain (bounded)
        // and end its thread so nothing outlives the env.
        h.gate.shut();
        if let Some(c) = h.client.get() {
            c.shutdown(
                &mut h.staging(),
                h.linger,
                h.linger + Duration::from_millis(500),
            );
        }
    }
}

/// Runs on the main thread for every wake-up: releases buffer references, then hands the
/// batch of events to JS as one flat array `[kind, id, body, kind, id, body, …]`.
unsafe extern "C" fn deliver(env: Env, js_cb: Value, context: *mut c_void, _data: *mut c_void) {
    if env.is_null() || context.is_null() {
        return;
    }
    let h = &*(context as *const Handle);
    release_refs(env, h);
    let Some(client) = h.client.get() else { return };
    let events = client.take_events();
    if events.is_empty() {
        return;
    }
    let mut batch = ptr::null_mut();
    sys::napi_create_array_with_length(env, events.len() * 3, &mut batch);
    let mut closed = false;
    for (i, event) in events.iter().enumerate() {
        let (kind, id, body): (u32, u32, Option<&[u8]>) = match event {
            Event::Reply { id, body } => (0, *id, Some(body)),
            Event::ErrorReply { id, message } => (1, *id, Some(message)),
            Event::Timeout { id } => (2, *id, None),
            Event::Push { body } => (3, 0, Some(body)),
            Event::Closed => {
                closed = true;
                (4, 0, None)
            }
        };
        let base = (i * 3) as u32;
        let mut v = ptr::null_mut();
        sys::napi_create_uint32(env, kind, &mut v);
        sys::napi_set_element(env, batch, base, v);
        sys::napi_create_uint32(env, id, &mut v);
        sys::napi_set_element(env, batch, base + 1, v);
        if let Some(b) = body {
            sys::napi_create_string_utf8(
                env,
                b.as_ptr() as *const c_char,
                b.len() as isize,
                &mut v,
            );
            sys::napi_set_element(env, batch, base + 2, v);
        }
    }
    drop(events);
    let mut global = ptr::null_mut();
    sys::napi_get_global(env, &mut global);
    let mut argv = [batch];
    sys::napi_call_function(env, global, js_cb, 1, argv.as_mut_ptr(), ptr::null_mut());
    if closed {
        finish(env, h);
    }
}

/// After `Event::Closed`: the engine thread has ended; drop everything that calls into JS.
unsafe fn finish(env: Env, h: &Handle) {
    if h.finished.swap(true, Ordering::AcqRel) {
        return;
    }
    h.gate.shut();
    release_refs(env, h);
    if let Some(c) = h.client.get() {
        // The thread has signalled its end; joining is immediate.
        c.shutdown(&mut h.staging(), Duration::ZERO, Duration::from_millis(100));
    }
    // Give back the cleanup hook's strong count.
    let hook_arg = h as *const Handle as *mut c_void;
    if sys::napi_remove_env_cleanup_hook(env, Some(env_cleanup), hook_arg) == sys::Status::napi_ok {
        drop(Rc::from_raw(hook_arg as *const Handle));
    }
    if let Some(t) = h.tsfn.get() {
        sys::napi_release_threadsafe_function(t.0, sys::ThreadsafeFunctionReleaseMode::release);
    }
}

impl Handle {
    fn staging(&self) -> RefMut<'_, Staging> {
        self.staging.borrow_mut()
    }

    /// What `clientSend`/`clientRequest` return: 0 refused, 1 queued, 2 queued and the caller
    /// must schedule `clientFlush` for the end of the tick (the first message of a tick).
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
}

unsafe fn int(env: Env, n: i32) -> Value {
    let mut out = ptr::null_mut();
    sys::napi_create_int32(env, n, &mut out);
    out
}

/// clientSend(handle, raw) → 0 refused (full), 1 queued, 2 queued + schedule clientFlush.
/// Throws on bad input.
unsafe extern "C" fn client_send(env: Env, info: sys::napi_callback_info) -> Value {
    let [hv, raw] = args::<2>(env, info);
    let h = match handle(env, hv) {
        Ok(h) => h,
        Err(t) => return throw(env, t),
    };
    let Some(client) = h.client.get() else {
        return throw(env, Error::Closed.into());
    };
    if client.is_closing() {
        return throw(env, Error::Closed.into());
    }
    if !h.releases.0.lock().map(|l| l.is_empty()).unwrap_or(true) {
        release_refs(env, h);
    }
    let body = match payload(env, raw, h, client.max_message_bytes()) {
        Ok(b) => b,
        Err(t) => return throw(env, t),
    };
    let result = client.send(&mut h.staging(), body);
    match result {
        Ok(q) => int(env, h.outcome(q)),
        Err(e) => throw(env, e.into()),
    }
}

/// clientRequest(handle, id, raw, timeoutMs) → like clientSend.
unsafe extern "C" fn client_request(env: Env, info: sys::napi_callback_info) -> Value {
    let [hv, idv, raw, tv] = args::<4>(env, info);
    let h = match handle(env, hv) {
        Ok(h) => h,
        Err(t) => return throw(env, t),
    };
    let Some(client) = h.client.get() else {
        return throw(env, Error::Closed.into());
    };
    if client.is_closing() {
        return throw(env, Error::Closed.into());
    }
    let mut id = 0u32;
    sys::napi_get_value_uint32(env, idv, &mut id);
    let timeout = number(env, tv)
        .filter(|t| *t >= 1.0 && t.is_finite())
        .map(|t| Duration::from_micros((t * 1000.0) as u64));
    let body = match payload(env, raw, h, client.max_message_bytes()) {
        Ok(b) => b,
        Err(t) => return throw(env, t),
    };
    let result = client.request(&mut h.staging(), id, body, timeout);
    match result {
        Ok(q) => int(env, h.outcome(q)),
        Err(e) => throw(env, e.into()),
    }
}

/// clientCancel(handle, id)
unsafe extern "C" fn client_cancel(env: Env, info: sys::napi_callback_info) -> Value {
    let [hv, idv] = args::<2>(env, info);
    let h = match handle(env, hv) {
        Ok(h) => h,
        Err(t) => return throw(env, t),
    };
    let mut id = 0u32;
    sys::napi_get_value_uint32(env, idv, &mut id);
    if let Some(c) = h.client.get() {
        c.cancel(&mut h.staging(), id);
    }
    undefined(env)
}

/// clientFlush(handle): hands the messages staged during this tick to the engine.
unsafe extern "C" fn client_flush(env: Env, info: sys::napi_callback_info) -> Value {
    let [hv] = args::<1>(env, info);
    let h = match handle(env, hv) {
        Ok(h) => h,
        Err(t) => return throw(env, t),
    };
    h.flush_scheduled.set(false);
    if let Some(c) = h.client.get() {
        c.flush(&mut h.staging());
    }
    undefined(env)
}

/// clientClose(handle) → true if this call started the close.
unsafe extern "C" fn client_close(env: Env, info: sys::napi_callback_info) -> Value {
    let [hv] = args::<1>(env, info);
    let h = match handle(env, hv) {
        Ok(h) => h,
        Err(t) => return throw(env, t),
    };
    let started = h
        .client
        .get()
        .map(|c| c.close(&mut h.staging()))
        .unwrap_or(false);
    boolean(env, started)
}

/// clientCloseSync(handle) → true if the engine ended. Blocks for at most linger + 250 ms;
/// meant for `process.on('exit')`, where nothing asynchronous can run any more.
unsafe extern "C" fn client_close_sync(env: Env, info: sys::napi_callback_info) -> Value {
    let [hv] = args::<1>(env, info);
    let h = match handle(env, hv) {
        Ok(h) => h,
        Err(t) => return throw(env, t),
    };
    let ended = match h.client.get() {
        Some(c) if !h.finished.load(Ordering::Acquire) => c.shutdown(
            &mut h.staging(),
            h.linger,
            h.linger + Duration::from_millis(250),
        ),
        _ => true,
    };
    boolean(env, ended)
}

/// clientRef(handle, bool): keep the process alive (a request is pending) or not.
unsafe extern "C" fn client_ref(env: Env, info: sys::napi_callback_info) -> Value {
    let [hv, bv] = args::<2>(env, info);
    let h = match handle(env, hv) {
        Ok(h) => h,
        Err(t) => return throw(env, t),
    };
    let mut want = false;
    sys::napi_get_value_bool(env, bv, &mut want);
    if !h.finished.load(Ordering::Acquire) && h.refd.swap(want, Ordering::AcqRel) != want {
        if let Some(t) = h.tsfn.get() {
            if want {
                sys::napi_ref_threadsafe_function(env, t.0);
            } else {
                sys::napi_unref_threadsafe_function(env, t.0);
            }
        }
    }
    undefined(env)
}

/// clientStats(handle) → plain object of counters.
unsafe extern "C" fn client_stats(env: Env, info: sys::napi_callback_info) -> Value {
    let [hv] = args::<1>(env, info);
    let h = match handle(env, hv) {
        Ok(h) => h,
        Err(t) => return throw(env, t),
    };
    let s = h.client.get().map(|c| c.stats()).unwrap_or_default();
    stats_object(env, &s)
}

unsafe fn stats_object(env: Env, s: &StatsSnapshot) -> Value {
    let mut obj = ptr::null_mut();
    sys::napi_create_object(env, &mut obj);
    for (name, value) in convert::stats_fields(s) {
        let mut v = ptr::null_mut();
        sys::napi_create_double(env, value as f64, &mut v);
        let key = cstr(name);
        sys::napi_set_named_property(env, obj, key.as_ptr(), v);
    }
    let key = cstr("connected");
    sys::napi_set_named_property(env, obj, key.as_ptr(), boolean(env, s.connected));
    obj
}

/// Adds the raw functions to `exports`.
pub fn register(env: Env, exports: Value) {
    type Cb = unsafe extern "C" fn(Env, sys::napi_callback_info) -> Value;
    let functions: [(&str, Cb); 9] = [
        ("clientCreate", client_create),
        ("clientSend", client_send),
        ("clientFlush", client_flush),
        ("clientRequest", client_request),
        ("clientCancel", client_cancel),
        ("clientClose", client_close),
        ("clientCloseSync", client_close_sync),
        ("clientRef", client_ref),
        ("clientStats", client_stats),
    ];
    for (name, cb) in functions {
        let cname = cstr(name);
        let mut f = ptr::null_mut();
        unsafe {
            sys::napi_create_function(
                env,
                cname.as_ptr(),
                name.len() as isize,
                Some(cb),
                ptr::null_mut(),
                &mut f,
            );
            sys::napi_set_named_property(env, exports, cname.as_ptr(), f);
        }
    }
}
