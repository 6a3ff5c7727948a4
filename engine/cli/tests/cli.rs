//! The `dongting` binary as a user runs it.

mod common;

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

/// `dongting dev` starts a cluster and prints how to reach it; the `kv` and
/// `admin` commands work against it and report errors with a non-zero exit.
/// A client command prints its one error line and nothing of the client
/// library's logs unless asked; no colour codes when stderr is not a terminal.
#[test]
fn client_commands_print_only_their_answer_unless_verbose() {
    let args = [
        "kv",
        "--servers",
        "127.0.0.1:1",
        "--timeout-ms",
        "300",
        "get",
        "k",
    ];
    let (ok, out) = dongting(&args);
    assert!(!ok, "{out}");
    assert_eq!(out.trim_end().lines().count(), 1, "one error line:\n{out}");
    assert!(!out.contains("WARN") && !out.contains('\u{1b}'), "{out}");
    let mut verbose = vec!["-vv"];
    verbose.extend_from_slice(&args);
    let (ok, out) = dongting(&verbose);
    assert!(!ok && out.lines().count() > 1, "logs with -vv:\n{out}");
    assert!(!out.contains('\u{1b}'), "no colour into a pipe:\n{out}");
    let (ok, out) = dongting(&["--log-format", "yaml", "kv", "get", "k"]);
    assert!(
        !ok && out.contains("--log-format must be text or json"),
        "{out}"
    );
}

#[test]
fn dev_cluster_with_kv_and_admin_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut dev, addrs) = common::start_dev(common::BIN, dir.path());
    let (service, replicate) = (addrs.service, addrs.replicate);
    let kv = |args: &[&str]| {
        let mut a = vec!["kv", "--servers", service.as_str()];
        a.extend_from_slice(args);
        dongting(&a)
    };
    let (ok, out) = kv(&["mkdir", "app"]);
    assert!(ok && out.contains("ok index="), "{out}");
    let (ok, out) = kv(&["put", "app.color", "blue"]);
    assert!(ok, "{out}");
    let (ok, out) = kv(&["get", "app.color"]);
    assert!(ok && out.starts_with("blue\n"), "{out}");
    let (ok, out) = kv(&["get", "app.color", "--read-mode", "stale"]);
    assert!(
        ok && out.starts_with("blue\n") || out.contains("NOT_FOUND"),
        "{out}"
    );
    let (ok, out) = kv(&["ls", "app", "--read-mode", "follower"]);
    assert!(ok && out.contains("app.color\tblue"), "{out}");
    let (ok, out) = kv(&["batch-put", "app.a=1", "app.b=2"]);
    assert!(ok && out.contains("app.a\tok"), "{out}");
    let (ok, out) = kv(&["cas", "app.a", "1", "10"]);
    assert!(ok, "{out}");
    let (ok, out) = kv(&["batch-get", "app.a", "app.nope"]);
    assert!(
        ok && out.contains("app.a\t10") && out.contains("app.nope\t(not found)"),
        "{out}"
    );
    let (ok, out) = kv(&["ls", "app"]);
    assert!(ok && out.contains("app.b\t2"), "{out}");
    // One page at a time: the first page names where the next one starts.
    let (ok, out) = kv(&["ls", "app", "--limit", "2"]);
    assert!(
        ok && out.contains("app.a\t10")
            && out.contains("app.b\t2")
            && !out.contains("app.color")
            && out.contains("--start-after \"app.b\""),
        "{out}"
    );
    let (ok, out) = kv(&["ls", "app", "--limit", "2", "--start-after", "app.b"]);
    assert!(
        ok && out.contains("app.color\tblue") && !out.contains("more:"),
        "{out}"
    );
    let (ok, out) = kv(&["ls", "app", "--limit", "10001"]);
    assert!(!ok && out.contains("10001"), "{out}");
    let (ok, out) = kv(&["batch-rm", "app.a", "app.b"]);
    assert!(ok, "{out}");
    let (ok, out) = kv(&["rm", "app"]);
    assert!(!ok && out.contains("DIR_NOT_EMPTY"), "{out}");
    let (ok, out) = kv(&["put", "bad..key", "x"]);
    assert!(!ok && out.contains("INVALID_KEY"), "{out}");
    let (ok, out) = kv(&["--group", "42", "get", "app"]);
    assert!(!ok && out.contains("RAFT_GROUP_NOT_FOUND"), "{out}");
    let (ok, out) = dongting(&["admin", "--servers", &replicate, "status"]);
    assert!(
        ok && out.contains("role=leader") && out.matches("group 0").count() == 3,
        "{out}"
    );
    let (ok, out) = dongting(&["admin", "--servers", &replicate, "list-groups"]);
    assert!(
        ok && out.lines().filter(|l| l.ends_with(": 0")).count() == 3,
        "{out}"
    );
    common::send_signal(dev.id(), "-TERM", false);
    assert!(dev.wait().expect("wait").success());
}

/// `dongting bench` starts its own node, prints progress and a summary with
/// latency percentiles and the server's CPU and memory.
#[test]
fn kv_bench_against_its_own_node() {
    let (ok, out) = dongting(&[
        "bench",
        "--nodes",
        "1",
        "--op",
        "put",
        "--keys",
        "100",
        "--max-pending",
        "20",
        "--duration",
        "1",
        "--warmup",
        "1",
    ]);
    assert!(ok, "bench failed:\n{out}");
    assert!(
        out.contains("[  1s warm-up]") && out.contains("[  2s measure]"),
        "{out}"
    );
    assert!(
        out.contains("summary: put") && out.contains(" 0 errors") && out.contains("p99.9"),
        "{out}"
    );
    assert!(
        out.contains("server process 1") && out.contains("peak RSS"),
        "{out}"
    );
    let (ok, out) = dongting(&[
        "bench",
        "--nodes",
        "1",
        "--op",
        "get",
        "--keys",
        "100",
        "--max-pending",
        "8",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--sync-calls",
    ]);
    assert!(
        ok && out.contains("summary: get") && out.contains(" 0 errors"),
        "{out}"
    );
}
