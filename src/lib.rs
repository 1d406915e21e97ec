//! zerowire: the Node.js binding. It only converts and forwards; the engine, protocol and
//! limits live in the `zerowire-core` crate, which has no N-API types.
//!
//! Module map:
//! - [`ffi`]     — every raw N-API and libuv call and `unsafe` block, behind a small safe API: calls and
//!   tagged externals (`mod.rs`), payloads (`payload.rs`), engine → JS delivery and the event
//!   batch (`wakeup.rs`), the OS calls behind the core's hooks (`os.rs`).
//! - [`client`]  — the client wing's native functions (convert, then forward to the core) and
//!   how its events become a batch.
//! - [`server`]  — the server wing's, its mirror.
//! - [`handle`]  — what both share: the `Wing` trait, staging, wake-up, flush/close/ref.
//! - [`options`] — the options by name: one table per wing, read from the JS object.
//! - [`convert`] — stats to JS names (no N-API).
//!
//! The JS API (`index.js`) is a thin class over these functions. The ones on a handle (every
//! call on a client or server) are plain N-API callbacks: a class method costs more per call
//! (bench/NOTES.md, "Free N-API functions"), and the handle is a tagged external that only
//! `ffi` may open. Those without one (option names, event kinds) are `#[napi]` functions that
//! napi-rs registers itself.

// napi-derive registers `#[napi]` functions only outside test builds, where they would look
// unused.
#![cfg_attr(test, allow(dead_code))]

mod client;
mod convert;
mod ffi;
mod handle;
mod options;
mod server;

use napi::bindgen_prelude::{Object, Result};
use napi::{Env, JsValue};
use napi_derive::napi;

/// A CURVE key pair: `{ publicKey, secretKey }`, each 40 characters of Z85, as libzmq's
/// `zmq_curve_keypair` makes them (from the OS's randomness).
#[napi(object)]
pub struct CurveKeypair {
    pub public_key: String,
    pub secret_key: String,
}

#[napi(js_name = "curveKeypair")]
pub fn curve_keypair() -> CurveKeypair {
    let (public_key, secret_key) = zerowire_core::curve::keypair();
    CurveKeypair {
        public_key,
        secret_key,
    }
}

#[napi(module_exports)]
pub fn init(exports: Object, env: Env) -> Result<()> {
    zerowire_core::set_host_hooks(zerowire_core::HostHooks {
        engine_start: ffi::set_engine_priority,
        return_free_memory: ffi::return_free_memory,
    });
    ffi::register(env.raw(), exports.raw(), client::FUNCTIONS);
    ffi::register(env.raw(), exports.raw(), server::FUNCTIONS);
    Ok(())
}
