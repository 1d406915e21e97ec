//! Engine → JS wake-ups: one long-lived threadsafe function per handle that the engine thread
//! calls to have a batch delivered on the JS thread, and the array a batch is delivered as.

use super::*;

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

    pub(super) fn call(&self) {
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
    if batch.finish() {
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
