//! Process facts read from `/proc` (Linux): CPU time for benchmark reports
//! (the node runtime's readers, which its metrics use too).

pub use dongting_server::procstat::{cpu_seconds, peak_rss_kib};

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
