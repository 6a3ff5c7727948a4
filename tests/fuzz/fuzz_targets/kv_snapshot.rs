//! The snapshot restorer on arbitrary chunks: it refuses or builds a state
//! machine, never panics; a state machine it builds snapshots and restores
//! again to the same applied index.
#![no_main]

use dongting_kv::{KvLimits, KvStateMachine, Restorer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Chunks are length-prefixed by one byte each, so the fuzzer controls
    // how the stream is cut.
    let mut restorer = Restorer::new(KvLimits::default());
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        if restorer.push(&tail[..len]).is_err() {
            return;
        }
        rest = &tail[len..];
    }
    let Ok(sm) = restorer.finish() else { return };
    let mut again = KvStateMachine::new(KvLimits::default());
    again
        .restore(sm.snapshot())
        .expect("restore of a fresh snapshot");
    assert_eq!(again.applied_index(), sm.applied_index());
});
