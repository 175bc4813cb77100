//! The sidecar's own process, for the standard `process_*` metrics every
//! Prometheus client library exports: CPU, memory, file descriptors, start
//! time. Read from `/proc/self`; on a system without it the metrics are
//! left out rather than reported as zero.

use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    /// Unix seconds.
    pub start_time_secs: f64,
    pub threads: u64,
}

pub fn usage() -> Option<Usage> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = boot_time()?;
    // SAFETY: sysconf only reads a configuration value.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if ticks <= 0 || page <= 0 {
        return None;
    }
    let fields = stat_fields(&stat)?;
    let field = |n: usize| fields.get(n).and_then(|f| f.parse::<u64>().ok());
    // Numbered as in proc(5) from `state` (3): utime 14, stime 15,
    // num_threads 20, starttime 22, vsize 23, rss 24.
    let at = |n: usize| field(n - 3);
    let ticks = ticks as f64;
    Some(Usage {
        cpu_seconds: (at(14)? + at(15)?) as f64 / ticks,
        threads: at(20)?,
        start_time_secs: boot as f64 + at(22)? as f64 / ticks,
        virtual_bytes: at(23)?,
        resident_bytes: at(24)? * page as u64,
        open_fds: std::fs::read_dir("/proc/self/fd").ok()?.count() as u64,
        max_fds: open_file_limit(),
    })
}

/// The fields after `(comm)`, which may itself hold spaces and parentheses.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

fn boot_time() -> Option<u64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs())
        })
}

/// The soft limit on open files (`ulimit -n`); `None` when unlimited.
pub fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_name_with_spaces_and_parentheses_is_skipped() {
        let stat = "42 (a (b) c) S 1 2 3";
        assert_eq!(stat_fields(stat).unwrap(), vec!["S", "1", "2", "3"]);
    }

    #[test]
    fn this_process_reads_as_plausible() {
        let u = usage().expect("/proc is mounted");
        assert!(u.resident_bytes > 0 && u.virtual_bytes >= u.resident_bytes);
        assert!(u.open_fds >= 3 && u.threads >= 1);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(u.start_time_secs <= now + 1.0 && u.start_time_secs > now - 86_400.0 * 365.0);
    }
}
