//! This process's resident memory, CPU time and open files, from `/proc`
//! (zeros where it is not available).

/// One reading of the process's resources.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcessStats {
    pub(crate) resident_bytes: u64,
    pub(crate) cpu_seconds: f64,
    pub(crate) open_files: u64,
}

/// Clock ticks per second of `/proc/self/stat`'s times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// Reads `/proc/self/status`, `/proc/self/stat` and `/proc/self/fd`.
pub(crate) fn read() -> ProcessStats {
    let resident_bytes = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0);
    // Fields after the command name (which may hold spaces) close with ')'.
    let cpu_seconds = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
            let user: f64 = f.get(11)?.parse().ok()?;
            let system: f64 = f.get(12)?.parse().ok()?;
            Some((user + system) / TICKS_PER_SECOND)
        })
        .unwrap_or(0.0);
    let open_files = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    ProcessStats {
        resident_bytes,
        cpu_seconds,
        open_files,
    }
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
