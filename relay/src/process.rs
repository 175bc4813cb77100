//! The relay's own resource use, read from `/proc/self`, for `stats` and the
//! exporters. Read on demand (a few syscalls per call), never sampled in the
//! background.

use std::fs;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Usage {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
    pub open_fds: u64,
    pub threads: u64,
}

/// Reads the current usage; fields that cannot be read stay 0.
pub fn usage() -> Usage {
    let mut u = Usage::default();
    if let Ok(stat) = fs::read_to_string("/proc/self/stat") {
        // Fields after the command name, which is parenthesised and may hold spaces.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = clock_ticks();
            let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
            // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
            u.cpu_seconds = (num(11) + num(12)) as f64 / ticks;
            u.threads = num(17);
            u.rss_bytes = num(21) * page_size();
        }
    }
    u.open_fds = fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    u
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn usage_reports_this_process() {
        let u = super::usage();
        assert!(u.rss_bytes > 1 << 20, "{u:?}");
        assert!(u.open_fds >= 3, "{u:?}");
        assert!(u.threads >= 1, "{u:?}");
    }
}
