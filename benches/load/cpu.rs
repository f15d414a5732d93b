//! CPU time a process (and its children, for nginx's workers) has used, from `/proc`. Divided
//! by the requests it served, it is the cost per request: unlike requests per second, it
//! hardly changes when something else on the machine competes for the cores.

/// User + system CPU seconds of `pid` and of its child processes, now.
pub fn seconds(pid: u32) -> f64 {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let ticks: u64 = std::iter::once(pid)
        .chain(children.split_whitespace().filter_map(|c| c.parse().ok()))
        .map(own_ticks)
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / per_second
}

/// utime + stime (fields 14 and 15 of `/proc/<pid>/stat`; the name in field 2 may hold
/// spaces, so fields are counted after its closing parenthesis).
fn own_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(after_name) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return 0;
    };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: field 3 is at index 0, so fields 14 and 15 are at 11 and 12.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}
