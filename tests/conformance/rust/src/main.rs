//! Runs `tests/conformance/scenarios.txt` through the Rust SDK facade
//! (`dongting-sdk`), the API every binding projects. See
//! `tests/conformance/README.md` for the file format and the output.

use std::cell::RefCell;
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use dongting_sdk::{Error, KvClient, Lock, Node, NodeKind, Reply, Runtime, Watch};

/// One step of a scenario: its line number, operation tokens and expectation tokens.
struct Step {
    line: usize,
    op: Vec<String>,
    expect: Vec<String>,
}

struct Scenario {
    name: String,
    steps: Vec<Step>,
}

fn parse(text: &str) -> Result<Vec<Scenario>, String> {
    let mut out: Vec<Scenario> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let tokens: Vec<String> = raw.split_whitespace().map(str::to_string).collect();
        if tokens[0] == "scenario" {
            if tokens.len() != 2 {
                return Err(format!("line {line}: scenario takes one name"));
            }
            out.push(Scenario {
                name: tokens[1].clone(),
                steps: Vec::new(),
            });
            continue;
        }
        let Some(sc) = out.last_mut() else {
            return Err(format!("line {line}: step before the first scenario"));
        };
        let (op, expect) = match tokens.iter().position(|t| t == "=>") {
            Some(p) => (tokens[..p].to_vec(), tokens[p + 1..].to_vec()),
            None => (tokens, Vec::new()),
        };
        sc.steps.push(Step { line, op, expect });
    }
    Ok(out)
}

/// Replaces `$P` by the scenario's prefix and `{C*N}` by `C` repeated `N` times;
/// `-` is the empty string.
fn expand(token: &str, prefix: &str) -> Result<String, String> {
    if token == "-" {
        return Ok(String::new());
    }
    let s = token.replace("$P", prefix);
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed {{ in {token}"))?
            + open;
        let inner = &rest[open + 1..close];
        let (c, n) = inner
            .split_once('*')
            .ok_or_else(|| format!("bad repeat {{{inner}}} in {token}"))?;
        let n: usize = n
            .parse()
            .map_err(|_| format!("bad repeat count in {token}"))?;
        out.push_str(&c.repeat(n));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

struct Runner {
    group: u32,
    lang: String,
    /// The cluster's addresses (`$S` of `new_client`).
    servers: String,
    a: KvClient,
    b: KvClient,
    u: KvClient,
    /// Lock handles by (client, key), made on a lock step's first use of them.
    locks: RefCell<HashMap<(String, String), Lock>>,
    /// Watches by (client, key), made by `watch` steps.
    watches: RefCell<HashMap<(String, String), Watch>>,
}

fn name_of(e: &Error) -> &'static str {
    Error::code_name(e.code())
}

impl Runner {
    fn client(&self, c: &str) -> Result<&KvClient, String> {
        match c {
            "a" => Ok(&self.a),
            "b" => Ok(&self.b),
            "u" => Ok(&self.u),
            _ => Err(format!("unknown client {c:?}")),
        }
    }

    /// The client's handle on the lock at `key`, made on first use.
    fn lock(&self, client: &str, key: &[u8]) -> Result<Result<Lock, Error>, String> {
        let id = (
            client.to_string(),
            String::from_utf8_lossy(key).into_owned(),
        );
        if let Some(l) = self.locks.borrow().get(&id) {
            return Ok(Ok(l.clone()));
        }
        let made = self.client(client)?.create_lock(self.group, key);
        if let Ok(l) = &made {
            self.locks.borrow_mut().insert(id, l.clone());
        }
        Ok(made)
    }

    /// `new_client ADDRESSES TIMEOUT_MS`: makes a client and closes it.
    fn new_client(&self, op: &[String], prefix: &str) -> Result<Result<Reply, Error>, String> {
        if op.len() != 3 {
            return Err("new_client takes ADDRESSES and TIMEOUT_MS".into());
        }
        let addrs = expand(&op[1], prefix)?.replace("$S", &self.servers);
        let ms: u64 = op[2].parse().map_err(|_| "bad number".to_string())?;
        Ok(KvClient::new(self.a.runtime(), &addrs, ms)
            .and_then(|c| c.close().map(|()| Reply::default())))
    }

    fn call(&self, op: &[String], prefix: &str) -> Result<Result<Reply, Error>, String> {
        if op[0] == "new_client" {
            return self.new_client(op, prefix);
        }
        let args: Vec<String> = op
            .iter()
            .skip(2)
            .map(|t| expand(t, prefix))
            .collect::<Result<_, _>>()?;
        let b: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        let want = |n: usize| {
            if b.len() == n {
                Ok(())
            } else {
                Err(format!("{} takes {n} arguments, got {}", op[0], b.len()))
            }
        };
        let num = |s: &[u8]| -> Result<u64, String> {
            std::str::from_utf8(s)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| "bad number".to_string())
        };
        let c = self.client(op.get(1).map(String::as_str).unwrap_or(""))?;
        let g = self.group;
        Ok(match op[0].as_str() {
            "put" => {
                want(2)?;
                c.put(g, b[0], b[1])
            }
            "get" => {
                want(1)?;
                c.get(g, b[0])
            }
            "remove" => {
                want(1)?;
                c.remove(g, b[0])
            }
            "mkdir" => {
                want(1)?;
                c.mkdir(g, b[0])
            }
            "list" => {
                want(1)?;
                c.list(g, b[0])
            }
            "list_page" => {
                want(3)?;
                c.list_page(g, b[0], b[1], num(b[2])?)
            }
            "list_pages" => {
                want(2)?;
                let limit = num(b[1])?;
                let mut all = Reply::default();
                let mut after = Vec::new();
                loop {
                    match c.list_page(g, b[0], &after, limit) {
                        Err(e) => break Err(e),
                        Ok(mut page) => {
                            if let Some(last) = page.nodes.last() {
                                after = last.key.to_vec();
                            }
                            all.nodes.append(&mut page.nodes);
                            if !page.more {
                                break Ok(all);
                            }
                        }
                    }
                }
            }
            "batch_put" => {
                if !b.len().is_multiple_of(2) {
                    return Err("batch_put takes key/value pairs".into());
                }
                let keys: Vec<&[u8]> = b.iter().step_by(2).copied().collect();
                let values: Vec<&[u8]> = b.iter().skip(1).step_by(2).copied().collect();
                c.batch_put(g, &keys, &values)
            }
            "batch_get" => c.batch_get(g, &b),
            "batch_remove" => c.batch_remove(g, &b),
            "cas" => {
                want(3)?;
                c.compare_and_set(g, b[0], b[1], b[2])
            }
            "put_temp" => {
                want(3)?;
                c.put_temp(g, b[0], b[1], num(b[2])?)
            }
            "make_temp_dir" => {
                want(2)?;
                c.make_temp_dir(g, b[0], num(b[1])?)
            }
            "update_ttl" => {
                want(2)?;
                c.update_ttl(g, b[0], num(b[1])?)
            }
            "try_lock" | "unlock" | "update_lease" => {
                want(match op[0].as_str() {
                    "try_lock" => 3,
                    "unlock" => 1,
                    _ => 2,
                })?;
                let lock = match self.lock(&op[1], b[0])? {
                    Ok(l) => l,
                    Err(e) => return Ok(Err(e)),
                };
                match op[0].as_str() {
                    "try_lock" => lock.try_lock_async(num(b[1])?, num(b[2])?).wait_result(),
                    "unlock" => lock.unlock_async().wait_result(),
                    _ => lock.update_lease_async(num(b[1])?).wait_result(),
                }
            }
            "watch" => {
                want(1)?;
                let id = (op[1].clone(), args[0].clone());
                if self.watches.borrow().contains_key(&id) {
                    return Err(format!("client {} already watches {}", op[1], args[0]));
                }
                c.watch(g, &[b[0]], 0).map(|w| {
                    self.watches.borrow_mut().insert(id, w);
                    Reply::default()
                })
            }
            "next_event" | "unwatch" => {
                want(if op[0] == "unwatch" { 1 } else { 2 })?;
                let id = (op[1].clone(), args[0].clone());
                let Some(w) = self.watches.borrow().get(&id).cloned() else {
                    return Err(format!("client {} does not watch {}", op[1], args[0]));
                };
                if op[0] == "unwatch" {
                    w.close().map(|()| Reply::default())
                } else {
                    // The event, as the one node of the reply; none when
                    // nothing came in time.
                    w.next(num(b[1])?).map(|e| Reply {
                        nodes: e
                            .map(|e| Node {
                                key: e.key,
                                value: e.value,
                                kind: e.node_kind,
                                ..Node::default()
                            })
                            .into_iter()
                            .collect(),
                        ..Reply::default()
                    })
                }
            }
            other => return Err(format!("unknown step {other:?}")),
        })
    }

    fn step(&self, step: &Step, prefix: &str) -> Result<(), String> {
        if step.op[0] == "sleep" {
            let ms: u64 = step
                .op
                .get(1)
                .and_then(|s| s.parse().ok())
                .ok_or("sleep takes milliseconds")?;
            std::thread::sleep(Duration::from_millis(ms));
            return Ok(());
        }
        let result = self.call(&step.op, prefix)?;
        let expect: Vec<String> = step
            .expect
            .iter()
            .map(|t| expand(t, prefix))
            .collect::<Result<_, _>>()?;
        let Some(kind) = step.expect.first() else {
            return Err("missing expectation".into());
        };
        let reply = match (kind.as_str(), result) {
            ("error", Err(e)) => {
                let names = step.expect.get(1).ok_or("error takes a code name")?;
                return if names.split('|').any(|n| n == name_of(&e)) {
                    Ok(())
                } else {
                    Err(format!("expected error {names}, got {} ({e})", name_of(&e)))
                };
            }
            ("error", Ok(_)) => {
                let names = step.expect.get(1).map(String::as_str).unwrap_or("");
                return Err(format!("expected error {names}, got success"));
            }
            (_, Err(e)) => return Err(format!("expected {kind}, got error {} ({e})", name_of(&e))),
            (_, Ok(r)) => r,
        };
        let got_value = |n: &dongting_sdk::Node| match n.kind {
            NodeKind::Absent => "-".to_string(),
            NodeKind::Value => String::from_utf8_lossy(&n.value).into_owned(),
            NodeKind::Dir => "<dir>".to_string(),
            NodeKind::Lock => "<lock>".to_string(),
        };
        match kind.as_str() {
            "ok" => Ok(()),
            "locked" | "not_locked" => {
                let got = if reply.token > 0 {
                    "locked"
                } else {
                    "not_locked"
                };
                check(std::slice::from_ref(kind), &[got.to_string()])
            }
            "lock" => {
                let got = reply.nodes.first().map(got_value).unwrap_or("-".into());
                check(&["<lock>".to_string()], &[got])
            }
            "event" | "none" => {
                let got: Vec<String> = match reply.nodes.first() {
                    None => vec!["none".into()],
                    Some(n) => {
                        let mut v = vec![
                            "event".to_string(),
                            String::from_utf8_lossy(&n.key).into_owned(),
                        ];
                        match n.kind {
                            NodeKind::Absent => v.push("absent".into()),
                            NodeKind::Dir => v.push("dir".into()),
                            NodeKind::Lock => v.push("lock".into()),
                            NodeKind::Value => {
                                v.push("value".into());
                                v.push(String::from_utf8_lossy(&n.value).into_owned());
                            }
                        }
                        v
                    }
                };
                check(&expect, &got)
            }
            "value" | "absent" | "dir" => {
                let got = reply.nodes.first().map(got_value).unwrap_or("-".into());
                let want = match kind.as_str() {
                    "value" => expect.get(1).cloned().ok_or("value takes a value")?,
                    "absent" => "-".into(),
                    _ => "<dir>".into(),
                };
                check(&[want], &[got])
            }
            "children" => {
                let got: Vec<String> = reply
                    .nodes
                    .iter()
                    .map(|n| {
                        let k = String::from_utf8_lossy(&n.key);
                        k.rsplit('.').next().unwrap_or("").to_string()
                    })
                    .collect();
                check(&expect[1..], &got)
            }
            "page" => {
                let mut got = vec![if reply.more { "more" } else { "end" }.to_string()];
                got.extend(reply.nodes.iter().map(|n| {
                    let k = String::from_utf8_lossy(&n.key);
                    k.rsplit('.').next().unwrap_or("").to_string()
                }));
                check(&expect[1..], &got)
            }
            "values" => {
                let got: Vec<String> = reply.nodes.iter().map(got_value).collect();
                let want: Vec<String> = step.expect[1..]
                    .iter()
                    .map(|t| {
                        if t == "-" {
                            Ok("-".to_string())
                        } else {
                            expand(t, prefix)
                        }
                    })
                    .collect::<Result<_, _>>()?;
                check(&want, &got)
            }
            "codes" => {
                let got: Vec<String> = reply
                    .codes
                    .iter()
                    .map(|c| Error::code_name(*c).to_string())
                    .collect();
                check(&expect[1..], &got)
            }
            other => Err(format!("unknown expectation {other:?}")),
        }
    }

    fn scenario(&self, sc: &Scenario) -> Result<(), String> {
        let prefix = format!("conf.{}.{}", self.lang, sc.name);
        for dir in [
            "conf".to_string(),
            format!("conf.{}", self.lang),
            prefix.clone(),
        ] {
            self.a
                .mkdir(self.group, dir.as_bytes())
                .map_err(|e| format!("setup: mkdir {dir}: {e}"))?;
        }
        for step in &sc.steps {
            self.step(step, &prefix)
                .map_err(|e| format!("line {}: {e}", step.line))?;
        }
        Ok(())
    }
}

fn check(want: &[String], got: &[String]) -> Result<(), String> {
    if want == got {
        Ok(())
    } else {
        let short = |v: &[String]| {
            v.iter()
                .map(|s| {
                    if s.len() > 40 {
                        format!("{}...({} bytes)", &s[..20], s.len())
                    } else {
                        s.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        Err(format!("expected [{}], got [{}]", short(want), short(got)))
    }
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
}

fn run() -> Result<(usize, usize), String> {
    let servers = env("DT_SERVERS")?;
    let group: u32 = env("DT_GROUP")?
        .parse()
        .map_err(|_| "DT_GROUP is not a number".to_string())?;
    let path = env("DT_SCENARIOS")?;
    let lang = std::env::var("DT_LANG").unwrap_or_else(|_| "rust".into());
    let text = std::fs::read_to_string(&path).map_err(|e| format!("read {path}: {e}"))?;
    let scenarios = parse(&text)?;
    let rt = Runtime::new(2).map_err(|e| e.to_string())?;
    let mk = |s: &str, t| KvClient::new(&rt, s, t).map_err(|e| e.to_string());
    let runner = Runner {
        group,
        lang: lang.clone(),
        servers: servers.clone(),
        a: mk(&servers, 10_000)?,
        b: mk(&servers, 10_000)?,
        u: mk("127.0.0.1:1", 500)?,
        locks: RefCell::new(HashMap::new()),
        watches: RefCell::new(HashMap::new()),
    };
    let (mut passed, mut failed) = (0, 0);
    for sc in &scenarios {
        match runner.scenario(sc) {
            Ok(()) => {
                passed += 1;
                println!("PASS {}", sc.name);
            }
            Err(e) => {
                failed += 1;
                println!("FAIL {}: {e}", sc.name);
            }
        }
    }
    runner.locks.borrow_mut().clear();
    for w in runner.watches.borrow_mut().drain() {
        let _ = w.1.close();
    }
    for c in [&runner.a, &runner.b, &runner.u] {
        let _ = c.close();
    }
    let _ = rt.shutdown(Duration::from_secs(5));
    println!("{lang}: {passed} passed, {failed} failed");
    Ok((passed, failed))
}

fn main() -> ExitCode {
    match run() {
        Ok((_, 0)) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("conformance: {e}");
            ExitCode::from(2)
        }
    }
}
