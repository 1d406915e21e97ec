//! What the core's hooks ask of the OS: engine threads' scheduling, returning free memory.

use super::*;

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
/// the event loop's delay at the highest send rate came close to an idle loop's (bench/NOTES.md,
/// "Engine threads at nice +10"). It costs request round trips, and as much again on the server
/// side ("… client engines only"), so server engines keep the JS thread's priority: their work
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
