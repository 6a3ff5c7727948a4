//! The `dongting` binary as a user runs it.

use std::process::Command;

fn dongting(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dongting"))
        .args(args)
        .output()
        .expect("run dongting");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn demo_shows_echo_ping_port_rules_and_push() {
    let (ok, out) = dongting(&["demo"]);
    assert!(ok, "demo failed:\n{out}");
    assert!(out.contains("echo -> \"hello, dongting\""), "{out}");
    assert!(out.contains("COMMAND_NOT_SUPPORTED"), "{out}");
    assert!(out.contains("push from"), "{out}");
    assert!(out.contains("20000/20000 concurrent echoes"), "{out}");
}

#[test]
fn echo_bench_against_a_server_process() {
    let (ok, out) = dongting(&[
        "echo-bench",
        "--server-process",
        "--in-flight",
        "50",
        "--duration",
        "1",
        "--warmup",
        "0",
    ]);
    assert!(ok, "bench failed:\n{out}");
    assert!(out.contains("another process"), "{out}");
    assert!(
        out.contains("summary:") && out.contains(" 0 errors"),
        "{out}"
    );
    assert!(out.contains("server process"), "{out}");
}

#[test]
fn bad_arguments_are_refused_with_a_message() {
    let (ok, out) = dongting(&["echo-bench", "--connect", "not-an-address"]);
    assert!(!ok);
    assert!(out.contains("--connect"), "{out}");
    let (ok, out) = dongting(&["echo-bench", "--connect", "127.0.0.1:1", "--warmup", "0"]);
    assert!(!ok);
    assert!(out.contains("first echo to 127.0.0.1:1 failed"), "{out}");
}
