//! Every raw N-API call of the addon, and so every `unsafe` block, lives in this file. What it
//! exports is a small safe API for `client.rs` and `server.rs`:
//!
//! - [`Cx`]: the arguments of a call and the values it returns or throws;
//! - tagged externals: an `Rc<T>` handed to JS as an opaque handle and checked on the way back;
//! - [`Cx::payload`]: a string (UTF-8 encoded once, straight into the buffer we send) or a
//!   Uint8Array/Buffer (copied when small, referenced without a copy from 16 KiB up);
//! - [`Wakeup`]: one long-lived threadsafe function per handle that the engine thread calls to
//!   have a batch delivered on the JS thread;
//! - [`EventArray`]: the flat array a batch is delivered as.
//!
//! The exported functions are plain N-API callbacks rather than `#[napi]` methods: a class
//! method measured ≈ 250 ns more per call, and a `String` argument would be an extra copy.

use std::cell::Cell;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CString};
use std::ptr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use napi::sys;
use zerowire_core::arena::Arena;
use zerowire_core::{EngineKind, Error, Waker};

pub type Env = sys::napi_env;
pub type Value = sys::napi_value;
pub type Callback = extern "C" fn(Env, sys::napi_callback_info) -> Value;

/// Most events handed to JS in one call; the rest follow in the next turn of the event loop.
pub const MAX_BATCH: usize = 4096;
/// Buffers at least this large are sent without a copy (a reference is cheaper than memcpy),
/// and received ones handed to JS without one.
pub const ZERO_COPY_MIN: usize = 16 * 1024;
/// Strings up to this many UTF-16 units are encoded straight into a shared arena chunk (no
/// allocation per message); longer ones into a buffer of their own, pooled from 64 KiB up.
const ARENA_UNITS: usize = 8 * 1024;
/// The most a string is encoded into the arena before its length is known (see
/// `short_string`). A longer one is encoded again after measuring, so this bounds the waste.
const FAST_TRY: usize = 16 * 1024;
/// Below this much room left in the chunk, the attempt starts a fresh chunk instead.
const FAST_MIN: usize = 256;

/// A raw pointer that may cross threads: N-API threadsafe functions are thread-safe by design,
/// and references are only dereferenced (deleted) on the JS thread.
#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: see the type's comment; the pointee is never touched off the JS thread except
// through N-API calls documented as thread-safe.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

fn cstr(s: &str) -> CString {
    CString::new(s.replace('\0', "?")).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Errors thrown to JS.

/// An error to throw, with its JS class and Node-style code.
pub enum Thrown {
    Type(&'static str, String),
    Range(&'static str, String),
    Plain(&'static str, String),
}

impl Thrown {
    pub fn arg_type(message: &str) -> Thrown {
        Thrown::Type("ERR_INVALID_ARG_TYPE", message.to_owned())
    }
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

// ---------------------------------------------------------------------------------------------
// Call context.

/// The env and arguments of one N-API callback. Missing arguments read as `undefined`.
pub struct Cx {
    env: Env,
    argv: [Value; 5],
}

impl Cx {
    pub fn new(env: Env, info: sys::napi_callback_info) -> Cx {
        let mut argv = [ptr::null_mut(); 5];
        let mut argc = argv.len();
        // SAFETY: env and info come straight from N-API for this call; argv has room for argc.
        unsafe {
            sys::napi_get_cb_info(
                env,
                info,
                &mut argc,
                argv.as_mut_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
            );
            // N-API fills the slots beyond the arguments given with `undefined` itself.
        }
        Cx { env, argv }
    }

    pub fn env(&self) -> Env {
        self.env
    }

    pub fn arg(&self, i: usize) -> Value {
        self.argv[i]
    }

    pub fn throw(&self, t: Thrown) -> Value {
        let (code, msg) = match &t {
            Thrown::Type(c, m) | Thrown::Range(c, m) | Thrown::Plain(c, m) => (cstr(c), cstr(m)),
        };
        // SAFETY: valid env and NUL-terminated strings that outlive the call.
        unsafe {
            match t {
                Thrown::Type(..) => {
                    sys::napi_throw_type_error(self.env, code.as_ptr(), msg.as_ptr())
                }
                Thrown::Range(..) => {
                    sys::napi_throw_range_error(self.env, code.as_ptr(), msg.as_ptr())
                }
                Thrown::Plain(..) => sys::napi_throw_error(self.env, code.as_ptr(), msg.as_ptr()),
            };
        }
        ptr::null_mut()
    }

    /// Returns `Ok` values as they are and throws `Err`s.
    pub fn result(&self, r: Result<Value, Thrown>) -> Value {
        r.unwrap_or_else(|t| self.throw(t))
    }

    pub fn string(&self, i: usize) -> Option<String> {
        let v = self.argv[i];
        let mut len = 0usize;
        // SAFETY: a null buffer asks for the length only; then the buffer has len + 1 bytes.
        unsafe {
            if sys::napi_get_value_string_utf8(self.env, v, ptr::null_mut(), 0, &mut len)
                != sys::Status::napi_ok
            {
                return None;
            }
            let mut buf = vec![0u8; len + 1];
            sys::napi_get_value_string_utf8(
                self.env,
                v,
                buf.as_mut_ptr() as *mut c_char,
                len + 1,
                &mut len,
            );
            buf.truncate(len);
            String::from_utf8(buf).ok()
        }
    }

    pub fn number(&self, i: usize) -> Option<f64> {
        number(self.env, self.argv[i])
    }

    pub fn u32(&self, i: usize) -> u32 {
        let mut out = 0u32;
        // SAFETY: valid env and value; a non-number leaves `out` at 0.
        unsafe { sys::napi_get_value_uint32(self.env, self.argv[i], &mut out) };
        out
    }

    pub fn bool(&self, i: usize) -> bool {
        let mut out = false;
        // SAFETY: valid env and value; a non-boolean leaves `out` false.
        unsafe { sys::napi_get_value_bool(self.env, self.argv[i], &mut out) };
        out
    }

    /// The first N elements of the array argument `i` as numbers (NaN where missing).
    pub fn numbers<const N: usize>(&self, i: usize) -> [f64; N] {
        let mut out = [f64::NAN; N];
        for (index, n) in out.iter_mut().enumerate() {
            *n = self.element_number(i, index as u32).unwrap_or(f64::NAN);
        }
        out
    }

    /// Element `index` of the array argument `i`, as a number.
    fn element_number(&self, i: usize, index: u32) -> Option<f64> {
        let mut el = ptr::null_mut();
        // SAFETY: valid env; a non-array yields an error status and `el` stays null.
        unsafe { sys::napi_get_element(self.env, self.argv[i], index, &mut el) };
        if el.is_null() {
            return None;
        }
        number(self.env, el)
    }

    pub fn int(&self, n: i32) -> Value {
        let mut out = ptr::null_mut();
        // SAFETY: valid env.
        unsafe { sys::napi_create_int32(self.env, n, &mut out) };
        out
    }

    pub fn boolean(&self, b: bool) -> Value {
        boolean(self.env, b)
    }

    pub fn undefined(&self) -> Value {
        let mut out = ptr::null_mut();
        // SAFETY: valid env.
        unsafe { sys::napi_get_undefined(self.env, &mut out) };
        out
    }

    pub fn str(&self, s: &str) -> Value {
        string_value(self.env, s.as_bytes())
    }

    /// A plain object of numbers (and booleans).
    pub fn object(&self, numbers: &[(&str, u64)], flags: &[(&str, bool)]) -> Value {
        let mut obj = ptr::null_mut();
        // SAFETY: valid env; keys are NUL-terminated and outlive each call.
        unsafe {
            sys::napi_create_object(self.env, &mut obj);
            for (name, value) in numbers {
                let mut v = ptr::null_mut();
                sys::napi_create_double(self.env, *value as f64, &mut v);
                let key = cstr(name);
                sys::napi_set_named_property(self.env, obj, key.as_ptr(), v);
            }
            for (name, value) in flags {
                let key = cstr(name);
                sys::napi_set_named_property(
                    self.env,
                    obj,
                    key.as_ptr(),
                    boolean(self.env, *value),
                );
            }
        }
        obj
    }

    /// Sets `obj[name] = value` (nesting the objects [`Cx::object`] makes).
    pub fn set(&self, obj: Value, name: &str, value: Value) {
        let key = cstr(name);
        // SAFETY: valid env; obj and value are live handles of this call's scope.
        unsafe {
            sys::napi_set_named_property(self.env, obj, key.as_ptr(), value);
        }
    }

    /// The handle argument `i`, which must be an external made by [`Cx::external`] for a `T`.
    pub fn handle<T: Tagged>(&self, i: usize) -> Result<&T, Thrown> {
        let mut data: *mut c_void = ptr::null_mut();
        // SAFETY: napi_get_value_external only reads; a non-external is reported by status.
        let ok = unsafe { sys::napi_get_value_external(self.env, self.argv[i], &mut data) }
            == sys::Status::napi_ok;
        if !ok || data.is_null() {
            return Err(Thrown::arg_type("not a zerowire handle"));
        }
        let holder = data as *const Holder<T>;
        // SAFETY: every external this addon makes points to a Holder whose first field is the
        // tag (repr(C)), so reading it is valid whatever T the holder was made for.
        let tag = unsafe { ptr::addr_of!((*holder).tag).read() };
        if tag != T::TAG {
            return Err(Thrown::arg_type("wrong kind of zerowire handle"));
        }
        // SAFETY: the tag matched, so this is a Holder<T>; the external owns it until GC, which
        // cannot happen while JS passes it to this call.
        Ok(unsafe { &(*holder).value })
    }

    /// Hands `value` to JS as an opaque handle; it is dropped when the handle is collected.
    pub fn external<T: Tagged>(&self, value: Rc<T>) -> Value {
        let holder = Box::into_raw(Box::new(Holder { tag: T::TAG, value }));
        let mut out = ptr::null_mut();
        // SAFETY: the finalizer frees exactly this Box, once, on the JS thread.
        unsafe {
            sys::napi_create_external(
                self.env,
                holder as *mut c_void,
                Some(drop_holder::<T>),
                ptr::null_mut(),
                &mut out,
            );
        }
        out
    }

    /// The payload argument `i`: a string, Buffer or Uint8Array, at most `max` bytes.
    pub fn payload(&self, i: usize, max: usize, refs: &Arc<BufferRefs>) -> Result<Bytes, Thrown> {
        // SAFETY: valid env and value; see `payload`.
        unsafe { payload(self.env, self.argv[i], max, refs) }
    }
}

fn number(env: Env, v: Value) -> Option<f64> {
    let mut out = 0f64;
    // SAFETY: valid env and value; a non-number is reported by status.
    (unsafe { sys::napi_get_value_double(env, v, &mut out) } == sys::Status::napi_ok).then_some(out)
}

fn boolean(env: Env, b: bool) -> Value {
    let mut out = ptr::null_mut();
    // SAFETY: valid env.
    unsafe { sys::napi_get_boolean(env, b, &mut out) };
    out
}

fn string_value(env: Env, bytes: &[u8]) -> Value {
    let mut out = ptr::null_mut();
    // SAFETY: valid env; the length is passed explicitly, no NUL needed.
    unsafe {
        sys::napi_create_string_utf8(
            env,
            bytes.as_ptr() as *const c_char,
            bytes.len() as isize,
            &mut out,
        )
    };
    out
}

fn buffer_copy(env: Env, bytes: &[u8]) -> Value {
    let (mut data, mut out) = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: valid env; N-API copies `len` bytes from a live slice.
    unsafe {
        sys::napi_create_buffer_copy(
            env,
            bytes.len(),
            bytes.as_ptr() as *const c_void,
            &mut data,
            &mut out,
        )
    };
    out
}

// ---------------------------------------------------------------------------------------------
// Tagged externals.

/// A type handed to JS as a handle. The tag tells the kinds of handle apart.
pub trait Tagged: 'static {
    const TAG: u32;
}

#[repr(C)]
struct Holder<T> {
    tag: u32,
    value: Rc<T>,
}

unsafe extern "C" fn drop_bytes(_env: Env, _data: *mut c_void, owner: *mut c_void) {
    drop(Box::from_raw(owner as *mut Bytes));
}

unsafe extern "C" fn drop_holder<T>(_env: Env, data: *mut c_void, _hint: *mut c_void) {
    drop(Box::from_raw(data as *mut Holder<T>));
}

// ---------------------------------------------------------------------------------------------
// Payloads.

/// References to JS buffers whose bytes the engine no longer needs; deleted on the JS thread.
#[derive(Default)]
pub struct BufferRefs {
    list: Mutex<Vec<SendPtr<sys::napi_ref__>>>,
    /// Set with the list non-empty: every send checks it, so it must not take the lock.
    any: AtomicBool,
    /// Called (from the engine thread) when the list goes from empty to not empty.
    wake: OnceLock<Arc<Gate>>,
}

impl BufferRefs {
    pub fn new(wake: Arc<Gate>) -> Arc<BufferRefs> {
        let refs = BufferRefs::default();
        let _ = refs.wake.set(wake);
        Arc::new(refs)
    }

    /// Deletes the references whose bytes were sent. JS thread only.
    pub fn release(&self, env: Env) {
        if !self.any.swap(false, Ordering::Acquire) {
            return;
        }
        let refs = std::mem::take(&mut *self.list.lock().unwrap_or_else(|e| e.into_inner()));
        for r in refs {
            // SAFETY: each reference was created by `payload` on this env and is deleted once.
            unsafe { sys::napi_delete_reference(env, r.0) };
        }
    }
}

/// Keeps a JS buffer alive while the engine holds its bytes. Dropped on the engine thread, so it
/// only hands the reference back; the JS thread deletes it.
struct JsBytes {
    data: SendPtr<u8>,
    len: usize,
    reference: SendPtr<sys::napi_ref__>,
    refs: Arc<BufferRefs>,
}

impl AsRef<[u8]> for JsBytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the referenced buffer keeps `data` alive and in place until released.
        unsafe { std::slice::from_raw_parts(self.data.0, self.len) }
    }
}

impl Drop for JsBytes {
    fn drop(&mut self) {
        let first = {
            let mut list = self.refs.list.lock().unwrap_or_else(|e| e.into_inner());
            list.push(self.reference);
            self.refs.any.store(true, Ordering::Release);
            list.len() == 1
        };
        if let (true, Some(gate)) = (first, self.refs.wake.get()) {
            gate.call();
        }
    }
}

/// Buffers of long strings, handed back once the engine has written them and reused by the
/// next long string. A fresh 1 MiB allocation per message is faulted in page by page, and its
/// free on the engine thread unmaps or trims it again: that cost more than copying the string
/// (bench/NOTES.md). A buffer has room for 3 bytes per UTF-16 unit, but only the pages a string
/// was written into are resident, so the bound counts those: at most POOL_BUFFERS buffers and
/// POOL_BYTES written, process-wide (a burst of 32 1 MiB strings).
static POOL: Mutex<Vec<Pooled>> = Mutex::new(Vec::new());
const POOL_BUFFERS: usize = 32;
const POOL_BYTES: usize = 32 << 20;
/// Shorter strings come from malloc's bins, which is cheap enough.
const POOL_MIN: usize = 64 * 1024;

/// An empty buffer with room for at least `capacity` bytes: the smallest pooled one that
/// fits, or new.
fn pooled(capacity: usize) -> Pooled {
    if capacity >= POOL_MIN {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let best = (0..pool.len())
            .filter(|&i| pool[i].buf.capacity() >= capacity)
            .min_by_key(|&i| pool[i].buf.capacity());
        if let Some(i) = best {
            return pool.swap_remove(i);
        }
    }
    Pooled {
        buf: Vec::with_capacity(capacity),
        touched: 0,
    }
}

/// A long string's bytes; gives its buffer back to the pool when the engine drops it.
struct Pooled {
    buf: Vec<u8>,
    /// The most bytes ever written into `buf`: what it keeps resident.
    touched: usize,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        if buf.capacity() < POOL_MIN {
            return;
        }
        let touched = self.touched.max(buf.len());
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let held: usize = pool.iter().map(|p| p.touched).sum();
        if pool.len() < POOL_BUFFERS && held + touched <= POOL_BYTES {
            buf.clear();
            pool.push(Pooled { buf, touched });
        }
    }
}

thread_local! {
    /// Where short strings are encoded; per JS thread (a worker has its own).
    static ARENA: RefCell<Arena> = RefCell::new(Arena::default());
}

/// What the attempt to encode a string straight into the arena came to.
enum Short {
    Done(Bytes),
    NotAString,
    /// Longer than the room tried (or an odd status): take the measured path.
    Unknown,
}

/// Encodes `v` into the arena's current chunk without asking its type or length first: two
/// N-API calls fewer per `send()` (~10 % of a 1 KiB one), for the common case of a string that
/// fits. V8 stops before a character that does not fit (4 bytes at most) and keeps a byte for
/// the NUL, so a string that left 5 bytes of the room unused is complete.
unsafe fn short_string(env: Env, v: Value) -> Short {
    ARENA.with(|arena| {
        let mut arena = arena.borrow_mut();
        let chunk = arena.room(FAST_MIN);
        let spare = chunk.spare_capacity_mut();
        let room = spare.len().min(FAST_TRY);
        let mut written = 0usize;
        let status = sys::napi_get_value_string_utf8(
            env,
            v,
            spare.as_mut_ptr() as *mut c_char,
            room,
            &mut written,
        );
        if status == sys::Status::napi_string_expected {
            return Short::NotAString;
        }
        if status != sys::Status::napi_ok || written + 5 > room {
            return Short::Unknown;
        }
        chunk.set_len(written);
        Short::Done(chunk.split().freeze())
    })
}

unsafe fn payload(env: Env, v: Value, max: usize, refs: &Arc<BufferRefs>) -> Result<Bytes, Thrown> {
    match short_string(env, v) {
        Short::Done(bytes) => return at_most(bytes, max),
        Short::NotAString => return typed_payload(env, v, max, refs),
        Short::Unknown => {}
    }
    let mut ty = sys::ValueType::napi_undefined;
    sys::napi_typeof(env, v, &mut ty);
    if ty == sys::ValueType::napi_string {
        let mut units = 0usize;
        sys::napi_get_value_string_utf16(env, v, ptr::null_mut(), 0, &mut units);
        // Every UTF-16 unit is at least one UTF-8 byte: refuse before encoding anything.
        if units > max {
            return Err(Error::MessageTooLarge { size: units, max }.into());
        }
        // At most 3 UTF-8 bytes per UTF-16 unit (a surrogate pair: 4 bytes for 2 units).
        let bytes = if units <= ARENA_UNITS {
            ARENA.with(|arena| {
                let mut arena = arena.borrow_mut();
                let need = units * 3 + 1;
                let arena = arena.room(need);
                let spare = arena.spare_capacity_mut();
                let mut written = 0usize;
                sys::napi_get_value_string_utf8(
                    env,
                    v,
                    spare.as_mut_ptr() as *mut c_char,
                    need,
                    &mut written,
                );
                // The encoder wrote `written` bytes (plus a NUL we leave outside the message).
                arena.set_len(written);
                arena.split().freeze()
            })
        } else {
            // One pass: V8 encodes straight into room for 3 bytes per unit (a pooled buffer, so
            // its pages are warm). Measuring first (V8's Utf8Length, then a Latin-1 copy when
            // all ASCII) was two passes: Utf8Length alone is ~120 µs per MiB of ASCII on
            // Node 20, encoding ~90 µs (bench/NOTES.md).
            let room = units * 3 + 1;
            let mut out = pooled(room);
            let mut written = 0usize;
            let data = out.buf.as_mut_ptr() as *mut c_char;
            sys::napi_get_value_string_utf8(env, v, data, room, &mut written);
            out.buf.set_len(written);
            Bytes::from_owner(out)
        };
        return at_most(bytes, max);
    }
    typed_payload(env, v, max, refs)
}

/// An encoded string, unless it came out longer than `max` bytes.
fn at_most(bytes: Bytes, max: usize) -> Result<Bytes, Thrown> {
    if bytes.len() > max {
        return Err(Error::MessageTooLarge {
            size: bytes.len(),
            max,
        }
        .into());
    }
    Ok(bytes)
}

/// A Buffer or Uint8Array payload (anything else is a type error).
unsafe fn typed_payload(
    env: Env,
    v: Value,
    max: usize,
    refs: &Arc<BufferRefs>,
) -> Result<Bytes, Thrown> {
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
                refs: refs.clone(),
            }));
        }
    }
    Err(Thrown::arg_type(
        "the message must be a string, a Buffer or a Uint8Array",
    ))
}

// ---------------------------------------------------------------------------------------------
// Engine → JS wake-ups.

/// The engine's way to the JS thread: a threadsafe function, closed for good when the handle
/// finishes or its env goes away, so it is never called after Node may have freed it.
pub struct Gate {
    state: Mutex<GateState>,
}

struct GateState {
    open: bool,
    tsfn: Option<SendPtr<sys::napi_threadsafe_function__>>,
    /// A wake-up came before the threadsafe function existed (the engine starts first): it is
    /// made up for when the function is set, or the outbox would wait forever.
    missed: bool,
}

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate {
            state: Mutex::new(GateState {
                open: true,
                tsfn: None,
                missed: false,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn call(&self) {
        let mut state = self.lock();
        match (state.open, state.tsfn) {
            (true, Some(tsfn)) => call_tsfn(tsfn),
            (true, None) => state.missed = true,
            _ => {}
        }
    }

    fn set(&self, tsfn: SendPtr<sys::napi_threadsafe_function__>) {
        let mut state = self.lock();
        state.tsfn = Some(tsfn);
        if std::mem::take(&mut state.missed) && state.open {
            call_tsfn(tsfn);
        }
    }

    fn tsfn(&self) -> Option<SendPtr<sys::napi_threadsafe_function__>> {
        self.lock().tsfn
    }

    pub fn shut(&self) {
        self.lock().open = false;
    }
}

fn call_tsfn(tsfn: SendPtr<sys::napi_threadsafe_function__>) {
    // SAFETY: called with the gate's lock held while it is open; the function is released
    // only after the gate is shut, under the same lock. Non-blocking call on an unbounded
    // queue: never waits on the JS thread.
    unsafe {
        sys::napi_call_threadsafe_function(
            tsfn.0,
            ptr::null_mut(),
            sys::ThreadsafeFunctionCallMode::nonblocking,
        );
    }
}

/// The core's [`Waker`], implemented over a [`Gate`].
pub struct GateWaker(pub Arc<Gate>);

impl Waker for GateWaker {
    fn wake(&self) {
        self.0.call();
    }
}

/// What a handle does when its wake-up arrives on the JS thread, and when its env goes away.
pub trait Delivery: Tagged {
    /// Fills the batch to hand to the JS callback (an empty batch is not delivered) and says
    /// whether it is the last one (the engine has ended).
    fn deliver(&self, env: Env, batch: &mut EventArray) -> bool;
    /// Runs after the JS callback returned on a batch.
    fn handled(&self);
    /// Runs after the last batch was delivered: release what calls into JS.
    fn finished(&self, env: Env);
    /// The env is being torn down (worker terminated, process exiting): stop the engine.
    fn env_teardown(&self);
}

/// The long-lived threadsafe function of one handle, weak (unref'd) unless told otherwise.
pub struct Wakeup {
    gate: Arc<Gate>,
    refd: Cell<bool>,
    finished: Cell<bool>,
}

impl Wakeup {
    /// Creates the threadsafe function over `callback` (a JS function receiving each batch)
    /// and the env cleanup hook for `handle`.
    pub fn install<T: Delivery>(
        cx: &Cx,
        callback: Value,
        gate: Arc<Gate>,
        handle: &Rc<T>,
    ) -> Result<Wakeup, Thrown> {
        let env = cx.env();
        let name = string_value(env, b"zerowire");
        let mut tsfn = ptr::null_mut();
        // The function and the cleanup hook each own one strong count of the handle, given back
        // in `tsfn_finalize` and when the hook runs or is removed.
        let context = Rc::into_raw(handle.clone()) as *mut c_void;
        // SAFETY: valid env and callback; the finalizer and call_js callbacks are typed for T.
        let status = unsafe {
            sys::napi_create_threadsafe_function(
                env,
                callback,
                ptr::null_mut(),
                name,
                0,
                1,
                ptr::null_mut(),
                Some(tsfn_finalize::<T>),
                context,
                Some(tsfn_call::<T>),
                &mut tsfn,
            )
        };
        if status != sys::Status::napi_ok {
            // SAFETY: the count taken above was not handed to N-API.
            drop(unsafe { Rc::from_raw(context as *const T) });
            return Err(Thrown::arg_type("the event callback must be a function"));
        }
        // SAFETY: tsfn was just created on this env.
        unsafe { sys::napi_unref_threadsafe_function(env, tsfn) };
        gate.set(SendPtr(tsfn));
        // Registered after the threadsafe function, so Node runs it before finalizing that.
        // SAFETY: the hook and its argument match `env_cleanup::<T>`.
        unsafe {
            sys::napi_add_env_cleanup_hook(
                env,
                Some(env_cleanup::<T>),
                Rc::into_raw(handle.clone()) as *mut c_void,
            );
        }
        Ok(Wakeup {
            gate,
            refd: Cell::new(false),
            finished: Cell::new(false),
        })
    }

    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    pub fn finished(&self) -> bool {
        self.finished.get()
    }

    /// Keep the process alive while the wake-up may still bring something it waits for.
    pub fn set_ref(&self, env: Env, want: bool) {
        if self.finished.get() || self.refd.replace(want) == want {
            return;
        }
        if let Some(t) = self.gate.tsfn() {
            // SAFETY: the function is not released while `finished` is false.
            unsafe {
                if want {
                    sys::napi_ref_threadsafe_function(env, t.0);
                } else {
                    sys::napi_unref_threadsafe_function(env, t.0);
                }
            }
        }
    }

    /// After the last batch (or from the cleanup hook): no more calls into JS; give back the
    /// cleanup hook and release the threadsafe function.
    pub fn finish<T: Delivery>(&self, env: Option<Env>, handle: &T) {
        if self.finished.replace(true) {
            return;
        }
        self.gate.shut();
        let Some(env) = env else { return };
        let hook_arg = handle as *const T as *mut c_void;
        // SAFETY: same function and argument as registered in `install`; on success the hook
        // will not run, so its strong count is ours to drop.
        unsafe {
            if sys::napi_remove_env_cleanup_hook(env, Some(env_cleanup::<T>), hook_arg)
                == sys::Status::napi_ok
            {
                drop(Rc::from_raw(hook_arg as *const T));
            }
            if let Some(t) = self.gate.tsfn() {
                sys::napi_release_threadsafe_function(
                    t.0,
                    sys::ThreadsafeFunctionReleaseMode::release,
                );
            }
        }
    }
}

unsafe extern "C" fn tsfn_finalize<T>(_env: Env, _data: *mut c_void, context: *mut c_void) {
    drop(Rc::from_raw(context as *const T));
}

unsafe extern "C" fn env_cleanup<T: Delivery>(arg: *mut c_void) {
    let handle = Rc::from_raw(arg as *const T);
    handle.env_teardown();
}

unsafe extern "C" fn tsfn_call<T: Delivery>(
    env: Env,
    js_cb: Value,
    context: *mut c_void,
    _data: *mut c_void,
) {
    if env.is_null() || context.is_null() {
        return;
    }
    let handle = &*(context as *const T);
    let mut batch = EventArray::new(env);
    let last = handle.deliver(env, &mut batch);
    if batch.len > 0 {
        let mut global = ptr::null_mut();
        sys::napi_get_global(env, &mut global);
        let mut argv = [batch.array];
        let status =
            sys::napi_call_function(env, global, js_cb, 1, argv.as_mut_ptr(), ptr::null_mut());
        let mut thrown = false;
        sys::napi_is_exception_pending(env, &mut thrown);
        // A batch whose callback threw was not (all) handled: no ack may claim it was. The
        // JS side catches per event, so this only guards against a bug of ours there.
        if status != sys::Status::napi_ok || thrown {
            if last {
                handle.finished(env);
            }
            return;
        }
    }
    handle.handled();
    if last {
        handle.finished(env);
    }
}

/// A batch of events as one flat JS array of numbers and strings.
pub struct EventArray {
    env: Env,
    array: Value,
    len: u32,
}

impl EventArray {
    fn new(env: Env) -> EventArray {
        let mut array = ptr::null_mut();
        // SAFETY: valid env.
        unsafe { sys::napi_create_array(env, &mut array) };
        EventArray { env, array, len: 0 }
    }

    fn set(&mut self, v: Value) {
        // SAFETY: valid env, array and value.
        unsafe { sys::napi_set_element(self.env, self.array, self.len, v) };
        self.len += 1;
    }

    pub fn u32(&mut self, n: u32) {
        let mut v = ptr::null_mut();
        // SAFETY: valid env.
        unsafe { sys::napi_create_uint32(self.env, n, &mut v) };
        self.set(v);
    }

    /// UTF-8 bytes as a JS string (invalid sequences become U+FFFD).
    pub fn str(&mut self, bytes: &[u8]) {
        let v = string_value(self.env, bytes);
        self.set(v);
    }

    /// Bytes as a Buffer. From ZERO_COPY_MIN up the Buffer is backed by the received bytes
    /// themselves, freed by its finalizer: copying a 1 MiB body costs more than the external
    /// buffer's bookkeeping. Small ones, and any where Node refuses external buffers, are copied.
    pub fn bytes(&mut self, body: Bytes) {
        let mut v = ptr::null_mut();
        let body = if body.len() < ZERO_COPY_MIN {
            body
        } else {
            let (data, len) = (body.as_ptr() as *mut c_void, body.len());
            let owner = Box::into_raw(Box::new(body));
            // SAFETY: the boxed Bytes keeps `data` alive and unmoved until the finalizer drops
            // it, once. Nothing writes through the pointer on our side.
            let status = unsafe {
                sys::napi_create_external_buffer(
                    self.env,
                    len,
                    data,
                    Some(drop_bytes),
                    owner as *mut c_void,
                    &mut v,
                )
            };
            if status == sys::Status::napi_ok {
                self.set(v);
                return;
            }
            // SAFETY: N-API refused it, so the box is still ours.
            *unsafe { Box::from_raw(owner) }
        };
        let v = buffer_copy(self.env, &body);
        self.set(v);
    }

    /// Fills the hole at `index` (left by `skip`) with a new Buffer of `len` bytes, which
    /// `fill` writes in place.
    pub fn bytes_at(&mut self, index: u32, len: usize, fill: impl FnOnce(&mut [u8])) {
        let (mut data, mut v) = (ptr::null_mut(), ptr::null_mut());
        // SAFETY: valid env; N-API allocates `len` bytes at `data`, which nothing else sees
        // until the Buffer is handed to JS after `fill` returns.
        unsafe {
            if sys::napi_create_buffer(self.env, len, &mut data, &mut v) != sys::Status::napi_ok
                || (data.is_null() && len > 0)
            {
                return;
            }
            fill(std::slice::from_raw_parts_mut(data as *mut u8, len));
            sys::napi_set_element(self.env, self.array, index, v);
        }
    }

    /// Fills the hole at `index` (left by `skip`) with a Uint32Array holding a copy of
    /// `values`: one JS object for many numbers, where `u32` costs two N-API calls each.
    pub fn u32s_at(&mut self, index: u32, values: &[u32]) {
        let bytes = std::mem::size_of_val(values);
        let (mut data, mut buffer, mut array) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
        // SAFETY: valid env; the copy writes `bytes` bytes into the new ArrayBuffer of that
        // size (skipped if N-API failed to make it); the view covers exactly those bytes.
        unsafe {
            sys::napi_create_arraybuffer(self.env, bytes, &mut data, &mut buffer);
            if !data.is_null() {
                ptr::copy_nonoverlapping(values.as_ptr() as *const u8, data as *mut u8, bytes);
            }
            sys::napi_create_typedarray(
                self.env,
                sys::TypedarrayType::uint32_array,
                values.len(),
                buffer,
                0,
                &mut array,
            );
            sys::napi_set_element(self.env, self.array, index, array);
        }
    }

    /// Leaves a hole (reads as `undefined`, unless filled later); returns its index.
    pub fn skip(&mut self) -> u32 {
        self.len += 1;
        self.len - 1
    }
}

// ---------------------------------------------------------------------------------------------
// Engine threads' scheduling.

/// How far below the JS thread a client's engine thread runs (its nice value, relative),
/// unless `ZEROWIRE_ENGINE_NICE` says otherwise (0 = same priority, up to 19).
const ENGINE_NICE: i32 = 10;

#[cfg(target_os = "linux")]
extern "C" {
    fn nice(inc: c_int) -> c_int;
}

/// Lowers a client engine thread's priority below the JS thread's. When the two compete for a
/// core (two cores, a JS thread sending flat out, its engine writing, a local peer reading),
/// the scheduler then runs the JS thread first instead of leaving it waiting for a time slice:
/// the event loop's delay p99 at the highest send rate went from ~2-3.5x an idle loop's to
/// within 10 % of it (bench/NOTES.md). It costs request round trips (p50 ~13 % here), and as
/// much again on the server side, so server engines keep the JS thread's priority: their work
/// is the JS thread's input, and a server answers requests. Linux only: elsewhere nice() is
/// per process.
pub fn set_engine_priority(kind: EngineKind) {
    if kind != EngineKind::Client {
        return;
    }
    let inc = std::env::var("ZEROWIRE_ENGINE_NICE")
        .ok()
        .and_then(|v| v.trim().parse::<i32>().ok())
        .map_or(ENGINE_NICE, |n| n.clamp(0, 19));
    #[cfg(target_os = "linux")]
    if inc > 0 {
        // SAFETY: nice() takes a plain int and only changes the calling thread's scheduling
        // weight (the nice value is per thread on Linux); a failure leaves it unchanged.
        unsafe { nice(inc) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = inc;
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" {
    fn malloc_trim(pad: usize) -> c_int;
}

/// Returns the allocator's free memory to the OS, called by an engine that has been quiet for
/// a second after a burst (`zerowire_core::hooks`). glibc keeps what a burst freed in its
/// arenas; `malloc_trim` releases the free pages of every arena. glibc only (musl has no
/// such call and returns memory by itself).
pub fn return_free_memory() {
    // SAFETY: malloc_trim takes a plain size and only releases free pages; it locks each
    // arena as it goes, so it is safe to call from any thread.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        malloc_trim(0)
    };
}

// ---------------------------------------------------------------------------------------------
// Registration.

/// Adds the callbacks to `exports` under their names.
pub fn register(env: Env, exports: Value, functions: &[(&str, Callback)]) {
    for (name, cb) in functions {
        let cname = cstr(name);
        let mut f = ptr::null_mut();
        // SAFETY: valid env and exports; `cb` has the N-API callback signature.
        unsafe {
            sys::napi_create_function(
                env,
                cname.as_ptr(),
                name.len() as isize,
                Some(*cb as unsafe extern "C" fn(Env, sys::napi_callback_info) -> Value),
                ptr::null_mut(),
                &mut f,
            );
            sys::napi_set_named_property(env, exports, cname.as_ptr(), f);
        }
    }
}
