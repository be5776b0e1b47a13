//! What a process holds, from `/proc`: open file descriptors and resident memory, bounded
//! waits for them to come back down, and raising this process's descriptor limit for tests
//! that open many connections (children started afterwards inherit it).

use std::thread;
use std::time::{Duration, Instant};

/// Open file descriptors of process `pid`.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("cannot list /proc/{pid}/fd: {e}"))
        .count()
}

/// What `pid`'s descriptors point at, counted by kind (`socket`, `pipe`, `anon_inode:[eventfd]`,
/// files by path), for messages.
pub fn fd_summary(pid: u32) -> String {
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in dir.flatten() {
            let target = std::fs::read_link(entry.path()).map(|p| p.display().to_string()).unwrap_or_default();
            let kind = target.split_once(":[").map_or(target.as_str(), |(k, _)| k).to_owned();
            *kinds.entry(kind).or_default() += 1;
        }
    }
    kinds.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ")
}

/// Resident memory of process `pid`, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// Waits at most `limit` until `pid` holds at most `max` descriptors. `Ok` with the count
/// once it does, `Err` with the last count if it never did.
pub fn wait_fds_at_most(pid: u32, max: usize, limit: Duration) -> Result<usize, usize> {
    let start = Instant::now();
    loop {
        let n = open_fds(pid);
        if n <= max {
            return Ok(n);
        }
        if start.elapsed() > limit {
            return Err(n);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that `pid` gets back to at most `baseline` descriptors within `limit`.
pub fn assert_fds_return(pid: u32, baseline: usize, limit: Duration) {
    if let Err(n) = wait_fds_at_most(pid, baseline, limit) {
        panic!(
            "the proxy holds {n} descriptors {limit:?} after the test, {baseline} before: {}",
            fd_summary(pid)
        );
    }
}

/// Raises this process's soft limit on open descriptors to `want` (at most the hard limit);
/// returns the soft limit in force afterwards.
pub fn raise_fd_limit(want: usize) -> usize {
    let want = libc::rlim_t::try_from(want).unwrap_or(libc::rlim_t::MAX);
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill and setrlimit to read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < want {
            let raised = libc::rlimit { rlim_cur: want.min(lim.rlim_max), rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
}
