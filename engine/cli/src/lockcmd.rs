//! `dongting kv lock KEY -- COMMAND ARGS...`: run a command while holding a
//! DtKV lock.

use std::process::{Command, ExitStatus};
use std::time::Duration;

use dongting_client::KvClient;

/// How often the child process is polled for its exit.
const CHILD_POLL: Duration = Duration::from_millis(20);

/// Acquires the lock at `key` (waiting up to `wait_ms`), runs `command` with
/// `DONGTING_FENCING_TOKEN` in its environment while renewing the lease every
/// third of `lease_ms`, then releases the lock. Returns the command's exit
/// code; kills the command and fails when the lock is lost while it runs.
pub async fn run(
    c: &KvClient,
    group: u32,
    key: &str,
    lease_ms: u64,
    wait_ms: u64,
    command: &[String],
) -> Result<i32, String> {
    let Some((program, args)) = command.split_first() else {
        return Err("no command given: use `dongting kv lock KEY -- COMMAND ARGS...`".into());
    };
    if lease_ms == 0 {
        return Err("--lease-ms must be at least 1".into());
    }
    let lock = c.create_lock(group, key).map_err(|e| e.to_string())?;
    let token = match lock.try_lock(lease_ms, wait_ms).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Err(format!(
                "NOT_ACQUIRED: lock {key} is held by another client (waited {wait_ms} ms)"
            ));
        }
        Err(e) => return Err(format!("cannot acquire lock {key}: {e}")),
    };
    eprintln!("lock {key} acquired: fencing token {token}");
    let mut child = match Command::new(program)
        .args(args)
        .env("DONGTING_FENCING_TOKEN", token.to_string())
        .spawn()
    {
        Ok(ch) => ch,
        Err(e) => {
            let _ = lock.unlock().await;
            return Err(format!("cannot run {program}: {e}"));
        }
    };
    let exited = async {
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) => tokio::time::sleep(CHILD_POLL).await,
                Err(e) => return Err(e),
            }
        }
    };
    let outcome: Result<std::io::Result<ExitStatus>, ()> = tokio::select! {
        s = exited => Ok(s),
        () = lock.keep_renewed(lease_ms) => Err(()),
    };
    match outcome {
        Ok(Ok(status)) => {
            if let Err(e) = lock.unlock().await {
                eprintln!("dongting: releasing lock {key} failed ({e}); it ends with its lease");
            }
            Ok(exit_code(status))
        }
        Ok(Err(e)) => {
            let _ = child.kill();
            let _ = lock.unlock().await;
            Err(format!("waiting for {program} failed: {e}"))
        }
        Err(()) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "LOCK_LOST: lock {key} (fencing token {token}) could not be renewed; {program} was killed"
            ))
        }
    }
}

/// The shell's convention: the exit code, or 128 + the signal number.
fn exit_code(status: ExitStatus) -> i32 {
    if let Some(c) = status.code() {
        return c;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return 128 + sig;
        }
    }
    1
}
