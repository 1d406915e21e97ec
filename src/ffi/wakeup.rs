//! Engine → JS wake-ups: one libuv async handle per handle that the engine thread signals to
//! have a batch delivered on the JS thread, and the array a batch is delivered as.
//!
//! Not a threadsafe function: Node's holds a mutex while it signals the loop, and the JS thread,
//! woken on the other core, then blocks on that mutex before it can look at the batch: a second
//! sleep and wake-up of the JS thread on every reply (bench/NOTES.md, "Hops per request round
//! trip"). `uv_async_send` is a flag and an eventfd write, and coalesces like our outbox does.

use std::ffi::c_int;

use super::*;

// libuv, as exported by the Node binary that loads the addon.
extern "C" {
    fn uv_handle_size(kind: c_int) -> usize;
    fn uv_async_init(
        event_loop: *mut sys::uv_loop_s,
        handle: *mut c_void,
        callback: unsafe extern "C" fn(*mut c_void),
    ) -> c_int;
    fn uv_async_send(handle: *mut c_void) -> c_int;
    fn uv_close(handle: *mut c_void, callback: unsafe extern "C" fn(*mut c_void));
    fn uv_ref(handle: *mut c_void);
    fn uv_unref(handle: *mut c_void);
}

/// `UV_ASYNC` in `uv_handle_type`.
const UV_ASYNC: c_int = 1;

/// Bodies of this many bytes or more, if ASCII, become external strings (`EventArray::text`):
/// from here V8 allocates a string in its large-object space, each in fresh pages.
const EXTERNAL_TEXT_MIN: usize = 128 * 1024;

/// Whether this Node has external Latin-1 strings as a stable API (Node-API 10; Node 20 has
/// them only as an experiment). Asked once per process: all its environments are one Node.
fn external_strings(env: Env) -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        let mut version = 0u32;
        // SAFETY: valid env; the version is written on success only.
        let status = unsafe { sys::napi_get_version(env, &mut version) };
        status == sys::Status::napi_ok && version >= 10
    })
}

/// The finalizer of `EventArray::text`'s strings, called by Node on the JS thread, once per
/// string, with the box `text` made. Adjusting the external memory is allowed there (it takes
/// a finalizer's env); the env is null when the string goes down with its Node instance.
unsafe extern "C" fn drop_text(
    env: sys::node_api_basic_env,
    _data: *mut c_void,
    owner: *mut c_void,
) {
    let body = Box::from_raw(owner as *mut Bytes);
    if !env.is_null() {
        let mut total = 0i64;
        sys::napi_adjust_external_memory(env as Env, -(body.len() as i64), &mut total);
    }
}

/// A libuv async handle, which the engine thread may signal.
#[derive(Clone, Copy)]
struct UvAsync(*mut c_void);
// SAFETY: the engine thread only passes it to `uv_async_send`, which is thread-safe, and only
// while the gate is open (see `Gate`).
unsafe impl Send for UvAsync {}
// SAFETY: as above.
unsafe impl Sync for UvAsync {}

// ---------------------------------------------------------------------------------------------
// Engine → JS wake-ups.

/// The engine's way to the JS thread: a libuv async handle, shut for good when the handle
/// finishes or its env goes away, so it is never signalled after it may have been closed.
pub struct Gate {
    state: Mutex<GateState>,
}

struct GateState {
    open: bool,
    uv: Option<UvAsync>,
    /// A wake-up came before the async handle existed (the engine starts first): it is made up
    /// for when the handle is set, or the outbox would wait forever.
    missed: bool,
}

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate {
            state: Mutex::new(GateState {
                open: true,
                uv: None,
                missed: false,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Signals the JS thread. The lock is the engine's alone on this path (the JS thread takes
    /// it only to set and to shut the gate), so it never makes the JS thread wait.
    pub(super) fn call(&self) {
        let mut state = self.lock();
        match (state.open, state.uv) {
            (true, Some(uv)) => send(uv),
            (true, None) => state.missed = true,
            _ => {}
        }
    }

    fn set(&self, uv: UvAsync) {
        let mut state = self.lock();
        state.uv = Some(uv);
        if std::mem::take(&mut state.missed) && state.open {
            send(uv);
        }
    }

    pub fn shut(&self) {
        self.lock().open = false;
    }
}

fn send(uv: UvAsync) {
    // SAFETY: called with the gate's lock held while it is open; the handle is closed only
    // after the gate is shut, under the same lock. `uv_async_send` is libuv's one thread-safe
    // call and never waits.
    unsafe { uv_async_send(uv.0) };
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

/// What the async handle's callback needs, pointed to by the handle's `data` field (libuv's
/// first field of every handle). Lives until libuv's close callback.
struct Context<T> {
    env: Env,
    callback: sys::napi_ref,
    async_context: sys::napi_async_context,
    /// One strong count of the handle, given back in `finish`.
    handle: RefCell<Option<Rc<T>>>,
    /// The memory of the async handle itself (`uv_handle_size` bytes).
    memory: *mut [u64],
}

/// The async handle of one JS handle, weak (unref'd) unless told otherwise.
pub struct Wakeup {
    gate: Arc<Gate>,
    uv: *mut c_void,
    refd: Cell<bool>,
    finished: Cell<bool>,
}

impl Wakeup {
    /// Creates the async handle that calls `callback` (a JS function receiving each batch) and
    /// the env cleanup hook for `handle`.
    pub fn install<T: Delivery>(
        cx: &Cx,
        callback: Value,
        gate: Arc<Gate>,
        handle: &Rc<T>,
    ) -> Result<Wakeup, Thrown> {
        let env = cx.env();
        let not_a_function = || Thrown::arg_type("the event callback must be a function");
        let mut ty = sys::ValueType::napi_undefined;
        let (mut event_loop, mut callback_ref, mut async_context) =
            (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
        // SAFETY: valid env and values; each out-pointer is checked before use.
        unsafe {
            sys::napi_typeof(env, callback, &mut ty);
            if ty != sys::ValueType::napi_function {
                return Err(not_a_function());
            }
            let name = string_value(env, b"zerowire");
            if sys::napi_get_uv_event_loop(env, &mut event_loop) != sys::Status::napi_ok
                || sys::napi_create_reference(env, callback, 1, &mut callback_ref)
                    != sys::Status::napi_ok
                || sys::napi_async_init(env, ptr::null_mut(), name, &mut async_context)
                    != sys::Status::napi_ok
            {
                return Err(Thrown::Plain(
                    "ERR_ZEROWIRE_INTERNAL",
                    "could not set up the event loop wake-up".into(),
                ));
            }
        }
        // SAFETY: plain libuv query.
        let size = unsafe { uv_handle_size(UV_ASYNC) };
        let memory = Box::into_raw(vec![0u64; size.div_ceil(8)].into_boxed_slice());
        let uv = memory as *mut u64 as *mut c_void;
        let context = Box::into_raw(Box::new(Context {
            env,
            callback: callback_ref,
            async_context,
            handle: RefCell::new(Some(handle.clone())),
            memory,
        }));
        // SAFETY: `uv` is zeroed memory of the size libuv asked for, 8-byte aligned, freed
        // only in `closed` (libuv's close callback). `data` is set after init, which does not
        // touch it, and points to the context until then.
        unsafe {
            uv_async_init(event_loop, uv, on_wakeup::<T>);
            *(uv as *mut *mut Context<T>) = context;
            uv_unref(uv);
        }
        gate.set(UvAsync(uv));
        // SAFETY: the hook and its argument match `env_cleanup::<T>`; it owns one strong count
        // of the handle, given back when it runs or is removed.
        unsafe {
            sys::napi_add_env_cleanup_hook(
                env,
                Some(env_cleanup::<T>),
                Rc::into_raw(handle.clone()) as *mut c_void,
            );
        }
        Ok(Wakeup {
            gate,
            uv,
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
    pub fn set_ref(&self, _env: Env, want: bool) {
        if self.finished.get() || self.refd.replace(want) == want {
            return;
        }
        // SAFETY: the handle is not closed while `finished` is false; JS thread only.
        unsafe {
            if want {
                uv_ref(self.uv);
            } else {
                uv_unref(self.uv);
            }
        }
    }

    /// After the last batch (or from the cleanup hook): no more calls into JS; give back the
    /// cleanup hook and close the async handle.
    pub fn finish<T: Delivery>(&self, env: Option<Env>, handle: &T) {
        if self.finished.replace(true) {
            return;
        }
        // Shut first: the engine never signals a handle that is closing.
        self.gate.shut();
        // SAFETY: `data` points to the context set in `install` (same T), alive until `closed`.
        let context = unsafe { &**(self.uv as *mut *mut Context<T>) };
        let held = context.handle.borrow_mut().take();
        if let Some(env) = env {
            let hook_arg = handle as *const T as *mut c_void;
            // SAFETY: same function and argument as registered in `install`; on success the
            // hook will not run, so its strong count is ours to drop. The reference and the
            // async context were made on this env, which is alive (we are called from it).
            unsafe {
                if sys::napi_remove_env_cleanup_hook(env, Some(env_cleanup::<T>), hook_arg)
                    == sys::Status::napi_ok
                {
                    drop(Rc::from_raw(hook_arg as *const T));
                }
                sys::napi_delete_reference(env, context.callback);
                sys::napi_async_destroy(env, context.async_context);
            }
        }
        // SAFETY: JS thread; the gate is shut, so nothing signals the handle any more.
        unsafe { uv_close(self.uv, closed::<T>) };
        drop(held);
    }
}

unsafe extern "C" fn closed<T>(uv: *mut c_void) {
    let context = Box::from_raw(*(uv as *mut *mut Context<T>));
    drop(Box::from_raw(context.memory));
}

unsafe extern "C" fn env_cleanup<T: Delivery>(arg: *mut c_void) {
    let handle = Rc::from_raw(arg as *const T);
    handle.env_teardown();
}

unsafe extern "C" fn on_wakeup<T: Delivery>(uv: *mut c_void) {
    let context = &**(uv as *mut *mut Context<T>);
    // A count of our own: the delivery may finish the handle, which gives back the context's.
    let Some(handle) = context.handle.borrow().clone() else {
        return;
    };
    let env = context.env;
    let mut scope = ptr::null_mut();
    if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
        return;
    }
    let mut batch = EventArray::new(env);
    let last = handle.deliver(env, &mut batch);
    let mut delivered = true;
    if batch.finish() {
        let (mut global, mut callback) = (ptr::null_mut(), ptr::null_mut());
        sys::napi_get_global(env, &mut global);
        sys::napi_get_reference_value(env, context.callback, &mut callback);
        let argv = [batch.array];
        // A callback scope, as Node gives a threadsafe function's call: promises settled by
        // the batch resolve (microtasks, nextTick) before the loop goes on.
        let status = sys::napi_make_callback(
            env,
            context.async_context,
            global,
            callback,
            1,
            argv.as_ptr(),
            ptr::null_mut(),
        );
        let mut thrown = false;
        sys::napi_is_exception_pending(env, &mut thrown);
        if thrown {
            // Not ours to swallow: it reaches 'uncaughtException' as any callback's would.
            let mut error = ptr::null_mut();
            sys::napi_get_and_clear_last_exception(env, &mut error);
            sys::napi_fatal_exception(env, error);
        }
        // A batch whose callback threw was not (all) handled: no ack may claim it was. The
        // JS side catches per event, so this only guards against a bug of ours there.
        delivered = status == sys::Status::napi_ok && !thrown;
    }
    if delivered {
        handle.handled();
    }
    if last {
        handle.finished(env);
    }
    sys::napi_close_handle_scope(env, scope);
}

/// A batch of events, for client and server alike: `[numbers, values…]`, where `numbers` is a
/// Uint32Array of five per event (`[kind, a, b, c, d]`, what each slot means depends on the
/// kind) and the values are the events' strings and bodies, in event order. One typed array
/// for all numbers: per-element N-API calls were most of the cost of a small event.
pub struct EventArray {
    env: Env,
    array: Value,
    len: u32,
    numbers: Vec<u32>,
}

impl EventArray {
    fn new(env: Env) -> EventArray {
        let mut array = ptr::null_mut();
        // SAFETY: valid env.
        unsafe { sys::napi_create_array(env, &mut array) };
        // Slot 0 is the numbers', filled by `finish`.
        EventArray {
            env,
            array,
            len: 1,
            numbers: Vec::new(),
        }
    }

    /// Appends an event's numbers; its values (if any) follow with `str`/`bytes`/`skip`.
    pub fn event(&mut self, numbers: [u32; 5]) {
        self.numbers.extend(numbers);
    }

    /// Puts the numbers in place; false when the batch holds no event.
    fn finish(&mut self) -> bool {
        if self.numbers.is_empty() {
            return false;
        }
        let numbers = std::mem::take(&mut self.numbers);
        self.u32s_at(0, &numbers);
        true
    }

    fn set(&mut self, v: Value) {
        // SAFETY: valid env, array and value.
        unsafe { sys::napi_set_element(self.env, self.array, self.len, v) };
        self.len += 1;
    }

    /// UTF-8 bytes as a JS string (invalid sequences become U+FFFD).
    pub fn str(&mut self, bytes: &[u8]) {
        let v = string_value(self.env, bytes);
        self.set(v);
    }

    /// A body as a string: UTF-8 decoded into a new string, except a long ASCII one where
    /// Node-API 10 has external strings: that becomes a string over the received bytes
    /// themselves (ASCII is Latin-1 too), which its finalizer lets go. A copy that long would
    /// be in fresh pages of V8's large-object space every time. V8 is told the body's size as
    /// external memory, so that it collects such strings as soon as it would collect copies.
    pub fn text(&mut self, body: Bytes) {
        if body.len() < EXTERNAL_TEXT_MIN || !external_strings(self.env) || !body.is_ascii() {
            return self.str(&body);
        }
        let (data, len) = (body.as_ptr() as *const c_char, body.len());
        let owner = Box::into_raw(Box::new(body));
        let (mut v, mut total) = (ptr::null_mut(), 0i64);
        // SAFETY: valid env. The boxed Bytes keeps `data` alive and unmoved until `drop_text`
        // drops it, once: when V8 collects the string, or as soon as Node has copied the
        // bytes if it copies them instead (whether it did is of no use here, so not asked).
        // The bytes are ASCII, so valid Latin-1 of the same length, and nothing writes
        // through the pointer. The external memory added here is taken back by `drop_text`
        // (or below, if Node refused the string).
        let status = unsafe {
            sys::napi_adjust_external_memory(self.env, len as i64, &mut total);
            sys::node_api_create_external_string_latin1(
                self.env,
                data,
                len as isize,
                Some(drop_text),
                owner as *mut c_void,
                &mut v,
                ptr::null_mut(),
            )
        };
        if status == sys::Status::napi_ok {
            return self.set(v);
        }
        // SAFETY: Node refused it without calling the finalizer, so the box is still ours.
        let body = *unsafe {
            sys::napi_adjust_external_memory(self.env, -(len as i64), &mut total);
            Box::from_raw(owner)
        };
        self.str(&body);
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

    /// Fills slot `index` with a Uint32Array holding a copy of `values`.
    fn u32s_at(&mut self, index: u32, values: &[u32]) {
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
