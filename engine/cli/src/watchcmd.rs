//! `dongting kv watch KEY...`: prints each event of the keys as one line until
//! Ctrl-C (or `--count` events).

use dongting_client::{KvClient, WatchItem, state_name};

/// Watches `keys` and prints `INDEX<TAB>KEY<TAB>STATE<TAB>VALUE` per event
/// (STATE: absent, value, dir or lock; VALUE empty unless STATE is value).
/// A compacted history prints `compacted<TAB>resume_index=N<TAB>history_floor=F`:
/// re-read the keys, events continue after N.
pub async fn watch(
    c: &KvClient,
    group: u32,
    keys: &[String],
    from_index: u64,
    count: Option<u64>,
) -> Result<(), String> {
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let mut s = c
        .watch(group, &refs, from_index)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "watching {} key(s) of group {group} after index {}",
        keys.len(),
        s.last_index()
    );
    let mut printed = 0u64;
    loop {
        if count.is_some_and(|n| printed >= n) {
            break;
        }
        let item = tokio::select! {
            r = s.next() => r.map_err(|e| e.to_string())?,
            _ = tokio::signal::ctrl_c() => break,
        };
        match item {
            WatchItem::Event(e) => println!(
                "{}\t{}\t{}\t{}",
                e.index,
                String::from_utf8_lossy(&e.key),
                state_name(e.state),
                String::from_utf8_lossy(&e.value)
            ),
            WatchItem::Compacted {
                resume_index,
                history_floor,
            } => println!("compacted\tresume_index={resume_index}\thistory_floor={history_floor}"),
        }
        printed += 1;
    }
    s.close().await;
    Ok(())
}
