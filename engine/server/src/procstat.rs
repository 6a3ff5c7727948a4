//! Process facts from `/proc` (Linux): resident memory, CPU time and open
//! files, for metrics and benchmark reports (zeros or `None` where they
//! cannot be read).

/// One reading of the process's resources.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcessStats {
    pub(crate) resident_bytes: u64,
    pub(crate) cpu_seconds: f64,
    pub(crate) open_files: u64,
}

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on every
/// Linux architecture this project builds for).
const USER_HZ: f64 = 100.0;

/// This process's resident memory, CPU time and open files.
pub(crate) fn read() -> ProcessStats {
    let resident_bytes = status_kib(std::process::id(), "VmRSS:").map_or(0, |k| k * 1024);
    let open_files = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    ProcessStats {
        resident_bytes,
        cpu_seconds: cpu_seconds(std::process::id()).unwrap_or(0.0),
        open_files,
    }
}

/// User plus system CPU seconds used so far by process `pid` (all its
/// threads), or `None` when it cannot be read.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Peak resident set size of process `pid` in KiB (`VmHWM`), or `None`.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// The KiB value of line `field` of `/proc/<pid>/status`.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let s = super::read();
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(s.resident_bytes > 0 && s.open_files > 0, "{s:?}");
        }
    }
}
