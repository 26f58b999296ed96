//! The examples' clock, shared by `int8_kernels` and `time_model`.
use std::time::Instant;

/// Seconds now: wall time, or with `CPU_TIME=1` (Linux) the CPU time of all the process's
/// threads (`CLOCK_PROCESS_CPUTIME_ID`), which other processes' load does not inflate (use
/// it with `RAYON_NUM_THREADS=1`: idle pool threads spin, and that counts).
pub fn now() -> f64 {
    use std::sync::OnceLock;
    static T0: OnceLock<Instant> = OnceLock::new();
    #[cfg(target_os = "linux")]
    if std::env::var_os("CPU_TIME").is_some() {
        #[repr(C)]
        struct Timespec {
            sec: i64,
            nsec: i64,
        }
        extern "C" {
            fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
        }
        const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
        let mut ts = Timespec { sec: 0, nsec: 0 };
        // SAFETY: writes one timespec, which `ts` is.
        unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        return ts.sec as f64 + ts.nsec as f64 * 1e-9;
    }
    T0.get_or_init(Instant::now).elapsed().as_secs_f64()
}
