//! What the host lets engine threads call: how they are scheduled, and when free memory goes
//! back to the OS. Both need system calls the core does not make itself (it has no `unsafe`);
//! the binding supplies them from its `ffi` module.

use std::sync::OnceLock;

/// Which engine a thread runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    Client,
    Server,
}

/// The host's hooks.
pub struct HostHooks {
    /// Run first on every engine thread (the binding lowers a client engine's priority below
    /// the JS thread's).
    pub engine_start: fn(EngineKind),
    /// Run by an engine that has been quiet for a while after a burst (see `trim`).
    pub return_free_memory: fn(),
}

static HOOKS: OnceLock<HostHooks> = OnceLock::new();

/// Sets the hooks, once, before any engine starts; later calls are ignored.
pub fn set_host_hooks(hooks: HostHooks) {
    let _ = HOOKS.set(hooks);
}

pub(crate) fn engine_start(kind: EngineKind) {
    if let Some(hooks) = HOOKS.get() {
        (hooks.engine_start)(kind);
    }
}

pub(crate) fn return_free_memory() {
    if let Some(hooks) = HOOKS.get() {
        (hooks.return_free_memory)();
    }
}
