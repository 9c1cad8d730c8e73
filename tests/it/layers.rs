//! The gateway's modules form layers, declared once in the "Layers" table of
//! `docs/architecture.md`: a module may import modules of lower layers only. These tests
//! read every file under `src/`, find each path that leaves its module (`use crate::x`,
//! `use crate::{x, y::z}`, an inline `crate::x::y`, `super::` climbing out of a module),
//! and fail on any edge to the module's own layer or a higher one. With edges only going
//! down, the import graph of `src/` (files, and folders drawn as rooms) has no cycle.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Top-level module name -> layer number, from the table in docs/architecture.md.
fn declared_layers() -> BTreeMap<String, u32> {
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let section = doc
        .split("\n## Layers\n")
        .nth(1)
        .expect("docs/architecture.md has a `## Layers` section");
    let mut layers = BTreeMap::new();
    for line in section.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(layer), Some(modules)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let Ok(layer) = layer.parse::<u32>() else {
            continue;
        };
        for module in modules.split(',') {
            let name = module.trim().trim_matches('`').to_owned();
            assert!(
                layers.insert(name.clone(), layer).is_none(),
                "{name} is listed twice in the layer table"
            );
        }
    }
    assert!(!layers.is_empty(), "the layer table has no rows");
    layers
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `src/` with its module path (`["cache", "memory"]`). The crate
/// roots (`lib.rs`, `main.rs`) are above every layer and are left out.
fn source_files() -> Vec<(Vec<String>, String)> {
    fn walk(dir: &Path, module: &[String], out: &mut Vec<(Vec<String>, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                let mut inner = module.to_vec();
                inner.push(name);
                walk(&path, &inner, out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let mut file_module = module.to_vec();
            if name != "mod" {
                file_module.push(name);
            }
            if file_module.len() == 1 && (file_module[0] == "lib" || file_module[0] == "main") {
                continue;
            }
            out.push((file_module, std::fs::read_to_string(&path).unwrap()));
        }
    }
    let mut files = Vec::new();
    walk(&root().join("src"), &[], &mut files);
    files
}

/// One import that leaves a file's own top-level module.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    from: String,
    to: String,
}

/// The top-level modules `source` (the file of module `module`) refers to, other than its
/// own. Comments and literals are ignored; inline `mod x { .. }` blocks are followed so
/// that `super::` resolves from where it is written.
fn edges_of(module: &[String], source: &str) -> BTreeSet<Edge> {
    let code = strip_comments_and_literals(source);
    let tokens = tokenize(&code);
    let mut edges = BTreeSet::new();
    // The module path at each point: the file's, plus any inline modules opened so far,
    // each with the brace depth at which it closes.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i].as_str() {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            "mod" if tokens.get(i + 2).is_some_and(|t| t == "{") => {
                inline.push((tokens[i + 1].clone(), depth));
            }
            "crate" | "super" if tokens.get(i + 1).is_some_and(|t| t == "::") => {
                let mut here: Vec<String> = module.to_vec();
                here.extend(inline.iter().map(|(name, _)| name.clone()));
                let (base, next) = resolve_start(&tokens, i, &here);
                for first in first_segments(&tokens, next) {
                    let target = base.first().cloned().unwrap_or(first);
                    if target != module[0] {
                        edges.insert(Edge {
                            from: module[0].clone(),
                            to: target,
                        });
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    edges
}

/// From a path's first token (`crate` or `super`), the module it starts in and the index
/// of the token after its last leading `crate::` / `super::`.
fn resolve_start(tokens: &[String], start: usize, here: &[String]) -> (Vec<String>, usize) {
    let mut base: Vec<String> = here.to_vec();
    let mut i = start;
    loop {
        match tokens.get(i).map(String::as_str) {
            Some("crate") => base.clear(),
            Some("super") => {
                base.pop();
            }
            _ => break,
        }
        if tokens.get(i + 1).is_some_and(|t| t == "::") {
            i += 2;
        } else {
            i += 1;
            break;
        }
    }
    (base, i)
}

/// The first segment of each path that starts at `tokens[at]`: one for `x::...`, one per
/// item for a group `{x, y::{..}, z}` (nested groups belong to their item).
fn first_segments(tokens: &[String], at: usize) -> Vec<String> {
    let Some(token) = tokens.get(at) else {
        return Vec::new();
    };
    if token != "{" {
        return if is_identifier(token) && token != "self" {
            vec![token.clone()]
        } else {
            Vec::new()
        };
    }
    let mut segments = Vec::new();
    let mut depth = 0;
    let mut expect_item = true;
    for token in &tokens[at..] {
        match token.as_str() {
            "{" => {
                depth += 1;
                expect_item = depth == 1;
            }
            "}" => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            "," if depth == 1 => expect_item = true,
            t if expect_item && depth == 1 => {
                if is_identifier(t) && t != "self" {
                    segments.push(t.to_owned());
                }
                expect_item = false;
            }
            _ => {}
        }
    }
    segments
}

fn is_identifier(token: &str) -> bool {
    token
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Identifiers, `::`, and single punctuation characters.
fn tokenize(code: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            let mut word = String::from(c);
            while let Some(&n) = chars.peek().filter(|n| n.is_alphanumeric() || **n == '_') {
                word.push(n);
                chars.next();
            }
            tokens.push(word);
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            tokens.push("::".to_owned());
        } else if !c.is_whitespace() {
            tokens.push(c.to_string());
        }
    }
    tokens
}

/// The code with comments, string and char literals blanked out, so a path written in a
/// doc comment or a message is not taken for an import.
fn strip_comments_and_literals(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && matches!(next, Some('"' | '#')) && !continues_word(&chars, i) {
            // Raw string: r"..." or r#"..."#.
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            let open = i + 1 + hashes;
            if chars.get(open) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let rest: String = chars[open + 1..].iter().collect();
            let end = rest.find(&close).map_or(rest.len(), |e| e + close.len());
            i = open + 1 + rest[..end].chars().count();
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && is_char_literal(&chars, i) {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Whether `chars[i]` is part of an identifier that started before it (`bar"`, not `r"`).
fn continues_word(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// A `'` opens a char literal (`'a'`, `'\n'`, `'\u{1F600}'`), not a lifetime (`'a`).
fn is_char_literal(chars: &[char], i: usize) -> bool {
    match chars.get(i + 1) {
        Some('\\') => true,
        Some(_) => chars.get(i + 2) == Some(&'\''),
        None => false,
    }
}

/// Every edge of `files` that does not go to a lower layer, and every module missing
/// from the table.
fn violations(files: &[(Vec<String>, String)], layers: &BTreeMap<String, u32>) -> Vec<String> {
    let mut found = Vec::new();
    for (module, source) in files {
        let Some(&from) = layers.get(&module[0]) else {
            found.push(format!(
                "src/{} is in no layer: add `{}` to the table in docs/architecture.md",
                module.join("/"),
                module[0]
            ));
            continue;
        };
        for edge in edges_of(module, source) {
            match layers.get(&edge.to) {
                Some(&to) if to < from => {}
                Some(&to) => found.push(format!(
                    "src/{}: `{}` (layer {from}) imports `{}` (layer {to}); a module may import only lower layers",
                    module.join("/"),
                    edge.from,
                    edge.to
                )),
                None => found.push(format!(
                    "src/{}: imports `{}`, which is in no layer",
                    module.join("/"),
                    edge.to
                )),
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn every_module_imports_only_modules_of_lower_layers() {
    let problems = violations(&source_files(), &declared_layers());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_layer_table_entry_is_a_module_of_src() {
    let modules: BTreeSet<String> = source_files()
        .into_iter()
        .map(|(m, _)| m[0].clone())
        .collect();
    for name in declared_layers().keys() {
        assert!(
            modules.contains(name),
            "docs/architecture.md lists `{name}`, which is not a module of src/"
        );
    }
}

fn file(module: &str, source: &str) -> (Vec<String>, String) {
    let module = module.split('/').map(str::to_owned).collect();
    (module, source.to_owned())
}

fn test_layers() -> BTreeMap<String, u32> {
    [("low", 0), ("mid", 1), ("peer", 1), ("high", 2)]
        .into_iter()
        .map(|(m, l)| (m.to_owned(), l))
        .collect()
}

#[test]
fn a_use_group_reaching_up_is_caught() {
    let files = [file(
        "mid/inner",
        "use crate::{\n    low::Thing,\n    high::{Other, more::Deep},\n};\n",
    )];
    assert_eq!(
        violations(&files, &test_layers()),
        [
            "src/mid/inner: `mid` (layer 1) imports `high` (layer 2); a module may import only lower layers"
        ]
    );
}

#[test]
fn an_inline_path_reaching_up_is_caught() {
    let files = [file(
        "mid",
        "fn f() { let x = crate::high::make(); crate::low::g(x); }",
    )];
    assert_eq!(violations(&files, &test_layers()).len(), 1);
}

#[test]
fn an_edge_within_one_layer_is_caught() {
    let files = [file("mid", "use crate::peer::Thing;")];
    assert_eq!(violations(&files, &test_layers()).len(), 1);
}

#[test]
fn super_paths_resolve_from_where_they_are_written() {
    // From a top-level file, `super::` is the crate root; from `mid/mod.rs` too; from
    // `mid/inner.rs` it is `mid` itself; inside an inline `mod tests` it is the file.
    let files = [
        file("low", "use super::high::X;"),
        file("mid", "use super::{low::A, high::B};"),
        file("mid/inner", "use super::Y; use super::super::high::Z;"),
        file(
            "high",
            "mod tests { use super::*; use super::super::low::W; }",
        ),
    ];
    assert_eq!(
        violations(&files, &test_layers()),
        [
            "src/low: `low` (layer 0) imports `high` (layer 2); a module may import only lower layers",
            "src/mid/inner: `mid` (layer 1) imports `high` (layer 2); a module may import only lower layers",
            "src/mid: `mid` (layer 1) imports `high` (layer 2); a module may import only lower layers",
        ]
    );
}

#[test]
fn comments_and_strings_are_not_imports() {
    let files = [file(
        "low",
        "//! See [`crate::high`].\n/* crate::high::X */\nconst S: &str = \"crate::high::Y\";\nconst R: &str = r#\"crate::high\"#;\nconst C: char = '\"'; fn f<'a>(x: &'a str) {}\n",
    )];
    assert!(violations(&files, &test_layers()).is_empty());
}

#[test]
fn a_module_missing_from_the_table_is_caught() {
    let files = [file("newcomer", "fn f() {}")];
    assert_eq!(violations(&files, &test_layers()).len(), 1);
}
