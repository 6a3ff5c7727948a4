//! Recovery of a log whose only segment holds arbitrary bytes: opening either
//! succeeds or returns an error (never a panic), and recovery is idempotent:
//! a second open sees exactly what the first one left.
#![no_main]

use dongting_store::{LOG_DIR, LogConfig, RaftLog};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // tmpfs where there is one: fsync costs nothing there, so the fuzzer
    // spends its time in recovery rather than waiting for the disk.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("temp dir");
    let log_dir = dir.path().join(LOG_DIR);
    std::fs::create_dir_all(&log_dir).expect("log dir");
    std::fs::write(log_dir.join(format!("{:020}.log", 1)), data).expect("segment");
    let first = match RaftLog::open(dir.path(), LogConfig::default()) {
        Ok(log) => {
            let seen = (log.first_index(), log.last_index(), log.last_term());
            log.close().expect("close after open");
            seen
        }
        Err(_) => return,
    };
    let log = RaftLog::open(dir.path(), LogConfig::default()).expect("reopen after recovery");
    assert_eq!(
        first,
        (log.first_index(), log.last_index(), log.last_term())
    );
    log.close().expect("close");
});
