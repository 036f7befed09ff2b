//! The layer order of src/ (the table at the top of src/lib.rs): no file names a module of a
//! higher layer. What counts is code outside comments, string literals and `#[cfg(test)]` items:
//! `crate::x` paths and `use crate::{x, y::z}` groups, each mapped to its top-level module
//! (`crate::Error` and `crate::Result`, defined in lib.rs, are the device layer's; lib.rs's
//! re-exports are their modules'). src/bin/ is the front layer and names the library as `wgpt::`:
//! anything goes there. Every module of src/ must have a row.
#![cfg(not(target_arch = "wasm32"))] // reads src/ from disk

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layers bottom to top, each with its modules.
struct Table {
    layers: Vec<(String, Vec<String>)>,
    /// Names lib.rs defines or re-exports, and the module each belongs to.
    lib_names: BTreeMap<String, String>,
}

/// The pseudo-module of what lib.rs defines itself (Error, Result, read_file).
const LIB_ITEMS: &str = "error";

impl Table {
    /// The table in lib.rs's module doc (`//! | layer | modules |` rows) and lib.rs's own items.
    fn parse(lib_rs: &str) -> Table {
        let mut layers = vec![];
        for line in lib_rs.lines().filter_map(|l| l.trim().strip_prefix("//!")) {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
            let [layer, modules] = cells[..] else { continue };
            if layer.is_empty() || layer == "layer" || layer.starts_with('-') {
                continue;
            }
            let modules = strip_parens(modules)
                .split(',')
                .map(|m| m.trim().trim_end_matches('/').to_string())
                .filter(|m| !m.is_empty())
                .collect();
            layers.push((layer.to_string(), modules));
        }
        let mut lib_names = BTreeMap::new();
        let code = code_only(lib_rs);
        for stmt in code.split(';') {
            let stmt = stmt.split_whitespace().collect::<Vec<_>>().join(" ");
            if let Some((_, rest)) = stmt.split_once("pub use ") {
                if let Some((module, names)) = rest.split_once("::") {
                    for name in names.trim_matches(|c| c == '{' || c == '}' || c == ' ').split(',') {
                        lib_names.insert(name.trim().to_string(), module.trim().to_string());
                    }
                }
            }
        }
        for word in ["pub enum ", "pub type ", "pub fn ", "pub struct "] {
            for (i, _) in code.match_indices(word) {
                let name: String = code[i + word.len()..].chars().take_while(|c| is_ident(*c)).collect();
                lib_names.insert(name, LIB_ITEMS.to_string());
            }
        }
        Table { layers, lib_names }
    }

    /// The layer index (0: bottom) and name of `module`.
    fn layer_of(&self, module: &str) -> Option<(usize, &str)> {
        self.layers
            .iter()
            .enumerate()
            .find(|(_, (_, ms))| ms.iter().any(|m| m == module))
            .map(|(i, (l, _))| (i, l.as_str()))
    }

    /// The module a `crate::name` path names.
    fn module_of<'a>(&'a self, name: &'a str) -> &'a str {
        self.lib_names.get(name).map_or(name, String::as_str)
    }
}

/// `s` without its parenthesised notes.
fn strip_parens(s: &str) -> String {
    let mut depth = 0;
    s.chars()
        .filter(|&c| {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => return depth == 0,
            }
            false
        })
        .collect()
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `src` with comments (line, block, doc) and the contents of string and char literals blanked
/// (newlines kept, so offsets and line numbers stay).
fn code_only(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        let raw_hashes = c[i + 1..].iter().take_while(|&&h| h == '#').count();
        i = if c[i] == '/' && next == Some('/') {
            let end = c[i..].iter().position(|&ch| ch == '\n').map_or(c.len(), |n| i + n);
            blank(&c[i..end], &mut out);
            end
        } else if c[i] == '/' && next == Some('*') {
            block_comment(&c, i, &mut out)
        } else if c[i] == 'r' && c.get(i + 1 + raw_hashes) == Some(&'"') && (i == 0 || !is_ident(c[i - 1])) {
            raw_string(&c, i, raw_hashes, &mut out)
        } else if c[i] == '"' || (c[i] == '\'' && (next == Some('\\') || c.get(i + 2) == Some(&'\''))) {
            // a string, or a char literal ('x', '\n', '\''; a lifetime 'a has no closing quote)
            quoted(&c, i, &mut out)
        } else {
            out.push(c[i]);
            i + 1
        };
    }
    out
}

/// Pushes `chars` as spaces, newlines kept.
fn blank(chars: &[char], out: &mut String) {
    out.extend(chars.iter().map(|&ch| if ch == '\n' { '\n' } else { ' ' }));
}

/// Blanks the (nested) block comment opening at `i`; returns where it ends.
fn block_comment(c: &[char], mut i: usize, out: &mut String) -> usize {
    let mut depth = 0;
    while i < c.len() {
        let two = (c[i], c.get(i + 1).copied());
        let step = match two {
            ('/', Some('*')) => {
                depth += 1;
                2
            }
            ('*', Some('/')) => {
                depth -= 1;
                2
            }
            _ => 1,
        };
        blank(&c[i..(i + step).min(c.len())], out);
        i += step;
        if depth == 0 {
            break;
        }
    }
    i
}

/// Blanks the contents of the raw string r#"..."# (with `hashes` #) starting at `i`.
fn raw_string(c: &[char], i: usize, hashes: usize, out: &mut String) -> usize {
    let start = i + 2 + hashes;
    let closes = |j: &usize| c[*j] == '"' && c[j + 1..].iter().take(hashes).filter(|&&h| h == '#').count() == hashes;
    let end = (start..c.len()).find(closes).unwrap_or(c.len());
    out.push('"');
    blank(&c[start..end], out);
    out.push('"');
    end + 1 + hashes
}

/// Blanks the contents of the string or char literal whose quote is at `i`.
fn quoted(c: &[char], i: usize, out: &mut String) -> usize {
    let quote = c[i];
    let mut j = i + 1;
    while j < c.len() && c[j] != quote {
        j += if c[j] == '\\' { 2 } else { 1 };
    }
    let end = j.min(c.len());
    out.push(quote);
    blank(&c[i + 1..end], out);
    out.push(quote);
    end + 1
}

/// `code` (from [`code_only`]) with every item under `#[cfg(test)]` blanked: the attribute up to
/// the item's `;` or the end of its `{ ... }` block. None where the whole file is `#![cfg(test)]`.
fn without_tests(code: &str) -> Option<String> {
    if code.contains("#![cfg(test)]") {
        return None;
    }
    let mut c: Vec<char> = code.chars().collect();
    let code_len = c.len();
    let attr: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i + attr.len() <= c.len() {
        if c[i..i + attr.len()] != attr[..] {
            i += 1;
            continue;
        }
        let (mut j, mut depth, mut opened) = (i + attr.len(), 0i32, false);
        while j < c.len() {
            match c[j] {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth -= 1,
                ';' if depth == 0 && !opened => break,
                _ => {}
            }
            j += 1;
            if opened && depth == 0 {
                break;
            }
        }
        for ch in &mut c[i..j.min(code_len)] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
        i = j;
    }
    Some(c.into_iter().collect())
}

/// The top-level names `code` reaches through `crate::`, with the line of each.
fn crate_paths(code: &str) -> Vec<(String, usize)> {
    let c: Vec<char> = code.chars().collect();
    let line = |at: usize| c[..at].iter().filter(|&&ch| ch == '\n').count() + 1;
    let mut found = vec![];
    let key: Vec<char> = "crate".chars().collect();
    for i in 0..c.len().saturating_sub(key.len()) {
        if c[i..i + key.len()] != key[..] || (i > 0 && is_ident(c[i - 1])) {
            continue;
        }
        let mut j = skip_space(&c, i + key.len());
        if c.get(j) != Some(&':') || c.get(j + 1) != Some(&':') {
            continue;
        }
        j = skip_space(&c, j + 2);
        if c.get(j) == Some(&'{') {
            for name in group_heads(&c, j) {
                found.push((name, line(i)));
            }
        } else {
            let name: String = c[j..].iter().take_while(|ch| is_ident(**ch)).collect();
            if !name.is_empty() {
                found.push((name, line(i)));
            }
        }
    }
    found
}

fn skip_space(c: &[char], mut i: usize) -> usize {
    while i < c.len() && c[i].is_whitespace() {
        i += 1;
    }
    i
}

/// The first name of each element of the `{ ... }` group opening at `open` (nested groups of an
/// element are part of it: `{a::{b, c}, d}` gives a and d).
fn group_heads(c: &[char], open: usize) -> Vec<String> {
    let (mut heads, mut depth, mut at_start, mut i) = (vec![], 0, true, open);
    while i < c.len() {
        match c[i] {
            '{' => {
                depth += 1;
                at_start = depth == 1;
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => at_start = true,
            ch if at_start && depth == 1 && is_ident(ch) => {
                let name: String = c[i..].iter().take_while(|ch| is_ident(**ch)).collect();
                i += name.len();
                heads.push(name);
                at_start = false;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    heads
}

/// A file naming a module of a higher layer.
#[derive(Debug, PartialEq)]
struct Violation {
    file: String,
    line: usize,
    module: String,
    file_layer: String,
    module_layer: String,
}

/// Every upward import in `files` (path relative to src/, source), and every problem with the
/// table itself (a module without a row, a name no module has).
fn check(table: &Table, files: &[(String, String)]) -> (Vec<Violation>, Vec<String>) {
    let (mut violations, mut problems) = (vec![], vec![]);
    for (path, src) in files {
        let own = path.split('/').next().unwrap_or(path).trim_end_matches(".rs");
        if path == "lib.rs" || own == "bin" {
            continue; // lib.rs only declares and re-exports; bin/ is the front layer
        }
        let Some((own_index, own_layer)) = table.layer_of(own) else {
            problems.push(format!("src/{path}: the module {own} has no row in lib.rs's layer table"));
            continue;
        };
        let Some(code) = without_tests(&code_only(src)) else { continue };
        let mut seen: Vec<String> = vec![];
        for (name, line) in crate_paths(&code) {
            let module = table.module_of(&name).to_string();
            let Some((index, layer)) = table.layer_of(&module) else {
                problems.push(format!("src/{path}:{line}: crate::{name} is in no layer of lib.rs's table"));
                continue;
            };
            if index > own_index && !seen.contains(&module) {
                seen.push(module.clone());
                violations.push(Violation {
                    file: format!("src/{path}"),
                    line,
                    module,
                    file_layer: own_layer.to_string(),
                    module_layer: layer.to_string(),
                });
            }
        }
    }
    (violations, problems)
}

/// Every .rs file under `dir`, as (path relative to `root`, source), sorted.
fn sources(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            sources(root, &p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&p).unwrap()));
        }
    }
}

#[test]
fn no_module_names_a_module_of_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    sources(&src, &src, &mut files);
    let lib = &files.iter().find(|(p, _)| p == "lib.rs").expect("src/lib.rs").1;
    let table = Table::parse(lib);
    let names: Vec<&str> = table.layers.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(names, ["device", "kernels", "selection", "model", "training", "run", "front"], "lib.rs's table");
    let (violations, mut problems) = check(&table, &files);
    // every row names a module of src/ (or lib.rs's own items)
    for (layer, modules) in &table.layers {
        for m in modules.iter().filter(|m| *m != LIB_ITEMS) {
            if !src.join(format!("{m}.rs")).is_file() && !src.join(m).is_dir() {
                problems
                    .push(format!("lib.rs's layer table puts {m} in the {layer} layer, but src/ has no such module"));
            }
        }
    }
    for v in &violations {
        println!(
            "{}:{}: a file of the {} layer names {}, of the {} layer above it",
            v.file, v.line, v.file_layer, v.module, v.module_layer
        );
    }
    for p in &problems {
        println!("{p}");
    }
    assert!(
        violations.is_empty() && problems.is_empty(),
        "{} upward imports and {} problems with the layer table (listed above)",
        violations.len(),
        problems.len()
    );
}

/// The checker itself: a kernels file importing the model is caught, with its line; comments,
/// strings, `#[cfg(test)]` modules, paths down the order and lib.rs's items are not.
#[test]
fn the_checker_reports_exactly_an_upward_import() {
    let lib = "//! | layer | modules |\n//! |---|---|\n//! | device | gpu, error (lib.rs only re-exports) |\n\
               //! | kernels | kernels/ |\n//! | model | model |\npub use gpu::{Gpu, Tensor};\n\
               pub enum Error {}\npub type Result<T> = std::result::Result<T, Error>;\n";
    let table = Table::parse(lib);
    assert_eq!(table.layer_of("kernels"), Some((1, "kernels")));
    assert_eq!(table.module_of("Gpu"), "gpu");
    assert_eq!(table.module_of("Result"), LIB_ITEMS);
    let kernels = "//! uses crate::model in a comment\nuse crate::{gpu::{Buffer, Tensor}, Error, Result};\n\
                   use crate::Gpu;\n/* crate::model::Gpt2 */\nconst S: &str = \"crate::model\";\n\
                   use crate::model::Gpt2Config;\nfn f<'a>(x: &'a str) -> char { '\"' }\n\
                   #[cfg(test)]\nmod tests {\n    use crate::model::Gpt2;\n}\n\
                   #[cfg(test)]\nuse crate::model::Weights;\n";
    let files = vec![("lib.rs".to_string(), lib.to_string()), ("kernels/matmul.rs".to_string(), kernels.to_string())];
    let (violations, problems) = check(&table, &files);
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(
        violations,
        [Violation {
            file: "src/kernels/matmul.rs".into(),
            line: 6,
            module: "model".into(),
            file_layer: "kernels".into(),
            module_layer: "model".into(),
        }]
    );
    // a group names every head, nested groups included; a module without a row is a problem
    let grouped = "use crate::{\n    gpu::Gpu,\n    model::{Gpt2, Weights},\n};\n";
    let files = vec![("kernels/mod.rs".to_string(), grouped.to_string()), ("extra.rs".to_string(), String::new())];
    let (violations, problems) = check(&table, &files);
    assert_eq!(violations.len(), 1);
    assert_eq!((violations[0].module.as_str(), violations[0].line), ("model", 1));
    assert_eq!(problems, ["src/extra.rs: the module extra has no row in lib.rs's layer table"]);
}
