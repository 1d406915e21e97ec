//! Payloads: what `send()` and friends hand the engine. A string is UTF-8 encoded once,
//! straight into the buffer that is sent (an arena chunk, or a pooled buffer for long ones). A
//! Uint8Array/Buffer over an ArrayBuffer is copied (large ones into a pooled buffer): its
//! memory can be detached or shrunk under the engine. A view of a SharedArrayBuffer of
//! [`ZERO_COPY_MIN`] bytes or more is referenced without a copy, the reference deleted on the
//! JS thread once the engine is done.

use super::*;

/// SharedArrayBuffer views at least this large are sent without a copy (a reference is
/// cheaper than memcpy), and received bodies handed to JS without one.
pub const ZERO_COPY_MIN: usize = 16 * 1024;
/// Strings up to this many UTF-16 units are encoded straight into a shared arena chunk (no
/// allocation per message); longer ones into a buffer of their own, pooled from 64 KiB up.
const ARENA_UNITS: usize = 8 * 1024;
/// Buffers up to this size are copied into the arena.
const ARENA_COPY_MAX: usize = 16 * 1024;
/// The most a string is encoded into the arena before its length is known (see
/// `short_string`). A longer one is encoded again after measuring, so this bounds the waste.
const FAST_TRY: usize = 16 * 1024;
/// Below this much room left in the chunk, the attempt starts a fresh chunk instead.
const FAST_MIN: usize = 256;

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
/// N-API calls fewer per `send()` (bench/NOTES.md, "Strings encoded into the arena before
/// asking their type or length"), for the common case of a string that
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

/// How large a payload may be, and how one that is certainly larger is refused before it is
/// encoded or copied (the core counts the refusal). The exact check is the core's, on what
/// it is handed.
pub struct Limit<'a> {
    pub max: usize,
    pub refuse: &'a dyn Fn(usize) -> Error,
}

pub(super) unsafe fn payload(
    env: Env,
    v: Value,
    limit: &Limit,
    refs: &Arc<BufferRefs>,
) -> Result<Bytes, Thrown> {
    match short_string(env, v) {
        Short::Done(bytes) => return Ok(bytes),
        Short::NotAString => return typed_payload(env, v, limit, refs),
        Short::Unknown => {}
    }
    let mut ty = sys::ValueType::napi_undefined;
    sys::napi_typeof(env, v, &mut ty);
    if ty == sys::ValueType::napi_string {
        let mut units = 0usize;
        sys::napi_get_value_string_utf16(env, v, ptr::null_mut(), 0, &mut units);
        // Every UTF-16 unit is at least one UTF-8 byte: refuse before encoding anything.
        if units > limit.max {
            return Err((limit.refuse)(units).into());
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
            // all ASCII) was two passes, and Utf8Length alone cost more than encoding
            // (bench/NOTES.md, "Long strings in one pass").
            let room = units * 3 + 1;
            let mut out = pooled(room);
            let mut written = 0usize;
            let data = out.buf.as_mut_ptr() as *mut c_char;
            sys::napi_get_value_string_utf8(env, v, data, room, &mut written);
            out.buf.set_len(written);
            Bytes::from_owner(out)
        };
        return Ok(bytes);
    }
    typed_payload(env, v, limit, refs)
}

/// A copy of a Buffer's bytes: short ones into the arena, as short strings are (an allocation
/// per message otherwise), large ones into a pooled buffer, whose pages are warm.
fn copied(bytes: &[u8]) -> Bytes {
    if bytes.len() <= ARENA_COPY_MAX {
        return ARENA.with(|arena| {
            let mut arena = arena.borrow_mut();
            let chunk = arena.room(bytes.len());
            chunk.extend_from_slice(bytes);
            chunk.split().freeze()
        });
    }
    if bytes.len() < POOL_MIN {
        return Bytes::copy_from_slice(bytes);
    }
    let mut out = pooled(bytes.len());
    out.buf.extend_from_slice(bytes);
    Bytes::from_owner(out)
}

/// A Buffer or Uint8Array payload (anything else is a type error).
unsafe fn typed_payload(
    env: Env,
    v: Value,
    limit: &Limit,
    refs: &Arc<BufferRefs>,
) -> Result<Bytes, Thrown> {
    let mut is_typed = false;
    sys::napi_is_typedarray(env, v, &mut is_typed);
    if is_typed {
        let mut kind = sys::TypedarrayType::int8_array;
        let mut len = 0usize;
        let mut data: *mut c_void = ptr::null_mut();
        let mut buffer = ptr::null_mut();
        sys::napi_get_typedarray_info(
            env,
            v,
            &mut kind,
            &mut len,
            &mut data,
            &mut buffer,
            ptr::null_mut(),
        );
        if kind == sys::TypedarrayType::uint8_array {
            if len > limit.max {
                return Err((limit.refuse)(len).into());
            }
            let slice = if len == 0 || data.is_null() {
                &[][..]
            } else {
                std::slice::from_raw_parts(data as *const u8, len)
            };
            // An ArrayBuffer can be detached (transferred, posted to a worker) or shrunk
            // (resizable) the moment send() returns, and its memory freed while the engine
            // has yet to write it: its bytes are copied now. A SharedArrayBuffer can be
            // neither, and a reference keeps it alive: large views of one go without a copy.
            let mut plain = true;
            sys::napi_is_arraybuffer(env, buffer, &mut plain);
            if plain || len < ZERO_COPY_MIN {
                return Ok(copied(slice));
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
