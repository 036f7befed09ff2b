//! WGSL as templates, so that each kernel family is one text instantiated per variant (tile
//! shape, head size, later f16) instead of hand-unrolled copies. The directives are WGSL
//! comments, on lines of their own:
//!
//! - `//#entry NAME` starts the section of entry point NAME: a module is the shared prelude, the
//!   text before the file's first `//#entry` (its Params and binding 0), and one section, so every
//!   entry point has bindings of its own counted from 0.
//! - `//#for i in A..B` ... `//#end` repeats the lines between for i = A, ..., B − 1;
//!   `//#if EXPR` ... (`//#else` ...) `//#end` keeps one branch.
//! - In any other line `$NAME` is replaced by a variable's value and `${EXPR}` by an integer
//!   expression's value: `+ - * / %`, comparisons, `&&`, `||`, parentheses, integer literals and
//!   variables (loop counters and integer-valued instantiation variables).

/// A template's variables: (name, value); integers are given as their decimal text.
pub type Vars = Vec<(&'static str, String)>;

/// The text before the first `//#entry` line, and each entry's name and section.
pub fn split_entries(src: &str) -> (&str, Vec<(&str, &str)>) {
    const MARK: &str = "//#entry ";
    let mut starts = vec![];
    let mut at = 0;
    for line in src.split_inclusive('\n') {
        if let Some(name) = line.trim().strip_prefix(MARK) {
            starts.push((name.trim(), at, at + line.len()));
        }
        at += line.len();
    }
    let header = &src[..starts.first().map_or(src.len(), |s| s.1)];
    let sections = starts
        .iter()
        .enumerate()
        .map(|(i, &(name, _, body))| (name, &src[body..starts.get(i + 1).map_or(src.len(), |s| s.1)]))
        .collect();
    (header, sections)
}

/// The section of entry point `entry` in `src`, or None.
pub fn entry_section<'a>(src: &'a str, entry: &str) -> Option<&'a str> {
    split_entries(src).1.into_iter().find(|(name, _)| *name == entry).map(|(_, s)| s)
}

/// `src` with its directives carried out under `vars`. Panics on a malformed template (they are
/// ours, and tests/shaders.rs expands and validates every instantiation).
pub fn expand(src: &str, vars: &[(&str, String)]) -> String {
    let lines: Vec<&str> = src.lines().collect();
    let mut at = 0;
    let nodes = parse(&lines, &mut at);
    assert!(at == lines.len(), "template: `{}` without an opening //#for or //#if", lines[at].trim());
    let mut env: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let mut out = String::with_capacity(src.len() * 2);
    render(&nodes, &mut env, &mut out);
    out
}

enum Node<'a> {
    Text(&'a str),
    For { var: &'a str, lo: &'a str, hi: &'a str, body: Vec<Node<'a>> },
    If { cond: &'a str, then: Vec<Node<'a>>, otherwise: Vec<Node<'a>> },
}

fn directive<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.trim().strip_prefix("//#")?.strip_prefix(name).map(str::trim)
}

/// Nodes from line `*at` up to an unmatched `//#else` or `//#end` (left at `*at`) or the end.
fn parse<'a>(lines: &[&'a str], at: &mut usize) -> Vec<Node<'a>> {
    let mut nodes = vec![];
    while let Some(&line) = lines.get(*at) {
        if directive(line, "end").is_some() || directive(line, "else").is_some() {
            return nodes;
        }
        *at += 1;
        if let Some(spec) = directive(line, "for ") {
            let (var, range) = spec.split_once(" in ").unwrap_or_else(|| panic!("template: bad //#for {spec}"));
            let (lo, hi) = range.split_once("..").unwrap_or_else(|| panic!("template: bad range in //#for {spec}"));
            let body = parse(lines, at);
            expect_end(lines, at, line);
            nodes.push(Node::For { var: var.trim(), lo: lo.trim(), hi: hi.trim(), body });
        } else if let Some(cond) = directive(line, "if ") {
            let then = parse(lines, at);
            let mut otherwise = vec![];
            if lines.get(*at).is_some_and(|l| directive(l, "else").is_some()) {
                *at += 1;
                otherwise = parse(lines, at);
            }
            expect_end(lines, at, line);
            nodes.push(Node::If { cond, then, otherwise });
        } else {
            nodes.push(Node::Text(line));
        }
    }
    nodes
}

fn expect_end(lines: &[&str], at: &mut usize, opener: &str) {
    assert!(
        lines.get(*at).is_some_and(|l| directive(l, "end").is_some()),
        "template: `{}` without //#end",
        opener.trim()
    );
    *at += 1;
}

fn render(nodes: &[Node], env: &mut Vec<(String, String)>, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(line) => {
                substitute(line, env, out);
                out.push('\n');
            }
            Node::For { var, lo, hi, body } => {
                let (lo, hi) = (eval(lo, env), eval(hi, env));
                for i in lo..hi {
                    env.push((var.to_string(), i.to_string()));
                    render(body, env, out);
                    env.pop();
                }
            }
            Node::If { cond, then, otherwise } => {
                render(if eval(cond, env) != 0 { then } else { otherwise }, env, out);
            }
        }
    }
}

fn lookup<'e>(env: &'e [(String, String)], name: &str) -> &'e str {
    env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("template: no ${name}"))
}

fn substitute(line: &str, env: &[(String, String)], out: &mut String) {
    let mut rest = line;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(expr) = after.strip_prefix('{') {
            let end = expr.find('}').unwrap_or_else(|| panic!("template: unclosed ${{ in {line}"));
            out.push_str(&eval(&expr[..end], env).to_string());
            rest = &expr[end + 1..];
        } else {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            assert!(end > 0, "template: a lone $ in {line}");
            out.push_str(lookup(env, &after[..end]));
            rest = &after[end..];
        }
    }
    out.push_str(rest);
}

/// The value of an integer expression (precedence: `||` < `&&` < comparisons < `+ -` < `* / %`).
fn eval(expr: &str, env: &[(String, String)]) -> i64 {
    let tokens = tokenize(expr);
    let mut p = Parser { tokens: &tokens, at: 0, env, expr };
    let v = p.binary(0);
    assert!(p.at == tokens.len(), "template: trailing input in ${{{expr}}}");
    v
}

fn tokenize(expr: &str) -> Vec<String> {
    let mut tokens = vec![];
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = if ["==", "!=", "<=", ">=", "&&", "||"].contains(&two.as_str()) { two } else { c.to_string() };
            i += op.len();
            tokens.push(op);
        }
    }
    tokens
}

struct Parser<'t> {
    tokens: &'t [String],
    at: usize,
    env: &'t [(String, String)],
    expr: &'t str,
}

/// Binary operators by precedence level, loosest first.
const LEVELS: [&[&str]; 5] = [&["||"], &["&&"], &["==", "!=", "<", "<=", ">", ">="], &["+", "-"], &["*", "/", "%"]];

impl Parser<'_> {
    fn binary(&mut self, level: usize) -> i64 {
        if level == LEVELS.len() {
            return self.atom();
        }
        let mut v = self.binary(level + 1);
        while let Some(op) = self.tokens.get(self.at).filter(|t| LEVELS[level].contains(&t.as_str())) {
            let op = op.clone();
            self.at += 1;
            let r = self.binary(level + 1);
            v = match op.as_str() {
                "||" => i64::from(v != 0 || r != 0),
                "&&" => i64::from(v != 0 && r != 0),
                "==" => i64::from(v == r),
                "!=" => i64::from(v != r),
                "<" => i64::from(v < r),
                "<=" => i64::from(v <= r),
                ">" => i64::from(v > r),
                ">=" => i64::from(v >= r),
                "+" => v + r,
                "-" => v - r,
                "*" => v * r,
                "/" => v / r,
                _ => v % r,
            };
        }
        v
    }

    fn atom(&mut self) -> i64 {
        let t = self.tokens.get(self.at).unwrap_or_else(|| panic!("template: ${{{}}} ends early", self.expr)).clone();
        self.at += 1;
        if t == "(" {
            let v = self.binary(0);
            assert_eq!(
                self.tokens.get(self.at).map(String::as_str),
                Some(")"),
                "template: ( without ) in {}",
                self.expr
            );
            self.at += 1;
            v
        } else if t == "-" {
            -self.atom()
        } else if let Ok(n) = t.parse() {
            n
        } else {
            let v = lookup(self.env, &t);
            v.parse().unwrap_or_else(|_| panic!("template: ${t} = {v:?} is not an integer in ${{{}}}", self.expr))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_conditions_and_substitutions() {
        let src =
            "a $N\n//#for i in 0..N\nr$i = ${i * 2 + 1};\n//#if i % 2 == 0\neven $i\n//#else\nodd\n//#end\n//#end\nz";
        let out = expand(src, &[("N", "3".into())]);
        assert_eq!(out, "a 3\nr0 = 1;\neven 0\nr1 = 3;\nodd\nr2 = 5;\neven 2\nz\n");
    }

    #[test]
    fn entries_split_after_the_header() {
        let (header, entries) = split_entries("h\n//#entry a\nx\n//#entry b\ny\n");
        assert_eq!(header, "h\n");
        assert_eq!(entries, vec![("a", "x\n"), ("b", "y\n")]);
    }
}
