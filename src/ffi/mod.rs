//! Every raw N-API call of the addon, and so every `unsafe` block, lives in this module (each
//! block with its safety argument). What it exports is a small safe API for the rest of the
//! binding:
//!
//! - this file: [`Cx`], the arguments of a call and the values it returns or throws; tagged
//!   externals (an `Rc<T>` handed to JS as an opaque handle and checked on the way back);
//!   registering the exported functions;
//! - `payload`: [`Cx::payload`], a string (UTF-8 encoded once, straight into the buffer we
//!   send) or a Uint8Array/Buffer (copied, unless a large view of a SharedArrayBuffer), and
//!   the pool of long payloads' buffers;
//! - `wakeup`: [`Wakeup`], one libuv async handle per handle that the engine thread signals
//!   to have a batch delivered on the JS thread, and [`EventArray`], what a batch is
//!   delivered as;
//! - `os`: the hooks the core calls on engine threads (scheduling, returning free memory).
//!
//! The exported functions are plain N-API callbacks rather than `#[napi]` methods: a class
//! method costs more per call (bench/NOTES.md, "Free N-API functions"), and a `String`
//! argument would be an extra copy.

use std::cell::{Cell, RefCell};
#[cfg(target_os = "linux")]
use std::ffi::c_int;
use std::ffi::{c_char, c_void, CString};
use std::ptr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use napi::sys;
use zerowire_core::arena::Arena;
use zerowire_core::{EngineKind, Error, Waker};

mod os;
mod payload;
mod wakeup;

pub use os::{return_free_memory, set_engine_priority};
use payload::payload;
pub use payload::{BufferRefs, Limit, ZERO_COPY_MIN};
pub use wakeup::{Delivery, EventArray, Gate, GateWaker, Wakeup};

pub type Env = sys::napi_env;
pub type Value = sys::napi_value;
pub type Callback = extern "C" fn(Env, sys::napi_callback_info) -> Value;

/// Most events handed to JS in one call; the rest follow in the next turn of the event loop.
pub const MAX_BATCH: usize = 4096;
/// A raw pointer that may cross threads: references are only dereferenced (deleted) on the
/// JS thread.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub(crate) *mut T);
// SAFETY: see the type's comment; the pointee is never touched off the JS thread except
// through N-API calls documented as thread-safe.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

pub(crate) fn cstr(s: &str) -> CString {
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
        string_of(self.env, self.argv[i])
    }

    /// Property `name` of the object argument `i`, by the kind of value it holds.
    pub fn property(&self, i: usize, name: &str) -> Given {
        let key = cstr(name);
        let mut v = ptr::null_mut();
        let mut ty = sys::ValueType::napi_undefined;
        // SAFETY: valid env; a non-object argument makes the call fail and leaves `v` null,
        // read as absent.
        unsafe {
            if sys::napi_get_named_property(self.env, self.argv[i], key.as_ptr(), &mut v)
                != sys::Status::napi_ok
                || v.is_null()
            {
                return Given::Absent;
            }
            sys::napi_typeof(self.env, v, &mut ty);
        }
        given(self.env, v, ty, 1)
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

    /// The payload argument `i`: a string, Buffer or Uint8Array.
    pub fn payload(
        &self,
        i: usize,
        limit: &Limit,
        refs: &Arc<BufferRefs>,
    ) -> Result<Bytes, Thrown> {
        // SAFETY: valid env and value; see `payload`.
        unsafe { payload(self.env, self.argv[i], limit, refs) }
    }
}

/// What an options object holds under a name.
#[derive(Debug, Clone, PartialEq)]
pub enum Given {
    /// Missing, or `undefined`.
    Absent,
    Number(f64),
    Text(String),
    Bool(bool),
    Function,
    /// A plain object's own enumerable properties, one level deep (the values of a nested
    /// object or array read as `Other`).
    Object(Vec<(String, Given)>),
    /// An array's elements, read as the object's values are.
    List(Vec<Given>),
    /// Anything else (null, a symbol, a bigint…).
    Other,
}

/// Most properties or elements read from one object or array: an option is never that large,
/// and a huge array must not make the read itself costly.
const MAX_NESTED: u32 = 1 << 20;

/// A value by its kind; objects and arrays opened `depth` levels down.
fn given(env: Env, v: Value, ty: sys::napi_valuetype, depth: u32) -> Given {
    match ty {
        sys::ValueType::napi_undefined => Given::Absent,
        sys::ValueType::napi_number => number(env, v).map_or(Given::Other, Given::Number),
        sys::ValueType::napi_string => string_of(env, v).map_or(Given::Other, Given::Text),
        sys::ValueType::napi_boolean => {
            let mut b = false;
            // SAFETY: valid env and a boolean value.
            unsafe { sys::napi_get_value_bool(env, v, &mut b) };
            Given::Bool(b)
        }
        sys::ValueType::napi_function => Given::Function,
        sys::ValueType::napi_object if depth > 0 => nested(env, v, depth - 1),
        _ => Given::Other,
    }
}

fn type_of(env: Env, v: Value) -> sys::napi_valuetype {
    let mut ty = sys::ValueType::napi_undefined;
    // SAFETY: valid env and value.
    unsafe { sys::napi_typeof(env, v, &mut ty) };
    ty
}

/// An object's own enumerable properties, or an array's elements.
fn nested(env: Env, v: Value, depth: u32) -> Given {
    let mut is_array = false;
    // SAFETY: valid env and value throughout; each call's status is checked, and a failed
    // one reads as `Other` (never a partial value).
    unsafe {
        sys::napi_is_array(env, v, &mut is_array);
        if is_array {
            let mut len = 0u32;
            if sys::napi_get_array_length(env, v, &mut len) != sys::Status::napi_ok
                || len > MAX_NESTED
            {
                return Given::Other;
            }
            let mut items = Vec::with_capacity(len as usize);
            for i in 0..len {
                let mut item = ptr::null_mut();
                if sys::napi_get_element(env, v, i, &mut item) != sys::Status::napi_ok {
                    return Given::Other;
                }
                items.push(given(env, item, type_of(env, item), depth));
            }
            return Given::List(items);
        }
        let mut names = ptr::null_mut();
        let mut len = 0u32;
        if sys::napi_get_property_names(env, v, &mut names) != sys::Status::napi_ok
            || sys::napi_get_array_length(env, names, &mut len) != sys::Status::napi_ok
            || len > MAX_NESTED
        {
            return Given::Other;
        }
        let mut fields = Vec::with_capacity(len as usize);
        for i in 0..len {
            let (mut key, mut value) = (ptr::null_mut(), ptr::null_mut());
            if sys::napi_get_element(env, names, i, &mut key) != sys::Status::napi_ok
                || sys::napi_get_property(env, v, key, &mut value) != sys::Status::napi_ok
            {
                return Given::Other;
            }
            let Some(name) = string_of(env, key) else {
                continue;
            };
            fields.push((name, given(env, value, type_of(env, value), depth)));
        }
        Given::Object(fields)
    }
}

fn string_of(env: Env, v: Value) -> Option<String> {
    let mut len = 0usize;
    // SAFETY: a null buffer asks for the length only; then the buffer has len + 1 bytes.
    unsafe {
        if sys::napi_get_value_string_utf8(env, v, ptr::null_mut(), 0, &mut len)
            != sys::Status::napi_ok
        {
            return None;
        }
        let mut buf = vec![0u8; len + 1];
        sys::napi_get_value_string_utf8(env, v, buf.as_mut_ptr() as *mut c_char, len + 1, &mut len);
        buf.truncate(len);
        String::from_utf8(buf).ok()
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
