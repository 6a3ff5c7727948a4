//! The two clocks of the node: a monotonic one for raft and timers, and the
//! wall clock stamped into DtKV commands.

use std::time::Instant;

/// Milliseconds of a monotonic clock shared by every group of the process.
pub(crate) fn mono_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    start.elapsed().as_millis() as u64 + 1
}

/// Wall-clock milliseconds since the epoch (stamped into DtKV commands).
pub(crate) fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
