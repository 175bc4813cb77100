//! Resource use of a process, read from `/proc/<pid>`: what the benchmark
//! charges to the relay per GiB relayed and per reserved peer, and the
//! descriptors an attacked process holds.

/// CPU time and resident memory of one process at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

/// Reads the usage of process `pid`; `None` once it has exited.
pub fn usage(pid: u32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is parenthesised and may hold spaces: fields start after it.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| fields.get(i).and_then(|s| s.parse::<u64>().ok());
    // stat(5): utime and stime are fields 14 and 15, rss field 24; `rest` starts at field 3.
    let ticks = num(11)? + num(12)?;
    let rss_pages = num(21)?;
    Some(Usage {
        cpu_seconds: ticks as f64 / sysconf(libc::_SC_CLK_TCK, 100) as f64,
        rss_bytes: rss_pages * sysconf(libc::_SC_PAGESIZE, 4096),
    })
}

/// Open file descriptors of process `pid`; `None` once it has exited.
pub fn open_fds(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(Iterator::count)
}

fn sysconf(name: libc::c_int, fallback: u64) -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|v| *v > 0).unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let u = super::usage(std::process::id()).expect("own /proc entry");
        assert!(u.rss_bytes > 1 << 20, "{u:?}");
        assert!(u.cpu_seconds >= 0.0, "{u:?}");
        assert!(super::usage(u32::MAX).is_none());
        assert!(super::open_fds(std::process::id()).is_some_and(|n| n >= 3));
    }
}
