//! Connections need file descriptors: the sender's socket, a second descriptor of it for
//! closing it gently (see `linger`) and, while a request is forwarded, one to the local
//! server. Many systems start processes with a soft limit of 1024 open
//! files, which the default cap of 2048 connections cannot hold: `accept` then fails with
//! "Too many open files" while callbacks wait. So the soft limit is raised to the hard one
//! (as nginx's `worker_rlimit_nofile` and Go's runtime do), and where even that is too low
//! the cap is lowered to what fits, with a warning that says so.

/// Descriptors kept for everything else: the listener, the store's three files, the
/// terminal, the certificate watcher, a replay's sockets.
const RESERVED: u64 = 64;
/// Descriptors one connection may use at once.
const PER_CONNECTION: u64 = 3;
/// No cap is higher: tokio's semaphores hold at most `usize::MAX >> 3` permits, and no
/// machine serves more connections than this from one process anyway.
const MOST_CONNECTIONS: usize = 1 << 20;

/// The connection cap that `open_files` descriptors can hold: `wanted`, or fewer.
pub fn fitting(wanted: usize, open_files: u64) -> usize {
    let room = open_files.saturating_sub(RESERVED) / PER_CONNECTION;
    wanted
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1)
}

/// Raises the soft limit on open files as far as allowed, and returns the cap to use for
/// `wanted` connections (`flag` names the option in the warning when it must be lowered).
pub fn cap_connections(wanted: usize, flag: &str) -> usize {
    let wanted = wanted.min(MOST_CONNECTIONS);
    let Some(open_files) = raise_open_files_limit() else {
        return wanted; // unknown: nothing to go by
    };
    let cap = fitting(wanted, open_files);
    if cap < wanted {
        tracing::warn!(
            "{flag} {wanted} needs about {} open files but this process may open {open_files} \
             (ulimit -n); serving at most {cap} connections at once",
            wanted as u64 * PER_CONNECTION + RESERVED
        );
    }
    cap
}

/// Sets the soft limit on open files to the hard limit; returns the limit now in force.
#[cfg(target_os = "linux")]
fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            tracing::debug!(
                "could not raise the open-files limit: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Some(limit.rlim_cur)
}

#[cfg(not(target_os = "linux"))]
fn raise_open_files_limit() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_the_descriptors_left_after_the_reserve() {
        assert_eq!(fitting(2048, 1_048_576), 2048);
        assert_eq!(fitting(2048, 1024), 320);
        assert_eq!(fitting(100, 1024), 100);
        assert_eq!(fitting(2048, 10), 1, "never zero");
        assert_eq!(fitting(2048, u64::MAX), 2048);
    }

    #[test]
    fn a_cap_past_any_use_comes_down_to_one_a_semaphore_can_hold() {
        let cap = cap_connections(usize::MAX, "--max-connections");
        assert!(cap <= MOST_CONNECTIONS, "{cap}");
        assert_eq!(tokio::sync::Semaphore::new(cap).available_permits(), cap);
    }
}
