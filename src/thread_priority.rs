//! Threads that work behind the requests (the store's writer and checkpointer, the log
//! printer) step back for the async worker that serves them. On a machine with few cores the
//! scheduler otherwise preempts the worker in the middle of a request to run them, and every
//! connection the worker carries waits; run a moment later, they also find more work per
//! wake-up (bigger commits, longer batches of log lines). On 2 cores this is worth about 13%
//! of keep-alive throughput (README, "How it works").

/// The store's writer: every answer waits for its commit, so it steps back only a little.
pub const STORE_WRITER: i32 = 5;

/// Checkpoints and the log printer: no request waits for them.
pub const BACKGROUND: i32 = 10;

/// Raises the calling thread's nice value by `step` (lower priority; never higher, which
/// would need privileges). Linux keeps a nice value per thread; elsewhere this does nothing.
/// A refusal only costs speed, so it is logged and ignored.
pub fn lower_current_thread(step: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `nice` only changes the calling thread's scheduling priority. It returns
        // the new nice value, which may legitimately be -1, so errno tells of failure.
        let failed = unsafe {
            *libc::__errno_location() = 0;
            libc::nice(step) == -1 && *libc::__errno_location() != 0
        };
        if failed {
            tracing::debug!(
                "could not lower a background thread's priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = step;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The calling thread's nice value, from the kernel's own record of it.
    fn nice_of_this_thread() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("procfs");
        // Fields after the command (which may hold spaces) start after the last ')'.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        fields[16].parse().expect("a nice value") // field 19 of stat(5)
    }

    #[test]
    fn only_the_calling_thread_steps_back() {
        let before = nice_of_this_thread();
        let (inside, after) = std::thread::spawn(|| {
            let before = nice_of_this_thread();
            lower_current_thread(BACKGROUND);
            (before, nice_of_this_thread())
        })
        .join()
        .unwrap();
        assert_eq!(after, (inside + BACKGROUND).min(19));
        assert_eq!(
            nice_of_this_thread(),
            before,
            "other threads keep their priority"
        );
    }
}
