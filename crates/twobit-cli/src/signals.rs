//! Ctrl-C and closed pipes.
//!
//! - SIGPIPE gets its default action back (Rust ignores it, so `println!` to a closed pipe
//!   panicked): `twobit inspect FILE | head -1` ends quietly, as `cat` would.
//! - SIGINT and SIGTERM end the process at once, as by default, except while an output is
//!   being written or a training run is in progress ([`Deferred`]): then the signal is only
//!   noted, the file being written is finished (or the step in progress ends), and the command
//!   stops at the next safe point ([`interrupted`]), so nothing is left half-written. A second
//!   signal ends the process at once.
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static DEFERRED: AtomicUsize = AtomicUsize::new(0);
static SIGNAL: AtomicI32 = AtomicI32::new(libc::SIGINT);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe work here: atomics, signal, raise.
    SIGNAL.store(sig, Ordering::SeqCst);
    if DEFERRED.load(Ordering::SeqCst) == 0 || INTERRUPTED.swap(true, Ordering::SeqCst) {
        die(sig);
    }
}

/// Ends the process by `sig` with its default action (so the shell sees the signal).
fn die(sig: libc::c_int) {
    // SAFETY: restoring the default disposition and raising are async-signal-safe.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Installs the handlers; called first thing in `main`.
pub fn install() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: plain signal dispositions set before any other thread starts; the handler only
    // touches atomics.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Whether SIGINT/SIGTERM arrived while deferred.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Ends the process as the noted signal would have (after the caller cleaned up).
pub fn exit_interrupted() -> ! {
    die(SIGNAL.load(Ordering::SeqCst));
    std::process::exit(130)
}

/// While alive, SIGINT/SIGTERM are noted instead of ending the process. When the last guard
/// goes and a signal was noted, the process ends as that signal would have ended it.
pub struct Deferred(());

impl Deferred {
    /// Starts deferring.
    pub fn new() -> Self {
        DEFERRED.fetch_add(1, Ordering::SeqCst);
        Deferred(())
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        if DEFERRED.fetch_sub(1, Ordering::SeqCst) == 1 && interrupted() {
            die(SIGNAL.load(Ordering::SeqCst));
        }
    }
}

/// Runs `f` (which writes a file) with signals deferred.
pub fn deferred<T>(f: impl FnOnce() -> T) -> T {
    let _guard = Deferred::new();
    f()
}
