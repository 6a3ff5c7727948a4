//! The error tables of the docs list exactly the codes of [`codes()`]:
//! `docs/kv.md` every DtKV code (and which are retryable), `docs/protocol.md`
//! every RPC status code, `docs/c-api.md` every code of the facade itself.

use dongting_sdk::error::KV_CODE_BASE;
use dongting_sdk::{CodeSource, codes};

fn doc(name: &str) -> String {
    let path = format!("{}/../../docs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The rows `| number | NAME | rest` of the table under `heading`.
fn table_rows(text: &str, heading: &str) -> Vec<(i32, String, String)> {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"));
    let section = &text[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    section
        .lines()
        .filter_map(|line| {
            let mut cells = line.trim().strip_prefix('|')?.split('|').map(str::trim);
            let number = cells.next()?.parse().ok()?;
            let name = cells.next()?.to_string();
            Some((number, name, cells.collect::<Vec<_>>().join("|")))
        })
        .collect()
}

fn rows_of(source: CodeSource, offset: i32) -> Vec<(i32, &'static str)> {
    codes()
        .iter()
        .filter(|c| c.source == source)
        .map(|c| (c.code - offset, c.name))
        .collect()
}

#[test]
fn kv_md_lists_every_dtkv_code() {
    let rows = table_rows(&doc("kv.md"), "## Errors");
    let listed: Vec<(i32, &str)> = rows
        .iter()
        .map(|(n, name, _)| (*n, name.as_str()))
        .collect();
    assert_eq!(
        listed,
        rows_of(CodeSource::Kv, KV_CODE_BASE),
        "docs/kv.md ## Errors"
    );
    for (n, name, when) in &rows {
        let info = codes().iter().find(|c| c.code == KV_CODE_BASE + n);
        let retryable = info.is_some_and(|c| c.retryable);
        assert_eq!(
            when.contains("(retryable)"),
            retryable,
            "docs/kv.md row {name}"
        );
    }
}

#[test]
fn protocol_md_lists_every_status_code() {
    let rows = table_rows(&doc("protocol.md"), "## Status codes");
    let listed: Vec<(i32, &str)> = rows
        .iter()
        .filter(|(n, _, _)| *n != 0)
        .map(|(n, name, _)| (*n, name.as_str()))
        .collect();
    assert_eq!(
        listed,
        rows_of(CodeSource::Rpc, 0),
        "docs/protocol.md ## Status codes"
    );
}

#[test]
fn c_api_md_lists_every_facade_code() {
    let text = doc("c-api.md");
    for (code, name) in rows_of(CodeSource::Facade, 0) {
        let mention = format!("`DT_E_{name}` {code}");
        assert!(text.contains(&mention), "docs/c-api.md lacks {mention}");
    }
}
