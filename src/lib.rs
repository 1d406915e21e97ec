//! zerowire: the Node.js binding. It only converts and forwards; the engine, protocol and
//! limits live in the `zerowire-core` crate, which has no N-API types.
//!
//! Module map:
//! - [`ffi`]     — every raw N-API call and `unsafe` block, behind a small safe API.
//! - [`client`]  — the JS client's native functions (convert, then forward to the core).
//! - [`server`]  — the JS server's native functions.
//! - [`handle`]  — what both share: staging, wake-up, flush/close/ref functions.
//! - [`options`] — the options by name: one table per wing, read from the JS object.
//! - [`convert`] — stats to JS names (no N-API).
//!
//! The JS API (`index.js`) is a thin class over these free functions: a class method costs
//! ≈ 250 ns more per call than a free function on the target machines.

mod client;
mod convert;
mod ffi;
mod handle;
mod options;
mod server;

use napi::bindgen_prelude::{Object, Result};
use napi::{Env, JsValue};
use napi_derive::napi;

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
