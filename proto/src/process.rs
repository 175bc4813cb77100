//! A process's figures, read from `/proc/<pid>` on demand (a few syscalls
//! per call, never sampled in the background): what the relay reports in
//! `stats`, what every sidecar exports as the standard `process_*`
//! metrics, and what the tests charge to the processes they start. One
//! reader, one set of names, those of the `process_*` metrics.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Fixed while the machine runs: read once, so that a `stats` answered on
/// the relay's swarm task costs two small reads of `/proc/self`, not a read
/// of the machine-wide `/proc/stat` as well.
static BOOT_TIME: OnceLock<u64> = OnceLock::new();
static CLOCK_TICKS: OnceLock<u64> = OnceLock::new();
static PAGE_SIZE: OnceLock<u64> = OnceLock::new();

/// Which process: this one, or another by its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    Own,
    Of(u32),
}

impl Pid {
    fn dir(self) -> PathBuf {
        match self {
            Pid::Own => PathBuf::from("/proc/self"),
            Pid::Of(pid) => PathBuf::from(format!("/proc/{pid}")),
        }
    }
}

impl From<u32> for Pid {
    fn from(pid: u32) -> Self {
        Pid::Of(pid)
    }
}

/// One process's figures at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// User plus system CPU time.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    /// Unix seconds.
    pub start_time_secs: f64,
    pub open_fds: u64,
}

/// The figures of `pid`; `None` where `/proc` is not mounted or the
/// process has exited. Descriptors that cannot be listed (another user's
/// process) count as 0 rather than losing the other figures.
pub fn usage(pid: impl Into<Pid>) -> Option<Usage> {
    let dir = pid.into().dir();
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let fields = stat_fields(&stat)?;
    // Numbered as in proc(5), where `state` is field 3: utime 14, stime 15,
    // num_threads 20, starttime 22, vsize 23, rss 24.
    let at = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let ticks = *CLOCK_TICKS.get_or_init(|| sysconf(libc::_SC_CLK_TCK, 100)) as f64;
    let page = *PAGE_SIZE.get_or_init(|| sysconf(libc::_SC_PAGESIZE, 4096));
    Some(Usage {
        cpu_seconds: (at(14)? + at(15)?) as f64 / ticks,
        threads: at(20)?,
        start_time_secs: *BOOT_TIME.get_or_init(boot_time) as f64 + at(22)? as f64 / ticks,
        virtual_bytes: at(23)?,
        resident_bytes: at(24)? * page,
        open_fds: count_fds(&dir).unwrap_or(0),
    })
}

/// CPU time `pid`'s live threads have run, in nanoseconds, from each
/// thread's `schedstat` (the scheduler's own clock, not the 10 ms ticks
/// `usage` reads): precise enough to tell apart two processes that are
/// both nearly idle. Threads that have exited no longer count, so it suits
/// a window in which the process starts and ends no threads; `None` when
/// `pid` is gone or the kernel keeps no schedstat.
pub fn cpu_nanos(pid: impl Into<Pid>) -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(pid.into().dir().join("task")).ok()? {
        let Ok(schedstat) = std::fs::read_to_string(task.ok()?.path().join("schedstat")) else {
            continue; // the thread ended while being listed
        };
        total += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// This process's figures.
pub fn own() -> Option<Usage> {
    usage(Pid::Own)
}

/// Open file descriptors of `pid`; `None` once it has exited.
pub fn open_fds(pid: impl Into<Pid>) -> Option<u64> {
    count_fds(&pid.into().dir())
}

fn count_fds(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir.join("fd"))
        .ok()
        .map(|d| d.count() as u64)
}

/// This process's soft limit on open files (`ulimit -n`); `None` when
/// unlimited.
pub fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// The fields after `(comm)`, which may itself hold spaces and parentheses.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

/// When the machine booted, in Unix seconds (process start times count
/// from it).
fn boot_time() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            stat.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        })
}

fn sysconf(name: libc::c_int, fallback: u64) -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|v| *v > 0).unwrap_or(fallback)
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
    fn this_process_reads_as_plausible_by_self_and_by_pid() {
        for u in [own(), usage(std::process::id())] {
            let u = u.expect("/proc is mounted");
            assert!(u.resident_bytes > 1 << 20, "{u:?}");
            assert!(u.virtual_bytes >= u.resident_bytes, "{u:?}");
            assert!(u.open_fds >= 3 && u.threads >= 1, "{u:?}");
            assert!(u.cpu_seconds >= 0.0, "{u:?}");
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            assert!(u.start_time_secs <= now + 1.0 && u.start_time_secs > now - 86_400.0 * 365.0);
        }
        assert!(open_fds(std::process::id()).is_some_and(|n| n >= 3));
    }

    #[test]
    fn scheduler_time_grows_with_work_and_agrees_with_the_ticks() {
        let pid = std::process::id();
        let (a, ticks_a) = (cpu_nanos(pid).unwrap(), own().unwrap().cpu_seconds);
        let until = std::time::Instant::now() + std::time::Duration::from_millis(300);
        let mut x = 0u64;
        while std::time::Instant::now() < until {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let (b, ticks_b) = (cpu_nanos(pid).unwrap(), own().unwrap().cpu_seconds);
        let spun = (b - a) as f64 / 1e9;
        assert!(spun >= 0.25, "spun {spun} s of CPU in 0.3 s of busy loop");
        // The tick count moves by the same amount, give or take the ticks
        // other test threads spent meanwhile.
        assert!(
            ticks_b - ticks_a >= spun - 0.05,
            "{ticks_a} -> {ticks_b}, {spun}"
        );
    }

    #[test]
    fn a_process_that_is_gone_reads_as_none() {
        assert!(usage(u32::MAX).is_none());
        assert!(cpu_nanos(u32::MAX).is_none());
        assert!(open_fds(u32::MAX).is_none());
    }
}
