//! One vocabulary: host checks over the kernel's source text (kernel/src), for rules the compiler
//! does not enforce:
//! - the page size is written once (`xen::abi::PAGE_SIZE`/`PAGE_SHIFT`): no literal `4096`,
//!   `0x1000`, `0xfff`, `<< 12` or `>> 12` in non-test code elsewhere;
//! - no type, trait or module name is defined twice under `kernel/src`, so that a name says one
//!   thing (`PageFault`, `Region`, `Outcome` each once meant two).
//!
//! Comments and string literals (asm included) are blanked before looking; test modules and
//! test-only files are skipped by the first rule.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the page size is defined: the only file that may spell it as a number.
const PAGE_SIZE_HOME: &str = "xen/abi.rs";

/// Page-size-looking literals that are not the page size, or that cannot be written otherwise:
/// (file, text on the line, why).
const LITERALS_ALLOWED: &[(&str, &str, &str)] = &[
    ("mm/areas.rs", "AREAS_MAX: usize = 4096", "a count of areas, not bytes"),
    ("testing/inject.rs", "x ^= x >> 12", "a xorshift step, not an address"),
];

/// Names defined more than once on purpose: (name, why).
const NAMES_ALLOWED_TWICE: &[(&str, &str)] =
    &[("tests", "each module's unit tests; some share their helpers, always by full path")];

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel/src")
}

/// Every `.rs` file under `root`, as (path relative to `root` with `/`, text).
fn sources(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// `text` with comments, string literals and char literals replaced by spaces (line breaks
/// kept, so that line numbers stay right).
fn blank_non_code(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let blank = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend(bytes.iter().map(|&c| if c == b'\n' { b'\n' } else { b' ' }))
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        let len = if rest.starts_with(b"//") {
            rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            let mut j = 0;
            loop {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break j;
                    }
                } else {
                    j += 1;
                }
            }
        } else if let Some(hashes) = raw_string_start(rest) {
            let close: Vec<u8> = core::iter::once(b'"').chain((0..hashes).map(|_| b'#')).collect();
            let body = hashes + 2;
            body + rest[body..].windows(close.len()).position(|w| w == close).unwrap() + close.len()
        } else if rest[0] == b'"' {
            let mut j = 1;
            while rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            j + 1
        } else if rest[0] == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), not a lifetime ('a).
            match rest.get(1) {
                Some(b'\\') => rest[3..].iter().position(|&c| c == b'\'').unwrap() + 4,
                Some(_) if rest.get(2) == Some(&b'\'') => 3,
                _ => 0,
            }
        } else {
            0
        };
        if len == 0 {
            out.push(b[i]);
            i += 1;
        } else {
            blank(&mut out, &rest[..len]);
            i += len;
        }
    }
    String::from_utf8(out).unwrap()
}

/// `r"`, `r#"`, `br"`...: the number of `#`s, if `rest` opens a raw string.
fn raw_string_start(rest: &[u8]) -> Option<usize> {
    let rest = rest.strip_prefix(b"b").unwrap_or(rest);
    let rest = rest.strip_prefix(b"r")?;
    let hashes = rest.iter().take_while(|&&c| c == b'#').count();
    (rest.get(hashes) == Some(&b'"')).then_some(hashes)
}

/// The test-only files: declared `#[cfg(test)] mod name;`, and everything under a `tests/`.
fn test_only_files(files: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> =
        files.iter().filter(|(p, _)| p.contains("tests/")).map(|(p, _)| p.clone()).collect();
    for (path, text) in files {
        let code = blank_non_code(text);
        let lines: Vec<&str> = code.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        for pair in lines.windows(2) {
            let Some(name) = (pair[0] == "#[cfg(test)]")
                .then(|| declared_module(pair[1]))
                .flatten()
                .and_then(|decl| decl.strip_suffix(';'))
            else {
                continue;
            };
            let dir = match path.rsplit_once('/') {
                Some((dir, "mod.rs")) => format!("{dir}/"),
                None if path == "lib.rs" || path == "main.rs" => String::new(),
                _ => format!("{}/", path.trim_end_matches(".rs")),
            };
            out.push(format!("{dir}{name}.rs"));
            out.push(format!("{dir}{name}/mod.rs"));
        }
    }
    out
}

/// `name;` or `name {` if `line` declares a module.
fn declared_module(line: &str) -> Option<&str> {
    let line = strip_visibility(line);
    line.strip_prefix("mod ")
}

/// `line` without a leading `pub`, `pub(crate)`, `pub(in path)`...; `None` if it had none.
fn strip_pub(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("pub")?;
    if let Some(inner) = rest.strip_prefix('(') {
        return Some(inner.split_once(')')?.1.trim_start());
    }
    rest.strip_prefix(' ')
}

fn strip_visibility(line: &str) -> &str {
    strip_pub(line).unwrap_or(line)
}

/// The lines of `code` (already blanked) outside `#[cfg(test)]` modules, with their numbers.
fn non_test_lines(code: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut lines = code.lines().enumerate().peekable();
    let mut armed = false;
    while let Some((n, line)) = lines.next() {
        let trimmed = line.trim();
        if trimmed == "#[cfg(test)]" {
            armed = true;
            continue;
        }
        if armed && declared_module(trimmed).is_some_and(|d| d.ends_with('{')) {
            // Skip to the brace that closes this module.
            let mut depth = brace_balance(line);
            while depth > 0 {
                let (_, inner) = lines.next().expect("unbalanced braces");
                depth += brace_balance(inner);
            }
            armed = false;
            continue;
        }
        if !trimmed.is_empty() && !trimmed.starts_with("#[") {
            armed = false;
        }
        out.push((n + 1, line));
    }
    out
}

fn brace_balance(line: &str) -> i64 {
    line.bytes().map(|c| (c == b'{') as i64 - (c == b'}') as i64).sum()
}

/// The page-size literals on one line of blanked code: `4096`, `4_096`, `0x1000`, `0xfff`,
/// `<< 12`, `>> 12` (and `<<=`, `>>=`), except in `align(4096)`, where an attribute needs a
/// literal.
fn page_size_literals(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let line = line.replace("align(4096)", "");
    let bytes = line.as_bytes();
    let is_word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    for (i, _) in line.match_indices(|c: char| c.is_ascii_digit()) {
        if i > 0 && is_word(bytes[i - 1]) {
            continue;
        }
        let end = bytes[i..].iter().position(|&c| !is_word(c)).map_or(bytes.len(), |n| i + n);
        let number = &line[i..end];
        let digits = number.replace('_', "");
        let before = line[..i].trim_end();
        let shift = ["<<=", ">>=", "<<", ">>"].into_iter().find(|op| before.ends_with(op));
        match shift {
            Some(op) if digits == "12" => found.push(format!("{op} {number}")),
            _ if ["4096", "0x1000", "0xfff"].contains(&digits.to_ascii_lowercase().as_str()) => {
                found.push(number.to_string())
            }
            _ => {}
        }
    }
    found
}

/// Every page-size literal in non-test code outside [`PAGE_SIZE_HOME`]: (file, line number,
/// literal, the line).
fn page_size_literals_in(files: &[(String, String)]) -> Vec<(String, usize, String, String)> {
    let test_only = test_only_files(files);
    let mut out = Vec::new();
    for (path, text) in files {
        if path == PAGE_SIZE_HOME || test_only.contains(path) {
            continue;
        }
        let code = blank_non_code(text);
        let original: Vec<&str> = text.lines().collect();
        for (n, line) in non_test_lines(&code) {
            let source = original[n - 1].trim();
            for literal in page_size_literals(line) {
                out.push((path.clone(), n, literal, source.to_string()));
            }
        }
    }
    out
}

/// Whether the allowance `(file, text, _)` covers a literal found on `source` in `path`.
fn allows(allowance: &(&str, &str, &str), path: &str, source: &str) -> bool {
    path == allowance.0 && source.contains(allowance.1)
}

/// The page-size literals that no allowance covers: `file:line: literal: the line`.
fn page_size_violations(files: &[(String, String)], allowed: &[(&str, &str, &str)]) -> Vec<String> {
    page_size_literals_in(files)
        .into_iter()
        .filter(|(path, _, _, source)| !allowed.iter().any(|a| allows(a, path, source)))
        .map(|(path, n, literal, source)| format!("{path}:{n}: {literal}: {source}"))
        .collect()
}

/// The allowances that cover no literal: stale ones, which would hide nothing but mislead.
fn unused_allowances<'a>(
    files: &[(String, String)],
    allowed: &[(&'a str, &'a str, &'a str)],
) -> Vec<(&'a str, &'a str, &'a str)> {
    let found = page_size_literals_in(files);
    allowed
        .iter()
        .filter(|a| !found.iter().any(|(path, _, _, source)| allows(a, path, source)))
        .copied()
        .collect()
}

/// Names of types, traits and modules defined with any `pub` visibility, with where.
fn public_names(files: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, text) in files {
        let code = blank_non_code(text);
        for (n, line) in code.lines().enumerate() {
            let Some(item) = strip_pub(line.trim_start()) else { continue };
            let item = item.strip_prefix("unsafe ").unwrap_or(item);
            let Some((kind, rest)) = item.split_once(' ') else { continue };
            if !matches!(kind, "struct" | "enum" | "union" | "type" | "trait" | "mod") {
                continue;
            }
            let name: String =
                rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                names.entry(name).or_default().push(format!("{path}:{}", n + 1));
            }
        }
    }
    names
}

fn names_defined_twice(files: &[(String, String)]) -> Vec<String> {
    public_names(files)
        .into_iter()
        .filter(|(name, places)| {
            places.len() > 1 && !NAMES_ALLOWED_TWICE.iter().any(|(allowed, _)| allowed == name)
        })
        .map(|(name, places)| format!("{name}: {}", places.join(", ")))
        .collect()
}

#[test]
fn the_page_size_is_spelled_once() {
    let files = sources(&source_root());
    let found = page_size_violations(&files, LITERALS_ALLOWED);
    assert!(
        found.is_empty(),
        "page-size literals outside {PAGE_SIZE_HOME} (use mm::PAGE_SIZE / PAGE_SHIFT, or \
         Mfn::start_addr, Pte::new, kernel_space::direct_map_address):\n{}",
        found.join("\n")
    );
    // The allow list is exactly what is needed: every allowance still covers a literal.
    let stale = unused_allowances(&files, LITERALS_ALLOWED);
    assert!(stale.is_empty(), "allowances that cover no page-size literal any more: {stale:?}");
}

#[test]
fn no_type_or_module_name_is_defined_twice() {
    let files = sources(&source_root());
    let twice = names_defined_twice(&files);
    assert!(twice.is_empty(), "names defined more than once:\n{}", twice.join("\n"));
}

#[test]
fn the_checks_see_what_they_must() {
    let file = |path: &str, text: &str| (path.to_string(), text.to_string());
    let files = [
        file(
            "mm/a.rs",
            "pub struct Region;\nfn f() -> u64 { x << 12 }\n/// 4096\nlet m = !0xFFF;\n",
        ),
        file("proc/b.rs", "pub(crate) enum Region { A }\nconst S: &str = \"4096 >> 12\";\n"),
        file(
            "proc/c.rs",
            "#[repr(align(4096))]\nstruct P;\nlet a = 4_096;\n#[cfg(test)]\nmod tests {\n    \
             fn t() { let p = '{'; 4096 }\n}\nlet b = y >>= 12;\n",
        ),
        file("proc/mod.rs", "#[cfg(test)]\nmod only_tests;\n"),
        file("proc/only_tests.rs", "const P: u64 = 4096;\n"),
        file("xen/abi.rs", "pub const PAGE_SIZE: u64 = 4096;\n"),
    ];
    assert_eq!(
        page_size_violations(&files, &[]),
        [
            "mm/a.rs:2: << 12: fn f() -> u64 { x << 12 }",
            "mm/a.rs:4: 0xFFF: let m = !0xFFF;",
            "proc/c.rs:3: 4_096: let a = 4_096;",
            "proc/c.rs:8: >>= 12: let b = y >>= 12;",
        ]
    );
    let allowed = [("proc/c.rs", "a = 4_096", "used"), ("proc/c.rs", "P: u64 = 4096", "test only")];
    assert_eq!(page_size_violations(&files, &allowed).len(), 3);
    assert_eq!(unused_allowances(&files, &allowed), [allowed[1]]);
    assert_eq!(names_defined_twice(&files), ["Region: mm/a.rs:1, proc/b.rs:1"]);
}
