//! Process facts read from `/proc` (Linux): CPU time for benchmark reports.

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on every
/// Linux architecture this project builds for).
const USER_HZ: f64 = 100.0;

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
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_cpu_time_is_readable_and_grows() {
        let before = super::cpu_seconds(std::process::id()).expect("readable");
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(60) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let after = super::cpu_seconds(std::process::id()).expect("readable");
        assert!(after >= before);
        assert!(super::cpu_seconds(u32::MAX).is_none());
        assert!(super::peak_rss_kib(std::process::id()).is_some_and(|k| k > 0));
    }
}
